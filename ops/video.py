"""Streaming video decode with OpenCV: one frame in memory at a time, whatever the clip length."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import MxrError


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    sha256: str
    fps: float  # nominal frames per second reported by the container
    frame_count: int  # container's count; decoding may yield fewer
    width: int  # px
    height: int  # px


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Content hash that identifies the source video independently of its name."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _open(path: Path) -> cv2.VideoCapture:
    if not path.exists():
        raise MxrError(f"video not found: {path}")
    if not path.is_file():
        raise MxrError(f"not a file: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise MxrError(f"cannot read {path}: not a video file OpenCV can decode")
    return capture


def probe_video(path: Path) -> VideoInfo:
    """Open the video, decode its first frame and describe it; MxrError if it is not a video."""
    path = Path(path)
    capture = _open(path)
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            raise MxrError(f"cannot read {path}: it has no decodable video frames")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        if not np.isfinite(fps) or fps <= 0:
            raise MxrError(f"cannot read {path}: the video reports no frame rate")
        return VideoInfo(
            path=path,
            sha256=file_sha256(path),
            fps=fps,
            frame_count=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            width=int(frame.shape[1]),
            height=int(frame.shape[0]),
        )
    finally:
        capture.release()


def iter_frames(path: Path, max_frames: int | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (frame index, presentation time in seconds, BGR uint8 frame (H, W, 3))."""
    capture = _open(Path(path))
    try:
        index = 0
        while max_frames is None or index < max_frames:
            ok, frame = capture.read()
            if not ok:
                return
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            yield index, float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0, frame
            index += 1
    finally:
        capture.release()


def read_frames_at(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """BGR frames at the given indices, decoded sequentially (exact on any codec)."""
    wanted = set(indices)
    found: dict[int, np.ndarray] = {}
    for index, _, frame in iter_frames(path, max_frames=max(indices) + 1 if indices else 0):
        if index in wanted:
            found[index] = frame
    return found
