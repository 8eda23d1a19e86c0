"""The engine's command line, shared by the Blender job runner and batch users.

    python -m mxr.ops reconstruct VIDEO --out TAKE [--neutral-seconds S] [--max-frames N]

stdout carries JSON lines (see progress.py); a person reads stderr. Exit codes: 0 done,
2 bad input (clear message), 130 cancelled (SIGINT/SIGTERM). A failed or cancelled run leaves
no take behind and never touches an existing one.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .errors import MxrError
from .progress import ProgressReporter
from .reconstruct import ReconstructSettings, reconstruct

EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mxr.ops", description="MXR engine")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("reconstruct", help="video -> take file")
    run.add_argument("video", type=Path)
    run.add_argument("--out", type=Path, required=True, help="take file to write (.npz)")
    run.add_argument("--neutral-seconds", type=float, default=ReconstructSettings.neutral_seconds,
                     help="span at the first face frame that shows the performer's neutral face")
    run.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    return parser


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    reporter = ProgressReporter()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        summary = reconstruct(
            arguments.video,
            arguments.out,
            ReconstructSettings(neutral_seconds=arguments.neutral_seconds, max_frames=arguments.max_frames),
            reporter,
        )
    except MxrError as error:
        reporter.emit("error", message=str(error))
        print(f"mxr: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        reporter.emit("error", message="cancelled")
        print("mxr: cancelled; no take was written", file=sys.stderr)
        return EXIT_CANCELLED
    reporter.emit(
        "done",
        take=str(summary.take_path),
        frames=summary.frames,
        faces_found=summary.faces_found,
        seconds=round(summary.seconds, 3),
        frames_per_second=round(summary.frames_per_second, 1),
    )
    return 0
