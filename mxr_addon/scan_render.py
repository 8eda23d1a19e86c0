"""Render a textured, deforming mesh (the menpo3d face scan) frame by frame with Workbench.

Why a separate module from ``landmark_render``: that one shows grey clay, enough for a head that
has no texture; a scan's own skin texture gives MediaPipe (and optical flow) a real face to look
at. The scene is built once and only the vertex positions change per frame, so a clip costs one
Workbench render per frame and nothing else.

Cameras sit on the head's +Z axis looking back along -Z (HeadModel axes: +X subject's left, +Y
up, +Z out of the face), so what they see is exactly ``ScanCamera.project`` (``models.network.scan_truth``). Everything created
lives in a temporary scene removed by ``close`` (or leaving the ``with`` block), with its mesh,
objects, material, image and world, leaving a user's Blender session as it was.
"""
from __future__ import annotations

import math
from pathlib import Path

import bpy
import numpy as np

from ..models.network.scan_truth import ScanCamera
from .landmark_render import configure_workbench
from ..models.blender_frame import head_to_blender

BACKGROUND_GREY = (0.3, 0.3, 0.3)
SENSOR_WIDTH_MM = 36.0  # any value works: Blender's lens / sensor width sets the focal length in px


class ScanRenderer:
    """One temporary scene with the textured mesh, the camera and Workbench's studio light."""

    def __init__(self, rest_m: np.ndarray, triangles: np.ndarray, uv: np.ndarray, texture_path: Path,
                 camera: ScanCamera) -> None:
        """rest_m (V, 3) metres head axes; triangles (T, 3); uv (T, 3, 2) per corner."""
        self.camera = camera
        self.scene = bpy.data.scenes.new("MXR scan render")
        self._created: list = []  # (bpy.data collection, datablock), removed in reverse order
        try:
            self.mesh = self._keep(bpy.data.meshes, bpy.data.meshes.new("MXR scan"))
            self.mesh.from_pydata(head_to_blender(np.asarray(rest_m, np.float64)).tolist(), [],
                                  np.asarray(triangles).tolist())
            self.mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", np.asarray(uv, np.float32).ravel())
            self.mesh.materials.append(self._textured_material(Path(texture_path)))
            self.mesh.shade_smooth()  # the scan is a fine triangle mesh of a smooth surface
            self.mesh.update()
            head = self._keep(bpy.data.objects, bpy.data.objects.new("MXR scan", self.mesh))
            self.scene.collection.objects.link(head)
            self._add_camera()
            self._set_up_workbench()
        except BaseException:
            self.close()  # nothing half-built stays in the user's file
            raise

    def __enter__(self) -> "ScanRenderer":
        return self

    def __exit__(self, *_exception: object) -> None:
        self.close()

    def render(self, vertices_m: np.ndarray, path: Path) -> None:
        """Write the mesh at vertices_m (V, 3) metres, head axes, as an RGB PNG at ``path``."""
        self.mesh.vertices.foreach_set("co", head_to_blender(np.asarray(vertices_m, np.float64)).ravel())
        self.mesh.update()
        self.scene.render.filepath = str(Path(path).resolve())
        bpy.ops.render.render(write_still=True, scene=self.scene.name)

    def close(self) -> None:
        if self.scene is None:
            return
        bpy.data.scenes.remove(self.scene)
        for collection, block in reversed(self._created):
            collection.remove(block)
        self.scene, self._created = None, []

    def _keep(self, collection, block):
        self._created.append((collection, block))
        return block

    def _textured_material(self, texture_path: Path):
        """A material whose active node is the scan's colour image: Workbench's TEXTURE colour."""
        image = self._keep(bpy.data.images, bpy.data.images.load(str(texture_path.resolve())))
        material = self._keep(bpy.data.materials, bpy.data.materials.new("MXR scan skin"))
        if material.node_tree is None:  # Blender < 5.0 creates materials without nodes
            material.use_nodes = True
        nodes = material.node_tree.nodes
        texture = nodes.new("ShaderNodeTexImage")
        texture.image = image
        shader = nodes.get("Principled BSDF")
        if shader is not None:
            material.node_tree.links.new(texture.outputs["Color"], shader.inputs["Base Color"])
        nodes.active = texture
        return material

    def _add_camera(self) -> None:
        """Head (cx, cy, distance) -> Blender (cx, -distance, cy), looking along Blender +Y."""
        spec = self.camera
        data = self._keep(bpy.data.cameras, bpy.data.cameras.new("MXR scan camera"))
        data.sensor_fit = "HORIZONTAL"
        data.sensor_width = SENSOR_WIDTH_MM
        if spec.focal_px is None:
            data.type = "ORTHO"
            data.ortho_scale = spec.view_width_m
        else:
            data.type = "PERSP"
            data.lens = spec.focal_px * SENSOR_WIDTH_MM / spec.width_px
        data.clip_start = 0.01
        data.clip_end = 10.0
        camera = self._keep(bpy.data.objects, bpy.data.objects.new("MXR scan camera", data))
        camera.location = (spec.centre_m[0], -spec.distance_m, spec.centre_m[1])
        camera.rotation_euler = (math.pi / 2.0, 0.0, 0.0)
        self.scene.collection.objects.link(camera)
        self.scene.camera = camera

    def _set_up_workbench(self) -> None:
        """Workbench, studio light, the texture's colours, untouched colour management."""
        scene = self.scene
        configure_workbench(scene, self.camera.width_px, self.camera.height_px, "TEXTURE")
        world = self._keep(bpy.data.worlds, bpy.data.worlds.new("MXR scan world"))
        world.color = BACKGROUND_GREY
        scene.world = world
