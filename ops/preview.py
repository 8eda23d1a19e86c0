"""Contact sheet: reference video frames beside renders of the head at the same frames.

The picture a person opens to see at a glance whether the head follows the performer.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import MxrError
from .video import read_frames_at

ROW_HEIGHT_PX = 240
LABEL_COLOUR = (255, 255, 255)


def pick_preview_frames(valid: np.ndarray, count: int = 4) -> list[int]:
    """``count`` frame indices spread evenly over the frames that have a face."""
    candidates = np.flatnonzero(valid)
    if len(candidates) == 0:
        return []
    positions = np.linspace(0, len(candidates) - 1, min(count, len(candidates)))
    return sorted({int(candidates[int(round(p))]) for p in positions})


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    width = max(1, int(round(image.shape[1] * height / image.shape[0])))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def compose_contact_sheet(video_path: Path, renders: dict[int, Path], out_path: Path,
                          landmarks_px: np.ndarray | None = None) -> Path:
    """One row per frame: the video frame (with the tracked landmarks, if given) | the render.

    renders: frame index -> PNG of the head at that frame; landmarks_px: (T, 478, 3) px.
    """
    frames = read_frames_at(Path(video_path), sorted(renders))
    rows = []
    for index in sorted(renders):
        if index not in frames:
            raise MxrError(f"frame {index} could not be read back from {video_path}")
        video_frame = frames[index].copy()
        if landmarks_px is not None and np.all(np.isfinite(landmarks_px[index])):
            for x, y in landmarks_px[index, :, :2]:
                cv2.circle(video_frame, (int(round(x)), int(round(y))), 1, (0, 220, 0), -1)
        render = cv2.imread(str(renders[index]), cv2.IMREAD_COLOR)
        if render is None:
            raise MxrError(f"render for frame {index} is missing: {renders[index]}")
        row = np.concatenate([_fit_height(video_frame, ROW_HEIGHT_PX), _fit_height(render, ROW_HEIGHT_PX)], axis=1)
        cv2.putText(row, f"frame {index}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, LABEL_COLOUR, 2)
        rows.append(row)
    if not rows:
        raise MxrError("no frames to put in the preview")
    width = max(row.shape[1] for row in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".png", dir=out_path.parent)
    os.close(handle)
    try:
        if not cv2.imwrite(temporary, sheet):
            raise MxrError(f"could not write {out_path}")
        os.replace(temporary, out_path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return out_path
