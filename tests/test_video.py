import hashlib
import shutil

import numpy as np
import pytest

from mxr.ops.errors import MxrError
from mxr.ops.sample_data import sample_path
from mxr.ops.video import iter_frames, probe_video, read_frames_at


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
