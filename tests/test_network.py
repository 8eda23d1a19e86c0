"""The micro-expression network: features, graph, torch model, ONNX export parity, the
onnxruntime runner (CPU fallback), event extraction, and the shipped weights on a real take.

Real torch, real onnxruntime; a tiny model is exported per session so the parity and runner
tests do not depend on the committed weights.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from mxr.models.network.events import MAX_EVENT_PEAK_MM, confirmed_by, extract_events, hysteresis_segments
from mxr.models.network.features import (EVENT_REGIONS, canonical_flow_mm, fit_rigid_increments, mesh_graph,
                                         region_membership, resample_track, rigid_increment_motion, take_inputs,
                                         track_to_frames, vertex_normals, window_starts, windowed)
from mxr.ops.errors import MxrError
from mxr.models.network.runner import (CPU, CUDA, DEFAULT_MODEL, NetworkRunner, apply_network, choose_providers,
                                       detector_files)
from mxr.models.network.torch_model import (INPUT_NAMES, EventDetector, EventDetectorConfig, MicroNet, NetworkConfig,
                                           example_inputs, export_event_onnx, export_onnx, parameter_count,
                                           set_code_range)
from mxr.models.open_head import load_open_head
from mxr.ops.canonical import RIGID_LANDMARKS, image_to_camera
from mxr.ops.sample_data import sample_path
from mxr.ops.take import LANDMARK_COUNT, MicroEvent, Take, load_take, save_take

from conftest import rotation

# torch (MKL-DNN) and onnxruntime (MLAS) sum in different orders: float32 round-off on outputs of
# a few mm is ~1e-6; 1e-4 mm (0.1 micrometre) leaves room and still catches any real mismatch.
PARITY_TOLERANCE_MM = 1e-4
TINY = NetworkConfig(channels=8, global_channels=8, dilations=(1, 3), global_dilations=(1, 2), window=16)


def crop_similarity(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), shift[0]], [scale * np.sin(a), scale * np.cos(a), shift[1]]])


def posed_take(faces_mm: np.ndarray, rotations: np.ndarray, scales: np.ndarray, translations: np.ndarray,
               crops: np.ndarray, fps: float = 60.0) -> Take:
    """A take whose baseline equals the truth: faces (T, 478, 3) mm seen through exact poses, with
    the flow between the given crop similarities computed from the true skin motion."""
    count = len(faces_mm)
    neutral = faces_mm[0]
    camera = scales[:, None, None] * np.einsum("tij,tnj->tni", rotations, faces_mm) + translations[:, None]
    image = image_to_camera(camera)  # the same flip back: camera -> image px
    in_crop = np.einsum("tij,tnj->tni", crops[:, :, :2], image[..., :2]) + crops[:, None, :, 2]
    flow = np.zeros((count, LANDMARK_COUNT, 2))
    flow[1:] = in_crop[1:] - in_crop[:-1]
    zeros = np.zeros((count, LANDMARK_COUNT, 3), np.float32)
    return Take(
        source_path="test", source_sha256="0", fps=fps, frame_size=(640, 480),
        timestamps_s=np.arange(count) / fps, valid=np.ones(count, bool), landmarks_px=image.astype(np.float32),
        head_rotation=rotations.astype(np.float32), head_translation_px=translations.astype(np.float32),
        head_scale_px_per_mm=scales.astype(np.float32), neutral_mm=neutral.astype(np.float32),
        macro_mm=(faces_mm - neutral).astype(np.float32), micro_mm=zeros, detail_mm=zeros,
        frame_indices=np.arange(count), analysis_scale=1.0, landmark_confidence=np.ones(count, np.float32),
        crop_size_px=256, crop_from_image=crops.astype(np.float32), flow_at_landmarks_px=flow.astype(np.float32),
        flow_fb_error_px=np.zeros((count, LANDMARK_COUNT), np.float32),
        flow_consistent=np.ones((count, LANDMARK_COUNT), bool),
    )


@pytest.fixture(scope="module")
def neutral_mm() -> np.ndarray:
    points = load_open_head().landmark_positions().astype(np.float64) * 1000.0
    return points - points.mean(axis=0)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    model = MicroNet(TINY).eval()
    path = tmp_path_factory.mktemp("network") / "tiny.onnx"
    export_onnx(model, path, TINY.window)
    path.with_suffix(".json").write_text(
        f'{{"version": "tiny-test", "window": {TINY.window}, "stride": 12, "regions": {list(TINY.regions)!r}}}'
        .replace("'", '"'))
    return model, path


# -- features ------------------------------------------------------------------------------------------
def test_flow_becomes_the_canonical_displacement_under_head_motion_and_crop_jitter(neutral_mm):
    mouth = np.setdiff1d(np.flatnonzero(region_membership()[EVENT_REGIONS.index("mouth")]), RIGID_LANDMARKS)
    moved = neutral_mm.copy()
    moved[mouth] += np.array([0.3, -0.5, 0.2])  # a mouth motion of about half a millimetre
    faces = np.stack([neutral_mm, moved])
    rotations = np.stack([rotation(20, -10, 5), rotation(23, -8, 6)])  # the head turns between frames
    crops = np.stack([crop_similarity(3, 0.8, (10, 20)), crop_similarity(2.5, 0.81, (11, 19))])
    take = posed_take(faces, rotations, np.array([2.0, 2.05]), np.array([[320, -240, 0], [323, -238, 0.0]]), crops)
    flow, mask = canonical_flow_mm(take)
    assert mask[1].all() and not mask[0].any()
    # The flow sees the motion's image-plane part: R^T P R d, P dropping the camera z.
    truth = (moved - neutral_mm) @ rotations[1].T
    truth[:, 2] = 0.0
    expected = truth @ rotations[1]
    np.testing.assert_allclose(flow[1], expected, atol=1e-4)
    assert np.abs(flow[1][mouth]).max() > 0.2


def test_out_of_plane_pose_jitter_does_not_leak_into_the_flow(neutral_mm):
    """A still face whose baseline pose at frame 1 is off by 0.5 deg of yaw and pitch (what
    landmark noise does to the pose): the true motion and the flow are zero, so the canonical
    flow must be too. A 2-D similarity refit leaves ~0.2 mm of this in the flow; the 3-D one
    takes it out to the linearisation's round-off."""
    faces = np.stack([neutral_mm, neutral_mm])
    true_rotation = rotation(15, -5, 3)
    crops = np.stack([crop_similarity(3, 0.8, (10, 20))] * 2)
    take = posed_take(faces, np.stack([true_rotation] * 2), np.array([2.0, 2.0]),
                      np.array([[320, -240, 0], [320, -240, 0.0]]), crops)
    jittered = rotation(15.5, -4.5, 3)
    take.head_rotation[1] = jittered  # the baseline's face at frame 1 follows its pose: R'^T R neutral
    take.macro_mm[1] = (neutral_mm @ true_rotation.T @ jittered - neutral_mm).astype(np.float32)
    flow, mask = canonical_flow_mm(take)
    assert mask[1].all()
    assert np.abs(flow[1]).max() < 0.01


def test_rigid_increments_recover_a_small_rotation_shift_and_scale():
    rng = np.random.default_rng(3)
    points = rng.normal(scale=60.0, size=(2, 35, 3))  # camera px
    increment = np.array([[0.4, -0.2, 0.01, 0.003, -0.004, 0.002], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    centre = points.mean(axis=1)
    rotated = []
    for frame, (sx, sy, k, wx, wy, wz) in enumerate(increment):  # the exact motion, not the linearised one
        angle = np.linalg.norm([wx, wy, wz])
        axis = np.array([wx, wy, wz]) / max(angle, 1e-12)
        cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        exact = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
        c = points[frame] - centre[frame]
        rotated.append(((1 + k) * c @ exact.T + centre[frame])[:, :2] + [sx, sy])
    fitted, fitted_centre = fit_rigid_increments(points, np.stack(rotated), np.ones((2, 35)))
    np.testing.assert_allclose(fitted_centre, centre)
    np.testing.assert_allclose(fitted, increment, atol=1e-4)
    moved = points[..., :2] + rigid_increment_motion(fitted, fitted_centre, points)
    np.testing.assert_allclose(moved, np.stack(rotated), atol=0.02)  # px: second-order terms of a 0.3 deg turn


def test_inputs_and_windows_mark_missing_frames(neutral_mm):
    faces = np.repeat(neutral_mm[None], 5, axis=0)
    rotations = np.repeat(rotation(0, 0)[None], 5, axis=0)
    crops = np.repeat(crop_similarity(0, 1.0, (0, 0))[None], 5, axis=0)
    take = posed_take(faces, rotations, np.full(5, 2.0), np.zeros((5, 3)), crops)
    take.valid[2] = False
    take.macro_mm[2] = np.nan
    inputs = take_inputs(take)
    assert np.isfinite(inputs.landmarks_mm).all() and not inputs.flow_mask[2:4].any()
    assert inputs.geometry.shape == (LANDMARK_COUNT, 6)
    np.testing.assert_allclose(np.linalg.norm(inputs.geometry[:, 3:], axis=1), 1.0, rtol=1e-5)
    feeds = windowed(inputs, window_starts(5, 8, 6), 8)  # longer window than the take: padded, invalid
    assert feeds["landmarks_mm"].shape == (1, 8, LANDMARK_COUNT, 3)
    assert feeds["valid"][0, :, 0].tolist() == [1, 1, 0, 1, 1, 0, 0, 0]
    assert window_starts(100, 32, 24).tolist() == [0, 24, 48, 68]


def test_mesh_graph_is_symmetric_and_links_the_irises():
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LEFT_EYE, FACEMESH_RIGHT_EYE

    neighbours, weights = mesh_graph()
    assert neighbours.shape == weights.shape == (LANDMARK_COUNT, 8)
    adjacency = np.zeros((LANDMARK_COUNT, LANDMARK_COUNT), bool)
    rows = np.repeat(np.arange(LANDMARK_COUNT)[:, None], 8, axis=1)
    adjacency[rows[weights > 0], neighbours[weights > 0]] = True
    assert (adjacency == adjacency.T).all() and not adjacency.diagonal().any()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    assert (neighbours[weights == 0] == rows[weights == 0]).all()  # padding points at the landmark itself
    for centre, ring, eye in ((468, range(469, 473), FACEMESH_RIGHT_EYE), (473, range(474, 478), FACEMESH_LEFT_EYE)):
        contour = {i for edge in eye for i in edge}
        assert set(ring) <= set(np.flatnonzero(adjacency[centre]))
        for point in ring:
            assert contour & set(np.flatnonzero(adjacency[point]))
    normals = vertex_normals(np.asarray(load_open_head().landmark_positions(), np.float64))
    assert normals[1, 2] > 0 and normals[4, 2] > 0  # nose faces the camera


# -- torch model and export ----------------------------------------------------------------------------
def test_forward_shapes_and_plug_and_play_without_the_temporal_encoder():
    inputs = example_inputs(2, 16)
    for temporal in (True, False):
        model = MicroNet(dataclasses.replace(TINY, temporal=temporal)).eval()
        with torch.no_grad():
            macro, micro, detail, logits = model(*inputs)
        assert macro.shape == micro.shape == detail.shape == (2, 16, LANDMARK_COUNT, 3)
        assert logits.shape == (2, 16, len(EVENT_REGIONS))
        assert torch.isfinite(macro).all() and torch.isfinite(logits).all()
        assert (model.global_encoder is not None) == temporal
    with_encoder = parameter_count(MicroNet(TINY))
    without = parameter_count(MicroNet(dataclasses.replace(TINY, temporal=False)))
    assert without < with_encoder


def test_the_global_code_is_clipped_to_its_range_on_the_calibration_windows(tmp_path):
    torch.manual_seed(1)
    model = MicroNet(TINY).eval()
    calibration = [example_inputs(4, 16, seed=seed) for seed in range(3)]
    frames = set_code_range(model, calibration, percent=1.0)
    assert frames == 3 * 4 * 16  # example inputs are all valid
    encoder = model.global_encoder
    low, high = encoder.code_low.flatten(), encoder.code_high.flatten()  # (G,)
    assert (low < high).all()
    with torch.no_grad():
        channels = TINY.global_channels
        seen = torch.cat([encoder(model.vertex_features(*inputs)).transpose(1, 2).reshape(-1, channels)
                          for inputs in calibration])
        inside = ((seen > low) & (seen < high)).float().mean()  # the rest sit on the bounds
        assert 0.9 < inside < 1.0  # 1 % cut at each end, per channel
        unlike = list(example_inputs(2, 16, seed=9))
        unlike[0] = unlike[0] * 50.0  # landmark motion far beyond the calibration's
        code = encoder(model.vertex_features(*unlike)).transpose(1, 2).reshape(-1, channels)
    assert ((code >= low - 1e-6) & (code <= high + 1e-6)).all() and ((code == low) | (code == high)).any()
    path = tmp_path / "clipped.onnx"
    export_onnx(model, path, TINY.window)  # the range travels with the export
    session = onnxruntime.InferenceSession(str(path), providers=[CPU])
    with torch.no_grad():
        expected = [t.numpy() for t in model(*unlike)]
    actual = session.run(None, {name: t.numpy() for name, t in zip(INPUT_NAMES, unlike)})
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, atol=PARITY_TOLERANCE_MM, rtol=0)


def test_invalid_frames_get_no_deformation():
    inputs = list(example_inputs(1, 16))
    inputs[3][0, 5:9] = 0.0
    with torch.no_grad():
        macro, micro, detail, _ = MicroNet(TINY).eval()(*inputs)
    assert (macro[0, 5:9] == 0).all() and (micro[0, 5:9] == 0).all() and (detail[0, 5:9] == 0).all()


def test_onnx_export_matches_torch(tiny_model):
    model, path = tiny_model
    inputs = example_inputs(3, 24, seed=7)  # another batch and window length than at export
    with torch.no_grad():
        expected = [t.numpy() for t in model(*inputs)]
    session = onnxruntime.InferenceSession(str(path), providers=[CPU])
    actual = session.run(None, {name: t.numpy() for name, t in zip(INPUT_NAMES, inputs)})
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, atol=PARITY_TOLERANCE_MM, rtol=0)


# -- runner --------------------------------------------------------------------------------------------
def test_runner_reports_cpu_and_falls_back_when_cuda_is_missing(tiny_model):
    _, path = tiny_model
    assert NetworkRunner(path, providers=[CPU]).provider == CPU
    asked_for_cuda = NetworkRunner(path, providers=[CUDA])
    if CUDA in onnxruntime.get_available_providers():
        assert asked_for_cuda.provider in (CUDA, CPU)
    else:
        assert asked_for_cuda.provider == CPU
    assert choose_providers([CUDA], [CPU]) == [CPU]
    assert choose_providers(None, [CUDA, CPU]) == [CUDA, CPU]


def test_apply_network_fills_the_layers_and_keeps_missing_frames_missing(tiny_model, neutral_mm, tmp_path):
    model, path = tiny_model
    count = 40
    rng = np.random.default_rng(3)
    faces = neutral_mm + rng.normal(0, 0.2, (count, LANDMARK_COUNT, 3))
    rotations = np.stack([rotation(10 + 0.1 * t, 0) for t in range(count)])
    crops = np.repeat(crop_similarity(0, 1.0, (0, 0))[None], count, axis=0)
    take = posed_take(faces, rotations, np.full(count, 2.0), np.zeros((count, 3)), crops)
    missing = [7, 8, 30]
    take.valid[missing] = False
    for name in ("landmarks_px", "macro_mm", "micro_mm", "detail_mm", "flow_at_landmarks_px", "crop_from_image"):
        getattr(take, name)[missing] = np.nan
    runner = NetworkRunner(path, providers=[CPU], batch_size=2)
    result = apply_network(take, runner)
    assert result.model_version == "tiny-test" and result.settings["network"]["provider"] == CPU
    for layer in (result.macro_mm, result.micro_mm, result.detail_mm):
        assert layer.shape == (count, LANDMARK_COUNT, 3)
        assert np.isnan(layer[missing]).all() and np.isfinite(np.delete(layer, missing, axis=0)).all()
    assert (result.valid == take.valid).all() and result.landmarks_px is take.landmarks_px
    # Overlap blending reproduces a single window where one window covers the frames.
    feeds = windowed(take_inputs(take), np.array([0]), TINY.window)
    with torch.no_grad():
        single = model(*(torch.from_numpy(feeds[name]) for name in INPUT_NAMES))[1][0].numpy()
    np.testing.assert_allclose(result.micro_mm[:6], single[:6], atol=1e-5)
    save_take(result, tmp_path / "take.npz")
    assert load_take(tmp_path / "take.npz").model_version == "tiny-test"


def test_the_event_thresholds_in_the_model_metadata_are_used(tiny_model, neutral_mm, tmp_path):
    """Training calibrates the decoder's thresholds and writes them next to the model: a threshold
    nothing reaches finds nothing, one everything passes finds what the durations allow."""
    _, path = tiny_model
    count = 30  # 0.5 s: one stretch over the whole take is still short enough to be an event
    faces = neutral_mm + np.random.default_rng(5).normal(0, 0.2, (count, LANDMARK_COUNT, 3))
    take = posed_take(faces, np.stack([rotation(10, 0)] * count), np.full(count, 2.0), np.zeros((count, 3)),
                      np.repeat(crop_similarity(0, 1.0, (0, 0))[None], count, axis=0), fps=60.0)
    found = {}
    for high in (1.0, 0.0):
        model = tmp_path / f"thresholds_{high:g}.onnx"
        model.write_bytes(path.read_bytes())
        metadata = json.loads(path.with_suffix(".json").read_text())
        metadata["event_thresholds"] = {"high": high, "low": -1.0 if high == 0.0 else 0.99}
        model.with_suffix(".json").write_text(json.dumps(metadata))
        runner = NetworkRunner(model, providers=[CPU])
        assert runner.event_thresholds["high"] == high
        found[high] = apply_network(take, runner)
    assert found[1.0].events == [] and found[0.0].events
    metadata["events_enabled"] = False  # the event head failed its validation: nothing is reported
    model.with_suffix(".json").write_text(json.dumps(metadata))
    silenced = apply_network(take, NetworkRunner(model, providers=[CPU]))
    assert silenced.events == [] and silenced.settings["network"]["events_enabled"] is False
    # With events, the micro layer is what they explain, moved out of the macro layer: same total.
    np.testing.assert_allclose(found[0.0].deformation_mm(), silenced.deformation_mm(), atol=1e-4)
    assert not np.allclose(found[0.0].micro_mm, silenced.micro_mm, atol=1e-4)
    assert (found[0.0].settings["network"]["micro_layer"], silenced.settings["network"]["micro_layer"]) == \
        ("events", "network")


def test_tracks_resample_between_frame_rates_and_back():
    frames = np.arange(50)
    track = np.stack([0.5 * frames, np.sin(frames / 5.0)], axis=1)  # (T, 2) at 30 fps
    at_100 = resample_track(track, frames / 30.0, 100.0)
    assert at_100.shape == (round(49 / 30 * 100) + 1, 2)  # 1.633 s at 100 Hz
    np.testing.assert_allclose(at_100[:, 0], np.linspace(0.0, 24.5, len(at_100)))  # linear: exact
    np.testing.assert_allclose(track_to_frames(at_100, 100.0, frames / 30.0)[:, 0], track[:, 0], atol=1e-9)


def test_a_variable_rate_track_is_resampled_at_its_frames_own_times():
    seconds = np.cumsum(np.r_[0.0, np.tile([1 / 20, 1 / 40], 30)])  # 61 frames over 2.25 s, 20 and 40 fps by turns
    track = np.stack([3.0 * seconds, np.sin(2.0 * seconds)], axis=1)  # (T, 2), a function of real time
    at_100 = resample_track(track, seconds, 100.0)
    times = np.linspace(0.0, seconds[-1], len(at_100))
    assert len(at_100) == 226  # 2.25 s at 100 Hz, not 60 frames at a claimed rate
    np.testing.assert_allclose(at_100[:, 0], 3.0 * times, atol=1e-12)
    np.testing.assert_allclose(at_100[:, 1], np.sin(2.0 * times), atol=2e-3)
    np.testing.assert_allclose(track_to_frames(at_100, 100.0, seconds)[:, 0], track[:, 0], atol=1e-9)


def test_the_event_detector_runs_beside_the_mesh_network(tiny_model, neutral_mm, tmp_path):
    """A detector named in the metadata supplies the event logits: the runner's windowed, resampled
    path gives what the torch detector gives on the whole resampled track."""
    _, path = tiny_model
    torch.manual_seed(1)
    config = EventDetectorConfig(channels=8, dilations=(1, 2), window=64)
    detector = EventDetector(config).eval()
    export_event_onnx(detector, tmp_path / "events.onnx")
    model = tmp_path / "with_detector.onnx"
    model.write_bytes(path.read_bytes())
    metadata = json.loads(path.with_suffix(".json").read_text())
    metadata["event_detector"] = {"file": "events.onnx", "rate_hz": config.rate_hz, "window": config.window,
                                  "stride": 48, "event_thresholds": {"high": 0.5, "low": 0.3}, "events_enabled": True}
    model.with_suffix(".json").write_text(json.dumps(metadata))
    count = 20  # at 60 fps: one detector window of 64 samples holds the whole take
    faces = neutral_mm + np.random.default_rng(6).normal(0, 0.2, (count, LANDMARK_COUNT, 3))
    take = posed_take(faces, np.stack([rotation(10, 0)] * count), np.full(count, 2.0), np.zeros((count, 3)),
                      np.repeat(crop_similarity(0, 1.0, (0, 0))[None], count, axis=0), fps=60.0)
    runner = NetworkRunner(model, providers=[CPU])
    result = runner.run(take)
    inputs = take_inputs(take)
    track = resample_track(inputs.coefficients, inputs.seconds, config.rate_hz)  # (n, K), n < 64: padded by the runner
    padded = np.concatenate([track, np.repeat(track[-1:], config.window - len(track), axis=0)])
    with torch.no_grad():
        expected = detector(torch.from_numpy(padded.T[None].astype(np.float32)))[0].numpy().T[:len(track)]
    np.testing.assert_allclose(result.event_logits, track_to_frames(expected, config.rate_hz, inputs.seconds), atol=1e-4)
    (tmp_path / "events.onnx").unlink()
    with pytest.raises(MxrError, match="event detector not found"):
        NetworkRunner(model, providers=[CPU])


def test_a_speech_member_averages_the_logits_and_confirms_the_events(tiny_model, neutral_mm, tmp_path):
    """With a speech member the event logits are the mean of both detectors', the member's own
    come along for confirmation, and an event it does not confirm is dropped."""
    _, path = tiny_model
    config = EventDetectorConfig(channels=8, dilations=(1, 2), window=64)
    detectors = []
    for seed, name in ((1, "events.onnx"), (2, "speech.onnx")):
        torch.manual_seed(seed)
        detectors.append(EventDetector(config).eval())
        export_event_onnx(detectors[-1], tmp_path / name)
    model = tmp_path / "pair.onnx"
    model.write_bytes(path.read_bytes())
    metadata = json.loads(path.with_suffix(".json").read_text())
    metadata["event_detector"] = {
        "file": "events.onnx", "rate_hz": config.rate_hz, "window": config.window, "stride": 48,
        "event_thresholds": {"high": 0.5, "low": 0.3}, "events_enabled": True,
        "speech_member": {"file": "speech.onnx", "confirm_thresholds": {"high": 0.7, "low": 0.42}}}
    model.with_suffix(".json").write_text(json.dumps(metadata))
    count = 20
    faces = neutral_mm + np.random.default_rng(7).normal(0, 0.2, (count, LANDMARK_COUNT, 3))
    take = posed_take(faces, np.stack([rotation(10, 0)] * count), np.full(count, 2.0), np.zeros((count, 3)),
                      np.repeat(crop_similarity(0, 1.0, (0, 0))[None], count, axis=0), fps=60.0)
    runner = NetworkRunner(model, providers=[CPU])
    assert runner.detector["files"] == ["events.onnx", "speech.onnx"] and runner.confirming_thresholds["high"] == 0.7
    result = runner.run(take)
    track = resample_track(take_inputs(take).coefficients, np.arange(take.frame_count) / 60.0, config.rate_hz)
    padded = np.concatenate([track, np.repeat(track[-1:], config.window - len(track), axis=0)])
    each = []
    with torch.no_grad():
        for detector in detectors:
            logits = detector(torch.from_numpy(padded.T[None].astype(np.float32)))[0].numpy().T[:len(track)]
            each.append(track_to_frames(logits, config.rate_hz, np.arange(count) / 60.0))
    np.testing.assert_allclose(result.event_logits, (each[0] + each[1]) / 2, atol=1e-4)
    np.testing.assert_allclose(result.confirming_logits, each[1], atol=1e-4)
    # Decoding: the brows event is confirmed by the member, the mouth event is not.
    fps, frames = 30.0, 60
    regions = runner.regions
    brows, mouth = regions.index("brows"), regions.index("mouth")
    mean_logits = np.full((frames, len(regions)), -6.0)
    mean_logits[10:20, brows] = 4.0
    mean_logits[40:50, mouth] = 4.0
    member_logits = np.full((frames, len(regions)), -6.0)
    member_logits[12:18, brows] = 4.0
    member_logits[28:38, mouth] = 4.0  # the member sees a mouth event, but earlier: no overlap
    motion = np.zeros((frames, LANDMARK_COUNT, 3))
    motion[:, :, 1] = np.interp(np.arange(frames), [10, 15, 19, 40, 45, 49], [0.0, 0.6, 0.0, 0.0, 0.6, 0.0])[:, None]
    events = runner.events(mean_logits, member_logits, motion, fps)
    assert [event.region for event in events] == ["brows"]
    assert {event.region for event in runner.events(mean_logits, None, motion, fps)} == {"brows", "mouth"}
    (tmp_path / "speech.onnx").unlink()
    with pytest.raises(MxrError, match="event detector not found"):
        NetworkRunner(model, providers=[CPU])


def test_events_are_confirmed_by_an_overlapping_event_of_their_region():
    def event(onset, offset, region):
        return MicroEvent(onset_frame=onset, apex_frame=onset, offset_frame=offset, region=region, peak_mm=0.5,
                          confidence=0.9)
    events = [event(10, 20, "brows"), event(30, 40, "mouth"), event(50, 60, "eyes")]
    confirming = [event(20, 25, "brows"), event(30, 40, "jaw"), event(61, 70, "eyes")]
    assert confirmed_by(events, confirming) == [events[0]]  # touching at frame 20 counts; jaw is another region
    assert confirmed_by(events, []) == []


def test_train_events_attaches_a_detector_the_runner_loads(tiny_model, tmp_path, load_script):
    """scripts/train_events.py --quick end to end: data, training, export, parity, threshold choice,
    card; the mesh network's metadata then names the detector and the runner uses it."""
    _, path = tiny_model
    model = tmp_path / "mesh.onnx"
    model.write_bytes(path.read_bytes())
    model.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    script = load_script("train_events")
    assert script.main(["--quick", "--model", str(model), "--workers", "1", "--card", str(tmp_path / "card.md")]) == 0
    entry = json.loads(model.with_suffix(".json").read_text())["event_detector"]
    assert entry["parity_max_abs"] < 1e-4 and entry["validation"]["sequences"] == 3
    assert entry["events_enabled"] == (entry["validation"]["f1"] >= script.MIN_EVENT_F1)
    assert NetworkRunner(model, providers=[CPU]).detector["file"] == "mxr_events.onnx"
    assert "## Reproduce" in (tmp_path / "card.md").read_text()
    # A speech member joins it: its own file, the pair's thresholds, the card says so; only once.
    card = ["--card", str(tmp_path / "card.md")]
    quick = ["--quick", "--model", str(model), "--workers", "1", "--speech-probability", "0.5"] + card
    assert script.main(quick + ["--add-speech-member"]) == 0
    entry = json.loads(model.with_suffix(".json").read_text())["event_detector"]
    assert entry["version"] == script.ENSEMBLE_VERSION
    assert entry["event_thresholds"]["high"] == script.ENSEMBLE_HIGH
    assert entry["speech_member"]["confirm_thresholds"]["high"] == script.CONFIRM_HIGH
    assert entry["speech_member"]["training"]["speech_probability"] == 0.5
    assert entry["validation"]["event_thresholds"]["high"] in script.THRESHOLD_GRID  # the first one's own choice
    runner = NetworkRunner(model, providers=[CPU])
    assert runner.detector["files"] == ["mxr_events.onnx", script.SPEECH_MEMBER_FILE]
    assert "## Speech member" in (tmp_path / "card.md").read_text()
    with pytest.raises(SystemExit):
        script.main(quick + ["--add-speech-member"])


def test_train_network_keeps_the_detector_attached_to_the_model_it_replaces(tmp_path, load_script):
    """scripts/train_network.py --quick end to end (data, both phases, export, parity, calibration,
    held-out metrics, card): retraining the mesh network in place keeps the attached detector."""
    script = load_script("train_network")
    shipped = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())["event_detector"]
    model = tmp_path / "mxr_micro.onnx"
    for name in detector_files(shipped):
        (tmp_path / name).write_bytes((DEFAULT_MODEL.parent / name).read_bytes())
    model.with_suffix(".json").write_text(json.dumps({"event_detector": shipped}))
    threads = torch.get_num_threads()
    try:
        assert script.main(["--quick", "--out", str(model), "--model-card", str(tmp_path / "card.md")]) == 0
    finally:  # the script sets both for its process
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)
    metadata = json.loads(model.with_suffix(".json").read_text())
    assert metadata["event_detector"] == shipped and metadata["parity_max_abs"]["macro_mm"] < 1e-4
    assert "total_events" in metadata["training"]["losses"]
    assert NetworkRunner(model, providers=[CPU]).detector["file"] == shipped["file"]
    assert "## Reproduce" in (tmp_path / "card.md").read_text()

def test_train_events_track_cache_gives_back_what_it_generated(tmp_path, load_script):
    """A cached run trains on exactly the tracks a fresh run generates: arrays, rates and truth events."""
    script = load_script("train_events")
    fresh = script.make_tracks(5, 3, 100.0, 0.5, 1, tmp_path)
    (chunk,) = tmp_path.glob("*/seed5_000000_000003.npz")
    cached = script.make_tracks(5, 3, 100.0, 0.5, 1, tmp_path)
    assert len(cached) == 3 and sum(len(t.events) for t in fresh) > 0
    for made, read in zip(fresh, cached):
        for name in ("coefficients", "neutral_mm", "samples", "labels"):
            np.testing.assert_array_equal(getattr(made, name), getattr(read, name))
        assert made.fps == read.fps and made.events == read.events
    chunk.write_bytes(b"")  # a chunk is only ever written whole: an empty one is not silently read
    with pytest.raises(EOFError):
        script.make_tracks(5, 3, 100.0, 0.5, 1, tmp_path)
    assert script.generator_fingerprint(100.0, 0.5) != script.generator_fingerprint(100.0, 0.0)


# -- events --------------------------------------------------------------------------------------------
def test_events_from_a_hand_made_logit_track():
    fps, count = 200.0, 700
    regions = EVENT_REGIONS
    membership = region_membership(regions)
    logits = np.full((count, len(regions)), -6.0)
    brows, mouth = regions.index("brows"), regions.index("mouth")
    logits[100:160, brows] = 4.0
    logits[128:131, brows] = 0.0  # a dip (p = 0.5 > low) does not split the event
    logits[102:150, mouth] = 1.0  # the same motion seen weaker in another region: suppressed
    logits[300:302, mouth] = 5.0  # a 10 ms blip: too short to be a micro-expression
    logits[450:650, mouth] = 5.0  # a 1 s stretch: a macro expression, too long to be one
    micro = np.zeros((count, LANDMARK_COUNT, 3))
    ramp = np.interp(np.arange(count), [100, 125, 159], [0.0, 0.8, 0.0])
    micro[:, np.flatnonzero(membership[brows]), 1] = ramp[:, None]
    events = extract_events(logits, micro, fps, regions, membership, refine_min_fps=np.inf)  # the detector's own timing
    assert len(events) == 1
    event = events[0]
    assert (event.onset_frame, event.apex_frame, event.offset_frame, event.region) == (100, 125, 159, "brows")
    assert event.peak_mm == pytest.approx(0.8) and event.confidence == pytest.approx(1 / (1 + np.exp(-4.0)))
    assert extract_events(logits, np.zeros_like(micro), fps, regions, membership) == []  # nothing moved: no event
    assert hysteresis_segments(np.array([0.1, 0.4, 0.6, 0.4, 0.1, 0.45, 0.2]), 0.5, 0.3) == [(1, 3)]



def test_a_stretch_that_moves_further_than_a_micro_expression_is_no_event():
    fps, count = 30.0, 120
    regions = EVENT_REGIONS
    membership = region_membership(regions)
    mouth = regions.index("mouth")
    logits = np.full((count, len(regions)), -6.0)
    logits[40:50, mouth] = 5.0
    motion = np.zeros((count, LANDMARK_COUNT, 3))
    bump = np.interp(np.arange(count), [40, 45, 49], [0.0, 1.0, 0.0])
    members = np.flatnonzero(membership[mouth])
    for peak_mm, found in ((1.5, True), (MAX_EVENT_PEAK_MM + 0.5, False), (12.0, False)):  # 12 mm: the jaw dropping
        motion[:, members, 1] = peak_mm * bump[:, None]
        events = extract_events(logits, motion, fps, regions, membership)
        assert [event.region for event in events] == (["mouth"] if found else []), peak_mm
    assert len(extract_events(logits, motion, fps, regions, membership, max_peak_mm=np.inf)) == 1

# -- the shipped weights on a real take -------------------------------------------------------------------
@pytest.mark.engine
def test_shipped_weights_run_on_a_real_take(tmp_path):
    take_path = tmp_path / "take.npz"
    result = subprocess.run([sys.executable, "-m", "mxr.ops", "reconstruct", str(sample_path("video/single_face.mp4")),
                             "--out", str(take_path), "--baseline"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    take = load_take(take_path)
    runner = NetworkRunner()
    assert runner.provider in (CUDA, CPU) and runner.window > 0
    network_take = apply_network(take, runner)
    valid = take.valid
    assert np.isfinite(network_take.deformation_mm()[valid]).all()
    assert np.isnan(network_take.micro_mm[~valid]).all()
    # The smile in this clip is macro motion: the network keeps it in the macro layer.
    smile = np.nanmax(np.abs(take.macro_mm[valid]))
    assert np.nanmax(np.abs(network_take.macro_mm[valid])) > 0.5 * smile
    assert np.nanmax(np.abs(network_take.micro_mm[valid])) < smile
    for event in network_take.events:
        assert 0 <= event.onset_frame <= event.apex_frame <= event.offset_frame < take.frame_count
        assert event.region in EVENT_REGIONS and 0 <= event.confidence <= 1
    save_take(network_take, tmp_path / "network.npz")
    assert load_take(tmp_path / "network.npz").model_version == runner.version
    with pytest.raises(MxrError, match="baseline"):
        apply_network(network_take, runner)


def test_the_network_reads_a_variable_rate_take_by_its_real_clock(neutral_mm):
    count = 40
    faces = np.repeat(neutral_mm[None], count, axis=0)
    take = posed_take(faces, np.stack([rotation(0, 0)] * count), np.full(count, 2.0), np.zeros((count, 3)),
                      np.repeat(crop_similarity(0, 1.0, (0, 0))[None], count, axis=0), fps=30.0)
    constant = take_inputs(take)
    assert constant.fps == 30.0 and np.array_equal(constant.seconds, np.arange(count) / 30.0)
    take.timestamps_s = np.arange(count) / 15.0  # the container says 30 fps; the frames came at 15
    variable = take_inputs(take)
    assert variable.fps == pytest.approx(15.0)
    np.testing.assert_allclose(variable.seconds, np.arange(count) / 15.0)
