"""Baking a take onto a character's own ARKit-named shape keys, in real bpy."""
from __future__ import annotations

import bpy
import pytest

from conftest import synthetic_take
from mxr.models.bake_plan import event_frames
from mxr.models.open_head import load_open_head
from mxr.models.retarget import solve_units
from mxr.mxr_addon.curves import action_curves
from mxr.mxr_addon.pipeline import bake_arkit_file
from mxr.mxr_addon.rig import build_rig
from mxr.ops.errors import MxrError
from mxr.ops.take import MicroEvent, save_take

# The character's keys: three ARKit units in three spellings, and one of the user's own.
CHARACTER_KEYS = {"EyeBlink_L": "eyeBlinkLeft", "blendShape1.jawOpen": "jawOpen", "mouth_smile_r": "mouthSmileRight"}


def character(scene, key_names=(*CHARACTER_KEYS, "my_corrective")):
    """A small mesh with a Basis and ``key_names``, and the user's own action on its Key keying
    ``my_corrective`` (0.3 at frame 1, 0.9 at frame 11)."""
    mesh = bpy.data.meshes.new("Character")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    obj = bpy.data.objects.new("Character", mesh)
    scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for name in key_names:
        obj.shape_key_add(name=name, from_mix=False)
    if "my_corrective" in key_names:
        block = mesh.shape_keys.key_blocks["my_corrective"]
        for frame, value in ((1, 0.3), (11, 0.9)):
            block.value = value
            block.keyframe_insert("value", frame=frame)
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
    scene.render.fps = 24  # the user's; matched to the take's on request, and said so

    baked = bake_arkit_file(scene, tmp_path / "take.npz", obj, match_take=True)
    assert sorted(baked.result.keys) == sorted(CHARACTER_KEYS)
    assert baked.result.frames_keyed == 15 and baked.events_marked == 1
    assert any("49 of the 52 ARKit units have no shape key" in w for w in baked.result.warnings)
    # The user's action now plays from an NLA track under MXR's, and still moves their key.
    animation = obj.data.shape_keys.animation_data
    assert animation.action != users_action and animation.action.get("mxr_owned")
    assert [strip.action for track in animation.nla_tracks for strip in track.strips] == [users_action]
    assert any("plays from the NLA track" in w for w in baked.result.warnings)
    assert any("the scene now runs at the take's 30 frames/s (it was 24)" in w for w in baked.result.warnings)

    # The units carry the micro-expression here (no key of its own): its frames are not smoothed.
    expected = solve_units(head, take.deformation_mm(), take.neutral_mm, seconds=take.timestamps_s,
                           untied=event_frames(take.events, take.frame_count)).coefficients  # (T, 52)
    units = list(head.expression_names)
    blocks = obj.data.shape_keys.key_blocks
    for frame in (0, 7, 15):
        scene.frame_set(scene.frame_start + frame)
        for key_name, unit in CHARACTER_KEYS.items():
            assert blocks[key_name].value == pytest.approx(expected[frame, units.index(unit)], abs=1e-5)
    scene.frame_set(6)
    assert blocks["my_corrective"].value == pytest.approx(0.6)  # the user's curve, halfway from 0.3 to 0.9
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


def test_the_operator_is_offered_only_for_a_mesh_with_arkit_keys(empty_blend):
    scene = empty_blend
    plain = character(scene, key_names=("my_corrective", "smile"))
    bpy.context.view_layer.objects.active = plain
    assert not bpy.ops.mxr.bake_arkit.poll()
    bpy.context.view_layer.objects.active = build_rig(load_open_head(), scene.collection)  # MXR's own: Bake Take
    assert not bpy.ops.mxr.bake_arkit.poll()
    bpy.context.view_layer.objects.active = character(scene)
    assert bpy.ops.mxr.bake_arkit.poll()


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


def test_a_copy_of_a_baked_character_gets_its_own_action(empty_blend, tmp_path):
    scene = empty_blend
    head = load_open_head()
    save_take(synthetic_take(head, frames=6, invalid=(), seed=1), tmp_path / "first.npz")
    save_take(synthetic_take(head, frames=6, invalid=(), seed=2), tmp_path / "second.npz")
    original = character(scene, key_names=tuple(CHARACTER_KEYS))
    bake_arkit_file(scene, tmp_path / "first.npz", original)
    copy = original.copy()
    copy.data = original.data.copy()  # Shift D: the copy's Key shares MXR's action
    scene.collection.objects.link(copy)
    scene.frame_set(scene.frame_start + 3)
    before = original.data.shape_keys.key_blocks["blendShape1.jawOpen"].value
    bake_arkit_file(scene, tmp_path / "second.npz", copy)
    assert copy.data.shape_keys.animation_data.action != original.data.shape_keys.animation_data.action
    scene.frame_set(scene.frame_start + 3)
    assert original.data.shape_keys.key_blocks["blendShape1.jawOpen"].value == pytest.approx(before)
    assert copy.data.shape_keys.key_blocks["blendShape1.jawOpen"].value != pytest.approx(before)


def test_a_rebake_drops_the_curve_of_a_key_renamed_since(empty_blend, tmp_path):
    scene = empty_blend
    save_take(synthetic_take(load_open_head(), frames=6, invalid=()), tmp_path / "take.npz")
    obj = character(scene, key_names=tuple(CHARACTER_KEYS))
    bake_arkit_file(scene, tmp_path / "take.npz", obj)
    obj.data.shape_keys.key_blocks["EyeBlink_L"].name = "old_blink"  # no longer an ARKit name
    bake_arkit_file(scene, tmp_path / "take.npz", obj)
    action = obj.data.shape_keys.animation_data.action
    paths = sorted(curve.data_path for curve in action_curves(action, obj.data.shape_keys))
    assert paths == ['key_blocks["blendShape1.jawOpen"].value', 'key_blocks["mouth_smile_r"].value']


def test_what_cannot_be_baked_whole_is_refused_first(empty_blend, tmp_path):
    scene = empty_blend
    head = load_open_head()
    take = synthetic_take(head, frames=6, invalid=tuple(range(6)))  # no face anywhere
    save_take(take, tmp_path / "faceless.npz")
    obj = character(scene)
    timing = (scene.render.fps, scene.frame_end)
    with pytest.raises(MxrError, match="has a face"):
        bake_arkit_file(scene, tmp_path / "faceless.npz", obj)
    save_take(synthetic_take(head, frames=6, invalid=()), tmp_path / "take.npz")
    animation = obj.data.shape_keys.animation_data
    track = animation.nla_tracks.new()
    track.strips.new("mine", 1, animation.action)
    animation.use_tweak_mode = True
    with pytest.raises(MxrError, match="tweak mode"):
        bake_arkit_file(scene, tmp_path / "take.npz", obj)
    assert (scene.render.fps, scene.frame_end) == timing and not [a for a in bpy.data.actions if a.get("mxr_owned")]
