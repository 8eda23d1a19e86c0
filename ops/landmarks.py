"""MediaPipe FaceMesh: 478 landmarks per frame (468 mesh points + 10 iris points).

FaceMesh tracks one face (``max_num_faces=1``): with a larger maximum it runs its face detector on
every frame in which fewer faces than the maximum are tracked, which costs ~40 % of throughput.
Several faces are instead noticed by a cheap periodic check with MediaPipe's face detector.

Which face is followed: FaceMesh in tracking mode keeps following the face it already tracks
(each frame's landmarks predict the next frame's face region); when the track is lost it re-runs
its detector and takes the most confident detection.

Per-frame confidence (0..1). The legacy FaceMesh solution exposes no score, so this is a proxy:
the face detector's score for the tracked face (the detection overlapping the landmarks' box
most), measured when a track starts and refreshed at every periodic check, and held in between
while the track continues. A frame without landmarks has confidence 0. A face the detector does
not confirm (IoU < 0.3 with every detection, e.g. a strong profile) gets 0 until it does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

LANDMARK_COUNT = 478
MIN_BOX_OVERLAP = 0.3  # IoU for a detection to count as the tracked face

# A serialised NormalizedLandmarkList whose landmarks carry x, y, z only (FaceMesh's output) is
# 17 bytes a landmark: key and length of the ``landmark`` entry (0x0A, 15), then the tagged
# fixed32 floats x (0x0D), y (0x15), z (0x1D). (byte column, expected byte) of those tags:
_RECORD_BYTES = 17
_TAG_COLUMNS = np.array([0, 1, 2, 7, 12])
_TAG_BYTES = np.array([0x0A, 15, 0x0D, 0x15, 0x1D], np.uint8)


@dataclass(frozen=True)
class Observation:
    landmarks_px: np.ndarray | None  # (478, 3) float32 px (x right, y down, z depth scaled like x); None: no face
    confidence: float  # 0..1, see the module docstring
    faces_detected: int | None  # faces the periodic check found in this frame; None if it did not run


class FaceTracker:
    """Tracking-mode FaceMesh over consecutive frames of one clip.

    ``check_every`` frames (and whenever a new track starts) MediaPipe's face detector also runs:
    it scores the tracked face (see ``Observation.confidence``) and counts faces, setting
    ``several_faces_seen`` (and ``several_faces_first_call``) so the caller can warn.
    """

    def __init__(self, max_faces: int = 1, min_detection_confidence: float = 0.5, check_every: int = 30) -> None:
        # Imported here: importing mediapipe costs ~1 s and is only needed where tracking runs.
        import mediapipe

        self._mesh = mediapipe.solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=0.5,
        )
        # Full-range model: it also finds small and distant faces, which the check is there for.
        self._detector = mediapipe.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_detection_confidence)
        self._check_every = max(1, check_every)
        self._calls = 0
        self._track_score: float | None = None  # detector score of the current track; None: no track
        self.several_faces_seen = False
        self.several_faces_first_call: int | None = None  # 0-based call index of the first sighting

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._mesh.close()
        self._detector.close()

    def track(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        """(H, W, 3) RGB uint8 -> (478, 3) float32 px, or None when no face is found."""
        return self.observe(frame_rgb).landmarks_px

    def observe(self, frame_rgb: np.ndarray) -> Observation:
        """Landmarks, confidence and (on check frames) the face count for the next frame of the clip."""
        call = self._calls
        self._calls += 1
        height, width = frame_rgb.shape[:2]
        faces = self._mesh.process(frame_rgb).multi_face_landmarks
        if not faces:
            self._track_score = None
            return Observation(None, 0.0, None)
        landmarks = landmark_list_px(faces[0], width, height)
        faces_detected = None
        if self._track_score is None or call % self._check_every == 0:
            boxes, scores = self._detect(frame_rgb)
            faces_detected = len(scores)
            if faces_detected > 1 and not self.several_faces_seen:
                self.several_faces_seen = True
                self.several_faces_first_call = call
            self._track_score = _score_of_tracked_face(landmarks, boxes, scores)
        return Observation(landmarks, self._track_score, faces_detected)

    def _detect(self, frame_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes (N, 4) px (x0, y0, x1, y1) and scores (N,)."""
        height, width = frame_rgb.shape[:2]
        detections = self._detector.process(frame_rgb).detections or []
        boxes = np.zeros((len(detections), 4))
        scores = np.zeros(len(detections))
        for row, detection in enumerate(detections):
            box = detection.location_data.relative_bounding_box
            boxes[row] = (box.xmin * width, box.ymin * height,
                          (box.xmin + box.width) * width, (box.ymin + box.height) * height)
            scores[row] = detection.score[0]
        return boxes, scores


def landmark_list_px(landmark_list: Any, width: int, height: int) -> np.ndarray:
    """MediaPipe NormalizedLandmarkList (x, y in 0..1 of the frame, z like x) -> (N, 3) float32 px.

    Read from the serialised message with NumPy (~20 us) rather than by a Python loop over 478
    protobuf objects (~0.2 ms holding the GIL, which the front-end's other threads then wait for).
    Another layout (visibility or presence set) takes the loop; the values are the same.
    """
    raw = landmark_list.SerializeToString()
    normalised = _xyz_from_wire(raw)
    if normalised is None:
        normalised = np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], np.float64).reshape(-1, 3)
    return (normalised * np.array([width, height, width], np.float64)).astype(np.float32)


def _xyz_from_wire(raw: bytes) -> np.ndarray | None:
    """(N, 3) float32 view of x, y, z in a serialised NormalizedLandmarkList of x/y/z-only
    landmarks; None if the bytes are laid out any other way."""
    count = len(raw) // _RECORD_BYTES
    if count == 0 or count * _RECORD_BYTES != len(raw):
        return None
    if not (np.frombuffer(raw, np.uint8).reshape(count, _RECORD_BYTES)[:, _TAG_COLUMNS] == _TAG_BYTES).all():
        return None
    return np.ndarray((count, 3), "<f4", buffer=raw, offset=3, strides=(_RECORD_BYTES, 5))


def _score_of_tracked_face(landmarks_px: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> float:
    """Score of the detection that overlaps the landmarks' bounding box most; 0 if none does."""
    if len(scores) == 0:
        return 0.0
    low, high = landmarks_px[:, :2].min(axis=0), landmarks_px[:, :2].max(axis=0)
    overlap = np.clip(np.minimum(high, boxes[:, 2:]) - np.maximum(low, boxes[:, :2]), 0.0, None).prod(axis=1)
    union = np.prod(high - low) + (boxes[:, 2:] - boxes[:, :2]).prod(axis=1) - overlap
    iou = overlap / np.maximum(union, 1e-9)
    best = int(np.argmax(iou))
    return float(scores[best]) if iou[best] >= MIN_BOX_OVERLAP else 0.0
