"""The pipelined front-end on real clips with real MediaPipe and OpenCV."""
import io
import json
import sys
import threading

import cv2
import numpy as np
import pytest

from mxr.ops.crops import apply_affine
from mxr.ops.errors import MxrError
from mxr.ops.frontend import (GIL_SWITCH_INTERVAL_S, TAKE_RECORD_FIELDS, FrameArrays, FrontEnd, FrontendSettings,
                              stack_records, unstack_records)
from mxr.ops.frontend_debug import write_contact_sheet
from mxr.ops.landmarks import FaceTracker, landmark_list_px
from mxr.ops.progress import ProgressReporter
from mxr.ops.sample_data import sample_path
from mxr.ops.video import iter_frames


def run(path, settings=None):
    stream = io.StringIO()
    frontend = FrontEnd(path, settings, ProgressReporter(stream, min_interval_s=0.0))
    records = list(frontend.records())
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    return frontend, records, events


@pytest.fixture(scope="module")
def single_face():
    return run(sample_path("video/single_face.mp4"), FrontendSettings(dense_flow_size=32))


def test_every_frame_has_a_record_with_flow(single_face):
    frontend, records, events = single_face
    assert [r.index for r in records] == list(range(72)) and frontend.scale == 1.0
    assert all(r.valid for r in records)
    assert np.isnan(records[0].flow_at_landmarks).all()  # no previous frame
    flow = np.stack([r.flow_at_landmarks for r in records[1:]])  # (71, 478, 2) crop px
    assert np.isfinite(flow).all()
    assert np.median(np.linalg.norm(flow, axis=2)) < 2.0  # stabilised: only expression and residual motion
    assert np.mean([r.flow_consistent.mean() for r in records[1:]]) > 0.8
    assert all(0.5 < r.confidence <= 1.0 for r in records)
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["frame"] == 72 and progress[-1]["fraction"] == 1.0


def test_records_are_consistent_with_their_transforms(single_face):
    _, records, _ = single_face
    record = records[30]
    assert record.landmarks_px.shape == (478, 3) and record.crop_from_image.shape == (2, 3)
    mapped = apply_affine(record.crop_from_image, record.landmarks_px[:, :2].astype(np.float64))
    np.testing.assert_allclose(mapped, record.landmarks_crop, atol=1e-2)
    assert record.stabilisation_residual_px < 8.0
    assert record.dense_flow.shape == (32, 32, 2) and record.dense_consistent.shape == (32, 32)
    timestamps = np.array([r.timestamp_s for r in records])
    np.testing.assert_allclose(np.diff(timestamps), 1 / 30, atol=2e-3)


def test_flow_follows_the_smile(single_face):
    """Over the smile's onset, the flow summed along the mouth corners' track moves them the way
    the landmarks say they moved (in the stabilised crop), while the nose bridge barely moves."""
    _, records, _ = single_face
    onset = range(15, 46)
    for corner in (61, 291):
        summed = np.sum([records[t].flow_at_landmarks[corner] for t in onset[1:]], axis=0)  # crop px
        moved = records[onset[-1]].landmarks_crop[corner] - records[onset[0]].landmarks_crop[corner]
        assert np.linalg.norm(moved) > 3.0
        assert np.linalg.norm(summed - moved) < 0.4 * np.linalg.norm(moved)
    bridge = np.sum([records[t].flow_at_landmarks[168] for t in onset[1:]], axis=0)
    assert np.linalg.norm(bridge) < 1.5


def test_stack_and_unstack_round_trip(single_face):
    _, records, _ = single_face
    arrays = stack_records(records[:5])
    assert arrays["landmarks_px"].shape == (5, 478, 3) and arrays["dense_flow"].shape == (5, 32, 32, 2)
    again = list(unstack_records(arrays))
    assert again[3].index == 3 and again[3].valid is True
    np.testing.assert_array_equal(again[3].flow_at_landmarks, records[3].flow_at_landmarks)


def test_frame_arrays_gather_what_stack_records_stacks_past_the_expected_count(single_face):
    _, records, _ = single_face
    gathered = FrameArrays(TAKE_RECORD_FIELDS, expected_frames=4)  # the container said fewer: the arrays grow
    for record in records[:10]:
        gathered.append(record)
    stacked = stack_records(records[:10])
    for name, array in gathered.arrays().items():
        assert array.dtype == stacked[name].dtype and array.shape == stacked[name].shape
        np.testing.assert_array_equal(array, stacked[name])


@pytest.mark.parametrize("clip, face_first", [("video/face_noface.mov", True), ("video/noface_face.mov", False)])
def test_face_that_leaves_or_arrives_is_marked_never_invented(clip, face_first):
    frontend, records, events = run(sample_path(clip))
    valid = np.array([r.valid for r in records])
    assert len(records) == 169 and 20 < valid.sum() < 149
    assert valid[:60].all() if face_first else not valid[:60].any()
    assert not valid[110:160].any() if face_first else valid[110:160].all()
    for previous, record in zip(records, records[1:]):
        if not (previous.valid and record.valid):
            assert np.isnan(record.flow_at_landmarks).all() and not record.flow_consistent.any()
        if not record.valid:
            assert np.isnan(record.landmarks_px).all() and record.confidence == 0.0
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("marked invalid" in message for message in warnings)


def test_a_hand_over_the_face_is_looked_for_every_half_second():
    """WolfgangLanger's hand covers her face in frames 60-224 (ops/hands.py); checked every 12 frames."""
    settings = FrontendSettings(start_frame=130, end_frame=160)
    _, records, _ = run(sample_path("video/WolfgangLanger_Pexels.mp4"), settings)
    checks = np.array([r.hand_on_face for r in records])
    checked = np.flatnonzero(np.isfinite(checks))
    assert checked.tolist() == [0, 12, 24] and np.all(checks[checked] == 1.0)
    for row in checked:  # the hand's box lies over the face's
        box, face = records[row].hand_box_px, records[row].landmarks_px[:, :2]
        assert np.all(box[:2] < face.max(axis=0)) and np.all(box[2:] > face.min(axis=0))
    assert np.isnan(np.stack([r.hand_box_px for r in records])[np.isnan(checks)]).all()
    _, records, _ = run(sample_path("video/WolfgangLanger_Pexels.mp4"),
                        FrontendSettings(start_frame=290, end_frame=310))
    assert [r.hand_on_face for r in records][::12] == [0.0, 0.0]  # her laugh: no hand
    _, records, _ = run(sample_path("video/WolfgangLanger_Pexels.mp4"),
                        FrontendSettings(start_frame=130, end_frame=160, hand_check_seconds=0.0))
    assert np.isnan([r.hand_on_face for r in records]).all()


def test_frame_range(tmp_path):
    _, records, _ = run(sample_path("video/single_face.mp4"), FrontendSettings(start_frame=30, end_frame=40))
    assert [r.index for r in records] == list(range(30, 40)) and all(r.valid for r in records)
    with pytest.raises(MxrError, match="past the end"):
        FrontEnd(sample_path("video/single_face.mp4"), FrontendSettings(start_frame=500))
    with pytest.raises(MxrError, match="bad frame range"):
        FrontEnd(sample_path("video/single_face.mp4"), FrontendSettings(start_frame=10, end_frame=10))


def test_several_faces_are_noticed_and_one_is_followed(tmp_path):
    """Two copies of the performer side by side: one track, and a warning that says which."""
    path = tmp_path / "two faces.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (1280, 360))
    for _, _, frame in iter_frames(sample_path("video/single_face.mp4"), max_frames=12):
        writer.write(np.hstack([frame, frame]))
    writer.release()
    frontend, records, _ = run(path)
    assert all(r.valid for r in records)
    assert any("several faces" in w for w in frontend.warnings)
    centres = np.array([r.landmarks_px[:, 0].mean() for r in records])
    assert np.ptp(centres) < 20  # the same face all along, not hopping between the two


def test_8k_clip_without_a_face(tmp_path):
    path = tmp_path / "8k.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (7680, 4320))
    for k in range(3):
        writer.write(np.full((4320, 7680, 3), 60 + 20 * k, np.uint8))
    writer.release()
    frontend, records, _ = run(path)
    assert frontend.scale == pytest.approx(1 / 6)
    assert len(records) == 3 and not any(r.valid for r in records)
    assert any("analysed at 0.167x" in w for w in frontend.warnings)


def test_truncated_clip_warns_and_keeps_what_decodes(tmp_path):
    data = bytearray(sample_path("video/single_face.mp4").read_bytes())
    index_at = data.find(b"moov") - 4  # this file keeps its index at the end: the frames' data are lost
    start = int(len(data) * 0.55)
    data[start:index_at] = bytes(index_at - start)
    path = tmp_path / "truncated.mp4"
    path.write_bytes(bytes(data))
    frontend, records, _ = run(path)
    assert 0 < len(records) < 72
    assert any("decoded" in w and "of the 72 frames" in w for w in frontend.warnings)


def test_not_a_video_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    with pytest.raises(MxrError, match="cannot read"):
        FrontEnd(path)


def test_closing_early_stops_the_workers():
    threads_before = threading.active_count()
    frontend = FrontEnd(sample_path("video/WolfgangLanger_Pexels.mp4"), reporter=ProgressReporter(io.StringIO()))
    records = frontend.records()
    first = [next(records) for _ in range(5)]
    records.close()
    assert [r.index for r in first] == list(range(5))
    assert threading.active_count() == threads_before


def test_the_gil_switch_interval_is_short_while_running_and_restored_after():
    """The interval is process-wide (Blender's own Python shares it): set for the run only."""
    before = sys.getswitchinterval()
    records = FrontEnd(sample_path("video/single_face.mp4"), reporter=ProgressReporter(io.StringIO())).records()
    next(records)
    assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
    records.close()
    assert sys.getswitchinterval() == before


def test_contact_sheet(single_face, tmp_path):
    _, records, _ = single_face
    path = write_contact_sheet(sample_path("video/single_face.mp4"), records, tmp_path / "sheet dir" / "sheet.png",
                               tiles=8, columns=4)
    image = cv2.imread(str(path))
    assert image.shape == (28 + 2 * 256, 4 * 256, 3)
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_landmarks_read_from_the_wire_match_the_protobuf_loop():
    from mediapipe.framework.formats import landmark_pb2

    frame = cv2.cvtColor(next(iter_frames(sample_path("video/single_face.mp4")))[2], cv2.COLOR_BGR2RGB)
    with FaceTracker() as tracker:
        mesh = tracker._mesh.process(frame).multi_face_landmarks[0]

    def loop(landmarks):
        return np.array([(p.x * 640, p.y * 360, p.z * 640) for p in landmarks.landmark], np.float32)

    assert np.array_equal(landmark_list_px(mesh, 640, 360), loop(mesh))
    other = landmark_pb2.NormalizedLandmarkList()
    other.CopyFrom(mesh)
    other.landmark[3].visibility = 0.5  # another layout: the loop is taken
    other.landmark[0].x = 0.0  # proto3 leaves a zero out of the bytes
    assert np.array_equal(landmark_list_px(other, 640, 360), loop(other))
