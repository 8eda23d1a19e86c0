"""Evaluation metrics: a take (baseline or network) against ground truth, or against its own video.

Why a module of its own: ``scripts/evaluate.py`` builds the results table from these, and the
tests pin each metric on hand-made cases, so a number in the README means exactly one thing.
numpy only (no torch, no onnxruntime).

With ground truth (synthetic sequences, clips rendered from the scanned face), everything is
compared in the *truth's* canonical frame (true millimetres): a take's layers are carried there by
``synthetic.align_to_truth`` + ``displacements_to_truth``, the one similarity fitted on the two
neutrals that the scan-clip check uses too. Only the 468 skin landmarks count (the irises are not
skin).

- macro error: the take's macro layer vs the truth's, mean per-landmark distance over valid frames;
  total error: macro + micro + detail vs the truth's sum (the baseline puts everything in macro, so
  its macro error also carries the micro and detail motion it does not separate);
- micro error: the take's micro layer vs the truth's inside each truth event: its frames
  (onset..offset) and its footprint (the landmarks it moves by at least ``FOOTPRINT_MM``);
- events: a detection matches an unmatched truth event of the same region whose onset..offset
  window overlaps its own (largest overlap first); F1; onset / apex errors in frames.

Without ground truth (real video):
- flow agreement: the measured optical flow with rigid head motion taken out (``features.
  canonical_flow_mm``, the same measurement the network is fed) vs the take's own frame-to-frame
  change of the canonical deformation, both projected into the stabilised crop through the take's
  head pose and crop transform: endpoint error in crop px on the consistent skin landmarks;
- jitter on still segments: where the measured flow says the expression did not move (in every
  face region, the median non-rigid motion below ``STILL_MOTION_MM`` into this frame and out of
  it; per region, because in speech the mouth and jaw move alone, under the median of the
  whole face: on WolfgangLanger_Pexels.mp4 such frames had 2-4 mm second differences in the
  landmark baseline itself, which is motion, not shake), the RMS second
  difference of the reconstructed landmarks (mm): what a still face gains in frame-to-frame shake.
  The threshold is per frame, not per second: the flow's noise floor is per frame, and what must be
  small for the second difference to be shake rather than motion is the true motion per frame.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from ...ops.canonical import SKIN_LANDMARKS
from ...ops.take import LANDMARK_COUNT, MicroEvent, Take
from .features import EVENT_REGIONS, canonical_flow_mm, region_membership
from .scan_truth import ScanTruth
from .synthetic import SyntheticSequence, align_to_truth, displacements_to_truth

FOOTPRINT_MM = 0.1  # a landmark belongs to an event's footprint when the event moves it this much
TIMING_TOLERANCE_FRAMES = 2  # onset / apex "on time" within +-2 frames
STILL_MOTION_MM = 0.12  # measured non-rigid motion per frame (median over each region's skin) below which it is still
HIGHPASS_SECONDS = 0.5  # the landmark high-pass baseline removes a centred moving average this long


@dataclass
class Truth:
    """Ground truth in its own canonical frame (mm, centroid of the neutral at the origin)."""

    fps: float
    neutral_mm: np.ndarray  # (478, 3)
    macro_mm: np.ndarray  # (T, 478, 3) displacement from neutral
    micro_mm: np.ndarray  # (T, 478, 3)
    detail_mm: np.ndarray  # (T, 478, 3)
    events: list[MicroEvent]

    @property
    def frame_count(self) -> int:
        return int(self.macro_mm.shape[0])

    def total_mm(self) -> np.ndarray:
        return self.macro_mm + self.micro_mm + self.detail_mm


def truth_from_synthetic(sequence: SyntheticSequence) -> Truth:
    return Truth(float(sequence.take.fps), sequence.truth_neutral_mm, sequence.truth_macro_mm,
                 sequence.truth_micro_mm, sequence.truth_detail_mm, list(sequence.truth_events))


def truth_from_scan(truth: ScanTruth) -> Truth:
    """The scan clips carry no detail layer: their skin motion is macro + micro."""
    return Truth(truth.fps, truth.neutral_mm, truth.macro_mm, truth.micro_mm, np.zeros_like(truth.macro_mm),
                 list(truth.events))


# -- accumulators that pool exactly across clips ------------------------------------------------------
@dataclass
class MeanError:
    """A mean kept as (sum, count), so clips pool into the mean over all their samples."""

    total: float = 0.0
    count: int = 0

    def add(self, distances: np.ndarray) -> None:
        finite = distances[np.isfinite(distances)]
        self.total += float(finite.sum())
        self.count += int(finite.size)

    def merge(self, other: "MeanError") -> None:
        self.total += other.total
        self.count += other.count

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


@dataclass
class EventScores:
    """Detection counts and the timing errors (detected - truth, frames) of the matches."""

    truths: int = 0
    detections: int = 0
    onset_errors: list[int] = field(default_factory=list)
    apex_errors: list[int] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return len(self.onset_errors)

    @property
    def precision(self) -> float:
        return self.matched / self.detections if self.detections else float("nan")

    @property
    def recall(self) -> float:
        return self.matched / self.truths if self.truths else float("nan")

    @property
    def f1(self) -> float:
        """2 matched / (truths + detections): 0 when nothing is detected, NaN with nothing to detect."""
        total = self.truths + self.detections
        return 2.0 * self.matched / total if total else float("nan")

    def merge(self, other: "EventScores") -> None:
        self.truths += other.truths
        self.detections += other.detections
        self.onset_errors += other.onset_errors
        self.apex_errors += other.apex_errors


def median_abs(errors: list[int]) -> float:
    return float(np.median(np.abs(errors))) if errors else float("nan")


def within_tolerance(errors: list[int], tolerance: int = TIMING_TOLERANCE_FRAMES) -> float:
    """Fraction of timing errors inside +-tolerance frames."""
    return float(np.mean(np.abs(errors) <= tolerance)) if errors else float("nan")


@dataclass
class TruthScores:
    """One take (or a pool of takes) against ground truth."""

    macro: MeanError = field(default_factory=MeanError)  # mm
    total: MeanError = field(default_factory=MeanError)  # mm
    micro: MeanError = field(default_factory=MeanError)  # mm, event frames x footprints
    event_total: MeanError = field(default_factory=MeanError)  # mm, all layers vs the truth's total, same places
    events: EventScores = field(default_factory=EventScores)

    def merge(self, other: "TruthScores") -> None:
        self.macro.merge(other.macro)
        self.total.merge(other.total)
        self.micro.merge(other.micro)
        self.event_total.merge(other.event_total)
        self.events.merge(other.events)


# -- with ground truth ---------------------------------------------------------------------------------
def layers_in_truth_frame(take: Take, truth: Truth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The take's macro, micro, detail (T, 478, 3) mm carried into the truth's canonical frame
    (NaN stays NaN on frames without a face)."""
    alignment = align_to_truth(take.neutral_mm, truth.neutral_mm)
    return tuple(displacements_to_truth(np.asarray(layer, np.float64), alignment)
                 for layer in (take.macro_mm, take.micro_mm, take.detail_mm))


def distances(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-landmark Euclidean distance: (..., 3), (..., 3) -> (...)."""
    return np.linalg.norm(estimate - reference, axis=-1)


def event_footprint(truth_micro_mm: np.ndarray, event: MicroEvent, threshold_mm: float = FOOTPRINT_MM) -> np.ndarray:
    """(478,) bool: skin landmarks the event moves by at least ``threshold_mm`` within its window."""
    window = event_window(event, len(truth_micro_mm))
    moved = np.linalg.norm(truth_micro_mm[window], axis=-1).max(axis=0)  # (478,)
    footprint = np.zeros(LANDMARK_COUNT, bool)
    footprint[SKIN_LANDMARKS] = moved[SKIN_LANDMARKS] >= threshold_mm
    return footprint


def event_window(event: MicroEvent, frame_count: int) -> np.ndarray:
    """Frames onset..offset inclusive, clipped to the clip: (n,) int64."""
    return np.arange(max(event.onset_frame, 0), min(event.offset_frame, frame_count - 1) + 1)


def micro_error(micro_mm: np.ndarray, truth: Truth, valid: np.ndarray,
                reference_mm: np.ndarray | None = None) -> MeanError:
    """The micro layer (truth frame, (T, 478, 3)) against the truth's inside every truth event:
    its valid frames x its footprint. With ``reference_mm`` (T, 478, 3), any other layer against
    that reference over the same frames and landmarks (the total against the truth's total)."""
    error = MeanError()
    for _, estimate, reference in event_samples(micro_mm, truth, valid, reference_mm):
        error.add(distances(estimate, reference))
    return error


def event_samples(layer_mm: np.ndarray, truth: Truth, valid: np.ndarray, reference_mm: np.ndarray | None = None
                  ) -> Iterator[tuple[MicroEvent, np.ndarray, np.ndarray]]:
    """Per truth event, what ``micro_error`` compares: (event, the layer (n, F, 3) mm, the
    reference (n, F, 3) mm, by default the truth's micro layer) over its n valid frames and its
    F footprint landmarks."""
    reference = truth.micro_mm if reference_mm is None else reference_mm
    for event in truth.events:
        window = event_window(event, truth.frame_count)
        window = window[valid[window]]
        footprint = event_footprint(truth.micro_mm, event)
        yield event, layer_mm[window][:, footprint], reference[window][:, footprint]


def overlap_frames(a: MicroEvent, b: MicroEvent) -> int:
    """Frames shared by two onset..offset windows (inclusive); <= 0 when they do not meet."""
    return min(a.offset_frame, b.offset_frame) - max(a.onset_frame, b.onset_frame) + 1


def match_events(detected: list[MicroEvent], truth: list[MicroEvent]) -> list[tuple[MicroEvent, MicroEvent]]:
    """One-to-one (detected, truth) pairs: same region, overlapping windows. Greedy on the frames
    shared: the best-overlapping pairs are taken first, so the result does not depend on the order
    of the lists; a second detection of a matched event counts as a false positive."""
    candidates = [(overlap_frames(d, t), i, j) for i, d in enumerate(detected) for j, t in enumerate(truth)
                  if d.region == t.region and overlap_frames(d, t) > 0]
    used_detected, used_truth, pairs = set(), set(), []
    for _, i, j in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if i not in used_detected and j not in used_truth:
            used_detected.add(i)
            used_truth.add(j)
            pairs.append((detected[i], truth[j]))
    return pairs


def event_scores(detected: list[MicroEvent], truth: list[MicroEvent]) -> EventScores:
    pairs = match_events(detected, truth)
    return EventScores(truths=len(truth), detections=len(detected),
                       onset_errors=[d.onset_frame - t.onset_frame for d, t in pairs],
                       apex_errors=[d.apex_frame - t.apex_frame for d, t in pairs])


MIN_EVENT_F1 = 0.5  # an event head under this F1 on its validation takes is shipped switched off
LOW_SHARE = 0.6  # events.extract_events' hysteresis: low = this x high


def decoding_thresholds(high: float) -> dict[str, float]:
    """``extract_events``' high / low for a given high."""
    return {"high": high, "low": round(LOW_SHARE * high, 3)}


def choose_event_thresholds(score_at: Callable[[float], EventScores],
                            grid: tuple[float, ...]) -> tuple[float, EventScores]:
    """The ``high`` of ``grid`` whose decoding scores the best F1 (the first of equals; an
    undefined F1 counts as 0), and those scores. ``score_at(high)`` decodes the validation takes."""
    best_high, best = grid[0], None
    for high in grid:
        scores = score_at(high)
        if best is None or np.nan_to_num(scores.f1) > np.nan_to_num(best.f1):
            best_high, best = high, scores
    return best_high, best


def score_against_truth(take: Take, truth: Truth) -> TruthScores:
    """Macro, total and micro vertex errors (mm, truth frame, skin landmarks) and event detection."""
    if take.frame_count != truth.frame_count:
        raise ValueError(f"take has {take.frame_count} frames, truth {truth.frame_count}")
    macro, micro, detail = layers_in_truth_frame(take, truth)
    valid = np.asarray(take.valid, bool)
    scores = TruthScores()
    skin = np.ix_(valid, SKIN_LANDMARKS)  # (valid frames, skin landmarks)
    scores.macro.add(distances(macro[skin], truth.macro_mm[skin]))
    scores.total.add(distances((macro + micro + detail)[skin], truth.total_mm()[skin]))
    scores.micro = micro_error(micro, truth, valid)
    scores.event_total = micro_error(macro + micro + detail, truth, valid, truth.total_mm())
    scores.events = event_scores(list(take.events), truth.events)
    return scores


def flow_oracle_scores(take: Take, truth: Truth) -> TruthScores:
    """An observability bound, not a method: the micro error of a micro layer that knows what no
    method can, the truth's event windows and its macro and detail motion, and takes the rest
    from the take's flow features (``canonical_flow_mm``), integrated from each event's onset.
    What is left is the flow's own error over the event (noise accumulating step by step, the
    unobserved depth component, masked steps), so no flow-driven method separating micro from
    macro can expect much better. Only ``micro`` is scored."""
    flow_mm, mask = canonical_flow_mm(take)
    steps = displacements_to_truth(np.where(mask[..., None], flow_mm, 0.0).astype(np.float64),
                                   align_to_truth(take.neutral_mm, truth.neutral_mm))  # (T, 478, 3) truth frame
    other = truth.macro_mm + truth.detail_mm
    micro = np.zeros_like(truth.micro_mm)
    for event in truth.events:
        window = event_window(event, truth.frame_count)
        integrated = np.cumsum(steps[window], axis=0) - steps[window[0]]  # zero at the onset
        micro[window] = integrated - (other[window] - other[window[0]])
    scores = TruthScores()
    scores.micro = micro_error(micro, truth, np.asarray(take.valid, bool))
    return scores


def moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average along axis 0 (edges use the frames there are): (T, ...) -> (T, ...)."""
    half = width // 2
    cumulative = np.concatenate([np.zeros_like(x[:1]), np.cumsum(x, axis=0)])  # (T + 1, ...)
    index = np.arange(len(x))
    low, high = np.maximum(index - half, 0), np.minimum(index + width - half, len(x))
    shape = (-1,) + (1,) * (x.ndim - 1)
    return (cumulative[high] - cumulative[low]) / (high - low).reshape(shape)


def landmark_highpass(take: Take, seconds: float = HIGHPASS_SECONDS) -> Take:
    """The landmark-only baseline's own best guess at micro motion: its total deformation minus a
    centred moving average over ``seconds`` (a micro-expression lasts 0.15-0.5 s), the average
    kept as macro. A stricter comparator than the baseline's zero micro layer. Assumes a take
    with a face on every frame (as the synthetic and rendered clips have)."""
    total = np.nan_to_num(take.deformation_mm().astype(np.float64))
    width = max(1, int(round(seconds * take.fps)))
    smooth = moving_average(total, width)
    zeros = np.zeros_like(total)
    return dataclasses.replace(take, macro_mm=smooth.astype(np.float32), micro_mm=(total - smooth).astype(np.float32),
                               detail_mm=zeros.astype(np.float32), events=[], model_version="landmark-highpass")


# -- without ground truth ------------------------------------------------------------------------------
@dataclass
class MeasuredFlow:
    """The measured non-rigid motion of a clip: canonical mm per frame (t-1 -> t) and where it holds.
    Taken from the baseline take, so every reconstruction is compared with the same measurement."""

    flow_mm: np.ndarray  # (T, 478, 3) canonical, camera-depth part zero (flow is 2D)
    mask: np.ndarray  # (T, 478) bool: consistent flow, both frames with a face
    regional_median_mm: np.ndarray  # (T, R) median |flow_mm| over each EVENT_REGIONS region's skin landmarks
    # where it holds (NaN if none)


def measure_flow(baseline: Take) -> MeasuredFlow:
    flow_mm, mask = canonical_flow_mm(baseline)
    motion = np.where(mask, np.linalg.norm(flow_mm, axis=-1), np.nan)  # (T, 478) mm
    skin = np.zeros(LANDMARK_COUNT, bool)
    skin[SKIN_LANDMARKS] = True
    regions = region_membership(EVENT_REGIONS) > 0  # (R, 478)
    median = np.full((len(motion), len(regions)), np.nan)
    for row, members in enumerate(regions & skin):
        usable = mask[:, members].any(axis=1)
        median[usable, row] = np.nanmedian(motion[usable][:, members], axis=1)
    return MeasuredFlow(flow_mm, mask, median)


def canonical_to_crop_px(take: Take, frames: np.ndarray, displacement_mm: np.ndarray) -> np.ndarray:
    """Canonical displacements (F, N, 3) mm at ``frames`` (F,) -> crop px (F, N, 2): through the
    head pose (camera px = scale R v; depth dropped), camera y up -> image y down, then the crop's
    linear part."""
    rotation = take.head_rotation[frames].astype(np.float64)  # (F, 3, 3)
    scale = take.head_scale_px_per_mm[frames].astype(np.float64)[:, None, None]
    camera = scale * np.einsum("fij,fnj->fni", rotation, displacement_mm)[..., :2]  # (F, N, 2) px, y up
    image = camera * np.array([1.0, -1.0])
    linear = take.crop_from_image[frames, :, :2].astype(np.float64)  # (F, 2, 2)
    return np.einsum("fij,fnj->fni", linear, image)


def flow_endpoint_errors(take: Take, measured: MeasuredFlow) -> np.ndarray:
    """Endpoint errors (crop px), one per (frame, consistent skin landmark): the take's change of
    deformation from t-1 to t vs the measured non-rigid flow, both projected into crop t."""
    deformation = take.deformation_mm().astype(np.float64)  # (T, 478, 3)
    change = np.full_like(deformation, np.nan)
    change[1:] = deformation[1:] - deformation[:-1]
    mask = measured.mask[:, SKIN_LANDMARKS] & np.all(np.isfinite(change[:, SKIN_LANDMARKS]), axis=-1)  # (T, 468)
    frames = np.flatnonzero(mask.any(axis=1))
    if len(frames) == 0:
        return np.zeros(0)
    residual = canonical_to_crop_px(take, frames, (change - measured.flow_mm)[frames][:, SKIN_LANDMARKS])  # (F, 468, 2)
    return np.linalg.norm(residual, axis=-1)[mask[frames]]


def still_frames(measured: MeasuredFlow, threshold_mm: float = STILL_MOTION_MM) -> np.ndarray:
    """(T,) bool: frame t is the middle of a still triple: the expression barely moved from t-1 to t
    and from t to t+1 (in every region, the median measured non-rigid motion below ``threshold_mm``)."""
    quiet = (np.nan_to_num(measured.regional_median_mm, nan=np.inf) < threshold_mm).all(axis=1)  # t-1 -> t
    still = np.zeros_like(quiet)
    still[:-1] = quiet[:-1] & quiet[1:]
    return still


def still_jitter(take: Take, still: np.ndarray) -> np.ndarray:
    """Per still frame, the RMS over the skin landmarks of the reconstruction's second difference
    (mm): (n_still,). The take's own canonical frame."""
    deformation = take.deformation_mm().astype(np.float64)[:, SKIN_LANDMARKS]  # (T, 468, 3)
    second = np.full_like(deformation, np.nan)
    second[1:-1] = deformation[2:] - 2.0 * deformation[1:-1] + deformation[:-2]
    return np.sqrt(np.mean(np.sum(second[still] ** 2, axis=-1), axis=-1))


@dataclass
class VideoScores:
    """One take on real video (or a pool): flow agreement and still-segment jitter."""

    endpoint_errors_px: list[np.ndarray] = field(default_factory=list)
    jitter_frames_mm: list[np.ndarray] = field(default_factory=list)  # per still frame, see still_jitter

    @property
    def median_endpoint_px(self) -> float:
        errors = np.concatenate(self.endpoint_errors_px) if self.endpoint_errors_px else np.zeros(0)
        return float(np.median(errors)) if errors.size else float("nan")

    @property
    def jitter_rms_mm(self) -> float:
        """RMS over all still frames and landmarks: one frame the still test let through at a
        motion's onset can dominate it."""
        frames = np.concatenate(self.jitter_frames_mm) if self.jitter_frames_mm else np.zeros(0)
        return float(np.sqrt(np.mean(frames**2))) if frames.size else float("nan")

    @property
    def jitter_median_mm(self) -> float:
        """The median still frame's RMS second difference: the shake of a typical still frame."""
        frames = np.concatenate(self.jitter_frames_mm) if self.jitter_frames_mm else np.zeros(0)
        return float(np.median(frames)) if frames.size else float("nan")

    def merge(self, other: "VideoScores") -> None:
        self.endpoint_errors_px += other.endpoint_errors_px
        self.jitter_frames_mm += other.jitter_frames_mm


def score_against_video(take: Take, measured: MeasuredFlow, still: np.ndarray) -> VideoScores:
    return VideoScores([flow_endpoint_errors(take, measured)], [still_jitter(take, still)])
