"""Front-end figures on the real 640x360 clips: throughput, CPU, memory, flow accuracy.

    .venv/bin/python scripts/bench_frontend.py [--clips NAME ...] [--repeats 3] [--json out.json]

One process, one table; the load average is printed at the start and the end (the machine may be
shared: compare figures only at similar load, and look at the min..max spread).

Throughput (frames/s, median of --repeats runs, interleaved, with min..max):
  decode          in-process OpenCV decode, frames discarded
  mediapipe       FaceTracker.observe on frames already decoded into memory (MediaPipe only)
  decode+mp       the landmark-only baseline: decode -> FaceTracker in one loop (no crops, no flow)
  frontend        the full front-end (decode -> landmarks -> crops -> forward+backward flow), records discarded
  ratio           frontend / mediapipe (and frontend / decode+mp), per clip and for all clips as one
                  (total frames over total time at each clip's median rate)
  every core busy the frames/s the steady front-end's CPU ms/frame allows with every core busy all
                  the time, and that over mediapipe: the ceiling of the ratio on this machine
Each run includes its start-up (MediaPipe graph); ``frontend steady`` leaves out the time to the
first record. CPU ms/frame is the process's CPU time (all threads) over the same span, for
mediapipe (start-up included) and frontend steady; the front-end's is also split by thread
(/proc/self/task, read while the workers are alive): flow (the consuming thread), crops (crops and
records), landmarks (the Python side of MediaPipe), mediapipe (MediaPipe's graph threads), decode
(the decode thread) and ffmpeg (the other native threads: FFmpeg's frame threads).

Memory: peak resident set size (VmHWM) of a fresh process that streams the front-end over the
clip, and over the clip looped 10x (a temporary re-encoded file).

Flow accuracy: a real stabilised face crop of single_face.mp4 warped by known smooth fields
(Gaussian bumps peaking at 0.5 / 1 / 2 px + a 0.3 px global shift, three random fields each) with
cv2.remap; per profile, on the crop's face columns as the front-end computes it
(``flow.flow_columns``): the dense field's median endpoint error inside the face (worst field) and
its time per direction, and the median endpoint error at the 478 landmarks of the front-end's own
``FlowEstimator.pair`` (what the network reads) with the time of a whole pair (forward, backward,
sampling, consistency check). For the default profile, the same again with independent Gaussian
noise of ``NOISE_GREY_LEVELS`` added to each frame of a pair: real crops differ by more than the
motion (consecutive crops of the sample clips, aligned by the fine flow, still differ by 0.9-1.3
grey levels), and the noiseless figures flatter a method that fits its window closely.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from mxr.ops.crops import apply_affine, stabilising_transform, warp_to_crop
from mxr.ops.flow import (DEFAULT_FLOW_PROFILE, FLOW_PROFILES, FlowEstimator, flow_columns, make_dis, sample_bilinear,
                          smooth_motion_field, windowed_flow)
from mxr.ops.frontend import FrontEnd, FrontendSettings
from mxr.ops.landmarks import FaceTracker
from mxr.ops.progress import ProgressReporter
from mxr.ops.sample_data import sample_path
from mxr.ops.video import iter_frames, read_frames_at

DEFAULT_CLIPS = ("video/single_face.mp4", "video/WolfgangLanger_Pexels.mp4")
NOISE_GREY_LEVELS = 1.0  # std of the noise added to each frame for the default profile's noisy row
LOOPS = 10


def time_decode(path: Path) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in iter_frames(path))
    return count / (time.perf_counter() - started)


def time_mediapipe(frames_rgb: list[np.ndarray]) -> tuple[float, float]:
    """(frames/s, process CPU ms/frame, every thread) of FaceTracker.observe over frames in
    memory, start-up included."""
    started, cpu_started = time.perf_counter(), time.process_time()
    with FaceTracker() as tracker:
        for frame in frames_rgb:
            tracker.observe(frame)
    return len(frames_rgb) / (time.perf_counter() - started), (time.process_time() - cpu_started) / len(frames_rgb) * 1e3


def time_decode_and_mediapipe(path: Path) -> float:
    started = time.perf_counter()
    count = 0
    with FaceTracker() as tracker:
        for _, _, frame in iter_frames(path):
            tracker.observe(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            count += 1
    return count / (time.perf_counter() - started)


THREAD_GROUPS = ("flow", "crops", "landmarks", "mediapipe", "decode", "ffmpeg")
_PYTHON_THREAD_GROUPS = {"mxr-crops": "crops", "mxr-landmarks": "landmarks", "mxr-decode": "decode"}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu_s() -> dict[int, tuple[str, float]]:
    """Thread id -> (its THREAD_GROUPS group, CPU time s) for this process's live threads."""
    python_names = {thread.native_id: thread.name for thread in threading.enumerate()}
    threads: dict[int, tuple[str, float]] = {}
    for task in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{task}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        python_name = python_names.get(int(task))
        group = ("flow" if python_name == threading.main_thread().name else
                 _PYTHON_THREAD_GROUPS.get(python_name, "mediapipe" if name.startswith("mediapipe") else "ffmpeg"))
        threads[int(task)] = (group, (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS)  # utime + stime
    return threads


def time_frontend(path: Path) -> dict[str, object]:
    """Overall frames/s including start-up, steady frames/s and process CPU ms/frame after the
    first record, and CPU ms/frame by thread group.

    Threads are read every 20 records; each thread's rate is taken up to the last time it was
    seen alive (the decode thread ends up to ~3 queues of frames before the last record).
    """
    started = time.perf_counter()
    records = FrontEnd(path, FrontendSettings(), ProgressReporter(io.StringIO())).records()
    next(records)
    first, cpu_first, threads_first = time.perf_counter(), time.process_time(), thread_cpu_s()
    last_seen: dict[int, tuple[float, int]] = {}  # thread id -> (CPU s, records so far)
    count = 1
    for _ in records:
        count += 1
        if count % 20 == 0:  # ~0.01 ms a record: the consumer reads ~14 small files
            last_seen.update({tid: (cpu_s, count) for tid, (_, cpu_s) in thread_cpu_s().items()})
    end = time.perf_counter()
    per_thread = dict.fromkeys(THREAD_GROUPS, 0.0)
    for tid, (group, cpu_first_s) in threads_first.items():
        if tid in last_seen:
            cpu_s, seen_at = last_seen[tid]
            per_thread[group] += (cpu_s - cpu_first_s) / max(seen_at - 1, 1) * 1e3
    return {"overall": count / (end - started), "steady": (count - 1) / (end - first),
            "cpu": (time.process_time() - cpu_first) / (count - 1) * 1e3, "threads": per_thread}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1), "max": round(max(values), 1)}


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def throughput(path: Path, repeats: int) -> dict[str, object]:
    frames_rgb = [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) for _, _, frame in iter_frames(path)]
    runs: dict[str, list[float]] = {"decode": [], "mediapipe": [], "decode+mp": [], "frontend": [], "frontend steady": [],
                                    "mediapipe cpu": [], "frontend cpu": []}
    threads: dict[str, list[float]] = {group: [] for group in THREAD_GROUPS}
    for _ in range(repeats):  # interleaved, so a burst of load elsewhere hits every figure alike
        runs["decode"].append(time_decode(path))
        rate, cpu = time_mediapipe(frames_rgb)
        runs["mediapipe"].append(rate)
        runs["mediapipe cpu"].append(cpu)
        runs["decode+mp"].append(time_decode_and_mediapipe(path))
        frontend = time_frontend(path)
        runs["frontend"].append(frontend["overall"])
        runs["frontend steady"].append(frontend["steady"])
        runs["frontend cpu"].append(frontend["cpu"])
        for group, value in frontend["threads"].items():
            threads[group].append(value)
    result: dict[str, object] = {"frames": len(frames_rgb), **{name: spread(v) for name, v in runs.items()}}
    median = {name: statistics.median(v) for name, v in runs.items()}
    result["ratio frontend/mediapipe"] = round(median["frontend"] / median["mediapipe"], 3)
    result["ratio frontend/decode+mp"] = round(median["frontend"] / median["decode+mp"], 3)
    result["frontend cpu ms/frame by thread"] = {group: round(statistics.median(v), 2) for group, v in threads.items()}
    # What the steady front-end's CPU cost allows with every core busy all the time: the ceiling
    # of its throughput on this machine, and so of the ratio, whatever the threads' overlap.
    every_core_busy = usable_cores() * 1000.0 / median["frontend cpu"]
    result["every core busy"] = {"frames_per_s": round(every_core_busy, 1),
                                 "ratio frontend/mediapipe": round(every_core_busy / median["mediapipe"], 3)}
    return result


def peak_memory_mb(path: Path) -> dict[str, float]:
    """Peak resident memory (MB) of a fresh process streaming the front-end over ``path``: VmHWM,
    since ``ru_maxrss`` would also count what the forked child held before its exec."""
    frontend = (
        "import io, json, sys\n"
        "from mxr.ops.frontend import FrontEnd\n"
        "from mxr.ops.progress import ProgressReporter\n"
        "count = sum(1 for _ in FrontEnd(sys.argv[1], reporter=ProgressReporter(io.StringIO())).records())\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
        "print(json.dumps({'frames': count, 'peak_kb': int(status)}))\n"
    )
    run = subprocess.run([sys.executable, "-c", frontend, str(path)], capture_output=True, text=True, check=True)
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    return {"frames": figures["frames"], "peak_rss_mb": round(figures["peak_kb"] / 1024, 1)}


def write_looped(path: Path, loops: int, folder: Path) -> Path:
    """The clip ``loops`` times over, re-encoded (mp4v) into ``folder``."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    frames = [frame for _, _, frame in iter_frames(path)]
    looped = folder / f"looped_{loops}x.mp4"
    writer = cv2.VideoWriter(str(looped), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    for _ in range(loops):
        for frame in frames:
            writer.write(frame)
    writer.release()
    return looped


def memory(path: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        looped = write_looped(path, LOOPS, Path(folder))
        return {"clip": peak_memory_mb(path), f"looped {LOOPS}x": peak_memory_mb(looped)}


def flow_accuracy() -> dict[str, object]:
    frame = read_frames_at(sample_path("video/single_face.mp4"), [0])[0]
    with FaceTracker() as tracker:
        landmarks = tracker.track(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    transform = stabilising_transform(landmarks)
    crop = warp_to_crop(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), transform)  # (256, 256) uint8
    points = apply_affine(transform, landmarks[:, :2].astype(np.float64))
    face = np.zeros(crop.shape, np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(points[:468].astype(np.float32)).astype(np.int32), 1)
    face = cv2.erode(face, np.ones((9, 9), np.uint8)).astype(bool)
    yy, xx = np.mgrid[0:crop.shape[0], 0:crop.shape[1]].astype(np.float32)
    columns = flow_columns(crop.shape[1])  # as the front-end runs it
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    results: dict[str, object] = {}
    try:
        for profile in (p for p in FLOW_PROFILES if p != "consistency"):
            dis, estimator = make_dis(profile), FlowEstimator(profile)
            worst: dict[str, float] = {}
            worst_at_points: dict[str, float] = {}
            noisy: dict[str, list[float]] = {"dense": [], "at points": []}
            pairs = []
            for peak in (0.5, 1.0, 2.0):
                errors, errors_at_points = [], []
                noisy_errors, noisy_errors_at_points = [], []
                for seed in range(3):
                    field = smooth_motion_field(crop.shape, peak, seed)
                    # previous(x) = image(x + field(x)), current = image: the flow previous -> current is field.
                    truth_at_points = sample_bilinear(field, points)
                    previous = cv2.remap(crop, xx + field[..., 0] + 0.5, yy + field[..., 1] + 0.5, cv2.INTER_CUBIC,
                                         borderMode=cv2.BORDER_REFLECT)
                    current = cv2.remap(crop, xx + 0.5, yy + 0.5, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
                    pairs.append((previous, current))

                    def median_errors(previous: np.ndarray, current: np.ndarray) -> tuple[float, float]:
                        """The pair's median EPE px: dense inside the face, and at the landmarks."""
                        flow = windowed_flow(dis, previous, current, columns)
                        at_points = estimator.pair(previous, current, points).at_points
                        return (float(np.median(np.linalg.norm(flow - field, axis=2)[face])),
                                float(np.median(np.linalg.norm(at_points - truth_at_points, axis=1))))

                    dense, at_points = median_errors(previous, current)
                    errors.append(dense)
                    errors_at_points.append(at_points)
                    if profile == DEFAULT_FLOW_PROFILE:
                        noise = np.random.default_rng(seed).normal(0.0, NOISE_GREY_LEVELS, (2,) + crop.shape)
                        dense, at_points = median_errors(*(np.clip(image + n, 0, 255).astype(np.uint8)
                                                           for image, n in zip((previous, current), noise)))
                        noisy_errors.append(dense)
                        noisy_errors_at_points.append(at_points)
                worst[f"{peak:g}px"] = round(max(errors), 3)
                worst_at_points[f"{peak:g}px"] = round(max(errors_at_points), 3)
                if noisy_errors:
                    noisy["dense"].append(round(max(noisy_errors), 3))
                    noisy["at points"].append(round(max(noisy_errors_at_points), 3))
            repeats = 40 if profile != "fine" else 8
            started = time.perf_counter()
            for k in range(repeats):
                windowed_flow(dis, *pairs[k % len(pairs)], columns)
            direction_ms = (time.perf_counter() - started) / repeats * 1000
            started = time.perf_counter()
            for k in range(repeats):
                estimator.pair(*pairs[k % len(pairs)], points)
            results[profile] = {"median_epe_px_worst_of_3": worst, "ms_per_direction": round(direction_ms, 2),
                                "at_points_median_epe_px_worst_of_3": worst_at_points,
                                "ms_per_pair": round((time.perf_counter() - started) / repeats * 1000, 2)}
            if noisy["dense"]:
                results[profile]["with_noise"] = {"grey_levels": NOISE_GREY_LEVELS, **noisy}
    finally:
        cv2.setNumThreads(threads)
    results["default"] = DEFAULT_FLOW_PROFILE
    return results


def print_table(report: dict[str, object]) -> None:
    print(f"\nload average at start {report['load_start']}, at end {report['load_end']} ({report['cpu_count']} CPUs)")
    print(f"throughput: median (min..max) of {report['repeats']} interleaved runs, frames/s; CPU ms/frame of the process")
    rows = [("decode only", "decode", None), ("mediapipe only", "mediapipe", "mediapipe cpu"),
            ("decode + mediapipe", "decode+mp", None), ("full front-end", "frontend", None),
            ("full, steady", "frontend steady", "frontend cpu")]
    for clip, figures in report["throughput"].items():
        print(f"  {clip} ({figures['frames']} frames)")
        for label, name, cpu in rows:
            cell = f"{figures[name]['median']:6.0f} ({figures[name]['min']:.0f}..{figures[name]['max']:.0f})"
            cpu_cell = f"{figures[cpu]['median']:5.2f} ms CPU/frame" if cpu else ""
            print(f"    {label:20s}{cell:>22s}   {cpu_cell}")
        print(f"    {'full / mediapipe':20s}{figures['ratio frontend/mediapipe']:>8.2f}"
              f"      full / decode+mp {figures['ratio frontend/decode+mp']:.2f}")
        by_thread = "  ".join(f"{group} {ms:.2f}" for group, ms in figures["frontend cpu ms/frame by thread"].items())
        print(f"    front-end CPU ms/frame by thread: {by_thread}")
        ceiling = figures["every core busy"]
        print(f"    every core busy at that CPU cost: {ceiling['frames_per_s']:.0f} frames/s, full / mediapipe "
              f"{ceiling['ratio frontend/mediapipe']:.2f} (the ceiling on this machine)")
    pooled = report["pooled"]
    print(f"  all clips ({pooled['frames']} frames, time-weighted): mediapipe only {pooled['mediapipe']:.0f}, "
          f"decode + mediapipe {pooled['decode+mp']:.0f}, full front-end {pooled['frontend']:.0f} frames/s; "
          f"full / mediapipe {pooled['ratio frontend/mediapipe']:.2f}, full / decode+mp "
          f"{pooled['ratio frontend/decode+mp']:.2f}")
    print("\npeak memory (peak RSS, VmHWM, of a fresh process streaming the front-end)")
    for clip, figures in report["memory"].items():
        for name, values in figures.items():
            print(f"  {clip:32s} {name:10s} {values['frames']:6d} frames  {values['peak_rss_mb']:7.1f} MB")
    print("\nflow accuracy on known motion: median EPE, worst of 3 fields (px); dense: inside the face, ms per "
          "direction;\n  at points: the front-end's flow at the 478 landmarks, ms per pair (both directions and the check)")
    for profile, figures in report["flow"].items():
        if profile == "default":
            continue
        dense = " ".join(f"{peak}: {value:.3f}" for peak, value in figures["median_epe_px_worst_of_3"].items())
        at_points = " ".join(f"{value:.3f}" for value in figures["at_points_median_epe_px_worst_of_3"].values())
        marker = "  <- default" if profile == report["flow"]["default"] else ""
        print(f"  {profile:10s} dense {dense}  {figures['ms_per_direction']:5.2f} ms   at points {at_points}  "
              f"{figures['ms_per_pair']:5.2f} ms{marker}")
        if "with_noise" in figures:
            noisy = figures["with_noise"]
            print(f"  {'':10s} with {noisy['grey_levels']:g} grey level of noise in each frame: dense "
                  + " ".join(f"{value:.3f}" for value in noisy["dense"]) + "   at points "
                  + " ".join(f"{value:.3f}" for value in noisy["at points"]))


def pooled_throughput(per_clip: dict[str, dict]) -> dict[str, float]:
    """All clips as one: total frames over the total time at each clip's median rate (a short clip
    weighs what its frames weigh, not as much as a long one)."""
    frames = sum(figures["frames"] for figures in per_clip.values())
    rates = {name: frames / sum(figures["frames"] / figures[name]["median"] for figures in per_clip.values())
             for name in ("mediapipe", "decode+mp", "frontend")}
    return {"frames": frames, **{name: round(rate, 1) for name, rate in rates.items()},
            "ratio frontend/mediapipe": round(rates["frontend"] / rates["mediapipe"], 3),
            "ratio frontend/decode+mp": round(rates["frontend"] / rates["decode+mp"], 3)}


def load_average() -> str:
    """1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS), help="sample clips (relative names)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-clip", default="video/WolfgangLanger_Pexels.mp4")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    arguments = parser.parse_args()
    report: dict[str, object] = {"repeats": arguments.repeats, "cpu_count": usable_cores(),
                                 "load_start": load_average(), "throughput": {}, "memory": {}}
    for clip in arguments.clips:
        report["throughput"][clip] = throughput(sample_path(clip), arguments.repeats)
    report["pooled"] = pooled_throughput(report["throughput"])
    report["memory"][arguments.memory_clip] = memory(sample_path(arguments.memory_clip))
    report["flow"] = flow_accuracy()
    report["load_end"] = load_average()
    print_table(report)
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
