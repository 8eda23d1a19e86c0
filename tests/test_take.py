import io
import os
import zipfile

import numpy as np
import pytest

from mxr.ops.errors import MxrError
from mxr.ops.take import MicroEvent, Take, load_take, save_take, unobserved_front_end


def make_take(frame_count: int = 6) -> Take:
    rng = np.random.default_rng(0)
    valid = np.ones(frame_count, bool)
    valid[2] = False

    def per_frame(*shape):
        values = rng.normal(size=(frame_count,) + shape).astype(np.float32)
        values[~valid] = np.nan
        return values

    return Take(
        source_path="/videos/take 1.mp4",
        source_sha256="ab" * 32,
        fps=29.97,
        frame_size=(640, 360),
        timestamps_s=np.arange(frame_count) / 29.97,
        valid=valid,
        landmarks_px=per_frame(478, 3),
        head_rotation=per_frame(3, 3),
        head_translation_px=per_frame(3),
        head_scale_px_per_mm=per_frame(),
        neutral_mm=rng.normal(size=(478, 3)).astype(np.float32),
        macro_mm=per_frame(478, 3),
        micro_mm=per_frame(478, 3),
        detail_mm=per_frame(478, 3),
        frame_indices=np.arange(frame_count) + 10,
        analysis_scale=0.5,
        landmark_confidence=np.where(valid, 0.9, 0.0).astype(np.float32),
        crop_size_px=256,
        crop_from_image=per_frame(2, 3),
        flow_at_landmarks_px=per_frame(478, 2),
        flow_fb_error_px=per_frame(478),
        flow_consistent=rng.random((frame_count, 478)) > 0.1,
        events=[MicroEvent(1, 3, 5, "brows", 0.4, 0.9)],
        settings={"neutral_seconds": 0.5},
    )


def test_round_trip_keeps_every_field(tmp_path):
    take = make_take()
    path = tmp_path / "take.npz"
    save_take(take, path)
    loaded = load_take(path)
    for name in ("timestamps_s", "valid", "landmarks_px", "head_rotation", "neutral_mm", "macro_mm", "micro_mm",
                 "detail_mm", "frame_indices", "landmark_confidence", "crop_from_image", "flow_at_landmarks_px",
                 "flow_fb_error_px", "flow_consistent"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(take, name))
    assert loaded.fps == pytest.approx(29.97)
    assert loaded.frame_size == (640, 360)
    assert loaded.source_path == take.source_path
    assert loaded.events == take.events
    assert loaded.settings == {"neutral_seconds": 0.5}
    assert (loaded.analysis_scale, loaded.crop_size_px) == (0.5, 256)
    assert list(tmp_path.iterdir()) == [path]  # no temp file left beside it
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # a user's file, not a private temp file


def test_loads_without_pickle(tmp_path):
    path = tmp_path / "take.npz"
    save_take(make_take(), path)
    with np.load(path, allow_pickle=False) as data:
        assert str(data["format"]) == "mxr.take"
        assert int(data["version"]) == 2


def test_version_1_takes_load_with_front_end_fields_unobserved(tmp_path):
    path = tmp_path / "v1.npz"
    save_take(make_take(), path)
    with np.load(path, allow_pickle=False) as data:
        version_1 = {name: data[name] for name in data.files if name not in unobserved_front_end(1)
                     and name not in ("analysis_scale", "crop_size_px")}
    version_1["version"] = np.array(1)
    np.savez(path, **version_1)
    loaded = load_take(path)
    np.testing.assert_array_equal(loaded.frame_indices, np.arange(6))
    assert np.isnan(loaded.flow_at_landmarks_px).all() and not loaded.flow_consistent.any()
    np.testing.assert_array_equal(loaded.macro_mm, make_take().macro_mm)


def test_newer_versions_are_refused(tmp_path):
    path = tmp_path / "future.npz"
    save_take(make_take(), path)
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    arrays["version"] = np.array(99)
    np.savez(path, **arrays)
    with pytest.raises(MxrError, match="version 99"):
        load_take(path)


def test_invalid_take_is_refused_and_the_old_file_survives(tmp_path):
    path = tmp_path / "take.npz"
    save_take(make_take(), path)
    before = path.read_bytes()
    broken = make_take()
    broken.macro_mm = broken.macro_mm[:, :10]
    with pytest.raises(MxrError, match="macro_mm"):
        save_take(broken, path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("content", [b"", b"not a zip at all", None])
def test_bad_files_give_clear_errors(tmp_path, content):
    path = tmp_path / "take.npz"
    if content is None:
        np.savez(path, something=np.zeros(3))
    else:
        path.write_bytes(content)
    with pytest.raises(MxrError, match="take"):
        load_take(path)


def test_missing_file(tmp_path):
    with pytest.raises(MxrError, match="not found"):
        load_take(tmp_path / "nope.npz")


@pytest.mark.parametrize("change", [
    {"fps": 0.0}, {"fps": float("nan")},
    {"events": [MicroEvent(2, 4, 6, "mouth", 0.5, 0.9)]},  # offset past the last of 6 frames
    {"events": [MicroEvent(3, 1, 4, "mouth", 0.5, 0.9)]},  # apex before onset
    {"frame_indices": np.array([0, 1, 2, 2, 3, 4])},  # a source frame twice
    {"frame_indices": np.array([-1, 0, 1, 2, 3, 4])},
    {"frame_indices": np.array([0, 1, 2, 3, 4, 10**15])},  # would overflow Blender's frame numbers
])
def test_a_take_with_an_impossible_rate_or_event_is_refused(tmp_path, change):
    take = make_take()
    for name, value in change.items():
        setattr(take, name, value)
    with pytest.raises(MxrError, match="frame rate|micro event|frame indices"):
        save_take(take, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


@pytest.mark.parametrize("fps", [1e-9, 0.5, 5000.0])
def test_a_take_outside_the_sane_frame_rates_is_refused(tmp_path, fps):
    """A rate of 1e-9 made the timeline draw for half an hour: bounded before anything is drawn."""
    path = tmp_path / "take.npz"
    save_take(make_take(), path)
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    arrays["fps"] = np.array(fps)
    np.savez(path, **arrays)
    with pytest.raises(MxrError, match="frame rate"):
        load_take(path)


@pytest.mark.parametrize("name, declared", [("macro_mm", (10**7, 478, 3)), ("event_region", (10**6,)),
                                            ("settings_json", ())])
def test_a_small_file_declaring_huge_arrays_is_refused_from_its_headers(tmp_path, name, declared):
    """A few kB of compressed file can declare many GB; refused before a byte of it is allocated."""
    path = tmp_path / "take.npz"
    save_take(make_take(), path)
    if name == "settings_json":
        dtype = np.dtype("<U%d" % (1 << 20))  # 4 MB of text in one string
    else:
        dtype = np.dtype("<f4")
    header = npy_header(declared, dtype)
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members[f"{name}.npy"] = header  # the header alone: the data is never reached
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    assert path.stat().st_size < 200_000
    with pytest.raises(MxrError, match="declares"):
        load_take(path)


def npy_header(shape, dtype) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                  "fortran_order": False, "shape": shape})
    return stream.getvalue()
