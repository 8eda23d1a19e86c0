"""The take's picture over time: face found, layer motion, micro events where they are."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import take_from_deformation
from mxr.models.network.event_profile import micro_profile
from mxr.ops.take import LANDMARK_COUNT, MicroEvent, save_take
from mxr.ops.take_timeline import (FACE_FOUND, FACE_LOST, HEADER_PX, LEFT_PX, PLOT_PX, REGION_COLOURS, WIDTH_PX,
                                   layer_motion_mm, lost_per_column, take_timeline, time_ticks, time_x)

FRAMES = 90


def event_take():
    """90 frames at 30 fps: a slow macro smile, one mouth micro-expression at frames 40..55 (apex
    45), no face on frames 10..12."""
    rng = np.random.default_rng(0)
    times = np.arange(FRAMES) / 30.0
    macro = np.linspace(0, 1, FRAMES)[:, None, None] * rng.normal(scale=1.0, size=(LANDMARK_COUNT, 3))
    micro = micro_profile(times, 40 / 30, 45 / 30, 0.0, 55 / 30)[:, None, None] * rng.normal(
        scale=0.2, size=(LANDMARK_COUNT, 3))
    valid = np.ones(FRAMES, bool)
    valid[10:13] = False
    take = take_from_deformation(np.zeros((LANDMARK_COUNT, 3)), macro, micro, np.repeat(np.eye(3)[None], FRAMES, 0),
                                 valid, np.zeros((FRAMES, LANDMARK_COUNT, 3)), "/nonexistent/performer.mp4", 30.0)
    take.events = [MicroEvent(40, 45, 55, "mouth", 0.6, 0.9)]
    return take


def column(frame_position):
    return int(round(time_x(np.array([frame_position]), FRAMES)[0]))


def test_layer_motion_is_the_mean_displacement_over_the_skin_and_nan_without_a_face():
    layer = np.zeros((3, LANDMARK_COUNT, 3))
    layer[1, :468, 0] = 2.0
    layer[1, 468:, 0] = 50.0  # irises: not skin
    motion = layer_motion_mm(layer, np.array([True, True, False]))
    np.testing.assert_allclose(motion[:2], [0.0, 2.0])
    assert np.isnan(motion[2])


def test_a_column_is_lost_when_any_frame_it_covers_is():
    valid = np.ones(10_000, bool)
    valid[5_000] = False  # one frame in ten thousand
    lost = lost_per_column(valid, 1000)
    assert lost.sum() == 1 and lost[500]
    valid = np.array([True, False, True])  # fewer frames than columns: each frame over several
    np.testing.assert_array_equal(lost_per_column(valid, 6), [False, False, True, True, False, False])
    assert not lost_per_column(np.zeros(0, bool), 4).any()


def test_the_picture_shows_where_the_face_was_lost_and_where_the_event_is():
    take = event_take()
    picture = take_timeline(take)
    assert picture.shape[1] == WIDTH_PX and picture.dtype == np.uint8
    face_row = HEADER_PX + 7
    assert tuple(picture[face_row, column(11.5)]) == FACE_LOST
    assert tuple(picture[face_row, column(30.5)]) == FACE_FOUND
    # The micro band: the apex line in the region's colour, the span tinted towards it, outside not.
    micro_top = HEADER_PX + 14 + 10 + PLOT_PX + 10
    near_bottom = micro_top + PLOT_PX - 20
    assert tuple(picture[near_bottom, column(45.5)]) == REGION_COLOURS["mouth"]
    tinted, plain = picture[near_bottom, column(50.5)].astype(int), picture[near_bottom, column(70.5)].astype(int)
    assert tinted[2] > plain[2] + 50  # red channel of the mouth's colour
    # The micro curve's highest point (brightest pixels) lies inside the event's span.
    band = picture[micro_top + 2:micro_top + PLOT_PX - 2, LEFT_PX:WIDTH_PX - 20].astype(int)
    white = (band.min(axis=2) > 240)
    highest_row = np.flatnonzero(white.any(axis=1))[0]
    columns = np.flatnonzero(white[highest_row]) + LEFT_PX
    assert column(40) <= columns.min() and columns.max() <= column(56)


def test_the_command_writes_the_picture_and_refuses_a_missing_take(tmp_path):
    take = event_take()
    save_take(take, tmp_path / "take.npz")
    command = [sys.executable, "-m", "mxr.ops", "timeline"]
    done = subprocess.run(command + [str(tmp_path / "take.npz"), "--png", str(tmp_path / "t.png")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert cv2.imread(str(tmp_path / "t.png")).shape == take_timeline(take).shape
    missing = subprocess.run(command + [str(tmp_path / "gone.npz"), "--png", str(tmp_path / "u.png")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "take file not found" in missing.stderr
    assert not (tmp_path / "u.png").exists()
    jpeg = subprocess.run(command + [str(tmp_path / "take.npz"), "--png", str(tmp_path / "t.jpg")],
                          capture_output=True, text=True)
    assert jpeg.returncode == 2 and ".png name" in jpeg.stderr and not (tmp_path / "t.jpg").exists()


def test_the_time_axis_follows_a_variable_frame_rate():
    take = event_take()  # 90 frames at 30 fps: 3 s
    assert dict(time_ticks(take))[1.0] == pytest.approx(30.0)
    stamps = np.arange(FRAMES) / 30.0
    stamps[45:] += 1.0  # the camera stalled for a second after frame 44
    take.timestamps_s = stamps
    ticks = dict(time_ticks(take))
    assert ticks[1.0] == pytest.approx(30.0) and ticks[2.5] == pytest.approx(45.0)  # frame 45 was shown 2.5 s in
    assert ticks[3.5] == pytest.approx(75.0)
    take_timeline(take)  # draws, and says the rate varies
