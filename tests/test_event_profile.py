"""The micro-expression time course and fitting it to motion: against hand-built events."""
from dataclasses import replace

import numpy as np
import pytest

from mxr.models.network.event_profile import fit_event_timing, fit_pattern, micro_profile, smoothstep, span_baseline
from mxr.models.network import events
from mxr.models.network.events import (extract_events, micro_layer_mm, region_landmarks, region_units, residual_reach,
                                        without_blinks)
from mxr.models.network.features import EVENT_REGIONS, region_membership
from mxr.models.open_head import load_open_head
from mxr.ops.canonical import IRIS_LANDMARKS
from mxr.ops.take import LANDMARK_COUNT, MicroEvent


def test_smoothstep_is_flat_at_both_ends():
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(smoothstep(x), [0.0, 0.0, 0.5, 1.0, 1.0])
    step = 1e-4
    assert smoothstep(np.array([step]))[0] < 1e-7 and 1.0 - smoothstep(np.array([1.0 - step]))[0] < 1e-7


def test_micro_profile_shape_and_broadcasting():
    times = np.linspace(0.0, 1.0, 201)
    profile = micro_profile(times, 0.2, 0.3, 0.1, 0.6)  # (201,)
    assert (profile[times < 0.2] == 0).all() and (profile[times > 0.6] == 0).all()
    assert (profile[(times >= 0.3) & (times <= 0.4)] == 1).all()
    onsets, apexes = np.array([0.1, 0.2]), np.array([0.2, 0.35])
    grid = micro_profile(times[:, None], onsets, apexes, 0.0, np.array([0.5, 0.7]))  # (201, 2)
    for column in range(2):
        np.testing.assert_array_equal(grid[:, column], micro_profile(times, onsets[column], apexes[column], 0.0,
                                                                       [0.5, 0.7][column]))


def _event_motion(fps, onset_s, apex_s, hold_s, offset_s, frames, noise_mm, seed):
    """(frames, 40, 3) mm: a fixed pattern times the profile on a slow quadratic drift, plus white noise."""
    rng = np.random.default_rng(seed)
    times = np.arange(frames) / fps
    pattern = rng.normal(size=(40, 3)) * 0.3  # mm at the apex
    drift = rng.normal(size=(3, 40, 3)) * 0.2
    t = times / times[-1]
    motion = (micro_profile(times, onset_s, apex_s, hold_s, offset_s)[:, None, None] * pattern
              + drift[0] + t[:, None, None] * drift[1] + (t**2)[:, None, None] * drift[2])
    return motion + rng.normal(scale=noise_mm, size=motion.shape), pattern


@pytest.mark.parametrize("noise_mm", [0.0, 0.02])
def test_fit_recovers_the_timing_of_an_event_from_late_and_early_guesses(noise_mm):
    fps = 200.0
    onset_s, apex_s, hold_s, offset_s = 0.4125, 0.51, 0.02, 0.7375
    motion, pattern = _event_motion(fps, onset_s, apex_s, hold_s, offset_s, 240, noise_mm, seed=1)
    truth_onset, truth_offset = int(np.floor(onset_s * fps)), int(np.ceil(offset_s * fps))
    truth_apex = int(np.ceil(apex_s * fps))
    fit = fit_event_timing(motion[40:200], fps, 40, truth_onset + 9, truth_offset - 7)  # a detector's bounds
    tolerance = 1 if noise_mm == 0 else 2
    assert abs(fit.onset_frame - truth_onset) <= tolerance
    assert abs(fit.apex_frame - truth_apex) <= tolerance
    assert abs(fit.offset_frame - truth_offset) <= tolerance + 1
    assert np.abs(fit.pattern_mm - pattern).max() < 0.02 + 2 * noise_mm
    assert fit.explained > (0.99 if noise_mm == 0 else 0.5)


def test_a_pattern_under_any_cubic_drift_is_recovered_exactly():
    frames = 90
    times = np.arange(frames) / 100.0
    profile = micro_profile(times, 0.2, 0.3, 0.05, 0.6)  # (90,)
    rng = np.random.default_rng(4)
    pattern = rng.normal(size=(12, 3))
    t = np.linspace(-1.0, 1.0, frames)[:, None, None]
    drift = sum(rng.normal(size=(12, 3)) * t**power for power in range(4))  # (90, 12, 3) cubic in time
    np.testing.assert_allclose(fit_pattern(profile[:, None, None] * pattern + drift, profile), pattern, atol=1e-9)
    baseline = span_baseline(frames)
    np.testing.assert_allclose(baseline.T @ baseline, np.eye(baseline.shape[1]), atol=1e-12)  # orthonormal


def test_flat_motion_fits_nothing():
    assert fit_event_timing(np.zeros((60, 10, 3)), 100.0, 0, 10, 40) is None


def test_extract_events_refines_timing_at_high_frame_rates_only():
    regions = EVENT_REGIONS
    membership = region_membership(regions)
    brows = regions.index("brows")
    members = np.flatnonzero(membership[brows])
    for fps, refined in ((200.0, True), (30.0, False)):
        count = int(2 * fps)
        times = np.arange(count) / fps
        onset_s, apex_s, offset_s = 0.8, 0.9, 1.15
        motion = np.zeros((count, LANDMARK_COUNT, 3))
        motion[:, members, 1] = 0.6 * micro_profile(times, onset_s, apex_s, 0.0, offset_s)[:, None]
        logits = np.full((count, len(regions)), -6.0)
        late_onset, early_offset = int((onset_s + 0.03) * fps), int((offset_s - 0.03) * fps)  # the score's threshold
        logits[late_onset:early_offset + 1, brows] = 4.0
        (event,) = extract_events(logits, motion, fps, regions, membership)
        truth_onset = int(np.floor(onset_s * fps))
        if refined:
            assert abs(event.onset_frame - truth_onset) <= 1 and event.peak_mm == pytest.approx(0.6, abs=0.01)
        else:
            assert event.onset_frame == late_onset and event.offset_frame == early_offset


def _detection(count: int, region: int, first: int, last: int) -> np.ndarray:
    """(count, R) logits of a detector sure of one region over frames first..last."""
    logits = np.full((count, len(EVENT_REGIONS)), -5.0)
    logits[first:last + 1, region] = 5.0
    return logits


def test_the_micro_layer_is_each_event_s_time_course_times_its_action_units():
    fps, count = 100.0, 200
    regions = EVENT_REGIONS
    membership = region_membership(regions)
    mouth = regions.index("mouth")
    head = load_open_head()
    basis_mm = head.landmark_basis().astype(np.float64) * 1000.0  # (K, 478, 3)
    neutral_mm = head.landmark_positions().astype(np.float64) * 1000.0  # (478, 3)
    names = head.expression_names
    times = np.arange(count) / fps
    profile = micro_profile(times, 0.6, 0.7, 0.0, 0.95)  # (T,)
    # An asymmetric smile: two units, reaching past the mouth region into the cheeks.
    pattern = 0.06 * basis_mm[names.index("mouthSmileLeft")] + 0.02 * basis_mm[names.index("mouthSmileRight")]  # ~1 mm
    drift = np.linspace(0.0, 1.0, count)[:, None, None] * 0.2 * basis_mm[names.index("browInnerUp")]  # a slow macro motion
    noise = np.random.default_rng(0).normal(scale=0.005, size=(count, LANDMARK_COUNT, 3))
    motion = profile[:, None, None] * pattern + drift + noise
    (event,) = extract_events(_detection(count, mouth, 63, 92), motion, fps, regions, membership)  # 3 frames late, early
    layer = micro_layer_mm([event], motion, fps, regions, membership, basis_mm, neutral_mm)  # (T, 478, 3)
    error = np.linalg.norm(layer - profile[:, None, None] * pattern, axis=-1)
    assert error.max() < 0.1 * np.linalg.norm(pattern, axis=-1).max()
    assert not micro_layer_mm([], motion, fps, regions, membership, basis_mm, neutral_mm).any()  # no events, no layer
    # Five times larger, the same motion is no micro-expression: it stays in the macro layer.
    assert not micro_layer_mm([event], 5 * motion, fps, regions, membership, basis_mm, neutral_mm).any()



def open_head_mm() -> tuple[np.ndarray, np.ndarray]:
    """The open head's expression basis (K, 478, 3) and rest landmarks (478, 3), in mm."""
    head = load_open_head()
    return head.landmark_basis().astype(np.float64) * 1000.0, head.landmark_positions().astype(np.float64) * 1000.0


def test_residual_reach_falls_off_with_the_distance_from_the_region():
    neutral_mm = load_open_head().landmark_positions().astype(np.float64) * 1000.0  # (478, 3)
    members = region_landmarks(region_membership(EVENT_REGIONS)[EVENT_REGIONS.index("brows")])
    reach = residual_reach(neutral_mm, members, reach_mm=5.0, cutoff=2.5)  # (478,)
    for landmark in (0, 10, 100, 300, 470):  # against the distance to each member in turn
        distance = min(np.linalg.norm(neutral_mm[landmark] - neutral_mm[member]) for member in members)
        expected = np.exp(-0.5 * (distance / 5.0) ** 2) if distance <= 12.5 else 0.0
        assert reach[landmark] == pytest.approx(expected)
    assert (reach[members] == 1.0).all()
    assert 0 < np.count_nonzero(reach) < LANDMARK_COUNT  # the brows and around them, not the face


def test_the_micro_layer_keeps_local_motion_the_units_cannot_show():
    """A real face's micro motion need not lie in the open head's units: a brow point pulled
    sideways (no brow unit moves it so) stays in the layer near the brows, and nothing of the
    motion far from them is let in."""
    fps, count = 100.0, 200
    regions = EVENT_REGIONS
    membership = region_membership(regions)
    basis_mm, neutral_mm = open_head_mm()
    brows = region_landmarks(membership[regions.index("brows")])
    centre = neutral_mm[brows[0]]
    falloff = np.exp(-0.5 * (np.linalg.norm(neutral_mm - centre, axis=1) / 8.0) ** 2)  # (478,)
    pattern = falloff[:, None] * np.array([0.8, 0.0, 0.0])  # (478, 3) mm, sideways
    profile = micro_profile(np.arange(count) / fps, 0.6, 0.7, 0.0, 0.95)
    from_brows = np.linalg.norm(neutral_mm[:, None] - neutral_mm[None, brows], axis=-1).min(axis=1)  # (478,) mm
    far = from_brows > 20.0  # the mouth, the chin, the jaw
    noise = np.random.default_rng(1).normal(scale=0.2, size=(count, LANDMARK_COUNT, 3))
    motion = profile[:, None, None] * pattern + noise * far[None, :, None]  # loud, but far away
    event = MicroEvent(onset_frame=60, apex_frame=70, offset_frame=95, region="brows", peak_mm=0.8, confidence=1.0)
    layer = micro_layer_mm([event], motion, fps, regions, membership, basis_mm, neutral_mm)  # (T, 478, 3)

    def kept(landmarks: np.ndarray) -> float:  # share of the pattern the layer shows at its apex
        return float(np.sum(layer[70, landmarks] * pattern[landmarks]) / np.sum(pattern[landmarks] ** 2))

    moved = falloff >= 0.5
    assert kept(moved & (from_brows == 0)) > 0.95  # on the brows, all of it
    assert kept(moved) > 0.6  # around them, as far as the reach goes
    assert np.abs(layer[:, far]).max() < 0.02  # the loud motion there (0.2 mm) is not let in


def test_the_micro_layer_places_an_event_between_frames_at_low_frame_rates(monkeypatch):
    """At 25 fps an event's frames (floor of its onset, ceiling of its offset) place its ends
    only within a frame: the layer's fit finds them between the frames."""
    fps, count = 25.0, 50
    regions = EVENT_REGIONS
    membership = region_membership(regions)
    basis_mm, neutral_mm = open_head_mm()
    names = load_open_head().expression_names
    profile = micro_profile(np.arange(count) / fps, 0.61, 0.71, 0.0, 0.97)  # onset 15.25, offset 24.25 frames
    pattern = 0.05 * (basis_mm[names.index("mouthSmileLeft")] + basis_mm[names.index("mouthSmileRight")])
    motion = profile[:, None, None] * pattern
    event = MicroEvent(onset_frame=15, apex_frame=18, offset_frame=25, region="mouth", peak_mm=1.0, confidence=1.0)

    def layer_error() -> float:  # mean over the event's frames and landmarks, mm
        layer = micro_layer_mm([event], motion, fps, regions, membership, basis_mm, neutral_mm)
        return float(np.linalg.norm(layer - motion, axis=-1)[15:26].mean())

    between_frames = layer_error()
    monkeypatch.setattr(events, "LAYER_SLACK_FRAMES", 0.0)
    on_frames = layer_error()
    signal = float(np.linalg.norm(motion, axis=-1)[15:26].mean())
    assert between_frames < 0.05 * signal < on_frames / 2


def test_region_landmarks_are_skin_only():
    membership = region_membership(EVENT_REGIONS)
    for row in membership:
        members = region_landmarks(row)
        assert members.max() < 468  # the irises move with the gaze
        np.testing.assert_array_equal(members, [n for n in range(468) if row[n] > 0])
    assert sum(len(region_landmarks(row)) for row in membership) == 468  # every skin landmark in one region


def test_the_irises_pool_with_the_eyes_they_sit_in():
    membership = region_membership(EVENT_REGIONS)  # (R, 478)
    assert (membership[:, IRIS_LANDMARKS] > 0).sum(axis=0).tolist() == [1] * len(IRIS_LANDMARKS)  # one region each
    assert (membership[EVENT_REGIONS.index("eyes"), IRIS_LANDMARKS] > 0).all()  # the gaze is no jaw motion
    np.testing.assert_allclose(membership.sum(axis=1), 1.0, rtol=1e-6)  # each row still averages its members

def test_region_units_are_those_that_move_the_region_most():
    head = load_open_head()
    basis_mm = head.landmark_basis().astype(np.float64) * 1000.0  # (K, 478, 3)
    names = head.expression_names
    members = region_landmarks(region_membership(EVENT_REGIONS)[EVENT_REGIONS.index("mouth")])
    units = region_units(basis_mm, members, share=0.7)
    for k, name in enumerate(names):  # against a loop over the units
        moves = np.linalg.norm(basis_mm[k, :468], axis=-1)
        assert units[k] == (moves.max() > 0 and moves[members].max() >= 0.7 * moves.max()), name
    assert units[names.index("mouthSmileLeft")] and not units[names.index("eyeBlinkLeft")]
    assert not units[names.index("browInnerUp")]


def test_a_blink_during_a_mouth_event_stays_out_of_its_micro_layer():
    fps, count = 100.0, 200
    regions = EVENT_REGIONS
    membership = region_membership(regions)
    mouth, eyes = regions.index("mouth"), regions.index("eyes")
    head = load_open_head()
    basis_mm = head.landmark_basis().astype(np.float64) * 1000.0
    neutral_mm = head.landmark_positions().astype(np.float64) * 1000.0  # (478, 3)
    names = head.expression_names
    times = np.arange(count) / fps
    profile = micro_profile(times, 0.6, 0.7, 0.0, 0.95)
    pattern = 0.05 * (basis_mm[names.index("mouthSmileLeft")] + basis_mm[names.index("mouthSmileRight")])
    blink = np.sin(np.pi * np.clip((times - 0.65) / 0.2, 0.0, 1.0)) ** 2  # a blink over the smile's apex
    blink_mm = 0.9 * (basis_mm[names.index("eyeBlinkLeft")] + basis_mm[names.index("eyeBlinkRight")])
    assert np.linalg.norm(blink_mm, axis=-1).max() > 3.0  # larger than any micro-expression
    motion = profile[:, None, None] * pattern + blink[:, None, None] * blink_mm
    (event,) = extract_events(_detection(count, mouth, 63, 92), motion, fps, regions, membership)
    layer = micro_layer_mm([event], motion, fps, regions, membership, basis_mm, neutral_mm)
    eye_landmarks = region_landmarks(membership[eyes])
    assert np.abs(layer[:, eye_landmarks]).max() < 0.05  # no blink in the micro layer
    error = np.linalg.norm(layer - profile[:, None, None] * pattern, axis=-1)
    assert error.max() < 0.15 * np.linalg.norm(pattern, axis=-1).max()  # the smile is kept


def test_a_blink_is_no_micro_expression_but_a_faint_lid_flicker_is():
    head = load_open_head()
    names = head.expression_names
    basis_mm = head.landmark_basis().astype(np.float64) * 1000.0
    neutral_mm = head.landmark_positions().astype(np.float64) * 1000.0
    blink_mm = basis_mm[names.index("eyeBlinkLeft")] + basis_mm[names.index("eyeBlinkRight")]
    motion = np.zeros((60, LANDMARK_COUNT, 3))
    motion[10:16] = 0.9 * blink_mm  # a blink: the lids nearly shut
    motion[40:46] = 0.1 * blink_mm  # a lid flicker
    motion[22:26] = 0.9 * blink_mm  # the eyes shut during a mouth event: that event is no blink
    found = [MicroEvent(9, 12, 17, "eyes", 3.0, 0.99), MicroEvent(39, 42, 47, "eyes", 0.4, 0.9),
              MicroEvent(20, 23, 28, "mouth", 0.5, 0.9)]
    assert without_blinks(found, neutral_mm, motion) == found[1:]


def test_pattern_activation_reads_the_apex_pattern_over_a_baseline():
    rng = np.random.default_rng(3)
    pattern = rng.normal(size=(12, 3))  # mm at the apex
    profile = np.array([0.0, 0.0, 0.3, 1.0, 0.4, 0.0, 0.0, 0.5])
    offset_mm = rng.normal(size=(12, 3))  # where the region rests: not part of the pattern
    motion = offset_mm + profile[:, None, None] * pattern  # (8, 12, 3)
    activation = events.pattern_activation(motion, 1, 3, 5)
    np.testing.assert_allclose(activation - activation[0], profile, atol=1e-12)
    assert not events.pattern_activation(np.zeros((8, 12, 3)), 1, 3, 5).any()


def test_running_median_against_a_plain_loop():
    values = np.random.default_rng(4).normal(size=23)
    padded = np.pad(values, 3, mode="edge")
    expected = [np.median(padded[k:k + 7]) for k in range(len(values))]
    np.testing.assert_allclose(events.running_median(values, 7), expected)


def _region_motion(regions, membership, region, course):
    """(T, 478, 3) mm: one region's landmarks moving up by ``course`` (T,) mm."""
    motion = np.zeros((len(course), LANDMARK_COUNT, 3))
    motion[:, region_landmarks(membership[regions.index(region)]), 1] = course[:, None]
    return motion


def test_an_event_that_stands_out_and_returns_is_kept_and_talking_or_a_step_is_not():
    regions = EVENT_REGIONS
    membership = region_membership(regions)
    fps, frames = 30.0, 120
    times = np.arange(frames) / fps
    bump = 0.8 * np.sin(np.pi * np.clip((times - 2.0) / 0.3, 0.0, 1.0)) ** 2  # 0.3 s, 0.8 mm, apex at 2.15 s
    event = MicroEvent(59, 64, 69, "brows", 0.8, 0.9)
    noise = np.random.default_rng(5).normal(scale=0.02, size=frames)  # landmark jitter, mm
    quiet = _region_motion(regions, membership, "brows", bump + noise)
    assert events.standing_out([event], quiet, fps, regions, membership) == [event]
    talking = 0.8 * np.sin(2 * np.pi * 4.0 * times)  # the brows moving as much all the time
    busy = _region_motion(regions, membership, "brows", bump + talking + noise)
    assert events.standing_out([event], busy, fps, regions, membership) == []
    step = 0.8 * np.clip((times - 2.0) / 0.15, 0.0, 1.0)  # a macro expression setting in: it stays
    onset = _region_motion(regions, membership, "brows", step + noise)
    assert events.standing_out([event], onset, fps, regions, membership) == []


def test_an_event_the_skin_shows_is_kept_and_one_only_mediapipes_points_show_is_not():
    regions = EVENT_REGIONS
    membership = region_membership(regions)
    times = np.arange(120) / 30.0
    bump = 0.8 * np.sin(np.pi * np.clip((times - 2.0) / 0.3, 0.0, 1.0)) ** 2  # 0.3 s, 0.8 mm, apex at 2.15 s
    slope = 0.5 * times  # a slow expression under it: the size is read above the line from onset to offset
    event = MicroEvent(59, 64, 69, "brows", 0.8, 0.9)
    landmarks = _region_motion(regions, membership, "brows", bump + slope)
    assert events.event_size_mm(event, landmarks, region_landmarks(membership[0])) == pytest.approx(bump[64])
    skin_more = _region_motion(regions, membership, "brows", 1.2 * bump)  # the skin-glued points read more of it
    skin_some = _region_motion(regions, membership, "brows", (events.SEEN_ON_SKIN + 0.02) * bump)
    skin_little = _region_motion(regions, membership, "brows", 0.3 * bump + slope)  # a jaw moving MediaPipe's brows
    assert events.seen_on_skin([event], skin_more, landmarks, regions, membership) == [event]
    assert events.seen_on_skin([event], skin_some, landmarks, regions, membership) == [event]
    assert events.seen_on_skin([event], skin_little, landmarks, regions, membership) == []
    mouth_event = MicroEvent(59, 64, 69, "mouth", 0.8, 0.9)  # judged on its own region: the brows' motion is not its
    assert events.seen_on_skin([mouth_event], skin_little, landmarks, regions, membership) == [mouth_event]


def test_prominent_peaks_against_scipy():
    from scipy.signal import find_peaks  # the reference; the engine does without scipy
    rng = np.random.default_rng(11)
    for trial in range(400):
        values = rng.normal(size=int(rng.integers(3, 80)))
        if trial % 2:
            values = values.cumsum()  # a wandering signal: peaks on slopes, bases far away
        prominence = float(rng.uniform(0.0, 2.0))
        np.testing.assert_array_equal(events.prominent_peaks(values, prominence), find_peaks(values, prominence=prominence)[0])


def test_prominent_peaks_of_a_plateau_and_a_step():
    assert list(events.prominent_peaks(np.array([0.0, 1.0, 1.0, 1.0, 0.0]), 0.5)) == [1]
    assert list(events.prominent_peaks(np.array([0.0, 1.0, 1.0, 2.0, 0.0]), 0.5)) == [3]  # the step up is no peak
    assert list(events.prominent_peaks(np.array([0.0, 1.0, 0.8, 2.0, 0.0]), 0.5)) == [3]  # 1.0 rises 0.2 over its base


def test_jaw_opening_is_the_chin_s_distance_from_the_upper_lip_over_the_neutral():
    neutral = np.zeros((LANDMARK_COUNT, 3))
    neutral[events.CHIN] = (0.0, -30.0, 0.0)
    motion = np.zeros((3, LANDMARK_COUNT, 3))
    motion[1, events.CHIN, 1] = -4.0  # the jaw drops 4 mm
    motion[2, events.CHIN, 0] = 40.0  # the chin 40 mm sideways: 50 mm from the lip
    np.testing.assert_allclose(events.jaw_opening_mm(motion, neutral), [0.0, 4.0, 20.0])


def _talking_motion(fps: float, frames: int, syllable_times_s: list[float], jaw_mm: float = 2.0) -> np.ndarray:
    """(T, 478, 3) mm: the chin dropping ``jaw_mm`` for 0.15 s at each syllable time."""
    times = np.arange(frames) / fps
    motion = np.zeros((frames, LANDMARK_COUNT, 3))
    for start in syllable_times_s:
        motion[:, events.CHIN, 1] -= jaw_mm * np.sin(np.pi * np.clip((times - start) / 0.15, 0.0, 1.0)) ** 2
    return motion


def test_a_mouth_event_on_a_syllable_of_speech_is_dropped_and_others_kept():
    fps, neutral = 30.0, np.zeros((LANDMARK_COUNT, 3))
    neutral[events.CHIN] = (0.0, -30.0, 0.0)
    on_syllable = MicroEvent(59, 62, 66, "mouth", 0.8, 0.9)  # 1.97-2.2 s, the jaw peaks at 2.075 s
    talking = _talking_motion(fps, 150, [1.3, 1.6, 2.0, 2.4, 2.75])
    assert events.during_speech([on_syllable], talking, neutral, fps) == []
    jaw_event = replace(on_syllable, region="jaw")
    assert events.during_speech([jaw_event], talking, neutral, fps) == []
    brow_event = replace(on_syllable, region="brows")  # speech moves no brows
    assert events.during_speech([brow_event], talking, neutral, fps) == [brow_event]
    between = MicroEvent(84, 86, 88, "mouth", 0.8, 0.9)  # 2.8-2.93 s; a jaw peak counts within 0.1 s: frames 81-91
    before_it = 80.0 / fps - 0.075  # a syllable whose jaw peaks at frame 80 (a syllable peaks 0.075 s after it starts)
    assert events.during_speech([between], _talking_motion(fps, 150, [1.3, 1.6, 2.0, before_it, 3.4]), neutral, fps) \
        == [between]
    at_its_edge = before_it + 1.0 / fps  # ... at frame 81
    assert events.during_speech([between], _talking_motion(fps, 150, [1.3, 1.6, 2.0, at_its_edge, 3.4]), neutral, fps) \
        == []
    first_frames = MicroEvent(0, 2, 5, "mouth", 0.8, 0.9)  # a clip that starts mid-sentence, and one that ends in one
    assert events.during_speech([first_frames], _talking_motion(fps, 150, [0.0, 0.3, 0.6]), neutral, fps) == []
    last_frames = MicroEvent(144, 146, 149, "mouth", 0.8, 0.9)
    assert events.during_speech([last_frames], _talking_motion(fps, 150, [4.2, 4.5, 4.83]), neutral, fps) == []
    alone = _talking_motion(fps, 150, [2.0, 2.4])  # one more opening within a second: no speech
    assert events.during_speech([on_syllable], alone, neutral, fps) == [on_syllable]
    faint = _talking_motion(fps, 150, [1.3, 1.6, 2.0, 2.4, 2.75], jaw_mm=0.8 * events.SYLLABLE_MM)
    assert events.during_speech([on_syllable], faint, neutral, fps) == [on_syllable]


def test_frames_without_a_face_are_no_syllables():
    fps, neutral = 30.0, np.zeros((LANDMARK_COUNT, 3))
    neutral[events.CHIN] = (0.0, -30.0, 0.0)
    event = MicroEvent(59, 62, 66, "mouth", 0.8, 0.9)
    held_open = _talking_motion(fps, 150, [2.0])  # one opening at 2 s, on a jaw held 2 mm open
    held_open[:, events.CHIN, 1] -= 2.0
    held_open[[40, 45, 80, 85]] = np.nan  # the face lost on four frames of the second around it
    assert events.during_speech([event], held_open, neutral, fps) == [event]
    assert events.during_speech([event], np.full_like(held_open, np.nan), neutral, fps) == [event]
