"""Per-region event logits + the face's motion -> micro-expression events, and the micro layer
they explain (numpy only).

The network scores, per frame and face region, "a micro-expression is under way here". Events are
the stretches where that score rises above ``high`` and stays above ``low`` (hysteresis: one
flicker across a single threshold does not split or invent an event). Onset and offset are the
stretch's ends; the apex is where the face's motion stands out most from the stretch's own
baseline (the straight line from its onset to its offset frame, so a slow macro expression
under the event does not pull the apex to one end), over the region's landmarks, and the peak is
that displacement. At 60 fps and more, onset, apex, offset and peak are then refined by fitting
the micro-expression time course to the region's motion (``event_profile.fit_event_timing``)
within ``REFINE_SLACK_S`` of the detector's bounds: on 60 validation takes at 200 fps (seed 8300)
that took the median onset / apex error from 3 / 3.5 to 2 / 2 frames (within 2 frames: 31 / 38 %
-> 56 / 57 %). A wider search (0.08 s) found the same median timing but fitted the noise more
often: on 160 validation takes (seeds 8300-8302) it left the micro layer's error 0.02-0.05x of
the baseline's higher at 200 and 24-200 fps. Below 60 fps a frame (17 ms and more) is coarser
than the fit can resolve: refining there too left the onsets as close and the micro layer worse
(24-30 fps: 0.59x -> 0.65x). One motion often shows in neighbouring regions too; where
detections of different regions overlap in time, the most confident one is kept. A blink is no
micro-expression: an eye event during which the eyes close past half their opening is dropped
(``without_blinks``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ...ops.canonical import SKIN_LANDMARK_COUNT
from ...ops.neutral import face_measures
from ...ops.spill import frame_array
from ...ops.take import MicroEvent
from ..retarget import solve_box_ridge
from .event_profile import EventTiming, fit_event_timing, fit_pattern

REFINE_MIN_FPS = 60.0  # timing is refined by the profile fit at this frame rate and above
REFINE_SLACK_S = 0.04  # how far the fit may move the detector's onset and offset
# How far the micro layer's fit may move an event's onset and offset: half a frame, as an event's
# frames only place its continuous ends within one (any more slack fitted noise).
LAYER_SLACK_FRAMES = 0.5
BASELINE_PAD_S = 0.1  # the motion a profile fit reads beyond its event on each side, for its baseline
# The same for the micro layer's fit of an event whose timing was refined (see ``micro_layer_mm``).
LAYER_BASELINE_PAD_REFINED_S = 0.15
# An eye event during which the eyes open less than this share of their neutral opening is a blink.
# On franck.mp4 (200 s of conversation, no micro-expression planted) 19 of the 30 eye events had the
# eyes at 20-36 % of their opening (MediaPipe's lids travel about 40 % of a blink's way), the rest
# stayed above 66 %.
BLINK_OPENING_SHARE = 0.5
MAX_PATTERN_MM = 3.0  # a fitted pattern moving a region's landmark further is no micro-expression (trained on <= 1.5 mm)
# A stretch whose region moves further than this (its bump, ``bump_mm``) is no micro-expression, which
# is faint by definition: the detector was trained on events of at most 1.5 mm, and the take reads
# planted ones of 0.5-1.5 mm at up to ~1.6x. Chosen on the dev clips (scripts/open_loop_inject.py,
# 5 draws): without it 14 false events and 10.9 a minute where nothing is planted; 3 mm: 8 and 8.1;
# 2.5 mm: 7 and 2.7, the planted events found 1 -> 2 (a larger stretch no longer hides one); 2 mm:
# 5 and 2.7. The stretches it drops were the jaw and mouth opening or a hand passing (4-20 mm).
MAX_EVENT_PEAK_MM = 2.5
REGION_UNIT_SHARE = 0.7  # a unit acts on a region when it moves a landmark there >= this share of its largest move
PATTERN_REGULARIZATION = 1e-4  # ridge on the micro patterns' activations, relative to the basis' mean column norm
# What the units cannot show of an event's measured pattern is kept within this reach (mm, a
# Gaussian of the distance from the event's region, nothing past ``RESIDUAL_CUTOFF`` of it): real
# micro motion is local and need not lie in the open head's units. Given the planted micro events of
# the injected real clips (scripts/open_loop_inject.py, 5 draws on dev, 40 events each split,
# 2026-12-04), the share of their motion the layer carries / the motion it shows where they move
# nothing (RMS, against theirs): the units alone 0.18 / 0.08 (dev), 0.18 / 0.05 (held-out); the rest
# kept within 5 mm 0.33 / 0.12, 0.38 / 0.13; within 10 mm 0.36 / 0.14, 0.43 / 0.14; the whole
# measured pattern 0.41 / 0.36, 0.46 / 0.31 (the take itself holds 0.51 and 0.48). Chosen on dev.
RESIDUAL_REACH_MM = 5.0
RESIDUAL_CUTOFF = 2.5
# ... but not for an event of the regions speech moves: there the rest is mostly the lips talking, and
# the units keep it out (on the synthetic talking clips the micro layer's error went from 0.64x to
# 1.09x the landmark baseline's with it). Without it there: 0.34 (dev) and 0.31 (held-out) of the
# planted events' motion, against 0.33 and 0.38 with it.
SPEECH_REGIONS = ("mouth", "jaw")
# A micro-expression stands out of the motion around it and is gone again (``standing_out``): the
# region's motion is read as the event's own apex pattern; the event must rise ``STAND_OUT`` times
# the spread of that reading's fast part (less its running median over ``HIGHPASS_S``; the spread is
# twice its robust standard deviation) in the ``CONTEXT_S`` before and after it (leaving out
# ``SETTLE_S`` at its ends), and fall back by ``RETURN_SHARE`` of its rise within ``RETURN_S`` of its
# offset. Chosen on the dev clips (real takes with nothing planted, ``scripts/open_loop_inject.py``'s
# originals: WolfgangLanger 36.6 -> 6.1 events a minute, single_face 75 -> 0; the first half of
# franck.mp4, 200 s of talking: 20.4 -> 6.0) against the events kept on synthetic validation takes
# (closed loop: recall 0.90 -> 0.81 at 200 fps, 0.73 -> 0.65 at 24-30 fps; a stand-out of 3 took
# them to 0.62). See docs/OPEN_LOOP.md for the held-out clips. The rise was 2 spreads until the
# events had to be seen on the skin as well (``SEEN_ON_SKIN``), which drops most of what it kept
# out; with both, 1.5 finds twice the planted dev events (6 against 3 of 81) with no false event
# more on the dev clips, injected or talking.
CONTEXT_S = 1.0
HIGHPASS_S = 1.0
SETTLE_S = 0.1
RETURN_S = 0.3
STAND_OUT = 1.5
RETURN_SHARE = 0.5
# A micro-expression moves the skin. MediaPipe's mesh is regressed as a whole, so a jaw that opens
# or a head that turns moves its brow points too, and its points alone make events the skin never
# made (``seen_on_skin``): an event's size on the points the take is read from (fused with the flow,
# glued to the skin where trusted) must be at least ``SEEN_ON_SKIN`` of its size on MediaPipe's.
# Chosen on the dev split (docs/OPEN_LOOP.md): the planted micro events the detector finds measure
# 0.82-1.66, the talking scan face's brow events 0.2-0.6 and the other events it drops 0.55-0.72.
SEEN_ON_SKIN = 0.75
# A talker's jaw opens and closes syllable by syllable, 2-6 times a second, and a syllable that also
# shapes the lips (a stretch, a pucker) passes every test above as a mouth or jaw micro-expression:
# on the dev talking scan clips every mouth or jaw event left was one. Such an event is speech
# (``during_speech``) when the jaw's opening (the chin's distance from the upper lip) peaks by
# ``SYLLABLE_MM`` within its frames and at least ``SPEECH_SYLLABLES`` times more within
# ``CONTEXT_S`` around it (peaks by their prominence). On the dev talking scan clips the opening's
# peaks of 0.3 mm are the syllables (102 of 104 fall on one); with the test their false events
# went from 1.7 and 4.5 a minute to 0, and 2 of the 6 planted events found on the injected dev
# clips were lost with it (lip-corner depressors while WolfgangLanger laughs and talks).
# docs/OPEN_LOOP.md.
SYLLABLE_MM = 0.3
SPEECH_SYLLABLES = 2
CHIN, UPPER_LIP = 152, 0  # MediaPipe's landmarks: the chin's lowest point, the upper lip's top at the middle


def region_landmarks(membership_row: np.ndarray) -> np.ndarray:
    """The skin landmarks (indices) of one region's membership row (478,): the irises are left
    out, as a gaze shift is no skin motion (``features.region_membership`` gives them to one region)."""
    return np.flatnonzero(membership_row[:SKIN_LANDMARK_COUNT] > 0)


def region_units(basis_mm: np.ndarray, members: np.ndarray, share: float = REGION_UNIT_SHARE) -> np.ndarray:
    """(K,) bool: the basis units (K, 478, 3) that move one of the region's ``members`` landmarks
    at least ``share`` of their largest skin landmark move."""
    moves = np.linalg.norm(basis_mm[:, :SKIN_LANDMARK_COUNT], axis=-1)  # (K, 468)
    largest = moves.max(axis=1)
    return (largest > 0.0) & (moves[:, members].max(axis=1) >= share * largest)


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


def extract_events(logits: np.ndarray, motion_mm: np.ndarray, fps: float, regions: tuple[str, ...],
                   membership: np.ndarray, high: float = 0.5, low: float = 0.3,
                   min_duration_s: float = 0.1, max_duration_s: float = 0.75,
                   merge_gap_s: float = 0.05, min_peak_mm: float = 0.05, max_peak_mm: float = MAX_EVENT_PEAK_MM,
                   refine_min_fps: float = REFINE_MIN_FPS) -> list[MicroEvent]:
    """logits (T, R), motion_mm (T, 478, 3) the face's deformation (NaN on invalid frames),
    membership (R, 478) (non-zero on each region's landmarks) -> events sorted by onset.

    ``min_duration_s`` drops blips shorter than any micro-expression (0.15 s) can be even when
    the detector is late on both ends; ``max_duration_s`` drops stretches longer than any
    micro-expression (0.5 s) plus that slack — a slow macro expression is not a micro event;
    ``merge_gap_s`` heals short dips; ``min_peak_mm`` drops stretches in which the region does
    not move against the stretch's baseline (an event that moves nothing is not one), and
    ``max_peak_mm`` those in which it moves further than a micro-expression does
    (``MAX_EVENT_PEAK_MM``); ``refine_min_fps``: the frame rate from which the timing is refined
    by the profile fit.
    """
    probability = sigmoid(logits.astype(np.float64))  # (T, R)
    shortest = max(1, int(round(min_duration_s * fps)))
    longest = max(shortest, int(round(max_duration_s * fps)))
    gap = int(round(merge_gap_s * fps))
    candidates: list[MicroEvent] = []
    for row, region in enumerate(regions):
        members = region_landmarks(membership[row])
        for start, end in merge_close(hysteresis_segments(probability[:, row], high, low), gap):
            if not shortest <= end - start + 1 <= longest:
                continue
            regional = bump_mm(span_mm(motion_mm, start, end)[:, members])  # (n,)
            if regional.max() < min_peak_mm:
                continue
            apex = start + int(np.argmax(regional))
            event = MicroEvent(onset_frame=start, apex_frame=apex, offset_frame=end, region=region,
                               peak_mm=float(regional[apex - start]),
                               confidence=float(probability[start:end + 1, row].max()))
            event = refine_timing(event, motion_mm, members, fps) if fps >= refine_min_fps else event
            if event.peak_mm <= max_peak_mm:
                candidates.append(event)
    return suppress_overlaps(candidates)


def refine_timing(event: MicroEvent, motion_mm: np.ndarray, members: np.ndarray, fps: float) -> MicroEvent:
    """The event with onset, apex, offset and peak from the profile fit over its region's motion
    around it (the ``members`` landmarks of the face's motion (T, 478, 3) mm); unchanged where
    nothing fits."""
    first, last = _fit_span(event, REFINE_SLACK_S, BASELINE_PAD_S, fps, len(motion_mm))
    fit = fit_event_timing(span_mm(motion_mm, first, last)[:, members], fps, first, event.onset_frame,
                           event.offset_frame, slack_s=REFINE_SLACK_S)
    if fit is None:
        return event
    return replace(event, onset_frame=fit.onset_frame, apex_frame=fit.apex_frame, offset_frame=fit.offset_frame,
                   peak_mm=float(np.linalg.norm(fit.pattern_mm, axis=1).max()))


def span_mm(motion_mm: np.ndarray, first: int, last: int) -> np.ndarray:
    """Frames ``first``..``last`` (inclusive) of the face's motion (T, 478, 3) mm (an array, or
    anything sliced like one) as float64, NaN as 0: one event's stretch, so that a long take is
    never copied whole (memory stays flat in its length)."""
    return np.nan_to_num(np.asarray(motion_mm[first:last + 1], np.float64))


def _fit_span(event: MicroEvent, slack_s: float, pad_s: float, fps: float, frame_count: int) -> tuple[int, int]:
    """The frames (inclusive) a profile fit reads around ``event``: its onset..offset, widened by
    the fit's slack and ``pad_s`` of baseline on each side, within the take."""
    pad = int(round((slack_s + pad_s) * fps))
    return max(event.onset_frame - pad, 0), min(event.offset_frame + pad, frame_count - 1)


Stretch = tuple[int, int]  # first and last take frame, inclusive: what ``layer_span`` gives
# stretches -> a correction (n, 478, 3) mm of each that was read again (ops/stretch_flow.py)
StretchReader = Callable[[list[Stretch]], dict[Stretch, np.ndarray]]


@dataclass(frozen=True)
class MotionWithStretches:
    """A take's motion (``motion``: sliced ``[a:b]`` -> (F, 478, 3) mm, e.g. a
    ``reconstruct.DisplacementReader``) with some stretches read again (``corrections``, from
    ``stretch_flow.reread_stretches``): a slice that is exactly one of them gives the take's motion
    there plus its correction, any other the take's. ``micro_layer_mm`` reads one event's stretch
    (``layer_span``) at a time."""

    motion: object  # sliced [a:b] like a (T, 478, 3) array, with len and shape (an array, a FrameSum, a reader)
    corrections: dict[Stretch, np.ndarray]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.motion.shape)

    def __len__(self) -> int:
        return len(self.motion)

    def __getitem__(self, frames: slice) -> np.ndarray:
        start, stop, _ = frames.indices(len(self.motion))
        correction = self.corrections.get((start, stop - 1))
        motion = self.motion[frames]
        return motion if correction is None else np.asarray(motion, np.float64) + correction


def layer_span(event: MicroEvent, fps: float, frame_count: int) -> tuple[int, int]:
    """The frames (first, last, inclusive) ``micro_layer_mm`` reads for ``event``: the event and its
    baseline (see there), within a take of ``frame_count`` frames."""
    pad_s = LAYER_BASELINE_PAD_REFINED_S if fps >= REFINE_MIN_FPS else BASELINE_PAD_S
    return _fit_span(event, LAYER_SLACK_FRAMES / fps, pad_s, fps, frame_count)


def layer_fit(event: MicroEvent, motion_mm: np.ndarray, fps: float,
              members: np.ndarray) -> tuple[int, int, np.ndarray, EventTiming | None]:
    """How ``micro_layer_mm`` reads one event: the frames it reads (``layer_span``), their motion
    (n, 478, 3) mm, and the fit of the event's time course to its region's ``members`` landmarks
    there (None where nothing fits)."""
    first, last = layer_span(event, fps, len(motion_mm))
    span = span_mm(motion_mm, first, last)  # (n, 478, 3)
    fit = fit_event_timing(span[:, members], fps, first, event.onset_frame, event.offset_frame,
                           slack_s=LAYER_SLACK_FRAMES / fps)
    return first, last, span, fit


def micro_layer_mm(events: list[MicroEvent], motion_mm: np.ndarray, fps: float, regions: tuple[str, ...],
                   membership: np.ndarray, basis_mm: np.ndarray, neutral_mm: np.ndarray) -> np.ndarray:
    """The motion the events explain, as a layer: (T, 478, 3) mm, zero outside events.

    Each event's time course is fitted on its region's landmarks (``fit_event_timing``: its rise
    and hold, within ``LAYER_SLACK_FRAMES`` of its onset and offset, reading ``BASELINE_PAD_S``
    of motion beyond them for the baseline, ``LAYER_BASELINE_PAD_REFINED_S`` where the timing was
    refined, from ``REFINE_MIN_FPS``); its displacement pattern is then
    fitted over the whole face, as an action unit reaches past the region it is named after, and
    replaced by the closest non-negative combination of the units of the expression basis
    basis_mm (K, 478, 3) mm that act on the event's region (``region_units``): a micro-expression
    is an action-unit activation, and the constraints keep the motion's noise out, and with it
    whatever else moves during the span (a blink during a nose event). On validation takes the
    non-negative basis cut the micro layer's error on found events by a tenth, and the units of
    the region alone a further tenth. What the units leave of the measured pattern is added back
    near the region (``RESIDUAL_REACH_MM`` from its landmarks on the neutral (478, 3) mm; not for
    ``SPEECH_REGIONS``): on real footage most of a micro event's motion is not in the units. A
    pattern that moves one of the region's landmarks more than ``MAX_PATTERN_MM`` is left in the macro layer: no micro-expression is that large (a blink or
    a fast macro motion in the span); the event itself is kept. The layer is the sum of time
    course x pattern. motion_mm (T, 478, 3) the face's deformation (NaN on invalid frames).

    The slack and the longer baseline were measured on 320 validation takes (seeds 8300-8302, both
    the first clips and the rest of each set agreeing): half a frame of slack took the micro layer
    at 24-30 fps from 0.563 / 0.574x to 0.550 / 0.570x (a whole frame fitted noise: 0.575 / 0.585x),
    and 0.15 s of baseline instead of 0.1 s at 60 fps and up from 0.518 / 0.494x to 0.505 / 0.481x
    at 200 fps (0.2 s: 0.501 / 0.478x, but 24-200 fps worse); below 60 fps it did not help (0.15 s:
    0.574 / 0.565x at 24-30 fps). On the evaluation's held-out takes: 0.54x -> 0.53x overall.
    """
    return laid_layer(tuple(motion_mm.shape), event_layers(events, motion_mm, fps, regions, membership, basis_mm,
                                                           neutral_mm))


EventLayer = tuple[int, int, np.ndarray, np.ndarray]  # first and last frame, time course (n,), pattern (478, 3) mm


def event_layers(events: list[MicroEvent], motion_mm: np.ndarray, fps: float, regions: tuple[str, ...],
                 membership: np.ndarray, basis_mm: np.ndarray, neutral_mm: np.ndarray) -> list[EventLayer | None]:
    """Each event's part of ``micro_layer_mm`` (see there), in order; None for an event left in the
    macro layer (no time course fits, or a pattern past ``MAX_PATTERN_MM``)."""
    members = {region: region_landmarks(row) for region, row in zip(regions, membership)}
    fitted = []  # (event's index, first frame, last frame, profile (n,), region) of each event that fits
    patterns = []  # (478 * 3,) mm, each one's least-squares displacement
    for index, event in enumerate(events):
        first, last, span, fit = layer_fit(event, motion_mm, fps, members[event.region])
        if fit is not None:
            fitted.append((index, first, last, fit.profile, event.region))
            patterns.append(fit_pattern(span, fit.profile).reshape(-1))
    layers: list[EventLayer | None] = [None] * len(events)
    if not fitted:
        return layers
    allowed = {region: np.where(region_units(basis_mm, landmarks), np.inf, 0.0) for region, landmarks in members.items()}
    basis = basis_mm.reshape(len(basis_mm), -1).T.astype(np.float64)  # (478*3, K)
    strength = PATTERN_REGULARIZATION * float(np.mean(np.sum(basis**2, axis=0)))
    upper = np.array([allowed[region] for *_, region in fitted])  # (E, K): only the region's units
    activations = solve_box_ridge(basis, np.array(patterns), 0.0, upper, strength)  # (E, K), each row its own
    reach = {region: np.zeros(len(neutral_mm)) if region in SPEECH_REGIONS else residual_reach(neutral_mm, landmarks)
             for region, landmarks in members.items()}
    for (index, first, last, profile, region), measured, activation in zip(fitted, patterns, activations):
        in_units = (basis @ activation).reshape(-1, 3)  # (478, 3) mm
        pattern = in_units + reach[region][:, None] * (measured.reshape(-1, 3) - in_units)  # (478, 3) mm
        if np.linalg.norm(pattern[members[region]], axis=1).max() <= MAX_PATTERN_MM:
            layers[index] = (first, last, profile, pattern)
    return layers


def laid_layer(shape: tuple[int, ...], layers: list[EventLayer | None]) -> np.ndarray:
    """(T, 478, 3) float32 mm: the sum of the events' time course x pattern (``event_layers``),
    zero elsewhere; on disk in the engine (ops/spill.py)."""
    layer = frame_array(shape, np.float32)
    for part in layers:
        if part is not None:
            first, last, profile, pattern = part
            layer[first:last + 1] += profile[:, None, None] * pattern
    return layer


def micro_layers_read_again(events: list[MicroEvent], motion_mm: np.ndarray, corrections: dict[Stretch, np.ndarray],
                            fps: float, regions: tuple[str, ...], membership: np.ndarray, basis_mm: np.ndarray,
                            neutral_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The micro layer (T, 478, 3) float32 mm fitted on ``motion_mm`` with the events' stretches
    corrected (``MotionWithStretches``, ``corrections`` from ``stretch_flow.reread_stretches``), and
    the layer to take out of the macro layer: the same events fitted on ``motion_mm`` itself. An
    event the uncorrected reading leaves in the macro layer stays there; one only the corrected
    reading leaves there is laid as the uncorrected reading has it, so that macro + micro keeps
    every event once."""
    read = event_layers(events, motion_mm, fps, regions, membership, basis_mm, neutral_mm)
    read_again = event_layers(events, MotionWithStretches(motion_mm, corrections), fps, regions, membership, basis_mm,
                              neutral_mm)
    micro = [None if once is None else (again if again is not None else once) for once, again in zip(read, read_again)]
    shape = tuple(motion_mm.shape)
    return laid_layer(shape, micro), laid_layer(shape, read)


def residual_reach(neutral_mm: np.ndarray, members: np.ndarray, reach_mm: float = RESIDUAL_REACH_MM,
                   cutoff: float = RESIDUAL_CUTOFF) -> np.ndarray:
    """(478,) 0..1: how much of an event's measured motion beyond its units each landmark keeps: a
    Gaussian (``reach_mm``) of its distance on the neutral (478, 3) mm from the nearest of the
    region's ``members`` landmarks, 0 past ``cutoff`` times ``reach_mm``."""
    neutral = np.asarray(neutral_mm, np.float64)
    distance = np.linalg.norm(neutral[:, None, :] - neutral[None, members, :], axis=-1).min(axis=1)  # (478,) mm
    return np.where(distance <= cutoff * reach_mm, np.exp(-0.5 * (distance / reach_mm) ** 2), 0.0)


def above_line_mm(motion_mm: np.ndarray) -> np.ndarray:
    """(n, M, 3) motion over a stretch -> (n, M, 3): less the straight line joining the stretch's
    first and last frame (a slow motion under it, or none)."""
    share = np.linspace(0.0, 1.0, len(motion_mm))[:, None, None]
    return motion_mm - ((1.0 - share) * motion_mm[:1] + share * motion_mm[-1:])


def bump_mm(motion_mm: np.ndarray) -> np.ndarray:
    """(n, M, 3) motion over a stretch -> (n,) the largest distance, over the M landmarks, from
    the straight line joining the stretch's first and last frame."""
    if len(motion_mm) == 0 or motion_mm.shape[1] == 0:
        return np.zeros(len(motion_mm))
    return np.linalg.norm(above_line_mm(motion_mm), axis=-1).max(axis=1)


def without_blinks(events: list[MicroEvent], neutral_mm: np.ndarray, motion_mm: np.ndarray,
                   share: float = BLINK_OPENING_SHARE) -> list[MicroEvent]:
    """``events`` less the eye-region ones during which the eyes close past ``share`` of their
    neutral opening (mean of both, as ``neutral.face_measures`` measures it): a blink or a squeeze
    is no micro-expression, and the blink units keep it in the macro layer. neutral_mm (478, 3),
    motion_mm (T, 478, 3): the face's displacement from it."""
    neutral_opening = face_measures(neutral_mm[None])[0, :2].mean()
    kept = []
    for event in events:
        span = slice(event.onset_frame, event.offset_frame + 1)
        opening = face_measures(neutral_mm[None] + motion_mm[span])[:, :2].mean(axis=1)  # (n,)
        if not (event.region == "eyes" and np.nanmin(opening, initial=np.inf) < share * neutral_opening):
            kept.append(event)
    return kept


def pattern_activation(region_motion_mm: np.ndarray, onset: int, apex: int, offset: int) -> np.ndarray:
    """(n,) the region's motion (n, M, 3) mm read as the pattern it shows at ``apex`` above the line
    from ``onset`` to ``offset`` (frame indices into it): 1 where the region moves as at the apex,
    0 where it moves as at the line's foot. All zeros when the apex does not stand off the line."""
    span = region_motion_mm[onset:offset + 1]
    share = (apex - onset) / max(offset - onset, 1)
    pattern = span[apex - onset] - ((1.0 - share) * span[0] + share * span[-1])  # (M, 3)
    size = float(np.sum(pattern**2))
    if size == 0.0:
        return np.zeros(len(region_motion_mm))
    return np.einsum("nmk,mk->n", region_motion_mm, pattern) / size


def running_median(values: np.ndarray, width: int) -> np.ndarray:
    """(n,) the median of ``values`` (n,) over ``width`` frames centred on each (edges repeated)."""
    half = max(width, 1) // 2
    padded = np.pad(values, half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)


def standing_out(events: list[MicroEvent], motion_mm: np.ndarray, fps: float, regions: tuple[str, ...],
                 membership: np.ndarray, stand_out: float = STAND_OUT, return_share: float = RETURN_SHARE,
                 context_s: float = CONTEXT_S, highpass_s: float = HIGHPASS_S,
                 settle_s: float = SETTLE_S, return_s: float = RETURN_S) -> list[MicroEvent]:
    """``events`` less those that do not stand out of their region's motion around them, or do not
    return (see ``STAND_OUT``): talking and landmark jitter move a region all the time, a macro
    expression sets in, and a detector trained on synthesized observations fires on them.
    motion_mm (T, 478, 3) the face's deformation (NaN on invalid frames; an array, or anything sliced
    like one: only the second around each event is read). An event with no motion
    around it (a take as short as the event) is judged on its return alone."""
    context, settle = int(round(context_s * fps)), max(1, int(round(settle_s * fps)))
    highpass, back = max(3, int(round(highpass_s * fps))), max(1, int(round(return_s * fps)))
    kept = []
    for event in events:
        members = region_landmarks(membership[regions.index(event.region)])
        first = max(event.onset_frame - context, 0)
        last = min(event.offset_frame + context, len(motion_mm) - 1)
        onset, apex, offset = (frame - first for frame in (event.onset_frame, event.apex_frame, event.offset_frame))
        activation = pattern_activation(span_mm(motion_mm, first, last)[:, members], onset, apex, offset)  # (n,)
        rise = activation[apex] - activation[max(onset - settle, 0):onset + 1].mean()
        fall = activation[apex] - activation[offset:offset + back + 1].min()
        fast = activation - running_median(activation, highpass)
        around = np.concatenate([fast[:max(onset - settle, 0)], fast[offset + settle + 1:]])
        spread = 2.0 * 1.4826 * float(np.median(np.abs(around - np.median(around)))) if len(around) else 0.0
        if rise > 0.0 and rise >= stand_out * spread and fall >= return_share * rise:
            kept.append(event)
    return kept


def event_size_mm(event: MicroEvent, motion_mm: np.ndarray, members: np.ndarray) -> float:
    """How far ``event`` moves its region's ``members`` (M,) in ``motion_mm`` (T, 478, 3) mm: the
    RMS over them of the motion at its apex above the line from its onset to its offset (mm)."""
    span = span_mm(motion_mm, event.onset_frame, event.offset_frame)[:, members]  # (n, M, 3)
    share = (event.apex_frame - event.onset_frame) / max(event.offset_frame - event.onset_frame, 1)
    pattern = span[event.apex_frame - event.onset_frame] - ((1.0 - share) * span[0] + share * span[-1])  # (M, 3)
    return float(np.sqrt(np.mean(np.sum(pattern**2, axis=-1))))


def seen_on_skin(events: list[MicroEvent], skin_motion_mm: np.ndarray, landmark_motion_mm: np.ndarray,
                 regions: tuple[str, ...], membership: np.ndarray, share: float = SEEN_ON_SKIN) -> list[MicroEvent]:
    """``events`` less those the skin does not show (see ``SEEN_ON_SKIN``): each event's size on
    ``skin_motion_mm`` must be at least ``share`` of its size on ``landmark_motion_mm`` (both
    (T, 478, 3) mm in one frame, arrays or anything sliced like one; only the events' frames are read)."""
    kept = []
    for event in events:
        members = region_landmarks(membership[regions.index(event.region)])
        if event_size_mm(event, skin_motion_mm, members) >= share * event_size_mm(event, landmark_motion_mm, members):
            kept.append(event)
    return kept


def prominent_peaks(values: np.ndarray, prominence: float) -> np.ndarray:
    """Indices of the local maxima of ``values`` (n,) that rise at least ``prominence`` above the
    higher of the lowest values between them and a higher one on each side (or the end): their
    topographic prominence, as ``scipy.signal.find_peaks`` measures it (a plateau is found at its
    first frame, scipy's at its middle). For the seconds around an event: quadratic in their length."""
    found = []
    for index in range(1, len(values) - 1):
        if not (values[index] > values[index - 1] and values[index] >= values[index + 1]):
            continue
        right = index + 1
        while right < len(values) - 1 and values[right] == values[index]:
            right += 1
        if values[right] > values[index]:
            continue  # a step up, no peak
        bases = []
        for side in (values[index::-1], values[right:]):
            higher = np.flatnonzero(side > values[index])
            bases.append(side[:higher[0] if len(higher) else len(side)].min())
        if values[index] - max(bases) >= prominence:
            found.append(index)
    return np.asarray(found, np.int64)


def jaw_opening_mm(motion_mm: np.ndarray, neutral_mm: np.ndarray) -> np.ndarray:
    """(n,) how much further the chin is from the upper lip than in the neutral (mm), per frame
    of ``motion_mm`` (n, 478, 3) mm from ``neutral_mm`` (478, 3) mm."""
    chin = neutral_mm[CHIN] + motion_mm[:, CHIN]  # (n, 3)
    upper_lip = neutral_mm[UPPER_LIP] + motion_mm[:, UPPER_LIP]
    return np.linalg.norm(chin - upper_lip, axis=-1) - np.linalg.norm(neutral_mm[CHIN] - neutral_mm[UPPER_LIP])


def during_speech(events: list[MicroEvent], motion_mm: np.ndarray, neutral_mm: np.ndarray, fps: float,
                  syllable_mm: float = SYLLABLE_MM, syllables: int = SPEECH_SYLLABLES,
                  context_s: float = CONTEXT_S, settle_s: float = SETTLE_S) -> list[MicroEvent]:
    """``events`` less the mouth and jaw events that are a syllable of speech (see ``SYLLABLE_MM``):
    the jaw opens by ``syllable_mm`` within the event (or ``settle_s`` of it: the detector's ends
    are a frame or two off) and ``syllables`` times more within ``context_s`` either side of it.
    Frames without a face are bridged between their neighbours (read as the neutral, a lost face in
    an open jaw would make a syllable).
    motion_mm (T, 478, 3) mm from ``neutral_mm`` (478, 3), NaN on invalid frames (an array, or
    anything sliced like one: only the seconds around each event are read)."""
    context, settle = int(round(context_s * fps)), int(round(settle_s * fps))
    neutral_mm = np.asarray(neutral_mm, np.float64)
    kept = []
    for event in events:
        if event.region not in SPEECH_REGIONS:
            kept.append(event)
            continue
        first = max(event.onset_frame - context, 0)
        opening = jaw_opening_mm(np.asarray(motion_mm[first:event.offset_frame + context + 1], np.float64), neutral_mm)
        seen = np.flatnonzero(np.isfinite(opening))
        if len(seen) < 2:
            kept.append(event)
            continue
        opening = np.interp(np.arange(len(opening)), seen, opening[seen])  # (n,) mm, the gaps bridged
        peaks = prominent_peaks(opening, syllable_mm)
        inside = (peaks >= event.onset_frame - settle - first) & (peaks <= event.offset_frame + settle - first)
        if not (inside.any() and np.count_nonzero(~inside) >= syllables):
            kept.append(event)
    return kept


def confirmed_by(events: list[MicroEvent], confirming: list[MicroEvent]) -> list[MicroEvent]:
    """The events that a second detector's events confirm: one of the same region overlaps them
    in time (frames, inclusive)."""
    return [event for event in events
            if any(other.region == event.region and _overlap(event, other) > 0 for other in confirming)]


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
