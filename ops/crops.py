"""Stabilised face crops: each frame warped by a 2D similarity into a fixed canonical face frame.

The similarity is fitted on the rigid landmarks (``canonical.RIGID_LANDMARKS``: forehead, nose,
temples, outer eye corners, cheekbones), so rigid head motion in the image plane (translation,
roll, distance) is taken out before optical flow, and what flow sees between two crops is skin
motion. Out-of-plane rotation cannot be removed by a 2D similarity; it remains as smooth flow.

Averaging 35 landmarks makes the fit far steadier than one landmark (MediaPipe jitters ~0.3 px
per landmark), but what jitter remains shifts the whole crop: it shows up as a near-uniform flow,
which the recorded transforms and ``stabilisation residual`` let the next stage account for.
"""
from __future__ import annotations

import cv2
import numpy as np

from .canonical import RIGID_LANDMARKS

DEFAULT_CROP_SIZE = 256  # px

# The rigid landmarks of a real frontal face (single_face.mp4, frame 0), levelled (outer eye
# corners 33 -> 263 horizontal), centred on their mean and scaled to unit eye-corner distance.
# x right, y down. (35, 2), in the order of RIGID_LANDMARKS.
RIGID_LAYOUT = np.array(
    [[-0.009, -0.541], [-0.009, -0.356], [-0.007, -0.172], [-0.006, -0.066], [-0.004, 0.037],
     [-0.003, 0.141], [-0.002, 0.232], [-0.002, 0.319], [-0.002, 0.413], [-0.001, 0.524],
     [-0.0, 0.605], [-0.219, -0.534], [0.205, -0.539], [-0.398, -0.503], [0.385, -0.512],
     [-0.198, -0.359], [0.182, -0.363], [-0.364, -0.358], [0.349, -0.365], [-0.742, 0.127],
     [0.764, 0.111], [-0.732, 0.296], [0.763, 0.281], [-0.738, -0.049], [0.746, -0.067],
     [-0.504, 0.069], [0.496, 0.069], [-0.531, 0.071], [0.527, 0.073], [-0.683, 0.294],
     [0.701, 0.28], [-0.572, 0.295], [0.589, 0.282], [-0.671, 0.128], [0.691, 0.134]],
)
# In those units the whole mesh spans x -0.74..0.76 and y -0.54 (forehead) .. 1.41 (chin): centring
# that box and giving the eye-corner distance 0.43 of the crop leaves ~8 % margin above and below.
_LAYOUT_BOX_CENTRE = np.array([0.01, 0.43])
_EYE_CORNER_FRACTION = 0.43


def crop_layout(crop_size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """Where the rigid landmarks sit in the canonical crop: (35, 2) crop px."""
    return crop_size / 2.0 + _EYE_CORNER_FRACTION * crop_size * (RIGID_LAYOUT - _LAYOUT_BOX_CENTRE)


def fit_similarity_2d(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) taking
    source (N, 2) onto target (N, 2), as a 2x3 matrix for ``cv2.warpAffine``: x' = A @ [x, y, 1]."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    p, q = source - source_mean, target - target_mean
    norm = np.sum(p * p)
    a = np.sum(p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1]) / norm  # scale * cos
    b = np.sum(p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]) / norm  # scale * sin
    linear = np.array([[a, -b], [b, a]])
    return np.hstack([linear, (target_mean - linear @ source_mean)[:, None]])


def apply_affine(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(2, 3) transform applied to (N, 2) points -> (N, 2)."""
    return points @ transform[:, :2].T + transform[:, 2]


def invert_affine(transform: np.ndarray) -> np.ndarray:
    """(2, 3) -> (2, 3) inverse (crop px -> image px for a stabilising transform)."""
    return cv2.invertAffineTransform(transform)


def stabilising_transform(landmarks_px: np.ndarray, crop_size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """(478, >=2) image px -> (2, 3) similarity taking image px to canonical crop px."""
    return fit_similarity_2d(landmarks_px[RIGID_LANDMARKS, :2].astype(np.float64), crop_layout(crop_size))


def stabilisation_residual(landmarks_px: np.ndarray, transform: np.ndarray,
                           crop_size: int = DEFAULT_CROP_SIZE) -> float:
    """RMS distance (crop px) of the mapped rigid landmarks from the canonical layout: small for a
    frontal face, larger for out-of-plane rotation or a poor track."""
    mapped = apply_affine(transform, landmarks_px[RIGID_LANDMARKS, :2].astype(np.float64))
    return float(np.sqrt(np.mean(np.sum((mapped - crop_layout(crop_size)) ** 2, axis=1))))


def warp_to_crop(image: np.ndarray, transform: np.ndarray, crop_size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """(H, W[, C]) image -> (crop, crop[, C]) canonical crop, bilinear; outside the image is black."""
    return cv2.warpAffine(image, transform, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
