"""The engine's command line on real video with real MediaPipe, as Blender and batch users run it."""
import json
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mxr.models.network.runner import DEFAULT_MODEL
from mxr.ops.sample_data import sample_path
from mxr.ops.take import load_take


def run_engine(*arguments: str) -> tuple[int, list[dict], str]:
    result = subprocess.run([sys.executable, "-m", "mxr.ops", *map(str, arguments)],
                            capture_output=True, text=True, timeout=300)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, events, result.stderr


@pytest.fixture(scope="module")
def single_face_take(tmp_path_factory):
    take_path = tmp_path_factory.mktemp("engine") / "single face.npz"
    code, events, stderr = run_engine("reconstruct", sample_path("video/single_face.mp4"), "--out", take_path,
                                      "--baseline")
    assert code == 0, stderr
    return take_path, events


def test_reports_progress_then_done(single_face_take):
    take_path, events = single_face_take
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["fraction"] == 1.0
    assert all(0.0 <= e["fraction"] <= 1.0 for e in progress)
    done = events[-1]
    assert done["event"] == "done" and done["frames"] == 72 and done["faces_found"] == 72
    assert done["take"] == str(take_path)


def test_take_follows_the_performers_smile(single_face_take):
    take = load_take(single_face_take[0])
    assert take.frame_count == 72 and take.valid.all()
    assert take.fps == pytest.approx(30.0)
    deformation = take.deformation_mm()
    # The clip goes from neutral to a broad smile: the mouth corners (61 right, 291 left) rise
    # and spread by several mm, while the nose bridge (6, 168) stays within about a millimetre.
    start, smile = deformation[:5].mean(axis=0), deformation[35:45].mean(axis=0)
    assert smile[61, 1] - start[61, 1] > 5.0 and smile[291, 1] - start[291, 1] > 5.0
    assert smile[61, 0] - start[61, 0] < -4.0 and smile[291, 0] - start[291, 0] > 4.0
    assert np.abs(deformation[:, [6, 168]]).max() < 2.0
    # Landmarks land on the face in the image (640x360).
    assert 150 < np.nanmedian(take.landmarks_px[:, :, 0]) < 500


def test_the_network_runs_by_default_and_says_where(single_face_take, tmp_path):
    code, events, stderr = run_engine("reconstruct", sample_path("video/single_face.mp4"), "--out", tmp_path / "t.npz")
    assert code == 0, stderr
    done = events[-1]
    shipped = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())["version"]
    assert done["model_version"] == shipped and done["provider"] == "CPUExecutionProvider"
    take, baseline = load_take(tmp_path / "t.npz"), load_take(single_face_take[0])
    assert take.model_version == shipped and take.settings["network"]["provider"] == "CPUExecutionProvider"
    np.testing.assert_array_equal(take.landmarks_px, baseline.landmarks_px)  # same observations
    # the smile (2.4 s, several mm) stays macro; nothing that long is a micro event
    assert np.nanmax(np.abs(take.macro_mm)) > 0.5 * np.nanmax(np.abs(baseline.macro_mm))
    for event in take.events:
        assert event.offset_frame - event.onset_frame + 1 <= 0.75 * take.fps
    assert done["micro_events"] == len(take.events)
    assert done["neutral_method"] == "found" and done["neutral_frames"] == take.settings["neutral_frames"]
    assert done["neutral_held"] == take.settings["neutral_held"]


def test_take_carries_the_front_ends_flow(single_face_take):
    take = load_take(single_face_take[0])
    assert take.crop_size_px == 256 and take.analysis_scale == 1.0
    np.testing.assert_array_equal(take.frame_indices, np.arange(72))
    assert np.isnan(take.flow_at_landmarks_px[0]).all()  # no previous frame
    flow = take.flow_at_landmarks_px[1:]
    assert np.isfinite(flow).all()
    assert np.median(np.linalg.norm(flow, axis=-1)) < 3.0  # crop px per frame: skin moves little
    assert take.flow_consistent[1:].mean() > 0.8
    assert (take.landmark_confidence > 0.5).all()


def test_second_run_reuses_the_front_end_cache_and_honours_a_frame_range(tmp_path):
    clip = sample_path("video/single_face.mp4")
    arguments = ("--start-frame", "10", "--end-frame", "40", "--cache-dir", tmp_path / "cache")
    first = run_engine("reconstruct", clip, "--out", tmp_path / "a.npz", *arguments, "--debug-sheet", tmp_path / "sheet.png")
    second = run_engine("reconstruct", clip, "--out", tmp_path / "b.npz", *arguments)
    assert first[0] == 0 and second[0] == 0, first[2] + second[2]
    assert (first[1][-1]["frontend_cached"], second[1][-1]["frontend_cached"]) == (False, True)
    a, b = load_take(tmp_path / "a.npz"), load_take(tmp_path / "b.npz")
    np.testing.assert_array_equal(a.frame_indices, np.arange(10, 40))
    np.testing.assert_array_equal(a.landmarks_px, b.landmarks_px)
    np.testing.assert_array_equal(a.flow_at_landmarks_px, b.flow_at_landmarks_px)
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet is not None and sheet.shape[0] > 200


def test_every_stage_reports_its_progress(tmp_path):
    code, events, stderr = run_engine("reconstruct", sample_path("video/single_face.mp4"), "--out",
                                      tmp_path / "take.npz")
    assert code == 0, stderr
    progress = [e for e in events if e["event"] == "progress"]
    stages = list(dict.fromkeys(e["stage"] for e in progress))
    assert stages[1:] == ["pose", "skin", "pose on the skin", "fusion", "network"] and stages[0].startswith("frontend")
    for stage in stages:  # each one runs to its end, and never reports an ETA before it has timed anything
        lines = [e for e in progress if e["stage"] == stage]
        assert lines[-1]["fraction"] == 1.0 and lines[0]["eta_s"] is None


def test_face_that_leaves_is_marked_invalid_never_invented(tmp_path):
    take_path = tmp_path / "take.npz"
    code, events, stderr = run_engine("reconstruct", sample_path("video/face_noface.mov"), "--out", take_path)
    assert code == 0, stderr
    take = load_take(take_path)
    assert take.valid.any() and not take.valid.all()
    assert np.isnan(take.landmarks_px[~take.valid]).all()
    assert np.isnan(take.macro_mm[~take.valid]).all()
    assert np.isfinite(take.macro_mm[take.valid]).all()
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("marked invalid" in message for message in warnings)
    assert any("variable frame rate" in message for message in warnings)  # frame gaps of 14-50 ms
    # flow needs a face in both frames; confidence is 0 without a face
    gap_after = np.flatnonzero(~take.valid[1:]) + 1
    assert np.isnan(take.flow_at_landmarks_px[gap_after]).all()
    assert (take.landmark_confidence[~take.valid] == 0).all()


def test_no_face_fails_clearly_and_keeps_the_old_take(tmp_path):
    take_path = tmp_path / "take.npz"
    take_path.write_bytes(b"an earlier take")
    code, events, stderr = run_engine("reconstruct", sample_path("video/no_face.mp4"), "--out", take_path)
    assert code == 2
    assert "no face found" in stderr and events[-1]["event"] == "error"
    assert take_path.read_bytes() == b"an earlier take"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.npz"]


@pytest.mark.parametrize("out_name", ["a folder", "under a file/take.npz"])
def test_an_output_that_cannot_be_written_fails_before_any_work(tmp_path, out_name):
    (tmp_path / "a folder").mkdir()
    (tmp_path / "under a file").write_text("a file, not a folder")
    code, events, stderr = run_engine("reconstruct", sample_path("video/single_face.mp4"), "--out", tmp_path / out_name)
    assert code == 2 and "cannot write" in stderr
    assert not [e for e in events if e["event"] == "progress"]  # refused before decoding


@pytest.mark.parametrize("outputs", ["take is the video", "take is a link to the video", "sheet is the video",
                                     "sheet is the take"])
def test_an_output_that_names_an_input_or_another_output_is_refused(tmp_path, outputs):
    video = tmp_path / "clip.mp4"
    video.write_bytes(sample_path("video/single_face.mp4").read_bytes())
    original = video.read_bytes()
    take = tmp_path / "take.npz"
    if outputs == "take is a link to the video":
        (tmp_path / "link.npz").symlink_to(video)
    arguments = {"take is the video": ["--out", video],
                 "take is a link to the video": ["--out", tmp_path / "link.npz"],
                 "sheet is the video": ["--out", take, "--debug-sheet", tmp_path / "." / "clip.mp4"],
                 "sheet is the take": ["--out", take, "--debug-sheet", take]}[outputs]
    code, events, stderr = run_engine("reconstruct", video, *arguments, "--baseline")
    assert code == 2 and "refusing to write" in stderr and "Traceback" not in stderr
    assert video.read_bytes() == original and not take.exists()
    assert not [e for e in events if e["event"] == "progress"]  # refused before decoding


@pytest.mark.parametrize("make_input", ["missing", "text", "directory"])
def test_bad_input_exits_2_with_a_message(tmp_path, make_input):
    video = tmp_path / "clip.mp4"
    if make_input == "text":
        video.write_text("not a video")
    elif make_input == "directory":
        video.mkdir()
    code, events, stderr = run_engine("reconstruct", video, "--out", tmp_path / "take.npz")
    assert code == 2
    assert "mxr: error: " in stderr and str(video) in stderr
    assert not (tmp_path / "take.npz").exists()


def test_several_faces_keep_the_largest_and_warn(tmp_path):
    image = cv2.imread(str(sample_path("images/multi_face.jpg")))
    video = tmp_path / "crowd.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (image.shape[1], image.shape[0]))
    for _ in range(6):
        writer.write(image)
    writer.release()
    code, events, stderr = run_engine("reconstruct", video, "--out", tmp_path / "take.npz")
    assert code == 0, stderr
    assert any("several faces" in e.get("message", "") for e in events if e["event"] == "warning")


def test_sigterm_cancels_without_writing(tmp_path):
    take_path = tmp_path / "take.npz"
    process = subprocess.Popen(
        [sys.executable, "-m", "mxr.ops", "reconstruct", str(sample_path("video/WolfgangLanger_Pexels.mp4")),
         "--out", str(take_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    for line in process.stdout:  # wait until tracking is under way
        if '"progress"' in line:
            break
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "cancelled" in stderr
    assert list(tmp_path.iterdir()) == []


def test_a_known_focal_length_is_the_takes_camera(tmp_path):
    code, events, stderr = run_engine("reconstruct", sample_path("video/single_face.mp4"), "--out", tmp_path / "t.npz",
                                      "--baseline", "--end-frame", "24", "--focal-px", "900")
    assert code == 0, stderr
    take = load_take(tmp_path / "t.npz")
    assert take.settings["camera_focal_px"] == 900.0 and take.settings["camera_focal"] == "given"
