"""Where the face is lost: the open-loop scan clips followed stage by stage.

    .venv/bin/python scripts/open_loop_budget.py [--json OUT]   # ~3 min once open_loop.py has rendered the clips

Each stage is scored against the same truth (the scan's surface motion at the 478 landmark points,
``scripts/open_loop.py``), in the image plane of the head (x right, y up, mm): the takes carry no
depth motion, so the budget says what they lose of what they can see. Stages:

1. **tracker**: MediaPipe's landmarks read with everything else perfect: the true head pose, the
   true focal length, and a neutral triangulated from the frames where the truth is at rest. What
   is lost here is the tracker's: its points are placed by its face prior, not glued to the skin.
1b. **skin-glued tracker (true pose)**: the same reading of points tracked by optical flow
   against rest frames at spread-out poses warped by the posed neutral mesh, averaged over a
   neighbourhood (``ops/skin_track.py``, ``skin_glued_reading``): what a tracker glued to the skin
   would give the engine, where the engine uses it everywhere it can be trusted.
1c. **skin-glued tracker (take's pose)**: the same tracker with the take's own pose, focal length,
   neutral and calm frames, read as the take reads its landmarks (``take_skin_readings``).
1d. **skin-glued tracker (pose solved on it)**: the engine's pose solve and reading
   (``perspective_faces``) run on those tracked points instead of MediaPipe's.
2. **landmark take**: the engine without the network (``ReconstructSettings(use_network=False)``):
   its own pose, focal length and neutral (``ops/perspective.py``, ``ops/neutral.py``).
3. **network take**: the take MXR writes.
4. **named units**: what the open head's units show of the network take at the landmarks, as
   *Bake Take* solves them (``models.retarget.solve_units``; the rigid motion solved with them is
   not baked): the basis' and the sparse solve's loss, i.e. what an animator can edit by name.
5. **baked (units + detail)**: the units and the take's detail layer (``models/detail.py``), which
   carries what the units leave: what the baked head shows at the landmarks.

Figures per split: the error against a take that never moves (x, y), the median share of each
action's motion recovered (``open_loop.score_scan_clip``'s measure, on x, y), brow raise / frown /
smile, and the still face's wander.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import open_loop  # noqa: E402  (this script's sibling: the clips, their truth and renders)
from render_scan_clips import CAMERA_DISTANCE_M, FOCAL_PX, scan_correspondence  # noqa: E402

from mxr.models.network.synthetic import align_to_truth, displacements_to_truth, rotation_from_angles  # noqa: E402
from mxr.models.open_head import load_open_head  # noqa: E402
from mxr.models.detail import FACE_SOURCES, compress, head_residual  # noqa: E402
from mxr.models.retarget import neutral_to_head, seen_landmark_basis, solve_units  # noqa: E402
from mxr.models.scan import load_scan  # noqa: E402
from mxr.ops.canonical import SKIN_LANDMARKS  # noqa: E402
from mxr.ops.injection import take_camera  # noqa: E402
from mxr.ops.reconstruct import ReconstructSettings, reconstruct  # noqa: E402
from mxr.ops.perspective import calm_frames, perspective_faces  # noqa: E402
from mxr.ops.skin_track import SkinTrackSettings, fall_back, rest_references, track_with_references  # noqa: E402
from mxr.ops.take import Take, load_take  # noqa: E402

SKIN_STAGE = "skin-glued tracker (true pose)"
TAKE_SKIN_STAGE = "skin-glued tracker (take's pose)"
SOLVED_SKIN_STAGE = "skin-glued tracker (pose solved on it)"
STAGES = ("tracker", SKIN_STAGE, TAKE_SKIN_STAGE, SOLVED_SKIN_STAGE, "landmark take", "network take", "named units",
          "baked (units + detail)")


class Rays:
    """Triangulation for a view that gives each frame's camera centre and rays (``rays``)."""

    def rays(self, frame: int, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def triangulate(self, pixels: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """(T, N, 2) px -> (N, 3): the least-squares point nearest each point's rays in ``frames``."""
        normal = np.zeros((pixels.shape[1], 3, 3))
        target = np.zeros((pixels.shape[1], 3))
        for frame in frames:
            origin, direction = self.rays(frame, pixels[frame])
            projector = np.eye(3) - direction[:, :, None] * direction[:, None, :]
            normal += projector
            target += projector @ origin
        return np.linalg.solve(normal, target)


class TrueView(Rays):
    """The clip's true camera and head pose: rays, projections, triangulation and reading, in the
    head's frame (metres; pixels continuous, (0, 0) at the image's top-left corner, as MediaPipe's
    and ``ScanCamera``'s). ``surface_m`` (478, 3): the landmark points on the scan at rest (only
    their centroid is used: the head's turning centre)."""

    def __init__(self, spec: open_loop.ScanClipSpec, surface_m: np.ndarray) -> None:
        plan = open_loop.scan_clip_plan(spec)
        self.centroid = surface_m.mean(axis=0)
        self.focal = FOCAL_PX * spec.width_px / 640.0
        self.image_centre = np.array([spec.width_px / 2.0, spec.height_px / 2.0])
        self.camera_m = np.array([self.centroid[0], self.centroid[1], CAMERA_DISTANCE_M])
        self.rotations = rotation_from_angles(*plan.head_angles_rad.T)  # (T, 3, 3) head -> world
        self.shifts = plan.head_shift_mm / 1000.0  # (T, 3)

    def rays(self, frame: int, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) px -> the camera centre (3,) and unit ray directions (N, 3), in the head's frame."""
        direction = np.concatenate([(pixels - self.image_centre) / self.focal * [1.0, -1.0],
                                    -np.ones((len(pixels), 1))], axis=1)
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        origin = (self.camera_m - self.centroid - self.shifts[frame]) @ self.rotations[frame] + self.centroid
        return origin, direction @ self.rotations[frame]

    def project(self, frame: int, points_m: np.ndarray) -> np.ndarray:
        """(N, 3) m in the head's frame -> (N, 2) px in the frame's image."""
        world = (points_m - self.centroid) @ self.rotations[frame].T + self.centroid + self.shifts[frame]
        offset = world - self.camera_m
        return self.image_centre + self.focal * offset[:, :2] / -offset[:, 2:3] * [1.0, -1.0]

    def read(self, pixels: np.ndarray, neutral_m: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """(T, N, 2) px -> (T, N, 3) mm in the truth's frame: each point's ray at the depth (along
        the camera axis) of the posed neutral (N, 3) m, less the neutral; NaN outside ``frames``."""
        reading = np.full(pixels.shape[:2] + (3,), np.nan)
        for frame in frames:
            origin, direction = self.rays(frame, pixels[frame])
            rotation, shift = self.rotations[frame], self.shifts[frame]
            posed_depth = ((neutral_m - self.centroid) @ rotation.T + self.centroid + shift)[:, 2]
            world_direction = direction @ rotation.T
            along = (posed_depth - self.camera_m[2]) / world_direction[:, 2]
            world = self.camera_m + along[:, None] * world_direction
            reading[frame] = ((world - self.centroid - shift) @ rotation + self.centroid - neutral_m) * 1000.0
        return reading


class TakeView(Rays):
    """The take's own camera and head pose (``ops/perspective.py``): a pinhole at the frame's centre
    with the take's focal length, the pose the take stores (a weak-perspective similarity: rotation,
    the head's projected centre, focal / depth); points in the take's canonical frame (mm, +Y up,
    +Z out of the face), pixels as MediaPipe's (the take's analysis px; these clips are analysed at
    full size)."""

    def __init__(self, take: Take) -> None:
        self.camera = take_camera(take)
        self.focal, self.centre = self.camera.focal_px, self.camera.centre_px
        self.rotations = self.camera.rotations  # (T, 3, 3) canonical -> OpenCV camera
        self.shifts = self.camera.shifts_mm  # (T, 3) mm

    def project(self, frame: int, points_mm: np.ndarray) -> np.ndarray:
        """(N, 3) canonical mm -> (N, 2) px in the frame's image."""
        camera = points_mm @ self.rotations[frame].T + self.shifts[frame]
        return self.focal * camera[:, :2] / camera[:, 2:3] + self.centre

    def rays(self, frame: int, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) px -> the camera centre (3,) and unit ray directions (N, 3), canonical mm."""
        direction = np.column_stack([(pixels - self.centre) / self.focal, np.ones(len(pixels))])
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        return -self.rotations[frame].T @ self.shifts[frame], direction @ self.rotations[frame]

    def read(self, pixels: np.ndarray, neutral_mm: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """(T, N, 2) px -> (T, N, 3) canonical mm, as the take reads its landmarks
        (``TakeCamera.read_mm``), less the neutral (N, 3) mm; NaN outside ``frames``."""
        reading = np.full(pixels.shape[:2] + (3,), np.nan)
        reading[frames] = self.camera.read_mm(pixels, neutral_mm)[frames]
        return reading


def rest_frames(take: Take, truth: dict) -> np.ndarray:
    """The frames with a face where the truth is at rest: what the neutral is triangulated from."""
    return np.flatnonzero(np.asarray(take.valid, bool) & (np.abs(truth["intensities"]).sum(axis=1) == 0))


def landmark_pixels(take: Take) -> np.ndarray:
    """The take's MediaPipe landmarks, (T, 478, 2) source px, NaN where no face."""
    return take.landmarks_px[..., :2].astype(np.float64) / take.analysis_scale


def oracle_reading(take: Take, spec: open_loop.ScanClipSpec, truth: dict, surface_m: np.ndarray) -> np.ndarray:
    """The take's MediaPipe landmarks read with the true camera and pose: (T, 478, 3) mm in the
    truth's frame, NaN where no face. ``surface_m`` (478, 3): the landmark points on the scan at rest."""
    view = TrueView(spec, surface_m)
    pixels = landmark_pixels(take)
    neutral = view.triangulate(pixels, rest_frames(take, truth))  # (478, 3) m, head frame
    return view.read(pixels, neutral, np.flatnonzero(np.asarray(take.valid, bool)))


def grey_frames(video_path: Path) -> list[np.ndarray]:
    """Every frame of the clip, (H, W) uint8 grey."""
    capture = cv2.VideoCapture(str(video_path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    finally:
        capture.release()


def track_skin(frames: list[np.ndarray], mesh_px: np.ndarray, rotations: np.ndarray, rest: np.ndarray,
               primary: int, fallback_px: np.ndarray, settings: SkinTrackSettings | None) -> np.ndarray:
    """``skin_track.track_with_references`` in MediaPipe's continuous px: (T, N, 2) px, the
    landmarker's points (``fallback_px``) where the flow saw nothing. ``mesh_px`` (T, N, 2) the
    posed mesh, ``rotations`` (T, 3, 3) the head's (NaN where no face)."""
    to_index = 0.5  # continuous px -> pixel-centre (array index) px, as the flow reads images
    tracked = track_with_references(frames, mesh_px - to_index, rotations, rest, primary, settings) + to_index
    return fall_back(tracked, fallback_px)


def skin_glued_reading(take: Take, spec: open_loop.ScanClipSpec, truth: dict, surface_m: np.ndarray,
                       frames: list[np.ndarray], settings: SkinTrackSettings | None = None) -> np.ndarray:
    """The skin-glued tracker (``ops/skin_track.py``) read like ``oracle_reading``: (T, 478, 3) mm.

    The mesh is MediaPipe's neutral triangulated from the rest frames with the true pose; the
    references are rest frames spread over the head's poses, the primary the one nearest a frontal
    view, and the tracked skin points are what it shows at the mesh's projected vertices. Each
    frame: its nearest reference warped by the mesh posed with the true pose, the flow from it,
    averaged. The points' own neutral is then triangulated from the same rest frames, and every
    frame read at its depth. Where the flow saw nothing the point is MediaPipe's. Nothing of the
    truth places a point beyond what the tracker stage uses."""
    view = TrueView(spec, surface_m)
    pixels = landmark_pixels(take)
    valid = np.flatnonzero(np.asarray(take.valid, bool))
    rest = rest_frames(take, truth)
    mesh = view.triangulate(pixels, rest)  # (478, 3) m, head frame
    primary = rest[np.argmin(np.abs(open_loop.scan_clip_plan(spec).head_angles_rad[rest]).sum(axis=1))]
    mesh_px = np.full(pixels.shape, np.nan)  # (T, 478, 2) the mesh posed with the true pose
    rotations = np.full((len(pixels), 3, 3), np.nan)
    for frame in valid:
        mesh_px[frame] = view.project(frame, mesh)
        rotations[frame] = view.rotations[frame]
    tracked = track_skin(frames, mesh_px, rotations, rest, primary, pixels, settings)
    neutral = view.triangulate(tracked, rest)  # the skin points' own neutral
    return view.read(tracked, neutral, valid)


def take_skin_readings(take: Take, truth: dict, frames: list[np.ndarray],
                       settings: SkinTrackSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The skin-glued tracker with the take's own pose, focal length, neutral and calm frames
    (``TakeView``; nothing of the truth but the final alignment), (T, 478, 3) mm in the truth's
    frame twice: read with the take's pose, and through the engine's pose solve run on the tracked
    points instead of MediaPipe's (``perspective_faces``: its neutral, focal length, poses and
    reading), which is what wiring the tracker into the engine would give.

    The mesh is the take's neutral posed with the take's pose; the references are the calmest
    quarter of the frames (``neutral.neutral_scores``, as ``perspective_faces`` picks its views)
    and the take's neutral frames, the primary the neutral frame nearest a frontal view. With the
    take's pose, the points' own neutral is triangulated from the same frames and every frame read
    as the take reads its landmarks."""
    view = TakeView(take)
    pixels = landmark_pixels(take)
    valid = np.asarray(take.valid, bool)
    with_face = np.flatnonzero(valid)
    faces_mm = take.neutral_mm + take.deformation_mm()  # (T, 478, 3) canonical
    first, last = take.settings["neutral_frames"]
    neutral_frames = np.arange(first, last + 1)[valid[first:last + 1]]
    rotations = np.where(valid[:, None, None], view.rotations, np.nan)
    rest, primary = rest_references(calm_frames(faces_mm, valid), neutral_frames, rotations)
    mesh_px = np.full(pixels.shape, np.nan)  # (T, 478, 2) the take's neutral posed with the take's pose
    rotations = np.full((len(pixels), 3, 3), np.nan)
    for frame in with_face:
        mesh_px[frame] = view.project(frame, take.neutral_mm.astype(np.float64))
        rotations[frame] = view.rotations[frame]
    tracked = track_skin(frames, mesh_px, rotations, rest, primary, pixels, settings)
    to_truth = align_to_truth(take.neutral_mm, truth["neutral_mm"])
    with_take_pose = view.read(tracked, view.triangulate(tracked, rest), with_face)
    solved = perspective_faces(np.concatenate([tracked, np.zeros(tracked.shape[:2] + (1,))], axis=2), valid,
                               neutral_frames, take.neutral_mm.astype(np.float64), faces_mm, take.frame_size)
    return (displacements_to_truth(with_take_pose, to_truth),
            displacements_to_truth(solved.faces_mm - solved.neutral_mm, align_to_truth(solved.neutral_mm,
                                                                                        truth["neutral_mm"])))


def in_truth_frame(take: Take, truth: dict) -> np.ndarray:
    """The take's deformation (T, 478, 3) mm mapped into the truth's frame."""
    alignment = align_to_truth(take.neutral_mm, truth["neutral_mm"])
    return displacements_to_truth(take.deformation_mm().astype(np.float64), alignment)


def baked_readings(take: Take, truth: dict) -> tuple[np.ndarray, np.ndarray]:
    """What the open head shows at the landmarks after *Bake Take*, (T, 478, 3) mm in the truth's
    frame: its named units alone, and the units with the detail layer (the rigid motion solved with
    the units is not baked: the head's pose comes from the take)."""
    head = load_open_head()
    solve = solve_units(head, take.deformation_mm(), take.neutral_mm, seconds=take.timestamps_s)
    units_m = np.tensordot(solve.coefficients, seen_landmark_basis(head), axes=1)  # (T, 478, 3) as the tracker sees them
    residual = head_residual(head, take.deformation_mm(), take.neutral_mm, solve)  # (T, 478, 3) m
    components, weights = compress(residual[:, FACE_SOURCES])
    detail_m = np.zeros_like(units_m)
    detail_m[:, FACE_SOURCES] = np.tensordot(weights, components, axes=1)
    to_head = neutral_to_head(head, take.neutral_mm)  # canonical mm -> head m
    to_truth = align_to_truth(take.neutral_mm, truth["neutral_mm"])
    return tuple(displacements_to_truth(shown_m @ to_head.rotation[0] / to_head.scale[0], to_truth)
                 for shown_m in (units_m, units_m + detail_m))


def stage_scores(estimate_mm: np.ndarray, truth: dict, valid: np.ndarray) -> dict:
    """Error, still-take error, wander and per-action recovery on x, y of the skin landmarks."""
    estimate = estimate_mm[:, SKIN_LANDMARKS, :2]
    true = truth["total_mm"][:, SKIN_LANDMARKS, :2]
    valid = valid & np.all(np.isfinite(estimate), axis=(1, 2))
    scores = {"error_mm": float(np.mean(np.linalg.norm(estimate[valid] - true[valid], axis=-1))),
              "still_take_error_mm": float(np.mean(np.linalg.norm(true[valid], axis=-1))),
              "wander_mm": float(np.mean(np.linalg.norm(estimate[valid], axis=-1))), "recovered": {}}
    for key in truth:
        if not key.startswith("hold/"):
            continue
        frames = truth[key][valid[truth[key]]]
        if len(frames) == 0:
            continue
        size = np.linalg.norm(true[frames], axis=-1)
        moved = size >= 0.5 * size.max(axis=1, keepdims=True)
        scores["recovered"][key[len("hold/"):]] = float(np.sum(estimate[frames] * true[frames], axis=-1)[moved].sum()
                                                        / np.sum(true[frames] ** 2, axis=-1)[moved].sum())
    return scores


def clip_stages(spec: open_loop.ScanClipSpec, surface_m: np.ndarray) -> dict[str, dict]:
    video_path, truth_path = open_loop.render_scan_clip(spec)
    with np.load(truth_path) as data:
        truth = {key: data[key] for key in data.files}
    takes = {}
    for suffix, use_network in (("baseline", False), ("network", True)):
        take_path = video_path.with_name(f"{video_path.stem}.{suffix}.take.npz")
        reconstruct(video_path, take_path, ReconstructSettings(use_network=use_network))  # the engine as it is now
        takes[suffix] = load_take(take_path)
    valid = np.asarray(takes["network"].valid, bool)
    units, baked = baked_readings(takes["network"], truth)
    frames = grey_frames(video_path)
    with_take_pose, pose_solved = take_skin_readings(takes["network"], truth, frames)
    readings = {"tracker": oracle_reading(takes["network"], spec, truth, surface_m),
                SKIN_STAGE: skin_glued_reading(takes["network"], spec, truth, surface_m, frames),
                TAKE_SKIN_STAGE: with_take_pose, SOLVED_SKIN_STAGE: pose_solved,
                "landmark take": in_truth_frame(takes["baseline"], truth),
                "network take": in_truth_frame(takes["network"], truth),
                "named units": units, "baked (units + detail)": baked}
    return {stage: stage_scores(reading, truth, valid) for stage, reading in readings.items()}


def budget() -> dict[str, dict[str, dict]]:
    scan = load_scan()
    embedding, _ = scan_correspondence(scan)
    surface_m = embedding.locate(scan.vertices)  # (478, 3) the landmark points on the scan at rest
    per_clip = {}
    for spec in open_loop.SCAN_CLIPS:
        per_clip[spec.name] = (spec, clip_stages(spec, surface_m))
        print(f"{spec.name}: " + json.dumps({stage: {k: v for k, v in s.items() if k != 'recovered'}
                                             for stage, s in per_clip[spec.name][1].items()}), file=sys.stderr)
    report: dict[str, dict[str, dict]] = {}
    for split in ("dev", "held-out"):
        report[split] = {}
        clips = [(spec, stages) for spec, stages in per_clip.values() if spec.split == split]
        for stage in STAGES:
            moving = [stages[stage] for spec, stages in clips if not spec.still]
            recovered = {name: value for score in moving for name, value in score["recovered"].items()}
            error = np.mean([score["error_mm"] for score in moving])
            still_take = np.mean([score["still_take_error_mm"] for score in moving])
            report[split][stage] = {
                "error / still take (x, y)": f"{error:.3f} / {still_take:.3f} mm = {error / still_take:.2f}x",
                "recovered (median of 14)": f"{np.median(list(recovered.values())):.2f}",
                "brow raise / frown / smile": " / ".join(f"{recovered.get(n, float('nan')):.2f}"
                                                          for n in ("brow_raise", "brow_lower", "smile")),
                "still-face wander (mm)": " / ".join(f"{stages[stage]['wander_mm']:.3f}"
                                                     for spec, stages in clips if spec.still),
            }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    report = budget()
    for split, stages in report.items():
        columns = list(next(iter(stages.values())).keys())
        print(f"\n{split}\n\n| stage | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
        for stage, row in stages.items():
            print(f"| {stage} | " + " | ".join(row[c] for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
