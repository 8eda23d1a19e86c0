"""The front-end cache: hits, keys, damaged entries, cancellation leaving nothing half-written."""
import io
import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mxr.ops import flow
from mxr.ops.frontend import FrontendSettings
from mxr.ops.frontend_cache import CACHE_DIR_ENV, CachedFrontEnd, cache_key, default_cache_dir
from mxr.ops.progress import ProgressReporter
from mxr.ops.sample_data import sample_path

SETTINGS = FrontendSettings(end_frame=24)  # a third of the clip keeps these tests quick


def cached(cache_dir, settings=SETTINGS, clip="video/single_face.mp4"):
    stream = io.StringIO()
    frontend = CachedFrontEnd(sample_path(clip), settings, ProgressReporter(stream), cache_dir=cache_dir)
    records = list(frontend.records())
    return frontend, records, stream.getvalue()


def entries(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir()) if cache_dir.exists() else []


def test_second_run_is_served_from_the_cache(tmp_path):
    first, computed, _ = cached(tmp_path)
    assert not first.hit and entries(tmp_path) == [first.key]
    started = time.monotonic()
    second, loaded, _ = cached(tmp_path)
    assert second.hit and time.monotonic() - started < 1.0
    assert len(loaded) == len(computed) == 24
    for a, b in zip(computed, loaded):
        assert a.index == b.index and a.valid == b.valid and a.timestamp_s == b.timestamp_s
        np.testing.assert_array_equal(a.landmarks_px, b.landmarks_px)
        np.testing.assert_array_equal(a.flow_at_landmarks, b.flow_at_landmarks)
        np.testing.assert_array_equal(a.flow_consistent, b.flow_consistent)
    manifest = json.loads((tmp_path / first.key / "manifest.json").read_text())
    assert manifest["frames"] == 24 and manifest["settings"]["end_frame"] == 24
    for chunk in manifest["chunks"]:
        with np.load(tmp_path / first.key / chunk["file"], allow_pickle=False) as data:  # no pickles inside
            assert data["landmarks_px"].dtype == np.float32


def test_key_depends_on_video_content_and_settings(tmp_path):
    key = cache_key("a" * 64, SETTINGS)
    assert key == cache_key("a" * 64, FrontendSettings(end_frame=24))
    assert key != cache_key("b" * 64, SETTINGS)
    assert key != cache_key("a" * 64, FrontendSettings(end_frame=24, flow_profile="fine"))


def test_key_changes_when_the_flow_is_retuned(monkeypatch):
    """Flows and checks computed with the old parameters must not be served under the new ones."""
    key = cache_key("a" * 64, SETTINGS)
    retuned = dict(flow.FLOW_PROFILES, balanced={**flow.FLOW_PROFILES["balanced"], "GradientDescentIterations": 4})
    monkeypatch.setattr(flow, "FLOW_PROFILES", retuned)
    assert cache_key("a" * 64, SETTINGS) != key
    monkeypatch.undo()
    monkeypatch.setattr(flow, "FB_ABSOLUTE_PX", flow.FB_ABSOLUTE_PX * 2)  # the consistency check
    assert cache_key("a" * 64, SETTINGS) != key


def test_damaged_entry_is_rebuilt(tmp_path):
    first, computed, _ = cached(tmp_path)
    chunk = next((tmp_path / first.key).glob("chunk_*.npz"))
    chunk.write_bytes(chunk.read_bytes()[:100])
    again, rebuilt, log = cached(tmp_path)
    assert not again.hit and "damaged" in log
    np.testing.assert_array_equal(rebuilt[10].landmarks_px, computed[10].landmarks_px)
    assert cached(tmp_path)[0].hit
    (tmp_path / first.key / "manifest.json").write_text("{not json")
    assert not cached(tmp_path)[0].hit


def test_cache_dir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "from env"))
    assert default_cache_dir() == tmp_path / "from env"
    frontend = CachedFrontEnd(sample_path("video/single_face.mp4"), SETTINGS, ProgressReporter(io.StringIO()))
    assert frontend.cache_dir == tmp_path / "from env"
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert default_cache_dir().parts[-3:] == (".cache", "mxr", "frontend")


def test_warnings_survive_the_cache(tmp_path):
    first, _, _ = cached(tmp_path, FrontendSettings(), "video/face_noface.mov")
    second, _, log = cached(tmp_path, FrontendSettings(), "video/face_noface.mov")
    assert second.hit and second.warnings == first.warnings and "marked invalid" in log


def test_stopping_early_leaves_no_entry(tmp_path):
    frontend = CachedFrontEnd(sample_path("video/single_face.mp4"), SETTINGS, ProgressReporter(io.StringIO()),
                              cache_dir=tmp_path)
    records = frontend.records()
    next(records)
    records.close()
    assert entries(tmp_path) == []


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_cancelled_process_leaves_nothing_half_written(tmp_path, signal_number):
    """An engine process killed mid-run (ESC in Blender sends SIGTERM) exits cleanly, no cache entry.

    The child sets Python's own SIGINT handler: a process started from a shell's background job
    inherits SIGINT ignored, and Python then leaves it ignored."""
    script = textwrap.dedent(f"""
        import signal, sys
        from mxr.ops.frontend_cache import CachedFrontEnd
        from mxr.ops.progress import ProgressReporter
        def interrupt(*_):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            for record in CachedFrontEnd({str(sample_path('video/WolfgangLanger_Pexels.mp4'))!r},
                                         reporter=ProgressReporter(min_interval_s=0.0),
                                         cache_dir={str(tmp_path)!r}).records():
                pass
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in child.stdout:
        if '"frame": 20' in line:
            break
    child.send_signal(signal_number)
    child.stdout.read()
    assert child.wait(timeout=30) == 130
    assert entries(tmp_path) == []


def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_run(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    frontend, records, log = cached(blocker / "cache")  # the cache folder cannot be created
    assert len(records) == 24 and not frontend.hit
    assert "running without it" in log


def test_a_full_disk_while_storing_costs_a_warning_not_the_run(tmp_path, monkeypatch):
    import errno

    from mxr.ops import frontend_cache

    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(frontend_cache.np, "savez", disk_full)  # fault injection: the write fails as on a full disk
    frontend, records, log = cached(tmp_path)
    assert len(records) == 24 and "No space left" in log
    assert entries(tmp_path) == []  # nothing half-written left behind


@pytest.mark.parametrize("damage", ["warnings", "scale", "chunk file", "chunk shape"])
def test_a_malformed_entry_whose_checksums_agree_is_rebuilt(tmp_path, damage):
    """Checksums say the bytes are the ones written, not that what was written makes sense."""
    from mxr.ops.video import file_sha256

    first, computed, _ = cached(tmp_path)
    entry = tmp_path / first.key
    manifest = json.loads((entry / "manifest.json").read_text())
    if damage == "warnings":
        manifest["warnings"] = 5
    elif damage == "scale":
        del manifest["analysis_scale"]
    elif damage == "chunk file":
        manifest["chunks"][0]["file"] = "../../outside.npz"
    else:
        chunk = entry / manifest["chunks"][0]["file"]
        with np.load(chunk, allow_pickle=False) as data:
            arrays = dict(data)
        arrays["landmarks_px"] = arrays["landmarks_px"][:, :10]
        np.savez(chunk, **arrays)
        manifest["chunks"][0]["sha256"] = file_sha256(chunk)
    (entry / "manifest.json").write_text(json.dumps(manifest))
    again, rebuilt, log = cached(tmp_path)
    assert not again.hit and "damaged" in log
    np.testing.assert_array_equal(rebuilt[5].landmarks_px, computed[5].landmarks_px)
    assert cached(tmp_path)[0].hit


def test_a_video_replaced_while_it_is_read_fails_and_stores_nothing(tmp_path):
    import shutil

    from mxr.ops.errors import MxrError

    video = tmp_path / "clip.mp4"
    shutil.copy(sample_path("video/single_face.mp4"), video)
    frontend = CachedFrontEnd(video, SETTINGS, ProgressReporter(io.StringIO()), cache_dir=tmp_path / "cache")
    records = frontend.records()
    next(records)
    shutil.copy(sample_path("video/face_noface.mov"), video)  # another clip under the same name
    with pytest.raises(MxrError, match="changed while MXR was reading it"):
        list(records)
    assert entries(tmp_path / "cache") == []
