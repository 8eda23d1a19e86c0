"""The neutral face is found in the take, and real footage reads as the person who labelled it saw it."""
import json
from pathlib import Path

import numpy as np
import pytest

from mxr.models.arkit import ANTAGONIST_PAIRS
from mxr.models.open_head import load_open_head
from mxr.models.retarget import retarget_expressions
from mxr.ops.errors import MxrError
from mxr.ops.neutral import find_neutral_frames, occluded_frames
from mxr.ops.reconstruct import ReconstructSettings, reconstruct
from mxr.ops.sample_data import sample_path
from mxr.ops.take import load_take

LABELS = Path(__file__).resolve().parents[1] / "scripts" / "open_loop_labels.json"


def open_head_faces(units: dict[str, np.ndarray], frames: int) -> np.ndarray:
    """(T, 478, 3) canonical landmarks in mm of the open head driven by named unit curves (T,)."""
    head = load_open_head()
    coefficients = np.zeros((frames, len(head.expression_names)))
    for name, curve in units.items():
        coefficients[:, head.expression_names.index(name)] = curve
    return head.landmark_positions(coefficients) * 1000.0


def test_a_clip_that_opens_mid_expression_finds_its_neutral_later():
    frames = 90
    smile = np.where(np.arange(frames) < 40, 0.8, 0.0)  # opens on a broad smile, then rests
    blink = np.zeros(frames)
    blink[[50, 51, 70]] = 1.0
    talk = np.where(np.arange(frames) >= 75, 0.3 * (1 + np.sin(np.arange(frames))), 0.0)
    faces = open_head_faces({"mouthSmileLeft": smile, "mouthSmileRight": smile, "jawOpen": 0.3 * smile + talk,
                             "eyeBlinkLeft": blink, "eyeBlinkRight": blink}, frames)
    found = find_neutral_frames(faces, np.ones(frames, bool), fps=30.0)
    assert len(found) == 6 and found[0] >= 40 and found[-1] < 75
    assert not set(found) & {50, 51, 70}


def test_frames_without_a_face_are_not_the_neutral_and_none_at_all_is_an_error():
    frames = 40
    smile = np.linspace(1.0, 0.0, frames)  # calmest at the end, where the face is lost
    faces = open_head_faces({"mouthSmileLeft": smile, "mouthSmileRight": smile}, frames)
    valid = np.ones(frames, bool)
    valid[34:] = False
    faces[~valid] = np.nan
    found = find_neutral_frames(faces, valid, fps=30.0)
    assert found[-1] < 34 and found[-1] >= 28
    with pytest.raises(MxrError, match="no face"):
        find_neutral_frames(faces, np.zeros(frames, bool), fps=30.0)


@pytest.mark.engine
def test_real_footage_reads_as_labelled(tmp_path):
    """single_face (dev split of scripts/open_loop.py): the grin reads as both smiles, the labelled
    neutral frames read as rest, no antagonists are on together anywhere, nothing is pinned."""
    take_path = tmp_path / "single_face.npz"
    reconstruct(sample_path("video/single_face.mp4"), take_path, ReconstructSettings(use_network=False))
    take = load_take(take_path)
    assert take.settings["neutral_method"] == "found" and take.settings["camera"] == "perspective"
    head = load_open_head()
    units = retarget_expressions(head, take.deformation_mm(), take.neutral_mm)  # (T, 52)
    names = head.expression_names
    labels = json.loads(LABELS.read_text())["clips"]["single_face.mp4"]["frames"]
    smiles = [names.index("mouthSmileLeft"), names.index("mouthSmileRight")]
    smiling = [int(f) for f, label in labels.items() if label["smile"] in ("clear", "broad")]
    resting = [int(f) for f, label in labels.items() if label["neutral"]]
    assert len(smiling) >= 10 and len(resting) >= 3
    assert np.median(units[smiling][:, smiles].min(axis=1)) >= 0.4
    assert units[resting].max() <= 0.3
    for first, second in ANTAGONIST_PAIRS:
        assert np.all(np.minimum(units[:, names.index(first)], units[:, names.index(second)]) <= 0.2)
    assert (units >= 0.99).mean(axis=0).max() <= 0.5  # measured 0.0-0.47 (mouthDimpleLeft holds the grin's width)


@pytest.mark.engine
@pytest.mark.parametrize("flag, value, message", [("--neutral-frames", "70-90", "not within the take's frames"),
                                                  ("--neutral-seconds", "nan", "positive number of seconds")])
def test_a_neutral_the_take_cannot_have_is_refused(tmp_path, flag, value, message):
    from test_engine_cli import run_engine

    code, _, stderr = run_engine("reconstruct", sample_path("video/single_face.mp4"), "--out", tmp_path / "t.npz",
                                 "--baseline", flag, value)
    assert code == 2 and message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "t.npz").exists()


def test_frames_with_the_face_covered_are_not_the_neutral():
    frames = 60
    smile = np.where(np.arange(frames) < 20, 0.8, 0.0)  # a smile, then rest
    faces = open_head_faces({"mouthSmileLeft": smile, "mouthSmileRight": smile}, frames)
    valid = np.ones(frames, bool)
    confidence = np.full(frames, 0.9)
    confidence[40:] = 0.3  # a hand comes up: the detector is unsure
    consistent = np.ones((frames, 478), bool)
    fb_error = np.full((frames, 478), 0.05)
    fb_error[0] = np.nan  # the first frame has no flow to check
    consistent[0] = False
    consistent[20:33, :300] = False  # something moves over the face: the flow fails its check
    occluded = occluded_frames(valid, confidence, consistent, fb_error)
    assert not occluded[0] and occluded[20:33].all() and occluded[40:].all() and not occluded[33:40].any()
    found = find_neutral_frames(faces, valid, 30.0, occluded)
    assert found[0] >= 33 and found[-1] < 40  # the only resting frames where the face can be seen
