"""Optical flow on a real face crop warped by known sub-pixel motion, and the small helpers."""
import cv2
import numpy as np
import pytest

from mxr.ops.crops import apply_affine, stabilising_transform, warp_to_crop
from mxr.ops.flow import (DEFAULT_FLOW_PROFILE, POINT_MAX_CHANGE_PX, FlowEstimator, dense_flow,
                          dense_forward_backward_error, flow_columns, forward_backward_error, is_consistent, make_dis,
                          refine_at_points, sample_bilinear, smooth_motion_field, windowed_flow)
from mxr.ops.landmarks import FaceTracker
from mxr.ops.sample_data import sample_path
from mxr.ops.video import read_frames_at


@pytest.fixture(scope="module")
def face_crop():
    """(256, 256) uint8 grey crop of a real face, its landmarks (478, 2) crop px and an inner-face mask."""
    frame = read_frames_at(sample_path("video/single_face.mp4"), [0])[0]
    with FaceTracker() as tracker:
        landmarks = tracker.track(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    transform = stabilising_transform(landmarks)
    crop = warp_to_crop(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), transform)
    points = apply_affine(transform, landmarks[:, :2].astype(np.float64))
    mask = np.zeros(crop.shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points[:468].astype(np.float32)).astype(np.int32), 1)
    return crop, points, cv2.erode(mask, np.ones((9, 9), np.uint8)).astype(bool)


def moved_pair(image, field):
    """(previous, current) such that the flow previous -> current is exactly ``field``: both are
    cubic resamplings of ``image`` (half-pixel offset), so they are equally smoothed."""
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(np.float32)
    previous = cv2.remap(image, xx + field[..., 0] + 0.5, yy + field[..., 1] + 0.5, cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REFLECT)
    current = cv2.remap(image, xx + 0.5, yy + 0.5, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return previous, current


@pytest.mark.parametrize("peak_px", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_default_profile_recovers_known_motion_within_a_tenth_of_a_pixel(face_crop, peak_px, seed):
    crop, _, mask = face_crop
    field = smooth_motion_field(crop.shape, peak_px, seed)
    previous, current = moved_pair(crop, field)
    flow = dense_flow(make_dis(DEFAULT_FLOW_PROFILE), previous, current)
    error = np.linalg.norm(flow - field, axis=2)[mask]
    assert np.median(error) < 0.1


def test_flow_at_landmarks_and_consistency_on_known_motion(face_crop):
    crop, points, _ = face_crop
    field = smooth_motion_field(crop.shape, 1.0, seed=3)
    previous, current = moved_pair(crop, field)
    pair = FlowEstimator().pair(previous, current, points)
    truth = sample_bilinear(field, points)
    inner = np.arange(468)
    assert np.median(np.linalg.norm(pair.at_points[inner] - truth[inner], axis=1)) < 0.1
    assert pair.consistent[inner].mean() > 0.9
    assert pair.at_points.shape == (478, 2) and pair.fb_error_px.shape == (478,)


def test_windowed_flow_matches_the_whole_crop_inside_the_face_and_is_nan_outside(face_crop):
    crop, points, mask = face_crop
    previous, current = moved_pair(crop, smooth_motion_field(crop.shape, 1.0, seed=5))
    dis = make_dis(DEFAULT_FLOW_PROFILE)
    columns = flow_columns(crop.shape[1])
    assert (columns.start, columns.stop) == (24, 232)
    assert points[:468, 0].min() > columns.start and points[:468, 0].max() < columns.stop  # the face is inside
    windowed = windowed_flow(dis, previous, current, columns)
    whole = dense_flow(dis, previous, current)
    assert np.isnan(windowed[:, :columns.start]).all() and np.isnan(windowed[:, columns.stop:]).all()
    assert np.median(np.linalg.norm(windowed - whole, axis=2)[mask]) < 0.02


def test_a_pairs_full_width_flows_are_its_windows_with_nan_around(face_crop):
    crop, points, _ = face_crop
    previous, current = moved_pair(crop, smooth_motion_field(crop.shape, 1.0, seed=7))
    pair = FlowEstimator().pair(previous, current, points)
    columns = flow_columns(crop.shape[1])
    assert pair.forward_window.shape == pair.backward_window.shape == (256, columns.stop - columns.start, 2)
    np.testing.assert_array_equal(pair.forward, windowed_flow(make_dis(DEFAULT_FLOW_PROFILE), previous, current, columns))
    np.testing.assert_array_equal(pair.backward[:, columns], pair.backward_window)
    assert np.isnan(pair.backward[:, :columns.start]).all() and np.isnan(pair.backward[:, columns.stop:]).all()
    dense = sample_bilinear(pair.forward, points[:468])
    assert np.all(np.linalg.norm(pair.at_points[:468] - dense, axis=1) <= POINT_MAX_CHANGE_PX)  # refined from there
    dense_error = forward_backward_error(pair.forward, pair.backward, points[:468])
    np.testing.assert_allclose(pair.fb_error_px[:468], dense_error, atol=1e-5)  # the check is the dense flows'


def test_the_point_refinement_reads_local_skin_motion_the_dense_flow_smooths_away(face_crop):
    crop, points, _ = face_crop
    yy, xx = np.mgrid[0:crop.shape[0], 0:crop.shape[1]].astype(np.float32)
    for landmark in (61, 291, 145, 374):  # the lip corners and the lower lids
        centre = points[landmark]
        bump = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * 7.0**2))  # 7 px std, ~6 mm
        field = np.stack([0.3 * bump, -bump], axis=-1)  # 1 px up at the centre
        previous, current = moved_pair(crop, field)
        pair = FlowEstimator().pair(previous, current, points)
        near = np.flatnonzero(np.linalg.norm(points[:468] - centre, axis=1) < 5.6)  # skin points on the bump
        truth = sample_bilinear(field, points[near])

        def share(estimate):
            return np.sum(estimate * truth) / np.sum(truth * truth)

        assert share(sample_bilinear(pair.forward, points[near])) < 0.7, landmark
        assert 0.9 < share(pair.at_points[near]) < 1.1, landmark


def test_refining_keeps_nan_and_the_dense_flow_where_the_window_is_flat(face_crop):
    crop, points, _ = face_crop
    start = np.array([[0.4, -0.2], [np.nan, np.nan], [0.4, -0.2]])
    at = np.array([points[61], points[61], [128.0, 128.0]])
    flat = np.full_like(crop, 128)
    refined = refine_at_points(crop, crop, at, start)
    np.testing.assert_allclose(refined[0], 0.0, atol=0.05)  # no motion: the refinement finds none
    assert np.isnan(refined[1]).all()
    np.testing.assert_array_equal(refine_at_points(flat, flat, at, start)[[0, 2]], start[[0, 2]].astype(np.float32))


def test_points_outside_the_flow_columns_get_no_flow_and_fail_the_check(face_crop):
    crop, points, _ = face_crop
    previous, current = moved_pair(crop, smooth_motion_field(crop.shape, 1.0, seed=6))
    outside = np.array([[10.0, 128.0], [245.0, 100.0]])
    pair = FlowEstimator().pair(previous, current, np.vstack([points, outside]))
    assert np.isnan(pair.at_points[-2:]).all() and not pair.consistent[-2:].any()
    assert pair.consistent[:468].mean() > 0.9


def test_an_occluder_fails_the_consistency_check(face_crop):
    crop, points, _ = face_crop
    previous = crop.copy()
    current = crop.copy()
    current[150:230, 60:200] = np.random.default_rng(0).integers(0, 255, (80, 140), dtype=np.uint8)  # a "hand"
    pair = FlowEstimator().pair(previous, current, points)
    covered = (points[:, 0] > 70) & (points[:, 0] < 190) & (points[:, 1] > 160) & (points[:, 1] < 220)
    clear = points[:, 1] < 120
    assert pair.consistent[covered].mean() < 0.5
    assert pair.consistent[clear].mean() > 0.9


def test_sample_bilinear_is_exact_on_a_linear_field():
    yy, xx = np.mgrid[0:20, 0:30].astype(np.float32)
    field = np.stack([2 * xx + 1, 3 * yy - xx], axis=-1)  # (20, 30, 2)
    points = np.array([[0.0, 0.0], [12.25, 7.5], [29.0, 19.0], [3.9, 18.2]])
    expected = np.stack([2 * points[:, 0] + 1, 3 * points[:, 1] - points[:, 0]], axis=-1)
    np.testing.assert_allclose(sample_bilinear(field, points), expected, atol=1e-5)
    outside = sample_bilinear(field, np.array([[-0.5, 3.0], [30.0, 1.0], [np.nan, 2.0]]))
    assert np.isnan(outside).all()


def test_forward_backward_error_of_constant_fields():
    shift = np.array([0.7, -0.4], np.float32)
    forward = np.broadcast_to(shift, (32, 32, 2)).copy()
    points = np.array([[10.0, 10.0], [20.5, 5.25]])
    np.testing.assert_allclose(forward_backward_error(forward, -forward, points), 0.0, atol=1e-6)
    np.testing.assert_allclose(forward_backward_error(forward, forward, points), 2 * np.linalg.norm(shift), atol=1e-5)
    dense = dense_forward_backward_error(forward, -forward)
    assert np.allclose(dense[1:, :31], 0.0, atol=1e-5)
    assert np.isinf(dense[0]).all() and np.isinf(dense[:, 31]).all()  # x + F leaves the crop there


def test_consistency_threshold():
    flow = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 0.0]])
    assert is_consistent(np.array([0.2, 0.7, np.nan]), flow).tolist() == [True, True, False]
    assert not is_consistent(np.array([0.4]), np.zeros((1, 2)))[0]


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown flow profile"):
        make_dis("superfine")
