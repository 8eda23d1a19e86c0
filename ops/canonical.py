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
# The lids' margins (subject's right eye, then left) and the inner lips: each borders a gap, not skin.
EYE_CONTOURS = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
                         263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466])
INNER_LIPS = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308,  # upper inner contour
                       95, 88, 178, 87, 14, 317, 402, 318, 324])  # lower inner contour

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


@dataclass
class CanonicalFrame:
    """The canonical frame of a take without its faces: the neutral and a pose a frame (~100 bytes a
    frame), so a long take need not hold every frame's 478 points twice; ``faces_at`` reads the
    faces of any frames from the landmarks."""

    neutral_mm: np.ndarray  # (478, 3)
    poses: Similarities  # (T) camera px = scale * rotation @ canonical mm + translation; NaN where invalid

    def faces_at(self, landmarks_px: np.ndarray, frames: slice | np.ndarray) -> np.ndarray:
        """The canonical faces (F, 478, 3) mm of ``frames`` of the take's landmarks (T, 478, 3) image
        px; NaN where invalid."""
        poses = Similarities(self.poses.rotation[frames], self.poses.translation[frames], self.poses.scale[frames])
        return poses.invert(image_to_camera(landmarks_px[frames].astype(np.float64)))


def canonical_frame(landmarks_px: np.ndarray, valid: np.ndarray, neutral_frames: np.ndarray) -> CanonicalFrame:
    """The neutral face and every frame's pose against it (see ``canonicalize``), from the neutral
    frames' landmarks and every frame's ``RIGID_LANDMARKS`` alone."""
    neutral_frames = np.asarray([f for f in neutral_frames if valid[f]], dtype=np.int64)
    if len(neutral_frames) == 0:
        raise MxrError("no face in the frames chosen as the neutral reference")
    neutral = image_to_camera(landmarks_px[neutral_frames].astype(np.float64))  # (N, 478, 3)

    # Start from one neutral frame in its own camera pose, then refine twice: the median of the
    # aligned neutral frames is a steadier reference than any single frame.
    reference = neutral[0] - neutral[0].mean(axis=0)
    for _ in range(3):
        poses = fit_similarities(reference[RIGID_LANDMARKS], neutral[:, RIGID_LANDMARKS])
        reference = np.median(poses.invert(neutral), axis=0)
        reference -= reference.mean(axis=0)

    pupil_distance = np.linalg.norm(reference[IRIS_CENTRE_LEFT] - reference[IRIS_CENTRE_RIGHT])
    reference *= INTERPUPILLARY_MM / pupil_distance  # now in mm
    valid = np.asarray(valid, bool)
    rigid = image_to_camera(landmarks_px[:, RIGID_LANDMARKS][valid].astype(np.float64))  # (Tv, 35, 3)
    poses = fit_similarities(reference[RIGID_LANDMARKS], rigid)
    full_poses = Similarities(
        rotation=_scatter(poses.rotation, valid),
        translation=_scatter(poses.translation, valid),
        scale=_scatter(poses.scale, valid),
    )
    return CanonicalFrame(neutral_mm=reference, poses=full_poses)


def canonicalize(landmarks_px: np.ndarray, valid: np.ndarray, neutral_frames: np.ndarray) -> CanonicalFaces:
    """Pose-normalise a take's landmarks against the performer's neutral face.

    landmarks_px: (T, 478, 3) image px; valid: (T,) bool; neutral_frames: frame indices whose
    median (after alignment) defines the neutral face, e.g. the first half second.
    """
    frame = canonical_frame(landmarks_px, valid, neutral_frames)
    return CanonicalFaces(frame.neutral_mm, frame.faces_at(landmarks_px, slice(None)), frame.poses)


def _scatter(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    full = np.full((len(valid),) + values.shape[1:], np.nan)
    full[valid] = values
    return full
