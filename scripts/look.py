"""Look at a take the way an animator will: the video frame beside the baked head, with the units
that are strongest there.

    .venv/bin/python scripts/look.py TAKE [--frames K ...] [--micro-scale S] [--out out/look.png]

Bakes the take onto MXR's open head in a fresh scene (at the take's own rate), renders the head
with Workbench at the named take frames (default: four spread over the frames with a face), and
writes one row per frame: the video with the tracked landmarks | the head, with the three largest
units and their values | the head over the video, as the MXR Reference camera shows it. For a closing note, a review, or a bug report: no table rescues a face
that does not look like the performer. ``--micro-scale`` tunes every micro-expression's intensity
as *Scale All* does (4: what an animator exaggerating them sees), and the micro keys on at a frame
are listed too.
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
MICRO_SHOWN = 0.05  # micro keys at least this far on are listed under the units
OVERLAY_HEIGHT_PX = 360  # the head over the video is rendered at the video's aspect, this tall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("take", type=Path, help="a take file (.npz) whose source video is where it says")
    parser.add_argument("--frames", type=int, nargs="+", help="take frames to show (default: four with a face)")
    parser.add_argument("--micro-scale", type=float, default=1.0,
                        help="every micro-expression's intensity times this, as Scale All (default 1: as captured)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "look.png", help="the PNG to write")
    arguments = parser.parse_args()
    try:
        take = load_take(arguments.take)
        frames = arguments.frames or pick_preview_frames(take.valid, count=4)
        outside = [k for k in frames if not 0 <= k < take.frame_count]
        if outside:
            raise MxrError(f"frames {outside} are outside the take's {take.frame_count} frames")
        look(arguments.take, take, frames, arguments.out, arguments.micro_scale)
    except MxrError as error:
        print(f"mxr: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {arguments.out}")
    return 0


def look(take_path: Path, take, frames: list[int], out: Path, micro_scale: float = 1.0) -> None:
    """Bake ``take`` in a fresh scene (its micro-expressions' intensity times ``micro_scale``);
    render the head over the video through the reference camera and from the front at ``frames``;
    write the sheet to ``out``."""
    import bpy

    import mxr
    from mxr.mxr_addon.batch import render_frames, set_up_preview_render
    from mxr.mxr_addon.camera import RENDER_CAMERA, frame_front, owned_camera
    from mxr.mxr_addon.landmark_render import configure_workbench
    from mxr.mxr_addon.pipeline import bake_take_file
    from mxr.mxr_addon.rig import expression_keys

    mxr.register()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    width, height = take.frame_size
    configure_workbench(scene, round(OVERLAY_HEIGHT_PX * width / height), OVERLAY_HEIGHT_PX, "SINGLE")
    baked = bake_take_file(scene, take_path, match_take=True)  # the reference camera follows the face in this frame
    bpy.context.view_layer.objects.active = baked.rig
    if micro_scale != 1.0 and len(baked.rig.mxr_micro_layers):
        bpy.ops.mxr.micro_scale_all(factor=micro_scale)
    scene_frames = [scene.frame_start + k for k in frames]
    with tempfile.TemporaryDirectory() as render_dir:
        scene.camera = baked.camera
        scene.render.film_transparent = True
        scene.render.image_settings.color_mode = "RGBA"
        overlays = render_frames(scene, scene_frames, Path(render_dir) / "over")

        camera = owned_camera(scene, RENDER_CAMERA)
        scene.frame_set(scene.frame_start)
        frame_front(camera, baked.rig, margin=1.15)
        set_up_preview_render(scene, camera)
        notes = {}
        blocks = baked.rig.data.shape_keys.key_blocks
        for k, frame in zip(frames, scene_frames):
            scene.frame_set(frame)
            values = sorted(((blocks[name].value, name) for name in expression_keys(baked.rig)), reverse=True)
            micro = [(blocks[name].value, name) for name in baked.result.micro_keys if blocks[name].value > MICRO_SHOWN]
            notes[k] = "\n".join(f"{name} {value:.2f}" for value, name in values[:UNITS_SHOWN] + micro)
        renders = render_frames(scene, scene_frames, Path(render_dir) / "front")
        compose_contact_sheet(take, dict(zip(frames, renders)), out, notes, dict(zip(frames, overlays)))


if __name__ == "__main__":
    sys.exit(main())
