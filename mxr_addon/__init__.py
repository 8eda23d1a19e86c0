"""MXR's Blender side: the only package that imports bpy.

Modules, one concept each: ``preferences`` (engine interpreter, FLAME file), ``rig`` (HeadModel
-> mesh with shape keys), ``flame_rig`` (FLAME -> mesh, armature, correctives), ``bake``
(take -> F-curves), ``takes`` (an action per take, so no bake overwrites another; switching),
``arkit_bake`` (a take onto a character's own ARKit keys), ``unit_mapping`` (the character's
names for the units, gains, presets), ``flatten`` (the take shown,
as one plain action set that exports as one clip),
``camera`` (reference video, render camera),
``curves`` (F-curves on either action API), ``micro_layers`` (micro-expressions tuned live),
``marking`` (a micro-expression the animator saw becomes a layer),
``pipeline`` (the steps operators and batch share), ``engine_job`` (the engine process, no bpy),
``operators``, ``panels``, ``batch`` (headless .blend + preview renders).
"""
from __future__ import annotations

import bpy

from . import marking, micro_layers, operators, panels, preferences, unit_mapping

# Registration order matters: preferences first; the micro layers' and unit map's property groups
# before the Object properties that hold them; panels after the operators and lists they show.
_classes = (preferences.MXR_AddonPreferences, *micro_layers.classes, *unit_mapping.classes, *operators.classes,
            *marking.classes, *panels.classes)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)
    micro_layers.register_properties()
    unit_mapping.register_properties()


def unregister() -> None:
    unit_mapping.unregister_properties()
    micro_layers.unregister_properties()
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
