"""Baking a take onto a character's own ARKit-named shape keys, in real bpy."""
from __future__ import annotations

import bpy
import pytest

from conftest import synthetic_take
from mxr.models.open_head import load_open_head
from mxr.models.retarget import retarget_expressions
from mxr.mxr_addon.pipeline import bake_arkit_file
from mxr.mxr_addon.rig import build_rig
from mxr.ops.errors import MxrError
from mxr.ops.take import MicroEvent, save_take

# The character's keys: three ARKit units in three spellings, and one of the user's own.
CHARACTER_KEYS = {"EyeBlink_L": "eyeBlinkLeft", "blendShape1.jawOpen": "jawOpen", "mouth_smile_r": "mouthSmileRight"}


def character(scene, key_names=(*CHARACTER_KEYS, "my_corrective")):
    """A small mesh with a Basis and ``key_names``, and the user's own action on its Key keying
    ``my_corrective``."""
    mesh = bpy.data.meshes.new("Character")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    obj = bpy.data.objects.new("Character", mesh)
    scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for name in key_names:
        obj.shape_key_add(name=name, from_mix=False)
    if "my_corrective" in key_names:
        block = mesh.shape_keys.key_blocks["my_corrective"]
        block.value = 0.3
        block.keyframe_insert("value", frame=1)
    return obj


def test_the_units_are_keyed_on_the_characters_keys_and_nothing_else_changes(empty_blend, tmp_path):
    scene = empty_blend
    head = load_open_head()
    take = synthetic_take(head, frames=16, invalid=(4,))
    take.events = [MicroEvent(6, 8, 11, "mouth", 0.4, 0.9)]
    save_take(take, tmp_path / "take.npz")
    obj = character(scene)
    users_action = obj.data.shape_keys.animation_data.action
    scene.frame_start = 1

    baked = bake_arkit_file(scene, tmp_path / "take.npz", obj)
    assert sorted(baked.result.keys) == sorted(CHARACTER_KEYS)
    assert baked.result.frames_keyed == 15 and baked.events_marked == 1
    assert any("49 of the 52 ARKit units have no shape key" in w for w in baked.result.warnings)
    assert users_action.use_fake_user and obj.data.shape_keys.animation_data.action != users_action
    assert any("kept your action" in w for w in baked.result.warnings)

    expected = retarget_expressions(head, take.deformation_mm(), take.neutral_mm)  # (T, 52)
    units = list(head.expression_names)
    blocks = obj.data.shape_keys.key_blocks
    for frame in (0, 7, 15):
        scene.frame_set(scene.frame_start + frame)
        for key_name, unit in CHARACTER_KEYS.items():
            assert blocks[key_name].value == pytest.approx(expected[frame, units.index(unit)], abs=1e-5)
    assert blocks["my_corrective"].value == pytest.approx(0.3)  # not animated by MXR: the user's value
    assert len(blocks) == 5  # no key added
    assert [m.frame for m in scene.timeline_markers] == [scene.frame_start + 8]


def test_a_mesh_without_arkit_keys_is_refused_and_left_as_it_was(empty_blend, tmp_path):
    scene = empty_blend
    take = synthetic_take(load_open_head(), frames=6, invalid=())
    save_take(take, tmp_path / "take.npz")
    obj = character(scene, key_names=("my_corrective", "smile"))
    action = obj.data.shape_keys.animation_data.action
    actions = set(bpy.data.actions)
    with pytest.raises(MxrError, match="no ARKit-named shape keys"):
        bake_arkit_file(scene, tmp_path / "take.npz", obj)
    assert obj.data.shape_keys.animation_data.action == action and set(bpy.data.actions) == actions
    assert not action.use_fake_user and len(scene.timeline_markers) == 0


def test_the_operator_bakes_onto_the_active_mesh(empty_blend, tmp_path):
    scene = empty_blend
    save_take(synthetic_take(load_open_head(), frames=6, invalid=()), tmp_path / "take.npz")
    obj = character(scene)
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.mxr.bake_arkit(filepath=str(tmp_path / "take.npz")) == {"FINISHED"}
    assert obj.data.shape_keys.animation_data.action.get("mxr_owned")
    with pytest.raises(RuntimeError, match="take file not found"):  # bpy.ops turns the ERROR report into this
        bpy.ops.mxr.bake_arkit(filepath=str(tmp_path / "missing.npz"))


def test_mxrs_own_heads_are_sent_to_bake_take(empty_blend, tmp_path):
    scene = empty_blend
    save_take(synthetic_take(load_open_head(), frames=6, invalid=()), tmp_path / "take.npz")
    rig = build_rig(load_open_head(), scene.collection)
    with pytest.raises(MxrError, match="use Bake Take"):
        bake_arkit_file(scene, tmp_path / "take.npz", rig)
    assert rig.data.shape_keys.animation_data is None
