"""The reconstruction pipeline: video -> front-end (landmarks, crops, flow) -> canonical
deformation -> network -> take file.

The baseline (``baseline-landmarks-1``) is what the face's points show against the head's pose,
all of it in the macro layer: MediaPipe's landmarks fused with the flow (ops/flow_fusion.py) and,
where the face moves little, points glued to the skin (ops/skin_track.py, ``skin_where_trusted``). By default the micro-expression network (models/network) then
reads the take's landmarks and flow and replaces the layers with macro / micro / detail and the
detected micro events; ``use_network=False`` keeps the baseline.

Memory: the per-frame arrays of the face's 478 points (the front-end's landmarks and the flow at
them, the landmarks fused with the flow, the skin-glued points, the network's canonical flow and
blended layers, the take's layers) live in unnamed temporary
files beside the take while it runs (ops/spill.py), written and read a chunk of frames at a time,
and the take is written by streaming them into its archive (take.save_take). What stays in memory
is a few numbers a frame (poses, neutral scores, the fused coefficients, the event logits) and one
network window's work. The events read the motion one event's stretch at a time, and are judged on
the take's own motion read the same way (``DisplacementReader``). ``scripts/bench_memory.py``
measures it: ~1 KB a frame over ~210 MB of fixed cost, ~364 MB at 500 and at 5,000 frames.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from .atomic import replacing_together, same_file, sweep_stale_partials
from .canonical import CanonicalFrame, canonical_frame
from .errors import MxrError
from .frontend import RECORD_SHAPES, TAKE_RECORD_FIELDS, FrameArrays, FrontendSettings, unstack_records
from .frontend_cache import CachedFrontEnd
from .frontend_debug import write_contact_sheet
from .hands import covered_landmarks, steadied_where_covered, within_seen_range
from .held_expression import rest_face, sampled_frames
from .neutral import face_measures, neutral_run, occluded_frames, scores_from_measures
from .perspective import PerspectiveCamera, calmest_frames, perspective_camera
from ..models.micro_keys import MICRO_LAYER_FROM_EVENTS
from ..models.network.events import (StretchReader, during_speech, layer_span, micro_layers_read_again,
                                      seen_on_skin)
from ..models.network.features import region_membership
from ..models.network.fusion import basis_in_take_frame
from ..models.network.runner import NetworkRunner, apply_network
from ..models.open_head import load_open_head
from ..models.retarget import displacement_on, frame_chunks
from ..models.similarity import Similarities, fit_similarities
from .flow_fusion import DRIFT_S, fused_landmarks_px
from .progress import ProgressReporter
from .spill import LayerReader, frame_array, spilling_into
from .stretch_flow import STRETCH_READING, reread_stretches
from .video import VideoInfo
from .skin_track import (UNTRACKED_LANDMARKS, SourceFrames, choose_references, fall_back, rest_references,
                         settings_for_face, track_with_references)
from .take import BASELINE_VERSION, LANDMARK_COUNT, MicroEvent, Take, analysis_clock, save_take, timestamp_seconds


@dataclass
class ReconstructSettings:
    frontend: FrontendSettings = field(default_factory=FrontendSettings)
    # The neutral face: found in the take (ops/neutral.py) unless one of these names it.
    neutral_frames: tuple[int, int] | None = None  # first and last take frame showing it
    neutral_seconds: float | None = None  # the first valid face frames in this span show it
    cache_dir: Path | None = None  # front-end cache; None: MXR_CACHE_DIR or ~/.cache/mxr/frontend
    debug_sheet: Path | None = None  # also write the front-end's contact sheet (PNG) here
    use_network: bool = True  # False: the landmark-only baseline (no micro layer, no events)
    # Read the face, where it moves little, from points glued to the skin by optical flow against
    # rest references (ops/skin_track.py) instead of MediaPipe's, which slide over the skin; the
    # pose is solved again on them (``skin_where_trusted``); off: about three times faster after
    # the front-end.
    skin_track: bool = True
    # The face is read from MediaPipe's landmarks moved from frame to frame by the flow and pulled
    # back to MediaPipe's over this many seconds (ops/flow_fusion.py); 0: MediaPipe's alone.
    flow_fusion_s: float = DRIFT_S
    # The camera's focal length in the video's pixels, when it is known; None: the candidate of
    # ``perspective.FOCAL_CANDIDATES`` that reprojects best, which a clip shows little of (the
    # candidates reproject within 1 % of each other on real clips, so a copy of a clip with a
    # millimetre of motion planted may pick another, docs/OPEN_LOOP.md).
    focal_px: float | None = None


MAX_FLOW_FUSION_S = 30.0  # longer lets the flow's drift through
FOCAL_RANGE = (0.2, 50.0)  # a focal length, in units of the frame's longer side, that a camera may have


@dataclass
class ReconstructSummary:
    take_path: Path
    frames: int
    faces_found: int
    seconds: float
    frames_per_second: float
    frontend_cached: bool
    model_version: str
    provider: str | None  # onnxruntime execution provider that ran the network; None for the baseline
    micro_events: int
    neutral_frames: tuple[int, int]  # the first and last take frame the neutral was read from
    neutral_method: str  # "found", "frames" (named) or "first_seconds"
    neutral_held: dict[str, float]  # what the found frames still held, taken out (ops/held_expression.py)
    neutral_hand: bool  # a hand covers the face in the neutral frames (ops/hands.py)


def check_writable(path: Path) -> None:
    """Refuse an output path that cannot become a file, before minutes of work are spent on it."""
    if path.is_dir():
        raise MxrError(f"cannot write {path}: it is a folder")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise MxrError(f"cannot write {path}: {folder} is not a writable folder")


def refuse_overwriting_inputs(video_path: Path, outputs: list[Path]) -> None:
    """Refuse outputs that name the input video or each other (the take would replace the footage,
    or the contact sheet the take), before any work."""
    for number, output in enumerate(outputs):
        if same_file(output, Path(video_path)):
            raise MxrError(f"refusing to write {output}: it is the input video")
        for other in outputs[number + 1:]:
            if same_file(output, other):
                raise MxrError(f"refusing to write {output} twice: the take and the debug sheet must be different files")


CHUNK_FRAMES = 256  # frames whose 478 points a stage reads at a time: ~3 MB a float64 array, whatever the take's length


def displacement_mm(faces_at: LayerReader, neutral_mm: np.ndarray, count: int,
                    less: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """(T, 478, 3) float32 mm: each frame's face (``faces_at``) less the neutral (478, 3) mm and the
    layers ``less`` (T, 478, 3), worked in float64 a chunk of frames at a time."""
    displacement = frame_array((count, len(neutral_mm), 3), np.float32)  # on disk in the engine (ops/spill.py)
    for frames in frame_chunks(count, CHUNK_FRAMES):
        part = faces_at(frames) - neutral_mm
        for layer in less:
            part = part - layer[frames]
        displacement[frames] = part
    return displacement


@dataclass(frozen=True)
class DisplacementReader:
    """A take's displacement (T, 478, 3) mm read a slice of frames at a time (``reader[a:b]``, ``len``):
    each frame's face (``faces_at``) less the neutral (478, 3) mm, never held whole."""

    faces_at: LayerReader
    neutral_mm: np.ndarray
    count: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.count, LANDMARK_COUNT, 3)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, frames: slice) -> np.ndarray:
        return self.faces_at(slice(*frames.indices(self.count))) - self.neutral_mm


def zero_layer(valid: np.ndarray) -> np.ndarray:
    """An empty layer, (T, 478, 3) float32: 0, NaN on frames without a face; one value a frame,
    broadcast (read-only, no memory of its own)."""
    per_frame = np.where(np.asarray(valid, bool), 0.0, np.nan).astype(np.float32)
    return np.broadcast_to(per_frame[:, None, None], (len(per_frame), LANDMARK_COUNT, 3))


def chunked_scores(faces_at: LayerReader, valid: np.ndarray) -> np.ndarray:
    """``neutral.neutral_scores`` (T,) of the faces ``faces_at`` reads, measured a chunk of frames at
    a time."""
    measures = np.concatenate([face_measures(faces_at(frames))
                               for frames in frame_chunks(len(valid), CHUNK_FRAMES)])  # (T, 6)
    return scores_from_measures(measures, valid)


def read_frames(frontend: CachedFrontEnd, fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The front-end's ``fields`` of every frame, field -> (T, ...) array or ``spill.FrameFile`` (``FrameArrays``)."""
    frames = FrameArrays(fields, frontend.expected_frames)
    for record in frontend.records():
        frames.append(record)
    return frames.arrays()


def _take_settings(settings: ReconstructSettings, frontend: CachedFrontEnd, camera: PerspectiveCamera,
                   neutral_frames: np.ndarray, neutral_method: str, neutral_held: dict[str, float],
                   neutral_hand: bool, hand_frames: int) -> dict:
    """What a take records of how it was made."""
    return {"frontend": settings.frontend.as_dict(), "neutral_method": neutral_method, "neutral_held": neutral_held,
            "neutral_hand": neutral_hand, "hand_frames": hand_frames,
            "neutral_seconds": settings.neutral_seconds,
            "neutral_frames": [int(neutral_frames[0]), int(neutral_frames[-1])],
            "skin_track": settings.skin_track, "flow_fusion_s": settings.flow_fusion_s,
            "camera": "perspective", "camera_focal_px": camera.focal_px,
            "camera_focal": "searched" if settings.focal_px is None else "given",
            "camera_reprojection_px": round(camera.reprojection_px, 3),
            "frontend_cache_key": frontend.key, "mxr_version": __version__}


@dataclass
class NetworkLayers:
    """What the network adds to a landmark-only take, carried into the take's canonical frame."""

    micro_mm: np.ndarray  # (T, 478, 3) float32, the events read by flow over their stretches (ops/stretch_flow.py)
    taken_from_macro_mm: np.ndarray  # (T, 478, 3) float32, the same events read from the take's points
    detail_mm: np.ndarray  # (T, 478, 3) float32
    events: list[MicroEvent]
    model_version: str
    settings: dict  # the take's "network" settings


def _observed_take(observed: dict, video: VideoInfo, frontend: CachedFrontEnd, settings: ReconstructSettings,
                   take_settings: dict, neutral_mm: np.ndarray, poses: Similarities, macro_mm: np.ndarray,
                   layers: NetworkLayers | None = None) -> Take:
    """A take of the front-end's observations (``observed``: field -> (T, ...)) with the neutral,
    head poses and macro layer (T, 478, 3) of one canonical frame, and the network's ``layers``
    (None: landmark-only, empty micro and detail layers)."""
    zeros = zero_layer(observed["valid"]) if layers is None else None
    return Take(
        source_path=str(video.path.resolve()),
        source_sha256=video.sha256,
        fps=video.fps,
        frame_size=(video.width, video.height),
        timestamps_s=observed["timestamp_s"],
        valid=observed["valid"],
        landmarks_px=observed["landmarks_px"],
        head_rotation=poses.rotation,
        head_translation_px=poses.translation,
        head_scale_px_per_mm=poses.scale,
        neutral_mm=neutral_mm,
        macro_mm=macro_mm,
        micro_mm=zeros if layers is None else layers.micro_mm,
        detail_mm=zeros if layers is None else layers.detail_mm,
        frame_indices=observed["index"],
        analysis_scale=frontend.scale,
        landmark_confidence=observed["confidence"],
        crop_size_px=settings.frontend.crop_size,
        crop_from_image=observed["crop_from_image"],
        flow_at_landmarks_px=observed["flow_at_landmarks"],
        flow_fb_error_px=observed["flow_fb_error_px"],
        flow_consistent=observed["flow_consistent"],
        events=[] if layers is None else layers.events,
        model_version=BASELINE_VERSION if layers is None else layers.model_version,
        settings=take_settings if layers is None else {**take_settings, "network": layers.settings},
    )


def skin_tracked_px(video_path: Path, observed: dict, valid: np.ndarray, faces: PerspectiveCamera,
                    neutral_frames: np.ndarray, on_frame: Callable[[int, int], None]) -> np.ndarray:
    """The landmarks as skin points tracked by flow (``skin_track.track_with_references``):
    (T, 478, 3) source px like MediaPipe's (depth 0), MediaPipe's own where the flow saw nothing.

    The mesh is the neutral posed by ``faces``' perspective poses; the references are taken from
    the calmest quarter of the frames and the neutral frames (the calm faces the pose solve reads
    its depth from), the primary the neutral frame nearest a frontal view."""
    landmarks_px = observed["landmarks_px"]  # (T, 478, 3) continuous px
    count = len(valid)
    rotations = faces.camera_rotations  # (T, 3, 3)
    calm = calmest_frames(chunked_scores(partial(faces.faces_at, landmarks_px), valid), valid)
    candidates, primary = rest_references(calm, neutral_frames, rotations)
    track = settings_for_face(float(np.nanmedian(faces.poses.scale)))  # px per mm
    references = choose_references(rotations, candidates, primary, np.radians(track.reference_spacing_deg))
    frames = SourceFrames(video_path, observed["index"], references)
    to_index = 0.5  # continuous px -> pixel-centre (array index) px, as the flow reads images
    mesh_px = frame_array((count, LANDMARK_COUNT, 2), np.float64)  # (T, 478, 2) index px, on disk in the engine
    for chunk in frame_chunks(count, CHUNK_FRAMES):
        mesh_px[chunk] = faces.project(faces.neutral_mm, chunk) - to_index
    tracked = track_with_references(frames, mesh_px, rotations, candidates, primary, track, on_frame)
    points_px = frame_array((count, LANDMARK_COUNT, 3), np.float64)
    for chunk in frame_chunks(count, CHUNK_FRAMES):
        seen = fall_back(tracked[chunk] + to_index, np.asarray(landmarks_px[chunk][..., :2], np.float64))
        points_px[chunk] = np.concatenate([seen, np.zeros(seen.shape[:2] + (1,))], axis=2)
    return points_px


# A skin point is used while its landmark has moved less than the first distance from the neutral
# and the two are nearer than the first agreement distance, not beyond the second (canonical mm).
# Chosen on the dev split (scan clips and labelled frames, docs/OPEN_LOOP.md): motion 1.5-3 mm,
# agreement 2.5-5 mm; without the agreement test, smiles with the head turned lost a lip corner.
SKIN_MOTION_MM = (1.5, 3.0)
SKIN_AGREE_MM = (2.5, 5.0)


def skin_where_trusted(tracked_px: np.ndarray, landmarks_px: np.ndarray, camera: PerspectiveCamera) -> np.ndarray:
    """(T, 478, 3) px: the skin-glued points ``tracked_px`` (T, 478, 3) px where the landmarks
    ``landmarks_px`` (T, 478, 3) px move little from the neutral and the two agree, as ``camera``
    reads them; the landmarks elsewhere and at ``UNTRACKED_LANDMARKS``; blended between
    (``SKIN_MOTION_MM``, ``SKIN_AGREE_MM``).

    Why: flow against a rest reference reads small, smooth motion far better than MediaPipe (the
    scan clips' still face wanders 0.28 mm instead of 0.62), but loses large or torn motion (a
    closing lid, an opening mouth, a broad smile: labelled real frames, docs/OPEN_LOOP.md) and
    follows whatever covers the skin."""
    gated = frame_array(landmarks_px.shape, np.float64)  # on disk in the engine (ops/spill.py)
    for frames in frame_chunks(len(gated), CHUNK_FRAMES):
        landmark_faces = camera.faces_at(landmarks_px, frames)  # (F, 478, 3) mm
        motion = np.linalg.norm(landmark_faces - camera.neutral_mm, axis=-1)  # (F, 478) mm
        apart = np.linalg.norm(camera.faces_at(tracked_px, frames) - landmark_faces, axis=-1)  # (F, 478) mm
        weight = _fading(motion, SKIN_MOTION_MM) * _fading(apart, SKIN_AGREE_MM)  # (F, 478) share of the tracked point
        weight[:, UNTRACKED_LANDMARKS] = 0.0
        blended = np.array(landmarks_px[frames], np.float64)  # depth: the landmark's
        tracked = np.asarray(tracked_px[frames], np.float64)  # finite where the landmark is (skin_tracked_px)
        blended[..., :2] = weight[..., None] * tracked[..., :2] + (1.0 - weight[..., None]) * blended[..., :2]
        gated[frames] = blended
    return gated


def _fading(distance_mm: np.ndarray, span_mm: tuple[float, float]) -> np.ndarray:
    """1 up to the span's first distance, 0 from its second (and where NaN), linear between."""
    low, high = span_mm
    return np.clip((high - np.nan_to_num(distance_mm, nan=np.inf)) / (high - low), 0.0, 1.0)


def in_trained_frame(take: Take) -> Take:
    """A landmark-only take moved into the frame the networks were trained on (``canonicalize``'s
    similarity frame, same neutral frames): what ``apply_network`` must be given."""
    first, last = take.settings["neutral_frames"]
    frame = canonical_frame(take.landmarks_px, take.valid, np.arange(first, last + 1))
    neutral_mm, poses, macro_mm = _trained_layers(frame, take.landmarks_px)
    zeros = zero_layer(take.valid)
    return dataclasses.replace(take, neutral_mm=neutral_mm, macro_mm=macro_mm, micro_mm=zeros, detail_mm=zeros,
                               head_rotation=poses.rotation, head_translation_px=poses.translation,
                               head_scale_px_per_mm=poses.scale)


def _trained_layers(frame: CanonicalFrame, landmarks_px: np.ndarray) -> tuple[np.ndarray, Similarities, np.ndarray]:
    """A take's neutral (478, 3) float32 mm, head poses and macro layer (T, 478, 3) float32 mm in
    the frame the networks were trained on (``frame``, from ``canonical_frame``)."""
    macro_mm = displacement_mm(partial(frame.faces_at, landmarks_px), frame.neutral_mm, len(landmarks_px))
    return frame.neutral_mm.astype(np.float32), frame.poses, macro_mm


def network_layers(trained_take: Take, runner: NetworkRunner, take_motion: DisplacementReader,
                   judged_motion: DisplacementReader, reread: StretchReader,
                   reporter: ProgressReporter) -> NetworkLayers:
    """The network run on ``trained_take`` (landmark-only, in the frame the networks were trained
    on: ``in_trained_frame``): its events, the micro layer they explain read from the take's own
    motion (``take_motion``: the points the take's face is read from, in its canonical frame), and
    its detail layer carried onto that frame (turned and scaled by the similarity between the two
    neutrals, a chunk of frames at a time). Its events must stand out of ``judged_motion``
    (MediaPipe's points, ``events.standing_out``), show on ``take_motion`` as well
    (``events.seen_on_skin``) and, in the mouth and jaw, be no syllable of speech there
    (``events.during_speech``).

    The micro layer is read from the take's motion, not the network's: on the injected real clips
    (scripts/open_loop_inject.py) MediaPipe's points, which the network reads, show 0.42-0.49 of a
    planted micro event's motion, the take's points (fused with the flow) 0.48-0.64. Each event's
    stretch is read again by flow against its first frame (``reread``: ``stretch_flow.reread_stretches``)
    and the layer fitted there; the layer the take's own points give for the same events is
    ``taken_from_macro_mm``, so the take's total shows the events as the flow reads them."""
    network_take = apply_network(trained_take, runner, reporter, judged_motion_mm=judged_motion)
    neutral_mm = np.asarray(take_motion.neutral_mm, np.float64)
    alignment = fit_similarities(network_take.neutral_mm.astype(np.float64), neutral_mm[None])
    detail_mm = frame_array(network_take.detail_mm.shape, np.float32)
    for frames in frame_chunks(len(detail_mm), CHUNK_FRAMES):
        detail_mm[frames] = displacement_on(alignment, np.asarray(network_take.detail_mm[frames], np.float64))
    regions = tuple(runner.regions)
    membership = region_membership(regions)
    fps = analysis_clock(trained_take)[1]
    events = seen_on_skin(network_take.events, take_motion, judged_motion, regions, membership)
    events = during_speech(events, take_motion, neutral_mm, fps)
    micro_mm = taken_mm = zero_layer(trained_take.valid)
    if events:
        corrections = reread([layer_span(event, fps, len(take_motion)) for event in events])
        micro_mm, taken_mm = micro_layers_read_again(events, take_motion, corrections, fps, regions, membership,
                                                     basis_in_take_frame(neutral_mm), neutral_mm)
        for layer in (micro_mm, taken_mm):
            layer[~np.asarray(trained_take.valid, bool)] = np.nan
    # where the layer comes from, as apply_network says it (the skin may have left no event)
    network = {**network_take.settings["network"], "micro_layer": MICRO_LAYER_FROM_EVENTS if events else "network",
               "micro_stretches": STRETCH_READING if events else None}
    return NetworkLayers(micro_mm, taken_mm, detail_mm, events, network_take.model_version, network)


def known_focal_px(focal_px: float, frame_size: tuple[int, int]) -> float:
    """The user's focal length (px), checked against the frame's size: a clear error for one no
    camera has (a focal length in mm, or of another resolution, would show as one)."""
    longer = float(max(frame_size))
    low, high = FOCAL_RANGE
    if not low * longer <= focal_px <= high * longer:
        raise MxrError(f"a focal length of {focal_px:g} px is not one a camera filming {frame_size[0]}x{frame_size[1]} "
                       f"frames has ({low * longer:g}-{high * longer:g} px: {low:g}-{high:g} times the longer side)")
    return float(focal_px)


def choose_neutral_frames(observed: dict, valid: np.ndarray, fps: float,
                          settings: ReconstructSettings) -> tuple[np.ndarray, str]:
    """The take frames whose median is the performer's neutral face, and how they were chosen:
    "frames" (named by the user), "first_seconds" (the clip's opening), or "found" (the most
    neutral-looking run without occlusion, ``neutral.find_neutral_frames``, on faces aligned to the
    opening). ``observed``: the front-end's per-frame arrays (``stack_records``)."""
    frame_count = len(valid)
    if settings.neutral_frames is not None:
        first, last = settings.neutral_frames
        if not 0 <= first <= last < frame_count:
            raise MxrError(f"neutral frames {first}-{last} are not within the take's frames 0-{frame_count - 1}")
        return np.arange(first, last + 1), "frames"
    first_valid = int(np.argmax(valid))
    if settings.neutral_seconds is not None:
        if not (np.isfinite(settings.neutral_seconds) and settings.neutral_seconds > 0):
            raise MxrError(f"the neutral span must be a positive number of seconds, not {settings.neutral_seconds}")
        if settings.neutral_seconds * fps > frame_count:
            raise MxrError(f"the neutral span of {settings.neutral_seconds:g} s is longer than the take's "
                           f"{frame_count} frames at {fps:g} fps")
        span = max(1, int(round(settings.neutral_seconds * fps)))
        return np.arange(first_valid, min(first_valid + span, frame_count)), "first_seconds"
    opening = np.arange(first_valid, min(first_valid + max(1, int(round(0.5 * fps))), frame_count))
    provisional = canonical_frame(observed["landmarks_px"], valid, opening)
    occluded = occluded_frames(valid, observed["confidence"], observed["flow_consistent"], observed["flow_fb_error_px"])
    scores = chunked_scores(partial(provisional.faces_at, observed["landmarks_px"]), valid)
    return neutral_run(scores, fps, occluded), "found"


def reconstruct(video_path: Path, take_path: Path, settings: ReconstructSettings | None = None,
                reporter: ProgressReporter | None = None) -> ReconstructSummary:
    """Reconstruct ``video_path`` into the take ``take_path``; its per-frame arrays of the face's
    points live in temporary files beside the take while it runs (ops/spill.py), so that memory stays
    flat in the clip's length."""
    folder = Path(take_path).resolve().parent
    while not folder.exists():  # the take's folder is made as it is written
        folder = folder.parent
    with spilling_into(folder):
        return _reconstruct(video_path, take_path, settings, reporter)


def _reconstruct(video_path: Path, take_path: Path, settings: ReconstructSettings | None = None,
                 reporter: ProgressReporter | None = None) -> ReconstructSummary:
    settings = settings or ReconstructSettings()
    reporter = reporter or ProgressReporter()
    if not (np.isfinite(settings.flow_fusion_s) and 0.0 <= settings.flow_fusion_s <= MAX_FLOW_FUSION_S):
        raise MxrError(f"the flow fusion span must be 0 to {MAX_FLOW_FUSION_S:g} seconds, not {settings.flow_fusion_s}")
    if settings.focal_px is not None and not (np.isfinite(settings.focal_px) and settings.focal_px > 0):
        raise MxrError(f"the focal length must be a positive number of pixels, not {settings.focal_px}")
    started = time.monotonic()
    outputs = [Path(output) for output in (take_path, settings.debug_sheet) if output is not None]
    refuse_overwriting_inputs(Path(video_path), outputs)
    for output in outputs:
        check_writable(output)
    runner = NetworkRunner() if settings.use_network else None  # a broken model fails before the video work
    frontend = CachedFrontEnd(Path(video_path), settings.frontend, reporter, settings.cache_dir)
    frame_size = (frontend.video.width, frontend.video.height)
    focal_candidates = None if settings.focal_px is None else (known_focal_px(settings.focal_px, frame_size),)
    # Per-frame arrays (T, ...), the take's fields only (~11.7 KB a frame, on disk) unless the sheet draws the crops.
    observed = read_frames(frontend, tuple(RECORD_SHAPES) if settings.debug_sheet is not None else TAKE_RECORD_FIELDS)
    video = frontend.video
    valid = observed["valid"]
    frame_count = len(valid)
    if not valid.any():
        raise MxrError(f"no face found in any of the {frame_count} frames of {video.path}")

    for message in timestamp_seconds(observed["timestamp_s"], video.fps)[1]:  # a variable rate is read by the
        reporter.warning(message)  # frames' own times (take.analysis_clock)

    # Every stage below keeps a few numbers a frame and reads the faces a chunk of frames at a time.
    neutral_frames, neutral_method = choose_neutral_frames(observed, valid, video.fps, settings)
    # (T, 478) the face's points a hand covers (ops/hands.py), on disk
    covered = covered_landmarks(observed["hand_on_face"], observed["hand_box_px"], observed["landmarks_px"])
    neutral_hand = bool(np.asarray(covered[int(neutral_frames[len(neutral_frames) // 2])]).any())
    if neutral_hand:  # passing over such frames read worse where no frame is at rest (ops/hands.py)
        reporter.warning(f"a hand covers the face in the neutral frames {neutral_frames[0]}-{neutral_frames[-1]}: "
                         "the face there is partly guessed; if the take reads wrong, name frames without one "
                         "(--neutral-frames)")
    landmarks_px = observed["landmarks_px"]  # (T, 478, 3) source px
    trained_frame = canonical_frame(landmarks_px, valid, neutral_frames)  # step 1: MediaPipe's mesh
    calm = calmest_frames(chunked_scores(partial(trained_frame.faces_at, landmarks_px), valid), valid)
    # The take's frame: the pose from the image through a pinhole camera (ops/perspective.py).
    faces_px = landmarks_px  # the points the take's pose and expression are read from
    if settings.flow_fusion_s > 0:
        faces_px = fused_landmarks_px(landmarks_px, observed["crop_from_image"], observed["flow_at_landmarks"],
                                      observed["flow_consistent"], valid, video.fps, settings.flow_fusion_s)
    camera = perspective_camera(faces_px, valid, neutral_frames, trained_frame.neutral_mm, calm, frame_size,
                                reporter.stage("pose"), focal_candidates)
    if settings.skin_track:  # the same pose solve and reading, on points glued to the skin where trusted
        tracked_px = skin_tracked_px(video.path, observed, valid, camera, neutral_frames, reporter.stage("skin"))
        faces_px = skin_where_trusted(tracked_px, faces_px, camera)
        camera = perspective_camera(faces_px, valid, neutral_frames, trained_frame.neutral_mm, calm, frame_size,
                                    reporter.stage("pose on the skin"), focal_candidates)
    rest_mm = camera.neutral_mm  # (478, 3) the face every frame is read against
    held = {}
    if neutral_method == "found":  # the expression the found frames still hold, taken out (ops/held_expression.py)
        head, sampled = load_open_head(), sampled_frames(valid)
        sampled_mm = camera.faces_at(faces_px, sampled) - camera.neutral_mm  # (n, 478, 3) at most 1,500 frames
        units, shift_mm = rest_face(head, camera.neutral_mm, sampled_mm)
        rest_mm = camera.neutral_mm - shift_mm
        held = {name: round(float(amount), 3) for name, amount in zip(head.expression_names, units) if amount >= 0.005}
    hand_frames = sum(int(np.asarray(covered[frames]).any(axis=1).sum()) for frames in frame_chunks(frame_count))
    take_settings = _take_settings(settings, frontend, camera, neutral_frames, neutral_method, held, neutral_hand,
                                   hand_frames)
    take_in_frame = partial(_observed_take, observed, video, frontend, settings, take_settings)
    layers = None
    if runner is not None:
        # The networks were trained on step 1's frame and read the perspective frame's faces badly
        # (a still, turning scan face wandered 3-4 mm instead of 0.5): they run in their own frame,
        # their events and detail layer are carried into the take's, and the micro layer is read
        # at the events from the take's own motion (the network's, in its frame, is not used).
        trained_take = take_in_frame(*_trained_layers(trained_frame, landmarks_px))
        # Events are judged on MediaPipe's own points: the standing-out test was chosen on their
        # jitter, and on the smoother fused points (ops/flow_fusion.py) it let through 34.5 events
        # a minute on franck.mp4's first 40 s instead of 4.5.
        judged_motion = DisplacementReader(partial(camera.faces_at, landmarks_px), camera.neutral_mm, frame_count)
        take_motion = DisplacementReader(partial(camera.faces_at, faces_px), camera.neutral_mm, frame_count)
        reread = partial(reread_stretches, video.path, observed["index"], points_px=faces_px, camera=camera,
                         on_stretch=reporter.stage("micro stretches"))
        layers = network_layers(trained_take, runner, take_motion, judged_motion, reread, reporter)
        del trained_take  # its macro layer (T, 478, 3): not needed past the network
    # The macro layer is the rest of the take's deformation, less the events as the take's points read
    # them: the total is what the points show, with the events as the flow over their stretches reads them.
    less = () if layers is None else (layers.taken_from_macro_mm, layers.detail_mm)
    macro_mm = displacement_mm(partial(camera.faces_at, faces_px), rest_mm, frame_count, less)
    steadied_where_covered(macro_mm, covered)  # MediaPipe's guesses under a hand jump from frame to frame
    within_seen_range(macro_mm, covered)  # ... and go where the face never goes: held to what it does
    take = take_in_frame(rest_mm, camera.poses, macro_mm, layers)
    for output in outputs:
        sweep_stale_partials(output)
    with replacing_together(outputs) as staged:  # the take and the sheet land together, or neither
        save_take(take, staged[0])
        if settings.debug_sheet is not None:
            write_contact_sheet(video.path, list(unstack_records(observed)), staged[1],
                                crop_size=settings.frontend.crop_size)
    seconds = time.monotonic() - started
    return ReconstructSummary(Path(take_path), frame_count, int(valid.sum()), seconds, frame_count / seconds,
                              frontend.hit, take.model_version, runner.provider if runner else None, len(take.events),
                              (int(neutral_frames[0]), int(neutral_frames[-1])), neutral_method, held, neutral_hand)
