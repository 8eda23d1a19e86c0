"""Add-on preferences: which Python runs the engine process."""
# No `from __future__ import annotations`: bpy reads property annotations as real objects.

import bpy

# The extension's top package: "mxr" in tests, "bl_ext.user_default.mxr" in Blender.
ROOT_PACKAGE = __package__.rpartition(".")[0]


class MXR_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ROOT_PACKAGE

    engine_python: bpy.props.StringProperty(
        name="Engine Python",
        description=(
            "Python interpreter that runs MXR's reconstruction engine (needs mediapipe, opencv, "
            "onnxruntime; e.g. the .venv/bin/python made by scripts/setup). Empty: the Python "
            "running Blender, if it can import mediapipe"
        ),
        subtype="FILE_PATH",
        default="",
    )

    def draw(self, context: bpy.types.Context) -> None:
        self.layout.prop(self, "engine_python")


def engine_python_setting(context: bpy.types.Context) -> str:
    """The configured interpreter ('' when unset, or when MXR is registered without preferences)."""
    addon = context.preferences.addons.get(ROOT_PACKAGE)
    return bpy.path.abspath(addon.preferences.engine_python) if addon and addon.preferences else ""
