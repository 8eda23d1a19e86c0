"""Clips rendered from the real scanned face: the scan, the truth file, and that the rendered
pixels move the way the truth says (MediaPipe on the frames, not just arithmetic)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mxr.models.scan import SCAN_DIR, load_scan

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not (SCAN_DIR / "james.obj").is_file(), reason="run scripts/fetch_data.py (menpo3d scan)"),
]

FPS, FRAMES, WIDTH, HEIGHT = 30.0, 12, 320, 240


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 12-frame 320x240 clip with a micro event, rendered into a temporary folder."""
    from mxr.scripts.render_scan_clips import ClipSpec, load_driven_scan, render_clip

    driven, _hits = load_driven_scan()
    spec = ClipSpec(FPS, FRAMES / FPS, seed=3, width_px=WIDTH, height_px=HEIGHT, neutral_seconds=0.03)
    video_path, truth_path, _seconds = render_clip(driven, spec, tmp_path_factory.mktemp("scan_clip"))
    return video_path, truth_path


def _frames(video_path: Path) -> list[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(str(video_path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def test_scan_loads_in_head_axes_and_metres():
    scan = load_scan()
    groups, landmarks = scan.landmark_groups, scan.landmarks68
    face_height = landmarks[:, 1].max() - landmarks[:, 1].min()  # chin to brows, metres
    assert 0.10 < face_height < 0.25
    assert 0.15 < np.ptp(scan.vertices[:, 1]) < 0.40  # the whole scan: head and neck
    left_eye, right_eye = (landmarks[groups[name]].mean(axis=0) for name in ("reye", "leye"))
    assert left_eye[0] > 0.02 and right_eye[0] < -0.02  # +X is the subject's left
    nose, chin = landmarks[groups["nose"]].mean(axis=0), landmarks[groups["chin"]][8]
    assert nose[2] > left_eye[2] + 0.01  # +Z out of the face
    assert chin[1] < nose[1] < left_eye[1]  # +Y up
    assert scan.uv.shape == (len(scan.triangles), 3, 2) and 0.0 <= scan.uv.min() and scan.uv.max() <= 1.0


def test_truth_round_trips_and_matches_the_clip(clip):
    from mxr.models.network.scan_truth import load_scan_truth, save_scan_truth

    video_path, truth_path = clip
    truth = load_scan_truth(truth_path)
    assert truth.fps == FPS and truth.frame_count == FRAMES == len(_frames(video_path))
    assert truth.camera.width_px == WIDTH and truth.camera.height_px == HEIGHT
    copy = truth_path.with_name("copy.truth.npz")
    save_scan_truth(truth, copy)
    again = load_scan_truth(copy)
    np.testing.assert_allclose(again.landmarks_px(), truth.landmarks_px(), atol=1e-3)
    assert again.events == truth.events and again.expression_names == truth.expression_names
    with np.load(copy, allow_pickle=False) as data:  # no pickles anywhere
        assert {"macro_mm", "micro_mm", "head_rotation", "event_frames"} <= set(data.files)


def test_micro_events_have_the_promised_durations(clip):
    from mxr.models.network.scan_truth import load_scan_truth

    truth = load_scan_truth(clip[1])
    assert truth.events
    for event in truth.events:
        seconds = (event.offset_frame - event.onset_frame) / truth.fps
        assert 0.15 - 1.0 / truth.fps <= seconds <= 0.5 + 2.0 / truth.fps
        assert event.onset_frame <= event.apex_frame <= event.offset_frame
        size = np.linalg.norm(truth.micro_mm[event.apex_frame], axis=1).max()
        assert size == pytest.approx(event.peak_mm, rel=1e-4)  # peak_mm is the surface's real motion
        outside = np.r_[0:event.onset_frame, min(event.offset_frame + 1, truth.frame_count):truth.frame_count]
        assert np.abs(truth.micro_mm[outside]).max(initial=0.0) < 1e-6


def test_mediapipe_sees_the_truth_motion(clip):
    """Landmarks on the first and last frames move as the truth's projected skin points do."""
    from mxr.models.network.scan_truth import load_scan_truth
    from mxr.ops.face_mesh_image import detect_face_mesh

    video_path, truth_path = clip
    truth = load_scan_truth(truth_path)
    frames = _frames(video_path)
    first, last = detect_face_mesh(frames[0]), detect_face_mesh(frames[-1])
    assert first is not None and last is not None
    truth_px = truth.landmarks_px()[:, :468]  # (T, 468, 2) skin points
    seen = last[:468, :2] - first[:468, :2]
    expected = truth_px[-1] - truth_px[0]
    assert np.linalg.norm(expected, axis=1).mean() > 1.0  # the clip does move
    assert np.median(np.linalg.norm(seen - expected, axis=1)) < 1.5  # px
    assert np.median(np.linalg.norm(first[:468, :2] - truth_px[0], axis=1)) < 4.0  # where, not just how
