import dataclasses
import os

import numpy as np
import pytest

from mxr.ops.frontend import FrameArrays, FrameRecord
from mxr.ops.spill import CHUNK_FRAMES, FrameFile, FrameSum, frame_array, spilling_into
from mxr.ops.take import load_take, save_take
from test_take import make_take

FRAMES = 2 * CHUNK_FRAMES + 37  # chunks and a part of one


@pytest.fixture
def spilled(tmp_path):
    """A (T, 478, 3) FrameFile and the same values as an array."""
    values = np.random.default_rng(0).normal(size=(FRAMES, 478, 3)).astype(np.float32)
    with spilling_into(tmp_path):
        frames = frame_array(values.shape, np.float32)
    frames[:] = values
    return frames, values


def test_frame_arrays_live_on_disk_only_in_a_spilling_block(tmp_path):
    with spilling_into(tmp_path):
        assert isinstance(frame_array((4, 478, 3), np.float32), FrameFile)
        assert isinstance(frame_array((4, 3, 3), np.float64), np.ndarray)  # a few numbers a frame stay in memory
    assert isinstance(frame_array((4, 478, 3), np.float32), np.ndarray)
    assert os.listdir(tmp_path) == []  # unnamed files: nothing is left behind


@pytest.mark.parametrize("key", [slice(None), slice(5, 300), slice(None, None, 7), -1, 3, (slice(None), [1, 5, 9]),
                                 (Ellipsis, slice(None, 2)), np.array([[4, FRAMES - 1], [4, 0]]),
                                 (np.array([9, 2, 300]), slice(None), 0), np.arange(FRAMES) % 3 == 0])
def test_a_frame_file_reads_as_an_array_does(spilled, key):
    frames, values = spilled
    np.testing.assert_array_equal(frames[key], values[key])


@pytest.mark.parametrize("key", [slice(10, 400), np.array([0, 300, FRAMES - 1]), np.arange(FRAMES) % 5 == 1])
def test_a_frame_file_writes_as_an_array_does(spilled, key):
    frames, values = spilled
    frames[key] = np.nan
    values[key] = np.nan
    frames[7:9] += 1.0
    values[7:9] += 1.0
    frames[:, 10:20, :2] = values[:, :10, 1:] * 2  # part of every frame
    values[:, 10:20, :2] = values[:, :10, 1:] * 2
    np.testing.assert_array_equal(np.asarray(frames), values)


def test_a_frame_sum_reads_the_sum_by_slices(spilled):
    frames, values = spilled
    total = FrameSum((frames, values, values))
    assert total.shape == values.shape and len(total) == FRAMES
    np.testing.assert_array_equal(total[20:40], values[20:40] + values[20:40] + values[20:40])


def test_spilled_records_gather_as_in_memory(tmp_path):
    records = [FrameRecord(k, k / 30.0, k % 4 != 1, 0.9, np.full((478, 3), k, np.float32), np.ones((2, 3)),
                           np.zeros((478, 2), np.float32), 0.1, np.full((478, 2), -k, np.float32),
                           np.full(478, 0.5, np.float32), np.full(478, k % 2 == 0)) for k in range(FRAMES)]
    in_memory = FrameArrays(expected_frames=10)
    with spilling_into(tmp_path):
        on_disk = FrameArrays(expected_frames=10)
    for record in records:
        in_memory.append(record)
        on_disk.append(record)
    spilled = on_disk.arrays()
    assert isinstance(spilled["landmarks_px"], FrameFile)
    for name, values in in_memory.arrays().items():
        np.testing.assert_array_equal(spilled[name][:], values, err_msg=name)


def test_a_take_of_frame_files_is_written_as_one_of_arrays(tmp_path):
    take = make_take(FRAMES)
    with spilling_into(tmp_path):
        layers = {name: frame_array(getattr(take, name).shape, np.float32)
                  for name in ("landmarks_px", "macro_mm", "micro_mm", "detail_mm", "flow_at_landmarks_px")}
    for name, layer in layers.items():
        layer[:] = getattr(take, name)
    save_take(dataclasses.replace(take, **layers), tmp_path / "spilled.take.npz")
    save_take(take, tmp_path / "plain.take.npz")
    spilled, plain = load_take(tmp_path / "spilled.take.npz"), load_take(tmp_path / "plain.take.npz")
    for field in dataclasses.fields(plain):
        np.testing.assert_array_equal(getattr(spilled, field.name), getattr(plain, field.name), err_msg=field.name)
    del layers
    assert sorted(os.listdir(tmp_path)) == ["plain.take.npz", "spilled.take.npz"]
