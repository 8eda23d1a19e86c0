"""Short stretches of a take read again by skin flow against the stretch's own first frame.

Why: the take reads the face's small motion from points glued to the skin by flow against rest
frames (ops/skin_track.py), often seconds away and showing another expression and view, and
from MediaPipe's landmarks where the face moves more. Over a micro-expression's stretch (a second
at most) the frame just before it is a far closer reference: on the injected clips
(scripts/open_loop_inject.py) the micro layer made for the planted micro events carries, event by
event, +0.03 more of their motion on dev (90 % interval 0.00 to +0.06) and +0.07 on held-out
(median 0.20 -> 0.29), and less motion where the event moves nothing (docs/OPEN_LOOP.md).

How: each stretch's frames are decoded in one pass over the video; the first frame is the
reference, its skin named at the take's read points there; every later frame is tracked from it
(``skin_track.ReferenceTracker``, the warp guided by the take's own points in that frame) and read
through the take's camera (``PerspectiveCamera.faces_at``). What comes back is a correction: the
motion since the first frame as the flow reads it, less the same as the take's points read it, so
that it can be laid on any reading of the take's motion (``events.MotionWithStretches``: the engine's
whole motion, or what a marked event is fitted on, ``marked_events``). The lids' margins, the inner
lips and the irises (``skin_track.UNTRACKED_LANDMARKS``: folds and gaze) keep the take's reading, and so does any point
whose flow reading strays more than ``AGREE_MM`` from the points' (a hand, a blink, a torn fold).
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..models.network.events import Stretch, StretchReader
from .errors import MxrError
from .perspective import PerspectiveCamera, camera_of_take
from .skin_track import UNTRACKED_LANDMARKS, ReferenceTracker, settings_for_face
from .spill import FrameSum, LayerReader
from .take import Take
from .video import file_sha256, iter_frames

AGREE_MM = 1.5  # a flow reading further than this from the take's is not trusted (a micro event moves < 1.5 mm)
STRETCH_READING = "flow-from-first-frame-1"  # the take's settings["network"]["micro_stretches"]


def reread_stretches(video_path: Path, frame_indices: np.ndarray, stretches: list[Stretch],
                     points_px: np.ndarray | LayerReader, camera: PerspectiveCamera,
                     on_stretch: Callable[[int, int], None] | None = None) -> dict[Stretch, np.ndarray]:
    """Each stretch's correction (n, 478, 3) float64 mm: its motion since its first frame as the
    flow against that frame reads it, less the same as the take's points read it (0 where the
    points' reading is kept). Stretches whose first frame has no face, or that the video no longer
    decodes, are left out (the take's reading stands); frames within a stretch that have no face or
    do not decode keep the take's reading.

    ``frame_indices`` (T,): each take frame's source frame; ``points_px`` (T, 478, 3) source px,
    or a reader of a slice of frames: the points the take was read from (NaN where no face);
    ``camera``: the take's. One pass over the video (decoded from its first frame: ~0.6 ms a
    640x360 frame on this project's machine); memory: the faces of the frames of the stretches open
    at a time (one, unless they overlap). MxrError where OpenCV fails on a stretch."""
    if not callable(points_px):
        points_px = points_px.__getitem__
    wanted = sorted(set(stretches))
    result: dict[Stretch, np.ndarray] = {}
    if not wanted:
        return result
    boxes = {stretch: _face_box(points_px, stretch) for stretch in wanted}
    by_source = {int(frame_indices[frame]): frame for first, last in wanted for frame in range(first, last + 1)}
    open_stretches = list(wanted)
    crops: dict[int, Crop] = {}  # take frame -> the face's part of its grey image, for the stretches not yet read

    def read(stretch: Stretch) -> None:
        try:
            correction = _reread(stretch, crops, points_px, camera)
        except cv2.error as error:
            raise MxrError(f"the flow could not read take frames {stretch[0]}-{stretch[1]} again: {error}") from error
        if correction is not None:
            result[stretch] = correction
        if on_stretch is not None:
            on_stretch(len(wanted) - len(open_stretches), len(wanted))

    for index, _, image in iter_frames(video_path, start_frame=min(by_source), end_frame=max(by_source) + 1):
        frame = by_source.get(index)
        if frame is None:
            continue
        around = [boxes[stretch] for stretch in open_stretches if stretch[0] <= frame <= stretch[1]]
        if any(box is not None for box in around):
            crops[frame] = _crop(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), around)
        while open_stretches and open_stretches[0][1] <= frame:
            read(open_stretches.pop(0))
        keep_from = open_stretches[0][0] if open_stretches else frame + 1
        for old in [f for f in crops if f < keep_from]:
            del crops[old]
    while open_stretches:  # stretches ending in frames the video no longer decodes: read over those it does
        read(open_stretches.pop(0))
    return result


Crop = tuple[np.ndarray, np.ndarray]  # (2,) int px: the crop's top-left corner in the frame; (h, w) uint8 grey
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 px
CROP_MARGIN_PX = 64  # around the face's points: the tracker's window (24 px) and its filters' reach


def _face_box(points_px: LayerReader, stretch: Stretch) -> Box | None:
    """Where the stretch's points lie, px (None where it has no face)."""
    points = np.asarray(points_px(slice(stretch[0], stretch[1] + 1)), np.float64)[..., :2].reshape(-1, 2)
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) == 0:
        return None
    return (*points.min(axis=0), *points.max(axis=0))


def _crop(grey: np.ndarray, boxes: list[Box | None]) -> Crop:
    """The part of ``grey`` (H, W) around every box (at least one), with ``CROP_MARGIN_PX``, and
    its corner: a stretch of a long high-rate clip holds its faces, not its whole frames."""
    boxes = [box for box in boxes if box is not None]
    x0 = int(max(np.floor(min(box[0] for box in boxes)) - CROP_MARGIN_PX, 0))
    y0 = int(max(np.floor(min(box[1] for box in boxes)) - CROP_MARGIN_PX, 0))
    x1 = int(min(np.ceil(max(box[2] for box in boxes)) + CROP_MARGIN_PX, grey.shape[1]))
    y1 = int(min(np.ceil(max(box[3] for box in boxes)) + CROP_MARGIN_PX, grey.shape[0]))
    return np.array([x0, y0]), np.ascontiguousarray(grey[y0:y1, x0:x1])


def _reread(stretch: Stretch, crops: dict[int, Crop], points_px: LayerReader,
            camera: PerspectiveCamera) -> np.ndarray | None:
    first, last = stretch
    frames = slice(first, last + 1)
    points = np.array(points_px(frames), np.float64)  # (n, 478, 3) source px
    if first not in crops or not np.all(np.isfinite(points[0, :, :2])):
        return None
    to_index = 0.5  # continuous px -> pixel-centre px, as the flow reads images
    scale = float(camera.poses.scale[first])  # px per mm
    corner, reference = crops[first]
    tracker = ReferenceTracker(reference, points[0, :, :2] - to_index - corner, settings_for_face(scale))
    seen = points.copy()
    for row in range(1, len(points)):
        frame = first + row
        if frame not in crops or not np.all(np.isfinite(points[row, :, :2])):
            continue
        # the warp is guided by the take's own points: guided by the first frame's face carried by
        # the head's pose instead, the dev events' layers gained nothing (+0.000 against +0.049)
        corner, image = crops[frame]
        tracked = tracker.track_frame(image, points[row, :, :2] - to_index - corner) + to_index + corner
        seen[row, :, :2] = np.where(np.isfinite(tracked), tracked, points[row, :, :2])
    span_camera = replace(camera, camera_rotations=camera.camera_rotations[frames],
                          camera_shifts_mm=camera.camera_shifts_mm[frames])
    # the flow's motion since the first frame less the points' (both start from the points there)
    correction = span_camera.faces_at(seen, slice(None)) - span_camera.faces_at(points, slice(None))  # (n, 478, 3) mm
    trusted = np.linalg.norm(correction, axis=-1) <= AGREE_MM  # (n, 478); NaN compares False
    trusted[:, UNTRACKED_LANDMARKS] = False
    return np.where(trusted[..., None], correction, 0.0)


def take_points_px(take: Take, camera: PerspectiveCamera) -> LayerReader:
    """A reader of the points a take was read from, frames -> (F, 478, 3) source px (depth 0): its
    face (neutral + every layer) projected through ``camera`` (``camera_of_take``). The engine reads
    each point on its ray at the posed neutral's depth (``PerspectiveCamera.faces_at``), so the
    projection gives it back."""
    total_mm = FrameSum((take.macro_mm, take.micro_mm, take.detail_mm))
    neutral_mm = np.asarray(take.neutral_mm, np.float64)

    def points(frames: slice) -> np.ndarray:
        image = camera.project(neutral_mm + np.asarray(total_mm[frames], np.float64), frames)  # (F, 478, 2) px
        return np.concatenate([image, np.zeros(image.shape[:-1] + (1,))], axis=-1)

    return points


def take_stretch_reader(take: Take, video_path: Path) -> StretchReader:
    """``reread_stretches`` bound to a take made from ``video_path`` (its points and camera read
    from the take itself): for what is done to a take after the engine (``marked_events``)."""
    camera = camera_of_take(take)
    return partial(reread_stretches, Path(video_path), np.asarray(take.frame_indices),
                   points_px=take_points_px(take, camera), camera=camera)


def source_stretch_reader(take: Take) -> tuple[StretchReader | None, str]:
    """``take_stretch_reader`` of the video the take was made from, if it is still where it was and
    the same file; else None and why, in words for the user."""
    video = Path(take.source_path)
    if not video.is_file():
        return None, f"the take's video {video} is not there: the event is read from the take's points alone"
    try:
        same = file_sha256(video) == take.source_sha256
    except OSError as error:
        return None, f"cannot read the take's video {video} ({error}): the event is read from the take's points alone"
    if not same:
        return None, (f"{video} is no longer the video the take was made from: the event is read from the take's "
                      "points alone")
    return take_stretch_reader(take, video), ""
