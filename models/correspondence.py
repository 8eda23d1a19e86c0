"""MediaPipe's 478 face landmarks embedded in a head's surface (barycentric).

The embedding is what makes a take head-agnostic: the engine speaks in landmarks, every head
says where those landmarks sit on its own surface.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANDMARK_COUNT = 478


@dataclass(frozen=True)
class LandmarkEmbedding:
    """Each landmark as a point inside one triangle of the head mesh."""

    triangles: np.ndarray  # (478, 3) int32, vertex indices of the triangle holding each landmark
    barycentric: np.ndarray  # (478, 3) float32, weights summing to 1

    def locate(self, vertices: np.ndarray) -> np.ndarray:
        """Landmark positions for vertex data (..., V, 3) -> (..., 478, 3)."""
        corners = vertices[..., self.triangles, :]  # (..., 478, 3 corners, 3)
        return np.einsum("...lcd,lc->...ld", corners, self.barycentric)


@dataclass(frozen=True)
class OrthographicProjection:
    """An orthographic camera as an affine map: world point -> (pixel x, pixel y, depth).

    Pixels are continuous image coordinates (0, 0) at the top-left corner of the image, x to the
    right, y down, the convention of MediaPipe's normalised landmarks times the image size.
    Depth is the distance towards the camera (larger = nearer), in world units.
    """

    matrix: np.ndarray  # (3, 4): rows pixel x, pixel y, depth; last column the offset

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> (..., 3) pixel x, pixel y, depth."""
        return points @ self.matrix[:, :3].T + self.matrix[:, 3]

    def unproject(self, pixels: np.ndarray, depth: float = 0.0) -> np.ndarray:
        """Image points (..., 2) -> world points (..., 3) at the given depth."""
        image = np.concatenate([pixels, np.full(pixels.shape[:-1] + (1,), depth)], axis=-1)
        return (image - self.matrix[:, 3]) @ np.linalg.inv(self.matrix[:, :3]).T


def embed_image_landmarks(
    vertices: np.ndarray,
    triangles: np.ndarray,
    landmarks_px: np.ndarray,
    projection: OrthographicProjection,
) -> tuple[LandmarkEmbedding, np.ndarray]:
    """Back-project image landmarks onto the front-most surface along orthographic rays.

    vertices (V, 3) world units, triangles (T, 3) vertex indices, landmarks_px (L, 2) pixels.
    Each landmark's ray crosses every triangle whose image (its projected corners) contains the
    landmark; the crossing nearest the camera is what the camera saw, so it wins. Returns the
    embedding and a (L,) bool mask of landmarks that hit the surface. A landmark outside every
    triangle (off the silhouette) takes the triangle whose image centroid is nearest, at its
    centroid, preferring the nearest to the camera among those within a pixel of that distance.
    """
    image = projection.project(np.asarray(vertices, dtype=np.float64))  # (V, 3) px, px, depth
    corners = image[np.asarray(triangles)]  # (T, 3 corners, 3)
    points = np.asarray(landmarks_px, dtype=np.float64)[:, :2]  # (L, 2) px
    low, high = corners[:, :, :2].min(axis=1), corners[:, :, :2].max(axis=1)  # (T, 2)
    inside_box = np.all((points[:, None] >= low[None]) & (points[:, None] <= high[None]), axis=2)  # (L, T)
    landmark_index, triangle_index = np.nonzero(inside_box)  # candidate pairs (P,)
    weights = _image_barycentric(corners[triangle_index, :, :2], points[landmark_index])  # (P, 3)
    tolerance = 1e-9
    hit = np.all(weights >= -tolerance, axis=1)
    landmark_index, triangle_index, weights = landmark_index[hit], triangle_index[hit], weights[hit]
    depth = np.einsum("pc,pc->p", weights, corners[triangle_index, :, 2])  # (P,)
    nearest_first = np.argsort(-depth, kind="stable")
    hit_landmarks, first = np.unique(landmark_index[nearest_first], return_index=True)
    chosen_triangle = np.empty(len(points), dtype=np.int64)
    chosen_weights = np.empty((len(points), 3))
    chosen_triangle[hit_landmarks] = triangle_index[nearest_first][first]
    chosen_weights[hit_landmarks] = weights[nearest_first][first]
    found = np.zeros(len(points), dtype=bool)
    found[hit_landmarks] = True
    for landmark in np.flatnonzero(~found):
        chosen_triangle[landmark] = _nearest_front_triangle(corners, points[landmark])
        chosen_weights[landmark] = 1.0 / 3.0
    chosen_weights = np.clip(chosen_weights, 0.0, None)  # rounding on edges: keep the point inside
    chosen_weights /= chosen_weights.sum(axis=1, keepdims=True)
    embedding = LandmarkEmbedding(
        triangles=np.asarray(triangles)[chosen_triangle].astype(np.int32),
        barycentric=chosen_weights.astype(np.float32),
    )
    return embedding, found


def _nearest_front_triangle(corners: np.ndarray, point: np.ndarray) -> int:
    """The triangle (of corners (T, 3, 3) px, px, depth) seen nearest to an image point (2,)."""
    centroids = corners.mean(axis=1)  # (T, 3)
    distance = np.linalg.norm(centroids[:, :2] - point, axis=1)  # (T,) px
    close = np.flatnonzero(distance <= distance.min() + 1.0)
    return int(close[np.argmax(centroids[close, 2])])


def _image_barycentric(corners: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Barycentric weights (P, 3) of points (P, 2) in image triangles (P, 3, 2); NaN if degenerate."""
    edge_b = corners[:, 1] - corners[:, 0]
    edge_c = corners[:, 2] - corners[:, 0]
    offset = points - corners[:, 0]
    area = edge_b[:, 0] * edge_c[:, 1] - edge_b[:, 1] * edge_c[:, 0]  # twice the signed area
    with np.errstate(divide="ignore", invalid="ignore"):
        weight_b = (offset[:, 0] * edge_c[:, 1] - offset[:, 1] * edge_c[:, 0]) / area
        weight_c = (edge_b[:, 0] * offset[:, 1] - edge_b[:, 1] * offset[:, 0]) / area
    weights = np.stack([1.0 - weight_b - weight_c, weight_b, weight_c], axis=1)
    weights[area == 0] = np.nan  # edge-on triangles cover no image area
    return weights
