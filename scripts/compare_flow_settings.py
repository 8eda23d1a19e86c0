"""DIS settings side by side: forward-flow time on real crops, error at the true skin points.

    .venv/bin/python scripts/compare_flow_settings.py [--settings "vr=0" "gd=4,sp=0" ...]

Why: the front-end's throughput is set by the forward flow (see ops/flow.py), and the question
"can a cheaper setting keep the accuracy?" needs both figures for every candidate, measured the
same way. Time: one forward flow of the face columns of WolfgangLanger's stabilised crops, one
thread, ms. Accuracy: the rendered scan clips (``scripts/render_scan_clips.py`` makes them in
.cache/scan_clips), whose truth says where each of the 478 landmark skin points really went:
the front-end's crops (its own transforms, from MediaPipe), the flow sampled at the true points,
against their true motion in crop px; median / 90th / 99th percentile over all points and pairs,
and median / 99th on the lips and on the eyelids, where micro-expressions live. The all-points
99th percentile is set by the face outline and the jaw (the rendered head's silhouette moving
over the background), so read the lips and eyelids for micro-expressions. The renders are
noiseless and their motion small (median 0.09-0.15 px a frame).

A setting is ``name=value`` pairs over the ``balanced`` profile: fs finest scale, ps patch size,
st patch stride, gd gradient-descent iterations, vr variational-refinement iterations, sp spatial
propagation (0/1), mn mean normalisation (0/1).
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import cv2
import numpy as np

from mxr.models.network.scan_truth import load_scan_truth
from mxr.ops.crops import apply_affine, warp_to_crop
from mxr.ops.errors import MxrError
from mxr.ops.flow import FLOW_PROFILES, flow_columns, make_dis, sample_bilinear, windowed_flow
from mxr.ops.frontend import FrontEnd, FrontendSettings
from mxr.ops.progress import ProgressReporter
from mxr.ops.sample_data import sample_path
from mxr.ops.video import iter_frames

REPO = Path(__file__).resolve().parents[1]
SCAN_CLIP_DIR = REPO / ".cache" / "scan_clips"
TIMING_CLIP = "video/WolfgangLanger_Pexels.mp4"
TIMING_PAIRS = 200
DEFAULT_SETTINGS = ("gd=16", "gd=4", "sp=0", "vr=1", "vr=0", "st=8")
# MediaPipe's lip contours (outer and inner) and eyelids (both eyes), landmark indices.
LIPS = np.array([61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
                 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415])
EYELIDS = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
                    263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466])
_SETTERS = {"fs": "FinestScale", "ps": "PatchSize", "st": "PatchStride", "gd": "GradientDescentIterations",
            "vr": "VariationalRefinementIterations", "sp": "UseSpatialPropagation", "mn": "UseMeanNormalization"}


def make_setting(setting: str) -> cv2.DISOpticalFlow:
    """The ``balanced`` profile with ``setting``'s changes ("" for none)."""
    dis = make_dis("balanced")
    for item in filter(None, setting.split(",")):
        name, value = item.split("=")
        if name not in _SETTERS:
            raise SystemExit(f"unknown DIS setting {name!r}; choose from {sorted(_SETTERS)}")
        setter = getattr(dis, f"set{_SETTERS[name]}")
        setter(bool(int(value)) if name in ("sp", "mn") else int(value))
    return dis


def front_end_crops(video: Path) -> list[tuple[int, np.ndarray | None, np.ndarray]]:
    """(frame index, (2, 3) source px -> crop px or None without a face, (S, S) uint8 grey crop)
    per frame, as the front-end makes them; for clips the front-end analyses at full size."""
    settings = FrontendSettings()
    front_end = FrontEnd(video, settings, ProgressReporter(io.StringIO()))
    if front_end.scale != 1.0:
        raise SystemExit(f"{video}: the front-end would analyse it downscaled ({front_end.scale:.3f}x); "
                         "this comparison takes clips up to 1280 px")
    records = {record.index: record for record in front_end.records()}
    crops = []
    for index, _, frame in iter_frames(video):
        record = records.get(index)
        if record is None or not record.valid:
            crops.append((index, None, np.zeros((settings.crop_size,) * 2, np.uint8)))
            continue
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        crops.append((index, record.crop_from_image, warp_to_crop(grey, record.crop_from_image, settings.crop_size)))
    return crops


def scan_pairs(truth_path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Consecutive face crops of a scan clip with the true points: (previous crop, current crop,
    (478, 2) true points in the previous crop px, (478, 2) their true motion, crop px)."""
    truth = load_scan_truth(truth_path)
    video = truth_path.with_name(truth_path.name.replace(".truth.npz", ".avi"))
    points_px = truth.landmarks_px()  # (T, 478, 2) source px
    crops = front_end_crops(video)
    pairs = []
    for (index_a, transform_a, crop_a), (index_b, transform_b, crop_b) in zip(crops[:-1], crops[1:]):
        if transform_a is None or transform_b is None:
            continue
        at_a, at_b = apply_affine(transform_a, points_px[index_a]), apply_affine(transform_b, points_px[index_b])
        pairs.append((crop_a, crop_b, at_a, at_b - at_a))
    return pairs


def point_errors(dis: cv2.DISOpticalFlow, pairs: list) -> np.ndarray:
    """(P, 478) px: |flow at the true point - true motion| for each pair, on the face columns."""
    columns = flow_columns(pairs[0][0].shape[1])
    errors = []
    for previous, current, points, motion in pairs:
        at_points = sample_bilinear(windowed_flow(dis, previous, current, columns), points)
        errors.append(np.linalg.norm(at_points - motion, axis=1))
    return np.array(errors)


def forward_ms(dis: cv2.DISOpticalFlow, windows: list[np.ndarray]) -> float:
    started = time.perf_counter()
    for previous, current in zip(windows[:-1], windows[1:]):
        dis.calc(previous, current, None)
    return (time.perf_counter() - started) / (len(windows) - 1) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="*", default=list(DEFAULT_SETTINGS),
                        help='changes to the balanced profile, e.g. "vr=0" "gd=8,sp=0"')
    arguments = parser.parse_args(argv)
    truths = sorted(SCAN_CLIP_DIR.glob("*.truth.npz"))
    if not truths:
        print(f"no scan clips in {SCAN_CLIP_DIR}: run scripts/render_scan_clips.py first")
        return 2
    cv2.setNumThreads(1)
    try:
        clips = {path.name.removesuffix(".truth.npz"): scan_pairs(path) for path in truths}
        timing = [crop for _, transform, crop in front_end_crops(sample_path(TIMING_CLIP)) if transform is not None]
    except MxrError as error:
        print(f"mxr: error: {error}")
        return 2
    empty = [name for name, pairs in clips.items() if not pairs]
    if empty:
        print(f"no pair of consecutive face frames in {', '.join(empty)}: left out")
        clips = {name: pairs for name, pairs in clips.items() if pairs}
    columns = flow_columns(timing[0].shape[1])
    windows = [np.ascontiguousarray(crop[:, columns]) for crop in timing[:TIMING_PAIRS + 1]]
    print(f"balanced = {FLOW_PROFILES['balanced']}; forward flow ms on {len(windows) - 1} pairs of {TIMING_CLIP}")
    print("error at the true skin points, px: all median / p90 / p99, lips median / p99, eyelids median / p99")
    for setting in ["", *arguments.settings]:
        dis = make_setting(setting)
        cells = []
        for name, pairs in clips.items():
            errors = point_errors(dis, pairs)
            lips, eyelids = errors[:, LIPS], errors[:, EYELIDS]
            cells.append(f"{name}: {np.nanmedian(errors):.3f} {np.nanpercentile(errors, 90):.3f} "
                         f"{np.nanpercentile(errors, 99):.3f}  lips {np.nanmedian(lips):.3f} "
                         f"{np.nanpercentile(lips, 99):.3f}  eyelids {np.nanmedian(eyelids):.3f} "
                         f"{np.nanpercentile(eyelids, 99):.3f}")
        print(f"{setting or 'balanced':<14} {forward_ms(dis, windows):5.2f} ms | " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
