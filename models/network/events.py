"""Per-region event logits + the micro layer -> micro-expression events (numpy only).

The network scores, per frame and face region, "a micro-expression is under way here". Events are
the stretches where that score rises above ``high`` and stays above ``low`` (hysteresis: one
flicker across a single threshold does not split or invent an event). Onset and offset are the
stretch's ends, the apex is where the micro layer moves the region's landmarks most, and the
peak is that displacement. One motion often shows in neighbouring regions too; where detections
of different regions overlap in time, the most confident one is kept.
"""
from __future__ import annotations

import numpy as np

from ...ops.take import MicroEvent


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def hysteresis_segments(probability: np.ndarray, high: float, low: float) -> list[tuple[int, int]]:
    """Inclusive (start, end) frame ranges where ``probability`` (T,) stays above ``low`` and
    reaches ``high`` somewhere. NaN counts as below."""
    above = np.nan_to_num(probability, nan=0.0) > low
    edges = np.flatnonzero(np.diff(np.concatenate([[False], above, [False]]).astype(np.int8)))
    segments = []
    for start, stop in zip(edges[::2], edges[1::2]):
        if np.nanmax(probability[start:stop]) > high:
            segments.append((int(start), int(stop - 1)))
    return segments


def merge_close(segments: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Join segments separated by at most ``gap`` frames (a dip inside one event)."""
    merged: list[tuple[int, int]] = []
    for start, end in segments:
        if merged and start - merged[-1][1] - 1 <= gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def extract_events(logits: np.ndarray, micro_mm: np.ndarray, fps: float, regions: tuple[str, ...],
                   membership: np.ndarray, high: float = 0.5, low: float = 0.3,
                   min_duration_s: float = 0.06, max_duration_s: float = 0.75,
                   merge_gap_s: float = 0.05) -> list[MicroEvent]:
    """logits (T, R), micro_mm (T, 478, 3) (NaN on invalid frames), membership (R, 478) (non-zero
    on each region's landmarks) -> events sorted by onset.

    ``min_duration_s`` drops blips shorter than any micro-expression (0.15 s) can be even when
    the detector is late on both ends; ``max_duration_s`` drops stretches longer than any
    micro-expression (0.5 s) plus that slack — a slow macro expression is not a micro event;
    ``merge_gap_s`` heals short dips.
    """
    probability = sigmoid(logits.astype(np.float64))  # (T, R)
    magnitude = np.linalg.norm(np.nan_to_num(micro_mm.astype(np.float64)), axis=-1)  # (T, 478)
    shortest = max(1, int(round(min_duration_s * fps)))
    longest = max(shortest, int(round(max_duration_s * fps)))
    gap = int(round(merge_gap_s * fps))
    candidates: list[MicroEvent] = []
    for row, region in enumerate(regions):
        members = np.flatnonzero(membership[row] > 0)
        regional = magnitude[:, members].max(axis=1) if len(members) else np.zeros(len(magnitude))  # (T,)
        for start, end in merge_close(hysteresis_segments(probability[:, row], high, low), gap):
            if not shortest <= end - start + 1 <= longest:
                continue
            apex = start + int(np.argmax(regional[start:end + 1]))
            candidates.append(MicroEvent(onset_frame=start, apex_frame=apex, offset_frame=end, region=region,
                                         peak_mm=float(regional[apex]),
                                         confidence=float(probability[start:end + 1, row].max())))
    return suppress_overlaps(candidates)


def suppress_overlaps(events: list[MicroEvent], overlap: float = 0.5) -> list[MicroEvent]:
    """Keep the most confident of events whose frame ranges overlap by more than ``overlap`` of
    the shorter one; sorted by onset."""
    kept: list[MicroEvent] = []
    for event in sorted(events, key=lambda e: -e.confidence):
        if all(_overlap(event, other) <= overlap for other in kept):
            kept.append(event)
    return sorted(kept, key=lambda e: e.onset_frame)


def _overlap(a: MicroEvent, b: MicroEvent) -> float:
    shared = min(a.offset_frame, b.offset_frame) - max(a.onset_frame, b.onset_frame) + 1
    shorter = min(a.offset_frame - a.onset_frame, b.offset_frame - b.onset_frame) + 1
    return max(shared, 0) / shorter
