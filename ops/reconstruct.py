"""The reconstruction pipeline: video -> front-end (landmarks, crops, flow) -> canonical
deformation -> network -> take file.

The baseline (``baseline-landmarks-1``) is what MediaPipe's landmarks show after rigid alignment,
all of it in the macro layer. By default the micro-expression network (models/network) then
reads the take's landmarks and flow and replaces the layers with macro / micro / detail and the
detected micro events; ``use_network=False`` keeps the baseline.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from .atomic import replacing_together, sweep_stale_partials
from .canonical import CanonicalFaces, canonicalize
from .errors import MxrError
from .frontend import FrontendSettings, stack_records
from .frontend_cache import CachedFrontEnd
from .frontend_debug import write_contact_sheet
from .neutral import find_neutral_frames, occluded_frames
from .perspective import PerspectiveFaces, calm_frames, perspective_faces
from ..models.network.runner import NetworkRunner, apply_network
from ..models.retarget import displacement_on
from ..models.similarity import fit_similarities
from .progress import ProgressReporter
from .skin_track import (SkinTrackSettings, SourceFrames, choose_references, fall_back, rest_references,
                         track_with_references)
from .take import BASELINE_VERSION, Take, frame_seconds, save_take


@dataclass
class ReconstructSettings:
    frontend: FrontendSettings = field(default_factory=FrontendSettings)
    # The neutral face: found in the take (ops/neutral.py) unless one of these names it.
    neutral_frames: tuple[int, int] | None = None  # first and last take frame showing it
    neutral_seconds: float | None = None  # the first valid face frames in this span show it
    cache_dir: Path | None = None  # front-end cache; None: MXR_CACHE_DIR or ~/.cache/mxr/frontend
    debug_sheet: Path | None = None  # also write the front-end's contact sheet (PNG) here
    use_network: bool = True  # False: the landmark-only baseline (no micro layer, no events)
    # Read the face from points glued to the skin by optical flow against rest references
    # (ops/skin_track.py) instead of MediaPipe's, which slide over the skin. Experimental, off: on the
    # scan clips it takes the engine's error from 2.97x to 1.28x a still take (dev), but on real
    # footage it loses large motion (labelled dev frames: closed eyes 0.85 -> 0.00, smiles 0.67 ->
    # 0.07, open jaws 0.35 -> 0.03; docs/OPEN_LOOP.md).
    skin_track: bool = False


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
    def same(a: Path, b: Path) -> bool:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # hard links and symlinks too
        return a.resolve() == b.resolve()

    for number, output in enumerate(outputs):
        if same(output, Path(video_path)):
            raise MxrError(f"refusing to write {output}: it is the input video")
        for other in outputs[number + 1:]:
            if same(output, other):
                raise MxrError(f"refusing to write {output} twice: the take and the debug sheet must be different files")


def _landmark_take(canonical: PerspectiveFaces, observed: dict, valid: np.ndarray, video, frontend,
                   settings: ReconstructSettings, neutral_frames: np.ndarray, neutral_method: str) -> Take:
    """The landmark-only take (everything in the macro layer) in ``canonical``'s frame."""
    macro_mm = canonical.faces_mm - canonical.neutral_mm  # (T, 478, 3), NaN where invalid
    zeros = np.where(np.isfinite(macro_mm), 0.0, np.nan)
    return Take(
        source_path=str(video.path.resolve()),
        source_sha256=video.sha256,
        fps=video.fps,
        frame_size=(video.width, video.height),
        timestamps_s=observed["timestamp_s"],
        valid=valid,
        landmarks_px=observed["landmarks_px"],
        head_rotation=canonical.poses.rotation,
        head_translation_px=canonical.poses.translation,
        head_scale_px_per_mm=canonical.poses.scale,
        neutral_mm=canonical.neutral_mm,
        macro_mm=macro_mm,
        micro_mm=zeros,
        detail_mm=zeros,
        frame_indices=observed["index"],
        analysis_scale=frontend.scale,
        landmark_confidence=observed["confidence"],
        crop_size_px=settings.frontend.crop_size,
        crop_from_image=observed["crop_from_image"],
        flow_at_landmarks_px=observed["flow_at_landmarks"],
        flow_fb_error_px=observed["flow_fb_error_px"],
        flow_consistent=observed["flow_consistent"],
        model_version=BASELINE_VERSION,
        settings={"frontend": settings.frontend.as_dict(), "neutral_method": neutral_method,
                  "neutral_seconds": settings.neutral_seconds,
                  "neutral_frames": [int(neutral_frames[0]), int(neutral_frames[-1])],
                  "skin_track": settings.skin_track,
                  "camera": "perspective", "camera_focal_px": canonical.focal_px,
                  "camera_reprojection_px": round(canonical.reprojection_px, 3),
                  "frontend_cache_key": frontend.key, "mxr_version": __version__},
    )


def skin_tracked_px(video_path: Path, observed: dict, valid: np.ndarray, faces: PerspectiveFaces,
                    neutral_frames: np.ndarray, on_frame: Callable[[int, int], None]) -> np.ndarray:
    """The landmarks as skin points tracked by flow (``skin_track.track_with_references``):
    (T, 478, 3) source px like MediaPipe's (depth 0), MediaPipe's own where the flow saw nothing.

    The mesh is the neutral posed by ``faces``' perspective poses; the references are taken from
    the calmest quarter of the frames and the neutral frames (the calm faces the pose solve reads
    its depth from), the primary the neutral frame nearest a frontal view."""
    landmarks_px = observed["landmarks_px"][..., :2].astype(np.float64)  # (T, 478, 2) continuous px
    rotations = faces.camera_rotations  # (T, 3, 3)
    candidates, primary = rest_references(calm_frames(faces.faces_mm, valid), neutral_frames, rotations)
    track = SkinTrackSettings()
    references = choose_references(rotations, candidates, primary, np.radians(track.reference_spacing_deg))
    frames = SourceFrames(video_path, observed["index"], references, on_frame)
    to_index = 0.5  # continuous px -> pixel-centre (array index) px, as the flow reads images
    tracked = track_with_references(frames, faces.project(faces.neutral_mm) - to_index, rotations, candidates,
                                    primary, track) + to_index
    tracked = fall_back(tracked, landmarks_px)
    return np.concatenate([tracked, np.zeros(tracked.shape[:2] + (1,))], axis=2)


def in_trained_frame(take: Take, frame: CanonicalFaces | None = None) -> Take:
    """A landmark-only take moved into the frame the networks were trained on (``canonicalize``'s
    similarity frame, same neutral frames): what ``apply_network`` must be given. ``frame``: that
    canonicalisation when the caller already has it."""
    if frame is None:
        first, last = take.settings["neutral_frames"]
        frame = canonicalize(take.landmarks_px, take.valid, np.arange(first, last + 1))
    macro_mm = (frame.faces_mm - frame.neutral_mm).astype(np.float32)  # (T, 478, 3)
    zeros = np.where(np.isfinite(macro_mm), 0.0, np.nan).astype(np.float32)
    return dataclasses.replace(take, neutral_mm=frame.neutral_mm.astype(np.float32), macro_mm=macro_mm,
                               micro_mm=zeros, detail_mm=zeros, head_rotation=frame.poses.rotation,
                               head_translation_px=frame.poses.translation, head_scale_px_per_mm=frame.poses.scale)


def carry_network_layers(network_take: Take, take: Take) -> Take:
    """``take`` (landmark-only, its own canonical frame) with the micro and detail layers, events,
    model and network settings of ``network_take`` (the same landmarks in another canonical frame):
    the layers are turned and scaled by the similarity between the two neutrals; the macro layer
    is the rest of ``take``'s deformation, so the total is ``take``'s."""
    alignment = fit_similarities(network_take.neutral_mm.astype(np.float64), take.neutral_mm.astype(np.float64)[None])
    micro_mm, detail_mm = (displacement_on(alignment, np.asarray(layer, np.float64)).astype(np.float32)
                           for layer in (network_take.micro_mm, network_take.detail_mm))
    macro_mm = (take.deformation_mm() - micro_mm - detail_mm).astype(np.float32)
    settings = {**take.settings, "network": network_take.settings["network"]}
    return dataclasses.replace(take, macro_mm=macro_mm, micro_mm=micro_mm, detail_mm=detail_mm,
                               events=network_take.events, model_version=network_take.model_version, settings=settings)


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
    provisional = canonicalize(observed["landmarks_px"], valid, opening)
    occluded = occluded_frames(valid, observed["confidence"], observed["flow_consistent"], observed["flow_fb_error_px"])
    return find_neutral_frames(provisional.faces_mm, valid, fps, occluded), "found"


def reconstruct(video_path: Path, take_path: Path, settings: ReconstructSettings | None = None,
                reporter: ProgressReporter | None = None) -> ReconstructSummary:
    settings = settings or ReconstructSettings()
    reporter = reporter or ProgressReporter()
    started = time.monotonic()
    outputs = [Path(output) for output in (take_path, settings.debug_sheet) if output is not None]
    refuse_overwriting_inputs(Path(video_path), outputs)
    for output in outputs:
        check_writable(output)
    runner = NetworkRunner() if settings.use_network else None  # a broken model fails before the video work
    frontend = CachedFrontEnd(Path(video_path), settings.frontend, reporter, settings.cache_dir)
    records = list(frontend.records())
    observed = stack_records(records)  # per-frame arrays (T, ...)
    video = frontend.video
    valid = observed["valid"]
    frame_count = len(valid)
    if not valid.any():
        raise MxrError(f"no face found in any of the {frame_count} frames of {video.path}")

    neutral_frames, neutral_method = choose_neutral_frames(observed, valid, video.fps, settings)
    trained_frame = canonicalize(observed["landmarks_px"], valid, neutral_frames)  # step 1: MediaPipe's mesh
    # The take's frame: the pose from the image through a pinhole camera (ops/perspective.py).
    canonical = perspective_faces(observed["landmarks_px"], valid, neutral_frames, trained_frame.neutral_mm,
                                  trained_frame.faces_mm, (video.width, video.height), reporter.stage("pose"))
    if settings.skin_track:  # the same pose solve and reading, on points glued to the skin
        tracked_px = skin_tracked_px(video.path, observed, valid, canonical, neutral_frames, reporter.stage("skin"))
        canonical = perspective_faces(tracked_px, valid, neutral_frames, trained_frame.neutral_mm,
                                      trained_frame.faces_mm, (video.width, video.height), reporter.stage("pose"))
    take = _landmark_take(canonical, observed, valid, video, frontend, settings, neutral_frames, neutral_method)
    for message in frame_seconds(take)[1]:  # a variable rate is read by the frames' own times (take.analysis_clock)
        reporter.warning(message)
    provider = None
    if runner is not None:
        # The networks were trained on step 1's frame and read the perspective frame's faces badly
        # (a still, turning scan face wandered 3-4 mm instead of 0.5): they run in their own frame,
        # and their micro and detail layers and events are carried into the take's.
        network_take = apply_network(in_trained_frame(take, trained_frame), runner, reporter)
        take = carry_network_layers(network_take, take)
        provider = runner.provider
    for output in outputs:
        sweep_stale_partials(output)
    with replacing_together(outputs) as staged:  # the take and the sheet land together, or neither
        save_take(take, staged[0])
        if settings.debug_sheet is not None:
            write_contact_sheet(video.path, records, staged[1], crop_size=settings.frontend.crop_size)
    seconds = time.monotonic() - started
    return ReconstructSummary(Path(take_path), frame_count, int(valid.sum()), seconds,
                              frame_count / seconds, frontend.hit, take.model_version, provider, len(take.events))
