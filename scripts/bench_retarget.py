"""How long the retargets take, and how much memory they need, for long takes.

    .venv/bin/python scripts/bench_retarget.py [--frames 1000 10000] [--expressions 100]

For each frame count, in one run so the figures compare: ``retarget_flame`` with the jaw and
eyes solved (joints 2, 3, 4, as the bake calls it) on a FLAME-sized synthetic model (the tests'
``random_flame_arrays``: 5023 vertices, 5 joints, ``--expressions`` components) and a take of
smooth random expressions, the jaw opening 0..0.3 rad and the eyes turning, MediaPipe-like
noise added; and ``solve_units`` on the open head for the same number of frames, as the
reference. Peak memory is numpy's, by tracemalloc, over the solve alone (the take is made
first). The issue's target (#17 item 4): 10,000 frames x 100 expressions in 2 s, memory flat
in clip length.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the FLAME fixtures: a FLAME-sized model without the user's file


def flame_motion(frames: int, expressions: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Expressions (T, E) smooth and random, larger for the leading components, and a pose
    (T, 5, 3): the jaw opening 0..0.3 rad with a little side motion, the eyes turning."""
    rng = np.random.default_rng(seed)
    times = np.arange(frames)
    knots = rng.normal(0.0, 1.0, (frames // 10 + 2, expressions)) * np.exp(-np.arange(expressions) / 25.0)
    expression = np.stack([np.interp(times / 10.0, np.arange(len(knots)), column) for column in knots.T], axis=1)
    pose = np.zeros((frames, 5, 3))
    pose[:, 2, 0] = 0.15 + 0.15 * np.sin(times / 7.0)
    pose[:, 2, 1:] = 0.03 * np.sin(times[:, None] / np.array([5.0, 9.0]))
    pose[:, 3, :2] = 0.2 * np.sin(times[:, None] / np.array([4.0, 6.0]))
    pose[:, 4] = pose[:, 3]
    return expression, pose


def timed(label: str, work):
    """Run ``work()``; print and return its result, seconds and numpy's peak memory over it."""
    tracemalloc.start()
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    print(f"  {label:<46} {seconds:8.2f} s   peak {peak_mb:8.1f} MB", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--expressions", type=int, default=100)
    arguments = parser.parse_args()

    from flame_fixtures import flame_take, random_flame_arrays, write_flame_pickle, write_synthetic_registration
    from mxr.models.flame import load_flame
    from mxr.models.flame_embedding import load_landmark_embedding
    from mxr.models.open_head import load_open_head
    from mxr.models.retarget import FlameLandmarks, retarget_flame, solve_units

    head = load_open_head()
    with tempfile.TemporaryDirectory() as folder:
        model = load_flame(write_flame_pickle(Path(folder) / "flame.pkl", random_flame_arrays()))
        landmarks = load_landmark_embedding(write_synthetic_registration(Path(folder) / "flame.npz", model),
                                            model.vertex_count)
    rig = FlameLandmarks.build(model, landmarks, np.zeros(0), arguments.expressions)
    print(f"FLAME-sized model: {model.vertex_count} vertices, {len(model.parents)} joints, "
          f"{arguments.expressions} expressions; open head: {len(head.expression_names)} units")
    for frames in arguments.frames:
        expression, pose = flame_motion(frames, arguments.expressions)
        take = flame_take(model, landmarks, np.zeros(0), expression, pose)
        deformation = take.deformation_mm() + np.random.default_rng(1).normal(0.0, 0.2, (frames, 478, 3))
        neutral = take.neutral_mm
        print(f"{frames} frames")
        solved = timed("retarget_flame (jaw and eyes)",
                       lambda: retarget_flame(rig, deformation, neutral, joints=(2, 3, 4)))
        print(f"  {'':<46} jaw error max {np.abs(solved.pose[:, 2] - pose[:, 2]).max():.4f} rad")
        units = np.abs(flame_motion(frames, len(head.expression_names), seed=1)[0])  # (T, K) non-negative
        head_deformation = np.tensordot(units, head.landmark_basis(), axes=1) * 1000.0  # (T, 478, 3) mm
        head_neutral = head.landmark_positions().astype(np.float64) * 1000.0
        timed("solve_units (open head)", lambda: solve_units(head, head_deformation, head_neutral))
    return 0


if __name__ == "__main__":
    sys.exit(main())
