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
    surface: np.ndarray | None = None,
    depth_window: float = np.inf,
) -> tuple[LandmarkEmbedding, np.ndarray]:
    """Back-project image landmarks onto the front-most surface along orthographic rays.

    vertices (V, 3) world units, triangles (T, 3) vertex indices, landmarks_px (L, 2) pixels,
    surface (T,) bool: the triangles these landmarks may land on (default: all).
    Each landmark's ray crosses every triangle whose image contains the landmark; the crossing
    nearest the camera is what the camera saw, so it wins. A landmark that sees no allowed
    triangle there (off the silhouette, or an eyelid landmark that looks through the lid opening
    at the eyeball) snaps to the nearest point, in the image, of an allowed triangle that lies no
    more than ``depth_window`` behind what the camera saw (so it does not fall through to the far
    side of the head). Returns the embedding and a (L,) bool mask of the direct hits.
    """
    image = projection.project(np.asarray(vertices, dtype=np.float64))  # (V, 3) px, px, depth
    corners = image[np.asarray(triangles)]  # (T, 3 corners, 3)
    points = np.asarray(landmarks_px, dtype=np.float64)[:, :2]  # (L, 2) px
    allowed = np.ones(len(corners), dtype=bool) if surface is None else np.asarray(surface, dtype=bool)
    chosen_triangle, chosen_weights, seen_depth, seen = _front_hits(corners, points)
    direct = seen & allowed[chosen_triangle]
    for landmark in np.flatnonzero(~direct):
        floor = seen_depth[landmark] - depth_window if seen[landmark] else -np.inf
        candidates = np.flatnonzero(allowed & (corners[:, :, 2].max(axis=1) >= floor))
        best, weights = _nearest_in_image(corners[candidates], points[landmark])
        chosen_triangle[landmark], chosen_weights[landmark] = candidates[best], weights
    chosen_weights = np.clip(chosen_weights, 0.0, None)  # rounding on edges: keep the point inside
    chosen_weights /= chosen_weights.sum(axis=1, keepdims=True)
    embedding = LandmarkEmbedding(
        triangles=np.asarray(triangles)[chosen_triangle].astype(np.int32),
        barycentric=chosen_weights.astype(np.float32),
    )
    return embedding, direct


def _front_hits(corners: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Front-most triangle under each point: index (L,), weights (L, 3), depth (L,), hit (L,)."""
    low, high = corners[:, :, :2].min(axis=1), corners[:, :, :2].max(axis=1)  # (T, 2)
    inside_box = np.all((points[:, None] >= low[None]) & (points[:, None] <= high[None]), axis=2)  # (L, T)
    landmark_index, triangle_index = np.nonzero(inside_box)  # candidate pairs (P,)
    weights = _image_barycentric(corners[triangle_index, :, :2], points[landmark_index])  # (P, 3)
    inside = np.all(weights >= -1e-9, axis=1)  # NaN (edge-on triangles) compares False
    landmark_index, triangle_index, weights = landmark_index[inside], triangle_index[inside], weights[inside]
    depth = np.einsum("pc,pc->p", weights, corners[triangle_index, :, 2])  # (P,)
    nearest_first = np.argsort(-depth, kind="stable")
    hit_landmarks, first = np.unique(landmark_index[nearest_first], return_index=True)
    chosen = nearest_first[first]
    count = len(points)
    triangle = np.zeros(count, dtype=np.int64)
    chosen_weights = np.full((count, 3), 1.0 / 3.0)
    seen_depth = np.full(count, -np.inf)
    triangle[hit_landmarks] = triangle_index[chosen]
    chosen_weights[hit_landmarks] = weights[chosen]
    seen_depth[hit_landmarks] = depth[chosen]
    return triangle, chosen_weights, seen_depth, np.isfinite(seen_depth)


def _nearest_in_image(corners: np.ndarray, point: np.ndarray) -> tuple[int, np.ndarray]:
    """Triangle (of corners (C, 3, 3)) nearest to an image point (2,) and the barycentric weights
    (3,) of its nearest point; ties (shared edges) go to the one nearer the camera."""
    flat = corners[:, :, :2]  # (C, 3, 2)
    start, along = flat, np.roll(flat, -1, axis=1) - flat  # edges 0-1, 1-2, 2-0: (C, 3, 2)
    length2 = np.maximum(np.sum(along**2, axis=2), 1e-30)  # (C, 3)
    t = np.clip(np.sum((point - start) * along, axis=2) / length2, 0.0, 1.0)  # (C, 3)
    distance = np.linalg.norm(start + t[..., None] * along - point, axis=2)  # (C, 3) px
    rows = np.arange(len(corners))
    edge = distance.argmin(axis=1)  # (C,)
    weights = np.zeros((len(corners), 3))
    weights[rows, edge] = 1.0 - t[rows, edge]
    weights[rows, (edge + 1) % 3] += t[rows, edge]
    gap = distance[rows, edge]  # (C,) px
    inside_weights = _image_barycentric(flat, np.broadcast_to(point, (len(corners), 2)))  # (C, 3)
    inside = np.all(inside_weights >= 0.0, axis=1)
    gap[inside] = 0.0
    weights[inside] = inside_weights[inside]
    depth = np.einsum("cv,cv->c", weights, corners[:, :, 2])  # (C,)
    close = np.flatnonzero(gap <= gap.min() + 1e-6)
    best = int(close[np.argmax(depth[close])])
    return best, weights[best]


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
