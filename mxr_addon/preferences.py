"""Add-on preferences: which Python runs the engine process, which FLAME file to import."""
# No `from __future__ import annotations`: bpy reads property annotations as real objects.

import bpy

# The extension's top package: "mxr" in tests, "bl_ext.user_default.mxr" in Blender.
ROOT_PACKAGE = __package__.rpartition(".")[0]


class MXR_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ROOT_PACKAGE

    engine_python: bpy.props.StringProperty(
        name="Engine Python",
        description=(
            "Optional: another Python interpreter to run MXR's reconstruction engine (it needs mediapipe, "
            "opencv and onnxruntime, e.g. the .venv/bin/python of a checkout). Empty: Blender's own Python "
            "with the packages this extension carries"
        ),
        subtype="FILE_PATH",
        default="",
    )

    flame_path: bpy.props.StringProperty(
        name="FLAME Model",
        description=(
            "Your FLAME model file (generic_model.pkl, flame2023.pkl, ...; from flame.is.tue.mpg.de "
            "after registering). MXR never ships or downloads it. Import FLAME Rig starts here and "
            "remembers the last file it imported"
        ),
        subtype="FILE_PATH",
        default="",
    )

    def draw(self, context: bpy.types.Context) -> None:
        self.layout.prop(self, "engine_python")
        self.layout.prop(self, "flame_path")


def _preferences(context: bpy.types.Context) -> MXR_AddonPreferences | None:
    """MXR's preferences, or None when MXR is registered without an add-on entry (scripts, tests)."""
    addon = context.preferences.addons.get(ROOT_PACKAGE)
    return addon.preferences if addon and addon.preferences else None


def engine_python_setting(context: bpy.types.Context) -> str:
    """The configured interpreter ('' when unset, or when MXR is registered without preferences)."""
    preferences = _preferences(context)
    return bpy.path.abspath(preferences.engine_python) if preferences else ""


def flame_path_setting(context: bpy.types.Context) -> str:
    """The remembered FLAME file ('' when unset or without preferences)."""
    preferences = _preferences(context)
    return bpy.path.abspath(preferences.flame_path) if preferences else ""


def remember_flame_path(context: bpy.types.Context, path: str) -> None:
    """Store ``path`` as the FLAME file to start from next time (no-op without preferences)."""
    preferences = _preferences(context)
    if preferences is not None:
        preferences.flame_path = path
