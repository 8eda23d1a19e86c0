"""The steps operators and batch jobs share: import the built-in head, bake a take file.

Stateless functions over a scene, so the operators stay thin and ``batch.py`` runs the same
code headless. Each step loads and checks its input before creating anything, so bad input
leaves the scene untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy

from ..ops.take import load_take
from .bake import BakeResult, bake_take
from .camera import add_reference_video
from .heads import builtin_head, head_named
from .rig import build_rig, is_rig


def import_builtin_head(scene: bpy.types.Scene, collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    """A new rig of the built-in open head, linked into ``collection`` (default: the scene's)."""
    return build_rig(builtin_head(), collection or scene.collection)


@dataclass
class TakeBake:
    rig: bpy.types.Object
    result: BakeResult
    camera: bpy.types.Object | None


def bake_take_file(
    scene: bpy.types.Scene,
    take_path: Path,
    rig: bpy.types.Object | None = None,
    *,
    key_rotation: bool = True,
    reference_video: bool = True,
) -> TakeBake:
    """Load ``take_path`` (MxrError if missing or corrupt) and bake it onto ``rig``.

    Without a rig, the built-in head is imported first. The take is loaded before anything is
    created, so a bad file changes nothing.
    """
    take = load_take(Path(take_path))
    head = head_named(str(rig["mxr_head"])) if is_rig(rig) else builtin_head()
    if not is_rig(rig):
        rig = build_rig(head, scene.collection)
    result = bake_take(scene, rig, head, take, key_rotation=key_rotation)
    camera = None
    if reference_video:
        camera, warnings = add_reference_video(scene, rig, take)
        result.warnings += warnings
    return TakeBake(rig, result, camera)
