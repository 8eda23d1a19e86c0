"""Matching a character's shape keys to the ARKit units, whatever their spelling."""
from mxr.models.arkit import (ANTAGONIST_PAIRS, ARKIT_UNITS, match_units, normalised_unit_name, refining_units,
                              sparsity_prices)

UNITS = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthLeft", "mouthSmileLeft", "tongueOut")


def test_common_spellings_name_the_same_unit():
    for spelling in ("eyeBlinkLeft", "EyeBlink_L", "eye_blink_l", "blendShape1.eyeBlinkLeft", "EYE-BLINK-LEFT",
                     " eyeBlink.L "):
        assert normalised_unit_name(spelling) == "eyeblinkleft", spelling
    assert normalised_unit_name("Mouth_Smile_R") == "mouthsmileright"
    assert normalised_unit_name("mouth_L") == "mouthleft"  # ARKit's own mouthLeft
    assert normalised_unit_name("rig.Jaw_Open") == "jawopen"
    assert normalised_unit_name("eyeBlinkLeft.001") == normalised_unit_name("EyeBlink_L.002") == "eyeblinkleft"


def test_units_match_the_first_key_of_their_name_and_nothing_else():
    keys = ["Basis", "EyeBlink_L", "eyeBlinkLeft", "jaw_open", "my_corrective", "mouth_L", "blinkLeft", "tongue"]
    matches, duplicates = match_units(keys, UNITS)
    assert matches == {"eyeBlinkLeft": "EyeBlink_L", "jawOpen": "jaw_open", "mouthLeft": "mouth_L"}
    assert duplicates == ["eyeBlinkLeft"]  # named a unit another key already has: reported, not keyed
    assert match_units(["Basis", "smile"], UNITS) == ({}, [])


def test_the_supporting_units_but_the_gaze_are_solved_again_and_no_antagonist_pair_is_split():
    refined = dict(zip(ARKIT_UNITS, refining_units(ARKIT_UNITS)))
    supporting = dict(zip(ARKIT_UNITS, sparsity_prices(ARKIT_UNITS) > 1.0))
    assert refined["mouthUpperUpLeft"] and refined["mouthPressRight"] and refined["jawLeft"]
    assert not refined["mouthSmileLeft"] and not refined["eyeLookInLeft"] and not refined["eyeBlinkLeft"]
    assert all(supporting[name] for name, on in refined.items() if on)
    # the second solve keeps a pair apart only when it solves both of them again
    assert all(refined[first] == refined[second] for first, second in ANTAGONIST_PAIRS)
