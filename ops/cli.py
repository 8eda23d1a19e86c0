"""The engine's command line, shared by the Blender job runner and batch users.

    python -m mxr.ops reconstruct VIDEO --out TAKE [--start-frame N] [--end-frame N]
        [--neutral-frames FIRST-LAST | --neutral-seconds S] [--cache-dir DIR] [--debug-sheet PNG] [--baseline] [--no-skin-track]
        [--flow-fusion-s S] [--focal-px F]
    python -m mxr.ops timeline TAKE --png PNG
    python -m mxr.ops mark-event TAKE --frames FIRST-LAST [--region REGION] --out NEW_TAKE

stdout carries JSON lines (see progress.py); a person reads stderr. Exit codes: 0 done,
2 bad input (clear message), 130 cancelled (SIGINT/SIGTERM). A failed or cancelled run leaves
no take behind and never touches an existing one.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Callable

from .atomic import same_file
from .errors import MxrError
from .flow_fusion import DRIFT_S
from .frontend import FrontendSettings
from .progress import ProgressReporter
from .reconstruct import ReconstructSettings, reconstruct
from .stretch_flow import source_stretch_reader
from .take import load_take, save_take
from ..models.marked_events import mark_event
from ..models.network.features import EVENT_REGIONS
from .take_timeline import write_take_timeline

EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mxr.ops", description="MXR engine")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("reconstruct", help="video -> take file")
    run.add_argument("video", type=Path)
    run.add_argument("--out", type=Path, required=True, help="take file to write (.npz)")
    neutral = run.add_mutually_exclusive_group()
    neutral.add_argument("--neutral-frames", type=_frame_range, default=None, metavar="FIRST-LAST",
                         help="take frames showing the performer's neutral face, used as they are (default: found "
                              "in the take, and the expression those frames still hold taken out)")
    neutral.add_argument("--neutral-seconds", type=float, default=None,
                         help="the neutral face is the first S seconds with a face (default: found in the take)")
    run.add_argument("--start-frame", type=int, default=0, help="first source frame to analyse")
    run.add_argument("--end-frame", type=int, default=None, help="one past the last source frame to analyse")
    run.add_argument("--cache-dir", type=Path, default=None,
                     help="front-end cache (default: $MXR_CACHE_DIR or ~/.cache/mxr/frontend)")
    run.add_argument("--baseline", action="store_true",
                     help="landmark-only baseline: skip the micro-expression network")
    run.add_argument("--skin-track", action=argparse.BooleanOptionalAction, default=True,
                     help="where the face moves little, read it from points glued to the skin by optical flow "
                          "instead of MediaPipe's, which slide (default; --no-skin-track: MediaPipe's alone, "
                          "about three times faster after the front-end)")
    run.add_argument("--flow-fusion-s", type=float, default=DRIFT_S, metavar="S",
                     help="read the face from MediaPipe's landmarks moved by the optical flow from frame to frame, "
                          f"pulled back to MediaPipe's over S seconds (default {DRIFT_S:g}; 0: MediaPipe's alone)")
    run.add_argument("--focal-px", type=float, default=None, metavar="F",
                     help="the camera's focal length in the video's pixels, when it is known (focal mm x frame "
                          "width px / sensor width mm); default: the best of four candidates, which a clip "
                          "shows little of")
    run.add_argument("--debug-sheet", type=Path, default=None,
                     help="also write a contact sheet of what the front-end saw (PNG)")
    timeline = commands.add_parser("timeline", help="take file -> picture of it over time (face found, "
                                                    "macro and micro motion, micro events)")
    timeline.add_argument("take", type=Path)
    timeline.add_argument("--png", type=Path, required=True, help="picture to write")
    mark = commands.add_parser("mark-event", help="take file -> a new take with one more micro-expression, over "
                                                  "frames you saw it in (its own micro layer, to tune in Blender)")
    mark.add_argument("take", type=Path)
    mark.add_argument("--frames", type=_frame_range, required=True, metavar="FIRST-LAST",
                      help="take frames just before its rise and just after its fall (0.1-0.6 s apart)")
    mark.add_argument("--region", choices=EVENT_REGIONS, default=None,
                      help="the face region it moves (default: the one that moves most in those frames)")
    mark.add_argument("--out", type=Path, required=True, help="take file to write (.npz; not the take read)")
    return parser


def _frame_range(text: str) -> tuple[int, int]:
    """"120-130" or "120" -> (first, last) take frames."""
    parts = text.split("-")
    try:
        first, last = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        first = last = None
    if first is None or last is None or first < 0 or last < first:
        raise argparse.ArgumentTypeError(f"'{text}' is not a frame range like 120-130")
    return first, last


def refuse_overwriting_take(take_path: Path, output_path: Path) -> None:
    """Refuse an output that would replace the take it is made from (the same name, or a link to it)."""
    if same_file(take_path, output_path):
        raise MxrError(f"refusing to write {output_path}: it is the take file")


def _writing(out_path: Path, work: Callable[[], str]) -> int:
    """Run ``work``, which writes ``out_path`` and says what it wrote: exit 0, or 2 with a message
    for bad input or a write that fails (never a traceback)."""
    try:
        message = work()
    except MxrError as error:
        print(f"mxr: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(f"mxr: error: cannot write {out_path}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(message, file=sys.stderr)
    return 0


def _timeline(take_path: Path, png_path: Path) -> int:
    if png_path.suffix.lower() != ".png":
        print(f"mxr: error: {png_path}: the picture is written as PNG; give it a .png name", file=sys.stderr)
        return EXIT_BAD_INPUT

    def draw() -> str:
        refuse_overwriting_take(take_path, png_path)
        write_take_timeline(load_take(take_path), png_path)
        return f"wrote {png_path}"

    return _writing(png_path, draw)


def _mark_event(take_path: Path, frames: tuple[int, int], region: str | None, out_path: Path) -> int:
    def mark() -> str:
        refuse_overwriting_take(take_path, out_path)
        take = load_take(take_path)
        reread, why_not = source_stretch_reader(take)
        take = mark_event(take, *frames, region, reread)
        save_take(take, out_path)
        event = next(event for event in take.events if (event.onset_frame, event.offset_frame) == frames)
        return (f"wrote {out_path}: a {event.region} micro-expression over frames {frames[0]}-{frames[1]}, apex at "
                f"{event.apex_frame}, {event.peak_mm:.2f} mm ({len(take.events)} events in the take)"
                + (f"; {why_not}" if why_not else ", read again by flow from the video"))

    return _writing(out_path, mark)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.command == "timeline":
        return _timeline(arguments.take, arguments.png)
    if arguments.command == "mark-event":
        return _mark_event(arguments.take, arguments.frames, arguments.region, arguments.out)
    reporter = ProgressReporter()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        summary = reconstruct(
            arguments.video,
            arguments.out,
            ReconstructSettings(
                frontend=FrontendSettings(start_frame=arguments.start_frame, end_frame=arguments.end_frame),
                neutral_frames=arguments.neutral_frames,
                neutral_seconds=arguments.neutral_seconds,
                cache_dir=arguments.cache_dir,
                debug_sheet=arguments.debug_sheet,
                use_network=not arguments.baseline,
                skin_track=arguments.skin_track,
                flow_fusion_s=arguments.flow_fusion_s,
                focal_px=arguments.focal_px,
            ),
            reporter,
        )
    except MxrError as error:
        reporter.emit("error", message=str(error))
        print(f"mxr: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # the disk filled up or the output went away while writing
        reporter.emit("error", message=f"cannot write the take: {error}")
        print(f"mxr: error: cannot write the take: {error}", file=sys.stderr)
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
        frontend_cached=summary.frontend_cached,
        model_version=summary.model_version,
        provider=summary.provider,
        micro_events=summary.micro_events,
        neutral_frames=list(summary.neutral_frames),
        neutral_method=summary.neutral_method,
        neutral_held=summary.neutral_held,
        neutral_hand=summary.neutral_hand,
    )
    return 0
