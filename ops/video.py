"""Streaming video decode with OpenCV: one frame in memory at a time, whatever the clip length.

Times are the container's presentation timestamps (``CAP_PROP_POS_MSEC`` is the frame's PTS with
FFmpeg), so variable-frame-rate phone footage keeps its true timing; they are not index / fps.
Rotation metadata (phones filming in portrait) is applied, so frames come out upright, and
grayscale video comes out as 3-channel BGR like everything else.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import MxrError

DEFAULT_ANALYSIS_MAX_SIDE = 1280  # px; larger frames are downscaled for analysis
AUTO_DECODE_THREADS = 0  # FFmpeg picks (frame threads, one per core)
# Frames up to this many pixels decode on one thread (see ``decode_threads_for``).
SINGLE_THREAD_DECODE_MAX_PIXELS = 960 * 540
# Failed reads in a row after which the stream is taken to have ended; fewer are damage to skip.
MAX_UNDECODABLE_RUN = 64


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    sha256: str
    fps: float  # nominal frames per second reported by the container
    frame_count: int  # container's count; decoding may yield fewer
    width: int  # px, of the decoded (upright) frames
    height: int  # px
    rotation_deg: int = 0  # rotation metadata the decoder applied (0, 90, 180, 270)


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Content hash that identifies the source video independently of its name."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _open(path: Path, threads: int = AUTO_DECODE_THREADS) -> cv2.VideoCapture:
    if not path.exists():
        raise MxrError(f"video not found: {path}")
    if not path.is_file():
        raise MxrError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise MxrError(f"cannot read {path}: the file is empty (0 bytes)")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    if not capture.isOpened():
        capture.release()
        raise MxrError(f"cannot read {path}: not a video file OpenCV can decode "
                       "(an audio-only, truncated or corrupt file, or an unknown format)")
    # Explicit, whatever the OpenCV build's default: frames come out the way the camera meant them.
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return capture


def probe_video(path: Path) -> VideoInfo:
    """Open the video, decode its first frame and describe it; MxrError if it is not a video."""
    path = Path(path)
    capture = _open(path)
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            raise MxrError(f"cannot read {path}: it has no decodable video frames (zero-length or corrupt)")
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
            rotation_deg=int(capture.get(cv2.CAP_PROP_ORIENTATION_META)) % 360,
        )
    finally:
        capture.release()


def iter_frames(path: Path, max_frames: int | None = None, *, start_frame: int = 0, end_frame: int | None = None,
                threads: int = AUTO_DECODE_THREADS) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (source frame index, presentation time in s, BGR uint8 frame (H, W, 3)).

    Frames ``start_frame <= index < end_frame`` (end None: to the end), at most ``max_frames``
    of them. Frames before ``start_frame`` are decoded and dropped rather than seeked to: seeking
    lands on the wrong frame with many codecs, and frame indices must match the source exactly.
    ``threads``: FFmpeg's decode threads (``AUTO_DECODE_THREADS``: its own choice).

    Damage is skipped, not the end: a frame that does not decode is left out (its index is
    missing from what is yielded) and decoding goes on, up to ``MAX_UNDECODABLE_RUN`` failures in
    a row. FFmpeg's frame threads report failures before the frames around them, so the frames
    after a failure are placed by their presentation time, within the number of frames that failed.
    """
    if start_frame < 0 or (end_frame is not None and end_frame < start_frame):
        raise MxrError(f"bad frame range: start {start_frame}, end {end_frame}")
    capture = _open(Path(path), threads)
    try:
        for _ in range(start_frame):
            if not capture.grab():
                return
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        index, yielded, failed_in_a_row, unplaced = start_frame, 0, 0, 0
        first: tuple[int, float] | None = None  # (index, time s) of the first decoded frame
        while (max_frames is None or yielded < max_frames) and (end_frame is None or index < end_frame):
            ok, frame = capture.read()
            if not ok:
                failed_in_a_row += 1
                unplaced += 1
                if failed_in_a_row > MAX_UNDECODABLE_RUN:
                    return
                continue
            failed_in_a_row = 0
            timestamp_s = float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
            if first is None:
                first = (index, timestamp_s)
            elif unplaced and np.isfinite(fps) and fps > 0:
                by_time = first[0] + round((timestamp_s - first[1]) * fps)
                skipped = min(max(by_time - index, 0), unplaced)
                index, unplaced = index + skipped, unplaced - skipped
                if end_frame is not None and index >= end_frame:
                    return
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            yield index, timestamp_s, frame
            index += 1
            yielded += 1
    finally:
        capture.release()


def decode_threads_for(width: int, height: int) -> int:
    """FFmpeg decode threads for a pipeline whose other stages keep every core busy: one for
    small frames, where FFmpeg's frame threads only add CPU (WolfgangLanger, 640x360 H.264:
    0.50 ms CPU a frame on one thread, 0.62 on two, and still ~2,000 frames/s), FFmpeg's choice
    for larger ones, whose single-thread decode would outlast MediaPipe's ~2 ms a frame."""
    return 1 if width * height <= SINGLE_THREAD_DECODE_MAX_PIXELS else AUTO_DECODE_THREADS


def analysis_scale(width: int, height: int, max_side: int | None = DEFAULT_ANALYSIS_MAX_SIDE) -> float:
    """Factor (analysed px per source px, <= 1) that brings the longer side down to ``max_side``.

    Face tracking and flow gain nothing from more than ~1280 px (MediaPipe works on 192-256 px
    face crops; flow runs on a fixed-size face crop), while an 8K frame costs 20x the pixels.
    """
    longest = max(width, height)
    if max_side is None or longest <= max_side:
        return 1.0
    return max_side / longest


def downscale(frame: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, C) -> (round(H*scale), round(W*scale), C), area-averaged (no aliasing)."""
    if scale == 1.0:
        return frame
    height, width = frame.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def read_frames_at(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """BGR frames at the given indices, decoded sequentially (exact on any codec)."""
    wanted = set(indices)
    found: dict[int, np.ndarray] = {}
    for index, _, frame in iter_frames(path, max_frames=max(indices) + 1 if indices else 0):
        if index in wanted:
            found[index] = frame
    return found

