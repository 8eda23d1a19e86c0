"""Per-frame arrays kept on disk while the engine runs, so that its memory stays flat in the clip's
length (issue #19 item 11: <= 600 MB at any length).

Inside ``spilling_into(folder)`` (one reconstruction), ``frame_array`` and ``frame_file`` make the
arrays of at least ``SPILL_ROW_BYTES`` a frame (a face's 478 points and their flow) as
``FrameFile``s: an unnamed temporary file in ``folder``, which the system removes when it is closed
or the process dies, so a failed run leaves nothing behind. They are read and written a slice of
frames at a time with plain file reads and writes: the page cache keeps what was written, but a
process's resident set does not count it, as it would count the touched pages of a memory map.
Outside it they are ordinary arrays, so code that works on both touches frames only through
``array[frames]`` (a slice, an index array or a mask of frames, then any index of a frame's values).
"""
from __future__ import annotations

import tempfile
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

SPILL_ROW_BYTES = 256  # a frame's bytes from which an array lives on disk: (T, 478, ...) yes, poses (72) no
LayerReader = Callable[[slice], np.ndarray]  # frames -> their per-frame arrays, e.g. (F, 478, 3) px or mm
CHUNK_FRAMES = 256  # frames a whole-take read or write goes through at a time (~1.5 MB of (478, 3) float32)
_FOLDER: ContextVar[Path | None] = ContextVar("mxr_spill_folder", default=None)


@contextmanager
def spilling_into(folder: Path) -> Iterator[None]:
    """Per-frame arrays made in this block (``frame_array``, ``frame_file``) live in ``folder``."""
    token = _FOLDER.set(Path(folder))
    try:
        yield
    finally:
        _FOLDER.reset(token)


def _row_bytes(row_shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def frame_file(row_shape: tuple[int, ...], dtype: np.dtype) -> FrameFile | None:
    """An empty ``FrameFile`` of rows ``row_shape`` to ``append`` to, or None where such rows stay in
    memory (no ``spilling_into`` block, or fewer than ``SPILL_ROW_BYTES`` a frame)."""
    folder = _FOLDER.get()
    if folder is None or _row_bytes(row_shape, dtype) < SPILL_ROW_BYTES:
        return None
    return FrameFile((0,) + tuple(row_shape), dtype, folder)


def frame_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | FrameFile:
    """A per-frame array of zeros, frames first: a ``FrameFile`` where ``frame_file`` would make one."""
    if frame_file(tuple(shape[1:]), dtype) is None:
        return np.zeros(shape, dtype)
    return FrameFile(tuple(shape), dtype, _FOLDER.get())


class FrameFile:
    """A (T, ...) array in an unnamed temporary file, zeros until written; ``len``, ``shape``,
    ``dtype``, ``ndim``; ``array[frames]`` reads and ``array[frames] = values`` writes (``frames``
    a slice, an index or index array, or a (T,) mask; part of each frame over a slice:
    ``array[a:b, block] = values``); ``append`` adds frames at the end."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, folder: Path) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self._row_bytes = _row_bytes(self.shape[1:], self.dtype)
        self._file = tempfile.TemporaryFile(dir=folder)
        self._file.truncate(self.shape[0] * self._row_bytes)
        self._lock = threading.Lock()  # a seek and its read or write go together

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        rows = self._read(0, len(self))
        return rows if dtype is None else rows.astype(dtype)

    def append(self, rows: np.ndarray) -> None:
        """Add ``rows`` (n, ...) after the last frame."""
        start = len(self)
        self.shape = (start + len(rows),) + self.shape[1:]
        self._write(start, rows)

    def __getitem__(self, key: object) -> np.ndarray:
        frames, rest = self._split(key)
        if isinstance(frames, slice):
            start, stop, step = frames.indices(len(self))
            if step != 1:
                return self[(np.arange(start, stop, step),) + rest]
            if not rest or stop - start <= CHUNK_FRAMES:
                rows = self._read(start, max(stop, start))
                return rows[(slice(None),) + rest] if rest else rows
            return np.concatenate([self._read(first, min(first + CHUNK_FRAMES, stop))[(slice(None),) + rest]
                                   for first in range(start, stop, CHUNK_FRAMES)])
        indices = self._indices(frames)
        if indices.ndim == 0:
            row = self._read(int(indices), int(indices) + 1)[0]
            return row[rest] if rest else row
        if any(isinstance(part, (np.ndarray, list)) for part in rest):
            raise TypeError("a FrameFile is indexed by one index array at most")
        rows = self._gather(indices)
        return rows[(slice(None),) * indices.ndim + rest] if rest else rows

    def __setitem__(self, key: object, values: object) -> None:
        frames, rest = self._split(key)
        if rest:  # part of each frame: read, change and write back a chunk of frames at a time
            if not (isinstance(frames, slice) and frames.indices(len(self))[2] == 1):
                raise TypeError("a FrameFile is written in part only over a slice of frames")
            start, stop, _ = frames.indices(len(self))
            values = np.asarray(values)
            for first in range(start, stop, CHUNK_FRAMES):
                rows = self._read(first, min(first + CHUNK_FRAMES, stop))
                rows[(slice(None),) + rest] = values[first - start:first - start + len(rows)] if values.ndim else values
                self._write(first, rows)
            return
        if isinstance(frames, slice) and frames.indices(len(self))[2] == 1:
            start, stop, _ = frames.indices(len(self))
            values = np.broadcast_to(np.asarray(values, self.dtype), (max(stop - start, 0),) + self.shape[1:])
            for first in range(start, stop, CHUNK_FRAMES):
                self._write(first, values[first - start:first - start + CHUNK_FRAMES])
            return
        indices = self._indices(np.arange(len(self))[frames] if isinstance(frames, slice) else frames).reshape(-1)
        values = np.broadcast_to(np.asarray(values, self.dtype), (len(indices),) + self.shape[1:])
        for block in np.unique(indices // CHUNK_FRAMES):  # read, change and write back a chunk at a time
            chosen = np.flatnonzero(indices // CHUNK_FRAMES == block)
            first, stop = int(indices[chosen].min()), int(indices[chosen].max()) + 1
            rows = self._read(first, stop)
            rows[indices[chosen] - first] = values[chosen]
            self._write(first, rows)

    def _split(self, key: object) -> tuple[object, tuple]:
        """``key`` -> (its frames, the index of each frame's values)."""
        key = key if isinstance(key, tuple) else (key,)
        if key and key[0] is Ellipsis:
            key = (slice(None),) * (self.ndim - len(key) + 1) + key[1:]
        return (key[0], key[1:]) if key else (slice(None), ())

    def _indices(self, frames: object) -> np.ndarray:
        """Frame indices (any shape, non-negative) of an index, index array or (T,) mask."""
        indices = np.asarray(frames)
        if indices.dtype == bool:
            if indices.shape != (len(self),):
                raise IndexError(f"a mask of {indices.shape} frames for a FrameFile of {len(self)}")
            return np.flatnonzero(indices)
        if indices.dtype.kind not in "iu":
            raise IndexError(f"frames indexed by {indices.dtype} values")
        indices = np.where(indices < 0, indices + len(self), indices).astype(np.int64)
        if indices.size and not (0 <= indices.min() and indices.max() < len(self)):
            raise IndexError(f"frame index out of range for a FrameFile of {len(self)} frames")
        return indices

    def _gather(self, indices: np.ndarray) -> np.ndarray:
        """The rows of frames ``indices`` (any shape), read a chunk of frames at a time."""
        wanted, inverse = np.unique(indices, return_inverse=True)
        rows = np.empty((len(wanted),) + self.shape[1:], self.dtype)
        for block in np.unique(wanted // CHUNK_FRAMES):
            chosen = np.flatnonzero(wanted // CHUNK_FRAMES == block)
            first, stop = int(wanted[chosen[0]]), int(wanted[chosen[-1]]) + 1
            rows[chosen] = self._read(first, stop)[wanted[chosen] - first]
        return rows[inverse.reshape(indices.shape)]

    def _read(self, start: int, stop: int) -> np.ndarray:
        rows = np.empty((stop - start,) + self.shape[1:], self.dtype)
        with self._lock:
            self._file.seek(start * self._row_bytes)
            if self._file.readinto(memoryview(rows.reshape(-1)).cast("B")) != rows.nbytes:
                raise OSError("a spilled frame file was cut short")
        return rows

    def _write(self, start: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, self.dtype)
        with self._lock:
            self._file.seek(start * self._row_bytes)
            self._file.write(memoryview(rows.reshape(-1)).cast("B"))


@dataclass(frozen=True)
class FrameSum:
    """The frame-by-frame sum of per-frame arrays of one shape (``FrameFile``s or arrays), read a
    slice of frames at a time (``len``, ``shape``, ``sum[frames]``) and never held whole."""

    parts: tuple

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.parts[0].shape)

    def __len__(self) -> int:
        return len(self.parts[0])

    def __getitem__(self, frames: object) -> np.ndarray:
        total = self.parts[0][frames]
        for part in self.parts[1:]:
            total = total + part[frames]
        return total
