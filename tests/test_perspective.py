"""The head pose from the image through a pinhole camera: a turning face stays still, expressions stay."""
import numpy as np
import pytest

from mxr.models.network.synthetic import rotation_from_angles
from mxr.models.open_head import load_open_head
from mxr.ops.canonical import INTERPUPILLARY_MM, IRIS_CENTRE_LEFT, IRIS_CENTRE_RIGHT, canonicalize
from mxr.ops.perspective import perspective_faces

SIZE = (640, 480)
FOCAL_PX = 1024.0  # 1.6 x the frame's longer side: one of the candidates
RAISED = np.array([13, 14, 61, 291, 0, 17])  # lips and mouth corners


def pinhole_take(frames: int = 60):
    """The open head's landmarks (mm) turning +-20 degrees of yaw and 12 of pitch 60 cm from a
    pinhole camera, as image px, with a depth that is MediaPipe-like: scaled wrongly and bending
    with the yaw. Frames 40-49 raise the lips and mouth corners by 4 mm."""
    face = load_open_head().landmark_positions().astype(np.float64) * 1000.0
    face -= face.mean(axis=0)
    face *= INTERPUPILLARY_MM / np.linalg.norm(face[IRIS_CENTRE_LEFT] - face[IRIS_CENTRE_RIGHT])
    times = np.arange(frames) / 30.0
    yaw, pitch = np.radians(20.0) * np.sin(2.1 * times), np.radians(12.0) * np.sin(1.3 * times + 1.0)
    expression = np.zeros((frames, 478, 3))
    expression[40:50, RAISED, 1] = 4.0
    camera_mm = (np.einsum("tij,tnj->tni", rotation_from_angles(yaw, pitch, np.zeros(frames)), face + expression)
                 + [5.0, -10.0, -600.0])  # canonical camera axes: +Z towards the camera
    pixels = np.stack([SIZE[0] / 2 + FOCAL_PX * camera_mm[..., 0] / -camera_mm[..., 2],
                       SIZE[1] / 2 - FOCAL_PX * camera_mm[..., 1] / -camera_mm[..., 2]], axis=-1)
    bent_depth_px = -(FOCAL_PX / 600.0) * 0.6 * (camera_mm[..., 2] + 600.0) * (1.0 + 0.5 * np.sin(yaw)[:, None])
    return np.concatenate([pixels, bent_depth_px[..., None]], axis=-1)


def test_a_turning_face_stays_still_where_the_mesh_depth_would_bend_it_and_an_expression_stays():
    landmarks_px = pinhole_take()
    valid = np.ones(len(landmarks_px), bool)
    neutral_frames = np.arange(5)
    similarity = canonicalize(landmarks_px, valid, neutral_frames)
    perspective = perspective_faces(landmarks_px, valid, neutral_frames, similarity.neutral_mm, similarity.faces_mm, SIZE)
    still = np.setdiff1d(np.arange(468), RAISED)
    wander_similarity = np.linalg.norm(similarity.faces_mm - similarity.neutral_mm, axis=-1)[:, still].mean()
    wander_perspective = np.linalg.norm(perspective.faces_mm - perspective.neutral_mm, axis=-1)[:, still].mean()
    print(f"still-face wander: similarity {wander_similarity:.3f} mm, perspective {wander_perspective:.3f} mm")
    assert wander_similarity > 2.0 and wander_perspective < 0.4  # measured 2.85 and 0.29 mm
    assert perspective.focal_px == pytest.approx(FOCAL_PX)
    raised = np.linalg.norm(perspective.faces_mm[45, RAISED] - perspective.neutral_mm[RAISED], axis=-1)
    np.testing.assert_allclose(raised, 4.0, atol=0.8)  # read at the neutral's depth, in the image plane


def test_the_weak_perspective_pose_it_stores_lands_the_neutral_on_the_image():
    landmarks_px = pinhole_take()
    valid = np.ones(len(landmarks_px), bool)
    valid[[7, 30]] = False
    landmarks_px[~valid] = np.nan
    similarity = canonicalize(landmarks_px, valid, np.arange(5))
    perspective = perspective_faces(landmarks_px, valid, np.arange(5), similarity.neutral_mm, similarity.faces_mm, SIZE)
    assert np.isnan(perspective.faces_mm[~valid]).all() and np.isnan(perspective.poses.rotation[~valid]).all()
    poses = perspective.poses
    camera_px = (poses.scale[:, None, None] * np.einsum("tij,nj->tni", poses.rotation, perspective.neutral_mm)
                 + poses.translation[:, None])  # (T, 478, 3) x right, y up
    image = np.stack([camera_px[..., 0], -camera_px[..., 1]], axis=-1)
    miss = np.linalg.norm(image - landmarks_px[..., :2], axis=-1)[valid][:, 40:50]  # unmoved points near the middle
    assert np.median(miss) < 3.0  # weak perspective of a 15 cm face at 60 cm: a few px off at most


def search_inputs(frames: int = 30) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``perspective_camera``'s inputs for a short pinhole take: landmarks (T, 478, 3) px, valid
    (T,), the neutral (478, 3) mm of its first five frames, the calm frames."""
    from mxr.ops.perspective import calm_frames

    landmarks_px = pinhole_take(frames)
    valid = np.ones(len(landmarks_px), bool)
    similarity = canonicalize(landmarks_px, valid, np.arange(5))
    return landmarks_px, valid, similarity.neutral_mm, calm_frames(similarity.faces_mm, valid)


def test_a_known_focal_length_is_used_as_it_is_and_only_it_is_solved():
    from mxr.ops.perspective import perspective_camera

    landmarks_px, valid, neutral_mm, calm = search_inputs()
    reports = []
    for focal in (FOCAL_PX, 1500.0):  # the true one, and one the search would not pick
        camera = perspective_camera(landmarks_px, valid, np.arange(5), neutral_mm, calm, SIZE,
                                    lambda done, total: reports.append(total), focal_candidates_px=(focal,))
        assert camera.focal_px == focal
    assert len(set(reports)) == 1  # one candidate's work, either way
    searched = []
    perspective_camera(landmarks_px, valid, np.arange(5), neutral_mm, calm, SIZE,
                       lambda done, total: searched.append(total))
    assert searched[-1] - len(landmarks_px) == 4 * (reports[0] - len(landmarks_px))  # four candidates searched


def test_the_focal_length_search_reports_progress_and_can_be_stopped():
    from mxr.ops.perspective import FOCAL_CANDIDATES, ROUNDS, perspective_camera

    landmarks_px, valid, neutral_mm, calm = search_inputs()
    reports = []
    perspective_camera(landmarks_px, valid, np.arange(5), neutral_mm, calm, SIZE,
                       lambda done, total: reports.append((done, total)))
    done = [count for count, _ in reports]
    total = reports[-1][1]
    assert reports[-1] == (total, total) and all(count == total for _, count in reports)
    assert np.all(np.diff(done) > 0)  # counted in poses found: each round poses the views and neutral frames
    search = total - len(landmarks_px)  # the frames' poses come last, one a frame
    assert done[-len(landmarks_px):] == list(range(search + 1, total + 1))
    assert len(done) == len(FOCAL_CANDIDATES) * (ROUNDS + 1) + len(landmarks_px) and done[0] > 1

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        raise Cancelled  # ESC in Blender, SIGINT in a terminal: the first report stops the solve

    with pytest.raises(Cancelled):
        perspective_camera(landmarks_px, valid, np.arange(5), neutral_mm, calm, SIZE, cancel)

    heard = []

    def cancel_once(done, total):  # ESC pressed once, while the candidates are solved side by side
        heard.append(done)
        if len(heard) == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        perspective_camera(landmarks_px, valid, np.arange(5), neutral_mm, calm, SIZE, cancel_once)
    assert len(heard) == 3  # no candidate's search went on reporting after the cancel
