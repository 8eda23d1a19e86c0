"""The engine's peak memory against clip length (issue #19 item 11: flat in length, <= 600 MB).

    .venv/bin/python scripts/bench_memory.py [--clip video/cap13_edit2.mp4] [--seconds 20] [--times 10]
                                             [--budget-mb 600] [--json out.json]

Two clips are made from a real one (its first ``--seconds``, and that stretch looped ``--times``
times; both re-encoded the same way, mp4v), and each is reconstructed by a fresh process running the
engine's command line (``python -m mxr.ops reconstruct``, network on, a fresh front-end cache: decode,
MediaPipe, flow, neutral, pose, fusion, network, events, the take written). Each process reports its
own peak resident set size (VmHWM) as it exits; ``ru_maxrss`` would also count what the forked
child held before its exec. A third process measures the fixed cost: the imports, the network's
onnxruntime sessions, MediaPipe's graph run on one frame, the mesh graph; what any run holds before
its frames count.

Printed: each run's frames, wall time and peak, the growth per frame between the two runs (KB a
frame), the length at which that growth would reach the budget, and PASS / FAIL: both runs within
``--budget-mb``. The machine may be shared: the wall times are noisy, the peaks much less. The
growth is taken between the two peaks, which need not fall in the same stage (a short clip peaks
in the network's windows, a long one while its events are decoded).

Measured (2026-12-04, 2-core machine, defaults), the per-frame arrays of the face's points on disk
(ops/spill.py): fixed 214 MB; 1x 500 frames 360 MB, 10x 5,000 frames 364 MB, PASS; 0.9 KB a frame.
With the flow fusion (ops/flow_fusion.py, its (T, 478, 3) result in memory): fixed 223 MB; 1x 371 MB,
30x 15,000 frames 466 MB, PASS; 6.7 KB a frame, 600 MB at ~35,500 frames. With the skin tracker (ops/skin_track.py,
its arrays on disk): fixed 217 MB; 1x 363 MB, 10x 376 MB, PASS; 3.0 KB a frame. Before the take's arrays
went to disk: 1x 369 MB, 10x 494-578 MB (29-48 KB a frame); before the engine streamed its stages:
639 and 1,313 MB (153 KB a frame).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from mxr.ops.sample_data import sample_path
from mxr.ops.video import iter_frames

BUDGET_MB = 600.0
_PEAK_MARK = "mxr-bench-peak-kb"
# Runs the engine's command line, then writes its peak RSS (kB) to stderr as it exits.
_ENGINE = (
    "import atexit, runpy, sys\n"
    f"atexit.register(lambda: print('{_PEAK_MARK}', open('/proc/self/status').read().split('VmHWM:')[1].split()[0],"
    " file=sys.stderr))\n"
    "sys.argv = ['mxr.ops'] + sys.argv[1:]\n"
    "runpy.run_module('mxr.ops', run_name='__main__')\n"
)
# What every run holds before its first frame.
_FIXED = (
    "import sys, cv2\n"
    "from mxr.ops.reconstruct import reconstruct\n"
    "from mxr.ops.landmarks import FaceTracker\n"
    "from mxr.models.network.features import mesh_graph\n"
    "from mxr.models.network.runner import NetworkRunner\n"
    "runner = NetworkRunner()\n"
    "mesh_graph()\n"
    "capture = cv2.VideoCapture(sys.argv[1])\n"
    "frame = cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB)\n"
    "with FaceTracker() as tracker:\n"
    "    tracker.observe(frame)\n"
    f"print('{_PEAK_MARK}', open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)\n"
)


def write_clip(source: Path, seconds: float, times: int, path: Path) -> int:
    """The first ``seconds`` of ``source``, ``times`` over, re-encoded (mp4v) to ``path``: its frame count."""
    fps = cv2.VideoCapture(str(source)).get(cv2.CAP_PROP_FPS)
    frames = [frame for _, _, frame in iter_frames(source, max_frames=int(round(seconds * fps)))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    for _ in range(times):
        for frame in frames:
            writer.write(frame)
    writer.release()
    return len(frames) * times


def peak_mb(command: list[str]) -> tuple[float, float]:
    """Run ``command`` (a Python process printing ``_PEAK_MARK`` and its VmHWM in kB to stderr):
    (its peak RSS in MB, its wall time in s)."""
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - started
    marks = [line.split()[1] for line in run.stderr.splitlines() if line.startswith(_PEAK_MARK)]
    if run.returncode != 0 or not marks:
        raise RuntimeError(f"{' '.join(command[:4])} failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return int(marks[-1]) / 1024.0, seconds


def engine_peak(video: Path, folder: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall time (s) of the engine reconstructing ``video`` with a fresh cache."""
    cache = folder / f"cache-{video.stem}"
    return peak_mb([sys.executable, "-c", _ENGINE, "reconstruct", str(video), "--out",
                    str(folder / f"{video.stem}.take.npz"), "--cache-dir", str(cache)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="video/cap13_edit2.mp4", help="sample clip (under the sample data) or a path")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the short clip, s of the source")
    parser.add_argument("--times", type=int, default=10, help="the long clip is the short one looped this often")
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    source = Path(args.clip) if Path(args.clip).is_file() else sample_path(args.clip)

    with tempfile.TemporaryDirectory(prefix="mxr-bench-memory-") as name:
        folder = Path(name)
        fixed_mb, _ = peak_mb([sys.executable, "-c", _FIXED, str(source)])
        runs = []
        for times in (1, args.times):
            clip = folder / f"clip_{times}x.mp4"
            frames = write_clip(source, args.seconds, times, clip)
            peak, seconds = engine_peak(clip, folder)
            runs.append({"times": times, "frames": frames, "seconds": round(seconds, 1), "peak_mb": round(peak, 1)})
            print(f"{times:3d}x {frames:6d} frames  {seconds:6.1f} s  peak {peak:6.1f} MB", flush=True)

    short, long = runs
    per_frame_kb = (long["peak_mb"] - short["peak_mb"]) * 1024.0 / (long["frames"] - short["frames"])
    fps = cv2.VideoCapture(str(source)).get(cv2.CAP_PROP_FPS)
    frames_at_budget = (short["frames"] + (args.budget_mb - short["peak_mb"]) * 1024.0 / per_frame_kb
                        if per_frame_kb > 0 else float("inf"))
    passed = all(run["peak_mb"] <= args.budget_mb for run in runs)
    print(f"fixed cost (imports, network sessions, MediaPipe on one frame): {fixed_mb:.1f} MB")
    print(f"growth {per_frame_kb:.1f} KB a frame: {args.budget_mb:.0f} MB at ~{frames_at_budget:.0f} frames "
          f"(~{frames_at_budget / fps / 60:.1f} min at {fps:g} fps)")
    print(f"{'PASS' if passed else 'FAIL'}: peak {max(run['peak_mb'] for run in runs):.1f} MB at {args.times}x "
          f"against {args.budget_mb:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"clip": str(source), "fixed_mb": round(fixed_mb, 1), "runs": runs,
                                         "per_frame_kb": round(per_frame_kb, 2), "frames_at_budget": frames_at_budget,
                                         "budget_mb": args.budget_mb, "passed": passed}, indent=1))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
