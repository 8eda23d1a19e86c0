"""The whole engine's speed against MediaPipe alone on the same clip, measured in the same run
(issue 20's speed target: the engine at >= 0.5x MediaPipe alone), and where its time goes.

    .venv/bin/python scripts/bench_engine.py [--clips NAME ...] [--json out.json]

Per clip, one after another in one process:
  mediapipe        decode -> MediaPipe's FaceTracker, frames discarded (the landmark-only floor)
  engine           ``reconstruct`` with the network, the front-end's cache in a fresh folder (what a
                   user waits for the first time), and again with it cached (a re-run); numpy's
                   BLAS on one thread, as ``python -m mxr.ops`` runs it
  ratio            engine frames/s over mediapipe frames/s
  stages           the engine's seconds per progress stage: from the end of the stage before to the
                   stage's last report, so work no stage reports goes to the stage it prepares
                   (the focal length search to "pose", the references' decode to "skin")
The load average is printed at the start and the end: the machine may be shared.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the engine's command line runs it (ops/__main__.py)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_frontend import load_average, time_decode_and_mediapipe  # noqa: E402

from mxr.ops.progress import ProgressReporter  # noqa: E402
from mxr.ops.reconstruct import ReconstructSettings, reconstruct  # noqa: E402
from mxr.ops.sample_data import sample_path  # noqa: E402

DEFAULT_CLIPS = ("video/single_face.mp4", "video/WolfgangLanger_Pexels.mp4")


class StageClock(ProgressReporter):
    """A reporter that writes nowhere and keeps the time of each stage's last report."""

    def __init__(self) -> None:
        super().__init__(io.StringIO(), min_interval_s=0.0)
        self.started = time.perf_counter()
        self.last_report: dict[str, float] = {}  # stage -> seconds since the start, in first-seen order

    def progress(self, stage: str, frame: int, frames: int) -> None:
        self.last_report[stage] = time.perf_counter() - self.started

    def stage_seconds(self, total_s: float) -> dict[str, float]:
        """Seconds per stage (see the module docstring), and what follows the last report (writing the take)."""
        seconds, previous = {}, 0.0
        for stage, end in self.last_report.items():
            seconds[stage] = round(end - previous, 2)
            previous = end
        seconds["writing the take"] = round(total_s - previous, 2)
        return seconds


def time_engine(video: Path, cache_dir: Path) -> dict[str, object]:
    """One ``reconstruct`` of ``video`` with its front-end cache in ``cache_dir``: frames/s and stages."""
    clock = StageClock()
    with tempfile.TemporaryDirectory(prefix="mxr_bench_take_") as folder:
        started = time.perf_counter()
        summary = reconstruct(video, Path(folder) / "take.npz", ReconstructSettings(cache_dir=cache_dir), clock)
        total = time.perf_counter() - started
    return {"frames": summary.frames, "seconds": round(total, 2), "frames_per_second": round(summary.frames / total, 1),
            "provider": summary.provider, "stages_s": clock.stage_seconds(total)}


def bench_clip(video: Path) -> dict[str, object]:
    mediapipe = time_decode_and_mediapipe(video)
    with tempfile.TemporaryDirectory(prefix="mxr_bench_cache_") as cache:
        first = time_engine(video, Path(cache))
        cached = time_engine(video, Path(cache))
    return {"mediapipe_frames_per_second": round(mediapipe, 1), "engine": first, "engine_cached": cached,
            "ratio": round(first["frames_per_second"] / mediapipe, 3),
            "ratio_cached": round(cached["frames_per_second"] / mediapipe, 3)}


def print_report(report: dict[str, dict]) -> None:
    print("| clip | frames | MediaPipe alone (frames/s) | engine (frames/s) | ratio | engine, front-end cached | ratio |")
    print("|---|---|---|---|---|---|---|")
    for clip, row in report.items():
        print(f"| {clip} | {row['engine']['frames']} | {row['mediapipe_frames_per_second']} | "
              f"{row['engine']['frames_per_second']} | {row['ratio']:.2f}x | "
              f"{row['engine_cached']['frames_per_second']} | {row['ratio_cached']:.2f}x |")
    print()
    for clip, row in report.items():
        for name in ("engine", "engine_cached"):
            stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in row[name]["stages_s"].items())
            print(f"{clip}, {name.replace('_', ', ')} ({row[name]['seconds']} s, {row[name]['provider']}): {stages}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS),
                        help="sample data paths (under .cache/data) or video files")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    print(f"load average at the start: {load_average()} ({os.cpu_count()} cores)")
    report = {}
    for clip in args.clips:
        video = Path(clip) if Path(clip).is_file() else sample_path(clip)
        report[video.name] = bench_clip(video)
    print_report(report)
    print(f"load average at the end: {load_average()}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
