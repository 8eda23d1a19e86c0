"""The reference camera follows the face: seen through it, the baked head covers the performer's
face in the video behind it (a real clip, the real engine, real bpy)."""
from __future__ import annotations

import bpy
import numpy as np
import pytest

from mxr.models.open_head import load_open_head
from mxr.models.reference_view import fitted_metres_per_px
from mxr.mxr_addon.camera import REFERENCE_CAMERA, frame_front
from mxr.mxr_addon.pipeline import bake_take_file
from mxr.ops.reconstruct import ReconstructSettings, reconstruct
from mxr.ops.sample_data import sample_path
from mxr.ops.take import load_take

FRAMES = (0, 30, 50, 71)  # single_face.mp4: neutral, into the smile, the smile


def in_video_px(scene, camera, points_world: np.ndarray, video_size) -> np.ndarray:
    """World points (N, 3) -> where they fall on the video fitted into ``camera``'s frame (N, 2) px."""
    to_camera = np.array(camera.matrix_world.inverted())  # (4, 4)
    local = points_world @ to_camera[:3, :3].T + to_camera[:3, 3]  # (N, 3) m, camera axes
    render = scene.render
    metres_per_px = fitted_metres_per_px(camera.data.ortho_scale, video_size,
                                         render.resolution_x / render.resolution_y)
    return np.stack([video_size[0] / 2 + local[:, 0] / metres_per_px,
                     video_size[1] / 2 - local[:, 1] / metres_per_px], axis=1)


def misses(scene, camera, rig, head, take) -> np.ndarray:
    """(len(FRAMES),) median distance between the head's landmarks, seen through ``camera`` on
    the video, and MediaPipe's on the performer's face, over the eyes' distance."""
    eyes = np.linalg.norm(take.landmarks_px[:, 33, :2] - take.landmarks_px[:, 263, :2], axis=1)  # (T,) px
    found = []
    for frame in FRAMES:
        scene.frame_set(scene.frame_start + frame)
        evaluated = rig.evaluated_get(bpy.context.evaluated_depsgraph_get())
        vertices = np.array([vertex.co for vertex in evaluated.to_mesh().vertices])  # (V, 3) local m
        evaluated.to_mesh_clear()
        world = np.array(rig.matrix_world)
        landmarks = head.landmarks.locate(vertices) @ world[:3, :3].T + world[:3, 3]  # (478, 3)
        seen = in_video_px(scene, camera, landmarks, take.frame_size)
        found.append(np.median(np.linalg.norm(seen - take.landmarks_px[frame, :, :2], axis=1)[:468]) / eyes[frame])
    return np.array(found)


@pytest.mark.engine
def test_through_the_reference_camera_the_head_lies_on_the_performers_face(empty_blend, tmp_path):
    scene = empty_blend
    take_path = tmp_path / "single face.npz"
    reconstruct(sample_path("video/single_face.mp4"), take_path, ReconstructSettings(use_network=False))
    take = load_take(take_path)
    head = load_open_head()
    baked = bake_take_file(scene, take_path, match_take=True)
    camera = bpy.data.objects[REFERENCE_CAMERA]
    assert camera.data.background_images[0].frame_method == "FIT"
    following = misses(scene, camera, baked.rig, head, take)
    camera.animation_data.action = None  # the camera as it was before it followed the face, for comparison
    camera.data.animation_data.action = None
    frame_front(camera, baked.rig)
    framed = misses(scene, camera, baked.rig, head, take)
    print("median miss / eye distance at frames", FRAMES, np.round(following, 3), "framed only", np.round(framed, 3))
    assert following.max() < 0.1 and framed.min() > 3 * following.max()  # on the face, not merely near it
