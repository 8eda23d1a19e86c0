"""MediaPipe FaceMesh: 478 landmarks per frame (468 mesh points + 10 iris points)."""
from __future__ import annotations

import numpy as np

LANDMARK_COUNT = 478


class FaceTracker:
    """Tracking-mode FaceMesh over consecutive frames of one clip.

    MediaPipe re-runs its face detector by itself when the track is lost. When several faces
    are found, the largest is kept and ``several_faces_seen`` is set, so the caller can warn.
    """

    def __init__(self, max_faces: int = 2, min_detection_confidence: float = 0.5) -> None:
        # Imported here: importing mediapipe costs ~1 s and is only needed where tracking runs.
        import mediapipe

        self._mesh = mediapipe.solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=0.5,
        )
        self.several_faces_seen = False

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._mesh.close()

    def track(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        """(H, W, 3) RGB uint8 -> (478, 3) float32 px (x right, y down, z depth scaled like x), or None."""
        height, width = frame_rgb.shape[:2]
        result = self._mesh.process(frame_rgb)
        faces = result.multi_face_landmarks
        if not faces:
            return None
        candidates = [
            np.array([(p.x * width, p.y * height, p.z * width) for p in face.landmark], dtype=np.float32)
            for face in faces
        ]
        if len(candidates) > 1:
            self.several_faces_seen = True
        return max(candidates, key=_bounding_box_area)


def _bounding_box_area(landmarks_px: np.ndarray) -> float:
    extent = landmarks_px[:, :2].max(axis=0) - landmarks_px[:, :2].min(axis=0)
    return float(extent[0] * extent[1])
