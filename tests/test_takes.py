"""Takes side by side on one rig in real bpy: a bake never changes an earlier take, a re-bake of
the same take replaces only its own actions, and takes can be listed and switched."""
from __future__ import annotations

import bpy
import numpy as np
import pytest

from conftest import synthetic_head, synthetic_take
from test_addon_bake import curves_of
from mxr.models.micro_keys import MICRO_LAYER_FROM_EVENTS
from mxr.models.network.event_profile import micro_profile
from mxr.mxr_addon.heads import remember
from mxr.mxr_addon.micro_layers import micro_curve
from mxr.mxr_addon.pipeline import bake_take_file
from mxr.mxr_addon.rig import build_rig
from mxr.mxr_addon.takes import rig_takes
from mxr.ops.take import MicroEvent, save_take

FRAME_START = 101


def take_with_events(head, seed, apexes):
    """30 frames (seed: the expressions) with a mouth micro-expression at each take frame in ``apexes``."""
    take = synthetic_take(head, frames=30, invalid=(), seed=seed)
    times = np.arange(30) / take.fps
    basis = head.landmark_basis() * 1000.0 * 0.6  # (K, 478, 3) mm
    take.micro_mm[:] = sum(micro_profile(times, (apex - 3) / take.fps, apex / take.fps, 0.0, (apex + 5) / take.fps)
                           [:, None, None] * basis[k] for k, apex in enumerate(apexes))
    take.events = [MicroEvent(apex - 3, apex, apex + 5, "mouth", 0.8, 0.9) for apex in apexes]
    take.settings = {"network": {"micro_layer": MICRO_LAYER_FROM_EVENTS}}
    return take


@pytest.fixture
def rig_and_files(empty_blend, tmp_path):
    head = remember(synthetic_head())
    empty_blend.frame_start = FRAME_START
    rig = build_rig(head, empty_blend.collection)
    bpy.context.view_layer.objects.active = rig
    save_take(take_with_events(head, seed=1, apexes=(9,)), tmp_path / "first.mxr.npz")
    save_take(take_with_events(head, seed=2, apexes=(9, 20)), tmp_path / "second.mxr.npz")
    return empty_blend, rig, head, tmp_path


def datablocks(rig):
    return [rig.data.shape_keys, rig]


def snapshot(action):
    """Everything a bake could overwrite in ``action``: its curves' keys and its frame range."""
    keys = {(curve.data_path, curve.array_index): [tuple(point.co) for point in curve.keyframe_points]
            for curve in curves_of(action)}
    return keys, tuple(action.frame_range)


def shape_of(rig, name):
    return np.array([point.co for point in rig.data.shape_keys.key_blocks[name].data])


def values_at(scene, rig, frame):
    scene.frame_set(frame)
    return {block.name: block.value for block in rig.data.shape_keys.key_blocks}, tuple(rig.rotation_euler)


def mxr_actions():
    return sorted(action.name for action in bpy.data.actions if action.get("mxr_owned"))


def switch(rig, label):
    take = next(take for take in rig_takes(rig) if take.name.label == label)
    assert bpy.ops.mxr.switch_take(take=take.name.key) == {"FINISHED"}


def test_a_later_take_leaves_an_earlier_one_in_its_nla_strip_as_it_was_baked(rig_and_files):
    scene, rig, head, folder = rig_and_files
    bake_take_file(scene, folder / "first.mxr.npz", rig, reference_video=False)
    first = [datablock.animation_data.action for datablock in datablocks(rig)]
    assert [action.name for action in first] == [f"{rig.name} Expressions · first", f"{rig.name} Head · first"]
    before = [snapshot(action) for action in first]
    first_micro = [layer.key_name for layer in rig.mxr_micro_layers]
    assert first_micro == [f"MXR_Micro mouth {FRAME_START + 9}"]
    first_shape = shape_of(rig, first_micro[0])
    strips = []
    for datablock, action in zip(datablocks(rig), first):  # the animator pushes the take down to the NLA
        strips.append(datablock.animation_data.nla_tracks.new().strips.new("first", FRAME_START, action))
        datablock.animation_data.action = None

    bake_take_file(scene, folder / "second.mxr.npz", rig, reference_video=False)
    second = [datablock.animation_data.action for datablock in datablocks(rig)]
    assert [action.name for action in second] == [f"{rig.name} Expressions · second", f"{rig.name} Head · second"]
    assert all(action.name in bpy.data.actions for action in first)
    assert [snapshot(action) for action in first] == before  # values, keys, frame range: untouched
    assert [strip.action for strip in strips] == first and all(action.use_fake_user for action in first)
    np.testing.assert_array_equal(shape_of(rig, first_micro[0]), first_shape)  # the first take's micro key is kept
    second_micro = [layer.key_name for layer in rig.mxr_micro_layers]  # a name the first take has gets ".001"
    assert second_micro == [f"MXR_Micro mouth {FRAME_START + 9}.001", f"MXR_Micro mouth {FRAME_START + 20}"]

    # The second take plays alone over the first one's strips: as it does with them muted.
    over_strips = values_at(scene, rig, FRAME_START + 9)
    for datablock in datablocks(rig):
        datablock.animation_data.nla_tracks[0].mute = True
    alone = values_at(scene, rig, FRAME_START + 9)
    assert over_strips[0] == pytest.approx(alone[0], abs=1e-6) and over_strips[1] == pytest.approx(alone[1])
    assert alone[0][first_micro[0]] == 0.0 and alone[0][second_micro[0]] == pytest.approx(1.0, abs=1e-4)

    # Re-baking the first take (its file made again) replaces its actions' content, in place.
    save_take(take_with_events(head, seed=3, apexes=(12,)), folder / "first.mxr.npz")
    names = mxr_actions()
    bake_take_file(scene, folder / "first.mxr.npz", rig, reference_video=False)
    assert mxr_actions() == names  # no duplicates
    assert [datablock.animation_data.action for datablock in datablocks(rig)] == first
    assert [strip.action for strip in strips] == first
    assert [snapshot(action) for action in first] != before
    assert [layer.key_name for layer in rig.mxr_micro_layers] == [f"MXR_Micro mouth {FRAME_START + 12}"]
    assert first_micro[0] not in rig.data.shape_keys.key_blocks  # its own earlier micro key, replaced
    assert all(name in rig.data.shape_keys.key_blocks for name in second_micro)  # the second take's, kept
    for datablock in datablocks(rig):
        datablock.animation_data.nla_tracks[0].mute = True
    values, _ = values_at(scene, rig, FRAME_START + 12)
    assert values[f"MXR_Micro mouth {FRAME_START + 12}"] == pytest.approx(1.0, abs=1e-4)
    assert [values[name] for name in second_micro] == [0.0, 0.0]  # held by the first take's action now


def test_takes_are_listed_and_switched_with_their_micro_layers(rig_and_files):
    scene, rig, head, folder = rig_and_files
    bake_take_file(scene, folder / "first.mxr.npz", rig, reference_video=False)
    rig.mxr_micro_layers[0].intensity = 2.0  # the animator tunes the first take
    first_layer = rig.mxr_micro_layers[0].key_name
    first_keys = [tuple(point.co) for point in micro_curve(rig, first_layer).keyframe_points]
    first = [datablock.animation_data.action for datablock in datablocks(rig)]
    first_values = values_at(scene, rig, FRAME_START + 9)
    bake_take_file(scene, folder / "second.mxr.npz", rig, reference_video=False)
    second = [datablock.animation_data.action for datablock in datablocks(rig)]
    second_values = values_at(scene, rig, FRAME_START + 9)
    assert first_layer not in [layer.key_name for layer in rig.mxr_micro_layers]  # the second take's are shown

    takes = rig_takes(rig)
    assert [take.name.label for take in takes] == ["first", "second"]
    assert [[action for _, action in take.actions] for take in takes] == [first, second]
    assert [datablock for datablock, _ in takes[0].actions] == datablocks(rig)

    markers = sorted(marker.name for marker in scene.timeline_markers)
    switch(rig, "first")
    assert [datablock.animation_data.action for datablock in datablocks(rig)] == first
    values, rotation = values_at(scene, rig, FRAME_START + 9)
    assert ({name: values[name] for name in first_values[0]}, rotation) == first_values
    later = [values[name] for name in values if name not in first_values[0]]  # the second take's detail and micro
    assert len(later) >= 2 and set(later) == {0.0}
    assert [(layer.key_name, layer.intensity) for layer in rig.mxr_micro_layers] == [(first_layer, 2.0)]
    assert [marker.name for marker in scene.timeline_markers] == [rig.mxr_micro_layers[0].marker]
    rig.mxr_micro_layers[0].intensity = 3.0  # tuning the take on show tunes its own action's curve
    np.testing.assert_allclose([point.co[1] for point in micro_curve(rig, first_layer).keyframe_points],
                               [1.5 * value for _, value in first_keys], atol=1e-6)

    switch(rig, "second")
    assert [datablock.animation_data.action for datablock in datablocks(rig)] == second
    assert values_at(scene, rig, FRAME_START + 9) == second_values
    assert [layer.intensity for layer in rig.mxr_micro_layers] == [1.0, 1.0]
    assert sorted(marker.name for marker in scene.timeline_markers) == markers
    switch(rig, "first")
    assert rig.mxr_micro_layers[0].intensity == 3.0
