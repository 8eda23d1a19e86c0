"""From image landmarks to the canonical face frame: rigid head pose out, expression left in.

Each frame's 478 landmarks are aligned to the performer's neutral face by a similarity fitted on
landmarks that expressions barely move (forehead, nose bridge, temples, outer eye corners), so
what remains after alignment is expression. Millimetres come from an assumed interpupillary
distance (63 mm, the adult mean), measured between the iris centres of the neutral face.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.similarity import Similarities, fit_similarities
from .errors import MxrError

INTERPUPILLARY_MM = 63.0
IRIS_CENTRE_RIGHT, IRIS_CENTRE_LEFT = 468, 473  # subject's right / left eye
# MediaPipe's 478 landmarks: the face mesh's skin points, then the irises, which move with the gaze
# rather than the skin (left out of skin error figures and of micro patterns).
SKIN_LANDMARK_COUNT = 468
SKIN_LANDMARKS = np.arange(SKIN_LANDMARK_COUNT)
IRIS_LANDMARKS = np.arange(SKIN_LANDMARK_COUNT, 478)  # both irises, each a centre and a ring of four

# Landmarks that move least with expression: forehead, nose bridge and tip, temples, outer eye
# corners, upper cheekbones. (MediaPipe face mesh indices.)
RIGID_LANDMARKS = np.array(
    [10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 109, 338, 67, 297, 108, 337, 69, 299,
     127, 356, 234, 454, 162, 389, 33, 263, 130, 359, 116, 345, 117, 346, 143, 372],
    dtype=np.int64,
)


def image_to_camera(landmarks_px: np.ndarray) -> np.ndarray:
    """MediaPipe image coordinates (x right, y down, z away from camera) -> right-handed camera
    frame with +X image right (the subject's left), +Y up, +Z towards the camera. (..., 3) px."""
    return landmarks_px * np.array([1.0, -1.0, -1.0], dtype=landmarks_px.dtype)


@dataclass
class CanonicalFaces:
    neutral_mm: np.ndarray  # (478, 3)
    faces_mm: np.ndarray  # (T, 478, 3), NaN where invalid
    poses: Similarities  # camera px = scale * rotation @ canonical mm + translation; NaN where invalid


def canonicalize(landmarks_px: np.ndarray, valid: np.ndarray, neutral_frames: np.ndarray) -> CanonicalFaces:
    """Pose-normalise a take's landmarks against the performer's neutral face.

    landmarks_px: (T, 478, 3) image px; valid: (T,) bool; neutral_frames: frame indices whose
    median (after alignment) defines the neutral face, e.g. the first half second.
    """
    neutral_frames = np.asarray([f for f in neutral_frames if valid[f]], dtype=np.int64)
    if len(neutral_frames) == 0:
        raise MxrError("no face in the frames chosen as the neutral reference")
    camera = image_to_camera(landmarks_px.astype(np.float64))[valid]  # (Tv, 478, 3)
    valid_index = np.cumsum(valid) - 1  # frame -> row in `camera`
    neutral_rows = valid_index[neutral_frames]

    # Start from one neutral frame in its own camera pose, then refine twice: the median of the
    # aligned neutral frames is a steadier reference than any single frame.
    reference = camera[neutral_rows[0]] - camera[neutral_rows[0]].mean(axis=0)
    for _ in range(3):
        poses = fit_similarities(reference[RIGID_LANDMARKS], camera[:, RIGID_LANDMARKS])
        aligned = poses.invert(camera)
        reference = np.median(aligned[neutral_rows], axis=0)
        reference -= reference.mean(axis=0)

    pupil_distance = np.linalg.norm(reference[IRIS_CENTRE_LEFT] - reference[IRIS_CENTRE_RIGHT])
    reference *= INTERPUPILLARY_MM / pupil_distance  # now in mm
    poses = fit_similarities(reference[RIGID_LANDMARKS], camera[:, RIGID_LANDMARKS])
    aligned = poses.invert(camera)

    count = len(valid)
    faces = np.full((count, 478, 3), np.nan)
    faces[valid] = aligned
    full_poses = Similarities(
        rotation=_scatter(poses.rotation, valid),
        translation=_scatter(poses.translation, valid),
        scale=_scatter(poses.scale, valid),
    )
    return CanonicalFaces(neutral_mm=reference, faces_mm=faces, poses=full_poses)


def _scatter(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    full = np.full((len(valid),) + values.shape[1:], np.nan)
    full[valid] = values
    return full
