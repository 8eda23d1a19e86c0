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

Numpy only; (T, 478, 3) arrays are the take's canonical millimetres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ops.take import LANDMARK_COUNT, Take

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


def micro_components(take: Take) -> list[MicroComponent]:
    """The take's events, each with its pattern and time course. Only a micro layer the engine
    built from the events (``MICRO_LAYER_FROM_EVENTS`` in the take's network settings) is taken
    apart: an earlier network's own, near-zero micro output would give keys of noise. Events
    whose pattern is flat are left out."""
    if take.settings.get("network", {}).get("micro_layer") != MICRO_LAYER_FROM_EVENTS:
        return []
    micro = np.nan_to_num(np.asarray(take.micro_mm, np.float64))  # (T, 478, 3)
    valid = np.asarray(take.valid, bool)
    margin = int(np.ceil(SPAN_MARGIN_S * take.fps))
    components = []
    for event in take.events:
        pattern = micro[event.apex_frame]  # (478, 3)
        energy = float(np.sum(pattern**2))
        if np.sqrt(np.sum(pattern**2, axis=1)).max() < _FLOOR_MM:
            continue
        first = max(event.onset_frame - margin, 0)
        last = min(event.offset_frame + margin, take.frame_count - 1)
        weights = np.zeros(take.frame_count)
        weights[first:last + 1] = np.einsum("tlc,lc->t", micro[first:last + 1], pattern) / energy
        weights[~valid] = np.nan
        components.append(MicroComponent(event.region, event.apex_frame, pattern, weights, first, last))
    return components


def components_mm(components: list[MicroComponent], frame_count: int) -> np.ndarray:
    """What the components add up to: (T, 478, 3) mm (NaN where their weights are)."""
    total = np.zeros((frame_count, LANDMARK_COUNT, 3))
    for component in components:
        total += component.weights[:, None, None] * component.pattern_mm
    return total
