"""Cameras MXR owns: the reference camera (source video behind the head) and a render camera.

Both look at the rig from the front (Blender -Y towards +Y, the side the face looks at) and are
orthographic: the take's camera is weak-perspective (MediaPipe), so an orthographic view is the
closest match to the footage. On MXR's own heads the reference camera follows the take
(``models/reference_view``): through it the head sits over the performer's face in the video,
frame by frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from mathutils import Vector

from ..models.bake_plan import TimeMapping
from ..models.reference_view import reference_view
from ..ops.take import Take, frame_seconds
from .curves import action_curves, assign_action, ensure_fcurve, write_keys
from .rig import OWNED

REFERENCE_CAMERA = "MXR Reference"
RENDER_CAMERA = "MXR Front"


def owned_camera(scene: bpy.types.Scene, name: str) -> bpy.types.Object:
    """MXR's camera called ``name`` in ``scene``, created when missing (a user's object is never reused)."""
    existing = bpy.data.objects.get(name)
    if existing is not None and existing.get(OWNED) and existing.type == "CAMERA":
        if name not in scene.objects:
            scene.collection.objects.link(existing)
        return existing
    data = bpy.data.cameras.new(name)
    data[OWNED] = True
    camera = bpy.data.objects.new(name, data)
    camera[OWNED] = True
    scene.collection.objects.link(camera)
    return camera


def frame_front(camera: bpy.types.Object, rig: bpy.types.Object, margin: float = 1.3) -> None:
    """Point ``camera`` at the rig's face from the front, orthographic, framing its bounds."""
    corners = np.array([rig.matrix_world @ Vector(corner) for corner in rig.bound_box])  # (8, 3) m
    low, high = corners.min(axis=0), corners.max(axis=0)
    centre = (low + high) / 2.0
    size = high - low  # (3,) width (x), depth (y), height (z)
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = float(max(size[0], size[2]) * margin)
    camera.data.clip_end = float(10.0 * max(size.max(), 0.1))
    distance = float(3.0 * max(size.max(), 0.1))
    camera.location = (centre[0], low[1] - distance, centre[2])
    camera.rotation_euler = (math.pi / 2.0, 0.0, 0.0)  # camera -Z (its view) onto world +Y


def add_reference_video(scene: bpy.types.Scene, rig: bpy.types.Object, take: Take, timing: TimeMapping,
                        face: FaceOnRig | None = None,
                        rotation_keyed: bool = True) -> tuple[bpy.types.Object, list[str]]:
    """MXR's reference camera with the take's source video behind the head.

    The video frame of take frame 0 (``take.frame_indices[0]``, not 0 when the take starts later
    in the clip) lands on ``timing.frame_start``, as take frame 0 does. Blender shows a movie one
    video frame per scene frame, so the video keeps pace with the keys only at the take's own
    rate: otherwise a warning says so. A missing video is a warning, not an error: the bake is
    still useful without it. With ``face`` (where the performer's face is on the rig), the camera
    follows the face in the video (``follow_the_face``); without (a FLAME rig, whose head turns on
    its neck bone), it frames the head from the front.
    """
    camera = owned_camera(scene, REFERENCE_CAMERA)
    frame_front(camera, rig)
    if face is not None:
        follow_the_face(scene, camera, rig, take, timing, face, rotation_keyed)
    elif camera.animation_data is not None:
        camera.animation_data.action = None  # the camera is MXR's own: a track of an earlier bake goes
    if scene.camera is None:
        scene.camera = camera
    backgrounds = camera.data.background_images
    backgrounds.clear()  # the camera is MXR's own: its previous video is MXR's too
    source = Path(take.source_path)
    if not source.is_file():
        return camera, [f"reference video not found ({source}): no camera background"]
    clip = _owned_clip(source)
    clip.frame_start = timing.frame_start - int(take.frame_indices[0])
    camera.data.show_background_images = True
    background = backgrounds.new()
    background.source = "MOVIE_CLIP"
    background.clip = clip
    background.use_camera_clip = False
    background.frame_method = "FIT"  # the aspect kept, as models/reference_view assumes
    background.display_depth = "BACK"
    background.alpha = 0.6
    if not (np.isclose(timing.scene_fps, take.fps, rtol=1e-3) and timing.slowdown == 1.0):
        return camera, [f"the reference video shows one video frame per scene frame ({take.fps:g} per second of "
                        f"the take), the keys take {timing.scene_fps * timing.slowdown:g} scene frames per second: "
                        "they drift apart; bake with Match Scene to Take to compare them frame by frame"]
    return camera, []


@dataclass(frozen=True)
class FaceOnRig:
    """Where the performer's face is on a rig (from the bake's alignment)."""

    metres_per_mm: float  # the head's metres per performer mm
    origin_local_m: np.ndarray  # (3,) the performer's canonical origin in the rig's object space


def follow_the_face(scene: bpy.types.Scene, camera: bpy.types.Object, rig: bpy.types.Object, take: Take,
                    timing: TimeMapping, face: FaceOnRig, rotation_keyed: bool) -> None:
    """Key ``camera``'s X and Z and its orthographic scale at the take's frames so that the rig,
    seen through it, covers the performer's face in the fitted video (``reference_view``). The
    camera and its data are MXR's own, and so are the actions keyed here (replaced on a re-bake)."""
    render = scene.render
    aspect = (render.resolution_x * render.pixel_aspect_x) / (render.resolution_y * render.pixel_aspect_y)
    # The rig's own placement (matrix_world is stale until the scene is next evaluated, and a new
    # rig has never been): MXR's heads are not parented.
    placement = rig.matrix_basis
    view = reference_view(take, face.metres_per_mm, face.origin_local_m, np.array(placement.translation),
                          float(placement.to_scale()[0]), aspect, rotation_keyed)
    if not len(view.frames):
        return
    frames = timing.scene_frames(frame_seconds(take)[0])[view.frames]  # (n,) scene frames
    for datablock, curves in ((camera, {("location", 0): view.centre_m[:, 0], ("location", 2): view.centre_m[:, 1]}),
                              (camera.data, {("ortho_scale", 0): view.ortho_scale_m})):
        action = _owned_action(datablock)
        for (path, index), values in curves.items():
            write_keys(ensure_fcurve(action, datablock, path, index), frames, values, "LINEAR")


def _owned_action(datablock: bpy.types.ID) -> bpy.types.Action:
    """The MXR action animating MXR's own ``datablock``, emptied, or a new one."""
    animation = datablock.animation_data or datablock.animation_data_create()
    action = animation.action
    if action is None or not action.get(OWNED):
        action = bpy.data.actions.new(f"{datablock.name} (MXR)")
        action[OWNED] = True
        assign_action(animation, action)
    for curve in list(action_curves(action, datablock) or ()):
        curve.keyframe_points.clear()
    return action


def _owned_clip(source: Path) -> bpy.types.MovieClip:
    """MXR's own clip of ``source``: reused across bakes, never the user's clip of the same file
    (MXR shifts its start frame, which would move the user's tracking or compositing)."""
    for clip in bpy.data.movieclips:
        if clip.get(OWNED) and Path(bpy.path.abspath(clip.filepath)) == source:
            return clip
    clip = bpy.data.movieclips.load(str(source), check_existing=False)
    clip[OWNED] = True
    return clip
