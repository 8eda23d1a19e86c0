"""Contact sheet: reference video frames beside renders of the head at the same frames.

The picture a person opens to see at a glance whether the head follows the performer.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .atomic import replacing
from .errors import MxrError
from .take import Take
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


OVERLAY_OPACITY = 0.6  # of the head drawn over the video


def compose_contact_sheet(take: Take, renders: dict[int, Path], out_path: Path,
                          notes: dict[int, str] | None = None, overlays: dict[int, Path] | None = None) -> Path:
    """One row per take frame: the video frame with the tracked landmarks | the render (| the
    video with the head drawn over it).

    renders: take frame index -> PNG of the head at that frame. The video is the take's source.
    notes: take frame index -> a line written under the frame number (e.g. the strongest units).
    overlays: take frame index -> RGBA PNG of the head as the reference camera sees it over the
    video (transparent film, the video's aspect), drawn over the plain video frame.
    """
    source_frames = {k: int(take.frame_indices[k]) for k in renders}
    frames = read_frames_at(Path(take.source_path), sorted(source_frames.values()))
    rows = []
    for k in sorted(renders):
        if source_frames[k] not in frames:
            raise MxrError(f"frame {source_frames[k]} could not be read back from {take.source_path}")
        plain_frame = frames[source_frames[k]]
        video_frame = plain_frame.copy()
        if take.valid[k]:
            for x, y in take.landmarks_px[k, :, :2]:
                cv2.circle(video_frame, (int(round(x)), int(round(y))), 1, (0, 220, 0), -1)
        render = cv2.imread(str(renders[k]), cv2.IMREAD_COLOR)
        if render is None:
            raise MxrError(f"render for frame {k} is missing: {renders[k]}")
        columns = [_fit_height(video_frame, ROW_HEIGHT_PX), _fit_height(render, ROW_HEIGHT_PX)]
        if overlays and k in overlays:
            columns.append(_fit_height(_drawn_over(plain_frame, overlays[k]), ROW_HEIGHT_PX))
        row = np.concatenate(columns, axis=1)
        cv2.putText(row, f"frame {source_frames[k]}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, LABEL_COLOUR, 2)
        for line, text in enumerate((notes or {}).get(k, "").split("\n")):
            cv2.putText(row, text, (8, 48 + 20 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.5, LABEL_COLOUR, 1, cv2.LINE_AA)
        rows.append(row)
    if not rows:
        raise MxrError("no frames to put in the preview")
    width = max(row.shape[1] for row in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    return write_png(sheet, Path(out_path))


def _drawn_over(video_frame: np.ndarray, overlay_path: Path) -> np.ndarray:
    """The RGBA render at ``overlay_path``, scaled to the video frame (H, W, 3) BGR, drawn over it."""
    overlay = cv2.imread(str(overlay_path), cv2.IMREAD_UNCHANGED)
    if overlay is None or overlay.ndim != 3 or overlay.shape[2] != 4:
        raise MxrError(f"overlay render is missing or has no alpha: {overlay_path}")
    overlay = cv2.resize(overlay, (video_frame.shape[1], video_frame.shape[0]), interpolation=cv2.INTER_AREA)
    alpha = OVERLAY_OPACITY * overlay[..., 3:].astype(np.float32) / 255.0  # (H, W, 1)
    return (video_frame * (1.0 - alpha) + overlay[..., :3] * alpha).astype(np.uint8)


def write_png(image: np.ndarray, path: Path) -> Path:
    """Encode (H, W, 3) BGR uint8 as PNG and write it atomically."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise MxrError(f"could not encode {path} as PNG")
    with replacing(path) as stream:
        stream.write(encoded.tobytes())
    return path
