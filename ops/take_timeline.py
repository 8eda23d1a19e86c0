"""A take at a glance: where the face was found, how much it moved, and the micro-expressions the
engine found, on one time axis (a PNG).

What a technical artist looks at before baking: did tracking drop out, and do the micro events
sit where the video has its flickers? Rows, top to bottom: the face found (green) or not (red);
the macro layer's motion; the micro layer's motion with each event's span shaded in its region's
colour and labelled with its region and peak; seconds and frames. Motion is the mean length of a
layer's displacement over the 468 skin landmarks, mm, each curve on its own scale (its maximum is
written beside it).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .canonical import SKIN_LANDMARKS
from .preview import write_png
from .take import Take, frame_seconds

WIDTH_PX = 1200
LEFT_PX, RIGHT_PX = 70, 20  # room for the row labels, and a margin
HEADER_PX, FACE_ROW_PX, PLOT_PX, AXIS_PX, GAP_PX = 34, 14, 90, 34, 10
BACKGROUND = (32, 32, 32)
TEXT = (230, 230, 230)
FACE_FOUND, FACE_LOST = (70, 170, 70), (60, 60, 200)
MACRO_CURVE, MICRO_CURVE = (200, 200, 200), (255, 255, 255)
REGION_COLOURS = {"brows": (60, 170, 240), "eyes": (240, 150, 60), "nose": (180, 120, 200),
                  "cheeks": (110, 200, 110), "mouth": (90, 90, 240), "jaw": (160, 160, 60)}  # BGR
OTHER_REGION = (150, 150, 150)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def layer_motion_mm(layer_mm: np.ndarray, valid: np.ndarray, chunk_frames: int = 4096) -> np.ndarray:
    """(T, 478, 3) mm displacement -> (T,) mean length over the skin landmarks, mm; NaN without a
    face. In chunks of frames, so a long take needs no copy of its whole layer."""
    motion = np.empty(len(layer_mm))
    for start in range(0, len(layer_mm), chunk_frames):
        chunk = np.asarray(layer_mm[start:start + chunk_frames, :len(SKIN_LANDMARKS)], np.float32)
        motion[start:start + chunk_frames] = np.linalg.norm(chunk, axis=2).mean(axis=1)
    motion[~np.asarray(valid, bool)] = np.nan
    return motion


def lost_per_column(valid: np.ndarray, columns: int) -> np.ndarray:
    """(T,) face found -> (columns,) bool: a column of the face row is lost when any frame it
    covers is, so a dropout of one frame still shows in a take of many thousands."""
    count = len(valid)
    if count == 0:
        return np.zeros(columns, bool)
    first = np.minimum((np.arange(columns) * count) // columns, count - 1)  # (columns,) first frame in each
    last = np.maximum(first, ((np.arange(1, columns + 1) * count) - 1) // columns)  # (columns,) last frame
    lost_before = np.concatenate([[0], np.cumsum(~np.asarray(valid, bool))])  # (T + 1,)
    return lost_before[np.minimum(last, count - 1) + 1] > lost_before[first]


def time_x(frame_positions: np.ndarray, frame_count: int) -> np.ndarray:
    """Positions on the take's time axis (n,) in frames (k: where frame k begins, k + 0.5: its
    centre) -> x px."""
    width = WIDTH_PX - LEFT_PX - RIGHT_PX
    return LEFT_PX + np.asarray(frame_positions, np.float64) * width / max(frame_count, 1)


def _label(canvas: np.ndarray, text: str, origin: tuple[int, int], colour=TEXT, scale: float = 0.45) -> None:
    cv2.putText(canvas, text, origin, _FONT, scale, colour, 1, cv2.LINE_AA)


def _plot(canvas: np.ndarray, values: np.ndarray, top: int, colour: tuple[int, int, int], name: str) -> None:
    """``values`` (T,) as a line in the band ``top``..``top + PLOT_PX``, scaled to its maximum;
    NaN frames break the line."""
    bottom = top + PLOT_PX
    cv2.rectangle(canvas, (LEFT_PX, top), (WIDTH_PX - RIGHT_PX, bottom), (60, 60, 60), 1)
    _label(canvas, name, (6, top + 16))
    finite = np.isfinite(values)
    peak = float(np.max(values[finite])) if finite.any() else 0.0
    _label(canvas, f"max {peak:.2f} mm", (6, top + 34), scale=0.38)
    if peak <= 0:
        return
    x = time_x(np.arange(len(values)) + 0.5, len(values))
    y = bottom - 4 - np.nan_to_num(values / peak) * (PLOT_PX - 8)
    for start, stop in _runs(finite):
        points = np.round(np.column_stack([x[start:stop], y[start:stop]])).astype(np.int32)
        cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in (T,) ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def time_ticks(take: Take) -> list[tuple[float, float]]:
    """The time axis' ticks: (seconds since the first frame, frame position) at a round step, a
    dozen at most; a variable-rate clip's follow its frames' own times (``frame_seconds``)."""
    count = take.frame_count
    if count == 0:
        return []
    seconds = frame_seconds(take)[0]  # (T,) s
    duration_s = float(seconds[-1]) + 1.0 / take.fps
    step_s = next((s for s in (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300) if duration_s / s <= 12), 600)
    ticks = np.arange(0.0, duration_s + 1e-9, step_s)
    inside = np.interp(ticks, seconds, np.arange(count))
    beyond = count - 1 + (ticks - seconds[-1]) * take.fps  # the last frame's own duration
    return [(float(t), float(f)) for t, f in zip(ticks, np.where(ticks <= seconds[-1], inside, beyond))]


def take_timeline(take: Take) -> np.ndarray:
    """The picture of ``take``: (H, WIDTH_PX, 3) BGR uint8."""
    count = take.frame_count
    face_top = HEADER_PX
    macro_top = face_top + FACE_ROW_PX + GAP_PX
    micro_top = macro_top + PLOT_PX + GAP_PX
    axis_top = micro_top + PLOT_PX
    canvas = np.full((axis_top + AXIS_PX, WIDTH_PX, 3), BACKGROUND, np.uint8)
    valid = np.asarray(take.valid, bool)
    events = f"{len(take.events)} micro event" + ("" if len(take.events) == 1 else "s")
    title = (f"{Path(take.source_path).name}  {count} frames at {take.fps:g} fps  {int(valid.sum())} with a face  "
             f"{events}  {take.model_version}")
    _label(canvas, title, (6, 22), scale=0.5)

    edges = np.round(time_x(np.arange(count + 1), count)).astype(int)  # (T + 1,) where each frame begins, px
    face_row = canvas[face_top:face_top + FACE_ROW_PX, LEFT_PX:WIDTH_PX - RIGHT_PX]
    face_row[:] = FACE_FOUND
    face_row[:, lost_per_column(valid, face_row.shape[1])] = FACE_LOST
    _label(canvas, "face", (6, face_top + 11), scale=0.38)

    for index, event in enumerate(take.events):
        colour = REGION_COLOURS.get(event.region, OTHER_REGION)
        onset, offset = np.clip([event.onset_frame, event.offset_frame + 1], 0, count)
        left, right = edges[onset], max(edges[offset], edges[onset] + 1)
        band = canvas[micro_top + 1:micro_top + PLOT_PX, left:right]
        band[:] = (0.55 * band + 0.45 * np.array(colour)).astype(np.uint8)
        apex = int(round(time_x(np.array([event.apex_frame + 0.5]), count)[0]))
        cv2.line(canvas, (apex, micro_top + 1), (apex, micro_top + PLOT_PX - 1), colour, 1)
        label_y = micro_top + 12 + 13 * (index % 2)  # neighbours' labels on alternate lines
        _label(canvas, f"{event.region} {event.peak_mm:.2f}", (left + 2, label_y), colour, 0.36)
    _plot(canvas, layer_motion_mm(take.macro_mm, valid), macro_top, MACRO_CURVE, "macro")
    _plot(canvas, layer_motion_mm(take.micro_mm, valid), micro_top, MICRO_CURVE, "micro")

    for second, frame in time_ticks(take):
        x = int(round(time_x(np.array([frame]), count)[0]))
        cv2.line(canvas, (x, axis_top), (x, axis_top + 5), TEXT, 1)
        _label(canvas, f"{second:g} s", (x - 8, axis_top + 18), scale=0.36)
        _label(canvas, f"{round(frame)}", (x - 8, axis_top + 30), (150, 150, 150), 0.32)
    timing = frame_seconds(take)[1]
    if timing:
        _label(canvas, "variable frame rate" if "variable" in timing[0] else "frame times unusable",
               (WIDTH_PX - RIGHT_PX - 150, 22), (80, 160, 230), 0.4)
    return canvas


def write_take_timeline(take: Take, path: Path) -> Path:
    """Draw ``take_timeline`` and write it as a PNG, atomically."""
    return write_png(take_timeline(take), Path(path))
