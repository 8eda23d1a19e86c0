"""scripts/tune_events_on_footage.py: the detectors trained further on real footage with planted
micro-expressions (a smoke run: a few draws of the dev clip single_face, a few steps)."""
import json

import pytest

from mxr.models.network.runner import DEFAULT_MODEL, NetworkRunner


def test_a_quick_tuning_writes_detectors_the_runner_loads_and_refuses_to_tune_twice(tmp_path, load_script):
    start = tmp_path / "start"
    start.mkdir()
    for path in DEFAULT_MODEL.parent.iterdir():
        (start / path.name).write_bytes(path.read_bytes())
    metadata = json.loads((start / DEFAULT_MODEL.with_suffix(".json").name).read_text())
    shipped_tuned = "tuned_on_footage" in metadata["event_detector"]
    metadata["event_detector"].pop("tuned_on_footage", None)  # the synthetic detectors' place in the chain
    (start / DEFAULT_MODEL.with_suffix(".json").name).write_text(json.dumps(metadata))
    script = load_script("tune_events_on_footage")
    out = tmp_path / "out"
    assert script.main(["--quick", "--model", str(start / DEFAULT_MODEL.name), "--out", str(out)]) == 0
    entry = json.loads((out / DEFAULT_MODEL.with_suffix(".json").name).read_text())["event_detector"]
    tuned = entry["tuned_on_footage"]
    assert tuned["clips"] == ["single_face.mp4"] and tuned["train_events"] >= 2 and tuned["training"]
    assert entry["event_thresholds"]["high"] in script.THRESHOLD_GRID
    assert entry["speech_member"]["confirm_thresholds"]["high"] in script.CONFIRM_GRID
    runner = NetworkRunner(out / DEFAULT_MODEL.name, providers=["CPUExecutionProvider"])
    assert runner.detector["files"] == [entry["file"], entry["speech_member"]["file"]]
    assert (out / entry["file"]).read_bytes() != (start / entry["file"]).read_bytes()
    assert script.main(["--quick", "--model", str(out / DEFAULT_MODEL.name)]) == 2  # tuned already
    if shipped_tuned:  # the shipped detectors say where they came from
        assert script.main(["--quick", "--model", str(DEFAULT_MODEL), "--out", str(tmp_path / "again")]) == 2
    with pytest.raises(SystemExit, match="dev split"):
        script.QUICK.train["franck.mp4"] = 1  # held-out footage is refused
        try:
            script.main(["--quick", "--model", str(start / DEFAULT_MODEL.name), "--out", str(tmp_path / "no")])
        finally:
            del script.QUICK.train["franck.mp4"]
