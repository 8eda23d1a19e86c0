import hashlib
import io
import shutil

import numpy as np
import pytest

from mxr.ops.errors import MxrError
from mxr.ops.frontend import FrontEnd
from mxr.ops.progress import ProgressReporter
from mxr.ops.sample_data import sample_path
from mxr.ops.video import AUTO_DECODE_THREADS, decode_threads_for, iter_frames, probe_video, read_frames_at


@pytest.fixture(scope="module")
def clip():
    return sample_path("video/single_face.mp4")


def test_probe_describes_the_real_clip(clip):
    info = probe_video(clip)
    assert (info.width, info.height) == (640, 360)
    assert info.fps == pytest.approx(30.0)
    assert info.frame_count == 72
    assert info.sha256 == hashlib.sha256(clip.read_bytes()).hexdigest()


def test_streams_every_frame_with_increasing_timestamps(clip):
    frames = list(iter_frames(clip))
    assert [index for index, _, _ in frames] == list(range(72))
    timestamps = np.array([t for _, t, _ in frames])
    np.testing.assert_allclose(np.diff(timestamps), 1 / 30, atol=2e-3)
    assert frames[0][2].shape == (360, 640, 3) and frames[0][2].dtype == np.uint8


def test_read_frames_at_matches_streaming(clip):
    streamed = {index: frame for index, _, frame in iter_frames(clip, max_frames=40)}
    picked = read_frames_at(clip, [3, 39])
    np.testing.assert_array_equal(picked[39], streamed[39])
    np.testing.assert_array_equal(picked[3], streamed[3])


def test_one_decode_thread_gives_the_same_frames_and_times(clip):
    single = list(iter_frames(clip, threads=1))
    auto = list(iter_frames(clip, threads=AUTO_DECODE_THREADS))
    assert [(index, time_s) for index, time_s, _ in single] == [(index, time_s) for index, time_s, _ in auto]
    for (_, _, one), (_, _, many) in zip(single, auto):
        np.testing.assert_array_equal(one, many)


def test_small_frames_decode_on_one_thread_large_ones_on_ffmpegs_choice():
    assert decode_threads_for(640, 360) == 1
    assert decode_threads_for(1920, 1080) == AUTO_DECODE_THREADS
    assert decode_threads_for(3840, 2160) == AUTO_DECODE_THREADS


def test_paths_with_spaces_and_non_ascii_names(clip, tmp_path):
    odd = tmp_path / "my takes" / "prise n°1 – ñ 表情.mp4"
    odd.parent.mkdir()
    shutil.copy(clip, odd)
    assert probe_video(odd).frame_count == 72


@pytest.mark.parametrize(
    "content, message",
    [(b"", "cannot read"), (b"this is a text file, not a video\n" * 50, "cannot read")],
)
def test_not_a_video(tmp_path, content, message):
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    with pytest.raises(MxrError, match=message):
        probe_video(path)


def test_truncated_video(clip, tmp_path):
    path = tmp_path / "truncated.mp4"
    path.write_bytes(clip.read_bytes()[:2000])
    with pytest.raises(MxrError, match="cannot read"):
        probe_video(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MxrError, match="not found"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(MxrError, match="not a file"):
        probe_video(tmp_path)


# --- frame range, timing, orientation, odd formats and bad inputs (clips made here with OpenCV) ---

import struct
import wave

import cv2

from mxr.ops.video import analysis_scale, downscale


def write_clip(path, frames, fps=30.0, fourcc="mp4v", is_color=True):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height), isColor=is_color)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_frame_range_yields_source_indices(clip):
    streamed = {index: frame for index, _, frame in iter_frames(clip)}
    ranged = list(iter_frames(clip, start_frame=10, end_frame=20))
    assert [index for index, _, _ in ranged] == list(range(10, 20))
    np.testing.assert_array_equal(ranged[5][2], streamed[15])
    assert [i for i, _, _ in iter_frames(clip, start_frame=70, end_frame=500)] == [70, 71]
    with pytest.raises(MxrError, match="bad frame range"):
        list(iter_frames(clip, start_frame=5, end_frame=2))


def test_variable_frame_rate_keeps_true_timestamps():
    # face_noface.mov is variable-rate: frame gaps range from ~14 ms to 50 ms.
    timestamps = np.array([t for _, t, _ in iter_frames(sample_path("video/face_noface.mov"))])
    gaps = np.diff(timestamps)
    assert len(timestamps) == 169 and np.all(gaps > 0)
    assert gaps.min() < 0.02 and gaps.max() > 0.045


@pytest.mark.parametrize("fps", [24.0, 120.0, 240.0])
def test_high_frame_rates_keep_their_timing(tmp_path, fps):
    frames = [np.full((72, 96, 3), 8 * k, np.uint8) for k in range(12)]
    path = write_clip(tmp_path / f"clip {fps:g} fps.mp4", frames, fps=fps)
    assert probe_video(path).fps == pytest.approx(fps)
    timestamps = np.array([t for _, t, _ in iter_frames(path)])
    np.testing.assert_allclose(np.diff(timestamps), 1 / fps, rtol=0.02)


def test_rotation_metadata_is_applied(tmp_path):
    """A clip whose track header says 'rotate 90 degrees' (as phones write) comes out upright."""
    frames = [np.zeros((48, 64, 3), np.uint8) for _ in range(3)]
    for frame in frames:
        frame[:8, :] = 255  # a white band along the top edge
    path = write_clip(tmp_path / "portrait.mp4", frames)
    data = bytearray(path.read_bytes())
    matrix_at = data.find(b"tkhd") + 4 + 4 + 20 + 8 + 8  # version/flags, v0 times/ids, reserved, layer...
    rotate_90 = (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    data[matrix_at:matrix_at + 36] = struct.pack(">9i", *rotate_90)
    path.write_bytes(bytes(data))
    info = probe_video(path)
    assert info.rotation_deg in (90, 270)
    assert (info.width, info.height) == (48, 64)
    _, _, frame = next(iter(iter_frames(path)))
    assert frame.shape == (64, 48, 3)
    assert frame[:, :6].mean() > 200 or frame[:, -6:].mean() > 200  # the band is now a side


def test_grayscale_video_comes_out_as_bgr(tmp_path):
    frames = [np.full((120, 160), 40 * k, np.uint8) for k in range(5)]
    path = write_clip(tmp_path / "grey.mp4", frames, is_color=False)
    decoded = [frame for _, _, frame in iter_frames(path)]
    assert len(decoded) == 5 and decoded[0].shape == (120, 160, 3)
    assert np.abs(decoded[3].astype(int) - 120).mean() < 4
    np.testing.assert_array_equal(decoded[3][..., 0], decoded[3][..., 2])


def test_8k_frames_are_downscaled_for_analysis(tmp_path):
    frames = [np.full((4320, 7680, 3), 30 * k, np.uint8) for k in range(2)]
    path = write_clip(tmp_path / "eight k.avi", frames, fourcc="MJPG")
    info = probe_video(path)
    assert (info.width, info.height) == (7680, 4320)
    scale = analysis_scale(info.width, info.height)
    assert scale == pytest.approx(1280 / 7680)
    _, _, frame = next(iter(iter_frames(path)))
    assert downscale(frame, scale).shape == (720, 1280, 3)
    assert downscale(np.zeros((360, 640, 3), np.uint8), analysis_scale(640, 360)).shape == (360, 640, 3)


def test_audio_only_file_is_refused(tmp_path):
    path = tmp_path / "voice.wav"
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(16000)
        audio.writeframes(np.zeros(16000, np.int16).tobytes())
    with pytest.raises(MxrError, match="cannot read"):
        probe_video(path)


def test_zero_length_video_is_refused(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "empty.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 64))
    writer.release()
    with pytest.raises(MxrError, match="cannot read"):
        probe_video(tmp_path / "empty.mp4")
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(MxrError, match="empty"):
        probe_video(tmp_path / "zero.mp4")


def test_damage_in_the_middle_skips_the_damaged_frames_not_the_rest(clip, tmp_path):
    """4 kB of garbage a third into the file: FFmpeg loses two frames (the engine used to stop
    there, keeping 17 of 72); the rest decode, in place, and the lost ones are marked invalid."""
    data = bytearray(clip.read_bytes())
    start = int(len(data) * 0.3)
    data[start:start + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    indices = [index for index, _, _ in iter_frames(damaged)]
    assert len(indices) >= 65 and indices == sorted(set(indices)) and indices[-1] == 71
    frontend = FrontEnd(damaged, reporter=ProgressReporter(io.StringIO()))
    records = list(frontend.records())
    assert [record.index for record in records] == list(range(72))  # every frame has a record
    lost = [record.index for record in records if not record.valid]
    assert lost == sorted(set(range(72)) - set(indices))
    assert any("could not be decoded" in warning for warning in frontend.warnings)


@pytest.mark.parametrize("seed, spots", [(1, (0.2, 0.5, 0.8)), (2, (0.45,)), (3, (0.6, 0.9))])
def test_damage_anywhere_loses_only_the_damaged_frames(clip, tmp_path, seed, spots):
    """3 kB of garbage at one or several places: every frame that still decodes comes out, in place
    and in order, to the clip's last (the class of the damage above, not one place in one file)."""
    data = bytearray(clip.read_bytes())
    rng = np.random.default_rng(seed)
    for spot in spots:
        start = int(len(data) * spot)
        data[start:start + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    indices = [index for index, _, _ in iter_frames(damaged)]
    assert indices == sorted(set(indices)) and indices[-1] == 71
    assert len(indices) >= 72 - 3 * len(spots) - 1, len(indices)
