"""The FLAME rig in real bpy: structure, skinning vs FLAME's formula, the import operator."""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest

from conftest import synthetic_head, synthetic_take
from mxr.models.flame import FlameModel, flame_forward, load_flame, rodrigues
from mxr.mxr_addon.bake import write_bone_channels, write_shape_key_values
from mxr.mxr_addon.takes import TakeName, take_action
from mxr.models.bake_plan import flame_channels
from mxr.mxr_addon.flame_rig import BONES, POSE_KEYS, armature_of, bone_rest_axes, build_flame_rig, is_flame_rig
from mxr.models.blender_frame import head_to_blender
from mxr.mxr_addon.rig import is_rig
from mxr.ops.take import save_take

from flame_fixtures import random_flame_arrays, write_flame_pickle, write_malicious_pickle

EXPRESSIONS = 10


@pytest.fixture(scope="module")
def flame_file(tmp_path_factory) -> Path:
    return write_flame_pickle(tmp_path_factory.mktemp("flame") / "flame2023.pkl", random_flame_arrays(seed=3), "2023")


@pytest.fixture(scope="module")
def model(flame_file: Path) -> FlameModel:
    return load_flame(flame_file)


def build(scene, model: FlameModel, flame_file: Path, identity: np.ndarray, identity_as_keys: bool = False):
    return build_flame_rig(model, scene.collection, bpy.context.view_layer, expressions=EXPRESSIONS,
                           identity=identity, identity_as_keys=identity_as_keys, flame_path=flame_file,
                           landmarks_path=None)


def evaluated_vertices(rig: bpy.types.Object) -> np.ndarray:
    """World positions (V, 3) of the rig's evaluated mesh (shape keys, then the Armature modifier)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = rig.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    coordinates = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", coordinates)
    evaluated.to_mesh_clear()
    matrix = np.array(rig.matrix_world)
    return coordinates.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]


def test_rig_structure(empty_blend, model, flame_file):
    identity = np.random.default_rng(0).normal(0.0, 1.0, 8)
    rig = build(empty_blend, model, flame_file, identity)
    armature = armature_of(rig)
    assert is_rig(rig) and is_flame_rig(rig) and armature["mxr_owned"]
    bones = armature.data.bones
    assert [bone.name for bone in bones] == list(BONES)
    assert {bone.name: bone.parent.name if bone.parent else None for bone in bones} == {
        "FLAME_root": None, "neck": "FLAME_root", "jaw": "neck", "eye.L": "neck", "eye.R": "neck"}
    assert all(bone.use_deform for bone in bones)
    shaped = model.template + np.tensordot(identity, model.shape_basis[:8], axes=1)
    joints = head_to_blender(model.joint_regressor @ shaped)  # (5, 3)
    np.testing.assert_allclose([bone.head_local for bone in bones], joints, atol=1e-6)
    # Up for the root and neck, forward (-Y, where the face looks) for the jaw and eyes.
    directions = {bone.name: np.round(np.array(bone.tail_local - bone.head_local) / bone.length, 6) for bone in bones}
    assert directions["neck"].tolist() == [0, 0, 1] and directions["jaw"].tolist() == [0, -1, 0]
    assert all(pose_bone.rotation_mode == "QUATERNION" for pose_bone in armature.pose.bones)

    assert rig.parent == armature
    modifier = rig.modifiers["FLAME Skinning"]
    assert modifier.type == "ARMATURE" and modifier.object == armature and not modifier.use_deform_preserve_volume
    for position, bone in enumerate(BONES):
        group = rig.vertex_groups[bone].index
        weights = np.array([next((g.weight for g in vertex.groups if g.group == group), 0.0) for vertex in rig.data.vertices])
        np.testing.assert_allclose(weights, model.skinning_weights[:, position], atol=1e-6)

    blocks = rig.data.shape_keys.key_blocks
    expected = ["Basis", *(f"Exp{k:03d}" for k in range(EXPRESSIONS)), *POSE_KEYS]
    assert [block.name for block in blocks] == expected and POSE_KEYS[-1] == "Pose035"
    assert (blocks["Exp003"].slider_min, blocks["Exp003"].slider_max) == (-6.0, 6.0)
    assert (blocks["Pose010"].slider_min, blocks["Pose010"].slider_max) == (-2.0, 2.0)
    basis = np.empty(len(rig.data.vertices) * 3, dtype=np.float32)
    blocks["Basis"].data.foreach_get("co", basis)
    np.testing.assert_allclose(basis.reshape(-1, 3), head_to_blender(shaped), atol=1e-6)  # metres, Z up
    assert np.ptp(basis.reshape(-1, 3)[:, 2]) == pytest.approx(np.ptp(shaped[:, 1]), rel=1e-5)


@pytest.mark.parametrize("identity_as_keys", [False, True], ids=["identity-in-basis", "identity-as-keys"])
def test_skinned_rig_evaluates_to_flame_forward(empty_blend, model, flame_file, identity_as_keys):
    """Keys written by the baker's own path, evaluated by Blender's depsgraph, against numpy FLAME."""
    rng = np.random.default_rng(1)
    identity = rng.normal(0.0, 1.0, 6)
    rig = build(empty_blend, model, flame_file, identity, identity_as_keys)
    if identity_as_keys:
        assert [rig.data.shape_keys.key_blocks[f"Shape{k:03d}"].value for k in range(6)] == pytest.approx(identity, abs=1e-6)
    frames = 5
    expression = rng.uniform(-2.0, 2.0, (frames, EXPRESSIONS))
    pose = np.zeros((frames, 5, 3))
    pose[:, 0] = rng.normal(0.0, 0.1, (frames, 3))  # global
    pose[:, 1] = rng.normal(0.0, 0.2, (frames, 3))  # neck
    pose[:, 2] = np.column_stack([rng.uniform(0.0, 0.4, frames), rng.normal(0.0, 0.05, (frames, 2))])  # jaw opens about x
    pose[:, 3:] = rng.normal(0.0, 0.2, (frames, 2, 3))  # eyes
    pose[0] = 0.0  # rest frame too
    scene_frames = np.arange(1, frames + 1, dtype=np.float64)
    channels = flame_channels(model, bone_rest_axes(armature_of(rig)), expression, rodrigues(pose))
    take, armature = TakeName("test take", "test take"), armature_of(rig)
    write_shape_key_values(rig, take_action(rig.data.shape_keys, "expressions", take, []), scene_frames,
                           channels.shape_keys, [])
    write_bone_channels(armature, take_action(armature, "pose", take, []), scene_frames, channels.rotations,
                        channels.locations)
    expected, _ = flame_forward(model, identity, expression, pose)  # (T, V, 3) FLAME metres
    errors = []
    for index, frame in enumerate(scene_frames):
        empty_blend.frame_set(int(frame))
        errors.append(np.abs(evaluated_vertices(rig) - head_to_blender(expected[index])).max())
    print(f"max |Blender - flame_forward| per frame (m): {np.round(errors, 8).tolist()}")
    assert max(errors) < 1e-5
    # The joint shift matters: without the keyed bone locations the error is far above tolerance.
    moved = np.abs(expected[1:] - flame_forward(model, identity, np.zeros(EXPRESSIONS), pose[1:])[0]).max()
    assert moved > 1e-3


def test_import_operator_remembers_the_file_and_refuses_bad_ones(empty_blend, flame_file, tmp_path):
    addon = bpy.context.preferences.addons.new()
    addon.module = "mxr"
    try:
        preferences = bpy.context.preferences.addons["mxr"].preferences
        preferences.flame_path = ""
        assert bpy.ops.mxr.import_flame(filepath=str(flame_file), expressions=EXPRESSIONS) == {"FINISHED"}
        rig = bpy.context.view_layer.objects.active
        assert is_flame_rig(rig) and rig["mxr_flame_path"] == str(flame_file.resolve())
        assert bpy.path.abspath(preferences.flame_path) == str(flame_file)
        # Without a file the operator starts from the remembered one.
        assert bpy.ops.mxr.import_flame(expressions=3) == {"FINISHED"}
        assert len([b for b in bpy.context.view_layer.objects.active.data.shape_keys.key_blocks if b.name.startswith("Exp")]) == 3

        counts = (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.armatures))
        hostile = write_malicious_pickle(tmp_path / "generic_model.pkl", f"touch {tmp_path / 'pwned'}")
        not_flame = tmp_path / "notes.pkl"
        not_flame.write_bytes(b"not a pickle at all")
        for path, message in ((tmp_path / "missing.pkl", "not found"), (hostile, "refused"), (not_flame, "not a readable")):
            with pytest.raises(RuntimeError, match=message):
                bpy.ops.mxr.import_flame(filepath=str(path))
        with pytest.raises(RuntimeError, match="take file not found"):  # the identity's take, checked first
            bpy.ops.mxr.import_flame(filepath=str(flame_file), identity_components=5, identity_take=str(tmp_path / "t.npz"))
        with pytest.raises(RuntimeError, match="needs the landmark registration"):
            save_take(synthetic_take(synthetic_head()), tmp_path / "take.npz")
            bpy.ops.mxr.import_flame(filepath=str(flame_file), identity_components=5, identity_take=str(tmp_path / "take.npz"))
        assert not (tmp_path / "pwned").exists()
        assert (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.armatures)) == counts
        assert bpy.path.abspath(preferences.flame_path) == str(flame_file)  # refused files are not remembered
    finally:
        bpy.context.preferences.addons.remove(addon)
