"""The synthetic generator: its ground truth agrees with its observations, its layers keep their
promises (event timing, amplitude, region; detail outside the basis), it is deterministic, its take
is a valid take, and its noise follows the measured noise model."""
from __future__ import annotations

import numpy as np
import pytest

from mxr.models.network.synthetic import (
    NOISE_GROUPS,
    SPEECH_UNITS,
    NoiseModel,
    SyntheticConfig,
    align_to_truth,
    detail_complement,
    displacements_to_truth,
    expression_landmark_basis_mm,
    generate_dataset,
    generate_sequence,
    landmark_regions,
    load_noise_model,
    speech_coefficients,
)
from mxr.models.open_head import load_open_head
from mxr.ops.canonical import image_to_camera
from mxr.ops.crops import apply_affine
from mxr.ops.take import load_take, save_take


@pytest.fixture(scope="module")
def head():
    return load_open_head()


@pytest.fixture(scope="module")
def clean(head):
    """A noise-free sequence with several micro events."""
    config = SyntheticConfig(noise=NoiseModel.none(), duration_range_s=(4.0, 4.0), micro_rate_per_s=(2.0, 2.0))
    return generate_sequence(head, config, np.random.default_rng(7))


def test_noise_free_landmarks_are_the_projected_truth(clean):
    canonical = clean.truth_neutral_mm + clean.truth_deformation_mm()  # (T, 478, 3) mm
    camera = clean.truth_scale_px_per_mm[:, None, None] * np.einsum("tij,tnj->tni", clean.truth_head_rotation, canonical)
    expected = image_to_camera(camera + clean.truth_head_translation_px[:, None, :])
    np.testing.assert_allclose(clean.take.landmarks_px, expected, atol=2e-3)  # float32 px


def test_noise_free_flow_is_the_motion_between_crops(clean):
    take = clean.take
    in_crop = np.stack([apply_affine(take.crop_from_image[t].astype(np.float64), take.landmarks_px[t, :, :2])
                        for t in range(take.frame_count)])  # (T, 478, 2) crop px
    assert np.isnan(take.flow_at_landmarks_px[0]).all()
    np.testing.assert_allclose(take.flow_at_landmarks_px[1:], in_crop[1:] - in_crop[:-1], atol=2e-3)
    assert take.flow_consistent[1:].all()


def test_noise_free_baseline_matches_the_truth_after_alignment(clean):
    take = clean.take
    alignment = align_to_truth(take.neutral_mm, clean.truth_neutral_mm)
    neutral = alignment.apply(take.neutral_mm[None].astype(np.float64))[0]
    assert np.abs(neutral - clean.truth_neutral_mm).max() < 1e-3
    estimate = displacements_to_truth(take.macro_mm.astype(np.float64), alignment)
    error = np.linalg.norm(estimate - clean.truth_deformation_mm(), axis=2)  # (T, 478) mm
    assert np.median(error) < 0.5  # what remains is the baseline's rigid fit absorbing expression


def test_micro_events_keep_their_promises(head, clean):
    events = clean.truth_events
    assert len(events) >= 3
    fps = clean.take.fps
    config = SyntheticConfig(noise=NoiseModel.none())
    regions = landmark_regions(head)
    magnitude = np.linalg.norm(clean.truth_micro_mm, axis=2)  # (T, 478) mm
    inside = np.zeros(clean.take.frame_count, bool)
    for event in events:
        duration = (event.offset_frame - event.onset_frame) / fps
        assert config.micro_duration_s[0] - 1e-9 <= duration <= config.micro_duration_s[1] + 2.0 / fps
        assert event.onset_frame < event.apex_frame < event.offset_frame
        assert config.micro_peak_mm[0] * 0.9 <= event.peak_mm <= config.micro_peak_mm[1]
        span = magnitude[event.onset_frame:event.offset_frame + 1]
        assert span.max() == pytest.approx(event.peak_mm, rel=1e-6)
        assert span[event.apex_frame - event.onset_frame].max() == pytest.approx(event.peak_mm, rel=1e-6)
        assert magnitude[event.apex_frame, regions[event.region]].max() >= 0.7 * event.peak_mm  # localised
        inside[event.onset_frame:event.offset_frame + 1] = True
    assert np.all(magnitude[~inside] < 1e-9)  # no micro motion outside the events
    assert np.all(np.diff([event.onset_frame for event in events]) > 0)


def test_macro_only_has_no_micro(head):
    config = SyntheticConfig(noise=NoiseModel.none(), duration_range_s=(2.0, 2.0), macro_only=True)
    sequence = generate_sequence(head, config, np.random.default_rng(3))
    assert sequence.truth_events == [] and not sequence.truth_micro_mm.any()


def test_speech_moves_jaw_and_lips_at_syllable_rate_inside_one_stretch(head):
    config = SyntheticConfig(fps_range=(100.0, 100.0), duration_range_s=(6.0, 6.0))
    times_s = np.arange(600) / 100.0
    names = head.expression_names
    lip_units = [names.index(name) for name in SPEECH_UNITS]
    other_units = np.setdiff1d(np.arange(len(names)), lip_units + [names.index("jawOpen")])
    for seed in range(4):
        coefficients = speech_coefficients(head, times_s, config, np.random.default_rng(seed))  # (T, K)
        assert not coefficients[:, other_units].any()
        jaw = coefficients[:, names.index("jawOpen")]
        talking = np.flatnonzero(jaw > 1e-9)
        assert talking[0] >= 50  # not in the 0.5 s lead-in
        assert (talking[-1] - talking[0]) / 100.0 >= 0.3 * 5.5 - 0.2
        assert np.all(np.abs(coefficients[talking[-1] + 1:]) < 1e-9)  # back to rest
        assert config.speech_jaw_open[0] * 0.99 <= jaw.max() <= config.speech_jaw_open[1]
        # Syllables: the jaw's turns (local extrema) come 3-6 times a second, within the draws' jitter.
        turns = np.flatnonzero(np.diff(np.sign(np.diff(jaw[talking[0]:talking[-1]]))) != 0)
        rate = len(turns) / ((talking[-1] - talking[0]) / 100.0)
        assert 1.5 <= rate <= 7.0


def test_speech_is_macro_and_off_by_default(head):
    quiet = generate_sequence(head, SyntheticConfig(duration_range_s=(3.0, 3.0)), np.random.default_rng(4))
    talking = generate_sequence(head, SyntheticConfig(duration_range_s=(3.0, 3.0), speech_probability=1.0),
                                np.random.default_rng(4))
    jaw = head.expression_names.index("jawOpen")
    assert np.abs(np.diff(talking.truth_macro_coefficients[:, jaw])).max() > 0.01
    np.testing.assert_array_equal(talking.truth_neutral_mm, quiet.truth_neutral_mm)
    basis = expression_landmark_basis_mm(head)
    np.testing.assert_allclose(talking.truth_macro_mm, np.tensordot(talking.truth_macro_coefficients, basis, axes=1))


def test_layers_are_their_coefficients_and_detail_is_outside_the_basis(head, clean):
    basis = expression_landmark_basis_mm(head)  # (K, 478, 3)
    np.testing.assert_allclose(clean.truth_macro_mm, np.tensordot(clean.truth_macro_coefficients, basis, axes=1))
    np.testing.assert_allclose(clean.truth_micro_mm, np.tensordot(clean.truth_micro_coefficients, basis, axes=1))
    detail = clean.truth_detail_mm.reshape(clean.take.frame_count, -1)  # (T, 1434)
    assert np.abs(detail).max() > 0.01
    complement = detail_complement(basis, clean.truth_neutral_mm)  # basis + rigid motions
    assert np.abs(detail @ complement).max() < 1e-6 * np.abs(detail).max()
    neutral_span = int(0.5 * clean.take.fps)
    assert not clean.truth_macro_mm[:neutral_span].any() and not clean.truth_detail_mm[:neutral_span].any()


def test_deterministic_given_a_seed(head):
    config = SyntheticConfig(duration_range_s=(1.0, 1.5), fps_range=(24.0, 60.0))
    first = list(generate_dataset(head, config, count=2, seed=11))
    second = list(generate_dataset(head, config, count=2, seed=11))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.take.landmarks_px, b.take.landmarks_px)
        np.testing.assert_array_equal(a.take.flow_at_landmarks_px, b.take.flow_at_landmarks_px)
        np.testing.assert_array_equal(a.truth_micro_mm, b.truth_micro_mm)
    assert not np.array_equal(first[0].truth_neutral_mm, first[1].truth_neutral_mm)


def test_take_validates_and_round_trips(head, tmp_path):
    sequence = generate_sequence(head, SyntheticConfig(duration_range_s=(1.0, 1.0)), np.random.default_rng(5))
    take = sequence.take
    take.validate()
    assert 24.0 <= take.fps <= 200.0 and take.crop_size_px == 256 and take.analysis_scale == 1.0
    assert np.isfinite(take.macro_mm).all() and not take.micro_mm.any()
    save_take(take, tmp_path / "synthetic.npz")
    loaded = load_take(tmp_path / "synthetic.npz")
    np.testing.assert_array_equal(loaded.landmarks_px, take.landmarks_px.astype(np.float32))
    np.testing.assert_array_equal(loaded.flow_consistent, take.flow_consistent)
    assert loaded.fps == take.fps and loaded.model_version == take.model_version


def test_noise_statistics_follow_the_noise_model(head):
    """Jitter variance of second differences (which cancel bias and the slow truth) and the flow's
    median error relative to the model, on a still face over 20 s at 30 fps."""
    noise = load_noise_model()
    config = SyntheticConfig(noise=noise, fps_range=(30.0, 30.0), duration_range_s=(20.0, 20.0), macro_only=True,
                             macro_neutral_probability=1.0, blink_rate_per_s=1e-6, detail_peak_mm=(0.0, 0.0))
    sequence = generate_sequence(head, config, np.random.default_rng(2))
    take = sequence.take
    residual = take.landmarks_px.astype(np.float64) - sequence.truth_landmarks_px  # (T, 478, 3): bias + jitter
    d2 = residual[2:] - 2.0 * residual[1:-1] + residual[:-2]
    rho = noise.jitter_autocorrelation
    face_scale = np.median(np.ptp(sequence.truth_landmarks_px[:, :, 0], axis=1)) / noise.reference_face_width_px
    groups = [NOISE_GROUPS[g] for g in noise.landmark_group]
    std = np.array([np.sqrt(np.square(noise.jitter_independent_px[g]) + np.square(noise.jitter_shared_px[g])
                            + np.square(noise.jitter_global_px)) for g in groups])  # (478, 3)
    expected = 2.0 * (1.0 - rho) * (3.0 - rho) * (std * face_scale) ** 2
    ratio = np.median(d2.var(axis=0)[:, :2] / expected[:, :2])
    assert 0.85 < ratio < 1.15

    motion = np.linalg.norm(sequence.truth_flow_px[1:], axis=2)  # (T-1, 478)
    error = np.linalg.norm(take.flow_at_landmarks_px[1:] - sequence.truth_flow_px[1:], axis=2)
    model_median = noise.flow_error_floor_px + noise.flow_error_per_px * motion
    assert 0.9 < np.median(error / model_median) < 1.25
    failed = 1.0 - take.flow_consistent[1:].mean()
    assert noise.flow_outlier_rate * 0.8 < failed < noise.flow_outlier_rate + 0.05


def test_noise_model_is_documented():
    noise = load_noise_model()
    assert set(noise.jitter_independent_px) == set(NOISE_GROUPS)
    assert 0.05 < np.median([np.mean(v[:2]) for v in noise.jitter_independent_px.values()]) < 1.0  # px
    assert noise.landmark_group.shape == (478,) and not noise.is_zero
