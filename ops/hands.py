"""Hands over the face: frames whose face MediaPipe's mesh partly draws from its prior.

Why: a hand over the mouth does not stop the face mesh; it draws a plausible mouth where the
fingers are. In WolfgangLanger_Pexels.mp4 her hand covers her mouth or cheek in frames 60-224; the
detector's score and the flow's checks (``neutral.occluded_frames``) flag only 168-215, and the
neutral finder took frames 219-223 as her rest face: fingers over her lips, the mesh's lips 6 mm
apart. Every later mouth was then read against a mouth that was never seen.

How: MediaPipe's own hand landmarker (``mediapipe.solutions.hands``, its model ships in the pip
package: nothing is downloaded) on the frame; a hand covers the face when ``HAND_ON_FACE_SHARE``
of its 21 points lie inside the box of the face's landmarks. About 10 ms a 640x360 frame.

The front-end looks every ``hand_check_seconds`` (0.5 s: a hand stays a while) and keeps the
box of the hands on the face; the engine counts the face's points in that box as covered up to
the checks around it (``covered_landmarks``). There it steadies the take: MediaPipe's guesses under
the fingers jump from frame to frame, and WolfgangLanger's units blipped for a frame or two on 11 %
of those frames; each covered point becomes the median of itself in three frames
(``steadied_where_covered``), which keeps a motion lasting two frames or more, while the points
no hand covers keep every frame; and it is held within the range the same point shows where no
hand covers it (``within_seen_range``), as the guesses go where the face never does. And it tells
the user when the neutral it found is under a hand (``reconstruct``'s warning, ``neutral_hand`` in
the take). Passing over such frames for the neutral was measured and not kept: WolfgangLanger has
no frame at rest, the best uncovered run (236-240) smiles and looks up, and her labelled smiles,
raised brows and closed eyes read worse against it (docs/OPEN_LOOP.md).
"""
from __future__ import annotations

import cv2
import numpy as np

from .canonical import EYE_CONTOURS, IRIS_LANDMARKS
from .landmarks import LANDMARK_COUNT
from .spill import frame_array

HAND_ON_FACE_SHARE = 0.3  # of a hand's 21 points inside the face's box (WolfgangLanger's covering hand: 0.43-0.95)
HAND_DETECTION_CONFIDENCE = 0.5
STEADYING_FRAMES = 3  # a covered point's deformation: the median over this many frames around it
COVER_MARGIN = 0.1  # the face's points within this share of its width of a hand's box are covered
# The most checks without a hand, between two that find one, taken for misses (the hand stayed): the
# landmarker misses a hand lying flat over the face (WolfgangLanger's checks at 108 and 120, between
# checks at 96 and 132 that find it over her nose and mouth).
BRIDGED_MISSES = 2
# The lids' margins and the irises keep what MediaPipe draws under a hand: the blinks are measured
# from the lids (models/blinks.py), and a range seen elsewhere moved one of WolfgangLanger's closed
# eyes under her fingers from a blink of 0.62 to 0.57.
UNHELD_LANDMARKS = np.concatenate([EYE_CONTOURS, IRIS_LANDMARKS])


class HandFinder:
    """MediaPipe's hand landmarker for single images (no tracking from frame to frame). Use as a
    context manager; it holds the model's graph."""

    def __enter__(self) -> "HandFinder":
        import mediapipe  # imported here: ~1 s, and only where hands are looked for

        self._hands = mediapipe.solutions.hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=0,
                                                      min_detection_confidence=HAND_DETECTION_CONFIDENCE)
        return self

    def __exit__(self, *_) -> None:
        self._hands.close()

    def hands_px(self, image: np.ndarray, rgb: bool = False) -> list[np.ndarray]:
        """Each hand found in a uint8 image (H, W, 3), BGR unless ``rgb``: its 21 points (21, 2) image px."""
        found = self._hands.process(image if rgb else cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        height, width = image.shape[:2]
        return [np.array([[point.x * width, point.y * height] for point in hand.landmark])
                for hand in (found.multi_hand_landmarks or [])]


def hands_on_face(hands_px: list[np.ndarray], face_px: np.ndarray) -> list[np.ndarray]:
    """The hands (21, 2) px that lie ``HAND_ON_FACE_SHARE`` or more inside the box of the face's
    landmarks ``face_px`` (478, 2+) px of the same image."""
    low, high = np.min(face_px[:, :2], axis=0), np.max(face_px[:, :2], axis=0)
    return [hand for hand in hands_px
            if float(np.mean(np.all((hand >= low) & (hand <= high), axis=1))) >= HAND_ON_FACE_SHARE]


def hand_box_px(hands_px: list[np.ndarray]) -> np.ndarray:
    """(4,) the box x0, y0, x1, y1 px around the hands (at least one) (21, 2) px."""
    points = np.concatenate(hands_px)
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def covered_landmarks(hand_on_face: np.ndarray, hand_box: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """(T, 478) bool (on disk in the engine, ops/spill.py): the face's points a hand covers, from the
    front-end's checks: ``hand_on_face`` (T,) 1 or 0 on the frames checked, NaN on the others;
    ``hand_box`` (T, 4) px the hands' box where one is on the face; ``landmarks_px`` (T, 478, 2+) px.
    A check with a hand covers the points inside its box, widened by ``COVER_MARGIN`` of the face's
    width, and they stay covered up to the checks before and after it (where the hand was between
    is not known); up to ``BRIDGED_MISSES`` checks without a hand between two with one are taken for
    misses, and the points either box holds stay covered across them."""
    checks = np.asarray(hand_on_face, np.float64)
    checked = np.flatnonzero(np.isfinite(checks))
    covered = frame_array((len(checks), LANDMARK_COUNT), np.bool_)
    found = [position for position, frame in enumerate(checked) if checks[frame] >= 0.5]
    inside = {}  # position of a check with a hand -> (478,) the points in its box
    for position in found:
        frame = checked[position]
        points = np.asarray(landmarks_px[frame], np.float64)[:, :2]  # (478, 2)
        margin = COVER_MARGIN * float(np.ptp(points[:, 0]))
        box = np.asarray(hand_box[frame], np.float64)
        inside[position] = np.all((points >= box[:2] - margin) & (points <= box[2:] + margin), axis=1)
        first = checked[position - 1] + 1 if position > 0 else 0
        last = checked[position + 1] - 1 if position + 1 < len(checked) else len(checks) - 1
        covered[first:last + 1] = np.asarray(covered[first:last + 1], bool) | inside[position]
    spacing = float(np.median(np.diff(checked))) if len(checked) > 1 else 0.0  # frames between checks
    for before, after in zip(found, found[1:]):  # a hand missed between two checks that found one
        if 1 < after - before <= BRIDGED_MISSES + 1 and \
                checked[after] - checked[before] <= (BRIDGED_MISSES + 1) * spacing:  # (no face: no check)
            first, last = checked[before] + 1, checked[after] - 1
            covered[first:last + 1] = np.asarray(covered[first:last + 1], bool) | inside[before] | inside[after]
    return covered


def steadied_where_covered(deformation_mm: np.ndarray, covered: np.ndarray, chunk_frames: int = 1024) -> None:
    """Each covered point of ``deformation_mm`` (T, 478, 3) mm (an array or a ``spill.FrameFile``,
    changed in place), ``covered`` (T, 478) bool (an array or a ``FrameFile``), becomes the median
    of itself and the same point in the frames around it, per coordinate (``STEADYING_FRAMES``),
    all read as they were; a chunk of frames at a time. NaN (no face) is left out of a median and
    stays where the frame has none."""
    half = STEADYING_FRAMES // 2
    before = np.empty((0,) + tuple(deformation_mm.shape[1:]))  # the frames before the chunk, as they were
    for start in range(0, len(covered), chunk_frames):
        stop = min(start + chunk_frames, len(covered))
        chunk = np.asarray(covered[start:stop], bool)  # (n, 478)
        if not chunk.any():
            before = np.asarray(deformation_mm[max(stop - half, 0):stop], np.float64)
            continue
        own = np.asarray(deformation_mm[start:stop], np.float64)  # (n, 478, 3) as it was
        after = np.asarray(deformation_mm[stop:min(stop + half, len(covered))], np.float64)
        window = np.concatenate([before, own, after])  # frames start - len(before) ...
        first = start - len(before)
        steadied = own.copy()
        for frame in np.flatnonzero(chunk.any(axis=1)) + start:
            if not np.isfinite(own[frame - start]).all():
                continue
            points = chunk[frame - start]
            around = window[max(frame - half, 0) - first:frame + half + 1 - first, points]  # (<=3, n, 3)
            with np.errstate(all="ignore"):
                steadied[frame - start, points] = np.nanmedian(around, axis=0)
        deformation_mm[start:stop] = steadied.astype(deformation_mm.dtype)
        before = own[len(own) - half:] if half else own[:0]


def within_seen_range(deformation_mm: np.ndarray, covered: np.ndarray, chunk_frames: int = 1024) -> None:
    """Each covered point of ``deformation_mm`` (T, 478, 3) mm (an array or a ``spill.FrameFile``,
    changed in place) kept, per coordinate, within the range the same point shows in the frames no
    hand covers it (``covered`` (T, 478) bool); a point no such frame shows, and the lids and irises
    (``UNHELD_LANDMARKS``), are left as they are. Two passes, a chunk of frames at a time.

    Why: under a hand MediaPipe draws a face from its prior, and a guess can go where the
    performer's face never goes: WolfgangLanger's lower lip 7-8 mm and chin 5-10 mm above her
    neutral under her fingers (frames 58-131), and mouthRollLower sat at its limit on 12 % of her
    frames (6 % held, docs/OPEN_LOOP.md)."""
    low = np.full(tuple(deformation_mm.shape[1:]), np.inf)  # (478, 3) mm
    high = np.full(tuple(deformation_mm.shape[1:]), -np.inf)
    for start in range(0, len(covered), chunk_frames):
        own = np.asarray(deformation_mm[start:start + chunk_frames], np.float64)  # (n, 478, 3)
        seen = (~np.asarray(covered[start:start + chunk_frames], bool))[..., None] & np.isfinite(own)
        low = np.minimum(low, np.where(seen, own, np.inf).min(axis=0))
        high = np.maximum(high, np.where(seen, own, -np.inf).max(axis=0))
    free = ~(np.isfinite(low) & np.isfinite(high))  # (478, 3): never seen uncovered, no limit
    free[UNHELD_LANDMARKS] = True
    low[free], high[free] = -np.inf, np.inf
    for start in range(0, len(covered), chunk_frames):
        chunk = np.asarray(covered[start:start + chunk_frames], bool)  # (n, 478)
        if not chunk.any():
            continue
        own = np.asarray(deformation_mm[start:start + chunk_frames], np.float64)
        with np.errstate(invalid="ignore"):  # NaN (no face) stays NaN
            own = np.where(chunk[..., None], np.clip(own, low, high), own)
        deformation_mm[start:start + chunk_frames] = own.astype(deformation_mm.dtype)
