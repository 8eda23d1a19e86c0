"""Taking a take's micro layer apart into one shape and one time course per event, and retuning one."""
import numpy as np
import pytest

from conftest import take_from_deformation
from mxr.models.micro_keys import (MICRO_LAYER_FROM_EVENTS, SPAN_MARGIN_S, MicroTuning, components_mm,
                                   micro_components, retune_keys, scaled_intensities, tuned_frames)
from mxr.models.network.event_profile import micro_profile
from mxr.ops.take import LANDMARK_COUNT, MicroEvent


def two_event_take(fps=100.0, frames=120):
    """A take whose micro layer is two events (profile x pattern) with a face lost on frame 30."""
    rng = np.random.default_rng(4)
    times = np.arange(frames) / fps
    patterns = rng.normal(scale=0.3, size=(2, LANDMARK_COUNT, 3))  # mm at the apex
    profiles = np.stack([micro_profile(times, 0.15, 0.25, 0.0, 0.45), micro_profile(times, 0.7, 0.78, 0.02, 1.0)])
    micro = np.einsum("et,elc->tlc", profiles, patterns)
    valid = np.ones(frames, bool)
    valid[30] = False
    take = take_from_deformation(np.zeros((LANDMARK_COUNT, 3)), np.zeros_like(micro), micro,
                                 np.repeat(np.eye(3)[None], frames, axis=0), valid,
                                 np.zeros((frames, LANDMARK_COUNT, 3)), "/nonexistent.mp4", fps)
    take.events = [MicroEvent(15, 25, 45, "mouth", 0.5, 0.9), MicroEvent(70, 78, 100, "brows", 0.4, 0.8)]
    take.settings = {"network": {"micro_layer": MICRO_LAYER_FROM_EVENTS}}
    return take, patterns, profiles


def test_each_event_gets_its_pattern_and_its_time_course():
    take, patterns, profiles = two_event_take()
    components = micro_components(take)
    assert [(c.region, c.apex_frame) for c in components] == [("mouth", 25), ("brows", 78)]
    margin = int(np.ceil(SPAN_MARGIN_S * take.fps))
    for component, pattern, profile, event in zip(components, patterns, profiles, take.events):
        np.testing.assert_allclose(component.pattern_mm, pattern, atol=1e-5)  # float32 layer
        assert (component.first_frame, component.last_frame) == (event.onset_frame - margin, event.offset_frame + margin)
        span = np.arange(component.first_frame, component.last_frame + 1)
        inside = span[take.valid[span]]
        np.testing.assert_allclose(component.weights[inside], profile[inside], atol=1e-5)
        outside = np.setdiff1d(np.flatnonzero(take.valid), span)
        assert (component.weights[outside] == 0).all()
    assert np.isnan(components[0].weights[30])  # no face: no weight
    rebuilt = components_mm(components, take.frame_count)
    np.testing.assert_allclose(rebuilt[take.valid], take.micro_mm[take.valid], atol=1e-5)


def test_only_a_micro_layer_built_from_the_events_is_taken_apart():
    take, _, _ = two_event_take()
    take.settings = {"network": {"micro_layer": "network"}}  # an earlier network's own micro output
    assert micro_components(take) == []
    take, _, _ = two_event_take()
    take.micro_mm[25] = 0.0  # the first event's apex frame has no micro motion: no shape for it
    assert [c.region for c in micro_components(take)] == ["brows"]


def test_each_component_keeps_the_event_it_was_taken_from():
    take, _, _ = two_event_take()
    assert [component.event for component in micro_components(take)] == take.events


def test_tuned_frames_move_about_the_captured_apex():
    frames = np.array([10.0, 20.0, 25.0])
    np.testing.assert_allclose(tuned_frames(frames, 20.0, MicroTuning()), frames)
    np.testing.assert_allclose(tuned_frames(frames, 20.0, MicroTuning(shift_frames=3.0)), [13.0, 23.0, 28.0])
    np.testing.assert_allclose(tuned_frames(frames, 20.0, MicroTuning(stretch=2.0)), [0.0, 20.0, 30.0])
    np.testing.assert_allclose(tuned_frames(frames, 20.0, MicroTuning(shift_frames=-2.0, stretch=0.5)),
                               [13.0, 18.0, 20.5])


def test_retuning_goes_from_one_tuning_to_another_whatever_came_between():
    rng = np.random.default_rng(2)
    frames, values = np.sort(rng.uniform(0, 40, 9)), rng.normal(size=9)
    apex = 17.0
    first, second = MicroTuning(1.5, 4.0, 0.8), MicroTuning(0.4, -6.0, 2.5)
    # Straight from the capture to ``second``, or through ``first``: the same keys.
    direct = retune_keys(frames, values, apex, MicroTuning(), second)
    via_first = retune_keys(*retune_keys(frames, values, apex, MicroTuning(), first), apex, first, second)
    np.testing.assert_allclose(via_first[0], direct[0], atol=1e-9)
    np.testing.assert_allclose(via_first[1], direct[1], atol=1e-12)
    # What ``second`` does, written out: values x 0.4, times about the apex x 2.5, then 6 frames earlier.
    np.testing.assert_allclose(direct[0], apex - 6.0 + (frames - apex) * 2.5)
    np.testing.assert_allclose(direct[1], values * 0.4)
    # And back to the capture.
    back = retune_keys(*direct, apex, second, MicroTuning())
    np.testing.assert_allclose(back[0], frames, atol=1e-9)
    np.testing.assert_allclose(back[1], values, atol=1e-12)


def test_retuning_carries_a_hand_edit_along():
    frames, values = np.array([10.0, 12.0, 14.0]), np.array([0.0, 1.0, 0.0])
    tuned = retune_keys(frames, values, 12.0, MicroTuning(), MicroTuning(intensity=2.0, shift_frames=5.0))
    edited_values = tuned[1].copy()
    edited_values[1] = 3.0  # the animator drags the apex key up by hand
    back_frames, back_values = retune_keys(tuned[0], edited_values, 12.0, MicroTuning(intensity=2.0, shift_frames=5.0),
                                           MicroTuning())
    np.testing.assert_allclose(back_frames, frames)
    np.testing.assert_allclose(back_values, [0.0, 1.5, 0.0])  # the edit, at the captured scale


def test_a_tuning_must_keep_the_micro_expression():
    for bad in ({"intensity": 0.0}, {"stretch": 0.0}, {"intensity": -1.0}):
        with pytest.raises(ValueError):
            MicroTuning(**bad)


def test_scaled_intensities_count_only_what_the_limits_held():
    values, held = scaled_intensities(np.float32([1.1, 0.8, 4.0, 0.02]), 1.5, 0.01, 10.0)
    np.testing.assert_allclose(values, [1.65, 1.2, 6.0, 0.03], rtol=1e-6)
    assert held == 0  # float32 inputs times 1.5 are not "held" for rounding
    values, held = scaled_intensities([3.0, 8.0, 0.03], 2.0, 0.05, 10.0)
    np.testing.assert_allclose(values, [6.0, 10.0, 0.06])
    assert held == 1
    _, held = scaled_intensities([0.02], 0.5, 0.05, 10.0)
    assert held == 1
