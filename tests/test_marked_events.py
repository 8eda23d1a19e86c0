"""Micro-expressions the animator marks (models/marked_events.py, `mxr.ops mark-event`): against
takes with a known flicker planted in their motion."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import take_from_deformation
from mxr.models.marked_events import MARKED, mark_event, strongest_region
from mxr.models.micro_keys import micro_components
from mxr.models.network.event_profile import micro_profile
from mxr.models.network.events import region_landmarks
from mxr.models.network.features import EVENT_REGIONS, region_membership
from mxr.models.open_head import load_open_head
from mxr.ops.errors import MxrError
from mxr.ops.take import LANDMARK_COUNT, MicroEvent, load_take, save_take

FPS = 30.0
FRAMES = 90
ONSET, APEX, OFFSET = 30, 34, 42  # the planted flicker's frames (0.4 s)


def brow_flicker_take(peak_mm: float = 1.0, seed: int = 0):
    """A still face (the open head's landmarks as the neutral, 0.02 mm of jitter) whose inner brow
    rises ``peak_mm`` and falls back over frames ONSET..OFFSET; -> (take, the flicker (T, 478, 3) mm)."""
    neutral_mm = load_open_head().landmark_positions().astype(np.float64) * 1000.0  # (478, 3)
    brows = region_landmarks(region_membership(EVENT_REGIONS)[EVENT_REGIONS.index("brows")])
    centre = neutral_mm[brows].mean(axis=0)
    falloff = np.exp(-0.5 * (np.linalg.norm(neutral_mm - centre, axis=1) / 15.0) ** 2)  # (478,)
    pattern = falloff[:, None] * np.array([0.0, peak_mm, 0.0])  # up
    times = np.arange(FRAMES) / FPS
    profile = micro_profile(times, ONSET / FPS, APEX / FPS, 0.0, OFFSET / FPS)  # (T,)
    flicker = profile[:, None, None] * pattern  # (T, 478, 3) mm
    jitter = np.random.default_rng(seed).normal(0.0, 0.02, flicker.shape)
    rotation = np.broadcast_to(np.eye(3, dtype=np.float32), (FRAMES, 3, 3)).copy()
    take = take_from_deformation(neutral_mm, flicker + jitter, np.zeros_like(flicker), rotation, np.ones(FRAMES, bool),
                                 np.full((FRAMES, LANDMARK_COUNT, 3), 300.0), "/nonexistent/performer.mp4", FPS)
    return take, flicker


def test_a_marked_flicker_becomes_an_event_with_its_own_layer():
    take, flicker = brow_flicker_take()
    marked = mark_event(take, ONSET, OFFSET)
    (event,) = marked.events
    assert (event.region, event.onset_frame, event.offset_frame) == ("brows", ONSET, OFFSET)
    brows = region_landmarks(region_membership(EVENT_REGIONS)[EVENT_REGIONS.index("brows")])
    assert abs(event.apex_frame - APEX) <= 1  # the largest brow move, as the engine's events say:
    assert event.peak_mm == pytest.approx(np.linalg.norm(flicker[APEX][brows], axis=1).max(), abs=0.05)
    moved = np.linalg.norm(flicker[APEX], axis=1) >= 0.5  # (478,)
    share = np.sum(marked.micro_mm[APEX][moved] * flicker[APEX][moved]) / np.sum(flicker[APEX][moved] ** 2)
    assert share > 0.85  # the layer carries the flicker
    np.testing.assert_allclose(marked.deformation_mm(), take.deformation_mm(), atol=1e-4)  # the total is kept
    assert marked.settings[MARKED] == [[ONSET, event.apex_frame, OFFSET, "brows", "points"]]
    (component,) = micro_components(marked)  # what the bake turns into a micro key
    assert component.event == event and component.weights[event.apex_frame] == pytest.approx(1.0, abs=0.05)
    assert not take.events and not take.micro_mm.any()  # the take marked is left as it was


def test_a_mark_read_again_by_flow_carries_what_the_flow_sees_and_the_total_shows_it():
    take, flicker = brow_flicker_take()
    asked = []

    def reread(stretches):  # what ``stretch_flow.take_stretch_reader`` gives: the flow saw the flicker half again
        asked.extend(stretches)
        ((first, last),) = stretches
        return {(first, last): 0.5 * flicker[first:last + 1] - 0.5 * flicker[first]}

    marked = mark_event(take, ONSET, OFFSET, reread=reread)
    plain = mark_event(take, ONSET, OFFSET)
    (stretch,) = asked
    assert stretch[0] < ONSET and stretch[1] > OFFSET  # the event and its baseline (``events.layer_span``)
    moved = np.linalg.norm(flicker[APEX], axis=1) >= 0.5
    share = np.sum(marked.micro_mm[APEX][moved] * flicker[APEX][moved]) / np.sum(flicker[APEX][moved] ** 2)
    assert 1.3 < share < 1.6  # the flow's reading: 1.5x the take's
    np.testing.assert_allclose(marked.macro_mm, plain.macro_mm, atol=1e-6)  # the take's reading leaves the macro
    np.testing.assert_allclose(marked.deformation_mm() - take.deformation_mm(), marked.micro_mm - plain.micro_mm,
                               atol=1e-5)  # the total shows the event as the flow reads it
    np.testing.assert_allclose(mark_event(take, ONSET, OFFSET, reread=lambda stretches: {}).micro_mm, plain.micro_mm)
    assert marked.settings[MARKED][0][-1] == "flow" and plain.settings[MARKED][0][-1] == "points"


def test_a_mark_the_flow_reads_past_a_micro_expressions_size_keeps_the_takes_reading():
    take, flicker = brow_flicker_take()

    def reread(stretches):  # the flow reads the brows 3 mm higher still: no micro-expression moves that far
        ((first, last),) = stretches
        return {(first, last): 3.0 * flicker[first:last + 1] / np.abs(flicker).max()}

    marked = mark_event(take, ONSET, OFFSET, reread=reread)
    plain = mark_event(take, ONSET, OFFSET)
    np.testing.assert_allclose(marked.micro_mm, plain.micro_mm, atol=1e-6)  # laid once, as the take read it
    np.testing.assert_allclose(marked.deformation_mm(), take.deformation_mm(), atol=1e-4)


def test_the_region_is_the_one_that_rises_most_unless_named():
    take, _ = brow_flicker_take()
    assert strongest_region(take.deformation_mm(), ONSET, OFFSET) == "brows"
    named = mark_event(take, ONSET, OFFSET, "eyes")  # the lids sit under the brows' field too
    assert named.events[0].region == "eyes"


def test_marking_keeps_the_events_already_there():
    take, _ = brow_flicker_take()
    take.events = [MicroEvent(60, 64, 70, "mouth", 0.2, 0.7)]
    marked = mark_event(take, ONSET, OFFSET, "brows")
    assert [event.region for event in marked.events] == ["brows", "mouth"]  # by onset


@pytest.mark.parametrize("first, last, region, message", [
    (80, 95, None, "not within"),  # past the take's end
    (30, 31, None, "lasts"),  # 0.03 s: no micro-expression is this short
    (10, 40, None, "lasts"),  # 1 s: nor this long
    (30, 42, "ears", "no face region"),
    (60, 70, "brows", "nothing in frames 60-70 moves the brows"),  # a still span
])
def test_a_span_that_is_no_micro_expression_is_refused(first, last, region, message):
    take, _ = brow_flicker_take()
    with pytest.raises(MxrError, match=message):
        mark_event(take, first, last, region)


def test_a_mark_over_a_missing_face_or_an_event_there_or_a_large_motion_is_refused():
    take, _ = brow_flicker_take()
    take.valid[35] = False
    with pytest.raises(MxrError, match="without a face"):
        mark_event(take, ONSET, OFFSET)
    take, _ = brow_flicker_take()
    take.events = [MicroEvent(28, 33, 38, "brows", 0.5, 0.9)]
    with pytest.raises(MxrError, match="already covers frames 28-38"):
        mark_event(take, ONSET, OFFSET, "brows")
    large, _ = brow_flicker_take(peak_mm=8.0)  # 4.6 mm at the brows
    with pytest.raises(MxrError, match="more than a micro-expression"):
        mark_event(large, ONSET, OFFSET)


def run_cli(*arguments: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mxr.ops", "mark-event", *map(str, arguments)],
                          capture_output=True, text=True, timeout=120)


def test_the_command_writes_a_new_take_and_never_the_one_it_reads(tmp_path):
    take, _ = brow_flicker_take()
    take_path, out_path = tmp_path / "take.npz", tmp_path / "marked.npz"
    save_take(take, take_path)
    before = take_path.read_bytes()
    result = run_cli(take_path, "--frames", f"{ONSET}-{OFFSET}", "--out", out_path)
    assert result.returncode == 0, result.stderr
    assert "brows micro-expression over frames 30-42" in result.stderr
    assert "performer.mp4 is not there: the event is read from the take's points alone" in result.stderr
    assert [event.region for event in load_take(out_path).events] == ["brows"]
    refused = run_cli(take_path, "--frames", f"{ONSET}-{OFFSET}", "--out", take_path)
    assert refused.returncode == 2 and "it is the take file" in refused.stderr and "Traceback" not in refused.stderr
    bad = run_cli(take_path, "--frames", "60-70", "--out", tmp_path / "other.npz")
    assert bad.returncode == 2 and "nothing in frames 60-70 moves" in bad.stderr and "Traceback" not in bad.stderr
    assert take_path.read_bytes() == before and not (tmp_path / "other.npz").exists()
