"""ops/flow_fusion.py: MediaPipe's landmarks moved by the flow from frame to frame."""
import numpy as np
import pytest

from mxr.ops.canonical import INTERPUPILLARY_MM, IRIS_CENTRE_LEFT, IRIS_CENTRE_RIGHT
from mxr.ops.flow_fusion import MAX_CORRECTION_MM, flow_steps_px, fused_landmarks_px
from mxr.ops.sample_data import sample_path

FPS = 30.0
FRAMES = 300
POINTS = 478
PX_PER_MM = 10.0  # the faces below: the eyes 630 px apart


def crops(frames: int, seed: int = 0) -> np.ndarray:
    """(T, 2, 3) source px -> crop px similarities that wander from frame to frame."""
    rng = np.random.default_rng(seed)
    angle = rng.normal(0.0, 0.05, frames)
    scale = 1.5 + rng.normal(0.0, 0.05, frames)
    linear = scale[:, None, None] * np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1),
                                              np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    return np.concatenate([linear, rng.normal(0.0, 20.0, (frames, 2, 1))], axis=2)


def flow_for(true_px: np.ndarray, crop_from_image: np.ndarray) -> np.ndarray:
    """(T, N, 2) crop px: the flow that carries each true point (T, N, 2) source px from crop t-1 to crop t."""
    in_crop = np.einsum("tij,tnj->tni", crop_from_image[:, :, :2], true_px) + crop_from_image[:, None, :, 2]
    flow = np.full_like(true_px, np.nan)
    flow[1:] = in_crop[1:] - np.einsum("tij,tnj->tni", crop_from_image[:-1, :, :2], true_px[:-1]) \
        - crop_from_image[:-1, None, :, 2]
    return flow


def with_depth(points_px: np.ndarray) -> np.ndarray:
    """(T, N, 3) px: the points with a depth, and the eyes' centres PX_PER_MM * 63 px apart."""
    points = np.concatenate([points_px, np.full(points_px.shape[:2] + (1,), 7.0)], axis=-1)
    points[:, IRIS_CENTRE_LEFT, :2] = points[:, IRIS_CENTRE_RIGHT, :2] + [PX_PER_MM * INTERPUPILLARY_MM, 0.0]
    return points


def test_flow_steps_are_the_image_motion_across_changing_crops():
    rng = np.random.default_rng(1)
    true = with_depth(200.0 + np.cumsum(rng.normal(0.0, 1.0, (FRAMES, POINTS, 2)), axis=0))[..., :2]  # (T, N, 2) px
    crop_from_image = crops(FRAMES)
    steps = flow_steps_px(with_depth(true), crop_from_image, flow_for(true, crop_from_image))
    assert np.all(np.isnan(steps[0]))
    np.testing.assert_allclose(steps[1:], true[1:] - true[:-1], atol=1e-9)


def test_a_frame_without_a_face_gives_no_step_either_side():
    true = np.full((10, POINTS, 2), 100.0)
    crop_from_image = crops(10)
    flow = flow_for(true, crop_from_image)
    crop_from_image[4] = np.nan
    steps = flow_steps_px(with_depth(true), crop_from_image, flow)
    assert np.all(np.isnan(steps[[0, 4, 5]])) and np.all(np.isfinite(steps[[1, 2, 3, 6]]))


def flick(frames: int, apex_frame: int, half_width_frames: int, peak_px: float) -> np.ndarray:
    """(T,) px: a raised-cosine bump, the shape of a micro-expression."""
    distance = np.abs(np.arange(frames) - apex_frame) / half_width_frames
    return np.where(distance < 1.0, 0.5 * peak_px * (1.0 + np.cos(np.pi * distance)), 0.0)


def fused_for(seen_px: np.ndarray, true_px: np.ndarray, consistent: np.ndarray | None = None,
              flow_bias_px: float = 0.0) -> np.ndarray:
    crop_from_image = crops(len(true_px))
    true_px = with_depth(true_px)[..., :2]  # the eyes where with_depth puts them
    flow = flow_for(true_px, crop_from_image) + flow_bias_px
    if consistent is None:
        consistent = np.ones(true_px.shape[:2], bool)
    valid = np.ones(len(true_px), bool)
    return fused_landmarks_px(with_depth(seen_px), crop_from_image, flow, consistent, valid, FPS)


def test_a_flick_mediapipe_follows_half_way_is_read_in_full_and_its_jitter_goes():
    rng = np.random.default_rng(2)
    base = 300.0 + rng.normal(0.0, 30.0, (1, POINTS, 2))
    bump = flick(FRAMES, 150, 5, 3.0)[:, None, None] * np.array([0.0, -1.0])  # 0.33 s, 3 px up
    true = base + bump
    mediapipe = base + 0.5 * bump + rng.normal(0.0, 0.3, true.shape)  # half the flick, and jitter
    fused = fused_for(mediapipe, true)[..., :2]
    true, mediapipe = with_depth(true)[..., :2], with_depth(mediapipe)[..., :2]
    recovered = (fused[150, :, 1] - fused[140, :, 1]) / (true[150, :, 1] - true[140, :, 1])
    assert np.median(recovered) > 0.85  # MediaPipe alone: ~0.5
    far = np.r_[0:100, 200:FRAMES]
    jitter = np.sqrt(np.mean((mediapipe[far] - true[far]) ** 2))
    assert np.sqrt(np.mean((fused[far] - true[far]) ** 2)) < 0.3 * jitter  # the flow's steps, at MediaPipe's place


def test_the_depth_is_mediapipes():
    true = with_depth(np.full((60, POINTS, 2), 50.0))[..., :2]
    assert np.all(fused_for(true, true)[..., 2] == 7.0)


def test_a_steady_bias_in_the_flow_does_not_drift_the_track():
    rng = np.random.default_rng(3)
    true = 250.0 + np.cumsum(rng.normal(0.0, 0.5, (FRAMES, POINTS, 2)), axis=0)
    fused = fused_for(true, true, flow_bias_px=0.2)[..., :2]  # 0.2 px a frame: 60 px over the clip
    true = with_depth(true)[..., :2]
    inside = slice(100, 200)  # a linear drift is removed exactly away from the clip's ends
    assert np.abs(fused[inside] - true[inside]).max() < 0.1  # the crops turn the bias a little each frame


def test_where_mediapipe_and_the_flow_agree_the_track_is_mediapipes():
    rng = np.random.default_rng(4)
    true = 250.0 + np.cumsum(rng.normal(0.0, 2.0, (FRAMES, POINTS, 2)), axis=0)
    np.testing.assert_allclose(fused_for(true, true)[..., :2], with_depth(true)[..., :2], atol=1e-3)


def test_the_flow_moves_no_landmark_further_than_the_cap_from_mediapipes():
    true = np.full((FRAMES, POINTS, 2), 300.0)
    true[:, :400] += flick(FRAMES, 150, 10, 40.0)[:, None, None] * np.array([0.0, 1.0])  # a jaw opens 4 mm ...
    mediapipe = with_depth(true)
    fused = fused_for(mediapipe[..., :2], 0.5 * true)  # ... and the flow reads half of it
    distance_mm = np.linalg.norm(fused[..., :2] - mediapipe[..., :2], axis=-1) / PX_PER_MM
    assert distance_mm.max() == pytest.approx(MAX_CORRECTION_MM, rel=1e-3)


def test_flow_that_fails_its_check_is_not_followed():
    true = with_depth(np.full((FRAMES, POINTS, 2), 120.0))[..., :2]
    crop_from_image = crops(FRAMES)
    flow = flow_for(true, crop_from_image)
    consistent = np.ones((FRAMES, POINTS), bool)
    flow[100:110] += 5.0  # a blink tears the flow ...
    consistent[100:110] = False  # ... and its forward-backward check says so
    fused = fused_landmarks_px(with_depth(true), crop_from_image, flow, consistent, np.ones(FRAMES, bool), FPS)
    np.testing.assert_allclose(fused[..., :2], true, atol=1e-3)


def test_frames_without_a_face_stay_empty():
    true = with_depth(np.full((FRAMES, POINTS, 2), 120.0))[..., :2]
    crop_from_image = crops(FRAMES)
    flow = flow_for(true, crop_from_image)
    valid = np.ones(FRAMES, bool)
    valid[50:60] = False
    seen = with_depth(true)
    seen[~valid], crop_from_image[~valid], flow[50:61] = np.nan, np.nan, np.nan
    fused = fused_landmarks_px(seen, crop_from_image, flow, np.ones((FRAMES, POINTS), bool), valid, FPS)
    assert np.all(np.isnan(fused[~valid])) and np.all(np.isfinite(fused[valid]))
    np.testing.assert_allclose(fused[valid][..., :2], true[valid], atol=1e-3)


@pytest.mark.engine
@pytest.mark.parametrize("value", ["nan", "-1", "1e9"])
def test_a_fusion_span_out_of_range_is_refused(tmp_path, value):
    from test_engine_cli import run_engine

    code, _, stderr = run_engine("reconstruct", sample_path("video/single_face.mp4"), "--out", tmp_path / "t.npz",
                                 "--baseline", "--flow-fusion-s", value)
    assert code == 2 and "flow fusion span" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "t.npz").exists()


def test_on_disk_the_track_is_the_same(tmp_path):
    from mxr.ops.spill import spilling_into

    rng = np.random.default_rng(5)
    true = with_depth(250.0 + np.cumsum(rng.normal(0.0, 1.0, (FRAMES, POINTS, 2)), axis=0))
    mediapipe = true + rng.normal(0.0, 0.5, true.shape)
    crop_from_image = crops(FRAMES)
    arguments = (crop_from_image, flow_for(true[..., :2], crop_from_image), rng.random((FRAMES, POINTS)) > 0.1,
                 np.ones(FRAMES, bool), FPS)
    in_memory = fused_landmarks_px(mediapipe, *arguments)
    with spilling_into(tmp_path):
        on_disk = np.asarray(fused_landmarks_px(mediapipe, *arguments)[:])
    np.testing.assert_array_equal(on_disk, in_memory)
