"""Retargeting onto FLAME (numpy) and baking takes onto a FLAME rig (real bpy)."""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest

from mxr.models.detail import DetailSpread, detail_layer, movable_vertices
from mxr.models.flame import (FlameModel, flame_forward, joint_transforms, load_flame, pose_features, rodrigues,
                              shaped_vertices, skinning_regions)
from mxr.models.flame_embedding import default_registration_path, load_landmark_embedding
from mxr.models.open_head import load_open_head
from mxr.models.retarget import FlameLandmarks, estimate_flame_identity, retarget_expressions, retarget_flame
from mxr.mxr_addon.flame_rig import BONES, armature_of
from mxr.mxr_addon.pipeline import bake_take_file, import_flame
from mxr.models.blender_frame import AXES, head_to_blender
from mxr.ops.take import load_take, save_take

from flame_fixtures import flame_take, random_flame_arrays, write_flame_pickle, write_synthetic_registration
from test_flame_rig import evaluated_vertices

EXPRESSIONS = 10
JAW, LEFT_EYE = 2, 3


@pytest.fixture(scope="module")
def flame_file(tmp_path_factory) -> Path:
    """A FLAME-format file with its landmark registration where the import looks for it."""
    path = write_flame_pickle(tmp_path_factory.mktemp("flame") / "generic_model.pkl", random_flame_arrays(seed=4), "2020")
    write_synthetic_registration(default_registration_path(path), load_flame(path))
    return path


@pytest.fixture(scope="module")
def model(flame_file: Path) -> FlameModel:
    return load_flame(flame_file)


@pytest.fixture(scope="module")
def landmarks(flame_file: Path, model: FlameModel):
    return load_landmark_embedding(default_registration_path(flame_file), model.vertex_count)


def known_motion(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Expressions (T, E) and a pose (T, 5, 3): the jaw opening 0..0.35 rad, a turning neck."""
    rng = np.random.default_rng(seed)
    expression = rng.uniform(-1.5, 1.5, (frames, EXPRESSIONS))
    pose = np.zeros((frames, 5, 3))
    pose[:, JAW, 0] = np.linspace(0.0, 0.35, frames)
    pose[:, JAW, 1:] = rng.normal(0.0, 0.03, (frames, 2))
    pose[:, 1, 1] = np.linspace(-0.3, 0.3, frames)  # neck yaw
    pose[:, 1, 0] = 0.1
    return expression, pose


def test_landmark_evaluation_is_flame_forward(model, landmarks):
    expression, pose = known_motion(6)
    pose[:, 0] = 0.1  # every joint, the global one too
    pose[:, 3:] = 0.2
    identity = np.linspace(-1.0, 1.0, 12)
    exact = landmarks.locate(flame_forward(model, identity, expression, pose)[0])
    fast = FlameLandmarks.build(model, landmarks, identity, EXPRESSIONS).locate(expression, pose)
    np.testing.assert_allclose(fast, exact, atol=1e-12)


def test_jaw_and_expressions_are_recovered(model, landmarks):
    expression, pose = known_motion(16)
    take = flame_take(model, landmarks, np.zeros(0), expression, pose, invalid=(5,))
    rig = FlameLandmarks.build(model, landmarks, np.zeros(0), EXPRESSIONS)
    solved = retarget_flame(rig, take.deformation_mm(), take.neutral_mm)  # defaults: jaw only
    valid = take.valid
    assert np.isnan(solved.expression[5]).all() and np.isnan(solved.pose[5]).all()
    jaw_error = np.abs(solved.pose[valid, JAW] - pose[valid, JAW]).max()
    expression_error = np.abs(solved.expression[valid] - expression[valid]).max()
    print(f"default regularisation: jaw {jaw_error:.2e} rad, expressions {expression_error:.3f}")
    assert jaw_error < 0.01 and expression_error < 0.15  # the ridge's bias, nothing more:
    tight = retarget_flame(rig, take.deformation_mm(), take.neutral_mm, regularization=1e-6, joints=(JAW, 3, 4))
    tight_jaw = np.abs(tight.pose[valid, JAW] - pose[valid, JAW]).max()
    tight_expression = np.abs(tight.expression[valid] - expression[valid]).max()
    print(f"regularisation 1e-6, jaw + eyes: jaw {tight_jaw:.2e} rad, expressions {tight_expression:.2e}")
    assert tight_jaw < 1e-4 and tight_expression < 1e-3
    assert np.abs(tight.pose[valid, 3:]).max() < 1e-3  # still eyes stay still
    assert np.all(tight.pose[valid][:, [0, 1]] == 0.0)  # unsolved joints untouched


def test_identity_is_fitted_to_the_neutral_face(model, landmarks):
    identity = np.random.default_rng(2).uniform(-2.0, 2.0, 8)
    take = flame_take(model, landmarks, identity, np.zeros((2, EXPRESSIONS)), np.zeros((2, 5, 3)))
    estimate = estimate_flame_identity(model, landmarks, take.neutral_mm, 8, regularization=1e-6)
    np.testing.assert_allclose(estimate, identity, atol=1e-3)


def bone_local_flame_rotations(armature: bpy.types.Object) -> np.ndarray:
    """The pose bones' current rotations (5, 3, 3) back in FLAME's axes, joint-local."""
    rotations = []
    for bone in BONES:
        rest = np.array(armature.data.bones[bone].matrix_local.to_3x3())
        local = np.array(armature.pose.bones[bone].rotation_quaternion.normalized().to_matrix())
        rotations.append(AXES.T @ (rest @ local @ rest.T) @ AXES)
    return np.array(rotations)


def test_take_bakes_onto_the_flame_rig(empty_blend, flame_file, model, landmarks, tmp_path):
    scene = empty_blend
    scene.frame_start = 3
    identity = np.random.default_rng(3).uniform(-1.0, 1.0, 5)
    expression, pose = known_motion(12, seed=1)
    take = flame_take(model, landmarks, identity, expression, pose, invalid=(4,))
    save_take(take, tmp_path / "take.npz")
    rig = import_flame(scene, flame_file, expressions=EXPRESSIONS, identity_components=5,
                       identity_from_take=tmp_path / "take.npz")
    np.testing.assert_allclose(rig["mxr_flame_identity"], identity, atol=0.15)  # fitted with the default ridge
    baked = bake_take_file(scene, tmp_path / "take.npz", rig, reference_video=False)
    assert (baked.result.frame_count, baked.result.frames_keyed) == (12, 11)
    armature = armature_of(rig)
    fitted = np.asarray(rig["mxr_flame_identity"])
    solved = retarget_flame(FlameLandmarks.build(model, landmarks, fitted, EXPRESSIONS),
                            take.deformation_mm(), take.neutral_mm, joints=(2, 3, 4), residual=True,
                            seconds=take.timestamps_s)
    spread = DetailSpread.build(shaped_vertices(model, fitted, np.zeros(0)), landmarks,
                                movable_vertices(model.vertex_count, skinning_regions(model)))
    layer = detail_layer(spread, solved.residual)
    assert len(layer.shapes) >= 1 and baked.result.detail_keys == [f"MXR_Detail{n:02d}" for n in range(len(layer.shapes))]
    for k in (0, 3, 7, 11):
        scene.frame_set(scene.frame_start + k)
        blocks = rig.data.shape_keys.key_blocks
        np.testing.assert_allclose([blocks[name].value for name in baked.result.detail_keys], layer.weights[k], atol=1e-5)
        np.testing.assert_allclose([blocks[f"Exp{i:03d}"].value for i in range(EXPRESSIONS)], solved.expression[k], atol=1e-5)
        rotations = bone_local_flame_rotations(armature)
        np.testing.assert_allclose(rotations[1], rodrigues(pose[k, 1]), atol=1e-5)  # the take's head pose, on the neck
        np.testing.assert_allclose(rotations[JAW], rodrigues(pose[k, JAW]), atol=0.02)  # the jaw, solved
        # Correctives agree with the bones they belong to, frame by frame.
        np.testing.assert_allclose([blocks[f"Pose{i:03d}"].value for i in range(36)], pose_features(rotations), atol=1e-5)
        # And the whole rig is FLAME at the solved parameters, plus the detail (rest space, skinned).
        solved_pose = solved.pose[k].copy()
        solved_pose[1] = pose[k, 1]
        expected = flame_forward(model, fitted, solved.expression[k], solved_pose)[0]
        transforms, _ = joint_transforms(rodrigues(solved_pose), np.zeros((5, 3)), model.parents)  # (5, 3, 4)
        skinned = np.einsum("vj,jab->vab", model.skinning_weights, transforms[:, :, :3])  # (V, 3, 3)
        expected += np.einsum("vab,vb->va", skinned, np.tensordot(layer.weights[k], layer.shapes, axes=1))
        assert np.abs(evaluated_vertices(rig) - head_to_blender(expected)).max() < 1e-5
        assert rig["mxr_face_found"] == 1
    scene.frame_set(scene.frame_start + 4)
    assert rig["mxr_face_found"] == 0


def test_bake_operator_on_flame_rig_and_on_the_builtin_head(empty_blend, flame_file, model, landmarks, tmp_path):
    expression, pose = known_motion(8, seed=2)
    save_take(flame_take(model, landmarks, np.zeros(0), expression, pose), tmp_path / "take.npz")
    assert bpy.ops.mxr.import_flame(filepath=str(flame_file), expressions=EXPRESSIONS) == {"FINISHED"}
    rig = bpy.context.view_layer.objects.active
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "take.npz"), reference_video=False) == {"FINISHED"}
    empty_blend.frame_set(empty_blend.frame_start + 7)
    jaw = bone_local_flame_rotations(armature_of(rig))[JAW]
    np.testing.assert_allclose(jaw, rodrigues(pose[7, JAW]), atol=0.02)

    # The same take onto the built-in head: the operator makes one when no MXR head is active.
    bpy.context.view_layer.objects.active = None
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "take.npz"), reference_video=False) == {"FINISHED"}
    head = bpy.context.view_layer.objects.active
    open_head = load_open_head()
    assert head["mxr_head"] == open_head.name
    take = load_take(tmp_path / "take.npz")
    expected = retarget_expressions(open_head, take.deformation_mm(), take.neutral_mm, seconds=take.timestamps_s)
    empty_blend.frame_set(empty_blend.frame_start + 7)
    blocks = head.data.shape_keys.key_blocks
    np.testing.assert_allclose([blocks[name].value for name in open_head.expression_names], expected[7], atol=1e-5)


def test_flame_rig_without_registration_refuses_to_bake(empty_blend, tmp_path):
    lonely = write_flame_pickle(tmp_path / "flame2023.pkl", random_flame_arrays(seed=5), "2023")
    rig = import_flame(empty_blend, lonely, expressions=3)
    save_take(flame_take(load_flame(lonely), load_landmark_embedding(
        write_synthetic_registration(tmp_path / "elsewhere.npz", load_flame(lonely)), 5023),
        np.zeros(0), np.zeros((3, 3)), np.zeros((3, 5, 3))), tmp_path / "take.npz")
    counts = len(bpy.data.actions)
    with pytest.raises(Exception, match="no landmark registration"):
        bake_take_file(empty_blend, tmp_path / "take.npz", rig)
    assert len(bpy.data.actions) == counts


@pytest.mark.engine
def test_face_like_flame_with_automatic_registration_bakes_the_jaw(empty_blend, face_like_flame, tmp_path):
    """End to end on a face MediaPipe can see: registration by render-and-detect, import, bake."""
    model = load_flame(face_like_flame)
    landmarks = load_landmark_embedding(default_registration_path(face_like_flame), model.vertex_count)
    expression, pose = known_motion(10, seed=3)
    save_take(flame_take(model, landmarks, np.zeros(0), expression, pose), tmp_path / "take.npz")
    rig = import_flame(empty_blend, face_like_flame, expressions=EXPRESSIONS)
    assert rig["mxr_flame_landmarks"] == str(default_registration_path(face_like_flame).resolve())
    bake_take_file(empty_blend, tmp_path / "take.npz", rig, reference_video=False)
    for k in (2, 9):
        empty_blend.frame_set(empty_blend.frame_start + k)
        np.testing.assert_allclose(bone_local_flame_rotations(armature_of(rig))[JAW], rodrigues(pose[k, JAW]), atol=0.02)


def test_micro_expressions_bake_as_their_own_keys_on_a_flame_rig(empty_blend, flame_file, model, landmarks, tmp_path):
    from mxr.models.micro_keys import MICRO_LAYER_FROM_EVENTS
    from mxr.models.network.event_profile import micro_profile
    from mxr.ops.take import MicroEvent

    scene = empty_blend
    expression, pose = known_motion(30, seed=3)
    take = flame_take(model, landmarks, np.zeros(0), expression, pose)
    # Half of one frame's expression plays again as a micro-expression over frames 8..20 (30 fps).
    pattern = 0.5 * (take.macro_mm[5] - take.macro_mm[0])  # (478, 3) mm
    profile = micro_profile(np.arange(30) / 30.0, 8 / 30.0, 12 / 30.0, 0.0, 20 / 30.0)
    take.micro_mm[:] = profile[:, None, None] * pattern
    take.events = [MicroEvent(onset_frame=8, apex_frame=12, offset_frame=20, region="cheeks", peak_mm=1.0,
                              confidence=0.8)]
    take.settings = {"network": {"micro_layer": MICRO_LAYER_FROM_EVENTS}}  # as the engine writes it
    save_take(take, tmp_path / "take.npz")
    rig = import_flame(scene, flame_file, expressions=EXPRESSIONS)
    baked = bake_take_file(scene, tmp_path / "take.npz", rig, reference_video=False)
    assert baked.result.micro_keys == [f"MXR_Micro cheeks {scene.frame_start + 12}"]
    assert [layer.key_name for layer in rig.mxr_micro_layers] == baked.result.micro_keys  # tunable in the panel
    solved = retarget_flame(FlameLandmarks.build(model, landmarks, np.zeros(0), EXPRESSIONS),
                            take.macro_mm, take.neutral_mm, joints=(2, 3, 4),
                            seconds=take.timestamps_s)  # the face without the micro layer
    for k, weight in ((2, 0.0), (12, 1.0), (16, profile[16])):
        scene.frame_set(scene.frame_start + k)
        blocks = rig.data.shape_keys.key_blocks
        assert blocks[f"MXR_Micro cheeks {scene.frame_start + 12}"].value == pytest.approx(weight, abs=1e-5)
        np.testing.assert_allclose([blocks[f"Exp{i:03d}"].value for i in range(EXPRESSIONS)], solved.expression[k],
                                   atol=1e-5)
    rig.mxr_micro_layers[0].intensity = 2.0
    scene.frame_set(scene.frame_start + 12)
    assert rig.data.shape_keys.key_blocks[baked.result.micro_keys[0]].value == pytest.approx(2.0, abs=1e-5)


def test_a_second_take_leaves_the_first_ones_actions_and_switching_back_plays_it(empty_blend, flame_file, model,
                                                                                  landmarks, tmp_path):
    from mxr.mxr_addon.takes import rig_takes
    from test_takes import snapshot

    scene = empty_blend
    motions = [known_motion(8, seed=seed) for seed in (5, 6)]
    for (expression, pose), name in zip(motions, ("first", "second")):
        save_take(flame_take(model, landmarks, np.zeros(0), expression, pose), tmp_path / f"{name}.npz")
    rig = import_flame(scene, flame_file, expressions=EXPRESSIONS)
    bpy.context.view_layer.objects.active = rig
    datablocks = [rig.data.shape_keys, rig, armature_of(rig)]
    bake_take_file(scene, tmp_path / "first.npz", rig, reference_video=False)
    first = [datablock.animation_data.action for datablock in datablocks]
    before = [snapshot(action) for action in first]
    bake_take_file(scene, tmp_path / "second.npz", rig, reference_video=False)
    assert not set(datablock.animation_data.action for datablock in datablocks) & set(first)
    assert [snapshot(action) for action in first] == before  # expressions, face found, bones: as baked

    takes = rig_takes(rig)
    assert [take.name.label for take in takes] == ["first", "second"]
    assert bpy.ops.mxr.switch_take(take=takes[0].name.key) == {"FINISHED"}
    assert [datablock.animation_data.action for datablock in datablocks] == first
    for k in (2, 7):
        scene.frame_set(scene.frame_start + k)
        np.testing.assert_allclose(bone_local_flame_rotations(armature_of(rig))[JAW], rodrigues(motions[0][1][k, JAW]),
                                   atol=0.02)
