"""Headless entry for ./scripts/demo: a .blend with the baked take, and renders of the head.

Runs in bpy-as-a-module (or ``blender --background``): no operators, the pipeline services
directly, so a failure raises instead of becoming a report.
"""
from __future__ import annotations

import os
from pathlib import Path

import bpy

from .camera import RENDER_CAMERA, frame_front, owned_camera
from .landmark_render import configure_workbench
from .pipeline import bake_take_file
from .rig import OWNED

RENDER_SIZE_PX = (480, 600)  # portrait: a head is taller than wide
BACKGROUND = (0.05, 0.05, 0.06)


def build_demo_blend(take_path: Path, blend_path: Path, preview_dir: Path, preview_frames: list[int]) -> list[Path]:
    """Fresh file: built-in head + baked take + reference video; save it; render the head.

    ``preview_frames`` are take frame indices (frame k of the video); the PNGs come back in the
    same order. The .blend is written atomically (a temp file in the same folder, then renamed).
    """
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    baked = bake_take_file(scene, Path(take_path), match_take=True)  # a file made for the take: its rate
    for warning in baked.result.warnings:
        print(f"mxr: warning: {warning}")

    camera = owned_camera(scene, RENDER_CAMERA)
    scene.frame_set(scene.frame_start)
    frame_front(camera, baked.rig, margin=1.15)
    set_up_preview_render(scene, camera)
    save_blend_atomically(Path(blend_path))
    return render_frames(scene, [scene.frame_start + k for k in preview_frames], Path(preview_dir))


def set_up_preview_render(scene: bpy.types.Scene, camera: bpy.types.Object) -> None:
    """Workbench, studio light, plain background, rendered through ``camera``."""
    scene.camera = camera
    configure_workbench(scene, *RENDER_SIZE_PX, "SINGLE")
    scene.display.shading.show_cavity = True
    if scene.world is None:
        scene.world = bpy.data.worlds.new("MXR Preview")
        scene.world[OWNED] = True
    scene.world.color = BACKGROUND


def save_blend_atomically(path: Path) -> None:
    """Save a copy of the current file to ``path`` via a temp file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.partial.blend")
    try:
        bpy.ops.wm.save_as_mainfile(filepath=str(temporary), copy=True)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def render_frames(scene: bpy.types.Scene, frames: list[int], folder: Path) -> list[Path]:
    """One PNG per scene frame in ``folder`` (head_<frame>.png)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for frame in frames:
        scene.frame_set(frame)
        path = folder / f"head_{frame:05d}.png"
        scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
        paths.append(path)
    return paths
