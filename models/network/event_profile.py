"""The time course of a micro-expression, and fitting it to a region's motion (numpy only).

A micro-expression rises from its onset to its apex, may hold for a moment and decays, more
slowly, to its offset. The synthetic generator draws its events from ``micro_profile``, and
decoding fits the same family to the reconstructed motion, because where an event starts cannot
be read off the motion itself: a smoothstep rise has moved 3 % of its peak a fifth of the way up,
well inside the noise for a 0.2 mm event. The shape of the whole rise, seen above the noise,
tells where it must have left zero; a detector's score, which crosses its threshold somewhere
on the way up, does not.

``fit_event_timing`` models the region's motion over a span around a detection as a cubic
baseline (a slow macro expression or head drift underneath) plus ``micro_profile`` times a fixed
displacement pattern, and searches onset, offset, apex and hold for the best least-squares fit.
The baseline's degree was chosen on 160 validation takes (seeds 8300-8302): a straight line left
onsets a frame later and the micro layer 0.02-0.17x of the baseline's error higher; a quadratic
0.01-0.03x higher, with the 200 fps median onset / apex error 2 frames instead of 1; a quartic
takes up part of the event itself (micro layer 0.10-0.39x higher).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RISE_SHARES = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)  # (apex - onset) / (offset - onset) searched
HOLD_SHARES = (0.0, 0.07, 0.14)  # hold / (offset - onset) searched
_PATTERN_RANK = 8  # components of the region's motion kept for the fit
BASELINE_DEGREE = 3  # the polynomial under an event (see the module docstring)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, 3x^2 - 2x^3 between: a ramp with zero slope at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def micro_profile(times_s: np.ndarray, onset_s: np.ndarray | float, apex_s: np.ndarray | float,
                  hold_s: np.ndarray | float, offset_s: np.ndarray | float) -> np.ndarray:
    """Onset -> apex (smoothstep up), a hold, then a smoothstep decay to the offset; in [0, 1].
    Broadcasts: times (n,) with scalars -> (n,); times (n, 1) with (N,) parameters -> (n, N)."""
    rise = smoothstep((times_s - onset_s) / (apex_s - onset_s))
    fall = 1.0 - smoothstep((times_s - apex_s - hold_s) / (offset_s - apex_s - hold_s))
    return np.minimum(rise, fall)


@dataclass(frozen=True)
class EventTiming:
    onset_frame: int  # the last frame before the rise (floor of the fitted onset)
    apex_frame: int  # the first frame at the fitted profile's top
    offset_frame: int  # the first frame after the decay (ceil of the fitted offset)
    pattern_mm: np.ndarray  # (M, 3) mm, the region's displacement at the top of the profile
    explained: float  # share of the span's motion (about its baseline) the fit explains, 0..1
    profile: np.ndarray  # (n,) the fitted time course over the span's frames, 0..1


def span_baseline(frames: int) -> np.ndarray:
    """(n, BASELINE_DEGREE + 1) orthonormal columns spanning the polynomials of that degree in
    time over ``frames`` frames."""
    centred = np.arange(frames, dtype=np.float64) / frames - 0.5
    return np.linalg.qr(np.stack([centred**power for power in range(BASELINE_DEGREE + 1)], axis=1))[0]


def fit_pattern(motion_mm: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """The displacement (M, 3) mm that ``profile`` (n,) scales in motion_mm (n, M, 3): least
    squares with a ``span_baseline`` per coordinate, which it leaves out."""
    baseline = span_baseline(len(profile))
    residual_profile = profile - baseline @ (baseline.T @ profile)
    observed = motion_mm.reshape(len(profile), -1).astype(np.float64)
    pattern = (observed.T @ residual_profile) / max(float(residual_profile @ residual_profile), 1e-12)  # (3M,)
    return pattern.reshape(-1, 3)


def fit_event_timing(motion_mm: np.ndarray, fps: float, first_frame: int, onset_guess: int, offset_guess: int,
                     slack_s: float = 0.08, min_duration_s: float = 0.1, max_duration_s: float = 0.6) -> EventTiming | None:
    """Best onset / apex / offset of one event in a region's motion.

    motion_mm (n, M, 3) mm, the region's M landmarks over frames ``first_frame ..
    first_frame + n - 1``; the onset is searched within ``slack_s`` of ``onset_guess`` and the
    offset within ``slack_s`` of ``offset_guess`` (frames), the duration between the bounds given.
    None if no candidate fits in the span or the motion is flat.
    """
    frames = len(motion_mm)
    if frames < 4 or motion_mm.shape[1] == 0:
        return None
    times = np.arange(frames, dtype=np.float64)  # frames since first_frame
    baseline = span_baseline(frames)  # (n, BASELINE_DEGREE + 1)
    observed = motion_mm.reshape(frames, -1).astype(np.float64)
    observed = observed - baseline @ (baseline.T @ observed)  # (n, 3M) about the baseline
    left, singular, _ = np.linalg.svd(observed, full_matrices=False)
    rank = min(_PATTERN_RANK, len(singular))
    components = left[:, :rank] * singular[:rank]  # (n, r)
    total = float(np.sum(singular**2))
    if total <= 0.0:
        return None

    slack = slack_s * fps
    onset0, offset0 = onset_guess - first_frame, offset_guess - first_frame
    best = _search(components, baseline, times, fps, np.unique(np.linspace(onset0 - slack, onset0 + slack, 17)),
                   np.unique(np.linspace(offset0 - slack, offset0 + slack, 17)), RISE_SHARES, HOLD_SHARES,
                   min_duration_s, max_duration_s)
    if best is None:
        return None
    step = slack / 8
    onset, offset, rise, hold, _ = best
    fine = _search(components, baseline, times, fps, np.unique(onset + np.linspace(-step, step, 9)),
                   np.unique(offset + np.linspace(-step, step, 9)), rise + np.array([-0.025, 0.0, 0.025]),
                   (hold,), min_duration_s, max_duration_s)
    onset, offset, rise, hold, score = fine if fine is not None else best
    duration = offset - onset
    profile = micro_profile(times, onset, onset + rise * duration, hold * duration, offset)  # (n,)
    top = np.flatnonzero(profile >= profile.max() - 1e-9)
    return EventTiming(onset_frame=first_frame + max(int(np.floor(onset)), 0), apex_frame=first_frame + int(top[0]),
                       offset_frame=first_frame + min(int(np.ceil(offset)), frames - 1),
                       pattern_mm=fit_pattern(motion_mm, profile), explained=score / total, profile=profile)


def _search(components: np.ndarray, baseline: np.ndarray, times: np.ndarray, fps: float, onsets: np.ndarray,
            offsets: np.ndarray, rises: tuple[float, ...] | np.ndarray, holds: tuple[float, ...],
            min_duration_s: float, max_duration_s: float) -> tuple[float, float, float, float, float] | None:
    """The (onset, offset, rise share, hold share, explained energy) of the grid's best profile;
    frames since the span's start. Explained energy of a profile p, after the baseline is taken
    off both: |components^T p|^2 / |p|^2."""
    onset, offset, rise, hold = (grid.ravel() for grid in np.meshgrid(onsets, offsets, np.asarray(rises, float),
                                                                      np.asarray(holds, float), indexing="ij"))
    duration = offset - onset
    keep = (duration >= min_duration_s * fps) & (duration <= max_duration_s * fps) & (onset >= -0.5) \
        & (offset <= times[-1] + 0.5) & (rise > 0.0) & (rise + hold < 1.0)
    if not keep.any():
        return None
    onset, offset, rise, hold, duration = onset[keep], offset[keep], rise[keep], hold[keep], duration[keep]
    profiles = micro_profile(times[:, None], onset, onset + rise * duration, hold * duration, offset)  # (n, N)
    profiles -= baseline @ (baseline.T @ profiles)
    norms = np.einsum("nc,nc->c", profiles, profiles)
    explained = np.sum((components.T @ profiles) ** 2, axis=0) / np.maximum(norms, 1e-12)  # (N,)
    explained[norms < 1e-9] = 0.0
    pick = int(np.argmax(explained))
    return float(onset[pick]), float(offset[pick]), float(rise[pick]), float(hold[pick]), float(explained[pick])
