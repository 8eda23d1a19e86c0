"""Take -> network inputs (numpy only, so the runner needs neither torch nor the front-end).

What the network sees per frame, all in the take's canonical frame (mm, +X subject's left, +Y up,
+Z out of the face):
- ``landmarks_mm``: the baseline's canonical displacement (faces_mm - neutral_mm); noisy (landmark
  jitter is about the size of a micro-expression) but drift-free;
- ``flow_mm``: the optical flow at the landmarks, rigid head motion taken out, carried into the
  canonical frame as each landmark's displacement since the previous frame; precise (a few hundredths of a pixel) but only
  2D, and it drifts when integrated. The two are complementary: the network fuses them;
- ``flow_mask``: flow is usable (forward-backward consistent, both frames valid);
- ``fused_mm``: the two fused over the whole take in expression-coefficient space
  (``fusion.fuse_take``): far less jitter than the landmarks, no drift, depth filled in by the
  basis; what the basis cannot express stays in ``landmarks_mm``;
- ``valid``: the frame has a face;
- ``geometry``: neutral position and normal per landmark (the mesh the deformation lives on);
- ``fps``: flow is per frame, so the frame rate tells the network how fast "per frame" is: one
  model serves 24-200 fps.

The mesh graph (``mesh_graph``) is the MediaPipe tessellation with each landmark's neighbours
padded to a fixed ``k`` (ONNX-friendly gathers instead of a dense 478 x 478 adjacency); the iris
points, which the tessellation leaves out, are linked to their ring and their eye's contour.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from ...ops.canonical import IRIS_LANDMARKS, RIGID_LANDMARKS
from ...ops.spill import frame_array
from ...ops.take import LANDMARK_COUNT, Take, analysis_clock
from .fusion import basis_in_take_frame, fuse_take

NEIGHBOURS = 8  # k: padded neighbour count per landmark
EVENT_REGIONS = ("brows", "eyes", "nose", "cheeks", "mouth", "jaw")
_IRIS = {468: (469, 470, 471, 472), 473: (474, 475, 476, 477)}  # centre -> ring (subject's right, left)


@dataclass
class NetworkInputs:
    """One take's per-frame inputs; invalid/unobserved entries are zero with their mask False.

    The landmarks and the fused track are made a window at a time (``landmarks_at``, ``fused_at``)
    from the take's own macro layer and the fused coefficients: a long take holds its deformation
    once, not three times (3 x 5.6 KB a frame)."""

    macro_mm: np.ndarray  # (T, 478, 3) the baseline's displacement from neutral (the take's), NaN without a face
    flow_mm: np.ndarray  # (T, 478, 3) float32 canonical displacement t-1 -> t
    flow_mask: np.ndarray  # (T, 478) bool
    valid: np.ndarray  # (T,) bool
    fused_coefficients: np.ndarray  # (T, K) float64 landmarks + flow fused, in the open head's expression units
    basis_mm: np.ndarray  # (K, 478, 3) float64 those units in the take's frame, mm per unit
    geometry: np.ndarray  # (478, 6) float32 neutral position (mm) and unit normal
    seconds: np.ndarray  # (T,) float64 s since the first frame (``take.analysis_clock``)
    fps: float  # frames per second of real time that per-frame motion is read at

    @property
    def frame_count(self) -> int:
        return int(self.valid.shape[0])

    @property
    def coefficients(self) -> np.ndarray:
        """(T, K) float32 the fused track in the open head's expression units."""
        return self.fused_coefficients.astype(np.float32)

    @property
    def landmarks_mm(self) -> np.ndarray:
        """(T, 478, 3) float32 baseline displacement from neutral (``landmarks_at`` every frame)."""
        return self.landmarks_at(slice(None))

    @property
    def fused_mm(self) -> np.ndarray:
        """(T, 478, 3) float32 landmarks + flow, fused (``fused_at`` every frame)."""
        return self.fused_at(slice(None))

    def landmarks_at(self, frames: slice | np.ndarray) -> np.ndarray:
        """(..., 478, 3) float32 the baseline's displacement at ``frames`` (any index shape), zero
        without a face."""
        landmarks = np.nan_to_num(self.macro_mm[frames].astype(np.float32))
        return np.where(self.valid[frames][..., None, None], landmarks, 0.0).astype(np.float32)

    def fused_at(self, frames: slice | np.ndarray) -> np.ndarray:
        """(..., 478, 3) float32 the fused deformation at ``frames`` (any index shape), zero without
        a face: the basis' units at the fused coefficients."""
        fused = np.tensordot(self.fused_coefficients[frames], self.basis_mm, axes=1).astype(np.float32)
        return np.where(self.valid[frames][..., None, None], fused, 0.0).astype(np.float32)


FLOW_CHUNK_FRAMES = 256  # frames whose flow is carried into the face frame at a time (~30 MB of work arrays)


def canonical_flow_mm(take: Take) -> tuple[np.ndarray, np.ndarray]:
    """Flow at the landmarks (crop px, t-1 -> t) -> canonical mm displacement of each landmark.

    The stabilised crops remove rigid motion only in the image plane, so the flow also carries
    out-of-plane rotation and the crops' own jitter. Both are taken out exactly with what the
    take records: the landmark is followed from frame t-1's crop (its similarity) back into
    source px through frame t's crop similarity, and compared with where frame t's head pose puts
    the canonical face of frame t-1 (rigid motion only). The rest, in the camera frame (x right,
    y up) / head scale, rotated by R_t^T, is the non-rigid displacement in the canonical frame.
    The camera z of the flow is unobserved (zero): the result is the image-plane part of the
    true motion, carried into the face frame.
    Returns flow (T, 478, 3) float32 (zero where unusable) and mask (T, 478) bool.
    """
    count = take.frame_count
    flow = frame_array((count, LANDMARK_COUNT, 3), np.float32)  # on disk in the engine (ops/spill.py)
    mask = frame_array((count, LANDMARK_COUNT), bool)
    if count < 2:
        return flow, mask
    valid = np.asarray(take.valid, bool)
    crops = take.crop_from_image.astype(np.float64)  # (T, 2, 3)
    usable_frame = valid & np.all(np.isfinite(crops), axis=(1, 2)) & np.isfinite(take.head_scale_px_per_mm)
    pair = np.zeros(count, bool)
    pair[1:] = usable_frame[1:] & usable_frame[:-1]
    for frames in np.array_split(np.flatnonzero(pair), max(1, int(pair.sum()) // FLOW_CHUNK_FRAMES + 1)):
        if len(frames):  # frames t with a usable t-1, a chunk at a time: memory stays flat in clip length
            flow[frames], mask[frames] = _canonical_flow_frames(take, crops, frames)
    return flow, mask



def _canonical_flow_frames(take: Take, crops: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``canonical_flow_mm`` at ``frames`` (F,) (each with a usable frame before it), with the
    take's crop similarities ``crops`` (T, 2, 3): the flow (F, 478, 3) float32 mm, zero where
    unusable, and its mask (F, 478) bool."""
    before = take.landmarks_px[frames - 1, :, :2].astype(np.float64)  # (F, 478, 2) source px at t-1
    in_crop = np.einsum("fij,fnj->fni", crops[frames - 1, :, :2], before) + crops[frames - 1, None, :, 2]
    moved = in_crop + take.flow_at_landmarks_px[frames].astype(np.float64) - crops[frames, None, :, 2]
    after = np.linalg.solve(crops[frames, None, :, :2], moved[..., None])[..., 0]  # (F, 478, 2) source px at t
    rotation = take.head_rotation[frames].astype(np.float64)  # (F, 3, 3) canonical -> camera, frame t
    scale = take.head_scale_px_per_mm[frames].astype(np.float64)[:, None, None]
    face_before = take.neutral_mm[None].astype(np.float64) + take.macro_mm[frames - 1].astype(np.float64)
    rigid = scale * np.einsum("fij,fnj->fni", rotation, face_before) + take.head_translation_px[frames, None]
    after = np.stack([after[..., 0], -after[..., 1]], axis=-1)  # camera px (y up)
    # The baseline poses jitter with the landmarks (noisy landmarks give a noisy pose, out of plane
    # too); the flow does not. Refit frame t's rigid motion on the flow-followed rigid landmarks
    # whose flow passed the consistency check: a small 3-D rotation, image-plane shift and scale
    # about their centre. A 2-D similarity leaves the out-of-plane part of the pose jitter (a yaw
    # of 0.3 deg moves the nose tip against the cheeks by ~0.2 mm) in every flow step; on
    # synthetic takes without flow noise this refit cuts that error 2-3x.
    consistent = take.flow_consistent[frames][:, RIGID_LANDMARKS].astype(np.float64)  # (F, 35)
    increment, centre = fit_rigid_increments(rigid[:, RIGID_LANDMARKS], after[:, RIGID_LANDMARKS], consistent)
    rigid = rigid[..., :2] + rigid_increment_motion(increment, centre, rigid)
    residual = np.concatenate([after - rigid, np.zeros_like(after[..., :1])], axis=-1) / scale  # (F, 478, 3) camera mm
    canonical = np.einsum("fji,fnj->fni", rotation, residual)  # R^T v
    usable = take.flow_consistent[frames] & np.all(np.isfinite(canonical), axis=-1)
    return np.where(usable[..., None], canonical, 0.0).astype(np.float32), usable


RIGID_INCREMENT_PARAMETERS = 6  # shift x, shift y, relative scale, rotation about x, y, z (rad)


def fit_rigid_increments(points: np.ndarray, moved: np.ndarray,
                         weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Small rigid motions taking 3-D points (F, N, 3) (camera px, y up) to their observed image
    positions (F, N, 2), weighted least squares with weights (F, N) >= 0, linearised about the
    points' weighted centre: moved ~ points_xy + shift + scale * c_xy + (omega x c)_xy, with
    c = points - centre. -> increments (F, 6) [shift_x, shift_y, scale, omega_x, omega_y,
    omega_z (rad)] and centres (F, 3) camera px."""
    w = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)  # (F, N)
    centre = np.einsum("fn,fni->fi", w, points)
    jacobian = _rigid_increment_jacobian(points, centre)  # (F, N, 2, 6)
    residual = moved - points[..., :2]  # (F, N, 2)
    normal = np.einsum("fn,fnai,fnaj->fij", w, jacobian, jacobian) + 1e-9 * np.eye(RIGID_INCREMENT_PARAMETERS)
    right = np.einsum("fn,fnai,fna->fi", w, jacobian, residual)
    return np.linalg.solve(normal, right[..., None])[..., 0], centre


def rigid_increment_motion(increment: np.ndarray, centre: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The image motion (F, N, 2) px of points (F, N, 3) under increments (F, 6) about centres
    (F, 3), both from ``fit_rigid_increments``."""
    return np.einsum("fnai,fi->fna", _rigid_increment_jacobian(points, centre), increment)


def _rigid_increment_jacobian(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """d(image motion)/d(increment) at each point: (F, N, 3), (F, 3) -> (F, N, 2, 6)."""
    x, y, z = np.moveaxis(points - centre[:, None], -1, 0)  # (F, N) each
    one, zero = np.ones_like(x), np.zeros_like(x)
    motion_x = np.stack([one, zero, x, zero, z, -y], axis=-1)  # (omega x c)_x = omega_y z - omega_z y
    motion_y = np.stack([zero, one, y, -z, zero, x], axis=-1)  # (omega x c)_y = omega_z x - omega_x z
    return np.stack([motion_x, motion_y], axis=-2)


def take_inputs(take: Take, on_progress: Callable[[int, int], None] | None = None) -> NetworkInputs:
    """Everything the network reads from a take (baseline reconstruction + front-end observations).
    ``on_progress(done, total)``: frames fused so far (the long part)."""
    flow, mask = canonical_flow_mm(take)
    basis = basis_in_take_frame(take.neutral_mm)
    coefficients = fuse_take(take, flow, mask, basis, on_progress)
    neutral = take.neutral_mm.astype(np.float64)
    geometry = np.concatenate([neutral, vertex_normals(neutral)], axis=1).astype(np.float32)
    seconds, fps = analysis_clock(take)
    return NetworkInputs(take.macro_mm, flow, mask, np.asarray(take.valid, bool), coefficients, basis, geometry,
                         seconds, fps)


def resample_track(values: np.ndarray, seconds: np.ndarray, rate_hz: float) -> np.ndarray:
    """A per-frame track (T, C) at its frames' times ``seconds`` (T,) -> the same track at about
    ``rate_hz`` (n, C), linear. The samples span exactly the first to the last frame's time (the
    rate is adjusted by under a sample over the take), so ``track_to_frames`` gives a linear track
    back exactly: what lets one temporal model serve 24-200 fps, and variable-rate clips."""
    duration_s = float(seconds[-1] - seconds[0])
    times = np.linspace(seconds[0], seconds[-1], int(round(duration_s * rate_hz)) + 1)
    return np.stack([np.interp(times, seconds, values[:, c]) for c in range(values.shape[1])], axis=1)


def track_to_frames(values: np.ndarray, rate_hz: float, seconds: np.ndarray) -> np.ndarray:
    """The inverse of ``resample_track``: (n, C) -> (T, C) at the frames' times ``seconds`` (T,)."""
    times = np.linspace(seconds[0], seconds[-1], len(values))
    return np.stack([np.interp(seconds, times, values[:, c]) for c in range(values.shape[1])], axis=1)


def window_starts(frame_count: int, window: int, stride: int) -> np.ndarray:
    """Window start frames covering [0, frame_count): regular strides, the last flush with the end."""
    if frame_count <= window:
        return np.zeros(1, np.int64)
    starts = np.arange(0, frame_count - window + 1, stride)
    if starts[-1] != frame_count - window:
        starts = np.append(starts, frame_count - window)
    return starts.astype(np.int64)


def windowed(inputs: NetworkInputs, starts: np.ndarray, window: int) -> dict[str, np.ndarray]:
    """Batched network inputs, one row per window start (a take shorter than ``window`` is padded
    with invalid frames): the ONNX model's input dict."""
    count = inputs.frame_count
    frames = starts[:, None] + np.arange(window)[None]  # (B, W)
    inside = frames < count
    frames = np.minimum(frames, count - 1)
    batch = len(starts)
    valid = inputs.valid[frames] & inside  # (B, W)
    mask = inputs.flow_mask[frames] & valid[..., None]  # (B, W, 478)
    return {
        "landmarks_mm": np.where(valid[..., None, None], inputs.landmarks_at(frames), 0.0).astype(np.float32),
        "flow_mm": np.where(mask[..., None], inputs.flow_mm[frames], 0.0).astype(np.float32),
        "flow_mask": mask[..., None].astype(np.float32),  # (B, W, 478, 1)
        "valid": valid[..., None].astype(np.float32),  # (B, W, 1)
        "geometry": np.broadcast_to(inputs.geometry, (batch,) + inputs.geometry.shape).astype(np.float32),
        "fps": np.full((batch, 1), inputs.fps, np.float32),
        "fused_mm": np.where(valid[..., None, None], inputs.fused_at(frames), 0.0).astype(np.float32),
    }


def vertex_normals(points: np.ndarray) -> np.ndarray:
    """Unit normals (478, 3) of a landmark cloud (478, 3): the least-variance direction of each
    landmark's graph neighbourhood, turned to face +Z (out of the face)."""
    neighbours, weights = mesh_graph()
    patch = points[neighbours]  # (478, K, 3)
    centred = patch - points[:, None, :]
    covariance = np.einsum("nk,nki,nkj->nij", weights, centred, centred)
    normals = np.linalg.eigh(covariance)[1][..., 0]  # smallest eigenvalue's vector
    return normals * np.where(normals[:, 2:3] < 0, -1.0, 1.0)


@lru_cache(maxsize=None)
def _tessellation_edges() -> np.ndarray:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LEFT_EYE, FACEMESH_RIGHT_EYE, FACEMESH_TESSELATION

    _release_mediapipe_import_stack()
    edges = {tuple(sorted(edge)) for edge in FACEMESH_TESSELATION}
    contours = {468: FACEMESH_RIGHT_EYE, 473: FACEMESH_LEFT_EYE}  # mediapipe's left = subject's left
    reference = _reference_landmarks()
    for centre, ring in _IRIS.items():
        contour = np.array(sorted({i for edge in contours[centre] for i in edge}))
        for position, point in enumerate(ring):
            edges.add((centre, point))
            edges.add(tuple(sorted((point, ring[(position + 1) % len(ring)]))))
            distance = np.linalg.norm(reference[contour] - reference[point], axis=1)
            for nearest in contour[np.argsort(distance)[:2]]:
                edges.add(tuple(sorted((int(nearest), point))))
    return np.array(sorted(edges), np.int64)


def _release_mediapipe_import_stack() -> None:
    """Let go of the stack MediaPipe's first import was made from. Its audio module keeps the error
    of a missing PortAudio (``audio_record.sd_error``) with its traceback, which holds every frame
    that was running then, with their arrays, for the life of the process: the engine first
    imports it here, deep in a run (``take_inputs`` -> ``vertex_normals`` on a cached front-end),
    which kept the network's inputs, outputs and take (~40 KB a frame) after the run was done."""
    audio = sys.modules.get("mediapipe.tasks.python.audio.core.audio_record")
    error = getattr(audio, "sd_error", None)
    if error is not None:
        error.__traceback__ = None


@lru_cache(maxsize=None)
def _reference_landmarks() -> np.ndarray:
    """The open head's neutral landmarks (478, 3): a face-shaped layout for choosing neighbours."""
    from ..open_head import load_open_head

    return load_open_head().landmark_positions().astype(np.float64)


@lru_cache(maxsize=None)
def mesh_graph(k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """Padded neighbour lists of the canonical face mesh: indices (478, k) int64 and averaging
    weights (478, k) float32 (1/degree on real neighbours, 0 on padding; padding points at the
    landmark itself so gathers stay in range). Landmarks with more than k neighbours keep the k
    nearest on the open head. Symmetric wherever no landmark was truncated."""
    edges = _tessellation_edges()
    reference = _reference_landmarks()
    indices = np.repeat(np.arange(LANDMARK_COUNT)[:, None], k, axis=1)
    weights = np.zeros((LANDMARK_COUNT, k), np.float32)
    for node in range(LANDMARK_COUNT):
        linked = np.concatenate([edges[edges[:, 0] == node, 1], edges[edges[:, 1] == node, 0]])
        linked = linked[np.argsort(np.linalg.norm(reference[linked] - reference[node], axis=1))][:k]
        indices[node, : len(linked)] = linked
        weights[node, : len(linked)] = 1.0 / len(linked)
    return indices, weights


@lru_cache(maxsize=None)
def region_membership(regions: tuple[str, ...] = EVENT_REGIONS) -> np.ndarray:
    """(R, 478) float32 averaging matrix: row r is 1/n on the n landmarks of region r.

    A landmark belongs to the open-head region that holds most of the vertices of the triangle it
    sits on (regions later in ``regions`` win ties); 'eyes' excludes the eyeballs' own vertices,
    so the irises (which sit on the eyeballs, in no region) are given to 'eyes' by name: until
    mxr-micro-3 they fell to the last region, the jaw, whose pooled motion then carried the gaze.
    """
    from ..open_head import load_open_head

    head = load_open_head()
    triangles = head.landmarks.triangles  # (478, 3) vertex indices of each landmark's triangle
    votes = np.zeros((len(regions), LANDMARK_COUNT))
    for row, name in enumerate(regions):
        members = np.zeros(head.vertex_count, bool)
        members[head.regions[name]] = True
        votes[row] = members[triangles].sum(axis=1) + 1e-3 * row
    owner = np.argmax(votes, axis=0)
    if "eyes" in regions:
        owner[IRIS_LANDMARKS] = regions.index("eyes")
    membership = np.zeros((len(regions), LANDMARK_COUNT), np.float32)
    membership[owner, np.arange(LANDMARK_COUNT)] = 1.0
    return membership / np.maximum(membership.sum(axis=1, keepdims=True), 1.0)
