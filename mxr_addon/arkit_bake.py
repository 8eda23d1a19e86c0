"""Bake a take onto a character's own ARKit-named shape keys.

Why: production characters usually carry the 52 ARKit blendshapes, and MXR's built-in head speaks
the same units, so the take is retargeted to the built-in head (``bake_plan.plan_head_bake``) and its
unit coefficients are keyed on the character's keys of the same names (``models.arkit.match_units``:
any common spelling). The character is the user's: MXR keys only the matched keys' values, in an
action of its own for each take on the mesh's Key (``takes``: another take's action is never
changed; a user action found there is moved to an NLA track of its own, where it keeps playing
under MXR's); it adds no shape keys, touches no other key, and leaves the
object's own animation (transform, custom properties) alone. A bake that cannot be done whole (no
ARKit keys, no face in the take, linked data, NLA tweak mode) is refused before anything changes.
Micro-expressions are in the unit curves with the rest; their per-event layers need MXR's own heads,
where each is a shape key.
"""
from __future__ import annotations

from pathlib import Path

import bpy

from ..models.arkit import match_units, normalised_unit_name
from ..models.head_model import HeadModel
from ..models.bake_plan import plan_head_bake
from ..ops.errors import MxrError
from ..ops.take import Take
from .bake import BakeResult, apply_scene_time, driven_paths_warning, scene_time
from .curves import action_curves, ensure_fcurve, write_keys
from .rig import OWNED
from .takes import TakeName, take_action

LISTED_MISSING = 8  # unit names a warning lists before "..."


def arkit_key_names(obj: bpy.types.Object, head: HeadModel) -> tuple[dict[str, str], list[str]]:
    """``head``'s unit name -> the name of ``obj``'s shape key for it (only those it has), and the
    keys that named an already matched unit (``models.arkit.match_units``)."""
    key = obj.data.shape_keys if obj.type == "MESH" else None
    if key is None:
        return {}, []
    names = [block.name for block in key.key_blocks if block != key.reference_key]
    return match_units(names, tuple(head.expression_names))


def has_arkit_keys(obj: bpy.types.Object, head: HeadModel) -> bool:
    """Whether ``obj`` has a shape key for any of ``head``'s units: cheap enough for a poll."""
    key = obj.data.shape_keys if obj.type == "MESH" else None
    units = {normalised_unit_name(unit) for unit in head.expression_names}
    return key is not None and any(normalised_unit_name(block.name) in units for block in key.key_blocks
                                   if block != key.reference_key)


def bake_arkit_take(scene: bpy.types.Scene, obj: bpy.types.Object, head: HeadModel, take: Take,
                    take_path: Path | None = None, *, match_take: bool = False, slowdown: float = 1.0) -> BakeResult:
    """Retarget ``take`` to ``head`` (MXR's built-in head) and key its unit coefficients on
    ``obj``'s shape keys of the same names, where ``scene_time`` puts the take's frames.
    ``take_path``: the file the take was read from, which names the take's action.
    MxrError, with nothing changed, if the bake cannot be done whole."""
    matches, duplicates = arkit_key_names(obj, head)
    if not matches:
        raise MxrError(f"{obj.name} has no ARKit-named shape keys (eyeBlinkLeft, jawOpen, ... in any common "
                       "spelling): nothing to bake onto")
    key = obj.data.shape_keys
    _refuse_what_cannot_be_baked(obj, key)
    plan = plan_head_bake(head, take, scene_time(scene, take, match_take=match_take, slowdown=slowdown),
                          key_rotation=False, key_detail=False, key_micro=False)  # the units, micro motion included

    warnings = list(plan.warnings)
    _keep_playing_under(key, warnings)
    warnings += apply_scene_time(scene, plan)
    action = take_action(key, f"{obj.name} ARKit", TakeName.of(take, take_path), warnings)
    paths = {key.key_blocks[name].path_from_id("value") for name in matches.values()}
    curves = action_curves(action, key)
    for stale in [curve for curve in (curves or []) if curve.data_path not in paths]:
        curves.remove(stale)  # a key an earlier bake matched and this one does not (renamed since)
    for unit, block_name in matches.items():
        curve = ensure_fcurve(action, key, key.key_blocks[block_name].path_from_id("value"))
        write_keys(curve, plan.keyed_frames, plan.shape_keys[unit], "LINEAR")
    units = list(head.expression_names)
    missing = [unit for unit in units if unit not in matches]
    if missing:
        listed = ", ".join(missing[:LISTED_MISSING]) + (", ..." if len(missing) > LISTED_MISSING else "")
        warnings.append(f"{len(missing)} of the {len(units)} ARKit units have no shape key on {obj.name}, "
                        f"so they are not keyed: {listed}")
    if duplicates:
        warnings.append(f"shape keys naming a unit another key already has, not keyed: {', '.join(duplicates)}")
    warnings += driven_paths_warning(key, list(matches.values()))
    return BakeResult(take.frame_count, int(plan.face_found.sum()), list(matches.values()), warnings,
                      first_frame=plan.timing.frame_start, last_frame=plan.last_frame, events=plan.events)


def _refuse_what_cannot_be_baked(obj: bpy.types.Object, key: bpy.types.Key) -> None:
    """MxrError for a character whose shape-key animation cannot be changed now."""
    if key.library is not None or obj.data.library is not None:
        raise MxrError(f"{obj.name}'s shape keys are linked from another file: bake in that file, or make them local")
    animation = key.animation_data
    if animation is not None and animation.use_tweak_mode:
        raise MxrError(f"{obj.name}'s shape keys are in NLA tweak mode: leave it (Tab in the NLA editor) and bake "
                       "again")


def _keep_playing_under(key: bpy.types.Key, warnings: list[str]) -> None:
    """Put a user's action on ``key`` on an NLA track of its own, so that it keeps playing under
    MXR's (which overrides only the ARKit keys it bakes)."""
    animation = key.animation_data
    if animation is None or animation.action is None or animation.action.get(OWNED):
        return
    action = animation.action
    track = animation.nla_tracks.new()
    track.name = f"{action.name} (under MXR)"
    track.strips.new(action.name, int(action.frame_range[0]), action)
    animation.action = None
    warnings.append(f"your action '{action.name}' now plays from the NLA track '{track.name}' under MXR's bake, "
                    "which overrides only the ARKit keys it bakes")
