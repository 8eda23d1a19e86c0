"""Landmarks that move as the optical flow says from frame to frame and sit where MediaPipe puts them.

Why: MediaPipe regresses its mesh as a whole, one frame at a time. It follows about half of a small
local motion (real footage with planted 0.5-1.5 mm actions, ``scripts/open_loop_inject.py``: its
landmarks carry 0.49 of the planted image motion; a nose wrinkle 0.0), and it drags its "rigid"
points along with the brows, so the pose solved on them eats a third of the rest. The flow at the
landmarks reads 0.8-0.95 of the same motion, but summed over frames it drifts. So each landmark's
track is the flow's, pulled back to MediaPipe's over ``DRIFT_S``: MediaPipe at low frequencies,
the flow at high (a complementary filter, zero-phase because the whole take is at hand):

    track_t = mediapipe_t + drift_t - smooth(drift)_t,   drift_t = sum over s <= t of (flow_s - mediapipe step_s)

Where the flow fails its forward-backward check (a blink, a hand) the step is MediaPipe's, so
nothing is summed there. The flow reads large motion short (a jaw opening, a turn's perspective
left in the crops), so a landmark moves at most ``MAX_CORRECTION_MM`` from MediaPipe's: without
that cap the labelled dev frames lost open jaws (0.35 -> 0.19) and closed eyes, and a still scan
face turning its head wandered more (0.66 -> 0.78 mm). Measured on the injected dev clips (48
micro and 12 macro events, 2026-12-04), read through the take's own pose: micro 0.33 -> 0.52 of
the planted motion (uncapped 0.61), macro 0.28 -> 0.47 (0.54); docs/OPEN_LOOP.md has the rest.
"""
from __future__ import annotations

import numpy as np

from ..models.retarget import frame_chunks
from .canonical import INTERPUPILLARY_MM, IRIS_CENTRE_LEFT, IRIS_CENTRE_RIGHT
from .spill import CHUNK_FRAMES, frame_array

DRIFT_S = 1.0  # s, the Gaussian sigma over which the flow's sum is pulled back to MediaPipe
MAX_CORRECTION_MM = 1.0  # the flow moves a landmark at most this far from MediaPipe's (it reads large motion short)


def flow_steps_px(landmarks_px: np.ndarray, crop_from_image: np.ndarray, flow_at_landmarks: np.ndarray) -> np.ndarray:
    """Where the flow moves each landmark of frame t-1 by frame t, in source px (T, N, 2); NaN for
    the first frame and where either frame has no face.

    landmarks_px (T, N, 2+) source px; crop_from_image (T, 2, 3) source px -> crop px;
    flow_at_landmarks (T, N, 2) crop px, from t-1's landmarks in crop t-1 to crop t."""
    crops = crop_from_image.astype(np.float64)
    previous = landmarks_px[:-1, :, :2].astype(np.float64)  # (T-1, N, 2) source px
    in_previous_crop = np.einsum("tij,tnj->tni", crops[:-1, :, :2], previous) + crops[:-1, None, :, 2]
    in_crop = in_previous_crop + flow_at_landmarks[1:].astype(np.float64)  # (T-1, N, 2) crop t px
    linear = crops[1:, :, :2]  # (T-1, 2, 2), NaN where no face: the inverse written out keeps the NaN
    adjugate = np.stack([np.stack([linear[:, 1, 1], -linear[:, 0, 1]], -1),
                         np.stack([-linear[:, 1, 0], linear[:, 0, 0]], -1)], -2)
    determinant = linear[:, 0, 0] * linear[:, 1, 1] - linear[:, 0, 1] * linear[:, 1, 0]
    image_from_crop = adjugate / determinant[:, None, None]
    seen = np.einsum("tij,tnj->tni", image_from_crop, in_crop - crops[1:, None, :, 2])
    steps = np.full(landmarks_px.shape[:2] + (2,), np.nan)
    steps[1:] = seen - previous  # NaN wherever a crop, a landmark or the flow was NaN
    return steps


def fused_landmarks_px(landmarks_px: np.ndarray, crop_from_image: np.ndarray, flow_at_landmarks: np.ndarray,
                       flow_consistent: np.ndarray, valid: np.ndarray, fps: float,
                       drift_s: float = DRIFT_S) -> np.ndarray:
    """MediaPipe's landmarks (T, N, 3) source px with the flow's frame-to-frame motion (module
    docstring), each at most ``MAX_CORRECTION_MM`` from MediaPipe's: (T, N, 3) float32 source px,
    depth MediaPipe's, NaN where ``valid`` (T,) is False. flow_consistent (T, N) bool: the
    forward-backward check of each landmark's flow. Worked a chunk of frames at a time into
    ``spill.frame_array``s, so a long take costs no more memory than a short one."""
    count = len(valid)
    sigma_frames = drift_s * fps
    radius = int(np.ceil(3.0 * sigma_frames))
    weight = valid.astype(np.float64)  # (T,)
    drift = frame_array((count,) + landmarks_px.shape[1:2] + (2,), np.float64)  # (T, N, 2) px
    summed = np.zeros(landmarks_px.shape[1:2] + (2,))  # (N, 2) px, the drift before the chunk
    for frames in frame_chunks(count, CHUNK_FRAMES):
        first = max(frames.start - 1, 0)  # the frame before the chunk: its steps start there
        points = np.asarray(landmarks_px[first:frames.stop], np.float64)  # (F+1, N, 3) source px
        flow_steps = flow_steps_px(points, crop_from_image[first:frames.stop], flow_at_landmarks[first:frames.stop])
        mediapipe_steps = np.full(flow_steps.shape, np.nan)
        mediapipe_steps[1:] = points[1:, :, :2] - points[:-1, :, :2]
        usable = (flow_consistent[first:frames.stop] & np.isfinite(flow_steps).all(-1)
                  & np.isfinite(mediapipe_steps).all(-1))
        steps = np.where(usable[..., None], flow_steps - mediapipe_steps, 0.0)[frames.start - first:]  # (F, N, 2)
        part = summed + np.cumsum(steps, axis=0)
        drift[frames] = part
        summed = part[-1]
    fused = frame_array(landmarks_px.shape, np.float32)
    for frames in frame_chunks(count, CHUNK_FRAMES):
        near = slice(max(frames.start - radius, 0), min(frames.stop + radius, count))  # what the kernel reaches
        offsets = np.arange(frames.start, frames.stop)[:, None] - np.arange(near.start, near.stop)[None, :]
        band = np.where(np.abs(offsets) <= radius, np.exp(-0.5 * (offsets / sigma_frames) ** 2), 0.0)  # (F, L) Gaussian
        around = np.asarray(drift[near]) * weight[near, None, None]  # (L, N, 2) px
        smooth = (band @ around.reshape(len(around), -1)).reshape((len(band),) + around.shape[1:])
        norm = np.maximum(band @ weight[near], 1e-12)  # (F,)
        correction = np.asarray(drift[frames]) - smooth / norm[:, None, None]  # (F, N, 2) px
        points = np.array(landmarks_px[frames], np.float64)  # (F, N, 3) source px
        eyes_px = np.linalg.norm(points[:, IRIS_CENTRE_LEFT, :2] - points[:, IRIS_CENTRE_RIGHT, :2], axis=-1)
        cap_px = MAX_CORRECTION_MM * eyes_px / INTERPUPILLARY_MM  # (F,) px
        size = np.linalg.norm(correction, axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            points[..., :2] += correction * np.minimum(1.0, cap_px[:, None, None] / size)
        points[~valid[frames]] = np.nan
        fused[frames] = points
    return fused
