"""MediaPipe FaceMesh on one still image: the 478 landmarks in pixels, or None."""
from __future__ import annotations

import mediapipe as mp
import numpy as np

from ..models.correspondence import LANDMARK_COUNT


def detect_face_mesh(image_rgb: np.ndarray) -> np.ndarray | None:
    """Landmarks (478, 3) for an (H, W, 3) RGB uint8 image, or None when no face is found.

    Columns: pixel x, pixel y (continuous, origin at the image's top-left corner) and MediaPipe's
    relative depth, which it scales like x (times the image width), smaller = nearer the camera.
    """
    height, width = image_rgb.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, refine_landmarks=True, max_num_faces=1
    ) as face_mesh:
        result = face_mesh.process(np.ascontiguousarray(image_rgb))
    if not result.multi_face_landmarks:
        return None
    points = result.multi_face_landmarks[0].landmark
    landmarks = np.array([[point.x * width, point.y * height, point.z * width] for point in points])
    if landmarks.shape != (LANDMARK_COUNT, 3):
        raise RuntimeError(f"FaceMesh returned {landmarks.shape[0]} landmarks, expected {LANDMARK_COUNT}")
    return landmarks
