"""The reconstruction pipeline: video -> landmarks -> canonical deformation -> take file.

Baseline (``baseline-landmarks-1``): the deformation is what MediaPipe's landmarks show after
rigid alignment, all of it in the macro layer. Later models split macro / micro / detail.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import __version__
from .canonical import canonicalize
from .errors import MxrError
from .landmarks import LANDMARK_COUNT, FaceTracker
from .progress import ProgressReporter
from .take import Take, save_take
from .video import iter_frames, probe_video


@dataclass
class ReconstructSettings:
    neutral_seconds: float = 0.5  # the first valid face frames in this span define the neutral
    max_frames: int | None = None


@dataclass
class ReconstructSummary:
    take_path: Path
    frames: int
    faces_found: int
    seconds: float
    frames_per_second: float


def track_landmarks(video_path: Path, frame_count_hint: int, settings: ReconstructSettings,
                    reporter: ProgressReporter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stream the video through FaceMesh: timestamps (T,) s, landmarks (T, 478, 3) px, valid (T,)."""
    timestamps: list[float] = []
    landmarks: list[np.ndarray] = []
    missing = np.full((LANDMARK_COUNT, 3), np.nan, dtype=np.float32)
    expected = frame_count_hint if settings.max_frames is None else min(frame_count_hint, settings.max_frames)
    with FaceTracker() as tracker:
        for index, timestamp_s, frame_bgr in iter_frames(video_path, settings.max_frames):
            found = tracker.track(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
            timestamps.append(timestamp_s)
            landmarks.append(missing if found is None else found)
            reporter.progress("landmarks", index + 1, max(expected, index + 1))
        if tracker.several_faces_seen:
            reporter.warning("several faces in the video: the largest one was tracked in each frame")
    landmarks_px = np.stack(landmarks) if landmarks else np.zeros((0, LANDMARK_COUNT, 3), np.float32)
    valid = np.all(np.isfinite(landmarks_px), axis=(1, 2))
    return np.asarray(timestamps, dtype=np.float64), landmarks_px, valid


def reconstruct(video_path: Path, take_path: Path, settings: ReconstructSettings | None = None,
                reporter: ProgressReporter | None = None) -> ReconstructSummary:
    settings = settings or ReconstructSettings()
    reporter = reporter or ProgressReporter()
    started = time.monotonic()
    video = probe_video(Path(video_path))
    timestamps_s, landmarks_px, valid = track_landmarks(video.path, video.frame_count, settings, reporter)
    frame_count = len(valid)
    if not valid.any():
        raise MxrError(f"no face found in any of the {frame_count} frames of {video.path}")
    lost = frame_count - int(valid.sum())
    if lost:
        reporter.warning(f"no face in {lost} of {frame_count} frames: they are marked invalid in the take")

    first_valid = int(np.argmax(valid))
    neutral_span = max(1, int(round(settings.neutral_seconds * video.fps)))
    neutral_frames = np.arange(first_valid, min(first_valid + neutral_span, frame_count))
    canonical = canonicalize(landmarks_px, valid, neutral_frames)
    macro_mm = canonical.faces_mm - canonical.neutral_mm  # (T, 478, 3), NaN where invalid
    zeros = np.where(np.isfinite(macro_mm), 0.0, np.nan)

    take = Take(
        source_path=str(video.path.resolve()),
        source_sha256=video.sha256,
        fps=video.fps,
        frame_size=(video.width, video.height),
        timestamps_s=timestamps_s,
        valid=valid,
        landmarks_px=landmarks_px,
        head_rotation=canonical.poses.rotation,
        head_translation_px=canonical.poses.translation,
        head_scale_px_per_mm=canonical.poses.scale,
        neutral_mm=canonical.neutral_mm,
        macro_mm=macro_mm,
        micro_mm=zeros,
        detail_mm=zeros,
        model_version="baseline-landmarks-1",
        settings={"neutral_seconds": settings.neutral_seconds, "max_frames": settings.max_frames,
                  "neutral_frames": [int(neutral_frames[0]), int(neutral_frames[-1])],
                  "mxr_version": __version__},
    )
    save_take(take, Path(take_path))
    seconds = time.monotonic() - started
    return ReconstructSummary(Path(take_path), frame_count, int(valid.sum()), seconds, frame_count / seconds)
