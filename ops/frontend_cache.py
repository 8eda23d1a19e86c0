"""Front-end results on disk, keyed by the video's content and the settings, so a re-run skips
decode, tracking and flow.

An entry is a folder ``<cache dir>/<key>/`` holding ``manifest.json`` and chunks of
``CHUNK_FRAMES`` frames as ``.npz`` (no pickles), so writing and reading stay streaming: memory does
not grow with the clip. The key is the sha256 of {format version, video sha256, settings, the
flow's parameters} as sorted JSON. A run writes into ``<key>.partial-*`` and renames the
folder into place only once every frame is in; a cancelled or failed run deletes its partial
folder, and a crash leaves only a ``.partial`` folder, which is never read and is swept later.
The manifest lists each chunk's sha256: an entry that does not match it, or whose manifest or
chunks are malformed (shapes, kinds, unreadable members, values the front-end never gives), is
deleted and rebuilt.

The cache is an optimisation, never a requirement: a cache folder that cannot be created or
written (read-only, full) costs a warning and the run goes on without storing. The video is hashed
again once it has been read: if it changed meanwhile, the run fails and nothing is stored, so an
entry always holds the front-end of the content its key names.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import MxrError
from .flow import flow_parameters
from .frontend import RECORD_SHAPES, FrameRecord, FrontEnd, FrontendSettings, stack_records, unstack_records
from .npz import declared_arrays
from .progress import ProgressReporter
from .video import VideoInfo, file_sha256, probe_video

CACHE_FORMAT = "mxr.frontend-cache"
# 2: the flow covers the crop's face columns only (flow.flow_columns); 3: the key holds the flow's
# parameters (flow.flow_parameters), so retuning the flow cannot serve flows computed the old way;
# 4: each record says whether a hand covers the face and where (``hand_on_face``, ``hand_box_px``,
# ops/hands.py).
CACHE_VERSION = 4
CHUNK_FRAMES = 256
CACHE_DIR_ENV = "MXR_CACHE_DIR"
STALE_PARTIAL_S = 24 * 3600  # a partial folder this old belongs to a crashed run


def default_cache_dir() -> Path:
    """``$MXR_CACHE_DIR`` if set, else ``~/.cache/mxr/frontend``."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "mxr" / "frontend"


def cache_key(video_sha256: str, settings: FrontendSettings) -> str:
    description = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "video_sha256": video_sha256,
                   "settings": settings.as_dict(), "flow_parameters": flow_parameters(settings.flow_profile)}
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


class CachedFrontEnd:
    """The front-end of one video through the cache: ``records()`` streams from the cache entry
    when there is a sound one (``hit``), else runs the front-end and stores what it streams.

    ``scale`` (analysed px / source px) and ``warnings`` are those of the run that made the entry.
    """

    def __init__(self, video_path: Path, settings: FrontendSettings | None = None,
                 reporter: ProgressReporter | None = None, cache_dir: Path | None = None,
                 video: VideoInfo | None = None) -> None:
        self.settings = settings or FrontendSettings()
        self.reporter = reporter or ProgressReporter()
        self.video = video or probe_video(Path(video_path))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.key = cache_key(self.video.sha256, self.settings)
        self.entry = self.cache_dir / self.key
        self._manifest = self._sound_manifest()
        self.hit = self._manifest is not None
        self._frontend = None if self.hit else FrontEnd(self.video.path, self.settings, self.reporter, self.video)
        self.scale: float = self._manifest["analysis_scale"] if self.hit else self._frontend.scale
        self.warnings: list[str] = list(self._manifest["warnings"]) if self.hit else self._frontend.warnings
        # Frames ``records()`` should yield: the entry's count, or the container's (decoding may differ).
        self.expected_frames: int = self._manifest["frames"] if self.hit else self._frontend.expected_frames

    def records(self) -> Iterator[FrameRecord]:
        if self.hit:
            yield from self._read()
        else:
            yield from self._run_and_store()

    def _sound_manifest(self) -> dict[str, Any] | None:
        """The entry's manifest if the entry is complete and intact; a damaged entry is deleted."""
        manifest_path = self.entry / "manifest.json"
        if not self.entry.exists():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            _check_manifest(manifest, self.key)
            last_index = -1
            for chunk in manifest["chunks"]:
                if file_sha256(self.entry / chunk["file"]) != chunk["sha256"]:
                    raise ValueError(f"{chunk['file']} does not match its checksum")
                last_index = _check_chunk(self.entry / chunk["file"], chunk["frames"], last_index,
                                          self.settings.dense_flow_size)
            return manifest
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile,
                zlib.error) as error:
            self.reporter.warning(f"front-end cache entry {self.entry} is damaged ({error}); rebuilding it")
            shutil.rmtree(self.entry, ignore_errors=True)
            return None

    def _read(self) -> Iterator[FrameRecord]:
        for message in self._manifest["warnings"]:
            self.reporter.warning(message)
        frames, done = self._manifest["frames"], 0
        for chunk in self._manifest["chunks"]:
            try:
                with np.load(self.entry / chunk["file"], allow_pickle=False) as data:
                    arrays = {name: data[name] for name in data.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
                # Checked when the entry was opened: something changed it since. Frames were served
                # already, so this run stops; the next one rebuilds the entry.
                shutil.rmtree(self.entry, ignore_errors=True)
                raise MxrError(f"the front-end cache entry {self.entry} changed while it was read ({error}); "
                               "it was deleted: run again") from None
            for record in unstack_records(arrays):
                done += 1
                self.reporter.progress("frontend (cached)", done, frames)
                yield record

    def _run_and_store(self) -> Iterator[FrameRecord]:
        partial = self._partial_folder()
        try:
            chunks: list[dict[str, Any]] = []
            pending: list[FrameRecord] = []
            for record in self._frontend.records():
                pending.append(record)
                if len(pending) == CHUNK_FRAMES:
                    partial = self._stored(partial, chunks, pending)
                    pending = []
                yield record
            if pending:
                partial = self._stored(partial, chunks, pending)
            if file_sha256(self.video.path) != self.video.sha256:
                raise MxrError(f"{self.video.path} changed while MXR was reading it; run again once it is complete")
            if partial is not None:
                manifest = {
                    "format": CACHE_FORMAT, "version": CACHE_VERSION, "key": self.key,
                    "video_sha256": self.video.sha256, "video_path": str(self.video.path),
                    "settings": self.settings.as_dict(), "analysis_scale": self.scale,
                    "frames": sum(chunk["frames"] for chunk in chunks), "chunks": chunks,
                    "warnings": self._frontend.warnings, "created": time.time(),
                }
                try:
                    (partial / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
                    _publish(partial, self.entry)
                except OSError as error:
                    self.reporter.warning(f"could not store the front-end in the cache ({error}); the take is not affected")
        finally:
            if partial is not None:
                shutil.rmtree(partial, ignore_errors=True)  # gone already once published

    def _partial_folder(self) -> Path | None:
        """A fresh partial entry folder, or None (with a warning) where the cache cannot be written."""
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            _sweep_stale_partials(self.cache_dir)
            return Path(tempfile.mkdtemp(prefix=f"{self.key}.partial-", dir=self.cache_dir))
        except OSError as error:
            self.reporter.warning(f"the front-end cache {self.cache_dir} cannot be written ({error}); running without it")
            return None

    def _stored(self, partial: Path | None, chunks: list[dict[str, Any]], records: list[FrameRecord]) -> Path | None:
        """Write one chunk into ``partial``; on a write failure (disk full) drop the entry and go on."""
        if partial is None:
            return None
        try:
            chunks.append(_write_chunk(partial, len(chunks), records))
            return partial
        except OSError as error:
            self.reporter.warning(f"the front-end cache could not be written ({error}); running without it")
            shutil.rmtree(partial, ignore_errors=True)
            return None


def _check_manifest(manifest: object, key: str) -> None:
    """Every field the reader uses, with the type it expects (ValueError if not)."""
    if not isinstance(manifest, dict):
        raise ValueError("the manifest is not a JSON object")
    if manifest.get("format") != CACHE_FORMAT or manifest.get("version") != CACHE_VERSION or manifest.get("key") != key:
        raise ValueError("manifest of another format or key")
    scale = manifest.get("analysis_scale")
    if not isinstance(scale, (int, float)) or not 0.0 < scale <= 1.0:
        raise ValueError(f"analysis scale {scale!r} is not in (0, 1]")
    warnings = manifest.get("warnings")
    if not isinstance(warnings, list) or not all(isinstance(message, str) for message in warnings):
        raise ValueError("the warnings are not a list of texts")
    chunks = manifest.get("chunks")
    if not isinstance(chunks, list):
        raise ValueError("the chunks are not a list")
    for number, chunk in enumerate(chunks):
        if (not isinstance(chunk, dict) or chunk.get("file") != f"chunk_{number:06d}.npz"
                or not isinstance(chunk.get("frames"), int) or not 0 < chunk["frames"] <= CHUNK_FRAMES
                or not isinstance(chunk.get("sha256"), str)):
            raise ValueError(f"chunk {number} of the manifest is malformed")
    if manifest.get("frames") != sum(chunk["frames"] for chunk in chunks):
        raise ValueError("the frame count disagrees with the chunks")


_FLAG_RECORDS = ("valid", "flow_consistent")  # the record fields that are flags; the rest are numbers


# Record fields that are finite on every frame with a face (where there is none they may be NaN).
_FINITE_WHERE_VALID = ("confidence", "landmarks_px", "crop_from_image", "landmarks_crop")


def _check_chunk(path: Path, frames: int, last_index: int, dense_size: int) -> int:
    """The chunk holds each record field with ``frames`` rows of the record's shape and kind, and
    nothing else, from its headers (before anything is allocated); then what the front-end writes:
    every member readable (its CRC right), frame numbers increasing past ``last_index``, each face's
    fields finite. ValueError (or what reading raises) if not: a malformed entry is caught before a
    single frame is used. Returns the chunk's last frame number."""
    declared = declared_arrays(path)
    shapes = dict(RECORD_SHAPES)
    if dense_size > 0:  # every record then has its dense flow
        shapes.update(dense_flow=(dense_size, dense_size, 2), dense_consistent=(dense_size, dense_size))
    if set(declared) - set(shapes):
        raise ValueError(f"{path.name}: members {sorted(set(declared) - set(shapes))} the front-end never writes")
    for name, shape in shapes.items():
        found_shape, dtype = declared.get(name, (None, None))
        if found_shape != (frames,) + shape:
            raise ValueError(f"{path.name}: {name} has shape {found_shape}, not {(frames,) + shape}")
        if dtype.kind not in ("b" if name in _FLAG_RECORDS else "fiu"):
            raise ValueError(f"{path.name}: {name} holds {dtype} values")
    with zipfile.ZipFile(path) as archive:
        damaged = archive.testzip()  # reads every member a block at a time
    if damaged is not None:
        raise ValueError(f"{path.name}: {damaged} does not match its CRC")
    with np.load(path, allow_pickle=False) as data:  # one chunk: CHUNK_FRAMES frames at most
        arrays = {name: data[name] for name in ("index", "valid", *_FINITE_WHERE_VALID)}
    index, valid = arrays["index"], arrays["valid"]
    if not (len(index) and index[0] > last_index and np.all(np.diff(index) > 0)):
        raise ValueError(f"{path.name}: frame numbers that do not increase")
    for name in _FINITE_WHERE_VALID:
        if not np.all(np.isfinite(arrays[name][valid])):
            raise ValueError(f"{path.name}: {name} not finite on a frame with a face")
    return int(index[-1])


def _write_chunk(folder: Path, number: int, records: list[FrameRecord]) -> dict[str, Any]:
    name = f"chunk_{number:06d}.npz"
    np.savez(folder / name, **stack_records(records))
    return {"file": name, "frames": len(records), "sha256": file_sha256(folder / name)}


def _publish(partial: Path, entry: Path) -> None:
    """Move a complete entry into place in one rename; if another run got there first, keep theirs."""
    try:
        os.replace(partial, entry)
    except OSError:
        if not (entry / "manifest.json").exists():
            raise


def _sweep_stale_partials(cache_dir: Path) -> None:
    now = time.time()
    for folder in cache_dir.glob("*.partial-*"):
        try:
            if now - folder.stat().st_mtime > STALE_PARTIAL_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue
