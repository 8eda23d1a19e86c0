"""Blinks are measured, not solved.

Why: the unit solve read a smile's narrowed eyes as half a blink (single_face.mp4's open-eyed
smiles: eyeBlink 0.31-0.55; the head then looks half asleep), because MediaPipe's lids move only
part of a blink's way, so the blink units were read at a gain of 0.4 and every narrowing of the
eyes became a large blink. The eyes' opening is what MediaPipe measures best (two lids, over the
eye's width), and it separates cleanly: on the dev labelled frames (scripts/open_loop.py) open
eyes keep 0.72-1.17 of the neutral's opening (5th-95th percentile), closed ones 0.19-0.50. So
each eye's blink is read from its opening (``BLINK_OPEN_SHARE`` and below: none;
``BLINK_SHUT_SHARE`` and below: a full blink; linear between) and held there in the solve, and
the narrowing of a smile is left to the squint units.
"""
from __future__ import annotations

import numpy as np

from ..ops.neutral import LOWER_LIDS, UPPER_LIDS, face_measures

BLINK_OPEN_SHARE = 0.8  # an eye open to this share of its neutral opening or more: no blink
BLINK_SHUT_SHARE = 0.35  # ... to this share or less: a full blink (chosen on the dev labels, round numbers)
BLINK_UNITS = ("eyeBlinkLeft", "eyeBlinkRight")


def blink_from_opening(opening_share: np.ndarray) -> np.ndarray:
    """An eye's opening over its neutral opening (...,) -> its blink, 0..1 (NaN stays NaN)."""
    return np.clip((BLINK_OPEN_SHARE - opening_share) / (BLINK_OPEN_SHARE - BLINK_SHUT_SHARE), 0.0, 1.0)


def blink_columns(unit_names: tuple[str, ...], landmark_basis: np.ndarray) -> dict[int, int]:
    """Unit index -> the eye (0 or 1, ``face_measures``' order) it closes, for the blink units a
    head has; the eye is the one whose lids the unit moves more (landmark_basis (K, 478, 3)), so
    no convention of sides is assumed."""
    columns = {}
    for name in BLINK_UNITS:
        if name in unit_names:
            unit = unit_names.index(name)
            moves = [np.linalg.norm(landmark_basis[unit, list(lids)], axis=-1).sum() for lids in zip(UPPER_LIDS, LOWER_LIDS)]
            columns[unit] = int(np.argmax(moves))
    return columns


def measured_blinks(neutral_mm: np.ndarray, faces_mm: np.ndarray) -> np.ndarray:
    """(n, 2) each eye's blink in canonical faces (n, 478, 3) mm against the neutral (478, 3) mm;
    NaN where an eye has no width to measure it by."""
    with np.errstate(invalid="ignore", divide="ignore"):  # a degenerate eye gives NaN: not measured
        opening = face_measures(np.asarray(faces_mm, np.float64))[:, :2]  # (n, 2) over the eyes' widths
        neutral = face_measures(np.asarray(neutral_mm, np.float64)[None])[0, :2]
        return blink_from_opening(opening / neutral)
