"""Baking onto a character's own names through its unit map, in real bpy: presets, gains, the
user's presets, the map kept in the .blend and undone like any edit."""
from __future__ import annotations

import json

import bpy
import pytest

from conftest import synthetic_take
from test_arkit_bake import character
from mxr.models.open_head import load_open_head
from mxr.models.unit_mapping import UnitMap
from mxr.mxr_addon.curves import action_curves
from mxr.mxr_addon.pipeline import bake_arkit_file
from mxr.mxr_addon.rig import build_rig
from mxr.mxr_addon.unit_mapping import store_unit_map, stored_unit_map
from mxr.ops.errors import MxrError
from mxr.ops.take import save_take

# Character Creator 4 Extended names -> the ARKit unit each plays (browInnerUp plays two keys).
CC_KEYS = {"Eye_Blink_L": "eyeBlinkLeft", "Eye_L_Look_Down": "eyeLookDownLeft", "Mouth_Smile_L": "mouthSmileLeft",
           "Brow_Raise_Inner_L": "browInnerUp", "Brow_Raise_Inner_R": "browInnerUp", "Jaw_Open": "jawOpen"}
ARKIT_KEYS = ("eyeBlinkLeft", "eyeLookDownLeft", "mouthSmileLeft", "browInnerUp", "jawOpen")
FRAMES = (0, 5, 11)


@pytest.fixture
def take_path(empty_blend, tmp_path):
    path = tmp_path / "take.npz"
    save_take(synthetic_take(load_open_head(), frames=12, invalid=(3,)), path)
    return path


@pytest.fixture
def user_config(tmp_path, monkeypatch):
    """Blender's user config folder in the test's own folder (BLENDER_USER_CONFIG, Blender's setting)."""
    monkeypatch.setenv("BLENDER_USER_CONFIG", str(tmp_path / "config"))
    return tmp_path / "config"


def make_active(obj: bpy.types.Object) -> bpy.types.Object:
    bpy.context.view_layer.objects.active = obj
    return obj


def values_at(obj: bpy.types.Object, names, frames=FRAMES) -> dict[str, list[float]]:
    """Each key's value as the scene plays it at ``frames`` (from the scene's start)."""
    scene = bpy.context.scene
    played = {name: [] for name in names}
    for frame in frames:
        scene.frame_set(scene.frame_start + frame)
        for name in names:
            played[name].append(obj.data.shape_keys.key_blocks[name].value)
    return played


def arkit_reference(scene, take_path) -> dict[str, list[float]]:
    """The automatic bake of the take on an ARKit-named copy of the character: unit -> values."""
    reference = character(scene, key_names=ARKIT_KEYS)
    bake_arkit_file(scene, take_path, reference)
    return values_at(reference, ARKIT_KEYS)


def test_a_character_creator_character_is_baked_through_its_preset(empty_blend, take_path):
    scene = empty_blend
    expected = arkit_reference(scene, take_path)
    cc = make_active(character(scene, key_names=(*CC_KEYS, "my_corrective")))
    assert bpy.ops.mxr.unit_map_preset(preset="builtin:cc4_extended") == {"FINISHED"}
    assert cc.mxr_unit_map.preset == "Character Creator 4 Extended"

    baked = bake_arkit_file(scene, take_path, cc)
    assert sorted(baked.result.keys) == sorted(CC_KEYS)
    played = values_at(cc, CC_KEYS)
    for name, unit in CC_KEYS.items():
        assert played[name] == pytest.approx(expected[unit], abs=1e-5), name
    assert any(f"shape keys the unit map names that {cc.name} lacks, skipped: Brow_Drop_L" in warning
               for warning in baked.result.warnings)
    assert any("47 of the 52 ARKit units have no shape key" in warning for warning in baked.result.warnings)
    assert len(cc.data.shape_keys.key_blocks) == len(CC_KEYS) + 2  # Basis and the user's key: none added


def test_bake_onto_arkit_keys_is_offered_once_a_map_names_keys(empty_blend):
    make_active(build_rig(load_open_head(), empty_blend.collection))  # MXR's own head: no unit map
    assert not bpy.types.VIEW3D_PT_mxr_unit_map.poll(bpy.context)
    make_active(character(empty_blend, key_names=("Eye_L_Look_Down", "Brow_Raise_Inner_L")))  # not ARKit spellings
    assert bpy.types.VIEW3D_PT_mxr_unit_map.poll(bpy.context)
    assert not bpy.ops.mxr.bake_arkit.poll()
    assert bpy.ops.mxr.unit_map_preset(preset="builtin:arkit_automatic") == {"FINISHED"}
    assert not bpy.ops.mxr.bake_arkit.poll()  # gains, but still matching by name
    assert bpy.ops.mxr.unit_map_preset(preset="builtin:cc4_extended") == {"FINISHED"}
    assert bpy.ops.mxr.bake_arkit.poll()


def test_custom_names_set_by_hand_play_their_units_with_the_gains(empty_blend, take_path):
    scene = empty_blend
    expected = arkit_reference(scene, take_path)
    custom = make_active(character(scene, key_names=("Blink_Left", "JawDown", "Grin", "Grin_Wide")))
    assert bpy.ops.mxr.unit_map_preset(preset="builtin:arkit_automatic") == {"FINISHED"}
    settings = custom.mxr_unit_map
    for unit, names in {"eyeBlinkLeft": ["Blink_Left"], "jawOpen": ["JawDown"],
                        "mouthSmileLeft": ["Grin", "Grin_Wide"]}.items():
        settings.unit_index = settings.units.find(unit)
        for name in names:
            assert bpy.ops.mxr.unit_map_add_key() == {"FINISHED"}
            settings.units[unit].keys[-1].name = name
    settings.units["jawOpen"].gain = 1.5
    settings.regions["mouth"].gain = 0.5
    settings.units["mouthSmileLeft"].gain = 0.8

    bake_arkit_file(scene, take_path, custom)
    played = values_at(custom, ("Blink_Left", "JawDown", "Grin", "Grin_Wide"))
    assert played["Blink_Left"] == pytest.approx(expected["eyeBlinkLeft"], abs=1e-5)
    assert played["JawDown"] == pytest.approx([1.5 * value for value in expected["jawOpen"]], abs=1e-5)
    assert played["Grin"] == pytest.approx([0.4 * value for value in expected["mouthSmileLeft"]], abs=1e-5)
    assert played["Grin_Wide"] == played["Grin"]

    settings.unit_index = settings.units.find("mouthSmileLeft")
    assert bpy.ops.mxr.unit_map_remove_key(index=1) == {"FINISHED"}  # Grin_Wide no longer plays the smile
    bake_arkit_file(scene, take_path, custom)
    key = custom.data.shape_keys
    paths = {curve.data_path for curve in action_curves(key.animation_data.action, key)}
    assert 'key_blocks["Grin_Wide"].value' not in paths and 'key_blocks["Grin"].value' in paths


def test_a_gain_past_the_keys_range_is_said(empty_blend, take_path):
    scene = empty_blend
    obj = make_active(character(scene, key_names=("jawOpen",)))
    assert bpy.ops.mxr.unit_map_auto_fill() == {"FINISHED"}
    obj.mxr_unit_map.regions["jaw"].gain = 4.0
    baked = bake_arkit_file(scene, take_path, obj)
    assert any("beyond the shape key's range play clipped" in warning and "jawOpen reaches" in warning
               for warning in baked.result.warnings)


def test_a_map_whose_keys_the_mesh_lacks_is_refused_and_nothing_changes(empty_blend, take_path):
    scene = empty_blend
    obj = make_active(character(scene, key_names=("Blink_Left", "my_corrective")))
    assert bpy.ops.mxr.unit_map_preset(preset="builtin:cc4_extended") == {"FINISHED"}
    action = obj.data.shape_keys.animation_data.action
    with pytest.raises(MxrError, match="none of the shape keys Character's unit map names is on it"):
        bake_arkit_file(scene, take_path, obj)
    assert obj.data.shape_keys.animation_data.action == action and not action.get("mxr_owned")


def test_auto_fill_takes_the_arkit_named_keys_and_keeps_the_gains(empty_blend):
    obj = make_active(character(empty_blend))  # EyeBlink_L, blendShape1.jawOpen, mouth_smile_r, my_corrective
    store_unit_map(obj, UnitMap(unit_gains={"jawOpen": 2.0}))
    assert bpy.ops.mxr.unit_map_auto_fill() == {"FINISHED"}
    unit_map = stored_unit_map(obj)
    assert unit_map.targets == {"eyeBlinkLeft": ("EyeBlink_L",), "jawOpen": ("blendShape1.jawOpen",),
                                "mouthSmileRight": ("mouth_smile_r",)}
    assert unit_map.unit_gains == {"jawOpen": 2.0}
    make_active(character(empty_blend, key_names=("smile",)))
    with pytest.raises(RuntimeError, match="no shape keys named as ARKit units"):
        bpy.ops.mxr.unit_map_auto_fill()


def test_a_users_preset_is_saved_and_loaded_onto_another_character(empty_blend, user_config):
    first = make_active(character(empty_blend, key_names=("Blink_Left", "JawDown")))
    store_unit_map(first, UnitMap({"eyeBlinkLeft": ("Blink_Left",), "jawOpen": ("JawDown",)},
                                  {"jawOpen": 1.25}, {"eyes": 0.5}, name="draft"))
    assert bpy.ops.mxr.unit_map_save_preset(name="Studio Rig: v2") == {"FINISHED"}
    path = user_config / "mxr" / "unit_maps" / "Studio Rig_ v2.json"
    assert json.loads(path.read_text())["units"] == {"eyeBlinkLeft": "Blink_Left", "jawOpen": "JawDown"}
    assert first.mxr_unit_map.preset == "Studio Rig_ v2"

    second = make_active(character(empty_blend, key_names=("Blink_Left", "JawDown")))
    assert bpy.ops.mxr.unit_map_preset(preset="user:Studio Rig_ v2") == {"FINISHED"}
    loaded = stored_unit_map(second)
    assert (loaded.targets, loaded.unit_gains, loaded.region_gains, loaded.name) == (
        {"eyeBlinkLeft": ("Blink_Left",), "jawOpen": ("JawDown",)}, {"jawOpen": 1.25}, {"eyes": 0.5},
        "Studio Rig_ v2")
    path.write_text('{"mxr_unit_map": 1, "units": {"blink": "Blink_Left"}}')
    with pytest.raises(RuntimeError, match="Studio Rig_ v2.json: units: 'blink' is not an ARKit unit"):
        bpy.ops.mxr.unit_map_preset(preset="user:Studio Rig_ v2")
    assert stored_unit_map(second) == loaded  # the broken preset changed nothing


def test_the_map_is_kept_in_the_blend_file(empty_blend, tmp_path):
    obj = character(empty_blend, key_names=("Eye_Blink_L", "Mouth_Smile_L"))
    unit_map = UnitMap({"eyeBlinkLeft": ("Eye_Blink_L",), "mouthSmileLeft": ("Mouth_Smile_L", "Mouth_Smile_L.001")},
                       {"mouthSmileLeft": 1.4}, {"mouth": 0.9}, name="Kept")
    store_unit_map(obj, unit_map)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "character.blend"))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "character.blend"))
    assert stored_unit_map(bpy.data.objects["Character"]) == unit_map


def test_loading_a_preset_is_one_undo_step(empty_blend):
    name = make_active(character(empty_blend, key_names=("Eye_Blink_L",))).name  # undo reloads: keep names only
    bpy.ops.ed.undo_push(message="before")
    assert "UNDO" in bpy.types.MXR_OT_unit_map_preset.bl_options
    assert bpy.ops.mxr.unit_map_preset(preset="builtin:cc4_extended") == {"FINISHED"}
    bpy.ops.ed.undo_push(message="mxr.unit_map_preset")
    bpy.ops.ed.undo()
    assert stored_unit_map(bpy.data.objects[name]) is None
    bpy.ops.ed.redo()
    assert stored_unit_map(bpy.data.objects[name]).name == "Character Creator 4 Extended"
