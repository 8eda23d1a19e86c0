"""Head pose from the image through a pinhole camera, and the expression read against it.

Why: MediaPipe's 3-D mesh is not rigid. Its depth bends as the head turns, so a similarity fitted
on its "rigid" landmarks (``canonical.canonicalize``, step 1) leaves the bend in the face: on a
rendered still face turning 20 degrees, 2.1 mm of false motion, six times the true motion of the
facial actions of the open-loop check. Its x and y are a good 2-D tracker, so here the pose comes
from them alone:

1. the neutral's depth is refined from the take's own views (a head that turns shows its depth):
   each landmark's depth is triangulated from its rays in the calm frames (those that look most
   neutral, ``neutral.neutral_scores``: an expression must not become the neutral), its x and y
   kept as the neutral frames show them, and pulled towards MediaPipe's depth where the views say
   little (a head that never turns keeps MediaPipe's shape);
2. each frame's pose is found by perspective PnP on points no facial action moves, then on the
   skin points that agree with it;
3. the expression is what the image shows beyond the posed neutral, read at the neutral's depth
   (the image does not show depth motion; that part of an expression is lost here).

The camera is a pinhole at the frame's centre with the focal length, among a few candidates, whose
poses reproject the calm frames best.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from typing import Callable, Collection, Iterator

import cv2
import numpy as np

from ..models.similarity import Similarities
from .canonical import INTERPUPILLARY_MM, IRIS_CENTRE_LEFT, IRIS_CENTRE_RIGHT, RIGID_LANDMARKS, SKIN_LANDMARK_COUNT
from .errors import MxrError
from .neutral import neutral_scores
from .spill import CHUNK_FRAMES
from .take import Take

# The points the pose is first found on: canonical.RIGID_LANDMARKS without the forehead, which the
# brows' frontalis moves (on the dev scan clips: brow raise recovered 0.40 instead of 0.33, a still
# turning face 0.66 mm instead of 0.71).
POSE_LANDMARKS = np.setdiff1d(RIGID_LANDMARKS, [10, 151, 9, 109, 338, 67, 297, 108, 337, 69, 299])

FOCAL_CANDIDATES = (1.0, 1.6, 2.6, 5.0)  # focal lengths tried, in units of the frame's longer side
CALM_SHARE = 0.25  # the views are the calmest quarter of the frames ...
VIEWS = 200  # ... at most this many of them, spread over the take
ROUNDS = 6  # alternations (views' poses, then depths)
DEPTH_PRIOR = 1e-3  # pull towards MediaPipe's shape, relative to the rays' mean information per landmark
INLIER_ROUNDS = 2  # PnP again on the skin points within INLIER_FACTOR x the median miss (px) ...
INLIER_FACTOR = 1.5
INLIER_FLOOR_PX = 0.5  # ... or this many px
SEARCH_THREADS = 4  # the focal length candidates solved side by side, at most this many (and the CPU's cores)
LOST_POSE_PX = 20.0  # a pose whose skin points miss by more (median), or behind the camera, is redone from scratch
_TO_OPENCV = np.array([1.0, -1.0, -1.0])  # canonical (+Y up, +Z to the camera) <-> OpenCV camera axes


@dataclass
class PerspectiveCamera:
    """The camera and every frame's head pose (~100 bytes a frame); ``faces_at`` reads the faces
    of any frames from the landmarks against them, so a long take is read a chunk at a time."""

    neutral_mm: np.ndarray  # (478, 3) canonical, the depth refined
    poses: Similarities  # the weak-perspective pose the take stores (camera px, y up = scale R canonical + t)
    focal_px: float
    reprojection_px: float  # mean over the calm frames' pose landmarks
    camera_rotations: np.ndarray  # (T, 3, 3) canonical -> OpenCV camera axes, NaN where invalid
    camera_shifts_mm: np.ndarray  # (T, 3) the canonical origin in the OpenCV camera, NaN where invalid
    image_centre_px: np.ndarray  # (2,) the pinhole's centre

    def project(self, points_mm: np.ndarray, frames: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Canonical points (N, 3) mm, or each frame's own (F, N, 3), posed by the pose of each of
        ``frames`` -> (F, N, 2) image px, NaN where invalid."""
        per_frame = "tnj" if np.ndim(points_mm) == 3 else "nj"
        camera = (np.einsum(f"tij,{per_frame}->tni", self.camera_rotations[frames], points_mm)
                  + self.camera_shifts_mm[frames][:, None])
        return self.focal_px * camera[..., :2] / camera[..., 2:3] + self.image_centre_px

    def faces_at(self, landmarks_px: np.ndarray, frames: slice | np.ndarray) -> np.ndarray:
        """The canonical faces (F, 478, 3) mm of ``frames`` of the landmarks (T, 478, 3) image px:
        where the image puts each landmark, at the posed neutral's depth (step 3 of the module
        docstring); NaN where invalid."""
        rotations = self.camera_rotations[frames] * _TO_OPENCV  # (F, 3, 3) OpenCV camera <- OpenCV-axes canonical
        shape = self.neutral_mm * _TO_OPENCV  # (478, 3) mm, OpenCV axes
        posed = np.einsum("tij,nj->tni", rotations, shape) + self.camera_shifts_mm[frames][:, None]  # (F, 478, 3)
        image = _image_px(landmarks_px, frames)  # (F, 478, 2)
        rays = np.concatenate([(image - self.image_centre_px) / self.focal_px, np.ones(image.shape[:-1] + (1,))],
                              axis=-1)
        seen = rays * posed[..., 2:3]  # where the image puts each landmark, at the posed neutral's depth
        return (shape + np.einsum("tji,tnj->tni", rotations, seen - posed)) * _TO_OPENCV


def camera_of_take(take: Take) -> PerspectiveCamera:
    """The camera and head poses a take was read through, from what it stores (the inverse of
    ``perspective_camera``'s weak-perspective ``poses``: scale = focal / depth, translation = the
    canonical origin's image point, y up), with the take's rest face as its neutral: the engine's
    camera had the face before any held expression was taken out (ops/held_expression.py), so
    depths read through this one differ by that shift, and differences between frames hardly.
    MxrError for a take not read through this camera."""
    if take.settings.get("camera") != "perspective":
        raise MxrError("the take was not read through a perspective camera (made by an older MXR): make it again")
    focal = float(take.settings["camera_focal_px"])
    centre = np.array(take.frame_size, np.float64) / 2.0
    scale = take.head_scale_px_per_mm.astype(np.float64)
    depth = focal / scale  # (T,) mm
    translation = take.head_translation_px.astype(np.float64)
    shifts = np.stack([(translation[:, 0] - centre[0]) * depth / focal,
                       (-translation[:, 1] - centre[1]) * depth / focal, depth], axis=1)  # (T, 3) mm
    rotation = take.head_rotation.astype(np.float64)
    poses = Similarities(rotation=rotation, translation=translation, scale=scale)
    return PerspectiveCamera(take.neutral_mm.astype(np.float64), poses, focal, float("nan"),
                             np.diag(_TO_OPENCV) @ rotation, shifts, centre)


@dataclass
class PerspectiveFaces(PerspectiveCamera):
    """The camera with every frame's face read (``faces_at`` over the whole take)."""

    faces_mm: np.ndarray  # (T, 478, 3) canonical, NaN where invalid


def perspective_faces(landmarks_px: np.ndarray, valid: np.ndarray, neutral_frames: np.ndarray, neutral_mm: np.ndarray,
                      faces_mm: np.ndarray, frame_size: tuple[int, int],
                      on_progress: Callable[[int, int], None] | None = None) -> PerspectiveFaces:
    """``perspective_camera`` with every frame's face read: its views the calmest of ``faces_mm``
    (T, 478, 3) canonical mm from ``canonicalize`` (step 1)."""
    camera = perspective_camera(landmarks_px, valid, neutral_frames, neutral_mm, calm_frames(faces_mm, valid),
                                frame_size, on_progress)
    return PerspectiveFaces(**{field.name: getattr(camera, field.name) for field in fields(PerspectiveCamera)},
                            faces_mm=camera.faces_at(landmarks_px, slice(None)))


def perspective_camera(landmarks_px: np.ndarray, valid: np.ndarray, neutral_frames: np.ndarray, neutral_mm: np.ndarray,
                       calm: np.ndarray, frame_size: tuple[int, int],
                       on_progress: Callable[[int, int], None] | None = None,
                       focal_candidates_px: tuple[float, ...] | None = None) -> PerspectiveCamera:
    """landmarks_px (T, 478, 3) image px; neutral_frames: the frames showing the neutral;
    neutral_mm (478, 3) canonical mm from ``canonicalize`` (step 1); calm: the calm frames whose
    views show the neutral's depth (``calm_frames``); frame_size (width, height) px.
    ``on_progress(done, total)``: called after each round of each focal length's search (seconds
    on any clip: at most ``VIEWS`` views) and as the frames' poses are found (the long part on a
    long clip), counting both; a callback that raises stops the solve (cancel).
    ``focal_candidates_px``: the focal lengths tried (px); None: ``FOCAL_CANDIDATES`` times the
    frame's longer side."""
    if focal_candidates_px is None:
        focal_candidates_px = tuple(factor * float(max(frame_size)) for factor in FOCAL_CANDIDATES)
    neutral_frames = np.asarray([f for f in neutral_frames if valid[f]], np.int64)
    frames = np.flatnonzero(valid)
    views = calm[np.unique(np.linspace(0, len(calm) - 1, min(VIEWS, len(calm))).astype(np.int64))]
    centre = np.array(frame_size, np.float64) / 2.0
    start = neutral_mm.astype(np.float64) * _TO_OPENCV
    # Progress is counted in poses found (the work is about that), so that an ETA holds.
    per_round = len(views) + len(neutral_frames)
    search = len(focal_candidates_px) * (ROUNDS * per_round + len(views))
    total = search + len(frames)
    report = _SharedCount(on_progress, total)

    # Read once for every candidate and round: at most VIEWS frames and the neutral ones, (n, 478, 2) px.
    views_px, neutral_px = _image_px(landmarks_px, views), _image_px(landmarks_px, neutral_frames)

    def candidate(focal: float) -> tuple[float, float, np.ndarray]:  # (reprojection px, focal px, shape)
        shape = _refined_shape(views_px, neutral_px, start, focal, centre, lambda: report.add(per_round))
        rotations, shifts = _poses(views_px, shape, focal, centre)
        error = _reprojection_px(views_px, shape, rotations, shifts, focal, centre)
        report.add(len(views))
        return error, focal, shape

    # The candidates are independent: solved side by side (OpenCV's PnP runs outside Python's lock),
    # the same result as one after another, ~1.4x faster on two cores (2.7 -> 1.9 s on WolfgangLanger).
    with ThreadPoolExecutor(max_workers=min(SEARCH_THREADS, os.cpu_count() or 1)) as pool:
        try:
            futures = [pool.submit(candidate, focal) for focal in focal_candidates_px]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in finished:
                if future.exception() is not None:
                    raise future.exception()
            searched = [future.result() for future in futures]
        except BaseException:  # a cancel (a callback that raised, or SIGINT here): the others stop at their next round
            report.stop()
            raise
    error, focal, shape = min(searched, key=lambda result: result[0])  # the first of equals, as in order
    rotations, shifts = _poses(_FrameImages(landmarks_px, frames), shape, focal, centre,
                               lambda done, count: report.add(1))  # (n, 3, 3), (n, 3) mm, OpenCV
    flip = np.diag(_TO_OPENCV)
    depth = shifts[:, 2]
    translation = np.stack([centre[0] + focal * shifts[:, 0] / depth, -(centre[1] + focal * shifts[:, 1] / depth),
                            np.zeros_like(depth)], axis=1)
    poses = Similarities(rotation=_scatter(flip @ rotations @ flip, valid), translation=_scatter(translation, valid),
                         scale=_scatter(focal / depth, valid))
    return PerspectiveCamera(shape * _TO_OPENCV, poses, focal, error, _scatter(rotations @ flip, valid),
                             _scatter(shifts, valid), centre)


class _SharedCount:
    """Poses found, added up from the threads of the focal length search and passed on to
    ``on_progress(done, total)`` one call at a time; after ``stop`` every thread's next report
    raises instead, so that a cancelled search does not run on."""

    def __init__(self, on_progress: Callable[[int, int], None] | None, total: int) -> None:
        self._on_progress, self._total, self._done = on_progress, total, 0
        self._lock, self._stopped = threading.Lock(), False

    def add(self, count: int) -> None:
        with self._lock:
            if self._stopped:
                raise _SearchStopped
            self._done += count
            if self._on_progress is not None:
                self._on_progress(self._done, self._total)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True


class _SearchStopped(Exception):
    """Raised in a search thread after the solve was cancelled elsewhere (never reaches the caller)."""


def calm_frames(faces_mm: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The calmest ``CALM_SHARE`` of the frames with a face (``neutral.neutral_scores`` of the
    canonical faces (T, 478, 3) mm), sorted: the views that show the neutral's depth."""
    return calmest_frames(neutral_scores(faces_mm, valid), valid)


def calmest_frames(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``calm_frames`` from the frames' ``neutral.neutral_scores`` (T,)."""
    frames = np.flatnonzero(valid)
    return np.sort(frames[np.argsort(scores[frames])[:max(1, int(CALM_SHARE * len(frames)))]])


def _image_px(landmarks_px: np.ndarray, frames: np.ndarray | int) -> np.ndarray:
    """The image x, y (..., 478, 2) px of ``frames``, float64."""
    return landmarks_px[frames, :, :2].astype(np.float64)


class _FrameImages:
    """The image x, y (478, 2) px of each of ``frames`` of the landmarks (T, 478, 3) px, in order,
    read a chunk of frames at a time (a per-frame read of an array on disk costs as much as a pose)."""

    def __init__(self, landmarks_px: np.ndarray, frames: np.ndarray) -> None:
        self.landmarks_px, self.frames = landmarks_px, frames

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        for first in range(0, len(self.frames), CHUNK_FRAMES):
            yield from _image_px(self.landmarks_px, self.frames[first:first + CHUNK_FRAMES])


def _poses(images_px: Collection[np.ndarray], shape: np.ndarray, focal: float, centre: np.ndarray,
           on_progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Perspective pose of ``shape`` (478, 3) mm, OpenCV axes, in each of the frames whose image
    x, y (478, 2) px ``images_px`` holds (each started from the one before): PnP on
    ``POSE_LANDMARKS``, then again on the skin landmarks that agree with that pose (an expression
    moves its own points away and they drop out, so it does not tilt the head, while the many
    still points steady the pose). Rotations (n, 3, 3), shifts (n, 3) mm."""
    camera = np.array([[focal, 0.0, centre[0]], [0.0, focal, centre[1]], [0.0, 0.0, 1.0]])
    pose_shape, skin_shape = shape[POSE_LANDMARKS], shape[:SKIN_LANDMARK_COUNT]  # (P, 3), (S, 3) mm
    count = len(images_px)
    rotations, shifts = np.zeros((count, 3, 3)), np.zeros((count, 3))
    rotation_vector = shift = None
    for row, image in enumerate(images_px):
        pose_image, skin_image = image[POSE_LANDMARKS], image[:SKIN_LANDMARK_COUNT]  # (P, 2), (S, 2) px
        for attempt in range(2):  # the pose before as the start, then (if that went astray) none
            if rotation_vector is None or attempt == 1:
                _, rotation_vector, shift = cv2.solvePnP(pose_shape, pose_image, camera, None, flags=cv2.SOLVEPNP_EPNP)
            object_points, image_points = pose_shape, pose_image
            for _ in range(1 + INLIER_ROUNDS):
                _, rotation_vector, shift = cv2.solvePnP(object_points, image_points, camera, None,
                                                         rotation_vector, shift, useExtrinsicGuess=True,
                                                         flags=cv2.SOLVEPNP_ITERATIVE)
                rotation = cv2.Rodrigues(rotation_vector)[0]
                posed = skin_shape @ rotation.T + shift.ravel()
                offset = _projected_px(posed, focal, centre) - skin_image
                offset *= offset
                miss = np.sqrt(offset[:, 0] + offset[:, 1])  # (S,) px
                median_miss = _median(miss)
                inliers = np.flatnonzero(miss <= max(INLIER_FACTOR * median_miss, INLIER_FLOOR_PX))
                object_points, image_points = skin_shape[inliers], skin_image[inliers]
            if np.all(posed[:, 2] > 0) and median_miss < LOST_POSE_PX:
                break
        rotations[row] = rotation
        shifts[row] = shift.ravel()
        if on_progress is not None:
            on_progress(row + 1, count)
    return rotations, shifts


def _median(values: np.ndarray) -> float:
    """``np.median`` of (n,) values, NaN if any is, without its overhead (three a pose)."""
    half = len(values) // 2
    middle = (half - 1, half) if len(values) % 2 == 0 else (half,)
    ordered = np.partition(values, middle + (-1,))  # NaN sorts last
    if np.isnan(ordered[-1]):
        return float("nan")
    return float((ordered[middle[0]] + ordered[middle[-1]]) / 2) if len(middle) == 2 else float(ordered[half])


def _refined_shape(views_px: np.ndarray, neutral_px: np.ndarray, shape: np.ndarray, focal: float, centre: np.ndarray,
                   on_round: Callable[[], None] | None = None) -> np.ndarray:
    """The neutral (478, 3) mm, OpenCV axes, each landmark triangulated from its rays: those of the
    neutral frames (image x, y ``neutral_px`` (n, 478, 2) px; weighted as much as all the views
    together: the neutral is what they show) and those of the calm views (``views_px``, which say
    how deep each point lies), pulled towards MediaPipe's shape where neither says much.
    ``on_round()`` after each round."""
    prior = shape - shape.mean(axis=0)
    anchor_weight = np.sqrt(len(views_px) / max(len(neutral_px), 1))
    for _ in range(ROUNDS):
        normal, right = np.zeros((478, 3, 3)), np.zeros((478, 3))
        for images, weight in ((views_px, 1.0), (neutral_px, anchor_weight)):
            rotations, shifts = _poses(images, shape, focal, centre)
            offset = images - centre  # (n, 478, 2)
            # Per frame, two equations linear in the point X: u (r3 X + t3) = f (rk X + tk).
            rows = weight * (offset[..., None] * rotations[:, None, None, 2, :] - focal * rotations[:, None, :2, :])
            rhs = weight * (focal * shifts[:, None, :2] - offset * shifts[:, None, 2:3])  # (n, 478, 2)
            # each landmark's equations of every frame, (478, 2n, 3) and (478, 2n, 1): one matrix
            # product per landmark (~20x faster than einsum's sums over the frames)
            equations = rows.transpose(1, 0, 2, 3).reshape(len(shape), -1, 3)
            targets = rhs.transpose(1, 0, 2).reshape(len(shape), -1, 1)
            normal += np.swapaxes(equations, 1, 2) @ equations
            right += (np.swapaxes(equations, 1, 2) @ targets)[..., 0]
        strength = DEPTH_PRIOR * np.trace(normal, axis1=1, axis2=2).mean() / 3.0
        shape = np.linalg.solve(normal + strength * np.eye(3), (right + strength * prior)[..., None])[..., 0]
        shape -= shape.mean(axis=0)
        shape *= INTERPUPILLARY_MM / np.linalg.norm(shape[IRIS_CENTRE_LEFT] - shape[IRIS_CENTRE_RIGHT])
        if on_round is not None:
            on_round()
    return shape


def _reprojection_px(image: np.ndarray, shape: np.ndarray, rotations: np.ndarray, shifts: np.ndarray,
                     focal: float, centre: np.ndarray) -> float:
    """Mean distance (px) between the pose landmarks and the posed shape's projection."""
    posed = np.einsum("tij,nj->tni", rotations, shape[POSE_LANDMARKS]) + shifts[:, None]
    return float(np.mean(np.linalg.norm(_projected_px(posed, focal, centre) - image[:, POSE_LANDMARKS], axis=-1)))


def _projected_px(points_mm: np.ndarray, focal: float, centre: np.ndarray) -> np.ndarray:
    """Pinhole image (..., 2) px of points (..., 3) mm in OpenCV camera axes."""
    return focal * points_mm[..., :2] / points_mm[..., 2:3] + centre


def _scatter(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    full = np.full((len(valid),) + values.shape[1:], np.nan)
    full[valid] = values
    return full
