"""Bake a take onto a character's own ARKit shape keys, whatever their names.

Why: production characters usually carry the 52 ARKit blendshapes, and MXR's built-in head speaks
the same units, so the take is retargeted to the built-in head (``bake_plan.plan_head_bake``) and its
unit coefficients, times the gains, are keyed on the character's keys for them: those its unit map
names (``unit_mapping``: Character Creator's, Daz's, the user's own names), else the keys named as
the units (``models.arkit.match_units``: any common spelling). A key the map names that the mesh
lacks is skipped with a warning (presets name keys some characters keep on another mesh, the
tongue); a map none of whose keys is there is refused. The character is the user's: MXR keys only
the played keys' values, in an action of its own for each take on the mesh's Key (``takes``:
another take's action is never changed; a user action found there is moved to an NLA track of its
own, where it keeps playing under MXR's); it adds no shape keys, touches no other key, and leaves
the object's own animation (transform, custom properties) alone. A bake that cannot be done whole
(no keys to play, no face in the take, linked data, NLA tweak mode) is refused before anything
changes. Micro-expressions are in the unit curves with the rest; their per-event layers need MXR's
own heads, where each is a shape key.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..models.arkit import normalised_unit_name
from ..models.bake_plan import plan_head_bake
from ..models.head_model import HeadModel
from ..models.retarget import SMOOTHING_S
from ..models.unit_mapping import KeysOnCharacter, UnitMap, on_character
from ..ops.errors import MxrError
from ..ops.take import Take
from .bake import BakeResult, apply_scene_time, driven_paths_warning, scene_time
from .curves import action_curves, ensure_fcurve, write_keys
from .rig import OWNED
from .takes import TakeName, take_action
from .unit_mapping import shape_key_names, stored_unit_map

LISTED = 8  # names a warning lists before "..."


def has_arkit_keys(obj: bpy.types.Object, head: HeadModel) -> bool:
    """Whether ``obj`` has shape keys and a unit map naming keys, or a key named as one of
    ``head``'s units: cheap enough for a poll."""
    key = obj.data.shape_keys if obj.type == "MESH" else None
    if key is None:
        return False
    unit_map = stored_unit_map(obj)
    if unit_map is not None and not unit_map.automatic:
        return True
    units = {normalised_unit_name(unit) for unit in head.expression_names}
    return any(normalised_unit_name(block.name) in units for block in key.key_blocks if block != key.reference_key)


def keys_to_bake(obj: bpy.types.Object) -> KeysOnCharacter:
    """``obj``'s unit map (matching by name if none is set) on the keys it has. MxrError if it
    plays none of them."""
    unit_map = stored_unit_map(obj) or UnitMap()
    keys = on_character(unit_map, shape_key_names(obj))
    if keys.unit_map.targets:
        return keys
    if unit_map.automatic:
        raise MxrError(f"{obj.name} has no ARKit-named shape keys (eyeBlinkLeft, jawOpen, ... in any common "
                       "spelling): nothing to bake onto. Choose a unit map preset for its names (MXR panel)")
    raise MxrError(f"none of the shape keys {obj.name}'s unit map names is on it ({_listed(keys.missing_keys)}): "
                   "choose the preset of its rig, or set the keys in the unit map (MXR panel)")


def bake_arkit_take(scene: bpy.types.Scene, obj: bpy.types.Object, head: HeadModel, take: Take,
                    take_path: Path | None = None, *, match_take: bool = False, slowdown: float = 1.0,
                    smoothing_s: float = SMOOTHING_S) -> BakeResult:
    """Retarget ``take`` to ``head`` (MXR's built-in head) and key its unit coefficients, times the
    gains, on ``obj``'s shape keys for them (``keys_to_bake``), where ``scene_time`` puts the
    take's frames. ``take_path``: the file the take was read from, which names the take's action;
    ``smoothing_s``: how far neighbouring frames' units are solved together (``retarget.SMOOTHING_S``).
    MxrError, with nothing changed, if the bake cannot be done whole."""
    keys = keys_to_bake(obj)
    key = obj.data.shape_keys
    _refuse_what_cannot_be_baked(obj, key)
    plan = plan_head_bake(head, take, scene_time(scene, take, match_take=match_take, slowdown=slowdown),
                          key_rotation=False, key_detail=False, key_micro=False,  # the units, micro motion included
                          smoothing_s=smoothing_s)

    warnings = list(plan.warnings)
    _keep_playing_under(key, warnings)
    warnings += apply_scene_time(scene, plan)
    action = take_action(key, f"{obj.name} ARKit", TakeName.of(take, take_path), warnings)
    units = tuple(head.expression_names)
    values = keys.unit_map.key_values(np.stack([plan.shape_keys[unit] for unit in units], axis=1), units)
    paths = {key.key_blocks[name].path_from_id("value") for name in values}
    curves = action_curves(action, key)
    for stale in [curve for curve in (curves or []) if curve.data_path not in paths]:
        curves.remove(stale)  # a key an earlier bake played and this one does not (renamed, unmapped since)
    for name, value in values.items():
        write_keys(ensure_fcurve(action, key, key.key_blocks[name].path_from_id("value")), plan.keyed_frames, value,
                   "LINEAR")
    warnings += _what_is_not_played(obj, keys, units)
    warnings += driven_paths_warning(key, list(values))
    warnings += _beyond_slider_warning(key, values)
    return BakeResult(take.frame_count, int(plan.face_found.sum()), list(values), warnings,
                      first_frame=plan.timing.frame_start, last_frame=plan.last_frame, events=plan.events)


def _what_is_not_played(obj: bpy.types.Object, keys: KeysOnCharacter, units: tuple[str, ...]) -> list[str]:
    """Warnings: the units no key of ``obj`` plays, the map's keys ``obj`` lacks, the keys left out
    for naming a unit another key already has."""
    warnings = []
    unplayed = [unit for unit in units if unit not in keys.unit_map.targets]
    if unplayed:
        warnings.append(f"{len(unplayed)} of the {len(units)} ARKit units have no shape key on {obj.name}, "
                        f"so they are not keyed: {_listed(unplayed)}")
    if keys.missing_keys:
        warnings.append(f"shape keys the unit map names that {obj.name} lacks, skipped: {_listed(keys.missing_keys)}")
    if keys.duplicates:
        warnings.append(f"shape keys naming a unit another key already has, not keyed: {', '.join(keys.duplicates)}")
    return warnings


def _beyond_slider_warning(key: bpy.types.Key, values: dict[str, np.ndarray]) -> list[str]:
    """Blender plays a key's value clipped to its slider range: say which baked keys (a gain above
    1, most often) go past it."""
    beyond = []
    for name, value in values.items():
        block = key.key_blocks[name]
        if value.max() > block.slider_max:
            beyond.append(f"{name} reaches {value.max():.2f}")
        elif value.min() < block.slider_min:
            beyond.append(f"{name} reaches {value.min():.2f}")
    if not beyond:
        return []
    return [f"baked values beyond the shape key's range play clipped (widen its Range Min / Max to keep them): "
            f"{_listed(beyond)}"]


def _listed(names: list[str]) -> str:
    return ", ".join(names[:LISTED]) + (", ..." if len(names) > LISTED else "")


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
