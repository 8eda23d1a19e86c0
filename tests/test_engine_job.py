"""The engine job runner (no bpy): progress events, results, failures, cancellation."""
from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from mxr.mxr_addon.engine_job import PACKAGE_PARENT, EngineJob, engine_package_folders, resolve_engine_python
from mxr.ops.errors import MxrError


def fake_engine(root: Path, body: str) -> Path:
    """A stand-in ``mxr.ops`` package under ``root`` whose ``__main__`` runs ``body``.

    The job puts its package parent first on PYTHONPATH, so ``-m mxr.ops`` finds this one: the
    same mechanism that makes the installed extension's engine importable.
    """
    package = root / "mxr" / "ops"
    package.mkdir(parents=True)
    (root / "mxr" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("import json, sys, time\nargs = sys.argv[1:]\n" + textwrap.dedent(body))
    return root


def test_progress_then_done(tmp_path):
    root = fake_engine(tmp_path / "engine", """
        assert args[0] == "reconstruct" and args[2] == "--out"
        print("a library's plain text line")
        for i in range(3):
            print(json.dumps({"event": "progress", "stage": "flow", "fraction": (i + 1) / 3, "eta_s": None}), flush=True)
        print(json.dumps({"event": "warning", "message": "dim light"}))
        open(args[3], "w").write("take")
        print(json.dumps({"event": "done", "take": args[3]}))
    """)
    seen = []
    job = EngineJob(sys.executable, tmp_path / "clip.mp4", tmp_path / "out.npz", package_parent=root)
    take = job.run(on_progress=lambda progress: seen.append(progress.fraction))
    assert take == tmp_path / "out.npz" and take.read_text() == "take"
    assert job.progress.stage == "flow" and job.progress.fraction == pytest.approx(1.0)
    assert job.warnings == ["dim light"]
    assert all(0.0 <= fraction <= 1.0 for fraction in seen)


def test_the_neutral_the_engine_read_is_told(tmp_path):
    root = fake_engine(tmp_path / "engine", """
        open(args[3], "w").write("take")
        print(json.dumps({"event": "done", "take": args[3], "neutral_frames": [219, 223], "neutral_method": "found",
                          "neutral_held": {"jawOpen": 0.117}}))
    """)
    job = EngineJob(sys.executable, tmp_path / "clip.mp4", tmp_path / "out.npz", package_parent=root)
    job.run()
    assert job.neutral_note() == "the neutral face is frames 219-223 (found), less the jawOpen 0.12 they held"
    job.summary = {"neutral_frames": [0, 5], "neutral_method": "frames", "neutral_held": {}}
    assert job.neutral_note() == "the neutral face is frames 0-5 (as named)"
    job.summary = {"neutral_frames": [219, 223], "neutral_method": "found", "neutral_held": {}, "neutral_hand": True}
    assert job.neutral_note() == "the neutral face is frames 219-223 (found); a hand covers the face there"
    job.summary = {"take": "t.npz"}  # an engine from before: nothing to say
    assert job.neutral_note() == ""


def test_error_event_becomes_mxr_error(tmp_path):
    root = fake_engine(tmp_path / "engine", """
        print(json.dumps({"event": "error", "message": "no face in clip.mp4"}))
        sys.exit(2)
    """)
    with pytest.raises(MxrError, match="no face in clip.mp4"):
        EngineJob(sys.executable, tmp_path / "clip.mp4", tmp_path / "out.npz", package_parent=root).run()


def test_crash_without_message_quotes_stderr(tmp_path):
    root = fake_engine(tmp_path / "engine", "raise SystemExit('segfault-ish trouble')\n")
    with pytest.raises(MxrError, match="(?s)exit code 1.*segfault-ish trouble"):
        EngineJob(sys.executable, tmp_path / "clip.mp4", tmp_path / "out.npz", package_parent=root).run()


def test_cancel_terminates_the_engine(tmp_path):
    root = fake_engine(tmp_path / "engine", """
        print(json.dumps({"event": "progress", "stage": "decode", "fraction": 0.1, "eta_s": 60}), flush=True)
        time.sleep(60)
    """)
    job = EngineJob(sys.executable, tmp_path / "clip.mp4", tmp_path / "out.npz", package_parent=root).start()
    deadline = time.monotonic() + 10
    while job.progress.stage != "decode" and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.02)
    assert job.progress.eta_s == 60
    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 5
    assert not job.poll()
    with pytest.raises(MxrError):
        job.result()
    assert not (tmp_path / "out.npz").exists()


def test_real_engine_reports_a_missing_video(tmp_path):
    """The real CLI, reached the way Blender reaches it (PYTHONPATH = the package's parent)."""
    assert (PACKAGE_PARENT / "mxr" / "ops" / "__main__.py").is_file()
    job = EngineJob(sys.executable, tmp_path / "missing.mp4", tmp_path / "out.npz")
    with pytest.raises(MxrError, match="missing.mp4"):
        job.run()
    assert not (tmp_path / "out.npz").exists()


def test_engine_python_resolution(tmp_path):
    assert resolve_engine_python("") == sys.executable  # this venv has mediapipe
    assert engine_package_folders() == []  # ... in its own site-packages: nothing to add to the engine's path
    assert resolve_engine_python(sys.executable) == sys.executable
    with pytest.raises(MxrError, match="Engine Python"):
        resolve_engine_python(str(tmp_path / "no-python"))


def test_an_engine_python_override_without_the_engine_packages_is_refused_with_a_sentence(tmp_path):
    """Checked by running it (a child with a time limit): the first package it lacks, or why it cannot run."""
    bare = Path(__file__).resolve().parents[1] / ".venv-blender42" / "bin" / "python"  # bpy + numpy only
    with pytest.raises(MxrError, match=r"^this interpreter lacks mediapipe: .*venv-blender42.*Engine Python"):
        resolve_engine_python(str(bare))
    not_a_program = tmp_path / "python"
    not_a_program.write_text("not a program")
    with pytest.raises(MxrError, match=r"^this interpreter cannot be run \(Permission denied\)"):
        resolve_engine_python(str(not_a_program))
