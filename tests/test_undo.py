"""Undo, in real bpy: every MXR operator that changes data is one step that Edit > Undo takes back
whole (Blender's memfile undo, driven through ``bpy.ops.ed``). Called from Python an operator
pushes no undo step of its own; Blender's UI pushes one after an operator flagged UNDO, so the
tests check the flag and push that step as the UI would. Undo reloads the file's data, so nothing
is held across it but names."""
from __future__ import annotations

import bpy
import pytest

from conftest import synthetic_take
from flame_fixtures import random_flame_arrays, write_flame_pickle
from test_arkit_bake import character
from test_micro_layers import micro_take
from mxr.models.open_head import load_open_head
from mxr.mxr_addon.takes import rig_takes
from mxr.ops.take import save_take


def scene_state() -> dict:
    """What an MXR operator may change, by name: objects, actions and their keys, shape keys,
    NLA strips, markers, micro layers, the scene's time, the active camera."""
    from test_addon_bake import curves_of

    scene = bpy.context.scene
    scene.frame_set(scene.frame_current)  # animated values as this frame shows them (undo restores them as saved)
    state = {
        "frame": scene.frame_current,
        "objects": sorted(obj.name for obj in bpy.data.objects),
        "actions": sorted((action.name, tuple(sorted((curve.data_path, curve.array_index, len(curve.keyframe_points),
                                                      round(sum(point.co[1] for point in curve.keyframe_points), 5))
                                                     for curve in curves_of(action))))
                          for action in bpy.data.actions),
        "time": (scene.frame_start, scene.frame_end, scene.render.fps, scene.render.fps_base),
        "markers": sorted((marker.frame, marker.name) for marker in scene.timeline_markers),
        "camera": scene.camera.name if scene.camera else None,
    }
    for obj in bpy.data.objects:
        key = obj.data.shape_keys if obj.type == "MESH" else None
        holders = [obj] + ([key] if key is not None else [])
        state[obj.name] = (
            [(block.name, round(block.value, 5), block.mute) for block in key.key_blocks] if key else [],
            [(holder.name, holder.animation_data.action.name if holder.animation_data.action else None,
              [(track.name, track.mute, [(strip.name, strip.mute) for strip in track.strips])
               for track in holder.animation_data.nla_tracks])
             for holder in holders if holder.animation_data is not None],
            [(layer.key_name, round(layer.intensity, 5), round(layer.shift_frames, 5), round(layer.stretch, 5))
             for layer in getattr(obj, "mxr_micro_layers", [])],
        )
    return state


def undoes(operator, *args, **kwargs) -> None:
    """Run ``operator``; it must change the scene, and one undo must give it back exactly."""
    assert "UNDO" in getattr(bpy.types, operator.idname()).bl_options
    bpy.ops.ed.undo_push(message="before")
    before = scene_state()
    assert operator(*args, **kwargs) == {"FINISHED"}
    changed = scene_state()
    assert changed != before
    bpy.ops.ed.undo_push(message=operator.idname_py())  # what the UI does after an UNDO operator
    bpy.ops.ed.undo()
    assert scene_state() == before
    bpy.ops.ed.redo()
    assert scene_state() == changed


@pytest.fixture
def take_file(empty_blend, tmp_path):
    path = tmp_path / "take.npz"
    save_take(micro_take(load_open_head(), events=2), path)
    return path


def test_importing_a_head_is_undone(empty_blend):
    undoes(bpy.ops.mxr.import_head)


def test_a_bake_is_undone_and_a_rebake_gives_the_first_back(take_file, tmp_path):
    undoes(bpy.ops.mxr.bake_take, filepath=str(take_file))  # a new head, actions, markers, the scene's end
    assert bpy.ops.mxr.bake_take(filepath=str(take_file)) == {"FINISHED"}
    other = tmp_path / "other.npz"
    save_take(synthetic_take(load_open_head(), frames=30, invalid=()), other)
    undoes(bpy.ops.mxr.bake_take, filepath=str(other))  # a second take on the same head


def test_switching_and_flattening_takes_are_undone(take_file, tmp_path):
    assert bpy.ops.mxr.bake_take(filepath=str(take_file)) == {"FINISHED"}
    other = tmp_path / "other.npz"
    save_take(synthetic_take(load_open_head(), frames=30, invalid=()), other)
    assert bpy.ops.mxr.bake_take(filepath=str(other)) == {"FINISHED"}
    rig = next(obj for obj in bpy.data.objects if obj.type == "MESH")
    first = next(take for take in rig_takes(rig) if take.name.label != "other")
    undoes(bpy.ops.mxr.switch_take, take=first.name.key)
    undoes(bpy.ops.mxr.flatten_take)


def test_micro_layer_edits_are_undone(take_file):
    assert bpy.ops.mxr.bake_take(filepath=str(take_file)) == {"FINISHED"}
    name = next(obj.name for obj in bpy.data.objects if obj.type == "MESH")
    bpy.context.view_layer.objects.active = bpy.data.objects[name]
    undoes(bpy.ops.mxr.micro_scale_all, factor=2.0)
    undoes(bpy.ops.mxr.micro_solo)
    bpy.data.objects[name].mxr_micro_layers[0].intensity = 1.7
    undoes(bpy.ops.mxr.micro_reset)


def test_an_arkit_bake_is_undone(empty_blend, tmp_path):
    save_take(synthetic_take(load_open_head(), frames=16, invalid=()), tmp_path / "take.npz")
    bpy.context.view_layer.objects.active = character(empty_blend)
    undoes(bpy.ops.mxr.bake_arkit, filepath=str(tmp_path / "take.npz"))


def test_importing_a_flame_rig_is_undone(empty_blend, tmp_path):
    flame_file = write_flame_pickle(tmp_path / "flame2023.pkl", random_flame_arrays(seed=3), "2023")
    undoes(bpy.ops.mxr.import_flame, filepath=str(flame_file), expressions=5)
