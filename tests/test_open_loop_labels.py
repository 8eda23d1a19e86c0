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
