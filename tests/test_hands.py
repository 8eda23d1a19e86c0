"""A hand over the face, found by MediaPipe's hand landmarker on real frames (ops/hands.py)."""
import cv2
import numpy as np
import pytest

from mxr.ops.face_mesh_image import detect_face_mesh
from mxr.ops.hands import HAND_ON_FACE_SHARE, hand_covers_face, hand_on_face
from mxr.ops.sample_data import sample_path
from mxr.ops.video import read_frames_at

WOLFGANG = "video/WolfgangLanger_Pexels.mp4"


def face_box_points(low, high):
    """A stand-in for the face's landmarks (478, 2): only their box matters."""
    points = np.full((478, 2), (np.asarray(low) + np.asarray(high)) / 2.0)
    points[0], points[1] = low, high
    return points


def test_a_hand_counts_when_enough_of_its_points_lie_in_the_face_box():
    face = face_box_points((100.0, 100.0), (200.0, 250.0))
    inside = int(np.ceil(HAND_ON_FACE_SHARE * 21))
    hand = np.full((21, 2), 400.0)
    hand[:inside] = 150.0
    assert hand_on_face([hand], face)
    hand[inside - 1] = 400.0  # one point fewer inside: a hand beside the face
    assert not hand_on_face([hand], face)
    assert not hand_on_face([], face)
    assert hand_on_face([np.full((21, 2), 400.0), np.full((21, 2), 150.0)], face)  # either hand


@pytest.mark.parametrize("frame, covered", [(150, True), (220, True), (300, False), (40, False)])
def test_her_fingers_over_her_face_are_found_and_her_laugh_and_tears_are_not(frame, covered):
    """WolfgangLanger: a hand over her cheek (150) and her lips (220, the found neutral's frames);
    nothing covers her laughing (300) or crying (40) face."""
    image = read_frames_at(sample_path(WOLFGANG), [frame])[frame]
    face_px = detect_face_mesh(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    assert face_px is not None
    assert hand_covers_face(sample_path(WOLFGANG), frame, face_px) is covered


def test_a_frame_past_the_end_shows_no_hand():
    assert hand_covers_face(sample_path(WOLFGANG), 10_000, face_box_points((0.0, 0.0), (640.0, 360.0))) is False
