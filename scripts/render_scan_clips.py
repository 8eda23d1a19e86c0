"""Render clips of the real scanned face (menpo3d's James) with known deformations and exact truth.

    .venv/bin/python scripts/render_scan_clips.py [--out DIR] [--fps 30 120] [--seconds 4 2] [--check]

Why: synthetic sequences judge the network on the head model's own landmarks; these clips judge
the whole engine, front-end included, on real skin texture, where the true 3D motion of every
landmark skin point is known to the micrometre.

How:
1. correspondence (cached in .cache/scan/): the textured scan is rendered frontally with an
   orthographic camera at a few framings, MediaPipe finds the 478 landmarks, they are averaged in
   the image plane and cast onto the front-most surface (``models.correspondence``), as
   ``scripts/build_head_asset.py`` does for the open head;
2. deformation: the open head's expression basis at its landmarks, mapped onto the scan by the
   similarity between the two heads' neutral landmarks, is spread over the scan's vertices by
   ``models.detail.DetailSpread`` (Wendland RBF). The truth is what the spread mesh *does* at
   the embedded landmark points (the spread is regularised, so not exactly the open head's
   displacement; the truth is the rendered surface's motion, exact by construction);
3. coefficients: macro key poses and AU-like micro events from ``models.network.synthetic``
   (blinks off: the scan's eye is one surface, no lid can close over it); smooth head motion;
4. Workbench renders (``mxr_addon.scan_render``) written losslessly (FFV1 in AVI) beside a truth
   file (``models.network.scan_truth``). Existing clips are kept (delete them to re-render).

``--check`` runs the engine (``python -m mxr.ops reconstruct``) on each clip and prints the
landmark baseline's error against the truth after a similarity alignment of the neutrals.
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from mxr.models.correspondence import LANDMARK_COUNT, LandmarkEmbedding, embed_image_landmarks
from mxr.models.detail import DetailSpread
from mxr.models.head_model import HeadModel
from mxr.models.network.scan_truth import ScanCamera, ScanTruth, load_scan_truth, save_scan_truth
from mxr.models.network.synthetic import (
    SyntheticConfig,
    align_to_truth,
    displacements_to_truth,
    macro_coefficients,
    micro_events,
    rotation_from_angles,
    smooth_signal,
)
from mxr.models.open_head import load_open_head
from mxr.models.scan import Scan, load_scan
from mxr.models.similarity import fit_similarities
from mxr.ops.canonical import SKIN_LANDMARKS

REPO = Path(__file__).resolve().parents[1]
CLIP_DIR = REPO / ".cache" / "scan_clips"
CORRESPONDENCE_PATH = REPO / ".cache" / "scan" / "james_correspondence.npz"
CORRESPONDENCE_SIZE_PX = 1024
# Framings for the correspondence (zoom, centre shift in metres): jitter averages out.
FRAMINGS: tuple[tuple[float, tuple[float, float]], ...] = ((1.0, (0.0, 0.0)), (1.12, (0.006, 0.008)),
                                                          (0.9, (-0.006, -0.004)))
FACE_VIEW_WIDTH_M = 0.24  # the orthographic view spans the face, not the hair or the shoulders
# Clip camera: a ~70 mm lens at 0.6 m, the face ~260 px wide in 640x480 (as in the measured clips).
FOCAL_PX = 1200.0
CAMERA_DISTANCE_M = 0.6
# Head motion amplitudes: yaw, pitch, roll (degrees) and x, y, z translation (mm).
HEAD_ANGLES_DEG = np.array([8.0, 5.0, 3.0])
HEAD_SHIFT_MM = np.array([8.0, 6.0, 10.0])
HEAD_PERIOD_S = 1.5  # fastest period of the smooth head motion
MOTION = SyntheticConfig(
    macro_amplitude=(0.1, 0.4),  # the scan's mouth is closed: keep key poses moderate
    blink_rate_per_s=1e-9,  # no blinks (see the module docstring)
    micro_rate_per_s=(1.0, 1.5),  # several events even in a 2 s clip
)


@dataclass(frozen=True)
class ClipSpec:
    fps: float
    seconds: float
    seed: int
    width_px: int = 640
    height_px: int = 480
    neutral_seconds: float = MOTION.neutral_seconds  # still lead-in: the engine's neutral reference

    @property
    def name(self) -> str:
        return (f"james_{self.fps:g}fps_{self.seconds:g}s_{self.width_px}x{self.height_px}"
                f"_lead{self.neutral_seconds:g}_seed{self.seed}")


@dataclass(frozen=True)
class DrivenScan:
    """The scan with its landmarks and the transferred expression basis."""

    scan: Scan
    embedding: LandmarkEmbedding
    vertex_basis_m: np.ndarray  # (K, V, 3) metres per unit coefficient, head axes
    landmark_basis_mm: np.ndarray  # (K, 478, 3) mm: what the vertex basis does at the landmarks
    head: HeadModel  # the open head whose units drive the scan
    centroid_mm: np.ndarray  # (3,) the neutral landmarks' centroid, head axes: the canonical origin


# -- correspondence ---------------------------------------------------------------------------------
def scan_correspondence(scan: Scan, cache_path: Path = CORRESPONDENCE_PATH) -> tuple[LandmarkEmbedding, int]:
    """The 478 landmarks on the scan and how many hit the surface directly; cached."""
    if cache_path.is_file():
        with np.load(cache_path, allow_pickle=False) as data:
            if int(data["vertex_count"]) == len(scan.vertices):
                return LandmarkEmbedding(data["triangles"], data["barycentric"]), int(data["hits"])
    from mxr.mxr_addon.landmark_render import front_projection
    from mxr.mxr_addon.scan_render import ScanRenderer
    from mxr.ops.face_mesh_image import detect_face_mesh

    centre = scan.landmarks68[:, :2].mean(axis=0)  # (2,) metres
    front_z = float(scan.vertices[:, 2].max())
    world, pictures = [], []
    with tempfile.TemporaryDirectory(prefix="mxr_scan_") as workdir:
        for number, (zoom, shift) in enumerate(FRAMINGS):
            framing_centre = (float(centre[0] + shift[0]), float(centre[1] + shift[1]))
            camera = ScanCamera(CORRESPONDENCE_SIZE_PX, CORRESPONDENCE_SIZE_PX, front_z + 1.0, framing_centre,
                                view_width_m=FACE_VIEW_WIDTH_M / zoom)
            path = Path(workdir) / f"front_{number}.png"
            with ScanRenderer(scan.vertices, scan.triangles, scan.uv, scan.texture_path, camera) as renderer:
                renderer.render(scan.vertices, path)
            picture = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            landmarks = detect_face_mesh(picture)
            if landmarks is None:
                continue
            projection = front_projection(framing_centre, camera.view_width_m, CORRESPONDENCE_SIZE_PX)
            world.append(projection.unproject(landmarks[:, :2]))  # (478, 3) on the plane z = 0
            pictures.append((picture, projection))
    if not world:
        raise RuntimeError("MediaPipe found no face on any render of the scan; check the Workbench render")
    picture, reference = pictures[0]
    landmarks_px = reference.project(np.mean(world, axis=0))[:, :2]  # (478, 2)
    embedding, hits = embed_image_landmarks(scan.vertices, scan.triangles, landmarks_px, reference)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    _write_npz(cache_path, vertex_count=np.array(len(scan.vertices)), triangles=embedding.triangles,
               barycentric=embedding.barycentric, hits=np.array(int(hits.sum())), detections=np.array(len(world)))
    _write_png(cache_path.with_suffix(".png"), _draw(picture, landmarks_px))
    return embedding, int(hits.sum())


def _draw(picture: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """BGR picture with the landmarks as dots, for people to check the correspondence."""
    canvas = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
    for x, y in landmarks_px:
        cv2.circle(canvas, (int(round(x)), int(round(y))), 2, (0, 220, 0), -1, cv2.LINE_AA)
    return canvas


# -- deformation ------------------------------------------------------------------------------------
def drive_scan(scan: Scan, embedding: LandmarkEmbedding, head: HeadModel) -> DrivenScan:
    """Transfer the open head's landmark basis onto the scan and spread it over the vertices."""
    scan_landmarks = embedding.locate(scan.vertices)  # (478, 3) metres
    to_scan = fit_similarities(head.landmark_positions().astype(np.float64), scan_landmarks[None])
    head_basis = head.landmark_basis().astype(np.float64)  # (K, 478, 3) metres, open head
    target = to_scan.scale[0] * head_basis @ to_scan.rotation[0].T  # (K, 478, 3) metres, scan's size
    spread = DetailSpread.build(scan.vertices, embedding)
    vertex_basis = spread.apply(target[:, spread.sources])  # (K, V, 3)
    landmark_basis_mm = embedding.locate(vertex_basis) * 1000.0  # (K, 478, 3) the surface's real motion
    return DrivenScan(scan, embedding, vertex_basis, landmark_basis_mm, head, scan_landmarks.mean(axis=0) * 1000.0)


def head_motion(times_s: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Smooth small head rotations (T, 3, 3) and shifts (T, 3) mm, starting from rest at t = 0."""
    motion = smooth_signal(times_s, HEAD_PERIOD_S, rng, channels=6)  # (T, 6) in [-1, 1]
    motion = motion - motion[:1]  # the clip opens in the rest pose
    angles = np.radians(HEAD_ANGLES_DEG) * motion[:, :3]
    return rotation_from_angles(*angles.T), HEAD_SHIFT_MM * motion[:, 3:]


def clip_truth(driven: DrivenScan, spec: ClipSpec, camera: ScanCamera) -> ScanTruth:
    """Coefficients, events and head pose for a clip; draws again until it has a micro event."""
    times_s = np.arange(int(round(spec.fps * spec.seconds))) / spec.fps  # (T,)
    config = replace(MOTION, neutral_seconds=spec.neutral_seconds)
    neutral_head_mm = driven.embedding.locate(driven.scan.vertices) * 1000.0  # (478, 3) head axes
    for attempt in range(100):
        rng = np.random.default_rng([spec.seed, attempt])
        macro = macro_coefficients(driven.head, times_s, config, rng)  # (T, K)
        micro, events = micro_events(driven.head, times_s, spec.fps, driven.landmark_basis_mm, config, rng)
        if events:
            break
    else:
        raise RuntimeError(f"no micro event fits in {spec.seconds} s")
    rotation, shift_mm = head_motion(times_s, rng)
    return ScanTruth(
        fps=spec.fps, camera=camera, neutral_mm=neutral_head_mm - driven.centroid_mm,
        macro_mm=np.tensordot(macro, driven.landmark_basis_mm, axes=1),
        micro_mm=np.tensordot(micro, driven.landmark_basis_mm, axes=1),
        macro_coefficients=macro, micro_coefficients=micro, expression_names=list(driven.head.expression_names),
        events=events, head_rotation=rotation, head_translation_mm=driven.centroid_mm + shift_mm,
        settings={"scan": "menpo3d-0.8.6/james", "seed": spec.seed, "attempt": attempt, "seconds": spec.seconds,
                  "neutral_seconds": spec.neutral_seconds,
                  "spread": "models.detail.DetailSpread", "head": driven.head.name},
    )


def frame_vertices_m(driven: DrivenScan, truth: ScanTruth, frame: int) -> np.ndarray:
    """World positions (V, 3) metres of the scan's vertices in one frame."""
    coefficients = truth.macro_coefficients[frame] + truth.micro_coefficients[frame]  # (K,)
    deformed_mm = (driven.scan.vertices + np.tensordot(coefficients, driven.vertex_basis_m, axes=1)) * 1000.0
    canonical_mm = deformed_mm - driven.centroid_mm  # (V, 3)
    world_mm = canonical_mm @ truth.head_rotation[frame].T + truth.head_translation_mm[frame]
    return world_mm / 1000.0


# -- clips ------------------------------------------------------------------------------------------
def clip_camera(driven: DrivenScan, spec: ClipSpec) -> ScanCamera:
    """Perspective camera aimed at the neutral landmarks' centroid, scaled to the frame width."""
    centre = driven.embedding.locate(driven.scan.vertices).mean(axis=0)  # (3,) metres
    focal = FOCAL_PX * spec.width_px / 640.0
    return ScanCamera(spec.width_px, spec.height_px, CAMERA_DISTANCE_M, (float(centre[0]), float(centre[1])), focal)


def clip_paths(out_dir: Path, spec: ClipSpec) -> tuple[Path, Path]:
    """(video, truth) paths of a clip."""
    return out_dir / f"{spec.name}.avi", out_dir / f"{spec.name}.truth.npz"


def render_clip(driven: DrivenScan, spec: ClipSpec, out_dir: Path) -> tuple[Path, Path, float]:
    """Render one clip and its truth (kept when both exist); returns the paths and render seconds."""
    video_path, truth_path = clip_paths(out_dir, spec)
    if video_path.is_file() and truth_path.is_file():
        return video_path, truth_path, 0.0
    from mxr.mxr_addon.scan_render import ScanRenderer

    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    camera = clip_camera(driven, spec)
    truth = clip_truth(driven, spec, camera)
    scan = driven.scan
    with tempfile.TemporaryDirectory(prefix="mxr_scan_clip_") as workdir, \
            video_writer(video_path, "FFV1", spec.fps, (spec.width_px, spec.height_px)) as write, \
            ScanRenderer(scan.vertices, scan.triangles, scan.uv, scan.texture_path, camera) as renderer:
        frame_path = Path(workdir) / "frame.png"
        for frame in range(truth.frame_count):
            renderer.render(frame_vertices_m(driven, truth, frame), frame_path)
            write(cv2.imread(str(frame_path), cv2.IMREAD_COLOR))
    save_scan_truth(truth, truth_path)
    return video_path, truth_path, time.perf_counter() - started


def load_driven_scan() -> tuple[DrivenScan, int]:
    """The scan, its landmarks (cached correspondence) and its transferred basis; landmark hits."""
    scan = load_scan()
    embedding, hits = scan_correspondence(scan)
    return drive_scan(scan, embedding, load_open_head()), hits


# -- the engine on a clip -----------------------------------------------------------------------------
def baseline_errors(take_path: Path, truth: ScanTruth) -> dict[str, float]:
    """The engine's take against the truth, skin landmarks, mm (mean Euclidean per landmark).

    total: macro + micro + detail vs the truth's macro + micro, over valid frames;
    micro: the take's micro layer vs the truth's, over the event frames (``micro_truth``: the
    truth's own mean size there, the error of answering zero);
    micro_detrended: the take's total motion minus its straight line from onset to offset, vs the
    truth's micro, over the event frames: whether the micro motion is in the take at all."""
    from mxr.ops.take import load_take

    take = load_take(take_path)
    alignment = align_to_truth(take.neutral_mm, truth.neutral_mm)
    layers = [displacements_to_truth(np.asarray(layer, np.float64), alignment)[:, SKIN_LANDMARKS]
              for layer in (take.macro_mm, take.micro_mm, take.detail_mm)]
    estimate = layers[0] + layers[1] + layers[2]  # (T, 468, 3)
    truth_total = (truth.macro_mm + truth.micro_mm)[:, SKIN_LANDMARKS]
    truth_micro = truth.micro_mm[:, SKIN_LANDMARKS]
    valid = np.asarray(take.valid, bool)

    def error(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.nanmean(np.linalg.norm(a - b, axis=-1)))

    frames, detrended = [], []
    for event in truth.events:
        window = np.arange(event.onset_frame, min(event.offset_frame, truth.frame_count - 1) + 1)
        ends = estimate[[window[0], window[-1]]]  # (2, 468, 3)
        ramp = ((window - window[0]) / max(window[-1] - window[0], 1))[:, None, None]
        detrended.append(estimate[window] - (ends[0] + ramp * (ends[1] - ends[0])))
        frames.append(window)
    event_frames = np.concatenate(frames)
    return {
        "valid_frames": float(valid.mean()),
        "total_mm": error(estimate[valid], truth_total[valid]),
        "truth_total_mm": error(truth_total[valid], 0.0),
        "micro_mm": error(layers[1][event_frames], truth_micro[event_frames]),
        "micro_truth_mm": error(truth_micro[event_frames], 0.0),
        "micro_detrended_mm": error(np.concatenate(detrended), truth_micro[event_frames]),
    }


def check_clip(video_path: Path, truth_path: Path) -> dict[str, float]:
    """Run the engine's command line on a clip (take beside it, reused when present) and score it."""
    take_path = video_path.with_name(video_path.stem + ".take.npz")
    if not take_path.is_file():
        result = subprocess.run([sys.executable, "-m", "mxr.ops", "reconstruct", str(video_path), "--out", str(take_path)],
                                capture_output=True, text=True, cwd=REPO.parent)
        if result.returncode != 0:
            raise RuntimeError(f"the engine failed on {video_path}:\n{result.stderr[-2000:]}")
    return baseline_errors(take_path, load_scan_truth(truth_path))


@contextlib.contextmanager
def video_writer(video_path: Path, fourcc: str, fps: float, size: tuple[int, int]):
    """Yield a function that appends a BGR frame (H, W, 3) uint8; the video appears at
    ``video_path`` only when the block ends without an error (a temporary file, then a rename)."""
    partial = video_path.with_name(video_path.stem + ".partial" + video_path.suffix)
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {fourcc} video to {partial}")
    try:
        yield writer.write
        writer.release()
        partial.replace(video_path)
    except BaseException:
        writer.release()
        partial.unlink(missing_ok=True)
        raise


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez atomically (temp file + rename)."""
    temporary = path.with_name(path.stem + ".partial.npz")
    np.savez(temporary, **arrays)
    temporary.replace(path)


def _write_png(path: Path, canvas: np.ndarray) -> None:
    temporary = path.with_name(path.stem + ".partial.png")
    if not cv2.imwrite(str(temporary), canvas):
        raise OSError(f"could not write {temporary}")
    temporary.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CLIP_DIR)
    parser.add_argument("--fps", type=float, nargs="+", default=[30.0, 120.0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[4.0, 2.0], help="one per --fps (or one for all)")
    parser.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="run the engine on each clip and print its errors")
    args = parser.parse_args(argv)
    seconds = args.seconds * len(args.fps) if len(args.seconds) == 1 else args.seconds
    if len(seconds) != len(args.fps):
        parser.error("give one --seconds value, or one per --fps value")
    try:
        driven, hits = load_driven_scan()
    except FileNotFoundError as error:
        print(f"render_scan_clips: error: {error}", file=sys.stderr)
        return 1
    print(f"scan: {len(driven.scan.vertices)} vertices, landmark hits {hits}/{LANDMARK_COUNT}")
    for index, (fps, duration) in enumerate(zip(args.fps, seconds)):
        spec = ClipSpec(fps, duration, args.seed + index, *args.size)
        video_path, truth_path, spent = render_clip(driven, spec, args.out)
        truth = load_scan_truth(truth_path)
        events = ", ".join(f"{e.region} {e.onset_frame}-{e.apex_frame}-{e.offset_frame} {e.peak_mm:.2f} mm"
                           for e in truth.events)
        print(f"{video_path.name}: {truth.frame_count} frames, rendered in {spent:.1f} s; micro events: {events}")
        if args.check:
            scores = check_clip(video_path, truth_path)
            print("  baseline vs truth (skin landmarks, mean mm): " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
