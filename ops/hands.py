"""Hands over the face: frames whose face MediaPipe's mesh partly draws from its prior.

Why: a hand over the mouth does not stop the face mesh; it draws a plausible mouth where the
fingers are. In WolfgangLanger_Pexels.mp4 her hand covers her mouth or cheek in frames 60-224; the
detector's score and the flow's checks (``neutral.occluded_frames``) flag only 168-215, and the
neutral finder took frames 219-223 as her rest face: fingers over her lips, the mesh's lips 6 mm
apart. Every later mouth was then read against a mouth that was never seen.

How: MediaPipe's own hand landmarker (``mediapipe.solutions.hands``, its model ships in the pip
package: nothing is downloaded) on the frame; a hand covers the face when ``HAND_ON_FACE_SHARE``
of its 21 points lie inside the box of the face's landmarks. About 10 ms a frame; the video is
decoded up to the frame asked about (0.14 s to WolfgangLanger's frame 221 at 640x360).

What it is used for: the engine tells the user when the neutral face it found is under a hand
(``reconstruct``'s warning and ``neutral_hand`` in the take). Passing over such frames was
measured and not kept: WolfgangLanger has no frame at rest, the best uncovered run (236-240)
smiles and looks up, and her labelled smiles, raised brows and closed eyes read worse against it
(docs/OPEN_LOOP.md).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .video import iter_frames

HAND_ON_FACE_SHARE = 0.3  # of a hand's 21 points inside the face's box (WolfgangLanger's covering hand: 0.43-0.95)
HAND_DETECTION_CONFIDENCE = 0.5


class HandFinder:
    """MediaPipe's hand landmarker for single images (no tracking from frame to frame). Use as a
    context manager; it holds the model's graph."""

    def __enter__(self) -> "HandFinder":
        import mediapipe  # imported here: ~1 s, and only the neutral's check needs it

        self._hands = mediapipe.solutions.hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=0,
                                                      min_detection_confidence=HAND_DETECTION_CONFIDENCE)
        return self

    def __exit__(self, *_) -> None:
        self._hands.close()

    def hands_px(self, image_bgr: np.ndarray) -> list[np.ndarray]:
        """Each hand found in a BGR uint8 image (H, W, 3): its 21 points (21, 2) image px."""
        found = self._hands.process(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        height, width = image_bgr.shape[:2]
        return [np.array([[point.x * width, point.y * height] for point in hand.landmark])
                for hand in (found.multi_hand_landmarks or [])]


def hand_on_face(hands_px: list[np.ndarray], face_px: np.ndarray) -> bool:
    """Whether any hand (21, 2) px lies ``HAND_ON_FACE_SHARE`` or more inside the box of the face's
    landmarks ``face_px`` (478, 2+) px of the same image."""
    low, high = np.min(face_px[:, :2], axis=0), np.max(face_px[:, :2], axis=0)
    return any(float(np.mean(np.all((hand >= low) & (hand <= high), axis=1))) >= HAND_ON_FACE_SHARE
               for hand in hands_px)


def hand_covers_face(video_path: Path, frame_index: int, face_px: np.ndarray) -> bool:
    """Whether source frame ``frame_index`` of the video shows a hand over the face whose landmarks
    are ``face_px`` (478, 2+) source px. The frames before it are decoded and dropped
    (``video.iter_frames``); a frame that cannot be decoded shows none."""
    for _, _, image in iter_frames(Path(video_path), start_frame=int(frame_index), end_frame=int(frame_index) + 1):
        with HandFinder() as finder:
            return hand_on_face(finder.hands_px(image), np.asarray(face_px, np.float64))
    return False
