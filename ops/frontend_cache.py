"""Front-end results on disk, keyed by the video's content and the settings, so a re-run skips
decode, tracking and flow.

An entry is a folder ``<cache dir>/<key>/`` holding ``manifest.json`` and chunks of
``CHUNK_FRAMES`` frames as ``.npz`` (no pickles), so writing and reading stay streaming: memory does
not grow with the clip. The key is the sha256 of {format version, video sha256, settings, the
flow's parameters} as sorted JSON. A run writes into ``<key>.partial-*`` and renames the
folder into place only once every frame is in; a cancelled or failed run deletes its partial
folder, and a crash leaves only a ``.partial`` folder, which is never read and is swept later.
The manifest lists each chunk's sha256: an entry that does not match it is deleted and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .flow import flow_parameters
from .frontend import FrameRecord, FrontEnd, FrontendSettings, stack_records, unstack_records
from .progress import ProgressReporter
from .video import VideoInfo, file_sha256, probe_video

CACHE_FORMAT = "mxr.frontend-cache"
# 2: the flow covers the crop's face columns only (flow.flow_columns); 3: the key holds the flow's
# parameters (flow.flow_parameters), so retuning the flow cannot serve flows computed the old way.
CACHE_VERSION = 3
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
            if manifest["format"] != CACHE_FORMAT or manifest["version"] != CACHE_VERSION or manifest["key"] != self.key:
                raise ValueError("manifest of another format or key")
            for chunk in manifest["chunks"]:
                if file_sha256(self.entry / chunk["file"]) != chunk["sha256"]:
                    raise ValueError(f"{chunk['file']} does not match its checksum")
            return manifest
        except (OSError, ValueError, KeyError, TypeError) as error:
            self.reporter.warning(f"front-end cache entry {self.entry} is damaged ({error}); rebuilding it")
            shutil.rmtree(self.entry, ignore_errors=True)
            return None

    def _read(self) -> Iterator[FrameRecord]:
        for message in self._manifest["warnings"]:
            self.reporter.warning(message)
        frames, done = self._manifest["frames"], 0
        for chunk in self._manifest["chunks"]:
            with np.load(self.entry / chunk["file"], allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            for record in unstack_records(arrays):
                done += 1
                self.reporter.progress("frontend (cached)", done, frames)
                yield record

    def _run_and_store(self) -> Iterator[FrameRecord]:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        _sweep_stale_partials(self.cache_dir)
        partial = Path(tempfile.mkdtemp(prefix=f"{self.key}.partial-", dir=self.cache_dir))
        try:
            chunks: list[dict[str, Any]] = []
            pending: list[FrameRecord] = []
            for record in self._frontend.records():
                pending.append(record)
                if len(pending) == CHUNK_FRAMES:
                    chunks.append(_write_chunk(partial, len(chunks), pending))
                    pending = []
                yield record
            if pending:
                chunks.append(_write_chunk(partial, len(chunks), pending))
            manifest = {
                "format": CACHE_FORMAT, "version": CACHE_VERSION, "key": self.key,
                "video_sha256": self.video.sha256, "video_path": str(self.video.path),
                "settings": self.settings.as_dict(), "analysis_scale": self.scale,
                "frames": sum(chunk["frames"] for chunk in chunks), "chunks": chunks,
                "warnings": self._frontend.warnings, "created": time.time(),
            }
            (partial / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
            _publish(partial, self.entry)
        finally:
            shutil.rmtree(partial, ignore_errors=True)  # gone already once published


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
