"""The MXR tab in the 3D View sidebar (N panel)."""
import bpy

from .rig import find_rig


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
            if rig.get("mxr_source"):
                layout.label(text=bpy.path.basename(rig["mxr_source"]), icon="FILE_MOVIE")
        column = layout.column(align=True)
        column.operator("mxr.import_head", icon="ADD")
        column.operator("mxr.import_flame", icon="ARMATURE_DATA")
        column.operator("mxr.reconstruct_video", icon="FILE_MOVIE")
        column.operator("mxr.bake_take", icon="IMPORT")


classes = (VIEW3D_PT_mxr,)
