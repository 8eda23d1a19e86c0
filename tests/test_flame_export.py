"""A baked FLAME rig through Blender's FBX and glTF exporters and back: shape-key animation,
the jaw's rotation and the deformed mesh survive the round trip.

Tolerances: both exporters sample every frame of the scene and store float32, so at integer
frames the values come back to float precision; the test allows 1e-4 for shape-key values
and rotation-matrix entries and 1e-5 m for vertex positions (measured: ~1e-7 and ~1e-7 m).

What a user meets on re-import into Blender (the test does the same): the glTF importer stashes
the morph animation in a muted NLA track, and glTF has no slider ranges, so its shape keys come
back as 0..1 and FLAME's signed values clamp until the ranges are widened. Other glTF consumers
(game engines) read the signed weights as written. And the glTF exporter's default animation
size optimisation treats the bones' sub-millimetre joint-shift locations as constant and drops
them (7e-5 m off); ``export_optimize_animation_size=False`` keeps them.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest
from mathutils.kdtree import KDTree

from mxr.models.flame import load_flame
from mxr.models.flame_embedding import default_registration_path, load_landmark_embedding
from mxr.mxr_addon.flame_rig import armature_of
from mxr.mxr_addon.pipeline import bake_take_file, import_flame
from mxr.ops.take import save_take

from flame_fixtures import flame_take, random_flame_arrays, write_flame_pickle, write_synthetic_registration
from test_flame_rig import evaluated_vertices

EXPRESSIONS = 10  # a light rig: 1 + 10 + 36 shape keys
FRAMES = (1, 4, 7, 10)
FPS = 30.0


@pytest.fixture(scope="module")
def baked_take(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("flame_export")
    flame_file = write_flame_pickle(folder / "flame2023.pkl", random_flame_arrays(seed=6), "2023")
    model = load_flame(flame_file)
    landmarks = load_landmark_embedding(write_synthetic_registration(default_registration_path(flame_file), model),
                                        model.vertex_count)
    rng = np.random.default_rng(0)
    expression = rng.uniform(-1.5, 1.5, (10, EXPRESSIONS))
    pose = np.zeros((10, 5, 3))
    pose[:, 2, 0] = np.linspace(0.0, 0.3, 10)  # jaw opening
    pose[:, 1, 1] = np.linspace(-0.3, 0.3, 10)  # neck turning
    save_take(flame_take(model, landmarks, np.zeros(0), expression, pose, fps=FPS), folder / "take.npz")
    return flame_file, folder / "take.npz"


def snapshot(scene, mesh: bpy.types.Object, armature: bpy.types.Object) -> dict[int, tuple]:
    """Per frame: shape-key values by name, the jaw's world-space deform rotation, world vertices."""
    states = {}
    for frame in FRAMES:
        scene.frame_set(frame)
        values = {block.name: block.value for block in mesh.data.shape_keys.key_blocks[1:]}
        bone = armature.pose.bones["jaw"]
        world = np.array(armature.matrix_world.to_3x3().normalized())
        deform = np.array((bone.matrix @ bone.bone.matrix_local.inverted()).to_3x3())
        states[frame] = values, world @ deform @ world.T, evaluated_vertices(mesh)
    return states


def rest_correspondence(original_rest: np.ndarray, imported: bpy.types.Object) -> np.ndarray:
    """Index (V',) of the original vertex at each imported vertex's rest place (glTF splits vertices)."""
    tree = KDTree(len(original_rest))
    for index, point in enumerate(original_rest):
        tree.insert(point, index)
    tree.balance()
    basis = imported.data.shape_keys.key_blocks[0].data
    matrix = imported.matrix_world
    return np.array([tree.find(matrix @ point.co)[1] for point in basis])


@pytest.mark.parametrize("exporter", ["fbx", "gltf"])
def test_baked_flame_animation_survives_export(empty_blend, baked_take, tmp_path, exporter):
    flame_file, take_path = baked_take
    scene = empty_blend
    rig = import_flame(scene, flame_file, expressions=EXPRESSIONS)
    bake_take_file(scene, take_path, rig, reference_video=False)
    original = snapshot(scene, rig, armature_of(rig))
    basis = np.array([tuple(point.co) for point in rig.data.shape_keys.key_blocks["Basis"].data])  # object = world here

    path = tmp_path / ("head.fbx" if exporter == "fbx" else "head.glb")
    if exporter == "fbx":
        bpy.ops.export_scene.fbx(filepath=str(path), object_types={"ARMATURE", "MESH"}, add_leaf_bones=False,
                                 use_armature_deform_only=True, bake_anim=True, bake_anim_use_all_actions=False,
                                 bake_anim_use_nla_strips=False, bake_anim_simplify_factor=0.0)
    else:
        bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB", export_skins=True, export_morph=True,
                                  export_animations=True, export_animation_mode="SCENE",
                                  export_optimize_animation_size=False)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    fresh = bpy.context.scene
    fresh.render.fps = int(FPS)  # glTF stores seconds; frames follow the importing scene's rate
    if exporter == "fbx":
        bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0)  # FBX's time 0 is scene frame 0
    else:
        bpy.ops.import_scene.gltf(filepath=str(path))
    mesh = next(obj for obj in fresh.objects if obj.type == "MESH" and obj.data.shape_keys is not None)
    armature = next(obj for obj in fresh.objects if obj.type == "ARMATURE")
    animation = mesh.data.shape_keys.animation_data
    if animation.action is None:  # the glTF importer stashes the morph animation in a muted NLA track
        strip = animation.nla_tracks[0].strips[0]
        animation.action = strip.action
        if hasattr(strip, "action_slot"):  # 4.4+: slotted actions
            animation.action_slot = strip.action_slot
    if exporter == "gltf":  # glTF has no slider ranges: Blender's importer leaves 0..1, clamping signed values
        for block in mesh.data.shape_keys.key_blocks:
            block.slider_min, block.slider_max = -10.0, 10.0
    mapping = rest_correspondence(basis, mesh)
    returned = snapshot(fresh, mesh, armature)

    value_errors, rotation_errors, vertex_errors = [], [], []
    for frame in FRAMES:
        values, jaw, vertices = original[frame]
        back_values, back_jaw, back_vertices = returned[frame]
        assert set(back_values) == set(values)  # every Exp and Pose key, by name
        value_errors.append(max(abs(back_values[name] - value) for name, value in values.items()))
        rotation_errors.append(np.abs(back_jaw - jaw).max())
        vertex_errors.append(np.abs(back_vertices - vertices[mapping]).max())
    print(f"{exporter}: shape keys {max(value_errors):.1e}, jaw {max(rotation_errors):.1e}, "
          f"vertices {max(vertex_errors):.1e} m")
    assert max(value_errors) < 1e-4 and max(rotation_errors) < 1e-4 and max(vertex_errors) < 1e-5
    assert np.abs(original[10][1] - np.eye(3)).max() > 0.1  # the jaw did move: the check means something
