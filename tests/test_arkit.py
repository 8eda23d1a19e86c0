"""Matching a character's shape keys to the ARKit units, whatever their spelling."""
from mxr.models.arkit import match_units, normalised_unit_name

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
