"""The engine's front-end: decode -> landmarks -> stabilised crops -> dense flow, streamed.

Four stages overlap on the machine's cores: a decode thread, a landmark thread running MediaPipe
(whose graph runs on its own threads without the GIL), a crop thread (stabilising transform, crop,
the record's landmark fields) and the consuming thread, which runs the optical flow (OpenCV's DIS
releases the GIL). The landmark thread does nothing but MediaPipe: the chain frame -> MediaPipe's
graph -> next frame is serial, so any work added to it (the crop, ~0.5 ms) lengthens every frame,
while on its own thread it overlaps the next frame's landmarks. OpenCV's VideoCapture releases
the GIL while it decodes (a Python loop on another thread keeps its full speed); decoding in a
child process instead was measured: the same throughput, 1.3 ms more CPU per frame (pipe copies,
a second interpreter) and a slower start. Bounded queues between the stages keep memory
independent of the clip length: a few frames are in flight, never the clip.

Where the CPU goes, per 640x360 frame on a 2-core machine (scripts/bench_frontend.py splits it by
thread; 2026-11-24): MediaPipe's graph ~1.7-2.1 ms and its Python side ~0.3, the flow thread
~1.9-2.0 (forward + backward DIS on the face columns ~1.6 alone, more when both cores are busy),
decode ~0.7-0.8 (on one FFmpeg thread for frames this small, ``video.decode_threads_for``: frame
threads cost ~0.15 ms a frame more), crops and records ~0.35: ~4.5-5.1 ms in all, against ~1.9-2.1
ms for MediaPipe alone, which keeps about one core busy. With both cores busy all the time that
would allow ~0.7x MediaPipe-only throughput on WolfgangLanger (0.70-0.71); the four stages keep them
~87 % busy (two of them are serial chains of ~1.9 ms a frame: MediaPipe's graph and the flow), and
no GIL switch interval from 0.2 to 2 ms changed that, so the full front-end runs at ~0.6x
MediaPipe-only throughput, depending on how fast MediaPipe alone runs that day.

Everything in a ``FrameRecord`` is in source-frame pixels or canonical-crop pixels; a downscale
for analysis (frames larger than ``max_side``) is folded into the transforms and reported as
``FrontEnd.scale``. Frames without a face are ``valid=False`` with NaN values: never interpolated.
"""
from __future__ import annotations

import queue
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from .crops import DEFAULT_CROP_SIZE, apply_affine, stabilisation_residual, stabilising_transform, warp_to_crop
from .errors import MxrError
from .flow import DEFAULT_FLOW_PROFILE, FLOW_PROFILES, FlowEstimator, dense_forward_backward_error, is_consistent
from .hands import HandFinder, hand_box_px, hands_on_face
from .landmarks import LANDMARK_COUNT, FaceTracker, Observation
from .progress import ProgressReporter
from .spill import CHUNK_FRAMES as SPILL_CHUNK_FRAMES, FrameFile, frame_file
from .video import (DEFAULT_ANALYSIS_MAX_SIDE, VideoInfo, analysis_scale, decode_threads_for, downscale, iter_frames,
                    probe_video)

QUEUE_FRAMES = 8  # frames in flight between two stages
# MediaPipe releases the GIL while its graph runs and must take it back to return. With Python's
# default 5 ms switch interval a stage busy in Python holds it that long, and MediaPipe (the
# slowest stage, ~3 ms a frame) waits: a busy Python thread cut MediaPipe from 340 to 120
# frames/s here. 0.2 ms keeps it at full speed; the interval is restored when the run ends.
GIL_SWITCH_INTERVAL_S = 0.0002
_POLL_S = 0.1  # how often a blocked stage looks at the stop flag


@dataclass(frozen=True)
class FrontendSettings:
    start_frame: int = 0  # first source frame analysed
    end_frame: int | None = None  # one past the last source frame analysed; None: to the end
    max_side: int = DEFAULT_ANALYSIS_MAX_SIDE  # px; larger frames are downscaled for analysis
    crop_size: int = DEFAULT_CROP_SIZE  # px, side of the canonical face crop
    flow_profile: str = DEFAULT_FLOW_PROFILE  # see flow.FLOW_PROFILES
    dense_flow_size: int = 0  # >0: also keep each frame's dense flow resampled to this many px a side
    face_check_seconds: float = 1.0  # video time between checks for several faces
    hand_check_seconds: float = 0.5  # video time between checks for a hand over the face (ops/hands.py); 0: none
    min_detection_confidence: float = 0.5

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FrameRecord:
    index: int  # source frame index
    timestamp_s: float  # presentation time, s (container PTS; may be variable-rate)
    valid: bool  # a face was tracked in this frame
    confidence: float  # 0..1 proxy, see landmarks.py; 0 when invalid
    landmarks_px: np.ndarray  # (478, 3) float32 source px (x right, y down, z like x); NaN if invalid
    crop_from_image: np.ndarray  # (2, 3) float64 similarity, source px -> crop px; NaN if invalid
    landmarks_crop: np.ndarray  # (478, 2) float32 crop px; NaN if invalid
    stabilisation_residual_px: float  # RMS of the rigid landmarks about the canonical layout, crop px
    # Flow from the previous analysed frame to this one, at the previous frame's landmarks (crop px
    # in the previous crop): landmarks_crop[t-1] + flow ~ the same skin point in crop t. NaN when
    # this or the previous frame is invalid (and for the first frame).
    flow_at_landmarks: np.ndarray  # (478, 2) float32 crop px
    flow_fb_error_px: np.ndarray  # (478,) float32 crop px, forward-backward disagreement
    flow_consistent: np.ndarray  # (478,) bool, the forward-backward check passed
    # A hand over the face (ops/hands.py): 1 or 0 on the frames checked (every hand_check_seconds,
    # with a face), NaN on the others; and the box (x0, y0, x1, y1) source px of the hands on it.
    hand_on_face: float = float("nan")
    hand_box_px: np.ndarray = field(default_factory=lambda: np.full(4, np.nan))
    dense_flow: np.ndarray | None = None  # (S, S, 2) float16 crop px (NaN without flow); None: dense_flow_size 0
    dense_consistent: np.ndarray | None = None  # (S, S) float16, fraction of consistent pixels


@dataclass
class _Tracked:
    """What the landmark stage hands to the flow stage for one frame."""

    record: FrameRecord  # landmark-stage results, no flow yet (NaN)
    crop_grey: np.ndarray | None  # (crop, crop) uint8; None without a face
    several_faces: bool


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


# The per-frame shape of each field ``stack_records`` stacks (frames first).
RECORD_SHAPES = {"index": (), "timestamp_s": (), "valid": (), "confidence": (), "landmarks_px": (LANDMARK_COUNT, 3),
                 "crop_from_image": (2, 3), "landmarks_crop": (LANDMARK_COUNT, 2), "stabilisation_residual_px": (),
                 "flow_at_landmarks": (LANDMARK_COUNT, 2), "flow_fb_error_px": (LANDMARK_COUNT,),
                 "flow_consistent": (LANDMARK_COUNT,), "hand_on_face": (),
                 "hand_box_px": (4,)}
_STACKED_FIELDS = tuple(RECORD_SHAPES)
# The dtype each field is stacked at (what ``stack_records`` makes of the records' values).
RECORD_DTYPES = {"index": np.int64, "timestamp_s": np.float64, "valid": np.bool_, "confidence": np.float64,
                 "landmarks_px": np.float32, "crop_from_image": np.float64, "landmarks_crop": np.float32,
                 "stabilisation_residual_px": np.float64, "flow_at_landmarks": np.float32,
                 "flow_fb_error_px": np.float32, "flow_consistent": np.bool_, "hand_on_face": np.float64,
                 "hand_box_px": np.float64}
# The fields the engine reads (ops/reconstruct.py): ~11.7 KB a frame, 5.6 of them the landmarks; the
# take keeps all but ``hand_on_face`` and ``hand_box_px``.
TAKE_RECORD_FIELDS = ("index", "timestamp_s", "valid", "confidence", "landmarks_px", "crop_from_image",
                      "flow_at_landmarks", "flow_fb_error_px", "flow_consistent", "hand_on_face", "hand_box_px")


def stack_records(records: list[FrameRecord]) -> dict[str, np.ndarray]:
    """Records -> arrays keyed by field name, frames first: ``landmarks_px`` (T, 478, 3),
    ``flow_at_landmarks`` (T, 478, 2), ``valid`` (T,) ... Dense fields only if every record has them."""
    arrays = {name: np.stack([getattr(record, name) for record in records]) for name in _STACKED_FIELDS}
    arrays["index"] = arrays["index"].astype(np.int64)
    if records and all(record.dense_flow is not None for record in records):
        arrays["dense_flow"] = np.stack([record.dense_flow for record in records])
        arrays["dense_consistent"] = np.stack([record.dense_consistent for record in records])
    return arrays


def unstack_records(arrays: dict[str, np.ndarray]) -> Iterator[FrameRecord]:
    """Inverse of ``stack_records``."""
    dense = "dense_flow" in arrays
    for row in range(len(arrays["index"])):
        fields = {name: arrays[name][row] for name in _STACKED_FIELDS}
        yield FrameRecord(
            **{name: value.item() if value.ndim == 0 else value for name, value in fields.items()},
            dense_flow=arrays["dense_flow"][row] if dense else None,
            dense_consistent=arrays["dense_consistent"][row] if dense else None,
        )


# Frames ``FrameArrays`` allocates up front at most (~210 MB of the take's fields, pages untouched
# until written): a container may claim any frame count.
PREALLOCATED_FRAMES_MAX = 18_000


class FrameArrays:
    """Records gathered into per-frame arrays (frames first) at their stacked dtypes, a record at
    a time: a long clip costs the fields' own bytes a frame, not a record object each plus a stacked
    copy. Inside ``spill.spilling_into`` the fields of a frame's landmarks (the flow at them, its
    checks) go to ``FrameFile``s on disk a chunk of frames at a time; the others (a few numbers a
    frame) and all of them outside it are allocated for ``expected_frames`` (the container's count,
    at most ``PREALLOCATED_FRAMES_MAX``) and grow by half when the video holds more."""

    def __init__(self, fields: tuple[str, ...] = TAKE_RECORD_FIELDS, expected_frames: int = 0) -> None:
        self.fields = fields
        self.count = 0
        capacity = int(np.clip(expected_frames, 1, PREALLOCATED_FRAMES_MAX))
        files = {name: frame_file(RECORD_SHAPES[name], RECORD_DTYPES[name]) for name in fields}
        self._files = {name: file for name, file in files.items() if file is not None}
        self._pending = {name: _empty_rows(name, SPILL_CHUNK_FRAMES) for name in self._files}  # rows not yet written
        self._written = 0  # frames in the files
        self._arrays = {name: _empty_rows(name, capacity) for name in fields if name not in self._files}

    def append(self, record: FrameRecord) -> None:
        if self._arrays and self.count == len(next(iter(self._arrays.values()))):
            capacity = self.count
            grown = capacity + max(capacity // 2, 1)
            self._arrays = {name: np.concatenate([array, _empty_rows(name, grown - capacity)])
                            for name, array in self._arrays.items()}
        for name in self.fields:
            if name in self._files:
                self._pending[name][self.count - self._written] = getattr(record, name)
            else:
                self._arrays[name][self.count] = getattr(record, name)
        self.count += 1
        if self.count - self._written == SPILL_CHUNK_FRAMES:
            self._flush()

    def _flush(self) -> None:
        """Write the pending rows of the fields on disk."""
        for name, file in self._files.items():
            file.append(self._pending[name][:self.count - self._written])
        self._written = self.count

    def arrays(self) -> dict[str, np.ndarray | FrameFile]:
        """Field name -> (T, ...) array of the records appended so far (views, not copies, or the
        ``FrameFile``s)."""
        self._flush()
        return {name: self._files[name] if name in self._files else self._arrays[name][:self.count]
                for name in self.fields}


def _empty_rows(name: str, frames: int) -> np.ndarray:
    return np.empty((frames,) + RECORD_SHAPES[name], RECORD_DTYPES[name])


class FrontEnd:
    """One video's front-end run. ``records()`` streams a ``FrameRecord`` per decoded frame.

    MxrError at construction if the file is not a usable video. After ``records()`` is exhausted,
    ``warnings`` holds what a person should know (also sent to the reporter as they happen).
    """

    def __init__(self, video_path: Path, settings: FrontendSettings | None = None,
                 reporter: ProgressReporter | None = None, video: VideoInfo | None = None) -> None:
        self.settings = settings or FrontendSettings()
        if self.settings.flow_profile not in FLOW_PROFILES:
            raise MxrError(f"unknown flow profile {self.settings.flow_profile!r}")
        self.video = video or probe_video(Path(video_path))
        self.reporter = reporter or ProgressReporter()
        self.scale = analysis_scale(self.video.width, self.video.height, self.settings.max_side)  # analysed/source px
        self.warnings: list[str] = []
        self.undecodable = 0  # frames in the range that did not decode (damage), recorded without a face
        end = self.video.frame_count if self.settings.end_frame is None else min(self.settings.end_frame,
                                                                                 self.video.frame_count)
        start, stop = self.settings.start_frame, self.settings.end_frame
        if start < 0 or (stop is not None and stop <= start):
            raise MxrError(f"bad frame range: start {start}, end {stop} (the end is exclusive)")
        if self.video.frame_count > 0 and self.settings.start_frame >= self.video.frame_count:
            raise MxrError(f"start frame {self.settings.start_frame} is past the end of {self.video.path} "
                           f"({self.video.frame_count} frames)")
        self.expected_frames = max(end - self.settings.start_frame, 0)  # container's count; decode may differ
        if self.scale < 1.0:
            self._warn(f"frames of {self.video.width}x{self.video.height} px are analysed at "
                       f"{self.scale:.3f}x ({round(self.video.width * self.scale)}x"
                       f"{round(self.video.height * self.scale)} px); results are in source px")

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        self.reporter.warning(message)

    def records(self) -> Iterator[FrameRecord]:
        """Run the pipeline; closing the generator or an exception (KeyboardInterrupt included)
        stops and joins the worker threads before it propagates."""
        stop = threading.Event()
        decoded: queue.Queue = queue.Queue(QUEUE_FRAMES)
        observed: queue.Queue = queue.Queue(QUEUE_FRAMES)
        tracked: queue.Queue = queue.Queue(QUEUE_FRAMES)
        workers = [
            threading.Thread(target=_guarded, args=(self._decode, decoded, stop), name="mxr-decode", daemon=True),
            threading.Thread(target=_guarded, args=(lambda out, halt: self._track(decoded, out, halt), observed, stop),
                             name="mxr-landmarks", daemon=True),
            threading.Thread(target=_guarded, args=(lambda out, halt: self._crop(observed, out, halt), tracked, stop),
                             name="mxr-crops", daemon=True),
        ]
        threads_before = cv2.getNumThreads()
        cv2.setNumThreads(1)  # the pipeline's own threads fill the cores; nested pools only contend
        switch_interval_before = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        for worker in workers:
            worker.start()
        try:
            yield from self._flow(tracked, stop)
        finally:
            stop.set()
            for worker in workers:
                worker.join()
            cv2.setNumThreads(threads_before)
            sys.setswitchinterval(switch_interval_before)

    def _decode(self, out: queue.Queue, stop: threading.Event) -> None:
        frames = iter_frames(self.video.path, start_frame=self.settings.start_frame, end_frame=self.settings.end_frame,
                             threads=decode_threads_for(self.video.width, self.video.height))
        expected, last_timestamp_s = self.settings.start_frame, None
        try:
            for index, timestamp_s, frame_bgr in frames:
                for missing in range(expected, index):  # did not decode: a record without a face
                    self.undecodable += 1
                    guess_s = (last_timestamp_s if last_timestamp_s is not None else timestamp_s) + (
                        missing - expected + 1) / self.video.fps
                    if not _put(out, (missing, guess_s, None), stop):
                        return
                frame_rgb = cv2.cvtColor(downscale(frame_bgr, self.scale), cv2.COLOR_BGR2RGB)
                if not _put(out, (index, timestamp_s, frame_rgb), stop):
                    return
                expected, last_timestamp_s = index + 1, timestamp_s
        finally:
            frames.close()
        _put(out, _END, stop)

    def _track(self, source: queue.Queue, out: queue.Queue, stop: threading.Event) -> None:
        """Decoded frames -> (index, time s, RGB frame, Observation, several faces seen so far)."""
        settings = self.settings
        check_every = max(1, round(settings.face_check_seconds * self.video.fps))
        with FaceTracker(max_faces=1, min_detection_confidence=settings.min_detection_confidence,
                         check_every=check_every) as tracker:
            def observe(item: tuple) -> tuple:
                index, timestamp_s, frame_rgb = item
                observation = tracker.observe(frame_rgb) if frame_rgb is not None else Observation(None, 0.0, None)
                return index, timestamp_s, frame_rgb, observation, tracker.several_faces_seen

            _relay(source, out, stop, observe)

    def _crop(self, source: queue.Queue, out: queue.Queue, stop: threading.Event) -> None:
        """Observed frames -> ``_Tracked`` (the record without flow and the grey crop), a hand over
        the face looked for every ``hand_check_seconds``."""
        if self.settings.hand_check_seconds <= 0:
            _relay(source, out, stop, lambda item: self._tracked(item, None))
            return
        check_every = max(1, round(self.settings.hand_check_seconds * self.video.fps))
        with HandFinder() as finder:
            _relay(source, out, stop,
                   lambda item: self._tracked(item, finder if (item[0] - self.settings.start_frame) % check_every == 0
                                              else None))

    def _tracked(self, item: tuple, hands: HandFinder | None) -> _Tracked:
        size = self.settings.crop_size
        index, timestamp_s, frame_rgb, observation, several_faces = item
        landmarks = observation.landmarks_px
        transform = crop = None
        if landmarks is not None:
            transform = stabilising_transform(landmarks, size)
            crop = warp_to_crop(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY), transform, size)
        record = self._record(index, timestamp_s, observation.confidence, landmarks, transform)
        if hands is not None and landmarks is not None:
            on_face = hands_on_face(hands.hands_px(frame_rgb, rgb=True), landmarks)
            record.hand_on_face = float(bool(on_face))
            if on_face:
                record.hand_box_px = hand_box_px(on_face) / self.scale
        return _Tracked(record, crop, several_faces)

    def _flow(self, source: queue.Queue, stop: threading.Event) -> Iterator[FrameRecord]:
        settings = self.settings
        estimator = FlowEstimator(settings.flow_profile)
        previous: FrameRecord | None = None
        previous_crop: np.ndarray | None = None
        several_faces_warned = False
        last_timestamp = -np.inf
        timestamps_ok = True
        count = invalid = 0
        while (item := _get(source, stop)) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            if item is None:  # stopped from outside
                return
            record = item.record
            if item.several_faces and not several_faces_warned:
                several_faces_warned = True
                self._warn(f"several faces in the video (first seen by frame {record.index}): the tracker "
                           "follows the face it already tracks, and after losing it the most confident detection")
            if record.timestamp_s <= last_timestamp:
                timestamps_ok = False
            last_timestamp = record.timestamp_s
            if record.valid and previous is not None and previous.valid:
                pair = estimator.pair(previous_crop, item.crop_grey, previous.landmarks_crop)
                record.flow_at_landmarks = pair.at_points
                record.flow_fb_error_px = pair.fb_error_px
                record.flow_consistent = pair.consistent
                if settings.dense_flow_size > 0:
                    record.dense_flow, record.dense_consistent = _dense_summary(
                        pair.forward, pair.backward, settings.dense_flow_size)
            if settings.dense_flow_size > 0 and record.dense_flow is None:
                size = settings.dense_flow_size
                record.dense_flow = np.full((size, size, 2), np.nan, np.float16)
                record.dense_consistent = np.zeros((size, size), np.float16)
            count += 1
            invalid += not record.valid
            self.reporter.progress("frontend", count, max(self.expected_frames, count))
            previous, previous_crop = record, item.crop_grey
            yield record
        self._final_warnings(count, invalid, timestamps_ok)

    def _record(self, index: int, timestamp_s: float, confidence: float, landmarks_analysed: np.ndarray | None,
                transform_analysed: np.ndarray | None) -> FrameRecord:
        """A record of the landmark-stage results, (478, 3) analysed px landmarks and the (2, 3)
        analysed px -> crop px transform (None without a face), with no flow yet (NaN)."""
        size = self.settings.crop_size
        no_flow = np.full((LANDMARK_COUNT, 2), np.nan, np.float32)
        if landmarks_analysed is None:
            return FrameRecord(index, timestamp_s, False, 0.0,
                               np.full((LANDMARK_COUNT, 3), np.nan, np.float32), np.full((2, 3), np.nan),
                               no_flow.copy(), float("nan"), no_flow, np.full(LANDMARK_COUNT, np.nan, np.float32),
                               np.zeros(LANDMARK_COUNT, bool))
        crop_from_image = transform_analysed.copy()
        crop_from_image[:, :2] *= self.scale  # analysed px = scale * source px
        return FrameRecord(
            index=index, timestamp_s=timestamp_s, valid=True, confidence=confidence,
            landmarks_px=(landmarks_analysed / self.scale).astype(np.float32),
            crop_from_image=crop_from_image,
            landmarks_crop=apply_affine(transform_analysed, landmarks_analysed[:, :2]).astype(np.float32),
            stabilisation_residual_px=stabilisation_residual(landmarks_analysed, transform_analysed, size),
            flow_at_landmarks=no_flow, flow_fb_error_px=np.full(LANDMARK_COUNT, np.nan, np.float32),
            flow_consistent=np.zeros(LANDMARK_COUNT, bool),
        )

    def _final_warnings(self, count: int, invalid: int, timestamps_ok: bool) -> None:
        if count == 0:
            raise MxrError(f"{self.video.path}: no frames could be decoded in the requested range")
        if count < self.expected_frames:
            self._warn(f"decoded {count} of the {self.expected_frames} frames the container announces "
                       "(truncated or damaged file?); the take covers the decodable frames")
        if self.undecodable:
            self._warn(f"{self.undecodable} frames could not be decoded (damaged file?): they are marked invalid")
        if invalid > self.undecodable:
            self._warn(f"no face in {invalid - self.undecodable} of {count} frames: they are marked invalid")
        if not timestamps_ok:
            self._warn("the container's frame timestamps do not increase steadily; check the timing")


def _dense_summary(forward: np.ndarray, backward: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 2) forward and backward crop flows -> the forward flow (size, size, 2) float16 crop px
    and the fraction of forward-backward consistent pixels (size, size) float16, area-averaged."""
    consistent = is_consistent(dense_forward_backward_error(forward, backward), forward).astype(np.float32)
    flow_small = cv2.resize(forward, (size, size), interpolation=cv2.INTER_AREA)  # vectors stay in crop px
    consistent_small = cv2.resize(consistent, (size, size), interpolation=cv2.INTER_AREA)
    return flow_small.astype(np.float16), consistent_small.astype(np.float16)


def _guarded(stage: Callable[[queue.Queue, threading.Event], None], out: queue.Queue, stop: threading.Event) -> None:
    """Run a stage; hand any exception to the consumer instead of dying silently."""
    try:
        stage(out, stop)
    except BaseException as error:  # noqa: BLE001 - re-raised in the consuming thread
        _put(out, _Failed(error), stop)


def _relay(source: queue.Queue, out: queue.Queue, stop: threading.Event, work: Callable[[Any], object]) -> None:
    """A middle stage: ``work`` on every item from ``source`` into ``out``, then the end marker.
    A failure upstream is passed on as it is; a stop from outside ends the stage quietly."""
    while (item := _get(source, stop)) is not _END:
        if isinstance(item, _Failed):
            _put(out, item, stop)
            return
        if item is None:  # stopped from outside
            return
        if not _put(out, work(item), stop):
            return
    _put(out, _END, stop)


def _put(out: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put, waiting for room; False if the run was stopped meanwhile."""
    while not stop.is_set():
        try:
            out.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(source: queue.Queue, stop: threading.Event) -> object | None:
    """Get, waiting for an item; None if the run was stopped meanwhile."""
    while not stop.is_set():
        try:
            return source.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return None
