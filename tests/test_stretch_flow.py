"""Stretches read again by flow against their first frame (ops/stretch_flow.py), on a real video
file of a textured plane moved by a known smooth warp, seen by a pinhole camera."""
import cv2
import numpy as np
import pytest

from mxr.models.open_head import load_open_head
from mxr.models.similarity import Similarities
from mxr.ops.perspective import PerspectiveCamera
from mxr.ops import stretch_flow
from mxr.ops.skin_track import FACING_CAMERA
from mxr.ops.perspective import camera_of_take
from mxr.ops.reconstruct import ReconstructSettings, reconstruct
from mxr.ops.sample_data import sample_path
from mxr.models.network.events import MotionWithStretches
from mxr.ops.skin_track import UNTRACKED_LANDMARKS as UNTRACKED
from mxr.ops.stretch_flow import AGREE_MM, reread_stretches, take_points_px
from mxr.ops.take import load_take

SIZE = (640, 480)  # px
FRAMES = 8
PEAK_PX = 1.5  # the warp's largest move, at frame FRAMES - 1
BUMP_SIGMA_PX = 25.0


def _camera(frames: int) -> PerspectiveCamera:
    """A pinhole (focal 800 px, the frame's centre) facing the open head's neutral 600 mm away."""
    neutral_mm = load_open_head().landmark_positions().astype(np.float64) * 1000.0
    neutral_mm -= neutral_mm.mean(axis=0)
    rotations = np.repeat(FACING_CAMERA[None], frames, axis=0)
    shifts = np.tile([0.0, 0.0, 600.0], (frames, 1))
    poses = Similarities(rotations, np.zeros((frames, 3)), np.full(frames, 800.0 / 600.0))
    return PerspectiveCamera(neutral_mm, poses, 800.0, 0.0, rotations, shifts, np.array(SIZE, np.float64) / 2.0)


def _texture(seed: int = 0) -> np.ndarray:
    """(H, W) uint8: smoothed noise, skin-like texture at a few px."""
    noise = cv2.GaussianBlur(np.random.default_rng(seed).normal(0.0, 1.0, SIZE[::-1]).astype(np.float32), (0, 0), 1.5)
    return np.clip(128 + 40 * noise / noise.std(), 0, 255).astype(np.uint8)


def _bump_px(points: np.ndarray, centre: np.ndarray, frame: int) -> np.ndarray:
    """(N, 2) px: the warp's move at ``points`` (N, 2) px in ``frame``: a Gaussian bump, up."""
    weight = np.exp(-0.5 * np.sum((points - centre) ** 2, axis=-1) / BUMP_SIGMA_PX ** 2)
    return PEAK_PX * frame / (FRAMES - 1) * weight[:, None] * np.array([0.0, -1.0])


@pytest.fixture(scope="module")
def warped_clip(tmp_path_factory):
    """A video whose frames are a texture moved by a growing bump centred on a brow landmark;
    the camera; the neutral's image points (N, 2) px; the bump's centre px."""
    camera = _camera(FRAMES)
    neutral_px = camera.project(camera.neutral_mm, slice(0, 1))[0]  # (478, 2) continuous px
    centre = neutral_px[105]  # a brow point
    texture = _texture()
    columns, rows = np.meshgrid(np.arange(SIZE[0], dtype=np.float32), np.arange(SIZE[1], dtype=np.float32))
    grid = np.stack([columns.ravel(), rows.ravel()], axis=-1) + 0.5  # continuous px of the pixel centres
    path = tmp_path_factory.mktemp("stretch") / "warped.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 24.0, SIZE)
    for frame in range(FRAMES):
        move = _bump_px(grid, centre, frame).reshape(SIZE[1], SIZE[0], 2).astype(np.float32)
        image = cv2.remap(texture, columns - move[..., 0], rows - move[..., 1], cv2.INTER_CUBIC)  # skin moves by +move
        writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path, camera, neutral_px, centre


def _take_points(camera: PerspectiveCamera, neutral_px: np.ndarray, centre: np.ndarray, share: float) -> np.ndarray:
    """(T, 478, 3) px: a take's points that saw ``share`` of the bump (depth 0)."""
    points = np.stack([neutral_px + share * _bump_px(neutral_px, centre, frame) for frame in range(FRAMES)])
    return np.concatenate([points, np.zeros(points.shape[:2] + (1,))], axis=2)


def _motion(camera: PerspectiveCamera, points_px: np.ndarray) -> np.ndarray:
    return camera.faces_at(points_px, slice(None)) - camera.neutral_mm  # (T, 478, 3) mm


def _read_again(path, camera, points_px, stretch, frame_count=FRAMES):
    take_motion = _motion(camera, points_px)
    corrections = reread_stretches(path, np.arange(frame_count), [stretch], points_px, camera)
    return take_motion, corrections, MotionWithStretches(take_motion, corrections)


def test_a_stretch_read_by_flow_recovers_the_motion_the_take_read_short(warped_clip):
    path, camera, neutral_px, centre = warped_clip
    stretch = (0, FRAMES - 1)
    take_motion, _, motion = _read_again(path, camera, _take_points(camera, neutral_px, centre, share=0.5), stretch)
    again = motion[0:FRAMES]  # (T, 478, 3) mm
    truth = _motion(camera, _take_points(camera, neutral_px, centre, share=1.0))
    moved = np.linalg.norm(truth[-1], axis=-1) > 0.5 * np.linalg.norm(truth[-1], axis=-1).max()
    moved[UNTRACKED] = False
    share = np.sum(again[-1, moved] * truth[-1, moved]) / np.sum(truth[-1, moved] ** 2)
    assert 0.85 < share < 1.15  # the take read 0.5
    still = np.linalg.norm(truth[-1], axis=-1) < 0.01
    still[UNTRACKED] = False
    assert np.median(np.linalg.norm(again[-1, still], axis=-1)) < 0.1  # mm where nothing moved
    np.testing.assert_allclose(again[0], take_motion[0], atol=1e-9)  # the stretch starts from the take


def test_points_the_flow_cannot_follow_keep_the_takes_reading(warped_clip, monkeypatch):
    path, camera, neutral_px, centre = warped_clip
    points_px = _take_points(camera, neutral_px, centre, share=0.5)
    stretch = (1, FRAMES - 1)
    take_motion, corrections, _ = _read_again(path, camera, points_px, stretch)
    correction = corrections[stretch]  # (n, 478, 3) mm
    assert not correction[:, UNTRACKED].any()  # folds and gaze
    apart = np.linalg.norm(correction, axis=-1)
    assert 0.3 < apart.max() <= AGREE_MM  # the bump: the flow sees more than the take
    monkeypatch.setattr(stretch_flow, "AGREE_MM", 0.2)  # now the bump's flow reading strays too far
    strict = _read_again(path, camera, points_px, stretch)[1][stretch]
    astray = apart > 0.2
    assert not strict[astray].any()
    np.testing.assert_array_equal(strict[~astray], correction[~astray])


def test_a_stretch_without_a_face_or_past_the_video_keeps_the_takes_reading(warped_clip):
    path, camera, neutral_px, centre = warped_clip
    points_px = _take_points(camera, neutral_px, centre, share=0.5)
    points_px[2] = np.nan  # no face in frame 2
    long_points = np.concatenate([points_px, np.repeat(points_px[-1:], 4, axis=0)])  # the take says 4 frames more
    long_camera = _camera(FRAMES + 4)  # than the video has
    progress = []
    corrections = reread_stretches(path, np.arange(FRAMES + 4), [(2, 5), (1, 4), (FRAMES - 2, FRAMES + 2)],
                                   long_points, long_camera,
                                   on_stretch=lambda done, total: progress.append((done, total)))
    assert list(corrections) == [(1, 4), (FRAMES - 2, FRAMES + 2)]  # not the one whose first frame has no face
    assert np.all(np.isfinite(corrections[(1, 4)])) and not corrections[(1, 4)][1].any()  # none where no face
    past = corrections[(FRAMES - 2, FRAMES + 2)]  # read over the frames the video has
    assert np.abs(past[1]).max() > 0.0 and not past[2:].any()
    assert progress == [(1, 3), (2, 3), (3, 3)]


def test_stretches_that_overlap_are_read_as_each_is_alone(warped_clip):
    path, camera, neutral_px, centre = warped_clip
    points_px = _take_points(camera, neutral_px, centre, share=0.5)
    points_px[2:6, :100, 0] += 40.0  # the outer stretch's face box is wider: the crops' corners differ
    alone = reread_stretches(path, np.arange(FRAMES), [(3, 5)], points_px, camera)
    nested = reread_stretches(path, np.arange(FRAMES), [(1, 6), (3, 5)], points_px, camera)
    np.testing.assert_allclose(nested[(3, 5)], alone[(3, 5)], atol=1e-9)


def test_the_motion_gives_a_stretch_read_again_only_for_exactly_its_frames():
    motion = np.arange(10 * 478 * 3, dtype=np.float64).reshape(10, 478, 3)
    correction = np.full((4, 478, 3), -1.0)
    reader = MotionWithStretches(motion, {(3, 6): correction})
    np.testing.assert_array_equal(reader[3:7], motion[3:7] - 1.0)
    np.testing.assert_array_equal(reader[3:6], motion[3:6])
    np.testing.assert_array_equal(reader[2:7], motion[2:7])
    assert len(reader) == 10 and reader.shape == (10, 478, 3)


def test_a_takes_points_read_back_through_its_camera_give_its_face(tmp_path):
    take_path = tmp_path / "take.npz"
    reconstruct(sample_path("video/single_face.mp4"), take_path, ReconstructSettings(use_network=False))
    take = load_take(take_path)
    camera = camera_of_take(take)
    points_px = take_points_px(take, camera)(slice(None))  # (T, 478, 3) px
    read_mm = camera.faces_at(points_px, slice(None)) - take.neutral_mm  # as the engine reads points
    valid = np.asarray(take.valid, bool)
    np.testing.assert_allclose(read_mm[valid], take.deformation_mm()[valid], atol=2e-3)
    # (camera_of_take against the engine's own camera: tests/test_injection.py, through injection.take_camera)
