"""Run the exported micro-expression network with onnxruntime (numpy + onnxruntime, no torch).

The take is cut into overlapping windows of the model's length, run in small batches (one session
call per ``batch_size`` windows), and blended back with a tapered
weight, so a frame near a window's edge (where temporal context is one-sided) counts less than one
in a window's middle. An event detector attached to the model (its metadata names the file) runs
the same way on the take's fused coefficient track at its own fixed rate, and its logits replace
the mesh network's. A detector may carry a speech member (``speech_member`` in its metadata: a
second detector trained with talking in some of its sequences); then the event logits are the
mean of the two detectors', and an event stands only where the speech member's own events
confirm it (``events.confirmed_by``), which keeps syllables from being taken for micro-expressions.
CUDA is used when this onnxruntime has it, CPU otherwise; ``provider`` says
which one ran.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...ops.errors import MxrError
from ...ops.progress import ProgressReporter
from ...ops.spill import CHUNK_FRAMES, FrameSum, frame_array
from ...ops.take import BASELINE_VERSION, MicroEvent, Take, analysis_clock
from ..micro_keys import MICRO_LAYER_FROM_EVENTS
from .events import confirmed_by, extract_events, micro_layer_mm, standing_out, without_blinks
from .features import region_membership, resample_track, take_inputs, track_to_frames, window_starts, windowed
from .fusion import basis_in_take_frame

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "mxr_micro.onnx"
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@dataclass
class Reconstruction:
    """The network's layers in the take's canonical frame; NaN on frames without a face."""

    macro_mm: np.ndarray  # (T, 478, 3)
    micro_mm: np.ndarray  # (T, 478, 3)
    detail_mm: np.ndarray  # (T, 478, 3)
    event_logits: np.ndarray  # (T, R)
    regions: tuple[str, ...]
    confirming_logits: np.ndarray | None = None  # (T, R), the detector's speech member alone; None without one


def metadata_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


def detector_files(entry: dict) -> list[str]:
    """The files of an ``event_detector`` metadata entry, beside the model: the detector's, then
    its speech member's if it has one."""
    return [entry["file"]] + ([entry["speech_member"]["file"]] if "speech_member" in entry else [])


def choose_providers(requested: list[str] | None, available: list[str]) -> list[str]:
    """The providers to ask onnxruntime for: the requested ones this build has (default: CUDA,
    then CPU), always ending with CPU so a missing GPU falls back instead of failing."""
    wanted = list(requested) if requested else [CUDA, CPU]
    chosen = [name for name in wanted if name in available]
    return chosen if CPU in chosen else chosen + [CPU]


# Windows per session call. A call's intermediate tensors grow with its windows (~110 MB for one
# window of 128 frames, ~215 MB for two), and onnxruntime's arena would keep the largest call's for
# good: with it, 2 windows held +356 MB after the run (1 window +178 MB; 32 windows ~3.6 GB on a
# 200 s clip). Without the arena (``NetworkRunner``) one window a call peaks at +108 MB and gives it
# back, ~20 % slower on the network alone (765 frames: 0.85 -> 1.03 s on a 2-core CPU, 2026-12-04),
# under 2 % of the engine's time.
BATCH_WINDOWS = 1


class NetworkRunner:
    """An onnxruntime session on the exported model plus the metadata written next to it."""

    def __init__(self, model_path: Path | None = None, providers: list[str] | None = None,
                 batch_size: int = BATCH_WINDOWS, threads: int = 0) -> None:
        import onnxruntime

        self.model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        if not self.model_path.is_file():
            raise MxrError(f"network model not found: {self.model_path}")
        meta_file = metadata_path(self.model_path)
        self.metadata = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        self.window = int(self.metadata.get("window", 64))
        self.stride = int(self.metadata.get("stride", max(1, self.window * 3 // 4)))
        self.regions = tuple(self.metadata.get("regions", ()))
        self.version = str(self.metadata.get("version", "mxr-micro-1"))
        # Events come from the event detector named in the metadata (scripts/train_events.py) when
        # there is one, else from the mesh network's own event head. Either way the decoding
        # thresholds on the sigmoid of the logits were calibrated on validation takes (older
        # models: extract_events' defaults), and a detector that did not reach a usable F1 there
        # says so: then no events are reported, as a wrong event costs an animator more than a
        # missing one.
        detector = self.metadata.get("event_detector")
        events = detector or self.metadata
        self.event_thresholds = {key: float(value) for key, value in events.get("event_thresholds", {}).items()}
        speech_member = (detector or {}).get("speech_member")
        self.confirming_thresholds = ({key: float(value) for key, value in speech_member["confirm_thresholds"].items()}
                                      if speech_member else None)
        self.events_enabled = bool(events.get("events_enabled", True))
        self.batch_size = batch_size
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # a missing CUDA library is reported by ``provider``, not a log storm
        options.enable_cpu_mem_arena = False  # see BATCH_WINDOWS: memory stays flat in the clip's length
        chosen = choose_providers(providers, onnxruntime.get_available_providers())
        self.session = onnxruntime.InferenceSession(str(self.model_path), options, providers=chosen)
        self.detector: dict | None = None
        if detector:
            files = detector_files(detector)
            sessions = []
            for name in files:
                detector_path = self.model_path.parent / name
                if not detector_path.is_file():
                    raise MxrError(f"event detector not found: {detector_path}")
                sessions.append(onnxruntime.InferenceSession(str(detector_path), options, providers=chosen))
            self.detector = {"sessions": sessions, "rate_hz": float(detector["rate_hz"]),
                             "window": int(detector["window"]), "stride": int(detector["stride"]),
                             "file": detector["file"], "files": files}
        if not self.regions:
            count = self.session.get_outputs()[3].shape[-1]
            self.regions = tuple(f"region{r}" for r in range(count))

    @property
    def provider(self) -> str:
        """The execution provider that actually runs the model (first of the session's)."""
        return self.session.get_providers()[0]

    def run_windows(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Batched windows (see ``features.windowed``) -> [macro, micro, detail, logits], in chunks
        of ``batch_size`` windows."""
        count = len(feeds["fps"])
        wanted = [entry.name for entry in self.session.get_inputs()]  # an older model reads fewer inputs
        outputs = [self.session.run(None, {name: feeds[name][start:start + self.batch_size] for name in wanted})
                   for start in range(0, count, self.batch_size)]
        return [np.concatenate(parts, axis=0) for parts in zip(*outputs)]

    def run(self, take: Take, reporter: ProgressReporter | None = None) -> Reconstruction:
        """The network's layers and event logits on ``take``; ``reporter`` hears the stages
        "fusion" (frames) and "network" (windows)."""
        inputs = take_inputs(take, reporter.stage("fusion") if reporter else None)
        count = inputs.frame_count
        starts = window_starts(count, self.window, self.stride)
        blend = _WindowBlend(self.window, count)
        for first in range(0, len(starts), self.batch_size):  # the windows' inputs a batch at a time
            batch = starts[first:first + self.batch_size]
            blend.add(batch, self.run_windows(windowed(inputs, batch, self.window)))
            if reporter is not None:
                reporter.progress("network", first + len(batch), len(starts))
        blended = blend.blended()
        confirming = None
        if self.detector is not None:
            blended[3], confirming = self.detector_logits(inputs.coefficients, inputs.seconds)
        invalid = ~inputs.valid
        for layer in blended + ([confirming] if confirming is not None else []):
            layer[invalid] = np.nan
        return Reconstruction(*blended, regions=self.regions, confirming_logits=confirming)

    def detector_logits(self, coefficients: np.ndarray, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The event detector over a take's fused coefficient track (T, K) at its frames' times
        ``seconds`` (T,): resampled to the detector's rate, cut into overlapping windows (a track
        shorter than one is padded with its last sample), run, blended and brought back to the
        frames. -> the event logits (T, R) (with a speech member, the mean of both detectors') and
        the speech member's own (T, R), or None without one."""
        detector = self.detector
        track = resample_track(coefficients, seconds, detector["rate_hz"])  # (n, K)
        window = detector["window"]
        starts = window_starts(len(track), window, detector["stride"])
        samples = np.minimum(starts[:, None] + np.arange(window)[None], len(track) - 1)  # (B, W)
        batch = track[samples].transpose(0, 2, 1).astype(np.float32)  # (B, K, W)
        members = []
        for session in detector["sessions"]:
            logits = np.concatenate([session.run(None, {"coefficients": batch[start:start + self.batch_size]})[0]
                                     for start in range(0, len(batch), self.batch_size)])  # (B, R, W)
            blend = _WindowBlend(window, len(track))
            blend.add(starts, [logits.transpose(0, 2, 1)])
            blended = blend.blended()[0]  # (n, R)
            members.append(track_to_frames(blended, detector["rate_hz"], seconds).astype(np.float32))
        if len(members) == 1:
            return members[0], None
        return np.mean(members, axis=0).astype(np.float32), members[1]

    def events(self, event_logits: np.ndarray, confirming_logits: np.ndarray | None, motion_mm: np.ndarray,
               fps: float) -> list[MicroEvent]:
        """Events from the logits (T, R) and the face's motion (T, 478, 3) mm at the calibrated
        thresholds; with a speech member, only those its own events confirm. [] when the model's
        events are switched off."""
        if not self.events_enabled:
            return []
        regions = tuple(self.regions)
        membership = region_membership(regions)
        events = extract_events(event_logits, motion_mm, fps, regions, membership, **self.event_thresholds)
        if confirming_logits is not None and self.confirming_thresholds is not None:
            confirming = extract_events(confirming_logits, motion_mm, fps, regions, membership,
                                        **self.confirming_thresholds)
            events = confirmed_by(events, confirming)
        return events


class _WindowBlend:
    """Overlapping windows, added a batch at a time -> per-frame float32 arrays, each frame the
    taper-weighted mean of the windows that hold it. Only the per-frame sums are kept (the layers'
    on disk in the engine, ``spill.frame_array``), so a long take never holds all its windows at once;
    ``blended`` turns them into the means in place, a chunk of frames at a time."""

    def __init__(self, window: int, count: int) -> None:
        self.taper, self.count = _taper(window), count  # (W,)
        self.totals: list[np.ndarray] = []
        self.weight = np.zeros(count)

    def add(self, starts: np.ndarray, parts: list[np.ndarray]) -> None:
        """Windows (B, W, ...) of each part, starting at frames ``starts`` (B,)."""
        if not self.totals:
            self.totals = [frame_array((self.count,) + part.shape[2:], np.float32) for part in parts]
        for row, start in enumerate(starts):
            span = min(len(self.taper), self.count - start)
            taper = self.taper[:span]
            for total, part in zip(self.totals, parts):
                total[start:start + span] += taper.reshape((-1,) + (1,) * (part.ndim - 2)) * part[row, :span]
            self.weight[start:start + span] += taper

    def blended(self) -> list[np.ndarray]:
        """The per-frame means, (T, ...) float32 each: the sums divided in place (call once)."""
        for total in self.totals:
            weight = self.weight.reshape((-1,) + (1,) * (total.ndim - 1))
            for start in range(0, self.count, CHUNK_FRAMES):
                frames = slice(start, start + CHUNK_FRAMES)
                total[frames] = total[frames] / weight[frames]
        return self.totals


def _taper(window: int) -> np.ndarray:
    """Blend weights over a window: a raised ramp over the outer eighths, never zero."""
    ramp = max(1, window // 8)
    position = np.minimum(np.arange(window) + 1, window - np.arange(window)) / ramp
    return np.clip(position, 0.05, 1.0)


def apply_network(take: Take, runner: NetworkRunner, reporter: ProgressReporter | None = None,
                  judged_motion_mm: np.ndarray | None = None) -> Take:
    """A new take with the network's macro / micro / detail layers and micro events; the baseline's
    observations, pose and neutral are kept, invalid frames stay NaN. With events, the micro layer is
    the motion they explain (``events.micro_layer_mm``), moved out of the macro layer: the mesh
    network's own micro output stays near zero (see EVALUATION.md), and the total is unchanged.
    The network reads the baseline's canonical faces, so it takes a baseline take, not its own output.
    ``judged_motion_mm`` (T, 478, 3): the motion an event must stand out of (``events.standing_out``;
    the network's own total when None), e.g. the same face read in a steadier frame."""
    if take.model_version != BASELINE_VERSION:
        raise MxrError(f"the network refines a landmark-only baseline take, not a '{take.model_version}' take")
    return decode_reconstruction(take, runner.run(take, reporter), runner, judged_motion_mm)


def decode_reconstruction(take: Take, result: Reconstruction, runner: NetworkRunner,
                          judged_motion_mm: np.ndarray | None = None) -> Take:
    """``apply_network``'s second half: the network's output on ``take`` -> events at the runner's
    thresholds, the micro layer they explain, the new take. Apart so that a choice of thresholds
    can decode one network run many times (scripts/choose_event_pair.py)."""
    total_mm = FrameSum((result.macro_mm, result.micro_mm, result.detail_mm))  # the apex: where the face moves most
    regions, membership = tuple(result.regions), region_membership(tuple(result.regions))
    _, fps = analysis_clock(take)  # a variable-rate clip's durations are counted at its real rate
    events = runner.events(result.event_logits, result.confirming_logits, total_mm, fps)
    # Blinks as the landmarks show them (the network's output smooths a blink's lids).
    events = without_blinks(events, take.neutral_mm.astype(np.float64),
                            FrameSum((take.macro_mm, take.micro_mm, take.detail_mm)))  # take.deformation_mm, by slices
    # Events must stand out of the motion around them; the test's ratios do not depend on the frame's similarity.
    judged_mm = total_mm if judged_motion_mm is None else judged_motion_mm
    events = standing_out(events, judged_mm, fps, regions, membership)
    macro_mm, micro_mm = result.macro_mm, result.micro_mm
    if events:  # the micro layer is what the events explain, taken out of the macro layer: the total stays
        micro_mm = micro_layer_mm(events, total_mm, fps, regions, membership,
                                  basis_in_take_frame(take.neutral_mm), take.neutral_mm)  # (T, 478, 3) float32
        micro_mm[~np.asarray(take.valid, bool)] = np.nan
        macro_mm = frame_array(total_mm.shape, np.float32)
        for start in range(0, len(macro_mm), CHUNK_FRAMES):
            frames = slice(start, start + CHUNK_FRAMES)
            macro_mm[frames] = total_mm[frames] - micro_mm[frames] - result.detail_mm[frames]
    settings = dict(take.settings)
    settings["network"] = {"model": runner.model_path.name, "version": runner.version, "provider": runner.provider,
                           "window": runner.window, "stride": runner.stride, "events_enabled": runner.events_enabled,
                           "event_detector": runner.detector["file"] if runner.detector else None,
                           "event_detector_files": runner.detector["files"] if runner.detector else [],
                           "micro_layer": MICRO_LAYER_FROM_EVENTS if events else "network"}
    return dataclasses.replace(take, macro_mm=macro_mm, micro_mm=micro_mm, detail_mm=result.detail_mm,
                               events=events, model_version=runner.version, settings=settings)
