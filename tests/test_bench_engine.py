"""scripts/bench_engine.py: where the engine's time goes, stage by stage."""
from pathlib import Path

import pytest


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import bench_engine
    return bench_engine


def test_a_stage_runs_from_the_stage_before_to_its_own_last_report(bench):
    clock = bench.StageClock()
    clock.last_report = {"frontend": 1.0, "pose": 3.5, "skin": 4.0}  # seconds since the start
    assert clock.stage_seconds(4.5) == {"frontend": 1.0, "pose": 2.5, "skin": 0.5, "writing the take": 0.5}


def test_a_stage_reported_again_keeps_its_place_and_takes_the_latest_time(bench):
    clock = bench.StageClock()
    for stage in ("frontend", "frontend", "pose", "pose"):
        clock.progress(stage, 1, 2)
    assert list(clock.last_report) == ["frontend", "pose"]
    assert clock.last_report["pose"] >= clock.last_report["frontend"]
