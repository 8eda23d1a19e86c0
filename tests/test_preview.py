import cv2
import numpy as np

from conftest import synthetic_head, synthetic_take
from mxr.ops.preview import ROW_HEIGHT_PX, compose_contact_sheet, pick_preview_frames
from mxr.ops.sample_data import sample_path
from mxr.ops.video import read_frames_at


def test_preview_frames_spread_over_frames_with_a_face():
    valid = np.zeros(20, bool)
    valid[5:15] = True
    assert pick_preview_frames(valid, count=3) == [5, 9, 14]
    assert pick_preview_frames(np.zeros(4, bool)) == []


def test_contact_sheet_rows_show_the_source_frame_beside_the_render(tmp_path):
    clip = sample_path("video/single_face.mp4")
    take = synthetic_take(synthetic_head(), frames=12, invalid=(2,), source_path=str(clip))
    take.frame_indices = np.arange(12) + 30  # the take starts at source frame 30
    renders = {}
    for k, colour in ((2, (255, 0, 0)), (7, (0, 0, 255))):
        renders[k] = tmp_path / f"render_{k}.png"
        cv2.imwrite(str(renders[k]), np.full((100, 100, 3), colour, np.uint8))

    sheet = cv2.imread(str(compose_contact_sheet(take, renders, tmp_path / "sheet.png")))

    assert sheet.shape[0] == 2 * ROW_HEIGHT_PX
    source = read_frames_at(clip, [32])[32]  # take frame 2 has no face: no landmarks drawn
    expected = cv2.resize(source, (round(ROW_HEIGHT_PX * 640 / 360), ROW_HEIGHT_PX), interpolation=cv2.INTER_AREA)
    video_part = sheet[:ROW_HEIGHT_PX, 200:expected.shape[1]].astype(int)  # right of the label
    assert np.abs(video_part - expected[:, 200:]).mean() < 2.0
    render_part = sheet[ROW_HEIGHT_PX:, expected.shape[1]:expected.shape[1] + ROW_HEIGHT_PX]
    np.testing.assert_allclose(render_part.reshape(-1, 3).mean(axis=0), (0, 0, 255), atol=2)  # frame 7's, BGR
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".png" and "tmp" in p.name] == []


def test_the_head_is_drawn_over_the_video_where_its_render_is_opaque(tmp_path):
    clip = sample_path("video/single_face.mp4")
    take = synthetic_take(synthetic_head(), frames=4, invalid=(), source_path=str(clip))
    render = tmp_path / "render.png"
    cv2.imwrite(str(render), np.full((100, 100, 3), 128, np.uint8))
    overlay = np.zeros((90, 160, 4), np.uint8)  # the video's aspect; the head covers the left half
    overlay[:, :80] = (255, 255, 255, 255)
    cv2.imwrite(str(tmp_path / "over.png"), overlay)
    sheet = cv2.imread(str(compose_contact_sheet(take, {1: render}, tmp_path / "sheet.png",
                                                  overlays={1: tmp_path / "over.png"})))
    width = round(ROW_HEIGHT_PX * 640 / 360)
    assert sheet.shape[1] == 2 * width + ROW_HEIGHT_PX
    drawn = sheet[:, -width:].astype(float)
    video = cv2.resize(read_frames_at(clip, [1])[1], (width, ROW_HEIGHT_PX), interpolation=cv2.INTER_AREA)
    covered, clear = slice(10, width // 2 - 10), slice(width // 2 + 10, width - 10)
    np.testing.assert_allclose(drawn[:, covered], 0.4 * video[:, covered] + 0.6 * 255, atol=3)
    np.testing.assert_allclose(drawn[:, clear], video[:, clear], atol=3)
