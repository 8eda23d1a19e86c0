"""scripts/open_loop.py's checks of the units against labelled real frames (``score_clip``)."""
from pathlib import Path

import numpy as np
import pytest

from mxr.models.arkit import ARKIT_UNITS


@pytest.fixture
def open_loop(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import open_loop
    return open_loop


def frame(**units: float) -> np.ndarray:
    row = np.zeros(len(ARKIT_UNITS))
    for name, value in units.items():
        row[ARKIT_UNITS.index(name)] = value
    return row


def test_a_smile_with_closed_eyes_passes_with_the_eye_units_aside(open_loop):
    units = np.stack([
        frame(mouthSmileLeft=0.7, mouthSmileRight=0.7, eyeBlinkLeft=1.0, eyeBlinkRight=1.0),  # smiling, eyes shut
        frame(mouthSmileLeft=0.7, mouthSmileRight=0.7, mouthDimpleLeft=0.9, mouthUpperUpLeft=0.8),  # read as dimples
        frame(mouthSmileLeft=0.3, mouthSmileRight=0.7),  # one corner short
    ])
    labels = {"0": {"smile": "broad", "eyes": "closed"}, "1": {"smile": "clear"}, "2": {"smile": "clear"}}
    scores = open_loop.score_clip(units, ARKIT_UNITS, labels)
    assert scores["smile"] == [False, False, False]
    assert scores["smile, eye units aside"] == [True, False, False]
    assert scores["eyes closed"] == [True]
    assert open_loop.summarise({"clip.mp4": scores})["smile, eye units aside"] == "0.33 of 3"


def test_a_face_that_does_not_smile_must_not_read_as_a_smile(open_loop):
    units = np.stack([frame(mouthSmileLeft=0.5, mouthSmileRight=0.1),  # a crying grimace read as half a smile
                      frame(mouthFrownLeft=0.6, mouthFrownRight=0.6, mouthSmileLeft=0.2)])
    scores = open_loop.score_clip(units, ARKIT_UNITS, {"0": {"smile": "none"}, "1": {"smile": "none"}})
    assert scores["no smile"] == [False, True] and scores["smile"] == []


def test_flicker_counts_frames_a_unit_blips_away_from_the_frames_around_them(open_loop):
    smile = np.array([0.5, 0.5, 0.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.5, 0.55, 0.6, 0.65])  # dropped for 1, then 2 frames
    blink = np.zeros(12)
    blink[3] = 1.0  # a one-frame blink: measured, not counted
    units = np.stack([frame(mouthSmileLeft=s, eyeBlinkLeft=b) for s, b in zip(smile, blink)])
    assert open_loop.flicker_share(units, ARKIT_UNITS) == pytest.approx(3 / 10)  # frames 2, 6 and 7 of 1..10
    units[:, ARKIT_UNITS.index("mouthSmileLeft")] = np.linspace(0.0, 1.0, 12)  # a fast, steady rise: no blip
    assert open_loop.flicker_share(units, ARKIT_UNITS) == 0.0
    units[4] = np.nan  # no face: no blip is judged across it
    assert open_loop.flicker_share(units, ARKIT_UNITS) == 0.0


def test_an_engine_under_test_writes_its_takes_beside_the_plain_runs(open_loop):
    assert open_loop.take_name("WolfgangLanger_Pexels.network") == "WolfgangLanger_Pexels.network.take.npz"
    assert open_loop.take_name("WolfgangLanger_Pexels.network", "lids") == "WolfgangLanger_Pexels.network.lids.take.npz"


def test_pinned_units_are_counted_with_and_without_the_measured_blinks(open_loop):
    units = np.stack([frame(eyeBlinkLeft=1.0, mouthRollLower=1.0), frame(eyeBlinkLeft=1.0),
                      frame(eyeBlinkLeft=1.0), frame(mouthRollLower=0.5)])  # shut eyes: full blinks
    scores = open_loop.score_clip(units, ARKIT_UNITS, {})
    assert (scores["pinned share"], scores["pinned unit"]) == (0.75, "eyeBlinkLeft")
    assert (scores["pinned share, blinks aside"], scores["pinned unit, blinks aside"]) == (0.25, "mouthRollLower")
    row = open_loop.summarise({"clip.mp4": scores})
    assert row["pinned, blinks aside"] == "0.250 (clip, mouthRollLower)"
