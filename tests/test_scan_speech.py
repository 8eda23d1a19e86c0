"""The talking scan face: speech and a slow smile only, syllable-fast on the jaw, a talker's head; and
micro-expressions planted in it."""
from pathlib import Path

import numpy as np
import pytest

from mxr.models.scan_actions import ACTION_NAMES
from mxr.models.scan_micro import (EVERY_S, INTENSITY, LEAD_IN_S, MICRO_ACTIONS, MICRO_S, planted_action, planted_key,
                                   with_micro_events)
from mxr.models.scan_speech import LIP_SHAPES, MAX_ANGLES_DEG, SYLLABLE_S, plan_talking_clip


def test_a_talking_clip_moves_the_jaw_syllable_by_syllable_and_nothing_but_speech_and_a_smile():
    clip = plan_talking_clip(20.0, 25.0, np.random.default_rng(0))
    assert clip.intensities.shape == (500, len(ACTION_NAMES)) and clip.head_angles_rad.shape == (500, 3)
    moving = {name for name, column in zip(ACTION_NAMES, clip.intensities.T) if column.max() > 0.0}
    assert moving <= {"jaw_drop", "smile", *LIP_SHAPES} and {"jaw_drop", "smile"} <= moving
    assert 0.0 <= clip.intensities.min() and clip.intensities.max() <= 1.0
    jaw = clip.intensities[:, ACTION_NAMES.index("jaw_drop")]
    assert jaw[0] == 0.0  # the clip starts at rest
    opens = np.flatnonzero((jaw[1:] > 0.05) & (jaw[:-1] <= 0.05))  # the jaw's openings
    assert 20 < len(opens) < 20.0 / SYLLABLE_S[0]  # syllables, a few a second, with pauses between phrases
    assert 0.2 < np.mean(jaw > 0.02) < 0.8
    assert np.all(np.degrees(np.abs(clip.head_angles_rad)) <= np.array(MAX_ANGLES_DEG) + 1e-9)


def test_the_same_seed_plans_the_same_clip_and_another_seed_another():
    first, again = (plan_talking_clip(5.0, 30.0, np.random.default_rng(4)) for _ in range(2))
    np.testing.assert_array_equal(first.intensities, again.intensities)
    other = plan_talking_clip(5.0, 30.0, np.random.default_rng(5))
    assert not np.array_equal(first.intensities, other.intensities)


@pytest.fixture
def open_loop(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import open_loop
    return open_loop


def test_the_open_loop_check_talks_in_each_split_with_a_seed_of_its_own(open_loop):
    for spec in open_loop.TALKING_CLIPS:
        plan = open_loop.scan_clip_plan(spec)
        expected = plan_talking_clip(spec.seconds, spec.fps, np.random.default_rng(spec.seed))
        if isinstance(spec, open_loop.PlantedTalkingClipSpec):
            expected = with_micro_events(expected, np.random.default_rng(spec.seed + 1))
        np.testing.assert_array_equal(plan.intensities, expected.intensities)
    dev = [spec for spec in open_loop.TALKING_CLIPS if spec.split == "dev"]
    held_out = [spec for spec in open_loop.TALKING_CLIPS if spec.split == "held-out"]
    assert dev and held_out
    every_seed = [spec.seed for spec in open_loop.SCAN_CLIPS + open_loop.TALKING_CLIPS]
    assert len(set(every_seed)) == len(every_seed)


def test_micro_expressions_planted_in_a_talking_clip_are_short_faint_and_recorded():
    talking = plan_talking_clip(20.0, 25.0, np.random.default_rng(1))
    planted = with_micro_events(talking, np.random.default_rng(2))
    added = planted.intensities - talking.intensities  # (T, A)
    events = {key: frames for key, frames in planted.hold_frames.items() if planted_action(key)}
    assert 4 <= len(events) <= 20.0 / EVERY_S[0]
    covered = np.zeros(len(added), bool)
    for key, frames in events.items():
        action = planted_action(key)
        assert action in MICRO_ACTIONS and frames[0] >= LEAD_IN_S * planted.fps
        assert MICRO_S[0] * planted.fps - 2 <= len(frames) <= MICRO_S[1] * planted.fps + 1  # 0.2-0.5 s
        assert 0.0 < added[frames, ACTION_NAMES.index(action)].max() <= INTENSITY[1]
        covered[frames] = True
    assert np.all(added[~covered] == 0.0)  # nothing else changed
    assert planted_action("smile") is None and planted_action(planted_key(3, "brow_raise")) == "brow_raise"
