"""Finding the performer's neutral face in a take instead of assuming the clip starts on it.

Why: every expression is read as a displacement from the neutral. A clip that opens on a sad face
looking down (WolfgangLanger_Pexels.mp4) made every later frame "sad face plus something": a laugh
read as jaw units and no smile, closed eyes as open.

How: five measures a person would look at, each free of head pose and of any head model, on the
canonical (pose-normalised) landmarks: how open each eye is (lid gap over eye width), how open
the mouth is, how wide it is, how high its corners sit against the lip centre, and how high the
brows sit over the eyes. A neutral face has its eyes open as most frames have them (a high
percentile: blinks are brief), its mouth as closed and as narrow as the take's calmer frames (low
percentiles: speech and smiles open and widen it), and its lip corners and brows where they
usually are (medians). Each frame is scored by its summed distance from those, in units of each
measure's spread over the take; the best ``NEUTRAL_SPAN_S`` window is the neutral. Frames where
something covers the face (``occluded_frames``: a hand over the mouth) are chosen only when there
is nothing else: MediaPipe still draws a face there, from its prior.
"""
from __future__ import annotations

import numpy as np

from .errors import MxrError

NEUTRAL_SPAN_S = 0.2  # the neutral is the median over this many seconds of the best frames

# MediaPipe face-mesh indices (subject's right / left).
UPPER_LIDS, LOWER_LIDS = (159, 386), (145, 374)
_EYE_CORNERS = ((33, 133), (263, 362))
_LIP_CENTRE = (13, 14)  # inner upper / lower lip
_MOUTH_CORNERS = (61, 291)
_BROWS = (105, 66, 334, 296)
# Occlusion: the face detector's score below this share of the take's median, or more than this
# share of the eye and mouth points whose flow fails its forward-backward check.
OCCLUDED_CONFIDENCE_SHARE = 0.5
OCCLUDED_FLOW_SHARE = 0.3
_FEATURES = np.array([61, 291, 13, 14, 17, 0, 78, 308, 37, 267, 84, 314, 159, 145, 386, 374, 33, 133, 263, 362])
# Target percentile of each measure over the take (see the module docstring).
_TARGET_PERCENTILES = np.array([75.0, 75.0, 10.0, 10.0, 50.0, 50.0])


def face_measures(faces_mm: np.ndarray) -> np.ndarray:
    """(T, 478, 3) canonical landmarks (mm, +Y up) -> (T, 6): right and left eye opening (ratio),
    mouth opening (mm), mouth width (mm), lip-corner height over the lip centre (mm), brow height
    over the upper lids (mm)."""
    def distance(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(faces_mm[:, a] - faces_mm[:, b], axis=-1)

    eyes = [distance(upper, lower) / distance(*corners)
            for upper, lower, corners in zip(UPPER_LIDS, LOWER_LIDS, _EYE_CORNERS)]
    corner_height = faces_mm[:, list(_MOUTH_CORNERS), 1].mean(axis=1) - faces_mm[:, list(_LIP_CENTRE), 1].mean(axis=1)
    brow_height = faces_mm[:, list(_BROWS), 1].mean(axis=1) - faces_mm[:, list(UPPER_LIDS), 1].mean(axis=1)
    return np.stack([*eyes, distance(*_LIP_CENTRE), distance(*_MOUTH_CORNERS), corner_height, brow_height], axis=1)


def neutral_scores(faces_mm: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T,) how far each frame looks from neutral (lower is calmer; inf without a face); see the
    module docstring."""
    valid = np.asarray(valid, bool)
    measures = np.full((len(valid), len(_TARGET_PERCENTILES)), np.nan)
    measures[valid] = face_measures(faces_mm[valid])
    return scores_from_measures(measures, valid)


def scores_from_measures(measures: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``neutral_scores`` from the frames' ``face_measures`` (T, 6), which a long take can measure
    a chunk of frames at a time; rows without a face are not read."""
    valid = np.asarray(valid, bool)
    if not valid.any():
        raise MxrError("no face in the take: there is no neutral face to find")
    targets, spread = _targets_and_spread(measures[valid])
    scores = np.full(len(valid), np.inf)
    scores[valid] = np.sum(np.abs(measures[valid] - targets) / spread, axis=1)
    return scores


def face_score(face_mm: np.ndarray, measures: np.ndarray) -> float:
    """How far one canonical face (478, 3) mm looks from neutral, against the take's frames'
    ``face_measures`` (T, 6) (all with a face): the score ``neutral_scores`` gives a frame."""
    targets, spread = _targets_and_spread(measures)
    return float(np.sum(np.abs(face_measures(np.asarray(face_mm, np.float64)[None])[0] - targets) / spread))


def _targets_and_spread(measures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(6,) the neutral's target for each measure over the frames' measures (T, 6), and (6,) the
    measure's spread (interquartile range) that a distance from it is counted in."""
    targets = np.array([np.percentile(measures[:, i], q) for i, q in enumerate(_TARGET_PERCENTILES)])
    spread = np.percentile(measures, 75, axis=0) - np.percentile(measures, 25, axis=0)
    return targets, np.maximum(spread, 1e-3 * np.maximum(np.abs(targets), 1e-6))  # a still measure counts


def occluded_frames(valid: np.ndarray, confidence: np.ndarray, flow_consistent: np.ndarray,
                    flow_fb_error_px: np.ndarray) -> np.ndarray:
    """(T,) bool: frames whose face is probably partly covered. confidence (T,) the detector's
    score; flow_consistent (T, 478) bool and flow_fb_error_px (T, 478) the front-end's flow check
    (NaN where there was no flow to check, e.g. the first frame)."""
    valid = np.asarray(valid, bool)
    confidence = np.asarray(confidence, np.float64)
    low = confidence < OCCLUDED_CONFIDENCE_SHARE * np.median(confidence[valid]) if valid.any() else np.zeros(len(valid), bool)
    checked = np.isfinite(flow_fb_error_px[:, _FEATURES])  # (T, 20)
    failed = (~np.asarray(flow_consistent[:, _FEATURES], bool)) & checked  # read by columns: on disk in the engine
    share = failed.sum(axis=1) / np.maximum(checked.sum(axis=1), 1)
    return valid & (low | (share > OCCLUDED_FLOW_SHARE))


def find_neutral_frames(faces_mm: np.ndarray, valid: np.ndarray, fps: float,
                        occluded: np.ndarray | None = None) -> np.ndarray:
    """Frame indices (a run of about ``NEUTRAL_SPAN_S``) whose faces look most neutral.

    faces_mm: (T, 478, 3) canonical landmarks (NaN where no face); valid: (T,) bool; occluded:
    (T,) bool frames to avoid (``occluded_frames``). Windows with a frame without a face are not
    chosen while any other window exists.
    """
    return neutral_run(neutral_scores(faces_mm, valid), fps, occluded)


def neutral_run(scores: np.ndarray, fps: float, occluded: np.ndarray | None = None) -> np.ndarray:
    """``find_neutral_frames`` from the frames' ``neutral_scores`` (T,)."""
    span = int(np.clip(round(NEUTRAL_SPAN_S * fps), 1, len(scores)))
    if occluded is not None:
        uncovered = np.where(np.asarray(occluded, bool), np.inf, scores)
        if np.isfinite(np.convolve(uncovered, np.ones(span), mode="valid")).any():  # else: covered or nothing
            scores = uncovered
    window_scores = np.convolve(scores, np.ones(span), mode="valid")  # inf where a window has a faceless frame
    if not np.isfinite(window_scores).any():  # no run of face frames that long: the single best frame
        return np.array([int(np.argmin(scores))])
    start = int(np.argmin(window_scores))
    return np.arange(start, start + span)
