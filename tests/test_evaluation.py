"""Evaluation metrics (models/network/evaluation.py) on hand-made cases whose answers are known."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mxr.models.network.evaluation import (
    MeanError,
    MeasuredFlow,
    Truth,
    VideoScores,
    event_footprint,
    event_scores,
    flow_endpoint_errors,
    flow_oracle_scores,
    landmark_highpass,
    match_events,
    measure_flow,
    micro_error,
    moving_average,
    score_against_truth,
    still_frames,
    still_jitter,
    within_tolerance,
)
from mxr.models.network.features import EVENT_REGIONS
from mxr.models.network.synthetic import rotation_from_angles
from mxr.ops.canonical import image_to_camera
from mxr.ops.take import LANDMARK_COUNT, MicroEvent, Take, unobserved_front_end

FRAMES = 20


def event(onset: int, apex: int, offset: int, region: str = "mouth") -> MicroEvent:
    return MicroEvent(onset, apex, offset, region, 0.5, 1.0)


def take_with(deformation_mm: np.ndarray, neutral_mm: np.ndarray, micro_mm: np.ndarray | None = None,
              fps: float = 200.0) -> Take:
    """A take whose layers are given (macro = deformation - micro), identity head pose at 2 px/mm
    and a crop that maps source px to crop px at 3x; no flow observed."""
    count = len(deformation_mm)
    micro = np.zeros_like(deformation_mm) if micro_mm is None else micro_mm
    crop = np.tile(np.array([[3.0, 0.0, 5.0], [0.0, 3.0, 7.0]], np.float32), (count, 1, 1))
    front_end = unobserved_front_end(count) | {"crop_size_px": 256, "crop_from_image": crop}
    return Take(source_path="hand-made", source_sha256="0" * 64, fps=fps, frame_size=(640, 480),
                timestamps_s=np.arange(count) / fps, valid=np.ones(count, bool),
                landmarks_px=np.zeros((count, LANDMARK_COUNT, 3), np.float32),
                head_rotation=np.tile(np.eye(3, dtype=np.float32), (count, 1, 1)),
                head_translation_px=np.zeros((count, 3), np.float32),
                head_scale_px_per_mm=np.full(count, 2.0, np.float32), neutral_mm=neutral_mm.astype(np.float32),
                macro_mm=(deformation_mm - micro).astype(np.float32), micro_mm=micro.astype(np.float32),
                detail_mm=np.zeros_like(deformation_mm, np.float32), **front_end)


@pytest.fixture
def neutral() -> np.ndarray:
    points = np.random.default_rng(3).normal(scale=30.0, size=(LANDMARK_COUNT, 3))
    return points - points.mean(axis=0)


def test_mean_error_pools_clips_by_their_samples_and_skips_nan():
    first, second = MeanError(), MeanError()
    first.add(np.array([1.0, 3.0, np.nan]))
    second.add(np.array([5.0]))
    first.merge(second)
    assert (first.count, first.mean) == (3, pytest.approx(3.0))
    assert np.isnan(MeanError().mean)


def test_events_match_one_to_one_by_region_and_largest_overlap():
    truth = [event(10, 14, 20), event(40, 45, 50), event(60, 62, 70, "brows")]
    detected = [event(8, 15, 30), event(12, 13, 19), event(62, 64, 68, "mouth"), event(90, 92, 95)]
    pairs = match_events(detected, truth)
    # (12..19) overlaps truth 0 by 8 frames, (8..30) by 11: the larger overlap wins, the other stays
    # unmatched (one-to-one); the mouth detection at 62..68 does not match the brows event there.
    assert [(d.onset_frame, t.onset_frame) for d, t in pairs] == [(8, 10)]
    scores = event_scores(detected, truth)
    assert (scores.truths, scores.detections, scores.matched) == (3, 4, 1)
    assert scores.f1 == pytest.approx(2 * 1 / 7)
    assert (scores.onset_errors, scores.apex_errors) == ([-2], [1])
    assert scores.precision == pytest.approx(0.25) and scores.recall == pytest.approx(1 / 3)


def test_no_detections_score_f1_zero_and_timing_tolerance_counts_both_signs():
    assert event_scores([], [event(1, 2, 3)]).f1 == 0.0
    assert np.isnan(event_scores([], []).f1)
    assert within_tolerance([-2, 2, 3, -5]) == pytest.approx(0.5)


def test_footprint_is_the_skin_landmarks_the_event_moves():
    micro = np.zeros((FRAMES, LANDMARK_COUNT, 3))
    micro[6, 5, 0] = 0.3  # inside the window, above 0.1 mm
    micro[6, 6, 1] = 0.05  # too small
    micro[2, 7, 2] = 1.0  # outside the window
    micro[6, 470, 0] = 1.0  # an iris point: not skin
    assert np.flatnonzero(event_footprint(micro, event(4, 6, 9))).tolist() == [5]


def test_micro_error_is_zero_for_the_truth_and_the_truth_size_for_nothing(neutral):
    micro = np.zeros((FRAMES, LANDMARK_COUNT, 3))
    micro[5:10, 100, 0] = [0.2, 0.4, 0.6, 0.4, 0.2]
    truth = Truth(200.0, neutral, np.zeros_like(micro), micro, np.zeros_like(micro), [event(5, 7, 9)])
    valid = np.ones(FRAMES, bool)
    assert micro_error(micro, truth, valid).mean == pytest.approx(0.0)
    assert micro_error(np.zeros_like(micro), truth, valid).mean == pytest.approx(np.mean([0.2, 0.4, 0.6, 0.4, 0.2]))
    valid[7] = False  # the apex frame has no face: it is left out, not counted as an error
    assert micro_error(np.zeros_like(micro), truth, valid).mean == pytest.approx(0.3)


def test_a_take_in_another_similarity_frame_scores_its_real_error(neutral):
    rng = np.random.default_rng(4)
    truth_micro = np.zeros((FRAMES, LANDMARK_COUNT, 3))
    truth_micro[8:12, 200:210] = rng.normal(scale=0.3, size=(4, 10, 3))
    truth_macro = rng.normal(scale=1.0, size=(FRAMES, LANDMARK_COUNT, 3))
    truth = Truth(200.0, neutral, truth_macro, truth_micro, np.zeros_like(truth_macro), [event(8, 9, 11)])
    # The take's canonical frame: rotated, scaled by 1.1 and shifted against the truth's.
    rotation = rotation_from_angles(np.array([0.2]), np.array([-0.1]), np.array([0.05]))[0]
    to_take = lambda v: 1.1 * v @ rotation.T  # noqa: E731 (displacements: no shift)
    take_neutral = to_take(neutral) + np.array([4.0, -2.0, 1.0])
    take = take_with(to_take(truth_macro + truth_micro), take_neutral, micro_mm=to_take(truth_micro))
    take.events = [event(9, 10, 12)]
    scores = score_against_truth(take, truth)
    assert scores.macro.mean == pytest.approx(0.0, abs=1e-4)
    assert scores.total.mean == pytest.approx(0.0, abs=1e-4)
    assert scores.micro.mean == pytest.approx(0.0, abs=1e-4)
    assert (scores.events.matched, scores.events.onset_errors) == (1, [1])
    # A 0.5 mm error in the truth's frame shows as 0.5 mm whatever the take's own scale.
    shifted = take_with(to_take(truth_macro + truth_micro + np.array([0.5, 0.0, 0.0])), take_neutral,
                        micro_mm=to_take(truth_micro))
    shifted_scores = score_against_truth(shifted, truth)
    assert shifted_scores.total.mean == pytest.approx(0.5, abs=1e-4)
    assert scores.event_total.mean == pytest.approx(0.0, abs=1e-4)
    assert shifted_scores.event_total.mean == pytest.approx(0.5, abs=1e-4)  # the same error, inside the event


def test_the_flow_oracle_integrates_the_flow_over_each_event(neutral):
    """A still head, a micro event moving 10 landmarks sideways (in the image plane, which the flow
    sees) on top of a macro drift the oracle is told about: exact flow gives the event back."""
    micro = np.zeros((FRAMES, LANDMARK_COUNT, 3))
    micro[6:12, 310:320, 0] = np.array([0.0, 0.2, 0.5, 0.4, 0.2, 0.0])[:, None]  # still at the onset
    macro = np.zeros_like(micro)
    macro[:, 305:320, 1] = np.linspace(0.0, 2.0, FRAMES)[:, None]  # a local, non-rigid drift (no rigid landmark)
    truth = Truth(200.0, neutral, macro, micro, np.zeros_like(micro), [event(6, 8, 11)])
    take = take_with(macro + micro, neutral)
    take.landmarks_px = image_to_camera(2.0 * (neutral + macro + micro)).astype(np.float32)  # the take's pose
    step = np.zeros((FRAMES, LANDMARK_COUNT, 2))
    step[1:] = np.diff((macro + micro)[..., :2], axis=0) * np.array([1.0, -1.0])  # camera y up -> image y down
    take.flow_at_landmarks_px = (step * 2.0 * 3.0).astype(np.float32)  # 2 px/mm, then the crop's 3x
    take.flow_consistent = np.ones((FRAMES, LANDMARK_COUNT), bool)
    oracle = flow_oracle_scores(take, truth)
    assert oracle.micro.mean < 0.02 * micro_error(np.zeros_like(micro), truth, take.valid).mean
    take.flow_consistent[:] = False  # no flow: nothing to integrate, and the known drift is still taken off
    assert flow_oracle_scores(take, truth).micro.mean > micro_error(np.zeros_like(micro), truth, take.valid).mean


def test_flow_endpoint_error_projects_the_disagreement_through_pose_and_crop(neutral):
    deformation = np.zeros((4, LANDMARK_COUNT, 3))
    deformation[2, :, 0] = 0.1  # every landmark moves 0.1 mm to the subject's left at frame 2
    deformation[3, :, 0] = 0.1
    take = take_with(deformation, neutral)
    flow = np.zeros_like(deformation)
    flow[2, :, 0] = 0.1  # the measurement agrees at frame 2
    flow[3, :, 1] = 0.05  # and sees 0.05 mm upwards at frame 3, where the take stays still
    mask = np.zeros((4, LANDMARK_COUNT), bool)
    mask[1:] = True
    mask[1:, 3] = False  # an inconsistent landmark is left out
    errors = flow_endpoint_errors(take, MeasuredFlow(flow, mask, np.zeros((4, len(EVENT_REGIONS)))))
    assert errors.shape == (3 * 467,)
    # 0.05 mm x 2 px/mm x 3 crop px per px = 0.3 crop px at frame 3, nothing elsewhere
    np.testing.assert_allclose(np.sort(errors)[-467:], 0.3, atol=1e-6)
    np.testing.assert_allclose(np.sort(errors)[:-467], 0.0, atol=1e-6)


def test_still_frames_need_a_quiet_frame_and_a_quiet_next_frame_in_every_region():
    median_mm = np.array([np.nan, 0.05, 0.05, 0.5, 0.05, 0.05, 0.05])
    measured = MeasuredFlow(np.zeros((7, 1, 3)), np.zeros((7, 1), bool), np.stack([median_mm, median_mm], axis=1))
    assert np.flatnonzero(still_frames(measured, threshold_mm=0.1)).tolist() == [1, 4, 5]
    measured.regional_median_mm[5, 1] = 0.3  # the mouth alone moves into frame 5: frames 4 and 5 are not still
    assert np.flatnonzero(still_frames(measured, threshold_mm=0.1)).tolist() == [1]


def test_measured_motion_is_the_median_non_rigid_flow_of_the_skin(neutral):
    take = take_with(np.zeros((3, LANDMARK_COUNT, 3)), neutral)
    take.flow_at_landmarks_px[1:] = 0.0  # measured: no motion at all
    take.flow_consistent[1:] = True
    measured = measure_flow(take)
    assert np.isnan(measured.regional_median_mm[0]).all() and np.allclose(measured.regional_median_mm[1:], 0.0)
    assert measured.regional_median_mm.shape == (3, len(EVENT_REGIONS))
    assert measured.mask[1:].all() and not measured.mask[0].any()


def test_still_jitter_is_the_rms_second_difference_on_still_frames(neutral):
    deformation = np.zeros((6, LANDMARK_COUNT, 3))
    deformation[2, :, 2] = 0.3  # one frame pops out by 0.3 mm
    take = take_with(deformation, neutral)
    still = np.array([False, True, True, True, False, False])
    jitter = still_jitter(take, still)
    # second differences at frames 1, 2, 3: +0.3, -0.6, +0.3 mm on every landmark
    np.testing.assert_allclose(jitter, [0.3, 0.6, 0.3])
    assert still_jitter(take, np.zeros(6, bool)).shape == (0,)
    scores = VideoScores([], [jitter])
    assert scores.jitter_rms_mm == pytest.approx(np.sqrt((0.09 + 0.36 + 0.09) / 3))
    assert scores.jitter_median_mm == pytest.approx(0.3)


def test_moving_average_keeps_a_line_and_the_highpass_keeps_the_total(neutral):
    line = np.arange(10.0)[:, None]
    np.testing.assert_allclose(moving_average(line, 3)[1:-1], line[1:-1])
    assert moving_average(line, 3)[0, 0] == pytest.approx(0.5)  # the edge averages the frames it has
    rng = np.random.default_rng(5)
    deformation = rng.normal(size=(FRAMES, LANDMARK_COUNT, 3))
    take = take_with(deformation, neutral, fps=20.0)
    highpass = landmark_highpass(take)
    np.testing.assert_allclose(highpass.deformation_mm(), deformation, atol=1e-5)
    np.testing.assert_allclose(highpass.macro_mm, moving_average(deformation, 10), atol=1e-5)


def test_the_no_temporal_ablation_is_the_model_with_its_global_feature_zeroed(tmp_path, load_script):
    """scripts/evaluate.py's (c): the exported model with the encoder's output multiplied by zero
    computes what the torch model computes when training drops the global feature."""
    import onnxruntime
    torch = pytest.importorskip("torch")
    from mxr.models.network.torch_model import INPUT_NAMES, MicroNet, NetworkConfig, example_inputs, export_onnx

    script = load_script("evaluate")
    torch.manual_seed(0)
    config = NetworkConfig(channels=8, global_channels=8, dilations=(1,), global_dilations=(1, 2), window=16)
    model = MicroNet(config).eval()
    path = tmp_path / "tiny.onnx"
    export_onnx(model, path, config.window)
    ablated = script.zero_global_feature(path, tmp_path)
    inputs = example_inputs(2, config.window, seed=3)
    model.train()  # drop_global only acts in training mode; the model has no dropout or batch norm
    model.drop_global = 1.0
    with torch.no_grad():
        expected = [t.numpy() for t in model(*inputs)]
    session = onnxruntime.InferenceSession(str(ablated), providers=["CPUExecutionProvider"])
    actual = session.run(None, {name: t.numpy() for name, t in zip(INPUT_NAMES, inputs)})
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, atol=1e-4, rtol=0)
    assert script.zero_global_feature(path, tmp_path) is not None
    without = tmp_path / "without.onnx"
    export_onnx(MicroNet(NetworkConfig(channels=8, global_channels=8, dilations=(1,), temporal=False, window=16)),
                without, 16)
    assert script.zero_global_feature(without, tmp_path) is None


def test_the_micro_layer_diagnosis_splits_the_error_by_event(neutral, load_script):
    """scripts/diagnose_micro_layer.py: a missed event costs its whole signal, an exactly found one
    nothing, and each lands in its timing bin and region."""
    import dataclasses
    script = load_script("diagnose_micro_layer")
    fps, count = 100.0, 120
    truth_micro = np.zeros((count, LANDMARK_COUNT, 3))
    truth_micro[10:30, :50, 1] = 0.5  # a brows event: 50 landmarks moved 0.5 mm over frames 10..29
    truth_micro[60:80, 100:120, 0] = 0.3  # a mouth event
    brows = MicroEvent(onset_frame=10, apex_frame=15, offset_frame=29, region="brows", peak_mm=0.5, confidence=1.0)
    mouth = MicroEvent(onset_frame=60, apex_frame=65, offset_frame=79, region="mouth", peak_mm=0.3, confidence=1.0)
    truth = Truth(fps, neutral, np.zeros_like(truth_micro), truth_micro, np.zeros_like(truth_micro), [brows, mouth])
    layer = truth_micro.copy()
    layer[60:80] = 0.0  # the mouth event is missed
    found = dataclasses.replace(brows, onset_frame=13)  # found, 30 ms late
    take = dataclasses.replace(take_with(truth_micro, neutral, micro_mm=layer, fps=fps), events=[found])
    breakdown = script.Breakdown()
    script.add_take(breakdown, take, truth)
    assert breakdown.missed.events == 1 and breakdown.missed.error_mm == pytest.approx(breakdown.missed.signal_mm)
    assert breakdown.missed.signal_mm == pytest.approx(20 * 20 * 0.3, rel=1e-5)
    assert [part.events for part in breakdown.by_timing] == [0, 1, 0, 0]  # 25-50 ms
    assert breakdown.by_timing[1].error_mm == pytest.approx(0.0, abs=1e-4)
    assert breakdown.by_region["brows"].found == 1 and breakdown.by_region["mouth"].found == 0
    assert breakdown.error_mm / breakdown.signal_mm == pytest.approx(120 / (120 + 500), rel=1e-4)
    assert "micro layer 0.194x" in script.report("set", breakdown)[0]


def test_choosing_the_event_pair_decodes_one_network_run_per_candidate(load_script, monkeypatch, capsys):
    """scripts/choose_event_pair.py on one take a set with the shipped detector: a line per set
    and candidate, and confirmation only ever removes events of the mean's own."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))  # it reads diagnose_micro_layer
    script = load_script("choose_event_pair")
    assert script.main(["--clips", "1", "1", "1", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 * len(script.CANDIDATES)
    detections = {}
    for line in lines:
        label, figures = line.split(": micro layer ")
        detections[label] = int(figures.split(", ")[-1].split()[0])
    for label, count in detections.items():
        if "mean 0.85" in label and "confirm none" not in label:
            assert count <= detections[label.split(" confirm")[0] + " confirm none"]
