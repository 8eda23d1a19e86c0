"""A character's unit map in Blender: kept on the object, edited in the MXR panel, saved as presets.

Why: ``models.unit_mapping.UnitMap`` is the data (which keys play each ARKit unit, the gains); this
is its home on a character. ``Object.mxr_unit_map`` holds a row per ARKit unit (its shape keys and
gain) and a row per face region (its gain), so the map is saved with the .blend, copied with the
object and undone like any property. While no row names a key, keys are matched by their names
("ARKit (automatic)", today's behaviour), the gains still applied. Presets are MXR's own
(``models/unit_maps``) and the user's: JSON files in ``user_presets_folder``.

Registered after the classes (``register_properties``).
"""
# No `from __future__ import annotations`: bpy reads property annotations as real objects.
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import bpy

from ..models.arkit import ARKIT_UNITS
from ..models.unit_mapping import (MAX_GAIN, REGIONS, UnitMap, UnitMapError, builtin_unit_maps, named_targets,
                                   read_unit_map, write_unit_map)
from .flame_rig import is_flame_rig
from .preferences import ROOT_PACKAGE
from .rig import is_rig

BUILTIN = "builtin:"  # preset identifiers: "builtin:<file stem>", "user:<file stem>"
USER = "user:"
AUTO_FILLED = "Auto-filled from names"
GAIN_DIGITS = 6  # a gain's decimals that single precision keeps


class MXR_UnitKey(bpy.types.PropertyGroup):
    """One shape key a unit plays (its ``name``)."""


class MXR_UnitRow(bpy.types.PropertyGroup):
    """One ARKit unit (its ``name``): the shape keys that play it, and its gain."""

    keys: bpy.props.CollectionProperty(type=MXR_UnitKey)
    gain: bpy.props.FloatProperty(
        name="Gain", default=1.0, min=-MAX_GAIN, max=MAX_GAIN, soft_min=0.0, soft_max=3.0, options=set(),
        description="How strongly this unit plays: 1.5 is 50 % more of it, 0 switches it off (negative: the "
                    "other way, for a key two units share)")


class MXR_RegionGain(bpy.types.PropertyGroup):
    """One face region (its ``name``) and the gain of all its units."""

    gain: bpy.props.FloatProperty(
        name="Gain", default=1.0, min=0.0, max=MAX_GAIN, soft_max=3.0, options=set(),
        description="How strongly the units of this face region play, times each unit's own gain")


class MXR_UnitMapSettings(bpy.types.PropertyGroup):
    """The character's unit map: a row per ARKit unit and per face region (none: never set)."""

    preset: bpy.props.StringProperty(name="Preset", description="The preset last loaded or saved here")
    units: bpy.props.CollectionProperty(type=MXR_UnitRow)
    unit_index: bpy.props.IntProperty(name="Unit", default=0, min=0)
    regions: bpy.props.CollectionProperty(type=MXR_RegionGain)


def unit_map_character(context: bpy.types.Context) -> bpy.types.Object | None:
    """The active object when it can have a unit map: a mesh that is not one of MXR's heads."""
    obj = context.active_object
    if obj is None or obj.type != "MESH" or is_rig(obj) or is_flame_rig(obj):
        return None
    return obj


def shape_key_names(obj: bpy.types.Object) -> list[str]:
    """``obj``'s shape keys, the Basis left out ([] without any)."""
    key = obj.data.shape_keys if obj.type == "MESH" else None
    if key is None:
        return []
    return [block.name for block in key.key_blocks if block != key.reference_key]


def stored_unit_map(obj: bpy.types.Object) -> UnitMap | None:
    """The unit map kept on ``obj`` (None if never set); UnitMapError if its rows were edited into
    one that cannot be used (a key named twice for a unit)."""
    settings = obj.mxr_unit_map
    if not settings.units:
        return None
    targets = {row.name: names for row in settings.units if (names := tuple(key.name for key in row.keys if key.name))}
    return UnitMap(targets, _gains(settings.units), _gains(settings.regions), name=settings.preset)


def _gains(rows: bpy.types.bpy_prop_collection) -> dict[str, float]:
    """The rows' gains other than 1, as typed: Blender keeps them in single precision (1.4 reads
    1.3999999761581)."""
    return {row.name: gain for row in rows if (gain := round(row.gain, GAIN_DIGITS)) != 1.0}


def store_unit_map(obj: bpy.types.Object, unit_map: UnitMap) -> None:
    """Keep ``unit_map`` on ``obj``: a row for every unit and region, in place of what was there."""
    settings = obj.mxr_unit_map
    settings.units.clear()
    for unit in ARKIT_UNITS:
        row = settings.units.add()
        row.name = unit
        row.gain = unit_map.unit_gains.get(unit, 1.0)
        for name in unit_map.targets.get(unit, ()):
            row.keys.add().name = name
    settings.regions.clear()
    for region in REGIONS:
        row = settings.regions.add()
        row.name = region
        row.gain = unit_map.region_gains.get(region, 1.0)
    settings.preset = unit_map.name


def user_presets_folder() -> Path:
    """Where the user's presets are saved: the extension's folder in Blender's user data when MXR
    runs as an installed extension (kept across its updates), else Blender's config folder."""
    if ROOT_PACKAGE.startswith("bl_ext."):
        return Path(bpy.utils.extension_path_user(ROOT_PACKAGE, path="unit_maps", create=True))
    return Path(bpy.utils.user_resource("CONFIG", path="mxr/unit_maps", create=True))


def preset_file_stem(name: str) -> str:
    """A preset's file name (no extension) for its ``name``: what a file system takes of it."""
    stem = re.sub(r"[^\w\- ]+", "_", name).strip(" _.")
    if not stem:
        raise UnitMapError(f"'{name}' cannot name a preset file: use letters or digits")
    return stem


def save_user_preset(unit_map: UnitMap, name: str) -> Path:
    """Write ``unit_map`` as the user's preset ``name`` (replacing one of that name); its path."""
    path = user_presets_folder() / f"{preset_file_stem(name)}.json"
    write_unit_map(replace(unit_map, name=name, source=""), path)
    return path


def load_preset(identifier: str) -> UnitMap:
    """The preset ``identifier`` names (``BUILTIN`` or ``USER`` and a file stem); UnitMapError if gone
    or broken."""
    if identifier.startswith(BUILTIN):
        presets = _builtin_presets()
        stem = identifier[len(BUILTIN):]
        if stem not in presets:
            raise UnitMapError(f"no built-in unit map '{stem}'")
        return presets[stem]
    path = user_presets_folder() / f"{identifier[len(USER):]}.json"
    return replace(read_unit_map(path), name=path.stem)


@lru_cache(maxsize=1)
def _builtin_presets() -> dict[str, UnitMap]:
    """MXR's presets, read once a session (the preset menu asks on every draw)."""
    return builtin_unit_maps()


_preset_items: list[tuple[str, str, str]] = []  # Blender keeps no reference to a dynamic enum's strings: this does


def _presets(self, context: bpy.types.Context) -> list[tuple[str, str, str]]:
    """The preset menu: MXR's presets (tooltip: where their names come from), then the user's."""
    users = sorted(user_presets_folder().glob("*.json"))
    _preset_items[:] = [(BUILTIN + stem, unit_map.name, unit_map.source)
                        for stem, unit_map in _builtin_presets().items()]
    _preset_items.extend((USER + path.stem, path.stem, f"Your preset ({path})") for path in users)
    return _preset_items


class _OnCharacter:
    """Mixin: an operator on the active character's unit map (a mesh that is not an MXR head)."""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if unit_map_character(context) is None:
            cls.poll_message_set("Select your character: a mesh that is not one of MXR's heads")
            return False
        return True


class MXR_OT_unit_map_preset(_OnCharacter, bpy.types.Operator):
    """Set the active character's unit map (shape key names and gains) from a preset"""

    bl_idname = "mxr.unit_map_preset"
    bl_label = "Load Unit Map Preset"
    bl_options = {"REGISTER", "UNDO"}

    preset: bpy.props.EnumProperty(name="Preset", items=_presets)

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = unit_map_character(context)
        try:
            unit_map = load_preset(self.preset)
        except UnitMapError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        store_unit_map(obj, unit_map)
        present = set(shape_key_names(obj))
        lacking = [name for name in unit_map.key_names() if name not in present]
        if lacking:
            self.report({"WARNING"}, f"{len(lacking)} of the preset's shape keys are not on {obj.name} (skipped "
                                     f"when baking): {', '.join(lacking[:8])}{', ...' if len(lacking) > 8 else ''}")
        return {"FINISHED"}


class MXR_OT_unit_map_auto_fill(_OnCharacter, bpy.types.Operator):
    """Fill the unit map with the active character's keys named as ARKit units (eyeBlinkLeft,
    EyeBlink_L, ...), to edit from there; gains are kept"""

    bl_idname = "mxr.unit_map_auto_fill"
    bl_label = "Auto-fill from Names"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = unit_map_character(context)
        targets, duplicates = named_targets(shape_key_names(obj))
        if not targets:
            self.report({"ERROR"}, f"{obj.name} has no shape keys named as ARKit units: choose a preset, or set "
                                   "each unit's keys by hand")
            return {"CANCELLED"}
        try:
            current = stored_unit_map(obj) or UnitMap()
        except UnitMapError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        store_unit_map(obj, UnitMap(targets, current.unit_gains, current.region_gains, name=AUTO_FILLED))
        if duplicates:
            self.report({"WARNING"}, "shape keys naming a unit another key already has, left out: "
                                     + ", ".join(duplicates))
        self.report({"INFO"}, f"{len(targets)} of the {len(ARKIT_UNITS)} ARKit units found on {obj.name}")
        return {"FINISHED"}


class MXR_OT_unit_map_save_preset(_OnCharacter, bpy.types.Operator):
    """Save the active character's unit map (names and gains) as a preset of yours, for other
    characters of the same rig"""

    bl_idname = "mxr.unit_map_save_preset"
    bl_label = "Save Unit Map Preset"
    bl_options = {"REGISTER", "UNDO"}

    name: bpy.props.StringProperty(name="Name", description="The preset's name (one of that name is replaced)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not super().poll(context):
            return False
        if not context.active_object.mxr_unit_map.units:
            cls.poll_message_set("Choose a preset or auto-fill first: there is no unit map to save")
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        self.name = self.name or context.active_object.name
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = unit_map_character(context)
        try:
            path = save_user_preset(stored_unit_map(obj), self.name)
        except (UnitMapError, OSError) as error:
            self.report({"ERROR"}, f"the preset was not saved: {error}")
            return {"CANCELLED"}
        obj.mxr_unit_map.preset = path.stem
        self.report({"INFO"}, f"unit map preset saved: {path}")
        return {"FINISHED"}


def active_unit_row(context: bpy.types.Context) -> MXR_UnitRow | None:
    """The unit row the panel has selected on the active character, if any."""
    obj = unit_map_character(context)
    if obj is None:
        return None
    settings = obj.mxr_unit_map
    return settings.units[settings.unit_index] if 0 <= settings.unit_index < len(settings.units) else None


class MXR_OT_unit_map_add_key(bpy.types.Operator):
    """Add a shape key to the selected unit (one unit can play several keys)"""

    bl_idname = "mxr.unit_map_add_key"
    bl_label = "Add Shape Key"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return active_unit_row(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        active_unit_row(context).keys.add()
        return {"FINISHED"}


class MXR_OT_unit_map_remove_key(bpy.types.Operator):
    """Stop the selected unit playing this shape key (the key itself is kept)"""

    bl_idname = "mxr.unit_map_remove_key"
    bl_label = "Remove Shape Key"
    bl_options = {"REGISTER", "UNDO"}

    index: bpy.props.IntProperty(name="Index", min=0, options={"HIDDEN"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return active_unit_row(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        row = active_unit_row(context)
        if self.index >= len(row.keys):
            return {"CANCELLED"}
        row.keys.remove(self.index)
        return {"FINISHED"}


class MXR_UL_unit_rows(bpy.types.UIList):
    """A row per ARKit unit: its keys (an error icon where the mesh lacks one) and its gain."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        blocks = data.id_data.data.shape_keys
        names = [key.name for key in item.keys if key.name]
        lacking = [name for name in names if blocks is None or blocks.key_blocks.get(name) is None]
        row = layout.row(align=True)
        row.label(text=item.name, icon="ERROR" if lacking else ("SHAPEKEY_DATA" if names else "BLANK1"))
        row.label(text=", ".join(names) or "-")
        row.prop(item, "gain", text="", emboss=False)


classes = (MXR_UnitKey, MXR_UnitRow, MXR_RegionGain, MXR_UnitMapSettings, MXR_UL_unit_rows, MXR_OT_unit_map_preset,
           MXR_OT_unit_map_auto_fill, MXR_OT_unit_map_save_preset, MXR_OT_unit_map_add_key, MXR_OT_unit_map_remove_key)


def register_properties() -> None:
    bpy.types.Object.mxr_unit_map = bpy.props.PointerProperty(type=MXR_UnitMapSettings)


def unregister_properties() -> None:
    del bpy.types.Object.mxr_unit_map
