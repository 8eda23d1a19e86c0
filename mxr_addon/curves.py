"""F-curves in MXR's actions, on Blender 4.2's legacy actions and 4.4+'s slotted ones alike."""
from __future__ import annotations

import bpy
import numpy as np

GROUP = "MXR"  # the channel group MXR's curves are created in
_INTERPOLATION = {
    name: item.value for name, item in bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items.items()
}


def ensure_fcurve(action: bpy.types.Action, datablock: bpy.types.ID, data_path: str, index: int = 0) -> bpy.types.FCurve:
    """The F-curve for ``data_path[index]`` in ``action`` (which is assigned to ``datablock``)."""
    if hasattr(action, "fcurve_ensure_for_datablock"):  # 4.4+: slotted actions (5.0 has no Action.fcurves)
        return action.fcurve_ensure_for_datablock(datablock, data_path, index=index, group_name=GROUP)
    curve = action.fcurves.find(data_path, index=index)  # 4.2 legacy actions
    return curve or action.fcurves.new(data_path, index=index, action_group=GROUP)


def action_curves(action: bpy.types.Action, datablock: bpy.types.ID) -> bpy.types.bpy_prop_collection | None:
    """The F-curves through which ``action`` (assigned to ``datablock``) animates it; None if it has none."""
    if hasattr(action, "slots"):  # 4.4+: the curves live in the datablock's slot's channel bag
        from bpy_extras.anim_utils import action_get_channelbag_for_slot

        bag = action_get_channelbag_for_slot(action, datablock.animation_data.action_slot)
        return None if bag is None else bag.fcurves
    return action.fcurves


def slot_curves(action: bpy.types.Action, slot: bpy.types.ActionSlot | None) -> list[bpy.types.FCurve]:
    """The F-curves ``action`` plays through ``slot`` (an NLA strip's or an AnimData's; 4.2's
    legacy actions have no slots: all their curves)."""
    if not hasattr(action, "slots"):
        return list(action.fcurves)
    from bpy_extras.anim_utils import action_get_channelbag_for_slot

    bag = None if slot is None else action_get_channelbag_for_slot(action, slot)
    return [] if bag is None else list(bag.fcurves)


def remove_fcurves(action: bpy.types.Action, datablock: bpy.types.ID, data_paths: list[str],
                   indices: tuple[int, ...] = (0,)) -> None:
    """Delete ``action``'s F-curves for ``data_paths`` x ``indices`` on ``datablock``, where present."""
    curves = action_curves(action, datablock)
    if curves is None:
        return
    for path in data_paths:
        for index in indices:
            curve = curves.find(path, index=index)
            if curve is not None:
                curves.remove(curve)


def write_keys(curve: bpy.types.FCurve, frames: np.ndarray, values: np.ndarray, interpolation: str) -> None:
    """Replace all keys of ``curve`` with (frames (n,), values (n,)) in bulk."""
    points = curve.keyframe_points
    points.clear()
    points.add(len(frames))
    coordinates = np.column_stack([frames, values]).astype(np.float32)  # (n, 2)
    points.foreach_set("co", coordinates.ravel())
    points.foreach_set("interpolation", np.full(len(frames), _INTERPOLATION[interpolation], dtype=np.int32))
    curve.update()


def assign_action(animation: bpy.types.AnimData, action: bpy.types.Action,
                  slot: bpy.types.ActionSlot | None = None) -> None:
    """Make ``action`` the one ``animation`` plays; on 4.4+ through ``slot``, else through the
    slot Blender picks, else its first (an MXR take's action has one, made for the datablock it
    animates; a flat action has one per datablock, so it names the slot)."""
    animation.action = action
    if slot is not None:
        animation.action_slot = slot
    elif hasattr(action, "slots") and animation.action_slot is None and len(action.slots):
        animation.action_slot = action.slots[0]
