"""The take file: everything the Blender side needs from the engine, versioned, no pickles.

A take is an ``.npz`` readable with ``numpy.load(allow_pickle=False)``. Frame ``k`` of every
per-frame array is the ``k``-th decoded frame of the source. Canonical space is the performer's
face frame: 478 MediaPipe landmarks, millimetres, +X the subject's left, +Y up, +Z out of the
face, origin at the neutral face's landmark centroid. Missing faces are marked in ``valid`` and
their per-frame values are NaN: never invented.

Version 2 adds the front-end's observations (source frame numbers, analysis scale, a landmark
confidence, the stabilised crops' transforms and the optical flow at the landmarks). Version 1
files still load: those fields come back as "not observed" (NaN, False, frame k = source k).
"""
from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .atomic import replacing
from .errors import MxrError
from .npz import declared_arrays

TAKE_FORMAT = "mxr.take"
TAKE_VERSION = 2
LANDMARK_COUNT = 478
BASELINE_VERSION = "baseline-landmarks-1"  # model_version of the landmark-only reconstruction
# Bounds a take file must keep before anything is allocated for it (a small compressed file can
# declare arrays of many GB): ~1.9 hours at 30 fps, 16 minutes at 200 fps.
MAX_TAKE_FRAMES = 200_000
MAX_EVENTS = 100_000
MAX_TEXT_BYTES = 1 << 20  # paths, names, the settings' JSON
# A take's arrays take 1.1-1.8x its file's size in memory (the engine's takes, 2026-12-04); faceless
# frames compress further. One that declares more than this many times its file, beyond the floor,
# is a crafted or damaged file, not a take: a few kB of headers can declare 200,000 frames (5.8 GB).
MAX_EXPANSION = 64
EXPANSION_FLOOR_BYTES = 256 << 20
FPS_RANGE = (1.0, 1000.0)  # frames per second a take may declare
VFR_TOLERANCE_FRAMES = 0.5  # timestamps further than this from k / fps make a clip variable-rate
MAX_SOURCE_FRAME = 100_000_000  # a source frame number a take may name (a month at 30 fps)
WRITE_CHUNK_FRAMES = 256  # frames of a per-frame array compressed into the take at a time (~1.5 MB of a layer)


@dataclass
class MicroEvent:
    """One detected micro-expression (frames are take frame indices)."""

    onset_frame: int
    apex_frame: int
    offset_frame: int
    region: str
    peak_mm: float
    confidence: float


@dataclass
class Take:
    # source video identity
    source_path: str
    source_sha256: str
    fps: float  # nominal frames per second of the source
    frame_size: tuple[int, int]  # (width, height) px of the source video's frames
    timestamps_s: np.ndarray  # (T,) float64, presentation time of each frame
    valid: np.ndarray  # (T,) bool, a face was found
    # observations
    landmarks_px: np.ndarray  # (T, 478, 3) float32 image px (x right, y down, z depth in px); NaN if invalid
    # rigid head pose: landmarks_px ~ scale * R @ canonical + translation (in the image frame with y up)
    head_rotation: np.ndarray  # (T, 3, 3) float32, canonical -> camera
    head_translation_px: np.ndarray  # (T, 3) float32
    head_scale_px_per_mm: np.ndarray  # (T,) float32
    # reconstruction, canonical space (mm)
    neutral_mm: np.ndarray  # (478, 3) float32, the performer's neutral face
    macro_mm: np.ndarray  # (T, 478, 3) float32, slow/large expression displacement from neutral
    micro_mm: np.ndarray  # (T, 478, 3) float32, micro-expression displacement (0 if not separated)
    detail_mm: np.ndarray  # (T, 478, 3) float32, what the expression layers do not carry
    # front-end observations (version 2)
    frame_indices: np.ndarray  # (T,) int64, source frame number of each take frame
    analysis_scale: float  # analysed px per source px (< 1 when large frames were downscaled)
    landmark_confidence: np.ndarray  # (T,) float32 0..1, face detector score proxy; 0 if invalid
    crop_size_px: int  # side of the stabilised face crop
    crop_from_image: np.ndarray  # (T, 2, 3) float32 similarity, source px -> crop px; NaN if invalid
    flow_at_landmarks_px: np.ndarray  # (T, 478, 2) float32 crop px, frame t-1 -> t at t-1's landmarks
    flow_fb_error_px: np.ndarray  # (T, 478) float32 crop px, forward-backward disagreement
    flow_consistent: np.ndarray  # (T, 478) bool, the forward-backward check passed
    events: list[MicroEvent] = field(default_factory=list)
    camera: str = "weak_perspective"  # MediaPipe's landmark camera: orthographic x/y, relative z
    model_version: str = BASELINE_VERSION
    settings: dict = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return int(self.valid.shape[0])

    def deformation_mm(self) -> np.ndarray:
        """Total canonical displacement from neutral, macro + micro + detail: (T, 478, 3) mm."""
        return self.macro_mm + self.micro_mm + self.detail_mm

    def validate(self) -> None:
        if np.ndim(self.valid) != 1:
            raise MxrError(f"take field valid has shape {np.shape(self.valid)}, expected one flag a frame")
        count = self.frame_count
        expect = {
            "valid": (count,),
            "timestamps_s": (count,),
            "landmarks_px": (count, LANDMARK_COUNT, 3),
            "head_rotation": (count, 3, 3),
            "head_translation_px": (count, 3),
            "head_scale_px_per_mm": (count,),
            "neutral_mm": (LANDMARK_COUNT, 3),
            "macro_mm": (count, LANDMARK_COUNT, 3),
            "micro_mm": (count, LANDMARK_COUNT, 3),
            "detail_mm": (count, LANDMARK_COUNT, 3),
            "frame_indices": (count,),
            "landmark_confidence": (count,),
            "crop_from_image": (count, 2, 3),
            "flow_at_landmarks_px": (count, LANDMARK_COUNT, 2),
            "flow_fb_error_px": (count, LANDMARK_COUNT),
            "flow_consistent": (count, LANDMARK_COUNT),
        }
        for name, shape in expect.items():
            actual = np.shape(getattr(self, name))
            if actual != shape:
                raise MxrError(f"take field {name} has shape {actual}, expected {shape}")
            dtype = _dtype_of(getattr(self, name))
            if dtype.kind not in ("b" if name in _FLAG_FIELDS else "fiu"):
                raise MxrError(f"take field {name} holds {dtype} values, "
                               f"expected {'flags' if name in _FLAG_FIELDS else 'numbers'}")
        if not isinstance(self.settings, dict):
            raise MxrError(f"take settings are a {type(self.settings).__name__}, expected a mapping")
        if not (np.isfinite(self.fps) and FPS_RANGE[0] <= self.fps <= FPS_RANGE[1]):
            raise MxrError(f"take frame rate {self.fps} fps is outside {FPS_RANGE[0]:g}-{FPS_RANGE[1]:g} fps")
        indices = np.asarray(self.frame_indices)
        if count and not (indices.min() >= 0 and indices.max() <= MAX_SOURCE_FRAME and np.all(np.diff(indices) > 0)):
            raise MxrError(f"take frame indices must increase from 0 to at most {MAX_SOURCE_FRAME} (source frames): "
                           f"they run {indices.min()}..{indices.max()}")
        for event in self.events:
            if not 0 <= event.onset_frame <= event.apex_frame <= event.offset_frame < count:
                raise MxrError(f"micro event {event} lies outside the take's {count} frames or is out of order")


_EVENT_FIELDS = [f.name for f in fields(MicroEvent)]
_FLAG_FIELDS = ("valid", "flow_consistent")
# The per-frame fields and the dtype each is stored at.
_FRAME_DTYPES = {"timestamps_s": np.float64, "valid": bool, "landmarks_px": np.float32, "head_rotation": np.float32,
                 "head_translation_px": np.float32, "head_scale_px_per_mm": np.float32, "macro_mm": np.float32,
                 "micro_mm": np.float32, "detail_mm": np.float32, "frame_indices": np.int64,
                 "landmark_confidence": np.float32, "crop_from_image": np.float32, "flow_at_landmarks_px": np.float32,
                 "flow_fb_error_px": np.float32, "flow_consistent": bool}


def _dtype_of(values: object) -> np.dtype:
    """The dtype of an array, a ``spill.FrameFile`` (without reading it) or anything array-like."""
    return values.dtype if isinstance(getattr(values, "dtype", None), np.dtype) else np.asarray(values).dtype


def frame_seconds(take: Take) -> tuple[np.ndarray, list[str]]:
    """(T,) seconds of each take frame since the first, from its timestamps when they are usable
    (finite, increasing), else from its nominal rate; and warnings saying which, and whether the
    clip's rate varies."""
    return timestamp_seconds(take.timestamps_s, take.fps)


def timestamp_seconds(timestamps_s: np.ndarray, fps: float) -> tuple[np.ndarray, list[str]]:
    """``frame_seconds`` of frames presented at ``timestamps_s`` (T,) from a clip of nominal ``fps``."""
    stamps = np.asarray(timestamps_s, np.float64)
    nominal = np.arange(len(stamps)) / fps  # (T,) s
    if not (np.all(np.isfinite(stamps)) and np.all(np.diff(stamps) > 0)):
        return nominal, [f"the take's frame times are not usable: frames placed at a constant {fps:g} fps"]
    seconds = stamps - stamps[0]
    drift = float(np.max(np.abs(seconds - nominal))) if len(stamps) else 0.0
    if drift * fps > VFR_TOLERANCE_FRAMES:
        return seconds, [f"variable frame rate: each frame is placed at its own time (up to {drift:.2f} s from "
                         f"a constant {fps:g} fps)"]
    return seconds, []


def analysis_clock(take: Take) -> tuple[np.ndarray, float]:
    """The clock the engine reads motion by: (T,) seconds of each frame since the first, and the
    frames per second that per-frame motion and durations counted in frames are read at. A
    constant-rate take keeps its nominal rate exactly; a variable-rate one (``frame_seconds``) has
    its frames' own times and their mean rate, so a micro-expression's speed and length come out
    in real time, not at a rate the container only claims."""
    seconds, _ = frame_seconds(take)
    nominal = np.arange(take.frame_count) / take.fps
    if len(seconds) < 2 or np.max(np.abs(seconds - nominal)) * take.fps <= VFR_TOLERANCE_FRAMES:
        return nominal, float(take.fps)
    return seconds, float((len(seconds) - 1) / seconds[-1])


def save_take(take: Take, path: Path) -> None:
    """Write atomically: a temp file in the same folder, then rename over ``path``. The per-frame
    arrays are streamed into the archive a chunk of frames at a time, each chunk converted to its
    stored dtype: a long take's layers (on disk while the engine runs, ``spill.FrameFile``) are
    never held whole, nor copied."""
    take.validate()
    path = Path(path)
    arrays = {
        "format": np.array(TAKE_FORMAT),
        "version": np.array(TAKE_VERSION),
        "source_path": np.array(take.source_path),
        "source_sha256": np.array(take.source_sha256),
        "fps": np.array(take.fps, dtype=np.float64),
        "frame_size": np.array(take.frame_size, dtype=np.int32),
        "neutral_mm": np.asarray(take.neutral_mm, np.float32),
        "analysis_scale": np.array(take.analysis_scale, dtype=np.float64),
        "crop_size_px": np.array(take.crop_size_px, dtype=np.int32),
        "camera": np.array(take.camera),
        "model_version": np.array(take.model_version),
        "settings_json": np.array(json.dumps(take.settings, sort_keys=True)),
    }
    for name in _EVENT_FIELDS:
        values = [getattr(event, name) for event in take.events]
        dtype = str if name == "region" else (np.float64 if name in ("peak_mm", "confidence") else np.int32)
        arrays[f"event_{name}"] = np.array(values, dtype=dtype)
    with replacing(path) as stream, zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)
        for name, dtype in _FRAME_DTYPES.items():
            _write_frames(archive, name, getattr(take, name), np.dtype(dtype))


def _write_frames(archive: zipfile.ZipFile, name: str, frames: np.ndarray, dtype: np.dtype) -> None:
    """A per-frame array (T, ...) (an array or a ``spill.FrameFile``) into ``archive`` as the npy
    member ``name`` at ``dtype``, ``WRITE_CHUNK_FRAMES`` frames at a time."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(np.shape(frames))}
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, header)
        for start in range(0, len(frames), WRITE_CHUNK_FRAMES):
            member.write(np.ascontiguousarray(frames[start:start + WRITE_CHUNK_FRAMES], dtype).tobytes())


def load_take(path: Path) -> Take:
    path = Path(path)
    if not path.is_file():
        raise MxrError(f"take file not found: {path}")
    try:
        _check_declared_sizes(path)
        with np.load(path, allow_pickle=False) as data:
            take = _take_from_arrays(path, data)
    except (OSError, ValueError, EOFError, KeyError, IndexError, TypeError, NotImplementedError, zipfile.BadZipFile,
            zlib.error) as error:  # what damaged or crafted arrays raise while they are decoded and read
        raise MxrError(f"{path} is not a readable take file ({error})") from error
    take.validate()
    return take


def _check_declared_sizes(path: Path) -> None:
    """Refuse a take whose arrays declare more than a take can hold, or far more than its file
    holds (``MAX_EXPANSION``), from their headers alone."""
    total = 0  # bytes the arrays declare
    for name, (shape, dtype) in declared_arrays(path).items():
        count = int(np.prod(shape, dtype=np.float64)) if shape else 1
        total += count * dtype.itemsize
        if dtype.kind in "US" and dtype.itemsize * count > MAX_TEXT_BYTES:
            raise MxrError(f"{path}: {name} declares {dtype.itemsize * count} bytes of text; a take has at most {MAX_TEXT_BYTES}")
        if shape and shape[0] > (MAX_EVENTS if name.startswith("event_") else MAX_TAKE_FRAMES):
            raise MxrError(f"{path}: {name} declares {shape[0]} rows; MXR reads takes of up to "
                           f"{MAX_TAKE_FRAMES} frames and {MAX_EVENTS} events")
        if count > MAX_TAKE_FRAMES * LANDMARK_COUNT * 3:
            raise MxrError(f"{path}: {name} declares {count} values, more than a take of {MAX_TAKE_FRAMES} frames holds")
    size = path.stat().st_size
    if total > max(MAX_EXPANSION * size, EXPANSION_FLOOR_BYTES):
        raise MxrError(f"{path} declares {total / 2**20:.0f} MB of arrays in a {size / 2**20:.1f} MB file, more than "
                       f"{MAX_EXPANSION} times as much; a take expands less than twice (a damaged or crafted file)")


def _scalar(data: np.lib.npyio.NpzFile, name: str) -> np.ndarray:
    """The 0-d array a take stores one number in (``save_take`` writes nothing else): an array of
    any other shape, even of one element, is refused rather than converted."""
    value = data[name]
    if value.shape != ():
        raise MxrError(f"take field {name} holds an array of shape {value.shape}, expected one number")
    return value


def _take_from_arrays(path: Path, data: np.lib.npyio.NpzFile) -> Take:
    if "format" not in data.files or str(data["format"]) != TAKE_FORMAT:
        raise MxrError(f"{path} is not an MXR take file")
    version = int(_scalar(data, "version"))
    if version > TAKE_VERSION:
        raise MxrError(f"{path} is take version {version}; this MXR reads up to {TAKE_VERSION}")
    observations = _front_end_fields(data) if version >= 2 else unobserved_front_end(len(data["valid"]))
    count = len(data["event_onset_frame"])
    events = [
        MicroEvent(**{name: data[f"event_{name}"][i].item() for name in _EVENT_FIELDS})
        for i in range(count)
    ]
    return Take(
        source_path=str(data["source_path"]),
        source_sha256=str(data["source_sha256"]),
        fps=float(_scalar(data, "fps")),
        frame_size=tuple(int(v) for v in data["frame_size"]),
        timestamps_s=data["timestamps_s"],
        valid=data["valid"],
        landmarks_px=data["landmarks_px"],
        head_rotation=data["head_rotation"],
        head_translation_px=data["head_translation_px"],
        head_scale_px_per_mm=data["head_scale_px_per_mm"],
        neutral_mm=data["neutral_mm"],
        macro_mm=data["macro_mm"],
        micro_mm=data["micro_mm"],
        detail_mm=data["detail_mm"],
        **observations,
        events=events,
        camera=str(data["camera"]),
        model_version=str(data["model_version"]),
        settings=json.loads(str(data["settings_json"])),
    )


def _front_end_fields(data: np.lib.npyio.NpzFile) -> dict:
    return {
        "frame_indices": data["frame_indices"],
        "analysis_scale": float(_scalar(data, "analysis_scale")),
        "landmark_confidence": data["landmark_confidence"],
        "crop_size_px": int(_scalar(data, "crop_size_px")),
        "crop_from_image": data["crop_from_image"],
        "flow_at_landmarks_px": data["flow_at_landmarks_px"],
        "flow_fb_error_px": data["flow_fb_error_px"],
        "flow_consistent": data["flow_consistent"],
    }


def unobserved_front_end(frame_count: int) -> dict:
    """Version 1 takes had no front-end observations: say so with NaN / False, invent nothing."""
    return {
        "frame_indices": np.arange(frame_count, dtype=np.int64),
        "analysis_scale": 1.0,
        "landmark_confidence": np.full(frame_count, np.nan, np.float32),
        "crop_size_px": 0,
        "crop_from_image": np.full((frame_count, 2, 3), np.nan, np.float32),
        "flow_at_landmarks_px": np.full((frame_count, LANDMARK_COUNT, 2), np.nan, np.float32),
        "flow_fb_error_px": np.full((frame_count, LANDMARK_COUNT), np.nan, np.float32),
        "flow_consistent": np.zeros((frame_count, LANDMARK_COUNT), bool),
    }
