"""The MXR tab in the 3D View sidebar (N panel)."""
import bpy

from .flatten import shown_flat
from .micro_layers import active_layer, micro_curve, rig_with_layers
from .rig import find_rig
from .takes import has_takes, shown_take
from .unit_mapping import MXR_UnitRow, active_unit_row, unit_map_character


class VIEW3D_PT_mxr(bpy.types.Panel):
    bl_label = "MXR Face Capture"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MXR"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        rig = find_rig(context)
        if rig is None:
            layout.label(text="No MXR head in the scene", icon="INFO")
        else:
            layout.label(text=f"{rig.name} ({rig['mxr_head']})", icon="SHAPEKEY_DATA")
            if has_takes(rig):  # the take (or flat copy) it plays, and the takes baked onto it to switch to
                layout.operator_menu_enum("mxr.switch_take", "take", text=_playing(rig), icon="FILE_MOVIE")
        column = layout.column(align=True)
        column.operator("mxr.import_head", icon="ADD")
        column.operator("mxr.import_flame", icon="ARMATURE_DATA")
        column.operator("mxr.reconstruct_video", icon="FILE_MOVIE")
        column.operator("mxr.bake_take", icon="IMPORT")
        column.operator("mxr.bake_arkit", icon="SHAPEKEY_DATA")
        column.operator("mxr.flatten_take", icon="EXPORT")


def _playing(rig: bpy.types.Object) -> str:
    """What the take menu says ``rig`` plays: its flat action, a take, or none of them."""
    flat, shown = shown_flat(rig), shown_take(rig)
    return flat or (shown.label if shown is not None else "Takes")


class VIEW3D_PT_mxr_micro(bpy.types.Panel):
    """The rig's micro-expressions, one layer each, tuned live (see ``micro_layers``)."""

    bl_label = "Micro-expressions"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MXR"
    bl_parent_id = "VIEW3D_PT_mxr"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rig = find_rig(context)
        return rig is not None and (len(rig.mxr_micro_layers) > 0 or shown_take(rig) is not None)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        rig = find_rig(context)
        layout.operator("mxr.mark_micro_expression", icon="MARKER_HLT")
        if rig_with_layers(context) is None:
            return
        layout.template_list("MXR_UL_micro_layers", "", rig, "mxr_micro_layers", rig, "mxr_micro_index", rows=3)
        layout.operator("mxr.micro_scale_all", icon="FULLSCREEN_ENTER")
        layer = active_layer(context)
        if layer is None:
            return
        if shown_flat(rig) is not None:
            layout.label(text="The rig plays its flat copy: switch to the take to tune it", icon="INFO")
        elif micro_curve(rig, layer.key_name) is None:
            layout.label(text=f"'{layer.key_name}' or its curve is gone: re-bake to tune it", icon="ERROR")
        column = layout.column(align=True)
        column.prop(layer, "intensity")
        column.prop(layer, "shift_frames")
        column.prop(layer, "stretch")
        row = layout.row(align=True)
        row.operator("mxr.micro_go_to_apex", icon="KEYFRAME_HLT")
        row.operator("mxr.micro_preview_range", icon="PREVIEW_RANGE")
        row = layout.row(align=True)
        row.operator("mxr.micro_solo", icon="SOLO_ON", depress=rig.mxr_micro_solo == layer.key_name)
        row.operator("mxr.micro_reset", icon="LOOP_BACK")


class VIEW3D_PT_mxr_unit_map(bpy.types.Panel):
    """The active character's unit map: which of its shape keys play each ARKit unit, and the
    gains (see ``unit_mapping``); Bake onto ARKit Keys plays it."""

    bl_label = "Your Rig: Unit Map"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MXR"
    bl_parent_id = "VIEW3D_PT_mxr"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return unit_map_character(context) is not None

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        obj = unit_map_character(context)
        settings = obj.mxr_unit_map
        row = layout.row(align=True)
        row.operator_menu_enum("mxr.unit_map_preset", "preset", text=settings.preset or "Presets", icon="PRESET")
        row.operator("mxr.unit_map_save_preset", text="", icon="ADD")
        layout.operator("mxr.unit_map_auto_fill", icon="SORTALPHA")
        if obj.data.shape_keys is None:
            layout.label(text=f"{obj.name} has no shape keys", icon="ERROR")
            return
        if not settings.units:
            layout.label(text="Keys named as ARKit units are baked", icon="INFO")
            layout.label(text="A preset or Auto-fill sets names and gains")
            return
        if not any(unit.keys for unit in settings.units):
            layout.label(text="No key set: keys named as ARKit units are baked", icon="INFO")
        column = layout.column(align=True)
        for region in settings.regions:
            column.prop(region, "gain", text=region.name.title())
        layout.template_list("MXR_UL_unit_rows", "", settings, "units", settings, "unit_index", rows=5)
        _draw_unit_keys(layout, obj, active_unit_row(context))


def _draw_unit_keys(layout: bpy.types.UILayout, obj: bpy.types.Object, unit: MXR_UnitRow | None) -> None:
    """The selected unit's shape keys, each picked from the mesh's, and its gain."""
    if unit is None:
        return
    box = layout.box()
    box.prop(unit, "gain", text=f"{unit.name} Gain")
    for index, key in enumerate(unit.keys):
        row = box.row(align=True)
        row.prop_search(key, "name", obj.data.shape_keys, "key_blocks", text="")
        row.operator("mxr.unit_map_remove_key", text="", icon="X").index = index
    box.operator("mxr.unit_map_add_key", icon="ADD")


classes = (VIEW3D_PT_mxr, VIEW3D_PT_mxr_micro, VIEW3D_PT_mxr_unit_map)
