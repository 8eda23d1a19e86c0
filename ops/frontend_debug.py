"""A picture of what the front-end saw: a contact sheet of stabilised face crops with the tracked
landmarks and the optical flow at them drawn as arrows, magnified so that 1 px motions show.

Green arrows passed the forward-backward check, red ones did not; a frame without a face is a
grey tile saying so. The magnification is written on the sheet.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .frontend import FrameRecord
from .preview import write_png
from .video import read_frames_at

ARROW_STEP = 4  # draw every 4th landmark's arrow: all 478 would hide the face
_GREEN, _RED, _WHITE, _YELLOW = (60, 220, 60), (40, 40, 230), (255, 255, 255), (0, 220, 255)


def pick_frames(records: Sequence[FrameRecord], tiles: int) -> list[int]:
    """Positions in ``records`` spread evenly over the clip, preferring frames that have flow."""
    with_flow = [k for k, record in enumerate(records) if np.isfinite(record.flow_at_landmarks).any()]
    pool = with_flow if len(with_flow) >= tiles else list(range(len(records)))
    if not pool:
        return []
    return sorted({pool[round(i)] for i in np.linspace(0, len(pool) - 1, min(tiles, len(pool)))})


def draw_tile(crop_bgr: np.ndarray, record: FrameRecord, previous: FrameRecord | None, magnification: float) -> np.ndarray:
    """One crop (S, S, 3) uint8 with landmarks (yellow dots) and magnified flow arrows drawn on it."""
    tile = crop_bgr.copy()
    if not record.valid:
        tile[:] = 64
        cv2.putText(tile, "no face", (10, tile.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.8, _WHITE, 2, cv2.LINE_AA)
    else:
        for x, y in record.landmarks_crop[::2]:
            cv2.circle(tile, (int(round(x)), int(round(y))), 1, _YELLOW, -1, cv2.LINE_AA)
        if previous is not None and previous.valid:
            for k in range(0, len(record.flow_at_landmarks), ARROW_STEP):
                start = previous.landmarks_crop[k]
                flow = record.flow_at_landmarks[k]
                if not (np.isfinite(start).all() and np.isfinite(flow).all()):
                    continue
                end = start + magnification * flow
                colour = _GREEN if record.flow_consistent[k] else _RED
                cv2.arrowedLine(tile, _pixel(start), _pixel(end), colour, 1, cv2.LINE_AA, tipLength=0.25)
    label = f"#{record.index} {record.timestamp_s:.3f}s conf {record.confidence:.2f}"
    cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _WHITE, 1, cv2.LINE_AA)
    return tile


def write_contact_sheet(video_path: Path, records: Sequence[FrameRecord], out_path: Path, tiles: int = 12,
                        columns: int = 4, magnification: float = 10.0, crop_size: int = 256) -> Path:
    """Write a PNG contact sheet of ``tiles`` frames (atomically) and return its path.

    ``records`` are the front-end's records of ``video_path`` in order; crops are re-made from the
    source frames with each record's ``crop_from_image``.
    """
    chosen = pick_frames(records, tiles)
    frames = read_frames_at(Path(video_path), [records[k].index for k in chosen])
    images = []
    for k in chosen:
        record = records[k]
        crop = np.zeros((crop_size, crop_size, 3), np.uint8)
        if record.valid and record.index in frames:
            crop = cv2.warpAffine(frames[record.index], record.crop_from_image, (crop_size, crop_size),
                                  flags=cv2.INTER_LINEAR)
        images.append(draw_tile(crop, record, records[k - 1] if k > 0 else None, magnification))
    while len(images) % columns:
        images.append(np.zeros((crop_size, crop_size, 3), np.uint8))
    rows = [np.hstack(images[i:i + columns]) for i in range(0, len(images), columns)] or [
        np.zeros((crop_size, crop_size * columns, 3), np.uint8)]
    banner = np.zeros((28, crop_size * columns, 3), np.uint8)
    cv2.putText(banner, f"{Path(video_path).name}: flow arrows x{magnification:g} (green: consistent, red: "
                f"failed forward-backward check); dots: landmarks", (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                _WHITE, 1, cv2.LINE_AA)
    sheet = np.vstack([banner] + rows)
    return write_png(sheet, Path(out_path))


def _pixel(point: np.ndarray) -> tuple[int, int]:
    return int(round(float(point[0]))), int(round(float(point[1])))
