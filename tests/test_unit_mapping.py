"""Unit maps without Blender: JSON presets checked on the way in, gains per unit and region, the
values each shape key plays."""
import json

import numpy as np
import pytest

from mxr.models.arkit import ARKIT_UNITS
from mxr.models.open_head import load_open_head
from mxr.models.unit_mapping import (REGIONS, UnitMap, UnitMapError, builtin_unit_maps, named_targets, on_character,
                                     read_unit_map, region_of, unit_map_from_json, unit_map_to_json, write_unit_map)


def preset(**fields) -> str:
    return json.dumps({"mxr_unit_map": 1, **fields})


def test_the_52_units_are_the_built_in_heads_and_each_is_in_one_region():
    assert ARKIT_UNITS == load_open_head().expression_names
    assert sorted(unit for units in REGIONS.values() for unit in units) == sorted(ARKIT_UNITS)
    assert set(REGIONS) == {"brows", "eyes", "cheeks", "nose", "jaw", "mouth"}
    assert (region_of("browInnerUp"), region_of("eyeLookInLeft"), region_of("cheekPuff"), region_of("noseSneerLeft"),
            region_of("jawOpen"), region_of("mouthSmileLeft"), region_of("tongueOut")) == (
        "brows", "eyes", "cheeks", "nose", "jaw", "mouth", "mouth")


def test_a_map_survives_json_and_a_file():
    unit_map = UnitMap({"eyeBlinkLeft": ("Eye_Blink_L",), "browInnerUp": ("Brow_Raise_Inner_L", "Brow_Raise_Inner_R")},
                       {"mouthSmileLeft": 1.5, "eyeLookUpLeft": -1.0}, {"mouth": 1.2}, name="Mine", source="by hand")
    assert unit_map_from_json(unit_map_to_json(unit_map)) == unit_map
    document = json.loads(unit_map_to_json(unit_map))
    assert document["units"] == {"browInnerUp": ["Brow_Raise_Inner_L", "Brow_Raise_Inner_R"],
                                 "eyeBlinkLeft": "Eye_Blink_L"}  # unit order; one key as a plain string
    assert UnitMap(name="ARKit").automatic and not unit_map.automatic


def test_a_map_round_trips_through_a_file(tmp_path):
    unit_map = UnitMap({"jawOpen": ("Jaw_Open",)}, region_gains={"jaw": 0.5}, name="Jaw only")
    write_unit_map(unit_map, tmp_path / "presets" / "jaw.json")
    assert read_unit_map(tmp_path / "presets" / "jaw.json") == unit_map


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", r"broken.json: not JSON \(.* line 1, column 2\)"),
    ('{"units": {}}', 'not an MXR unit map'),
    ('[1, 2]', 'not an MXR unit map'),
    ('{"mxr_unit_map": 2}', "version 2: this MXR reads version 1"),
    (preset(unit={}), "unknown field unit"),
    (preset(units={"EyeBlink_L": "Eye_Blink_L"}), r"'EyeBlink_L' is not an ARKit unit \(did you mean eyeBlinkLeft\?\)"),
    (preset(units={"mouthSmile": "Smile"}), r"'mouthSmile' is not an ARKit unit \(did you mean mouthSmileLeft\?\)"),
    (preset(units={"smile": "Smile"}), "'smile' is not an ARKit unit"),
    (preset(units={"jawOpen": 3}), "jawOpen must be a shape key name or a list of them"),
    (preset(units={"jawOpen": []}), "jawOpen names no shape key"),
    (preset(units={"jawOpen": ["Jaw", ""]}), "jawOpen has '', not a shape key name"),
    (preset(units={"jawOpen": ["Jaw", "Jaw"]}), "jawOpen names a shape key twice"),
    (preset(units=["jawOpen"]), "units must be a JSON object"),
    (preset(unit_gains={"jawOpen": "2"}), "unit_gains: jawOpen: the gain must be a number"),
    (preset(unit_gains={"jawOpen": True}), "unit_gains: jawOpen: the gain must be a number"),
    (preset(unit_gains={"jawOpen": 50}), "unit_gains: jawOpen: gain 50 is outside -10 to 10"),
    (preset(unit_gains={"tongue": 1}), "unit_gains: 'tongue' is not an ARKit unit"),
    (preset(region_gains={"lips": 1}), r"unknown region 'lips' \(the regions: brows, eyes, cheeks, nose, jaw, mouth\)"),
    (preset(region_gains={"mouth": -1}), "region_gains: mouth: gain -1 is outside 0 to 10"),
    (preset(name=3), "name must be a string"),
])
def test_a_broken_preset_is_refused_with_what_is_wrong(text, message):
    with pytest.raises(UnitMapError, match=message):
        unit_map_from_json(text, "broken.json")


def test_a_missing_preset_file_is_an_error_that_names_it(tmp_path):
    with pytest.raises(UnitMapError, match="cannot read the unit map .*gone.json"):
        read_unit_map(tmp_path / "gone.json")


def test_gains_scale_each_unit_and_region_and_shared_keys_sum():
    units = ("mouthSmileLeft", "mouthSmileRight", "eyeLookUpLeft", "eyeLookDownLeft", "jawOpen")
    values = np.array([[0.2, 0.4, 0.5, 0.0, 0.1],
                       [0.6, 0.1, 0.0, 0.3, 0.9]])
    unit_map = UnitMap({"mouthSmileLeft": ("Smile_L", "Smile_Wide"), "mouthSmileRight": ("Smile_R",),
                        "eyeLookUpLeft": ("Eye_L_Up_Down",), "eyeLookDownLeft": ("Eye_L_Up_Down",),
                        "jawOpen": ("Jaw_Open",)},
                       unit_gains={"mouthSmileLeft": 1.5, "eyeLookDownLeft": -1.0}, region_gains={"mouth": 2.0})
    played = unit_map.key_values(values, units)
    assert set(played) == {"Smile_L", "Smile_Wide", "Smile_R", "Eye_L_Up_Down", "Jaw_Open"}
    np.testing.assert_allclose(played["Smile_L"], 3.0 * values[:, 0])  # unit gain 1.5 x mouth 2
    np.testing.assert_allclose(played["Smile_Wide"], played["Smile_L"])  # one unit, two keys
    np.testing.assert_allclose(played["Smile_R"], 2.0 * values[:, 1])  # the region's gain alone
    np.testing.assert_allclose(played["Eye_L_Up_Down"], values[:, 2] - values[:, 3])  # two units, one key
    np.testing.assert_allclose(played["Jaw_Open"], values[:, 4])  # no gain: as solved
    with pytest.raises(UnitMapError, match="no unit tongueOut"):
        UnitMap({"tongueOut": ("Tongue_Out",)}).key_values(values, units)


def test_on_a_character_an_automatic_map_matches_names_and_a_preset_skips_keys_it_lacks():
    names = ["EyeBlink_L", "eyeBlinkLeft", "jaw_open", "my_corrective"]
    assert named_targets(names) == ({"eyeBlinkLeft": ("EyeBlink_L",), "jawOpen": ("jaw_open",)}, ["eyeBlinkLeft"])
    automatic = on_character(UnitMap(region_gains={"jaw": 2.0}), names)
    assert automatic.unit_map.targets == {"eyeBlinkLeft": ("EyeBlink_L",), "jawOpen": ("jaw_open",)}
    assert automatic.unit_map.gain("jawOpen") == 2.0 and automatic.duplicates == ["eyeBlinkLeft"]
    mapped = on_character(UnitMap({"cheekPuff": ("Cheek_Puff_L", "Cheek_Puff_R"), "tongueOut": ("Tongue_Out",)}),
                          ["Cheek_Puff_L", "Cheek_Puff_R", "EyeBlink_L"])
    assert mapped.unit_map.targets == {"cheekPuff": ("Cheek_Puff_L", "Cheek_Puff_R")}
    assert mapped.missing_keys == ["Tongue_Out"] and mapped.duplicates == []


def test_the_built_in_presets_read_and_name_their_sources():
    presets = builtin_unit_maps()
    assert list(presets)[0] == "arkit_automatic" and presets["arkit_automatic"].automatic
    assert set(presets) == {"arkit_automatic", "cc4_extended", "cc5_hd", "cc3_explus", "daz_genesis9", "daz_genesis81"}
    for stem, unit_map in presets.items():
        assert unit_map.name and unit_map.source, stem
    extended = presets["cc4_extended"].targets
    assert len(extended) == 52 and extended["eyeLookDownLeft"] == ("Eye_L_Look_Down",)
    assert extended["mouthSmileLeft"] == ("Mouth_Smile_L",) and len(extended["mouthFunnel"]) == 4
    assert presets["cc3_explus"].targets["tongueOut"] == ("A52_Tongue_Out",)
    assert presets["daz_genesis9"].targets["mouthSmileLeft"] == ("facs_bs_MouthSmileLeft",)
    assert presets["daz_genesis81"].targets["mouthSmileLeft"] == ("facs_bs_MouthSmileLeft_div2",)
