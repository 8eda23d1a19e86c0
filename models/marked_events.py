"""Micro-expressions the animator marks: a span of take frames the detector missed becomes one of
the take's events, with a micro layer of its own read from the take's motion exactly as the engine
reads the events it finds (``network.events.micro_layer_mm``).

Why: on real footage a planted micro-expression stands out of the face's own motion by a median
1.7-2.3 robust standard deviations, even for a detector told its pattern (docs/OPEN_LOOP.md), so
the detector finds few of them; a person watching the video sees them. The take already holds about
half of such an event's motion (the landmarks fused with the flow); marking its span gives it a
layer to tune, as a found event has.

The take's other events' layers do not change: the new layer is fitted on the motion no layer
holds yet and moved out of the macro layer; where the take's video is at hand, over the event's
stretch read again by flow against its first frame, as the engine reads the events it finds
(ops/stretch_flow.py, given as ``reread``). Numpy only; frames are take frame indices, motion is
the take's canonical mm.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ops.errors import MxrError
from ..ops.spill import FrameSum
from ..ops.take import MicroEvent, Take, analysis_clock
from .micro_keys import MICRO_LAYER_FROM_EVENTS
from .network.events import (MAX_PATTERN_MM, StretchReader, above_line_mm, bump_mm, layer_fit, layer_span,
                             micro_layers_read_again, region_landmarks, span_mm)
from .network.features import EVENT_REGIONS, region_membership
from .network.fusion import basis_in_take_frame

# The span a micro-expression's fit can place an event in (``event_profile.fit_event_timing``'s).
MIN_SPAN_S = 0.1
MAX_SPAN_S = 0.6
# take.settings[MARKED]: [onset, apex, offset, region, read] of each marked event; read: "flow" where its
# stretch was read again by flow from the video (``reread``), "points" where from the take's points alone
MARKED = "marked_events"
# The least share of the region's motion over the marked frames (about a cubic baseline) that the
# fitted time course must explain: 0.05-0.07 on a still face's 0.02 mm jitter; 0.19-0.71 at planted
# micro events on the dev clips of scripts/open_loop_inject.py (and as much at their real face's
# own flickers: no detector, only a check that something rises and falls there).
MIN_EXPLAINED = 0.1


def strongest_region(motion_mm: np.ndarray, first: int, last: int) -> str:
    """The region whose landmarks rise most above the line joining the span's end frames (the root
    mean square over its landmarks, at its highest frame), over frames ``first``..``last`` of the
    take's motion (T, 478, 3) mm."""
    above = above_line_mm(span_mm(motion_mm, first, last))  # (n, 478, 3) mm
    rise = {region: float(np.sqrt(np.mean(np.sum(above[:, region_landmarks(row)]**2, axis=-1), axis=1)).max())
            for region, row in zip(EVENT_REGIONS, region_membership(EVENT_REGIONS))}
    return max(rise, key=rise.get)


def regional_apex(motion_mm: np.ndarray, first: int, last: int, region: str) -> tuple[int, float]:
    """Where ``region`` moves most above that line over frames ``first``..``last`` (as the engine
    places a found event's apex, ``events.extract_events``): (apex frame, its largest landmark move, mm)."""
    members = region_landmarks(region_membership(EVENT_REGIONS)[EVENT_REGIONS.index(region)])
    regional = bump_mm(span_mm(motion_mm, first, last)[:, members])  # (n,) mm
    return first + int(np.argmax(regional)), float(regional.max())


def mark_event(take: Take, first_frame: int, last_frame: int, region: str | None = None,
               reread: StretchReader | None = None) -> Take:
    """A new take with one more micro event over take frames ``first_frame``..``last_frame``
    (inclusive: the frames before its rise and after its fall), in ``region`` (None: the region
    that moves most there, ``strongest_region``), its layer fitted on what the micro layer does not
    hold yet and moved there from the macro layer (the other events' layers are kept as they are).
    With ``reread`` (``stretch_flow.take_stretch_reader`` of the take's video) the event's stretch
    is read again by flow against its first frame, as the engine reads the events it finds: the
    layer is fitted there and the total shows the event as the flow reads it; without, the total
    does not change. MxrError for a span outside the take or the length a micro-expression
    has, a frame without a face in it, an event of the same region already there, or a span where
    nothing moves as a micro-expression does."""
    count = take.frame_count
    if not 0 <= first_frame < last_frame < count:
        raise MxrError(f"the marked frames {first_frame}-{last_frame} are not within the take's frames 0-{count - 1}")
    _, fps = analysis_clock(take)
    seconds = (last_frame - first_frame) / fps
    if not MIN_SPAN_S <= seconds <= MAX_SPAN_S:
        raise MxrError(f"the marked frames {first_frame}-{last_frame} last {seconds:.2f} s; a micro-expression "
                       f"lasts {MIN_SPAN_S:g}-{MAX_SPAN_S:g} s")
    if not np.all(np.asarray(take.valid, bool)[first_frame:last_frame + 1]):
        raise MxrError(f"the marked frames {first_frame}-{last_frame} include frames without a face")
    if region is not None and region not in EVENT_REGIONS:
        raise MxrError(f"'{region}' is no face region; one of {', '.join(EVENT_REGIONS)}")
    total_mm = FrameSum((take.macro_mm, take.micro_mm, take.detail_mm))  # a slice of frames at a time
    unlayered_mm = FrameSum((take.macro_mm, take.detail_mm))  # what no event's layer holds yet
    region = region or strongest_region(total_mm, first_frame, last_frame)
    for event in take.events:
        if event.region == region and event.onset_frame <= last_frame and first_frame <= event.offset_frame:
            raise MxrError(f"a {region} event already covers frames {event.onset_frame}-{event.offset_frame}")
    apex, peak = regional_apex(unlayered_mm, first_frame, last_frame, region)
    if peak > MAX_PATTERN_MM:
        raise MxrError(f"frames {first_frame}-{last_frame} move the {region} {peak:.1f} mm: more than a "
                       f"micro-expression does ({MAX_PATTERN_MM:g} mm at most); that motion stays in the macro layer")
    marked = MicroEvent(onset_frame=first_frame, apex_frame=apex, offset_frame=last_frame, region=region,
                        peak_mm=peak, confidence=1.0)
    membership = region_membership(EVENT_REGIONS)
    fit = layer_fit(marked, unlayered_mm, fps, region_landmarks(membership[EVENT_REGIONS.index(region)]))[-1]
    if fit is None or fit.explained < MIN_EXPLAINED:
        raise MxrError(f"nothing in frames {first_frame}-{last_frame} moves the {region} as a micro-expression does "
                       "(rising after the first frame and back by the last); mark the frames just before its "
                       "rise and just after its fall")
    neutral_mm = np.asarray(take.neutral_mm, np.float64)
    corrections = {} if reread is None else reread([layer_span(marked, fps, count)])
    # (T, 478, 3) float32, zero outside the event's span: read again by the flow, and as the take read it
    layer_mm, taken_mm = micro_layers_read_again([marked], unlayered_mm, corrections, fps, EVENT_REGIONS, membership,
                                                 basis_in_take_frame(neutral_mm), neutral_mm)
    for layer in (layer_mm, taken_mm):
        layer[~np.asarray(take.valid, bool)] = np.nan
    settings = dict(take.settings)
    settings["network"] = {**settings.get("network", {}), "micro_layer": MICRO_LAYER_FROM_EVENTS}
    settings[MARKED] = settings.get(MARKED, []) + [[first_frame, apex, last_frame, region,
                                                    "flow" if corrections else "points"]]
    return dataclasses.replace(take, macro_mm=(take.macro_mm - taken_mm).astype(np.float32),
                               micro_mm=(take.micro_mm + layer_mm).astype(np.float32),
                               events=sorted(take.events + [marked], key=lambda event: event.onset_frame),
                               settings=settings)
