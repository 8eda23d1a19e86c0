"""Ground truth of a clip rendered from the scanned face (``scripts/render_scan_clips.py``).

Why a file of its own: the clip is plain video the engine reads like any footage; the truth beside
it says exactly how the 478 MediaPipe landmark skin points on the scan moved, so evaluation can
compare any reconstruction with it. An ``.npz`` readable with ``numpy.load(allow_pickle=False)``.

Frames: frame k of every per-frame array is the k-th frame of the clip.
Canonical frame: the scan's head axes (+X subject's left, +Y up, +Z out of the face), mm, origin at
the neutral landmarks' centroid (the take's convention). Displacements are the exact motion of the
landmark skin points of the rendered mesh: ``neutral_mm + macro_mm + micro_mm``.
World (scene) frame: the same axes, mm; a rendered point is ``head_rotation @ canonical +
head_translation_mm``. The camera sits on the world's +Z axis looking along -Z (``ScanCamera``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...ops.atomic import replacing
from ...ops.take import LANDMARK_COUNT, MicroEvent

SCAN_TRUTH_FORMAT = "mxr.scan_truth"
SCAN_TRUTH_VERSION = 1


@dataclass(frozen=True)
class ScanCamera:
    """A camera on the world's +Z axis at ``distance_m`` looking along -Z at (centre_m, 0).

    Perspective: pixel = image centre + focal_px * (x, -y) / (distance - z). Orthographic
    (``focal_px`` None): pixel = image centre + (x, -y) * width_px / view_width_m. Pixels are
    continuous, (0, 0) at the image's top-left corner, y down (MediaPipe's convention).
    """

    width_px: int
    height_px: int
    distance_m: float
    centre_m: tuple[float, float] = (0.0, 0.0)
    focal_px: float | None = None  # perspective when set
    view_width_m: float = 0.3  # orthographic only: the width the image spans

    def project(self, points_m: np.ndarray) -> np.ndarray:
        """World points (..., 3) metres -> (..., 2) pixels."""
        offset = points_m[..., :2] - np.asarray(self.centre_m)  # (..., 2) metres
        if self.focal_px is None:
            scale = self.width_px / self.view_width_m
        else:
            scale = self.focal_px / (self.distance_m - points_m[..., 2:3])  # (..., 1) px per metre
        centre = np.array([self.width_px / 2.0, self.height_px / 2.0])
        return centre + scale * offset * np.array([1.0, -1.0])

    def to_array(self) -> np.ndarray:
        """(8,) float64: width, height, distance, centre x, centre y, focal px (NaN when
        orthographic), view width (NaN when perspective), 1 if perspective else 0."""
        perspective = self.focal_px is not None
        return np.array([self.width_px, self.height_px, self.distance_m, *self.centre_m,
                         self.focal_px if perspective else np.nan,
                         np.nan if perspective else self.view_width_m, float(perspective)])

    @classmethod
    def from_array(cls, values: np.ndarray) -> "ScanCamera":
        perspective = bool(values[7])
        return cls(int(values[0]), int(values[1]), float(values[2]), (float(values[3]), float(values[4])),
                   float(values[5]) if perspective else None, cls.view_width_m if perspective else float(values[6]))


@dataclass
class ScanTruth:
    fps: float
    camera: ScanCamera
    neutral_mm: np.ndarray  # (478, 3) canonical frame, centroid at the origin
    macro_mm: np.ndarray  # (T, 478, 3) slow expression displacement of the skin points
    micro_mm: np.ndarray  # (T, 478, 3) micro-expression displacement of the skin points
    macro_coefficients: np.ndarray  # (T, K) open-head expression units that drove the macro layer
    micro_coefficients: np.ndarray  # (T, K)
    expression_names: list[str]  # (K,) the open head's unit names
    events: list[MicroEvent]  # frames onset / apex / offset, region, peak_mm = largest landmark motion at apex
    head_rotation: np.ndarray  # (T, 3, 3) canonical -> world
    head_translation_mm: np.ndarray  # (T, 3) world mm
    settings: dict = field(default_factory=dict)  # how the clip was made (seed, scan, durations)

    @property
    def frame_count(self) -> int:
        return int(self.macro_mm.shape[0])

    def landmarks_mm(self) -> np.ndarray:
        """(T, 478, 3) canonical positions of the skin points."""
        return self.neutral_mm + self.macro_mm + self.micro_mm

    def landmarks_world_mm(self) -> np.ndarray:
        """(T, 478, 3) where the rendered skin points were, world mm."""
        return self.landmarks_mm() @ self.head_rotation.transpose(0, 2, 1) + self.head_translation_mm[:, None, :]

    def landmarks_px(self) -> np.ndarray:
        """(T, 478, 2) image px of the skin points (continuous, origin at the top-left corner)."""
        return self.camera.project(self.landmarks_world_mm() / 1000.0)


def save_scan_truth(truth: ScanTruth, path: Path) -> None:
    """Write atomically (temp file in the same folder + rename)."""
    path = Path(path)
    events = truth.events
    arrays = {
        "format": np.array(SCAN_TRUTH_FORMAT), "version": np.array(SCAN_TRUTH_VERSION),
        "fps": np.array(truth.fps, np.float64), "camera": truth.camera.to_array(),
        "neutral_mm": truth.neutral_mm.astype(np.float64), "macro_mm": truth.macro_mm.astype(np.float32),
        "micro_mm": truth.micro_mm.astype(np.float32),
        "macro_coefficients": truth.macro_coefficients.astype(np.float32),
        "micro_coefficients": truth.micro_coefficients.astype(np.float32),
        "expression_names": np.array(truth.expression_names, dtype=str),
        "event_frames": np.array([[e.onset_frame, e.apex_frame, e.offset_frame] for e in events], np.int64).reshape(-1, 3),
        "event_region": np.array([e.region for e in events], dtype="<U16"),
        "event_peak_mm": np.array([e.peak_mm for e in events], np.float64),
        "head_rotation": truth.head_rotation.astype(np.float64),
        "head_translation_mm": truth.head_translation_mm.astype(np.float64),
        "settings_json": np.array(json.dumps(truth.settings)),
    }
    with replacing(path) as stream:
        np.savez_compressed(stream, **arrays)


def load_scan_truth(path: Path) -> ScanTruth:
    """Read a truth file; a clear error when it is not one (or of a newer version)."""
    with np.load(Path(path), allow_pickle=False) as data:
        if "format" not in data or str(data["format"]) != SCAN_TRUTH_FORMAT:
            raise ValueError(f"{path} is not an MXR scan-clip truth file")
        if int(data["version"]) > SCAN_TRUTH_VERSION:
            raise ValueError(f"{path} has truth version {int(data['version'])}; this MXR reads up to {SCAN_TRUTH_VERSION}")
        events = [MicroEvent(int(f[0]), int(f[1]), int(f[2]), str(region), float(peak), 1.0)
                  for f, region, peak in zip(data["event_frames"], data["event_region"], data["event_peak_mm"])]
        truth = ScanTruth(
            fps=float(data["fps"]), camera=ScanCamera.from_array(data["camera"]),
            neutral_mm=data["neutral_mm"], macro_mm=data["macro_mm"].astype(np.float64),
            micro_mm=data["micro_mm"].astype(np.float64),
            macro_coefficients=data["macro_coefficients"].astype(np.float64),
            micro_coefficients=data["micro_coefficients"].astype(np.float64),
            expression_names=[str(name) for name in data["expression_names"]], events=events,
            head_rotation=data["head_rotation"], head_translation_mm=data["head_translation_mm"],
            settings=json.loads(str(data["settings_json"])),
        )
    if truth.neutral_mm.shape != (LANDMARK_COUNT, 3):
        raise ValueError(f"{path}: neutral_mm has shape {truth.neutral_mm.shape}, expected ({LANDMARK_COUNT}, 3)")
    return truth
