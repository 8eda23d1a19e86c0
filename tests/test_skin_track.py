"""Skin-glued tracking (ops/skin_track.py) on synthetic textures moved by known motion."""
import cv2
import numpy as np
import pytest

from mxr.models.similarity import Similarities
from mxr.ops.errors import MxrError
from mxr.ops.perspective import PerspectiveCamera
from mxr.ops.reconstruct import UNTRACKED_LANDMARKS, ReconstructSettings, reconstruct, skin_where_trusted
from mxr.ops.sample_data import sample_path
from mxr.ops.skin_track import (AVERAGE_RADIUS_MM, FACING_CAMERA, ReferenceTracker, SkinTrackSettings, SourceFrames,
                                aggregate_at, choose_references, delaunay_triangles, fall_back, high_pass,
                                inverse_3x3, piecewise_affine_map, reference_links, rotation_distance,
                                settings_for_face, tie_references, track_with_references, warp_with_map)
from mxr.ops.take import load_take
from mxr.ops.video import read_frames_at


def texture(size: int = 200, seed: int = 0) -> np.ndarray:
    """(size, size) uint8 grey: smoothed noise, skin-like texture at a few px."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0.0, 1.0, (size, size)).astype(np.float32), (0, 0), 1.5)
    return np.clip(128 + 40 * noise / noise.std(), 0, 255).astype(np.uint8)


def grid_points(low: float, high: float, count: int) -> np.ndarray:
    """(count**2, 2) px on a regular grid."""
    xs = np.linspace(low, high, count)
    return np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)


def test_delaunay_triangles_cover_a_jittered_grid_once():
    points = grid_points(0, 100, 6) + np.random.default_rng(0).uniform(-3, 3, (36, 2))
    triangles = delaunay_triangles(points)
    assert triangles.shape[1] == 3 and len(set(triangles.ravel().tolist())) == 36  # every point a vertex
    corners = points[triangles]
    area = 0.5 * np.abs(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]))
    hull = cv2.contourArea(cv2.convexHull(points.astype(np.float32)))
    assert 0.95 * hull < area.sum() < hull + 1e-6 * hull  # no overlap; a thin triangle at the hull may be left out


def test_piecewise_affine_map_is_exact_at_vertices_and_affine_inside():
    source = grid_points(20, 180, 6)
    affine = np.array([[1.02, 0.05, 3.0], [-0.04, 0.98, -2.0]])
    target = source @ affine[:, :2].T + affine[:, 2]
    map_x, map_y = piecewise_affine_map(source, target, (0, 0), (200, 200))
    at_vertices = np.stack([map_x[np.rint(target[:, 1]).astype(int), np.rint(target[:, 0]).astype(int)],
                            map_y[np.rint(target[:, 1]).astype(int), np.rint(target[:, 0]).astype(int)]], axis=1)
    # at the nearest pixel centre, within the affine map's change over half a pixel
    assert np.nanmax(np.abs(at_vertices - source)) < 0.7
    inverse = cv2.invertAffineTransform(affine)
    yy, xx = np.mgrid[0:200, 0:200].astype(np.float64)
    expected_x = inverse[0, 0] * xx + inverse[0, 1] * yy + inverse[0, 2]
    inside = np.isfinite(map_x)
    assert inside.sum() > 0.5 * 200 * 200 and not inside[0, 0]
    assert np.max(np.abs(map_x[inside] - expected_x[inside])) < 1e-3


def test_inverse_3x3_matches_numpy_and_marks_singular_matrices():
    matrices = np.random.default_rng(4).normal(size=(50, 3, 3))
    matrices[7] = [[1.0, 2.0, 1.0], [2.0, 4.0, 1.0], [3.0, 6.0, 1.0]]  # a flat triangle: singular
    inverse, determinant = inverse_3x3(matrices)
    regular = np.arange(50) != 7
    assert np.allclose(inverse[regular], np.linalg.inv(matrices[regular]), atol=1e-9)
    assert np.allclose(determinant, np.linalg.det(matrices), atol=1e-9) and determinant[7] == 0.0
    assert not np.all(np.isfinite(inverse[7]))


def test_reference_tracker_recovers_a_known_smooth_warp():
    """The reference moved by a known head translation (the mesh knows it) and an unknown smooth
    'expression' bump: the tracked points land where the skin went, to a tenth of a pixel."""
    reference = texture(240)
    yy, xx = np.mgrid[0:240, 0:240].astype(np.float32)
    bump = np.exp(-((xx - 120) ** 2 + (yy - 110) ** 2) / (2 * 30.0 ** 2))
    expression = np.stack([0.8 * bump, -1.2 * bump], axis=2)  # (H, W, 2) px, displacement in the reference
    translation = np.array([4.3, -2.6], np.float32)
    # current(x) = reference(x - translation - expression(x - translation)) (expression small and smooth)
    back_x = xx - translation[0]
    back_y = yy - translation[1]
    shifted = cv2.remap(expression, back_x, back_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    current = cv2.remap(reference, back_x - shifted[..., 0], back_y - shifted[..., 1], cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REFLECT)
    mesh = grid_points(50, 190, 8)  # (64, 2) reference px
    tracker = ReferenceTracker(reference, mesh, SkinTrackSettings(sigma_px=3.0, highpass_sigma_px=0.0))
    tracked = tracker.track_frame(current, mesh + translation)
    ideal = mesh + translation + cv2.remap(expression, mesh[:, 0].astype(np.float32)[None],
                                           mesh[:, 1].astype(np.float32)[None], cv2.INTER_LINEAR)[0]
    seen = np.all(np.isfinite(tracked), axis=1)  # the mesh's sharp corners may see too little flow
    assert seen.sum() >= 60
    error = np.linalg.norm(tracked[seen] - ideal[seen], axis=1)
    assert np.median(error) < 0.1 and error.max() < 0.3
    assert np.linalg.norm(ideal - mesh - translation, axis=1).max() > 1.0  # the bump was there to find


def test_aggregation_beats_a_single_pixel_reading_of_a_noisy_smooth_field():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:160, 0:160].astype(np.float32)
    smooth = np.stack([0.5 + 0.004 * xx, -0.3 + 0.003 * yy], axis=2)  # (H, W, 2) px
    noisy = smooth + rng.normal(0.0, 0.2, smooth.shape).astype(np.float32)
    points = grid_points(30, 130, 10)
    truth = aggregate_at(smooth, np.ones((160, 160), np.float32), points, 0.0)
    single = aggregate_at(noisy, np.ones((160, 160), np.float32), points, 0.0)
    averaged = aggregate_at(noisy, np.ones((160, 160), np.float32), points, 4.0)
    single_error = np.median(np.linalg.norm(single - truth, axis=1))
    averaged_error = np.median(np.linalg.norm(averaged - truth, axis=1))
    assert averaged_error < 0.25 * single_error


def test_aggregation_ignores_untrusted_pixels_and_says_when_none_are_near():
    flow = np.zeros((100, 100, 2), np.float32)
    flow[:, 50:] = 5.0  # garbage on the right half
    weight = np.ones((100, 100), np.float32)
    weight[:, 50:] = 0.0
    read = aggregate_at(flow, weight, np.array([[45.0, 50.0], [90.0, 50.0]]), 4.0)
    assert np.allclose(read[0], 0.0)
    assert np.all(np.isnan(read[1]))


def test_high_pass_removes_shading_and_keeps_texture():
    base = texture(160).astype(np.float32)
    ramp = np.linspace(-40, 40, 160, dtype=np.float32)[None, :]
    lit = np.clip(base + ramp, 0, 255).astype(np.uint8)
    difference = high_pass(lit, 3.0).astype(np.float32) - high_pass(base.astype(np.uint8), 3.0).astype(np.float32)
    assert np.abs(difference[20:-20, 20:-20]).mean() < 1.0
    assert high_pass(base.astype(np.uint8), 3.0)[20:-20, 20:-20].std() > 10


def test_warp_marks_outside_and_fall_back_fills_it():
    image = texture(50)
    map_x = np.full((10, 10), np.nan, np.float32)
    map_y = np.full((10, 10), np.nan, np.float32)
    map_x[:5], map_y[:5] = 10.0, 10.0
    warped, inside = warp_with_map(image, map_x, map_y)
    assert inside[:5].all() and not inside[5:].any()
    assert np.all(warped[:5] == image[10, 10])
    tracked = np.array([[[1.0, 2.0], [np.nan, np.nan]]])
    assert np.array_equal(fall_back(tracked, np.full((1, 2, 2), 7.0)), [[[1.0, 2.0], [7.0, 7.0]]])


def yaw(degrees: np.ndarray) -> np.ndarray:
    """(T,) degrees -> (T, 3, 3) rotations about the vertical axis."""
    angle = np.radians(np.asarray(degrees, np.float64))
    rotations = np.zeros(angle.shape + (3, 3))
    rotations[:, 0, 0] = rotations[:, 2, 2] = np.cos(angle)
    rotations[:, 0, 2], rotations[:, 2, 0] = np.sin(angle), -np.sin(angle)
    rotations[:, 1, 1] = 1.0
    return rotations


def test_rotation_distance_is_the_turn_between_views():
    distance = np.degrees(rotation_distance(yaw([0.0, 10.0]), yaw([4.0, 30.0])))
    assert np.allclose(distance, [[4.0, 30.0], [6.0, 20.0]], atol=1e-6)


def test_choose_references_brings_every_pose_within_the_spacing():
    angles = 20.0 * np.sin(np.linspace(0.0, 3.0, 120))  # (T,) degrees, turning back and forth
    rotations = yaw(angles)
    rotations[7] = np.nan  # no face
    candidates = np.arange(0, 120, 3)  # the face at rest every third frame
    references = choose_references(rotations, candidates, 0, np.radians(4.0))
    assert references[0] == 0 and set(references) <= set(candidates.tolist())
    with_face = np.delete(np.arange(120), 7)
    nearest = np.degrees(rotation_distance(rotations[with_face], rotations[references])).min(axis=1)
    assert nearest.max() <= 4.0 + 1e-9
    assert len(references) <= 8  # 40 degrees of turn, 8 degrees a reference: greedy, not every candidate


def test_reference_links_tie_a_far_reference_through_its_nearest():
    links = reference_links(yaw([0.0, 4.0, 8.0, 30.0]), np.radians(5.0))
    assert links.tolist() == [[0, 1], [1, 2], [2, 3]]


def test_tie_references_averages_paths_and_holds_the_primary():
    rng = np.random.default_rng(1)
    truth = np.concatenate([np.zeros((1, 50, 2)), rng.normal(0.0, 2.0, (3, 50, 2))])  # (R, N, 2) px
    links = np.array([[i, j] for i in range(4) for j in range(4) if i != j])  # (12, 2) every pair, both ways
    measured = truth[links[:, 1]] - truth[links[:, 0]] + rng.normal(0.0, 0.1, (len(links), 50, 2))
    measured[0, :5] = np.nan  # a link that did not see five points
    offsets = tie_references(links, measured, 4)
    assert np.all(offsets[0] == 0.0)
    error = np.linalg.norm(offsets - truth, axis=2)[1:]
    assert np.median(error) < 0.09  # below one link's error (0.1 px a coordinate): the paths averaged
    chain = tie_references(np.array([[0, 1], [1, 2], [2, 3]]), truth[[1, 2, 3]] - truth[[0, 1, 2]], 4)
    assert np.allclose(chain, truth)  # offsets add up along a chain


def sequence_with_parallax(count: int = 25, size: int = 260):
    """A texture turning by up to 20 degrees: each frame moves it by a translation the mesh knows
    and by a smooth parallax field, proportional to the turn, that the mesh does not (a mesh's
    depth error). Frames (T,) (size, size) uint8, the posed mesh (T, N, 2) px, the rotations
    (T, 3, 3) and where the primary's (frame 0's) skin at the mesh's vertices truly is (T, N, 2)."""
    base = texture(size, seed=4)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    bump = np.exp(-((xx - 140) ** 2 + (yy - 120) ** 2) / (2 * 45.0 ** 2))
    parallax = np.stack([2.5 * bump, -1.5 * bump], axis=2)  # (H, W, 2) px at 20 degrees
    angles = 20.0 * np.sin(np.linspace(0.0, np.pi, count))  # out and back
    grid = grid_points(60, 200, 8)  # (64, 2) the mesh's vertices in frame 0
    frames, mesh, truth = [], [], []
    for t, angle in enumerate(angles):
        shift = np.array([0.3 * t, -0.2 * t], np.float32)
        field = shift + (angle / 20.0) * parallax  # (H, W, 2) where the skin at x in frame 0 goes
        back_x, back_y = xx - field[..., 0], yy - field[..., 1]
        for _ in range(3):  # invert y = x + field(x) by fixed point
            moved = cv2.remap(field, back_x, back_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            back_x, back_y = xx - moved[..., 0], yy - moved[..., 1]
        frames.append(cv2.remap(base, back_x, back_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
        mesh.append(grid + shift)
        at_grid = cv2.remap(parallax, grid[:, 0].astype(np.float32)[None], grid[:, 1].astype(np.float32)[None],
                            cv2.INTER_LINEAR)[0]  # (N, 2) px
        truth.append(grid + shift + (angle / 20.0) * at_grid)
    return frames, np.array(mesh), yaw(angles), np.array(truth)


def test_track_with_references_follows_the_primary_skin_through_tied_references():
    """Frames far from frame 0 are compared with other references, whose skin at the mesh's
    vertices is not frame 0's (parallax up to 2.9 px): only their ties bring the points back."""
    frames, mesh, rotations, truth = sequence_with_parallax()
    settings = SkinTrackSettings(sigma_px=3.0, highpass_sigma_px=0.0, reference_spacing_deg=5.0, link_deg=12.0)
    candidates = np.arange(len(frames))
    tracked = track_with_references(frames, mesh, rotations, candidates, 0, settings)
    references = choose_references(rotations, candidates, 0, np.radians(5.0))
    assert len(references) >= 3
    seen = np.all(np.isfinite(tracked), axis=2)
    assert seen.mean() > 0.9
    error = np.linalg.norm(tracked - truth, axis=2)[seen]
    assert np.median(error) < 0.1 and np.percentile(error, 99) < 0.4
    assert np.linalg.norm(truth - mesh, axis=2).max() > 2.5  # the parallax was there to find


def test_frames_tracked_side_by_side_are_reported_in_order_and_a_cancel_stops_them(monkeypatch):
    import mxr.ops.skin_track as skin_track

    frames, mesh, rotations, _ = sequence_with_parallax()
    settings = SkinTrackSettings(sigma_px=3.0, highpass_sigma_px=0.0, reference_spacing_deg=5.0, link_deg=12.0)
    candidates = np.arange(len(frames))
    reports = []
    side_by_side = track_with_references(frames, mesh, rotations, candidates, 0, settings,
                                         lambda done, total: reports.append((done, total)))
    assert reports == [(k + 1, len(frames)) for k in range(len(frames))]
    monkeypatch.setattr(skin_track, "TRACK_THREADS", 1)
    one_by_one = track_with_references(frames, mesh, rotations, candidates, 0, settings)
    np.testing.assert_array_equal(side_by_side, one_by_one)  # the same points, whichever thread tracked a frame

    class Cancelled(Exception):
        pass

    heard = []

    def cancel_at_third(done, total):
        heard.append(done)
        if done == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        track_with_references(frames, mesh, rotations, candidates, 0, settings, cancel_at_third)
    assert heard == [1, 2, 3]


def test_source_frames_keep_the_references_and_stream_the_rest(tmp_path):
    clip = sample_path("video/single_face.mp4")
    indices = np.arange(10, 30)  # a take that starts at source frame 10
    frames = SourceFrames(clip, indices, np.array([12, 3]))
    expected = {index: cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) for index, image in read_frames_at(clip, [13, 22, 25, 29]).items()}
    np.testing.assert_array_equal(frames[12], expected[22])  # a kept one, before anything streamed
    np.testing.assert_array_equal(frames[3], expected[13])
    np.testing.assert_array_equal(frames[15], expected[25])  # streamed, in order
    np.testing.assert_array_equal(frames[12], expected[22])  # kept: at any time
    np.testing.assert_array_equal(frames[19], expected[29])
    with pytest.raises(MxrError, match="could not be decoded again"):
        frames[16]  # streamed frames go forward only


@pytest.mark.engine
def test_the_engine_reads_the_face_from_skin_glued_points_by_default(tmp_path):
    take_path = tmp_path / "take.npz"
    reconstruct(sample_path("video/single_face.mp4"), take_path, ReconstructSettings(use_network=False))
    plain_path = tmp_path / "plain.npz"
    reconstruct(sample_path("video/single_face.mp4"), plain_path, ReconstructSettings(use_network=False, skin_track=False))
    skin, plain = load_take(take_path), load_take(plain_path)
    assert skin.settings["skin_track"] and not plain.settings["skin_track"]
    moved = np.nanmedian(np.abs(skin.macro_mm - plain.macro_mm))
    assert 0.0 < moved < 2.0  # other points, the same face
    np.testing.assert_array_equal(skin.landmarks_px, plain.landmarks_px)  # the observations stay MediaPipe's


def _facing_camera(neutral_mm: np.ndarray, frames: int) -> PerspectiveCamera:
    """A pinhole (focal 800 px, centre (320, 240)) looking at ``neutral_mm`` 600 mm away, head still."""
    rotations = np.repeat(FACING_CAMERA[None], frames, axis=0)
    shifts = np.tile([0.0, 0.0, 600.0], (frames, 1))
    poses = Similarities(rotations, np.zeros((frames, 3)), np.ones(frames))
    return PerspectiveCamera(neutral_mm, poses, 800.0, 0.0, rotations, shifts, np.array([320.0, 240.0]))


def _moved_px(camera: PerspectiveCamera, moves_mm: np.ndarray) -> np.ndarray:
    """(T, 478, 3) px of the neutral moved by ``moves_mm`` (T, 478, 3) canonical mm, depth 0."""
    points = np.stack([camera.project(camera.neutral_mm + move, slice(frame, frame + 1))[0]
                       for frame, move in enumerate(moves_mm)])
    return np.concatenate([points, np.zeros(points.shape[:2] + (1,))], axis=2)


def test_skin_points_are_used_where_the_face_moves_little_and_they_agree_with_the_landmarks():
    rng = np.random.default_rng(3)
    neutral_mm = np.column_stack([rng.uniform(-60, 60, 478), rng.uniform(-80, 60, 478), rng.uniform(-20, 20, 478)])
    camera = _facing_camera(neutral_mm, 4)
    landmark_moves, tracked_moves = np.zeros((4, 478, 3)), np.zeros((4, 478, 3))
    landmark_moves[:, :, 0] = [[0.5], [0.5], [6.0], [0.5]]  # the landmarks: little, little, much, little
    tracked_moves[:, :, 0] = [[1.0], [9.0], [1.0], [4.25]]  # the skin: agrees, not at all, either, halfway
    landmarks_px, tracked_px = _moved_px(camera, landmark_moves), _moved_px(camera, tracked_moves)
    read = skin_where_trusted(tracked_px, landmarks_px, camera)
    skin = np.setdiff1d(np.arange(478), UNTRACKED_LANDMARKS)
    np.testing.assert_allclose(read[0, skin], tracked_px[0, skin])  # small motion, agreeing: the skin
    np.testing.assert_allclose(read[1, skin], landmarks_px[1, skin])  # 8.5 mm apart: the skin point is lost
    np.testing.assert_allclose(read[2, skin], landmarks_px[2, skin])  # 6 mm of motion: a large one
    middle = 0.5 * (tracked_px[3, skin] + landmarks_px[3, skin])  # the fade is linear in mm, near-linear in px
    np.testing.assert_allclose(read[3, skin, :2], middle[:, :2], atol=0.05)
    np.testing.assert_allclose(read[:, UNTRACKED_LANDMARKS], landmarks_px[:, UNTRACKED_LANDMARKS])  # lids, lips, irises


def test_the_flow_is_averaged_over_a_patch_of_the_face_no_wider_on_a_small_face():
    widest = SkinTrackSettings().sigma_px
    assert settings_for_face(3.0).sigma_px == widest  # a large face: the widest average
    assert AVERAGE_RADIUS_MM * 0.8 < widest  # a small face ...
    assert settings_for_face(0.8).sigma_px == pytest.approx(AVERAGE_RADIUS_MM * 0.8)  # ... its own few mm
    assert settings_for_face(0.1).sigma_px == 1.5  # a tiny face: still more than one pixel
