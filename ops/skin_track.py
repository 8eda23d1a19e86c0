"""Skin-glued point tracking: optical flow against a pose-warped reference, aggregated over the
smooth expression field.

Why: MediaPipe's landmarks are placed by its face prior and slide over the skin as the view
changes (0.75 mm of false motion on a still face turning 20 degrees, only 0.55-0.62 of local
actions recovered, docs/OPEN_LOOP.md), and optical flow chained frame to frame drifts (0.17-0.22
px of error per pair on MPEG-4 frames against ~0.6 px of motion). Here every frame is compared
with a *reference* frame, so errors do not accumulate:

1. the reference image is warped into the current frame's geometry by a piecewise-affine map
   over a face mesh whose vertices are known in both frames (a head pose applied to a neutral
   face, ``piecewise_affine_map``), so what is left between the two images is the expression
   plus the mesh's small geometric error, both smooth;
2. dense flow (OpenCV DIS, ``flow.make_dis``) between the two high-passed images (``high_pass``:
   the shading changes with the view, the texture does not) measures that small remainder;
3. the flow is read at each point as a Gaussian-weighted average over its neighbourhood
   (``aggregate_at``): a local expression is a smooth field a few millimetres wide, while the
   flow's error is rough from pixel to pixel, so averaging over a few pixels cuts the noise of a
   single-pixel reading without cutting the motion.

The point a vertex stands for is the skin the reference shows at its reference position; its
position in frame t is the warped position plus the aggregated flow there (``track_frame``).
The flow's error grows with the head's turn between the two frames, so a clip has several
references at spread-out poses, each frame compared with its nearest, and the references tied to
one primary reference by flow between them, so all track the same skin (``track_with_references``).

Measured (scripts/open_loop_budget.py, docs/OPEN_LOOP.md): read with the true pose on the scan
clips' dev split, error 0.87x a still take against MediaPipe's 3.75x (one reference: 1.06x),
still-face wander 0.17 mm against 0.76 (one reference: 0.21).

Conventions: image px (x right, y down) of the full frame, pixel centres at integers (array
index px: a caller with MediaPipe's continuous px, (0, 0) at the top-left corner, subtracts 0.5);
flow (H, W, 2) float32 px, from the warped reference to the current frame: warped(x) ~
current(x + flow(x)).
"""
from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .canonical import EYE_CONTOURS, INNER_LIPS, IRIS_LANDMARKS
from .errors import MxrError
from .flow import bilinear_taps, make_dis, sample_bilinear
from .spill import frame_array
from .video import iter_frames, read_frames_at


@dataclass(frozen=True)
class SkinTrackSettings:
    """Chosen on the open-loop scan clips' dev split (scripts/open_loop_budget.py; docs/OPEN_LOOP.md):
    averaging radius 3 / 6 / 10 px recovered 0.75 / 0.72 / 0.67 of the actions' motion with a still
    face wandering 0.23 / 0.20 / 0.17 mm; 6 is the middle. References 3 / 5 / 8 degrees apart tied
    within 1.5x that: wander 0.183 / 0.183 / 0.199 mm; 5 apart tied within 12: 0.166 mm (more ties,
    more paths averaged)."""

    flow_profile: str = "balanced"  # flow.FLOW_PROFILES
    sigma_px: float = 6.0  # std of the Gaussian neighbourhood the flow is averaged over; 0: one pixel
    margin_px: int = 24  # the window around the mesh's points, px a side
    highpass_sigma_px: float = 3.0  # >0: flow between images less their blur of this std (see band_pass)
    highpass_gain: float = 2.0  # contrast of the high-passed images
    fill_outside: bool = True  # outside the mesh the warped reference shows the current frame (no false edge)
    reference_spacing_deg: float = 5.0  # a frame's reference is at most this far in head turn, where a rest frame is
    link_deg: float = 12.0  # references this near each other are compared, both ways, to tie them together


# Points on a fold or a gap that a warp of a rest frame cannot follow (the lids' margins, the inner
# lips) and the irises, which turn with the gaze, not the skin: the landmarks are always kept.
UNTRACKED_LANDMARKS = np.concatenate([EYE_CONTOURS, INNER_LIPS, IRIS_LANDMARKS])
AVERAGE_RADIUS_MM = 3.75  # the flow's averaging std on a face, at most SkinTrackSettings.sigma_px
TRACK_THREADS = 4  # frames tracked side by side, at most this many (and the CPU's cores)


def settings_for_face(px_per_mm: float) -> SkinTrackSettings:
    """The settings for a face shown at ``px_per_mm``: the averaging neighbourhood no wider than
    ``AVERAGE_RADIUS_MM`` on the face (but at least 1.5 px), so that a small face's local motion is
    not averaged away with its neighbours'. Chosen on the injected dev clips at full and half size
    (docs/OPEN_LOOP.md): at half size (0.55-0.8 px a mm) 6 px recovered 0.37 of a planted micro
    event, 3 px 0.59 (medians; event by event this rule beats 6 px by only +0.04, 2026-12-05); at
    full size (1.1-1.6 px a mm) 6 px beat 3 mm."""
    widest = SkinTrackSettings().sigma_px
    return SkinTrackSettings(sigma_px=float(np.clip(AVERAGE_RADIUS_MM * px_per_mm, 1.5, widest)))


def delaunay_triangles(points_px: np.ndarray) -> np.ndarray:
    """The Delaunay triangulation of (N, 2) finite points px as (M, 3) int64 indices (OpenCV's
    Subdiv2D, without scipy; of coincident points one is used). Triangles that Subdiv2D makes with
    its far virtual vertices are dropped, so a thin triangle along the hull may be missing: the
    points there still are vertices of others."""
    low = np.floor(points_px.min(axis=0)) - 2.0
    size = np.ceil(points_px.max(axis=0) - low) + 4.0
    subdivision = cv2.Subdiv2D((int(low[0]), int(low[1]), int(size[0]), int(size[1])))
    subdivision.insert(np.ascontiguousarray(points_px, np.float32))  # as Point2f, the nearest float32
    corners = subdivision.getTriangleList().reshape(-1, 2).astype(np.float32)  # (3 M', 2) px, as Subdiv2D stores them
    # A vertex is found by its float32 position's bits: the first point there (np.unique's first index).
    point_keys = np.ascontiguousarray(points_px.astype(np.float32)).view(np.uint64).ravel()  # (N,)
    corner_keys = np.ascontiguousarray(corners).view(np.uint64).ravel()  # (3 M',)
    keys, first = np.unique(point_keys, return_index=True)
    position = np.minimum(np.searchsorted(keys, corner_keys), len(keys) - 1)
    index = np.where(keys[position] == corner_keys, first[position], -1).astype(np.int64).reshape(-1, 3)
    return index[np.all(index >= 0, axis=1)]  # triangles touching Subdiv2D's outer virtual vertices dropped


def piecewise_affine_map(source_px: np.ndarray, target_px: np.ndarray, origin: tuple[int, int],
                         shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The backward map that warps an image whose mesh vertices sit at ``source_px`` (N, 2) px
    into the geometry where they sit at ``target_px`` (N, 2) px, affine inside each triangle of
    the target points' Delaunay triangulation: (map_x, map_y), each (h, w) float32 source px for
    the window of ``shape`` (h, w) starting at ``origin`` (x0, y0) px; NaN outside the mesh.
    Exact at the vertices: map(target_i) = source_i (a pixel on a triangle's edge may take the
    neighbour's map, which agrees there)."""
    height, width = shape
    triangles = delaunay_triangles(target_px)  # (M, 3)
    count = len(triangles)
    owner = np.full((height, width), count, np.int32)  # the triangle each pixel lies in; count: none
    corners = np.rint(target_px - np.array(origin, np.float64)).astype(np.int32)[triangles]  # (M, 3, 2) window px
    for k, corner in enumerate(corners):
        cv2.fillConvexPoly(owner, corner, k)
    # per triangle, the affine map target px -> source px, and NaN for "no triangle": (M + 1, 2, 3)
    target_h = np.concatenate([target_px[triangles], np.ones(triangles.shape + (1,))], axis=2)  # (M, 3, 3)
    inverse, determinant = inverse_3x3(target_h)
    ok = np.abs(determinant) > 1e-9  # degenerate (flat) triangles map nothing
    affine = np.full((count + 1, 2, 3), np.nan)
    affine[:count][ok] = np.transpose(inverse[ok] @ source_px[triangles[ok]], (0, 2, 1))
    x = np.arange(width, dtype=np.float64) + float(origin[0])  # (w,)
    y = (np.arange(height, dtype=np.float64) + float(origin[1]))[:, None]  # (h, 1)
    # each coefficient looked up by owner from its own contiguous row (np.take: ~3x faster than
    # indexing a strided view)
    rows = np.ascontiguousarray(affine.reshape(count + 1, 6).T)  # (6, M + 1): x's three, then y's
    map_x, map_y = ((np.take(rows[3 * row], owner) * x + np.take(rows[3 * row + 1], owner) * y
                     + np.take(rows[3 * row + 2], owner)).astype(np.float32) for row in range(2))
    return map_x, map_y


def inverse_3x3(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3, 3) -> their inverses (M, 3, 3) (inf or NaN where singular) and determinants (M,), by
    the adjugate: ~8x faster than ``np.linalg.solve`` on a frame's thousand small triangles."""
    first, second, third = matrices[:, 0], matrices[:, 1], matrices[:, 2]  # rows, (M, 3) each
    columns = np.stack([np.cross(second, third), np.cross(third, first), np.cross(first, second)], axis=2)
    determinant = np.einsum("mi,mi->m", first, columns[:, :, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return columns / determinant[:, None, None], determinant


def warp_with_map(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 grey warped by a backward map (h, w) -> ((h, w) uint8, (h, w) bool inside the
    mesh and the image). Outside, the pixel is left 0 and marked False."""
    # (NaN fails every comparison: no finiteness test needed)
    inside = (map_x >= 0) & (map_y >= 0) & (map_x <= image.shape[1] - 1) & (map_y <= image.shape[0] - 1)
    warped = cv2.remap(image, np.where(inside, map_x, -1).astype(np.float32, copy=False),
                       np.where(inside, map_y, -1).astype(np.float32, copy=False), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped, inside


def aggregate_at(flow: np.ndarray, weight: np.ndarray, points: np.ndarray, sigma_px: float) -> np.ndarray:
    """The flow (H, W, 2) px read at (N, 2) points px as a Gaussian-weighted average over its
    neighbourhood (std ``sigma_px``; 0: the bilinear single-point reading), pixels weighted by
    ``weight`` (H, W) in 0..1 (0 where the flow is not to be trusted). (N, 2) px, NaN where
    no weight reaches the point or it is outside the field."""
    # Worked a channel at a time: numpy's operations along a last axis of 2 are ~10x slower.
    finite = np.isfinite(flow[..., 0]) & np.isfinite(flow[..., 1])
    weight = np.where(finite, weight, 0.0).astype(np.float32)
    trusted = weight > 0
    clean = np.empty(flow.shape, np.float32)  # (H, W, 2) the flow, 0 where untrusted
    for channel in range(2):
        clean[..., channel] = np.where(trusted, flow[..., channel], 0.0)
    if sigma_px <= 0:
        values = sample_bilinear(clean, points)
        inside = sample_bilinear(weight[..., None], points)[:, 0]
        values[~(inside > 0.999)] = np.nan
        return values
    size = 2 * int(np.ceil(3 * sigma_px)) + 1
    for channel in range(2):
        clean[..., channel] *= weight  # the numerator's field: the flow times its weight
    numerator = cv2.GaussianBlur(clean, (size, size), sigma_px, borderType=cv2.BORDER_CONSTANT)
    denominator = cv2.GaussianBlur(weight, (size, size), sigma_px, borderType=cv2.BORDER_CONSTANT)

    def averaged(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:  # (n, 2): only where the points read it
        below = denominator[rows, columns]
        with np.errstate(invalid="ignore", divide="ignore"):
            values = numerator[rows, columns] / below[:, None]
        values[below < 0.2] = np.nan  # too little trusted flow near the point
        return values

    return bilinear_taps(points, weight.shape).combine(averaged)


def window_around(points_px: np.ndarray, image_shape: tuple[int, int], margin_px: int) -> tuple[tuple[int, int],
                                                                                                 tuple[int, int]]:
    """The (x0, y0) origin and (h, w) shape of the window of ``image_shape`` (H, W) covering the
    finite (N, 2) points px with ``margin_px`` a side."""
    finite = points_px[np.all(np.isfinite(points_px), axis=1)]
    x0 = max(int(np.floor(finite[:, 0].min())) - margin_px, 0)
    y0 = max(int(np.floor(finite[:, 1].min())) - margin_px, 0)
    x1 = min(int(np.ceil(finite[:, 0].max())) + margin_px + 1, image_shape[1])
    y1 = min(int(np.ceil(finite[:, 1].max())) + margin_px + 1, image_shape[0])
    return (x0, y0), (y1 - y0, x1 - x0)


def high_pass(image: np.ndarray, sigma_px: float, gain: float = 1.0) -> np.ndarray:
    """(H, W) uint8 grey -> (H, W) uint8: the image less its Gaussian blur (std ``sigma_px``), times
    ``gain``, about 128. The studio light's shading changes as the head turns, smoothly; the skin's
    texture does not, so flow between high-passed images follows the texture. ``sigma_px`` 0: unchanged."""
    if sigma_px <= 0:
        return image
    grey = image.astype(np.float32)
    size = 2 * int(np.ceil(3 * sigma_px)) + 1
    detail = grey - cv2.GaussianBlur(grey, (size, size), sigma_px)
    return np.clip(np.rint(128.0 + gain * detail), 0, 255).astype(np.uint8)


def fall_back(tracked_px: np.ndarray, fallback_px: np.ndarray) -> np.ndarray:
    """(..., N, 2) tracked points with NaN where the flow saw nothing (outside the mesh or the
    image) -> the same with those points taken from ``fallback_px`` (e.g. the landmarker's)."""
    missing = ~np.all(np.isfinite(tracked_px), axis=-1, keepdims=True)
    return np.where(missing, fallback_px, tracked_px)


class ReferenceTracker:
    """Tracks skin points by flow from one reference frame, warped to each frame's geometry.

    ``reference`` (H, W) uint8 grey; ``reference_px`` (N, 2) px: the mesh's vertices in the
    reference, which also name the tracked skin points. One instance per thread (DIS keeps buffers;
    it is made at the first frame tracked, so a tracker only ever copied makes none).
    """

    def __init__(self, reference: np.ndarray, reference_px: np.ndarray, settings: SkinTrackSettings | None = None):
        self.settings = settings or SkinTrackSettings()
        self.reference = high_pass(reference, self.settings.highpass_sigma_px, self.settings.highpass_gain)
        self.reference_px = np.asarray(reference_px, np.float64)
        self._dis = None

    def moved_to(self, reference_px: np.ndarray) -> ReferenceTracker:
        """This tracker with the skin points named at ``reference_px`` (N, 2) px instead, for another
        thread: the high-passed reference is shared (read only), the flow's buffers are its own."""
        tracker = ReferenceTracker.__new__(ReferenceTracker)
        tracker.settings, tracker.reference = self.settings, self.reference
        tracker.reference_px = np.asarray(reference_px, np.float64)
        tracker._dis = None
        return tracker

    def track_frame(self, current: np.ndarray, predicted_px: np.ndarray) -> np.ndarray:
        """(H, W) uint8 grey frame and the mesh's vertices (N, 2) px as the frame's geometry
        predicts them (e.g. the neutral posed by the frame's head pose) -> where the skin the
        reference shows at ``reference_px`` is in this frame, (N, 2) px; NaN where unseen."""
        settings = self.settings
        origin, shape = window_around(predicted_px, current.shape, settings.margin_px)
        map_x, map_y = piecewise_affine_map(self.reference_px, predicted_px, origin, shape)
        warped, inside = warp_with_map(self.reference, map_x, map_y)
        window = high_pass(current[origin[1]:origin[1] + shape[0], origin[0]:origin[0] + shape[1]],
                           settings.highpass_sigma_px, settings.highpass_gain)
        if settings.fill_outside:
            warped = np.where(inside, warped, window)
        window = np.ascontiguousarray(window)
        if self._dis is None:
            self._dis = make_dis(self.settings.flow_profile)
        flow = self._dis.calc(warped, window, None)  # (h, w, 2) warped reference -> current
        local = predicted_px - np.array(origin, np.float64)
        offset = aggregate_at(flow, inside.astype(np.float32), local, settings.sigma_px)
        return predicted_px + offset


def rotation_distance(rotations_a: np.ndarray, rotations_b: np.ndarray) -> np.ndarray:
    """The angle (rad) of the rotation between each of (A, 3, 3) head rotations and each of
    (B, 3, 3): (A, B), NaN where either is: how far the view turns between two frames."""
    cosine = (np.einsum("aij,bij->ab", rotations_a, rotations_b) - 1.0) / 2.0
    return np.arccos(np.clip(cosine, -1.0, 1.0))


def choose_references(rotations: np.ndarray, candidates: np.ndarray, primary: int, spacing_rad: float) -> np.ndarray:
    """Reference frames among ``candidates`` (K,) frame indices (the face at rest) such that every
    frame with a head rotation in ``rotations`` (T, 3, 3), NaN where none, lies within
    ``spacing_rad`` of one, or as near as any candidate comes: ``primary`` first, then greedily the
    candidate that brings the most frames within reach. (R,) frame indices. Why: the flow's error
    grows with the turn between the compared frames (docs/OPEN_LOOP.md)."""
    frames = np.flatnonzero(np.all(np.isfinite(rotations), axis=(1, 2)))
    distance = rotation_distance(rotations[candidates], rotations[frames])  # (K, F) rad
    reach = np.maximum(spacing_rad, distance.min(axis=0))  # (F,) a frame no candidate comes near takes its nearest
    covers = distance <= reach + 1e-12  # (K, F)
    chosen = [int(np.flatnonzero(candidates == primary)[0])]
    covered = covers[chosen[0]].copy()
    while not covered.all():
        best = int(np.argmax((covers & ~covered).sum(axis=1)))
        chosen.append(best)
        covered |= covers[best]
    return candidates[chosen]


def reference_links(rotations: np.ndarray, link_rad: float) -> np.ndarray:
    """The pairs of references, with head rotations (R, 3, 3), to compare with each other: every
    pair within ``link_rad``, plus the nearest pair between the primary's (index 0) group and the
    rest while any reference is not tied to it. (E, 2) int64 indices, i < j."""
    distance = rotation_distance(rotations, rotations)  # (R, R) rad
    count = len(rotations)
    links = {(i, j) for i in range(count) for j in range(i + 1, count) if distance[i, j] <= link_rad}
    group = np.arange(count)  # which references are tied together
    for i, j in sorted(links):
        group[group == group[j]] = group[i]
    while np.any(group != group[0]):
        apart = np.where((group[:, None] == group[0]) & (group[None, :] != group[0]), distance, np.inf)
        i, j = np.unravel_index(int(np.argmin(apart)), apart.shape)
        links.add((min(i, j), max(i, j)))
        group[group == group[j]] = group[i]
    return np.array(sorted(links), np.int64).reshape(-1, 2)


def tie_references(links: np.ndarray, offsets_px: np.ndarray, count: int) -> np.ndarray:
    """Where each of ``count`` references shows the primary's (index 0) skin points, as offsets
    from its posed mesh: (count, N, 2) px, 0 for the primary; by least squares over the measured
    ``links`` (E, 2) i -> j with ``offsets_px`` (E, N, 2): where the skin at i's posed mesh vertex
    lies in j, less j's posed vertex (NaN where unseen).

    Between two nearby views the map is close to the identity at this scale (a 0.5 px offset turns
    by under 0.05 px), so offsets add up along a path of links: offset_j = offset_i + measured.
    Where several paths lead to a reference the least squares averages their errors; a point no
    measured path reaches stays at 0 (its posed mesh vertex)."""
    if count == 1:
        return np.zeros((1,) + offsets_px.shape[1:])
    seen = np.all(np.isfinite(offsets_px), axis=2).astype(np.float64)  # (E, N)
    incidence = np.zeros((len(links), count))  # (E, R): -1 at i, +1 at j
    incidence[np.arange(len(links)), links[:, 0]] = -1.0
    incidence[np.arange(len(links)), links[:, 1]] = 1.0
    incidence = incidence[:, 1:]  # the primary is held at 0
    normal = np.einsum("en,ea,eb->nab", seen, incidence, incidence)  # (N, R-1, R-1)
    right = np.einsum("en,ea,enc->nac", seen, incidence, np.nan_to_num(offsets_px))  # (N, R-1, 2)
    ridge = 1e-9 * np.eye(count - 1)  # an unreached reference stays at 0 instead of making the system singular
    solved = np.linalg.solve(normal + ridge, right)  # (N, R-1, 2) px
    return np.concatenate([np.zeros((1, len(solved), 2)), np.transpose(solved, (1, 0, 2))], axis=0)


FACING_CAMERA = np.diag([1.0, -1.0, -1.0])  # a frontal face's rotation, canonical -> OpenCV camera axes


def rest_references(calm: np.ndarray, neutral_frames: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, int]:
    """The frames references may be taken from, (K,): the calm frames and the neutral frames with
    a pose, and the primary among the neutral ones: the one nearest a frontal view. ``rotations``
    (T, 3, 3) canonical -> OpenCV camera (NaN where no face)."""
    neutral = np.asarray([frame for frame in neutral_frames if np.all(np.isfinite(rotations[frame]))], np.int64)
    facing = rotation_distance(rotations[neutral], FACING_CAMERA[None])[:, 0]  # rad from a frontal view
    return np.union1d(calm, neutral), int(neutral[np.argmin(facing)])


def track_with_references(frames: list[np.ndarray], mesh_px: np.ndarray, rotations: np.ndarray,
                          candidates: np.ndarray, primary: int, settings: SkinTrackSettings | None = None,
                          on_frame: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Skin points tracked through a clip from several references at spread-out head poses.

    ``frames``: (H, W) uint8 grey, one per frame; ``mesh_px`` (T, N, 2) px: the face mesh's
    vertices as each frame's head pose places them (NaN where no face); ``rotations`` (T, 3, 3):
    the head's rotation (NaN where no face); ``candidates`` (K,): the frames references may be
    taken from (the face at rest); ``primary``: the one among them whose skin at the mesh's
    vertices names the tracked points. (T, N, 2) px, NaN where unseen (a ``spill.FrameFile`` in
    the engine).

    References are spread so that no frame is more than ``settings.reference_spacing_deg`` of turn
    from one (``choose_references``), and each frame is compared with its nearest. Every reference
    is compared with those within ``settings.link_deg``, both ways, and ``tie_references`` finds
    where each shows the primary's skin points: its own tracker names the same skin. ``on_frame``
    (frames done, frames) is told as each frame is tracked."""
    settings = settings or SkinTrackSettings()
    references = choose_references(rotations, candidates, primary, np.radians(settings.reference_spacing_deg))
    links = reference_links(rotations[references], np.radians(settings.link_deg))
    links = np.concatenate([links, links[:, ::-1]])  # both ways: each tie's error partly cancels
    posed = [ReferenceTracker(frames[r], mesh_px[r], settings) for r in references]  # (R,) at the posed mesh
    own = threading.local()  # each worker thread's own trackers (DIS keeps buffers), sharing posed's images

    def measure_link(i: int, j: int) -> np.ndarray:  # (N, 2) px: where i's posed skin lies in j, less j's posed mesh
        if not hasattr(own, "posed"):
            own.posed = [tracker.moved_to(tracker.reference_px) for tracker in posed]
        return own.posed[i].track_frame(frames[references[j]], mesh_px[references[j]]) - mesh_px[references[j]]

    def track(frame: int, image: np.ndarray, k: int) -> np.ndarray:  # (N, 2) px
        if not hasattr(own, "trackers"):
            own.trackers = [tracker.moved_to(tracker.reference_px + offsets[i]) for i, tracker in enumerate(posed)]
        return own.trackers[k].track_frame(image, mesh_px[frame])

    with_face = np.flatnonzero(np.all(np.isfinite(rotations), axis=(1, 2)))
    nearest = np.argmin(rotation_distance(rotations[with_face], rotations[references]), axis=1)  # (F,)
    tracked = frame_array(mesh_px.shape, np.float64)  # on disk in the engine (ops/spill.py)
    reference_of = dict(zip(with_face.tolist(), nearest.tolist()))
    # The references' ties are measured side by side in worker threads, then the frames are decoded
    # here, in order, and tracked side by side (OpenCV's flow, blurs and warps run outside Python's
    # lock: ~1.3x faster on two cores, the same points); a few frames are in flight at a time, and
    # they are stored and reported in order.
    workers = min(TRACK_THREADS, os.cpu_count() or 1)
    pending: deque[tuple[int, Future | None]] = deque()

    def finish_oldest() -> None:
        frame, result = pending.popleft()
        tracked[frame] = np.nan if result is None else result.result()
        if on_frame is not None:
            on_frame(frame + 1, len(rotations))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        ties = [pool.submit(measure_link, i, j) for i, j in links]  # the references compared side by side too
        try:
            measured = np.array([tie.result() for tie in ties], np.float64).reshape(len(links), *mesh_px.shape[1:])
            offsets = tie_references(links, measured, len(references))  # (R, N, 2) px
            for frame in range(len(rotations)):
                k = reference_of.get(frame)
                pending.append((frame, None if k is None else pool.submit(track, frame, frames[frame], k)))
                if len(pending) > 2 * workers:
                    finish_oldest()
            while pending:
                finish_oldest()
        except BaseException:  # a cancel or a failure: the ties and frames in flight are not waited for
            for result in ties + [result for _, result in pending]:
                if result is not None:
                    result.cancel()
            raise
    return tracked


class SourceFrames:
    """A clip's frames as grey images by take frame, for ``track_with_references``: the references
    (asked for first) are decoded up front and kept, every other frame is decoded once, in order,
    as the tracking reaches it, so a long clip is never held whole. ``frame_indices`` (T,): each
    take frame's source frame index."""

    def __init__(self, video_path: Path, frame_indices: np.ndarray, kept: np.ndarray) -> None:
        self.frame_indices = np.asarray(frame_indices, np.int64)
        wanted = [int(self.frame_indices[k]) for k in kept]
        decoded = read_frames_at(video_path, wanted)
        self.kept = {int(k): _grey(decoded[int(self.frame_indices[k])]) for k in kept
                     if int(self.frame_indices[k]) in decoded}
        self._stream = iter_frames(video_path, start_frame=int(self.frame_indices[0]),
                                   end_frame=int(self.frame_indices[-1]) + 1)

    def __getitem__(self, frame: int) -> np.ndarray:
        """Take frame ``frame``: a kept one at any time, the others in increasing order only."""
        if frame in self.kept:
            return self.kept[frame]
        wanted = int(self.frame_indices[frame])
        for index, _, image in self._stream:
            if index == wanted:
                return _grey(image)
            if index > wanted:
                break
        raise MxrError(f"source frame {wanted} could not be decoded again for skin tracking")


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
