"""Known motion injected into real footage: open-loop truth with real pixels.

Why: the rendered scan (``models/scan_actions.py``) has exact truth but rendered skin, light and
noise; labelled real frames have real pixels but only a person's reading as truth. Here real
frames are warped by a known, smooth displacement field attached to the tracked face, so texture,
noise and compression are real and the injected motion is exact: the take of the injected clip
less the take of the original must be the planted motion.

Three parts:

1. **Planted motion** in the face's canonical frame (mm, on the 478 MediaPipe landmarks), owing
   nothing to any head model: per facial action (after FACS), a few anatomically chosen centre
   landmarks each drag the skin near them along a direction, with a Gaussian falloff in the
   geodesic distance over the neutral's mesh (so the upper lip does not drag the lower one across
   the mouth, nor a brow the lid across the eye). Directions lie in the face's own frontal plane
   (``face_axes``; the engine reads no depth motion). Events play an action with a smooth time
   course: micro events (0.15-0.5 s, peaks 0.5-1.5 mm) and macro ones (seconds, 2-5 mm).
2. **Projection** into the image through the original clip's take: each landmark's displacement
   (mm) moves its posed point, and the pinhole camera the take was solved with gives the image
   displacement (px); the pose and the landmarks are smoothed in time first, so the tracker's
   jitter does not move the field.
3. **Warp**: the dense field over the face is piecewise-linear over a Delaunay triangulation of the
   landmarks, feathered to zero on a ring outside the face's outline, applied with ``cv2.remap``
   (exact at the landmarks: the pixel under a landmark lands where the planted motion puts it).

numpy + OpenCV (+ scipy's Dijkstra for the geodesics); no bpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..models.network.event_profile import smoothstep
from .canonical import INNER_LIPS, SKIN_LANDMARK_COUNT
from .perspective import camera_of_take
from .skin_track import piecewise_affine_map
from .take import Take

# -- landmarks (MediaPipe face mesh; "left" is the subject's left, +X in canonical space) -------------
EYE_CORNERS_LEFT, EYE_CORNERS_RIGHT = (263, 362), (33, 133)
CHIN, FOREHEAD = 152, 10
FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
                      152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109])
FEATHER_SCALE = 1.35  # the ring where the field is zero: the outline scaled about the face's centre
SMOOTH_LANDMARKS_S = 0.03  # std of the temporal smoothing of the landmarks the field is attached to
SMOOTH_POSE_S = 0.1  # ... and of the head pose that projects it


# -- 1. planted motion -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class InjectedAction:
    """A localized field: each anchor (landmark, direction in the face frame (+x the subject's
    left, +y up, +z out), relative size) drags nearby skin; pairs are (subject's left, right)
    landmarks with the direction given for the left side and mirrored in x for the right."""

    name: str
    pairs: tuple[tuple[int, int, tuple[float, float, float]], ...]
    midline: tuple[tuple[int, tuple[float, float, float]], ...]
    radius_mm: float  # Gaussian std of the falloff, geodesic mm on the neutral
    still: tuple[int, ...] = ()  # landmarks held still (the field fades to zero towards them) ...
    still_radius_mm: float = 0.0  # ... over this many mm


UP, DOWN = (0.0, 1.0, 0.0), (0.0, -1.0, 0.0)
ACTIONS: tuple[InjectedAction, ...] = (
    InjectedAction("inner_brow_raise", ((336, 107, UP), (285, 55, UP)), ((9, (0.0, 0.7, 0.0)),), 11.0),
    InjectedAction("outer_brow_raise", ((300, 70, UP), (276, 46, UP), (334, 105, (0.0, 0.6, 0.0))), (), 11.0),
    InjectedAction("brow_lower", ((336, 107, (-0.6, -1.0, 0.0)), (285, 55, (-0.6, -1.0, 0.0)),
                                  (296, 66, (-0.4, -0.7, 0.0))), (), 10.0),
    InjectedAction("lid_tighten", ((374, 145, UP), (380, 153, (0.0, 0.8, 0.0)), (373, 144, (0.0, 0.8, 0.0))), (), 5.0),
    InjectedAction("cheek_raise", ((330, 101, UP), (347, 118, (0.0, 0.8, 0.0))), (), 11.0),
    InjectedAction("nose_wrinkle", ((420, 198, UP), (456, 236, (0.0, 0.8, 0.0))), (), 7.0),
    InjectedAction("upper_lip_raise", ((267, 37, UP), (269, 39, UP), (270, 40, (0.0, 0.7, 0.0))), ((0, UP),), 7.0,
                   tuple(INNER_LIPS[11:]), 3.0),
    InjectedAction("lip_corner_pull", ((291, 61, (0.7, 0.7, 0.0)),), (), 11.0),
    InjectedAction("lip_corner_depress", ((291, 61, (0.15, -1.0, 0.0)),), (), 10.0),
    InjectedAction("chin_raise", ((421, 201, (0.0, 0.8, 0.0)),), ((18, UP), (200, UP)), 11.0, tuple(INNER_LIPS), 4.0),
    InjectedAction("lip_press", ((267, 37, DOWN), (314, 84, UP)), ((0, DOWN), (17, UP)), 4.0, tuple(INNER_LIPS), 3.0),
)
ACTION_NAMES = tuple(action.name for action in ACTIONS)


def face_axes(neutral_mm: np.ndarray) -> np.ndarray:
    """(3, 3) rows: the face's own x (towards the subject's left eye), y (up, chin to forehead,
    orthogonal to x) and z (out of the face), as unit vectors in the canonical frame of
    ``neutral_mm`` (478, 3) mm."""
    x = neutral_mm[list(EYE_CORNERS_LEFT)].mean(axis=0) - neutral_mm[list(EYE_CORNERS_RIGHT)].mean(axis=0)
    x /= np.linalg.norm(x)
    y = neutral_mm[FOREHEAD] - neutral_mm[CHIN]
    y -= (y @ x) * x
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)])


@lru_cache(maxsize=1)
def mesh_edges() -> np.ndarray:
    """(E, 2) int64: the skin edges of MediaPipe's face mesh (the eyes and the mouth are holes)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    return np.array(sorted({tuple(sorted(edge)) for edge in FACEMESH_TESSELATION}), np.int64)


def geodesic_mm(neutral_mm: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """(S, 468) mm: shortest paths along the mesh's edges (lengths on the neutral (478, 3) mm) from
    each of the ``sources`` (S,) skin landmarks to every skin landmark."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    edges = mesh_edges()
    edges = edges[np.all(edges < SKIN_LANDMARK_COUNT, axis=1)]
    lengths = np.linalg.norm(neutral_mm[edges[:, 0]] - neutral_mm[edges[:, 1]], axis=1)
    graph = coo_matrix((lengths, (edges[:, 0], edges[:, 1])), shape=(SKIN_LANDMARK_COUNT,) * 2).tocsr()
    return dijkstra(graph, directed=False, indices=np.asarray(sources, np.int64))


def _anchors(action: InjectedAction, axes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The action's anchor landmarks (A,) and their directions (A, 3) in the canonical frame."""
    indices, directions = [], []
    for left, right, direction in action.pairs:
        indices += [left, right]
        directions += [direction, (-direction[0], direction[1], direction[2])]
    for index, direction in action.midline:
        indices.append(index)
        directions.append(direction)
    return np.array(indices, np.int64), np.array(directions, np.float64) @ axes  # face frame -> canonical


def action_field(action: InjectedAction, neutral_mm: np.ndarray) -> np.ndarray:
    """(478, 3) canonical mm: the action at intensity 1, its largest landmark move 1 mm; the irises
    (gaze, not skin) do not move. Overlapping anchors do not add up past one anchor's pull."""
    neutral_mm = np.asarray(neutral_mm, np.float64)
    indices, directions = _anchors(action, face_axes(neutral_mm))
    distance = geodesic_mm(neutral_mm, indices)  # (A, 468)
    weights = np.exp(-0.5 * (distance / action.radius_mm) ** 2)  # (A, 468)
    skin = (weights.T @ directions) / np.maximum(1.0, weights.sum(axis=0))[:, None]  # (468, 3)
    if action.still:
        near = geodesic_mm(neutral_mm, np.array(action.still)).min(axis=0)  # (468,)
        skin *= smoothstep(near / action.still_radius_mm)[:, None]
    field = np.zeros((len(neutral_mm), 3))
    field[:SKIN_LANDMARK_COUNT] = skin
    return field / np.linalg.norm(field, axis=1).max()


def action_fields(neutral_mm: np.ndarray) -> np.ndarray:
    """(A, 478, 3) mm: every action of ``ACTIONS`` at intensity 1 on this neutral."""
    return np.stack([action_field(action, neutral_mm) for action in ACTIONS])


@dataclass(frozen=True)
class PlantedEvent:
    """One action played once: it rises from ``onset_s`` to ``apex_s`` (a raised cosine), holds
    ``hold_s``, falls back to zero at ``offset_s``; ``peak_mm`` is its largest landmark move."""

    action: str
    kind: str  # "micro" or "macro"
    onset_s: float
    apex_s: float
    hold_s: float
    offset_s: float
    peak_mm: float

    def frames(self, times_s: np.ndarray) -> tuple[int, int, int]:
        """(onset, apex, offset) frames: the last still frame before the rise, the first frame at
        the sampled envelope's top, the first still frame after the fall."""
        curve = envelope(times_s, self)
        apex = int(np.argmax(curve))
        rest = np.flatnonzero(curve <= 0.0)
        before, after = rest[rest < apex], rest[rest > apex]
        return (int(before[-1]) if len(before) else 0, apex,
                int(after[0]) if len(after) else len(times_s) - 1)


def envelope(times_s: np.ndarray, event: PlantedEvent) -> np.ndarray:
    """(T,) 0..1: the event's time course (raised-cosine rise and fall, a flat hold between)."""
    rise = np.clip((times_s - event.onset_s) / (event.apex_s - event.onset_s), 0.0, 1.0)
    fall = np.clip((event.offset_s - times_s) / (event.offset_s - event.apex_s - event.hold_s), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))


@dataclass(frozen=True)
class EventPlan:
    """How a clip's events are drawn (s, mm)."""

    micro_duration_s: tuple[float, float] = (0.15, 0.5)
    micro_peak_mm: tuple[float, float] = (0.5, 1.5)
    micro_rise_share: tuple[float, float] = (0.3, 0.45)  # (apex - onset) / duration
    micro_hold_share: tuple[float, float] = (0.0, 0.15)
    macro_ramp_s: tuple[float, float] = (0.3, 0.6)
    macro_hold_s: tuple[float, float] = (0.8, 2.0)
    macro_peak_mm: tuple[float, float] = (2.0, 5.0)
    macro_every: int = 4  # every this-many-th event is a macro one
    gap_s: tuple[float, float] = (1.0, 1.6)  # rest between two events
    margin_s: float = 0.2  # frames this near an event must have a face too


def plan_events(times_s: np.ndarray, usable: np.ndarray, rng: np.random.Generator,
                plan: EventPlan = EventPlan()) -> list[PlantedEvent]:
    """Events one after another over the clip's frames (times (T,) s), each wholly on ``usable``
    (T,) frames (a face, not the neutral), the actions in a shuffled cycle."""
    order: list[str] = []
    events: list[PlantedEvent] = []
    start = float(times_s[0]) + rng.uniform(*plan.gap_s) * 0.5
    while True:
        macro = len(events) % plan.macro_every == plan.macro_every - 1
        if macro:
            rise, hold, fall = rng.uniform(*plan.macro_ramp_s), rng.uniform(*plan.macro_hold_s), rng.uniform(*plan.macro_ramp_s)
            peak = rng.uniform(*plan.macro_peak_mm)
        else:
            duration = rng.uniform(*plan.micro_duration_s)
            rise, hold = duration * rng.uniform(*plan.micro_rise_share), duration * rng.uniform(*plan.micro_hold_share)
            fall, peak = duration - rise - hold, rng.uniform(*plan.micro_peak_mm)
        end = start + rise + hold + fall
        if end + plan.margin_s > times_s[-1]:
            return events
        span = (times_s >= start - plan.margin_s) & (times_s <= end + plan.margin_s)
        if not np.all(usable[span]):
            start += 0.25
            continue
        if not order:
            order = [ACTION_NAMES[k] for k in rng.permutation(len(ACTION_NAMES))]
        events.append(PlantedEvent(order.pop(), "macro" if macro else "micro", start, start + rise, hold, end, peak))
        start = end + rng.uniform(*plan.gap_s)


def planted_motion_mm(events: list[PlantedEvent], fields_mm: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """(T, 478, 3) canonical mm: the events' fields (``action_fields``, (A, 478, 3)) over time."""
    motion = np.zeros((len(times_s),) + fields_mm.shape[1:])
    for event in events:
        curve = envelope(times_s, event) * event.peak_mm  # (T,) mm
        motion += curve[:, None, None] * fields_mm[ACTION_NAMES.index(event.action)]
    return motion


# -- 2. projection through the take's camera ------------------------------------------------------------
@dataclass(frozen=True)
class TakeCamera:
    """The pinhole camera and head poses a perspective take was solved with (OpenCV axes)."""

    rotations: np.ndarray  # (T, 3, 3) canonical -> OpenCV camera axes
    shifts_mm: np.ndarray  # (T, 3) the canonical origin in the camera, mm
    focal_px: float
    centre_px: np.ndarray  # (2,) px, the frame's centre

    def posed(self, points_mm: np.ndarray) -> np.ndarray:
        """Canonical points (T, N, 3) or (N, 3) mm -> (T, N, 3) mm in the camera."""
        points = np.broadcast_to(points_mm, (len(self.rotations),) + np.shape(points_mm)[-2:])
        return np.einsum("tij,tnj->tni", self.rotations, points) + self.shifts_mm[:, None]

    def image_px(self, camera_mm: np.ndarray) -> np.ndarray:
        """(..., 3) mm in the camera -> (..., 2) px."""
        return self.focal_px * camera_mm[..., :2] / camera_mm[..., 2:3] + self.centre_px

    def read_mm(self, landmarks_px: np.ndarray, neutral_mm: np.ndarray) -> np.ndarray:
        """(T, N, 3) canonical mm: image points (T, N, 2) px read as the engine reads its landmarks
        (``perspective.PerspectiveCamera.faces_at``: on their rays at the posed neutral's depth,
        turned back by the pose), through these poses, less the neutral (N, 3) mm."""
        posed = self.posed(neutral_mm)  # (T, N, 3) mm
        rays = np.concatenate([(landmarks_px - self.centre_px) / self.focal_px,
                               np.ones(landmarks_px.shape[:-1] + (1,))], axis=-1)
        return np.einsum("tji,tnj->tni", self.rotations, rays * posed[..., 2:3] - posed)


def take_camera(take: Take) -> TakeCamera:
    """The take's camera (``settings['camera_focal_px']``, the frame's centre) and its per-frame
    poses (``perspective.camera_of_take``)."""
    camera = camera_of_take(take)
    return TakeCamera(camera.camera_rotations, camera.camera_shifts_mm, camera.focal_px, camera.image_centre_px)


def smooth_in_time(values: np.ndarray, valid: np.ndarray, sigma_frames: float) -> np.ndarray:
    """(T, ...) values Gaussian-smoothed over the valid frames (T,) (invalid frames neither give
    nor, if isolated, keep anything: they get their neighbours' average; NaN far from any)."""
    if sigma_frames <= 0:
        return np.where(valid.reshape((-1,) + (1,) * (values.ndim - 1)), values, np.nan)
    radius = int(np.ceil(3 * sigma_frames))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    weight = valid.astype(np.float64)
    filled = np.where(valid.reshape((-1,) + (1,) * (values.ndim - 1)), values, 0.0).reshape(len(values), -1)
    total = np.stack([np.convolve(column, kernel, mode="same") for column in filled.T], axis=1)
    norm = np.convolve(weight, kernel, mode="same")[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 1e-6, total / norm, np.nan).reshape(values.shape)


def nearest_rotations(matrices: np.ndarray) -> np.ndarray:
    """(T, 3, 3) -> the nearest rotations (SVD); NaN rows stay NaN."""
    out = np.full_like(matrices, np.nan)
    ok = np.all(np.isfinite(matrices), axis=(1, 2))
    u, _, vt = np.linalg.svd(matrices[ok])
    sign = np.sign(np.linalg.det(u @ vt))[:, None, None]
    out[ok] = u @ (vt * np.concatenate([np.ones_like(sign), np.ones_like(sign), sign], axis=1))
    return out


def smoothed_camera(camera: TakeCamera, valid: np.ndarray, fps: float, sigma_s: float = SMOOTH_POSE_S) -> TakeCamera:
    """The camera with its poses smoothed in time (rotations averaged, then made rotations again)."""
    sigma = sigma_s * fps
    rotations = nearest_rotations(smooth_in_time(camera.rotations, valid, sigma))
    return TakeCamera(rotations, smooth_in_time(camera.shifts_mm, valid, sigma), camera.focal_px, camera.centre_px)


def image_displacements_px(camera: TakeCamera, landmarks_px: np.ndarray, neutral_mm: np.ndarray,
                           motion_mm: np.ndarray) -> np.ndarray:
    """(T, 478, 2) px: where the planted motion (T, 478, 3) canonical mm moves each landmark in the
    image. The landmark (T, 478, 2) px is taken on its ray at the posed neutral's depth (as the
    engine reads it); the motion is turned by the pose and projected from there."""
    depth = camera.posed(neutral_mm)[..., 2:3]  # (T, 478, 1) mm
    rays = np.concatenate([(landmarks_px - camera.centre_px) / camera.focal_px, np.ones(landmarks_px.shape[:-1] + (1,))],
                          axis=-1)  # (T, 478, 3)
    point = rays * depth  # (T, 478, 3) mm, camera
    moved = point + np.einsum("tij,tnj->tni", camera.rotations, motion_mm)
    return camera.image_px(moved) - camera.image_px(point)


def injected_displacements_px(take: Take, motion_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The planted motion (T, 478, 3) canonical mm of ``take``'s frame, in its image: the
    landmarks the field is attached to (T, 478, 2) px (smoothed) and their displacements (T, 478, 2)
    px (NaN where the take has no face)."""
    valid = np.asarray(take.valid, bool)
    camera = smoothed_camera(take_camera(take), valid, take.fps)
    anchors = smooth_in_time(take.landmarks_px[..., :2].astype(np.float64), valid, SMOOTH_LANDMARKS_S * take.fps)
    shift = image_displacements_px(camera, anchors, take.neutral_mm.astype(np.float64), motion_mm)
    anchors[~valid] = np.nan
    shift[~valid] = np.nan
    return anchors, shift


# -- 3. the warp ------------------------------------------------------------------------------------------
def feather_ring_px(anchors_px: np.ndarray) -> np.ndarray:
    """(K, 2) px: the face's outline (478-landmark anchors (478, 2) px) scaled by
    ``FEATHER_SCALE`` about the skin landmarks' centre: the field is zero there."""
    centre = anchors_px[:SKIN_LANDMARK_COUNT].mean(axis=0)
    return centre + FEATHER_SCALE * (anchors_px[FACE_OVAL] - centre)


def warp_frame(frame: np.ndarray, anchors_px: np.ndarray, displacement_px: np.ndarray,
               interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """The frame (H, W[, C]) with the skin at each skin landmark (``anchors_px`` (478, 2) px, in
    continuous image coordinates: pixel k's centre at k + 0.5) moved by ``displacement_px``
    (478, 2) px: piecewise-affine inside the landmarks' triangulation (and between the outline and
    a ring outside it, where the field is zero), untouched beyond."""
    if not np.any(np.abs(displacement_px[:SKIN_LANDMARK_COUNT]) > 1e-4):
        return frame.copy()
    ring = feather_ring_px(anchors_px)
    source = np.concatenate([anchors_px[:SKIN_LANDMARK_COUNT], ring]) - 0.5  # (N, 2) array-index px
    target = source + np.concatenate([displacement_px[:SKIN_LANDMARK_COUNT], np.zeros_like(ring)])
    height, width = frame.shape[:2]
    low = np.clip(np.floor(np.minimum(source, target).min(axis=0)).astype(int) - 1, 0, [width, height])
    high = np.clip(np.ceil(np.maximum(source, target).max(axis=0)).astype(int) + 2, 0, [width, height])
    if np.any(high - low < 2):
        return frame.copy()
    shape = (int(high[1] - low[1]), int(high[0] - low[0]))
    map_x, map_y = piecewise_affine_map(source, target, (int(low[0]), int(low[1])), shape)
    yy, xx = np.mgrid[low[1]:high[1], low[0]:high[0]].astype(np.float32)
    map_x = np.where(np.isfinite(map_x), map_x, xx).astype(np.float32)
    map_y = np.where(np.isfinite(map_y), map_y, yy).astype(np.float32)
    out = frame.copy()
    window = cv2.remap(frame, map_x, map_y, interpolation, borderMode=cv2.BORDER_REFLECT)
    moved = (np.abs(map_x - xx) > 1e-4) | (np.abs(map_y - yy) > 1e-4)  # untouched pixels stay bit-exact
    region = out[low[1]:high[1], low[0]:high[0]]
    region[moved] = window[moved]
    return out
