import numpy as np
import pytest

from mxr.ops.canonical import INTERPUPILLARY_MM, IRIS_CENTRE_LEFT, IRIS_CENTRE_RIGHT, RIGID_LANDMARKS, canonicalize, image_to_camera
from mxr.ops.errors import MxrError


def _rotation_about_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _synthetic_take(frame_count: int = 12):
    """A face (mm) turning its head while non-rigid points move; returned as image px."""
    rng = np.random.default_rng(3)
    face_mm = rng.normal(scale=40.0, size=(478, 3))
    face_mm[IRIS_CENTRE_RIGHT] = [-31.5, 0, 0]
    face_mm[IRIS_CENTRE_LEFT] = [31.5, 0, 0]
    moving = np.setdiff1d(np.arange(478), np.r_[RIGID_LANDMARKS, IRIS_CENTRE_RIGHT, IRIS_CENTRE_LEFT])
    expression = np.zeros((frame_count, 478, 3))
    expression[6:, moving[:20], 1] = 4.0  # 4 mm raise from frame 6 on
    camera = []
    for frame in range(frame_count):
        rotation = _rotation_about_y(0.05 * frame)
        camera.append(2.5 * (face_mm + expression[frame]) @ rotation.T + [320, -180, 0])
    landmarks_px = image_to_camera(np.array(camera))  # the flip is its own inverse
    return landmarks_px, expression, moving


def test_image_to_camera_flips_y_and_z():
    np.testing.assert_array_equal(image_to_camera(np.array([[1.0, 2.0, 3.0]])), [[1.0, -2.0, -3.0]])


def test_head_motion_is_removed_and_expression_kept_in_mm():
    landmarks_px, expression, moving = _synthetic_take()
    valid = np.ones(len(landmarks_px), bool)
    canonical = canonicalize(landmarks_px, valid, np.arange(3))
    displacement = canonical.faces_mm - canonical.neutral_mm
    pupils = canonical.neutral_mm[IRIS_CENTRE_LEFT] - canonical.neutral_mm[IRIS_CENTRE_RIGHT]
    assert np.linalg.norm(pupils) == pytest.approx(INTERPUPILLARY_MM)
    # rigid points stay put despite the head turning
    assert np.abs(displacement[:, RIGID_LANDMARKS]).max() < 1e-6
    # the expression comes back in mm (the neutral may be rotated, so compare magnitudes)
    raised = np.linalg.norm(displacement[8, moving[:20]], axis=-1)
    np.testing.assert_allclose(raised, 4.0, atol=1e-6)
    np.testing.assert_allclose(canonical.poses.scale, 2.5, rtol=1e-6)


def test_invalid_frames_stay_nan_and_neutral_needs_a_face():
    landmarks_px, _, _ = _synthetic_take()
    valid = np.ones(len(landmarks_px), bool)
    valid[[0, 5]] = False
    landmarks_px[[0, 5]] = np.nan
    canonical = canonicalize(landmarks_px, valid, np.arange(3))
    assert np.isnan(canonical.faces_mm[[0, 5]]).all()
    assert np.isnan(canonical.poses.rotation[[0, 5]]).all()
    assert np.isfinite(canonical.faces_mm[valid]).all()
    with pytest.raises(MxrError, match="neutral"):
        canonicalize(landmarks_px, valid, np.array([0, 5]))
