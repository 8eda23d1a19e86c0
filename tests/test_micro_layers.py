"""Tuning a baked micro-expression live in real bpy: intensity, shift, duration, its marker, reset."""
from __future__ import annotations

import tempfile
from pathlib import Path

import bpy
import numpy as np
import pytest

from conftest import synthetic_head, synthetic_take
from mxr.models.micro_keys import MICRO_LAYER_FROM_EVENTS
from mxr.models.network.event_profile import micro_profile
from mxr.mxr_addon.heads import remember
from mxr.mxr_addon.micro_layers import micro_curve, rig_with_layers
from mxr.mxr_addon.panels import VIEW3D_PT_mxr_micro
from mxr.mxr_addon.pipeline import bake_take_file
from mxr.mxr_addon.rig import build_rig
from mxr.ops.take import MicroEvent, save_take

FRAME_START = 101
APEX = FRAME_START + 9  # scene frame of the event's apex


def micro_take(head, events=1):
    """40 frames with ``events`` micro-expressions in the micro layer: mouth (onset 6, apex 9,
    offset 15), then brows (onset 24, apex 27, offset 33)."""
    take = synthetic_take(head, frames=40, invalid=())
    times = np.arange(40) / take.fps
    profiles = [micro_profile(times, 0.2, 0.3, 0.0, 0.5), micro_profile(times, 0.8, 0.9, 0.0, 1.1)][:events]
    basis = head.landmark_basis() * 1000.0 * 0.6  # (K, 478, 3) mm
    take.micro_mm[:] = sum(profile[:, None, None] * basis[k] for k, profile in enumerate(profiles)) if events else 0.0
    take.events = [MicroEvent(6, 9, 15, "mouth", 0.8, 0.9), MicroEvent(24, 27, 33, "brows", 0.5, 0.9)][:events]
    take.settings = {"network": {"micro_layer": MICRO_LAYER_FROM_EVENTS}}
    return take


_TAKES = tempfile.TemporaryDirectory()  # removed when the tests end


def bake(scene, rig, head, take, name="take"):
    """Bake ``take`` onto ``rig`` as the Bake Take operator does (keys, markers, layers), from the
    file ``<name>.npz``: baking another take into the same file is a re-bake of the same take."""
    path = Path(_TAKES.name) / f"{name}.npz"
    save_take(take, path)
    bake_take_file(scene, path, rig, reference_video=False)


@pytest.fixture
def baked(empty_blend):
    head = remember(synthetic_head())
    scene = empty_blend
    scene.frame_start = FRAME_START
    rig = build_rig(head, scene.collection)
    bpy.context.view_layer.objects.active = rig
    bake(scene, rig, head, micro_take(head))
    return scene, rig, head


def keys_of(rig, layer):
    """(n, 2) frame, value of the layer's key's F-curve."""
    curve = micro_curve(rig, layer.key_name)
    return np.array([tuple(point.co) for point in curve.keyframe_points])


def value_at(scene, rig, name, frame):
    scene.frame_set(frame)
    return rig.data.shape_keys.key_blocks[name].value


def our_markers(scene, rig):
    prefix = f"MXR {rig.name}: "
    return [(marker.frame, marker.name) for marker in scene.timeline_markers if marker.name.startswith(prefix)]


def test_the_bake_records_one_untuned_layer_per_micro_key(baked):
    scene, rig, _ = baked
    assert [layer.key_name for layer in rig.mxr_micro_layers] == ["MXR_Micro mouth 110"]
    layer = rig.mxr_micro_layers[0]
    assert (layer.region, layer.onset_frame, layer.apex_frame, layer.offset_frame) == ("mouth", 107, 110, 116)
    assert layer.peak_mm == pytest.approx(0.8)
    assert (layer.intensity, layer.shift_frames, layer.stretch) == (1.0, 0.0, 1.0)
    # Not animatable: keyed, they would change without moving the curve they stand for.
    assert not any(layer.bl_rna.properties[name].is_animatable for name in ("intensity", "shift_frames", "stretch"))
    assert our_markers(scene, rig) == [(APEX, layer.marker)]  # it knows its marker by name
    assert VIEW3D_PT_mxr_micro.poll(bpy.context)


def test_intensity_scales_the_key_and_says_so_on_the_marker(baked):
    scene, rig, _ = baked
    layer = rig.mxr_micro_layers[0]
    captured = keys_of(rig, layer)
    captured_apex = value_at(scene, rig, layer.key_name, APEX)
    assert captured_apex == pytest.approx(1.0, abs=1e-4)

    layer.intensity = 2.5
    tuned = keys_of(rig, layer)
    np.testing.assert_allclose(tuned[:, 0], captured[:, 0])
    np.testing.assert_allclose(tuned[:, 1], 2.5 * captured[:, 1], atol=1e-6)
    # Not clamped by the slider (the bake gives micro keys -2..2): it widens to the new peak.
    assert value_at(scene, rig, layer.key_name, APEX) == pytest.approx(2.5 * captured_apex, abs=1e-5)
    assert rig.data.shape_keys.key_blocks[layer.key_name].slider_max == 3.0
    assert our_markers(scene, rig) == [(APEX, f"MXR {rig.name}: mouth 2.00 mm (107-116)")]


def test_shift_and_duration_move_the_keys_about_the_apex_and_the_marker_follows(baked):
    scene, rig, _ = baked
    layer = rig.mxr_micro_layers[0]
    captured = keys_of(rig, layer)
    apex_value = value_at(scene, rig, layer.key_name, APEX)

    layer.shift_frames = 3.0
    layer.stretch = 2.0
    tuned = keys_of(rig, layer)
    np.testing.assert_allclose(tuned[:, 0], APEX + 3.0 + (captured[:, 0] - APEX) * 2.0, atol=1e-4)
    np.testing.assert_allclose(tuned[:, 1], captured[:, 1], atol=1e-6)
    assert layer.apex_now() == APEX + 3
    assert value_at(scene, rig, layer.key_name, APEX + 3) == pytest.approx(apex_value, abs=1e-5)
    assert value_at(scene, rig, layer.key_name, APEX) < 0.9 * apex_value  # the old apex is on the rise now
    # onset 107 and offset 116 about apex 110, twice as long, 3 frames later: 107 and 125.
    assert our_markers(scene, rig) == [(APEX + 3, f"MXR {rig.name}: mouth 0.80 mm (107-125)")]


def test_reset_gives_back_the_capture_with_hand_edits_kept(baked):
    scene, rig, _ = baked
    layer = rig.mxr_micro_layers[0]
    captured = keys_of(rig, layer)
    first_marker = our_markers(scene, rig)
    layer.intensity, layer.shift_frames, layer.stretch = 2.0, -4.0, 0.5

    curve = micro_curve(rig, layer.key_name)
    apex_key = int(np.argmax(captured[:, 1]))
    curve.keyframe_points[apex_key].co.y = 3.0  # the animator drags the apex key up by hand
    curve.update()

    assert bpy.ops.mxr.micro_reset() == {"FINISHED"}
    assert (layer.intensity, layer.shift_frames, layer.stretch) == (1.0, 0.0, 1.0)
    back = keys_of(rig, layer)
    np.testing.assert_allclose(back[:, 0], captured[:, 0], atol=1e-4)
    expected = captured[:, 1].copy()
    expected[apex_key] = 1.5  # the hand edit, at the captured scale
    np.testing.assert_allclose(back[:, 1], expected, atol=1e-5)
    assert our_markers(scene, rig) == first_marker


def test_go_to_apex_jumps_to_the_tuned_apex(baked):
    scene, rig, _ = baked
    rig.mxr_micro_layers[0].shift_frames = 5.0
    scene.frame_set(FRAME_START)
    assert bpy.ops.mxr.micro_go_to_apex() == {"FINISHED"}
    assert scene.frame_current == APEX + 5


def test_a_key_whose_curve_is_gone_keeps_its_tuning_until_it_is_back(baked):
    """Renamed away, the key has no curve to tune: the slider gives its number back, nothing moves,
    and once the name is back the next tuning starts from the truth."""
    scene, rig, _ = baked
    layer = rig.mxr_micro_layers[0]
    captured, markers = keys_of(rig, layer), our_markers(scene, rig)
    block = rig.data.shape_keys.key_blocks[layer.key_name]
    block.name = "renamed by the animator"
    layer.intensity = 3.0
    layer.shift_frames = 2.0
    assert (layer.intensity, layer.shift_frames) == (1.0, 0.0) and our_markers(scene, rig) == markers
    block.name = layer.key_name
    np.testing.assert_allclose(keys_of(rig, layer), captured, atol=1e-6)
    layer.intensity = 2.0
    assert value_at(scene, rig, layer.key_name, APEX) == pytest.approx(2.0, abs=1e-4)


def test_the_marker_follows_under_a_long_rig_name(empty_blend):
    """Blender keeps 63 bytes of a marker's name: the layer knows it by that name."""
    head = remember(synthetic_head())
    scene = empty_blend
    scene.frame_start = FRAME_START
    rig = build_rig(head, scene.collection, name="MXR performer_take_03_final_cleanup_version_A")
    bake(scene, rig, head, micro_take(head, events=2))
    assert all(len(name.encode()) <= 63 for _, name in our_markers(scene, rig))
    rig.mxr_micro_layers[1].shift_frames = 4.0
    assert [frame for frame, _ in our_markers(scene, rig)] == [APEX, FRAME_START + 27 + 4]


def test_a_copy_of_the_rig_leaves_the_originals_marker_alone(baked):
    scene, rig, _ = baked
    copy = rig.copy()
    scene.collection.objects.link(copy)
    markers = our_markers(scene, rig)
    copy.mxr_micro_layers[0].shift_frames = 5.0
    assert our_markers(scene, rig) == markers


def test_a_rebake_keeps_the_tuning_of_what_it_finds_again_and_a_take_without_events_leaves_none(baked):
    scene, rig, head = baked
    layer = rig.mxr_micro_layers[0]
    layer.intensity, layer.shift_frames = 3.0, 2.0
    tuned_keys, tuned_markers = keys_of(rig, layer), our_markers(scene, rig)
    bake(scene, rig, head, micro_take(head))  # the same event again: same keys, same marker as tuned
    layer = rig.mxr_micro_layers[0]
    assert (layer.key_name, layer.intensity, layer.shift_frames) == ("MXR_Micro mouth 110", 3.0, 2.0)
    np.testing.assert_allclose(keys_of(rig, layer), tuned_keys, atol=1e-5)
    assert our_markers(scene, rig) == tuned_markers
    assert value_at(scene, rig, "MXR_Micro mouth 110", APEX + 2) == pytest.approx(3.0, abs=1e-4)
    bake(scene, rig, head, micro_take(head, events=2))  # another event besides: it comes untuned
    assert [(layer.intensity, layer.shift_frames) for layer in rig.mxr_micro_layers] == [(3.0, 2.0), (1.0, 0.0)]
    bake(scene, rig, head, micro_take(head, events=0))
    assert len(rig.mxr_micro_layers) == 0 and our_markers(scene, rig) == []
    assert rig_with_layers(bpy.context) is None  # no list to show; the panel stays, to mark one (marking.py)
    assert VIEW3D_PT_mxr_micro.poll(bpy.context)


def test_solo_shows_one_micro_expression_and_again_all_never_touching_the_users_keys(empty_blend):
    head = remember(synthetic_head())
    scene = empty_blend
    rig = build_rig(head, scene.collection)
    bpy.context.view_layer.objects.active = rig
    mine = rig.shape_key_add(name="my_corrective", from_mix=False)
    bake(scene, rig, head, micro_take(head, events=2))
    blocks = rig.data.shape_keys.key_blocks
    names = [layer.key_name for layer in rig.mxr_micro_layers]
    assert len(names) == 2

    rig.mxr_micro_index = 1
    assert bpy.ops.mxr.micro_solo() == {"FINISHED"}
    assert [blocks[name].mute for name in names] == [True, False] and not mine.mute
    assert bpy.ops.mxr.micro_solo() == {"FINISHED"}  # soloed already: everything back
    assert [blocks[name].mute for name in names] == [False, False] and not mine.mute
    mine.mute = True  # the user's own switch stays theirs
    bpy.ops.mxr.micro_solo()
    assert mine.mute and [blocks[name].mute for name in names] == [True, False]
    bpy.ops.mxr.micro_solo()
    # A micro key the animator had muted is muted again after a solo of another one.
    blocks[names[0]].mute = True
    rig.mxr_micro_index = 1
    bpy.ops.mxr.micro_solo()
    rig.mxr_micro_index = 0
    bpy.ops.mxr.micro_solo()  # solo moves to the first key: it plays, the second is muted
    assert [blocks[name].mute for name in names] == [False, True] and rig.mxr_micro_solo == names[0]
    bpy.ops.mxr.micro_solo()
    assert [blocks[name].mute for name in names] == [True, False] and rig.mxr_micro_solo == ""


def test_loop_it_sets_the_preview_range_around_the_tuned_micro_expression(baked):
    scene, rig, _ = baked
    layer = rig.mxr_micro_layers[0]
    layer.shift_frames, layer.stretch = 10.0, 2.0  # onset 107 -> 114, offset 116 -> 132 (apex 110 -> 120)
    assert bpy.ops.mxr.micro_preview_range() == {"FINISHED"}
    margin = 0.25 * scene.render.fps / scene.render.fps_base
    assert scene.use_preview_range
    assert (scene.frame_preview_start, scene.frame_preview_end) == (int(np.floor(114 - margin)),
                                                                    int(np.ceil(132 + margin)))
    assert scene.frame_current == scene.frame_preview_start


def test_scale_all_multiplies_every_intensity_within_its_limits(empty_blend):
    head = remember(synthetic_head())
    scene = empty_blend
    rig = build_rig(head, scene.collection)
    bpy.context.view_layer.objects.active = rig
    bake(scene, rig, head, micro_take(head, events=2))
    first, second = rig.mxr_micro_layers
    apex_keys = [np.max(keys_of(rig, layer)[:, 1]) for layer in (first, second)]
    second.intensity = 4.0
    assert bpy.ops.mxr.micro_scale_all(factor=1.5) == {"FINISHED"}
    assert (first.intensity, second.intensity) == pytest.approx((1.5, 6.0))
    np.testing.assert_allclose([np.max(keys_of(rig, layer)[:, 1]) for layer in (first, second)],
                               [1.5 * apex_keys[0], 6.0 * apex_keys[1]], rtol=1e-5)
    assert bpy.ops.mxr.micro_scale_all(factor=2.0) == {"FINISHED"}  # 12 is past the limit of 10
    assert (first.intensity, second.intensity) == pytest.approx((3.0, 10.0))
