"""Look at a take the way an animator will: the video frame beside the baked head, with the units
that are strongest there.

    .venv/bin/python scripts/look.py TAKE [--frames K ...] [--out out/look.png]

Bakes the take onto MXR's open head in a fresh scene (at the take's own rate), renders the head
with Workbench at the named take frames (default: four spread over the frames with a face), and
writes one row per frame: the video with the tracked landmarks | the head, with the three largest
units and their values. For a closing note, a review, or a bug report: no table rescues a face
that does not look like the performer.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from mxr.ops.errors import MxrError
from mxr.ops.preview import compose_contact_sheet, pick_preview_frames
from mxr.ops.take import load_take

REPO = Path(__file__).resolve().parents[1]
UNITS_SHOWN = 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("take", type=Path, help="a take file (.npz) whose source video is where it says")
    parser.add_argument("--frames", type=int, nargs="+", help="take frames to show (default: four with a face)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "look.png", help="the PNG to write")
    arguments = parser.parse_args()
    try:
        take = load_take(arguments.take)
        frames = arguments.frames or pick_preview_frames(take.valid, count=4)
        outside = [k for k in frames if not 0 <= k < take.frame_count]
        if outside:
            raise MxrError(f"frames {outside} are outside the take's {take.frame_count} frames")
        import bpy

        import mxr
        from mxr.mxr_addon.batch import render_frames, set_up_preview_render
        from mxr.mxr_addon.camera import RENDER_CAMERA, frame_front, owned_camera
        from mxr.mxr_addon.pipeline import bake_take_file
        from mxr.mxr_addon.rig import expression_keys

        mxr.register()
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        baked = bake_take_file(scene, arguments.take, match_take=True, reference_video=False)
        camera = owned_camera(scene, RENDER_CAMERA)
        scene.frame_set(scene.frame_start)
        frame_front(camera, baked.rig, margin=1.15)
        set_up_preview_render(scene, camera)
        notes = {}
        blocks = baked.rig.data.shape_keys.key_blocks
        for k in frames:
            scene.frame_set(scene.frame_start + k)
            values = sorted(((blocks[name].value, name) for name in expression_keys(baked.rig)), reverse=True)
            notes[k] = "\n".join(f"{name} {value:.2f}" for value, name in values[:UNITS_SHOWN])
        with tempfile.TemporaryDirectory() as render_dir:
            renders = render_frames(scene, [scene.frame_start + k for k in frames], Path(render_dir))
            compose_contact_sheet(take, dict(zip(frames, renders)), arguments.out, notes)
    except MxrError as error:
        print(f"mxr: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
