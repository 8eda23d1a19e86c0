"""Render a head frontally with an orthographic Workbench camera, for landmark detection.

The open head's landmark correspondence is found by showing the neutral head to MediaPipe: this
module makes the picture and returns the exact world -> pixel map of its camera, so the landmarks
found in the picture can be cast back onto the mesh (``models.correspondence``).

Everything happens in a temporary scene that is removed afterwards, with the objects, mesh,
camera and world it created, so calling this inside a user's Blender session leaves their scene,
selection and data as they were.
"""
from __future__ import annotations

import math
from pathlib import Path

import bpy
import numpy as np

from ..models.correspondence import OrthographicProjection
from ..models.blender_frame import head_to_blender

# Grey on a lighter grey: a plain clay look MediaPipe's face detector accepts.
SURFACE_GREY = (0.8, 0.8, 0.8)
BACKGROUND_GREY = (0.25, 0.25, 0.25)
# The camera sits this far (metres) in front of the head's front-most point; ortho ignores it.
CAMERA_STANDOFF_M = 1.0


def render_head_front(
    vertices_m: np.ndarray,
    faces: np.ndarray,
    size_px: int,
    path: Path,
    centre_m: tuple[float, float] | None = None,
    view_width_m: float | None = None,
) -> OrthographicProjection:
    """Render the head seen from +Z into a square PNG at ``path``; return the camera's map.

    vertices_m (V, 3) metres in HeadModel axes; faces (F, 3|4). ``centre_m`` (x, y) is the image
    centre and ``view_width_m`` the width the image spans (both default to framing the mesh).
    """
    vertices_m = np.asarray(vertices_m, dtype=np.float64)
    low, high = vertices_m.min(axis=0), vertices_m.max(axis=0)
    if centre_m is None:
        centre_m = (float(low[0] + high[0]) / 2.0, float(low[1] + high[1]) / 2.0)
    if view_width_m is None:
        view_width_m = float(max(high[0] - low[0], high[1] - low[1])) * 1.1
    scene = bpy.data.scenes.new("MXR landmark render")
    created: list = []  # (bpy.data collection, datablock) pairs, removed in reverse order
    try:
        mesh = bpy.data.meshes.new("MXR landmark head")
        created.append((bpy.data.meshes, mesh))
        mesh.from_pydata(head_to_blender(vertices_m).tolist(), [], np.asarray(faces).tolist())
        mesh.update()
        head = bpy.data.objects.new("MXR landmark head", mesh)
        created.append((bpy.data.objects, head))
        scene.collection.objects.link(head)
        _add_front_camera(scene, centre_m, view_width_m, float(high[2]) + CAMERA_STANDOFF_M, created)
        _set_up_workbench(scene, size_px, created)
        scene.render.filepath = str(Path(path).resolve())
        bpy.ops.render.render(write_still=True, scene=scene.name)
    finally:
        bpy.data.scenes.remove(scene)
        for collection, block in reversed(created):
            collection.remove(block)
    return front_projection(centre_m, view_width_m, size_px)


def front_projection(centre_m: tuple[float, float], view_width_m: float, size_px: int) -> OrthographicProjection:
    """The map of a square orthographic camera looking along -Z at (centre_m), spanning view_width_m.

    pixel x = (x - cx) / width * size + size / 2; pixel y = (cy - y) / width * size + size / 2
    (image y points down); depth = z (towards the camera).
    """
    pixels_per_metre = size_px / view_width_m
    half = size_px / 2.0
    return OrthographicProjection(
        np.array(
            [
                [pixels_per_metre, 0.0, 0.0, half - pixels_per_metre * centre_m[0]],
                [0.0, -pixels_per_metre, 0.0, half + pixels_per_metre * centre_m[1]],
                [0.0, 0.0, 1.0, 0.0],
            ]
        )
    )


def _add_front_camera(
    scene, centre_m: tuple[float, float], view_width_m: float, front_z_m: float, created: list
) -> None:
    """An orthographic camera in front of the face, looking back at it (Blender +Y)."""
    camera_data = bpy.data.cameras.new("MXR landmark camera")
    created.append((bpy.data.cameras, camera_data))
    camera_data.type = "ORTHO"
    camera_data.ortho_scale = view_width_m
    camera_data.sensor_fit = "HORIZONTAL"
    camera_data.clip_start = 0.01
    camera_data.clip_end = 10.0
    camera = bpy.data.objects.new("MXR landmark camera", camera_data)
    created.append((bpy.data.objects, camera))
    # Head (cx, cy, front_z) -> Blender (cx, -front_z, cy); rotating +90 deg about X turns the
    # camera's -Z view axis to +Y and its up axis to +Z.
    camera.location = (centre_m[0], -front_z_m, centre_m[1])
    camera.rotation_euler = (math.pi / 2.0, 0.0, 0.0)
    scene.collection.objects.link(camera)
    scene.camera = camera


def _set_up_workbench(scene, size_px: int, created: list) -> None:
    """Workbench, studio light, one grey colour, square image, untouched colour management."""
    configure_workbench(scene, size_px, size_px, "SINGLE")
    scene.display.shading.single_color = SURFACE_GREY
    world = bpy.data.worlds.new("MXR landmark world")
    created.append((bpy.data.worlds, world))
    world.color = BACKGROUND_GREY
    scene.world = world


def configure_workbench(scene, width_px: int, height_px: int, colour_type: str) -> None:
    """Workbench renders MediaPipe can read: studio light, square pixels, opaque RGB PNG, and the
    'Standard' view transform so colours are not tone-mapped. ``colour_type``: 'SINGLE' or 'TEXTURE'."""
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x = width_px
    scene.render.resolution_y = height_px
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = 1.0
    scene.render.pixel_aspect_y = 1.0
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = colour_type
    scene.view_settings.view_transform = "Standard"

