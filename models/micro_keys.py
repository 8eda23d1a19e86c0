"""A take's micro-expressions as layers of their own: one shape and one time course per event.

The network writes its micro layer as the sum, over the detected events, of each event's time
course times its displacement pattern (``network.events.micro_layer_mm``). An animator wants them
apart: to exaggerate one micro-expression until it reads, or to slide it a few frames, without
touching the performance around it. ``micro_components`` takes the layer apart again, per event:
the pattern is the layer at the event's apex (where its time course is 1), and the weight at a
frame is the layer's projection on that pattern, over the event's frames and a margin for the
fit's slack. The bake (``mxr_addon.bake``) turns each pattern into a shape key whose value
F-curve is that weight, and retargets the rest of the take without it, so that the rig shows the
same face as before with every micro key at its captured value, and a micro key at 2 doubles that
micro-expression alone.

``MicroTuning`` is how an animator has since tuned one of them (intensity, a shift in time, a
longer or shorter duration about its apex); ``retune_keys`` moves a curve's keys from one tuning
to another, so that the Blender side can keep the tuning as three live numbers while the curve
itself, hand edits included, stays the thing that is animated.

Numpy only; (T, 478, 3) arrays are the take's canonical millimetres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ops.take import LANDMARK_COUNT, MicroEvent, Take

MICRO_LAYER_FROM_EVENTS = "events"  # take.settings["network"]["micro_layer"] of a layer built from its events
SPAN_MARGIN_S = 0.05  # frames around an event's onset..offset its weight is read on (> the layer fit's slack)
_FLOOR_MM = 1e-4  # a pattern that moves no landmark this much is no shape


@dataclass(frozen=True)
class MicroComponent:
    region: str  # the event's face region
    apex_frame: int  # take frame of the event's apex
    pattern_mm: np.ndarray  # (478, 3) mm, the micro-expression at its apex
    weights: np.ndarray  # (T,) the time course: 0 outside the event's span, NaN on frames without a face
    first_frame: int  # the span the weights are read on (take frames, inclusive): the event and a margin
    last_frame: int
    event: MicroEvent  # the detected event it was taken from


def micro_components(take: Take) -> list[MicroComponent]:
    """The take's events, each with its pattern and time course. Only a micro layer the engine
    built from the events (``MICRO_LAYER_FROM_EVENTS`` in the take's network settings) is taken
    apart: an earlier network's own, near-zero micro output would give keys of noise. Events
    whose pattern is flat are left out."""
    if take.settings.get("network", {}).get("micro_layer") != MICRO_LAYER_FROM_EVENTS:
        return []
    valid = np.asarray(take.valid, bool)
    margin = int(np.ceil(SPAN_MARGIN_S * take.fps))
    components = []
    for event in take.events:
        pattern = np.nan_to_num(np.asarray(take.micro_mm[event.apex_frame], np.float64))  # (478, 3)
        energy = float(np.sum(pattern**2))
        if np.sqrt(np.sum(pattern**2, axis=1)).max() < _FLOOR_MM:
            continue
        first = max(event.onset_frame - margin, 0)
        last = min(event.offset_frame + margin, take.frame_count - 1)
        weights = np.zeros(take.frame_count)
        span = np.nan_to_num(np.asarray(take.micro_mm[first:last + 1], np.float64))  # (n, 478, 3)
        weights[first:last + 1] = np.einsum("tlc,lc->t", span, pattern) / energy
        weights[~valid] = np.nan
        components.append(MicroComponent(event.region, event.apex_frame, pattern, weights, first, last, event))
    return components


def components_mm(components: list[MicroComponent], frame_count: int, frames: slice = slice(None)) -> np.ndarray:
    """What the components add up to at ``frames`` (a contiguous slice) of the take's
    ``frame_count``: (n, 478, 3) mm, NaN where their weights are within their spans. Each is added
    over its own span only (its weights are 0 elsewhere): a take of 10,000 frames has hundreds."""
    rows = range(frame_count)[frames]
    total = np.zeros((len(rows), LANDMARK_COUNT, 3))
    start = rows.start if len(rows) else 0
    for component in components:
        first, stop = max(component.first_frame, start), min(component.last_frame + 1, start + len(rows))
        if first < stop:
            total[first - start:stop - start] += component.weights[first:stop, None, None] * component.pattern_mm
    return total


@dataclass(frozen=True)
class MicroTuning:
    """One micro key's tuning relative to its capture: its time course times ``intensity``,
    stretched about the captured apex by ``stretch`` (2: twice as long) and moved by
    ``shift_frames`` (scene frames, later when positive). The identity is the capture."""

    intensity: float = 1.0
    shift_frames: float = 0.0
    stretch: float = 1.0

    def __post_init__(self) -> None:
        if not (self.intensity > 0 and self.stretch > 0):
            raise ValueError(f"intensity and stretch must be positive: {self}")


def tuned_frames(frames: np.ndarray, apex_frame: float, tuning: MicroTuning) -> np.ndarray:
    """Captured times (n,) scene frames -> where ``tuning`` puts them: (n,) scene frames."""
    return apex_frame + tuning.shift_frames + (np.asarray(frames, np.float64) - apex_frame) * tuning.stretch


def retune_keys(frames: np.ndarray, values: np.ndarray, apex_frame: float, before: MicroTuning,
                after: MicroTuning) -> tuple[np.ndarray, np.ndarray]:
    """Keys (n,) scene frames and (n,) values of a curve tuned by ``before`` -> the same keys tuned
    by ``after``. Relative, so edits made to the curve by hand in between are carried along;
    ``apex_frame`` is the captured apex (scene frames), the pivot of the stretch."""
    captured = apex_frame + (np.asarray(frames, np.float64) - apex_frame - before.shift_frames) / before.stretch
    return (tuned_frames(captured, apex_frame, after),
            np.asarray(values, np.float64) * (after.intensity / before.intensity))


def scaled_intensities(intensities: np.ndarray, factor: float, low: float, high: float) -> tuple[np.ndarray, int]:
    """(E,) intensities times ``factor``, held in ``low``..``high`` -> (E,) new intensities and how
    many of them the limits held."""
    wanted = np.asarray(intensities, np.float64) * factor
    return np.clip(wanted, low, high), int(np.count_nonzero((wanted < low) | (wanted > high)))
