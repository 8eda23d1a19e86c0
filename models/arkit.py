"""Matching a character's shape keys to the 52 ARKit face units, whatever their spelling.

Why: most production characters carry ARKit blendshapes (for iPhone capture); MXR's built-in head
speaks the same 52 units, so a take retargeted to it drives any such character directly. Their names
vary by tool: ``eyeBlinkLeft`` (Apple), ``EyeBlink_L`` / ``eye_blink_l`` (rig conventions),
``eyeBlink.L`` (Blender's), ``blendShape1.eyeBlinkLeft`` (FBX imports). A name is compared without a
``.001`` copy suffix, its ``something.`` namespace, case and separators, and with an ``L`` / ``R``
side spelled out. Names that rename the units themselves (Character Creator's ``Eye_L_Look_Down``,
Daz's ``facs_bs_*``) are not ARKit spellings and do not match: a unit map says which keys those are
(``models.unit_mapping``).
"""
from __future__ import annotations

import re

import numpy as np

# Apple's 52 face units (ARFaceAnchor.BlendShapeLocation), in the order of MXR's built-in head.
ARKIT_UNITS: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)

_COPY_SUFFIX = re.compile(r"\.\d{3}$")  # Blender's "eyeBlinkLeft.001"
_SIDE_SUFFIX = re.compile(r"[_\-. ]([lr])$", re.IGNORECASE)  # "EyeBlink_L", Blender's "eyeBlink.L"
_NAMESPACE = re.compile(r"^.*\.")  # "blendShape1.eyeBlinkLeft" -> "eyeBlinkLeft"
_SEPARATORS = re.compile(r"[^a-z0-9]")


def normalised_unit_name(name: str) -> str:
    """A shape key's or unit's name as compared: "EyeBlink_L" -> "eyeblinkleft"."""
    bare = _COPY_SUFFIX.sub("", name.strip())
    side = _SIDE_SUFFIX.search(bare)
    if side:  # the side first: Blender's ".L" is not a namespace
        bare = bare[:side.start()]
    bare = _NAMESPACE.sub("", bare)
    if side:
        bare += "left" if side.group(1).lower() == "l" else "right"
    return _SEPARATORS.sub("", bare.lower())


def match_units(key_names: list[str], unit_names: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Unit name -> the first shape key (in ``key_names`` order) whose normalised name is the
    unit's (units without one are left out), and the later keys that also named a matched unit
    (not keyed: a person should know which of the two moves)."""
    wanted = {normalised_unit_name(unit): unit for unit in unit_names}
    matches: dict[str, str] = {}
    duplicates: list[str] = []
    for key_name in key_names:
        unit = wanted.get(normalised_unit_name(key_name))
        if unit is None:
            continue
        if unit in matches:
            duplicates.append(key_name)
        else:
            matches[unit] = key_name
    return matches, duplicates


# -- how the 52 units are solved (models/retarget.py) ---------------------------------------------
# Units that push the same feature in opposite directions: a face does one or the other. Both on
# at once is how a least-squares solve mimics motion no single unit has (jawLeft + jawRight is a
# chin thrust), so the solve keeps the weaker of each pair at zero.
ANTAGONIST_PAIRS: tuple[tuple[str, str], ...] = (
    ("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"),
    ("eyeLookInLeft", "eyeLookOutLeft"), ("eyeLookInRight", "eyeLookOutRight"),
    ("eyeLookUpLeft", "eyeLookDownLeft"), ("eyeLookUpRight", "eyeLookDownRight"),
    ("mouthSmileLeft", "mouthFrownLeft"), ("mouthSmileRight", "mouthFrownRight"),
    ("browDownLeft", "browOuterUpLeft"), ("browDownRight", "browOuterUpRight"),
    ("eyeBlinkLeft", "eyeWideLeft"), ("eyeBlinkRight", "eyeWideRight"),
)
# Units that refine a primary action (a dimple or lip press beside a smile, a shrug beside a frown):
# they overlap the primary units' motion at the landmarks, so an unweighted solve spreads a smile
# over dimple + upper-lip raise and leaves the smile at zero. The first solve prices them higher, so
# the primary units take what they can show; a second one reads the rest as them (below). Prefixes
# of ARKit names.
SUPPORTING_UNIT_PREFIXES: tuple[str, ...] = (
    "mouthDimple", "mouthPress", "mouthUpperUp", "mouthLowerDown", "mouthShrug", "mouthRoll",
    "mouthStretch", "mouthClose", "mouthLeft", "mouthRight", "cheekPuff", "noseSneer",
    "jawForward", "jawLeft", "jawRight", "eyeLook",
)
# Their sparsity weight in the first solve, relative to the primary units' 1. Chosen, before there
# was a second solve, on the open-loop check's dev labelled frames (scripts/open_loop.py): smiles
# read right on 0.07 / 0.50 / 0.69 / 0.69 of the smiling frames at 5 / 10 / 20 / 40, units pinned
# on 64 / 39 / 17 / 17 % of a clip at most.
SUPPORTING_UNIT_PRICE = 20.0
# ... and then, the other units held where that solve put them, the supporting units are solved again
# on what is left, at this price: the motion the primary units cannot show (a laugh's raised upper
# lip, a lip press beside a frown) is read as the units that show it instead of being dropped, and
# the primary units keep what they took (a smile stays mouthSmile). On the open-loop scan clips
# (dev) the named units went from 0.07 to 0.34 of the actions' motion (median of 14), the units an
# animator would expect right on 0.29 -> 0.43 of them, every dev labelled check unchanged (at 1, a
# smile lost a frame; at 3, units right 0.36). The gaze units are not solved again: they follow the
# irises, whose jitter they read as flicker at that price (WolfgangLanger 3 % -> 6 % of frames).
REFINING_UNIT_PRICE = 2.0
NOT_REFINED_PREFIXES: tuple[str, ...] = ("eyeLook",)
# MediaPipe's eyelid landmarks travel less than the lids: on closed eyes in real footage (the
# labelled frames of scripts/open_loop.py's dev clips) the upper-lid points come down a median of
# ~4 mm from the neutral, where the open head's eyeBlink moves them ~10 mm. The solve reads the
# blink units as MediaPipe would see them, so a closed eye reads as a blink near 1, not 0.4.
TRACKER_GAINS: dict[str, float] = {"eyeBlinkLeft": 0.4, "eyeBlinkRight": 0.4}


def antagonist_indices(unit_names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Index pairs (into ``unit_names``) of the antagonist pairs a head has both units of."""
    index = {name: position for position, name in enumerate(unit_names)}
    return [(index[a], index[b]) for a, b in ANTAGONIST_PAIRS if a in index and b in index]


def refining_units(unit_names: tuple[str, ...]) -> np.ndarray:
    """(K,) bool: the supporting units solved again on what the others leave (``REFINING_UNIT_PRICE``)."""
    return np.array([name.startswith(SUPPORTING_UNIT_PREFIXES) and not name.startswith(NOT_REFINED_PREFIXES)
                     for name in unit_names], bool)


def sparsity_prices(unit_names: tuple[str, ...]) -> np.ndarray:
    """(K,) relative sparsity weight of each unit: 1 for primary units and non-ARKit names,
    ``SUPPORTING_UNIT_PRICE`` for supporting ones."""
    return np.array([SUPPORTING_UNIT_PRICE if name.startswith(SUPPORTING_UNIT_PREFIXES) else 1.0
                     for name in unit_names])


def tracker_gains(unit_names: tuple[str, ...]) -> np.ndarray:
    """(K,) share of each unit's landmark motion that MediaPipe's landmarks show (1 for most)."""
    return np.array([TRACKER_GAINS.get(name, 1.0) for name in unit_names])
