"""Stabilised crops: the similarity fit, the canonical layout, and rigid motion removed on a real face."""
import cv2
import numpy as np
import pytest

from mxr.ops.canonical import RIGID_LANDMARKS
from mxr.ops.crops import (apply_affine, crop_layout, fit_similarity_2d, invert_affine, stabilisation_residual,
                           stabilising_transform, warp_to_crop)
from mxr.ops.landmarks import FaceTracker
from mxr.ops.sample_data import sample_path
from mxr.ops.video import read_frames_at


def similarity(angle, scale, shift):
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


@pytest.fixture(scope="module")
def face():
    frame = read_frames_at(sample_path("video/single_face.mp4"), [0])[0]
    with FaceTracker() as tracker:
        landmarks = tracker.track(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frame, landmarks


def test_fit_recovers_a_known_similarity():
    points = np.random.default_rng(0).normal(0, 50, (35, 2))
    truth = similarity(0.3, 1.7, (12.5, -4.0))
    np.testing.assert_allclose(fit_similarity_2d(points, apply_affine(truth, points)), truth, atol=1e-9)


def test_fit_never_reflects():
    points = np.random.default_rng(1).normal(0, 50, (35, 2))
    mirrored = points * np.array([-1.0, 1.0])
    assert np.linalg.det(fit_similarity_2d(points, mirrored)[:, :2]) > 0


def test_inverse_round_trips():
    transform = similarity(-0.2, 0.8, (100.0, 30.0))
    points = np.random.default_rng(2).uniform(0, 300, (10, 2))
    np.testing.assert_allclose(apply_affine(invert_affine(transform), apply_affine(transform, points)), points, atol=1e-9)


def test_real_face_lands_on_the_canonical_layout(face):
    _, landmarks = face
    transform = stabilising_transform(landmarks, 256)
    in_crop = apply_affine(transform, landmarks[:, :2].astype(np.float64))
    assert in_crop.min() > 0 and in_crop.max() < 256  # the whole face is inside the crop
    assert stabilisation_residual(landmarks, transform, 256) < 4.0  # crop px
    eye_corners = np.linalg.norm(in_crop[263] - in_crop[33])
    assert eye_corners == pytest.approx(0.43 * 256, rel=0.05)
    assert abs(in_crop[263, 1] - in_crop[33, 1]) < 4.0  # level eyes


def test_rigid_head_motion_is_removed(face):
    """The same face rotated, scaled and moved in the image gives the same crop."""
    frame, landmarks = face
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    motion = similarity(np.radians(12.0), 0.8, (90.0, 40.0))
    moved = cv2.warpAffine(grey, motion, (grey.shape[1], grey.shape[0]), flags=cv2.INTER_CUBIC)
    moved_landmarks = landmarks.copy()
    moved_landmarks[:, :2] = apply_affine(motion, landmarks[:, :2].astype(np.float64))
    original_crop = warp_to_crop(grey, stabilising_transform(landmarks))
    moved_crop = warp_to_crop(moved, stabilising_transform(moved_landmarks))
    inner = (slice(40, 216), slice(40, 216))
    assert np.abs(original_crop[inner].astype(float) - moved_crop[inner]).mean() < 3.0  # grey levels
    layout = crop_layout(256)
    np.testing.assert_allclose(
        apply_affine(stabilising_transform(moved_landmarks), moved_landmarks[RIGID_LANDMARKS, :2]),
        apply_affine(stabilising_transform(landmarks), landmarks[RIGID_LANDMARKS, :2]), atol=1e-3)
    assert layout.shape == (len(RIGID_LANDMARKS), 2)


def test_warp_puts_a_dot_where_the_transform_says():
    image = np.zeros((200, 300), np.uint8)
    image[50, 120] = 255
    transform = similarity(0.5, 1.3, (10.0, 20.0))
    crop = warp_to_crop(image.astype(np.float32), transform, 256)
    expected = apply_affine(transform, np.array([[120.0, 50.0]]))[0]
    y, x = np.unravel_index(np.argmax(crop), crop.shape)
    assert np.hypot(x - expected[0], y - expected[1]) <= 1.0
