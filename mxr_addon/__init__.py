"""MXR's Blender side: the only package that imports bpy.

Modules, one concept each: ``preferences`` (engine interpreter, FLAME file), ``rig`` (HeadModel
-> mesh with shape keys), ``flame_rig`` (FLAME -> mesh, armature, correctives), ``bake``
(take -> F-curves), ``camera`` (reference video, render camera),
``pipeline`` (the steps operators and batch share), ``engine_job`` (the engine process, no bpy),
``operators``, ``panels``, ``batch`` (headless .blend + preview renders).
"""
from __future__ import annotations

import bpy

from . import operators, panels, preferences

# Registration order matters: preferences first, panels after the operators they show.
_classes = (preferences.MXR_AddonPreferences, *operators.classes, *panels.classes)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
