"""Bake a take onto a character's own ARKit-named shape keys.

Why: production characters usually carry the 52 ARKit blendshapes, and MXR's built-in head
speaks the same units, so the take is retargeted to the built-in head (``retarget_expressions``)
and its unit coefficients are keyed on the character's keys of the same names
(``models.arkit.match_units``: any common spelling). The character is the user's: MXR keys only
the matched keys' values, in an action of its own on the mesh's Key (a user action found there is
kept with a fake user and reported, as for MXR's rigs); it adds no shape keys, touches no other
key, and leaves the object's own animation (transform, custom properties) alone. Micro-expressions
are in the unit curves with the rest; their per-event layers need MXR's own heads, where each
is a shape key.
"""
from __future__ import annotations

import bpy
import numpy as np

from ..models.arkit import match_units
from ..models.head_model import HeadModel
from ..models.retarget import retarget_expressions
from ..ops.errors import MxrError
from ..ops.take import Take
from .bake import BakeResult, driven_paths_warning, owned_action, set_scene_timing
from .curves import ensure_fcurve, write_keys

LISTED_MISSING = 8  # unit names a warning lists before "..."


def arkit_key_names(obj: bpy.types.Object, head: HeadModel) -> dict[str, str]:
    """``head``'s unit name -> the name of ``obj``'s shape key for it (only those it has)."""
    key = obj.data.shape_keys if obj.type == "MESH" else None
    if key is None:
        return {}
    names = [block.name for block in key.key_blocks if block != key.reference_key]
    return match_units(names, tuple(head.expression_names))


def bake_arkit_take(scene: bpy.types.Scene, obj: bpy.types.Object, head: HeadModel, take: Take) -> BakeResult:
    """Retarget ``take`` to ``head`` (MXR's built-in head) and key its unit coefficients on
    ``obj``'s shape keys of the same names, take frame k at scene frame ``frame_start + k``.
    MxrError, with nothing changed, if ``obj`` has no such keys."""
    matches = arkit_key_names(obj, head)
    if not matches:
        raise MxrError(f"{obj.name} has no ARKit-named shape keys (eyeBlinkLeft, jawOpen, ... in any common "
                       "spelling): nothing to bake onto")
    coefficients = retarget_expressions(head, take.deformation_mm(), take.neutral_mm)  # (T, 52) units
    valid = np.all(np.isfinite(coefficients), axis=1)  # (T,)
    frames = scene.frame_start + np.arange(take.frame_count, dtype=np.float64)  # (T,) scene frames
    set_scene_timing(scene, take.fps, take.frame_count)
    warnings: list[str] = []
    key = obj.data.shape_keys
    action = owned_action(key, f"{obj.name} ARKit", warnings)
    units = list(head.expression_names)
    for unit, block_name in matches.items():
        curve = ensure_fcurve(action, key, key.key_blocks[block_name].path_from_id("value"))
        write_keys(curve, frames[valid], coefficients[valid, units.index(unit)], "LINEAR")
    missing = [unit for unit in units if unit not in matches]
    if missing:
        listed = ", ".join(missing[:LISTED_MISSING]) + (", ..." if len(missing) > LISTED_MISSING else "")
        warnings.append(f"{len(missing)} of the {len(units)} ARKit units have no shape key on {obj.name}, "
                        f"so they are not keyed: {listed}")
    if not valid.all():
        warnings.append(f"no face in {int((~valid).sum())} of {take.frame_count} frames: no keys there "
                        "(the curves interpolate across)")
    warnings += driven_paths_warning(key, list(matches.values()))
    return BakeResult(take.frame_count, int(valid.sum()), list(matches.values()), warnings)
