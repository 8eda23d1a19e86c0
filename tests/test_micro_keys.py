"""Taking a take's micro layer apart into one shape and one time course per event."""
import numpy as np

from conftest import take_from_deformation
from mxr.models.micro_keys import MICRO_LAYER_FROM_EVENTS, SPAN_MARGIN_S, components_mm, micro_components
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
