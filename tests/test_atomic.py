"""Outputs land whole and together, and what a killed writer left behind is swept."""
import os
import subprocess
import sys

import pytest

from mxr.ops import reconstruct as reconstruct_module
from mxr.ops.atomic import replacing, replacing_together, sweep_stale_partials
from mxr.ops.reconstruct import ReconstructSettings, reconstruct
from mxr.ops.sample_data import sample_path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_outputs_written_together_land_together_or_not_at_all(tmp_path):
    first, second = tmp_path / "take.npz", tmp_path / "sheet.png"
    first.write_bytes(b"old take")
    second.write_bytes(b"old sheet")
    with pytest.raises(RuntimeError):
        with replacing_together([first, second]) as staged:
            staged[0].write_bytes(b"new take")
            raise RuntimeError("the sheet failed")
    assert first.read_bytes() == b"old take" and second.read_bytes() == b"old sheet"
    with replacing_together([first, second]) as staged:
        for path, content in zip(staged, (b"new take", b"new sheet")):
            with replacing(path) as stream:
                stream.write(content)
    assert first.read_bytes() == b"new take" and second.read_bytes() == b"new sheet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.png", "take.npz"]


def test_sweeping_removes_what_dead_writers_left_and_only_that(tmp_path):
    target = tmp_path / "take.npz"
    crashed = tmp_path / f"take.npz.{dead_pid()}-a1b2.partial"
    own = tmp_path / f"take.npz.{os.getpid()}-c3d4.partial"
    unrelated = tmp_path / "other.npz.1-e5f6.partial"
    for path in (crashed, own, unrelated):
        path.write_bytes(b"x")
    assert sweep_stale_partials(target) == [crashed]
    assert not crashed.exists() and own.exists() and unrelated.exists()


def test_a_failed_debug_sheet_keeps_the_earlier_take_and_leaves_no_partial(tmp_path, monkeypatch):
    take_path, sheet_path = tmp_path / "take.npz", tmp_path / "sheet.png"
    take_path.write_bytes(b"an earlier take")
    leftover = tmp_path / f"take.npz.{dead_pid()}-zz.partial"  # a run killed while saving
    leftover.write_bytes(b"half a take")

    def sheet_fails(*_args, **_kwargs):
        raise OSError("the disk filled up while writing the sheet")

    monkeypatch.setattr(reconstruct_module, "write_contact_sheet", sheet_fails)  # fault injection
    settings = ReconstructSettings(use_network=False, debug_sheet=sheet_path, cache_dir=tmp_path / "cache")
    with pytest.raises(OSError, match="disk filled up"):
        reconstruct(sample_path("video/single_face.mp4"), take_path, settings)
    assert take_path.read_bytes() == b"an earlier take"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "take.npz"]
