"""Facial actions on the real face scan, made without the open head: the judge of the open-loop check.

Why: clips rendered from the scan deformed by the open head's own basis (``render_scan_clips.py``)
only ask the engine to find that basis again. Here each action is a hand-placed, localised
displacement field anchored on the scan's own 68 annotated landmarks (menpo3d's James), after the
Facial Action Coding System's actions: brow raise (AU1+2), brow lowerer (AU4), cheek raise (AU6),
nose wrinkle (AU9), upper-lip raise (AU10), lip-corner pull (AU12), dimple (AU14), lip-corner
depress (AU15), chin raise (AU17), pucker (AU18), lip stretch (AU20), lip press (AU24), jaw drop
(AU26) and jaw sideways (AU30). No unit of any head model enters; the truth is what the rendered
surface does at the landmark points.

A field is a sum of Gaussian bumps (each anchor drags the skin near it along its direction,
falling off over ``radius_mm``), or for the jaw a rotation / shift of the skin below the mouth
blended in by height. Amplitudes are at intensity 1, in mm, in head axes (+X the subject's left,
+Y up, +Z out of the face). numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network.synthetic import smooth_signal
from .scan import Scan

# Indices into the scan's 68 landmarks (menpo3d's james.ljson, grouped by label): the subject's right
# brow is the image's left one ("leyebrow").
RIGHT_BROW, LEFT_BROW = np.arange(29, 34), np.arange(43, 48)
RIGHT_EYE, LEFT_EYE = np.arange(17, 23), np.arange(23, 29)
NOSE = np.arange(34, 43)
MOUTH = np.arange(48, 68)  # iBUG 48-67: outer lip 48-59, inner 60-67
RIGHT_CORNER, LEFT_CORNER = 48, 54
UPPER_LIP, LOWER_LIP = np.array([49, 50, 51, 52, 53]), np.array([55, 56, 57, 58, 59])
CHIN_TIP = 8


@dataclass(frozen=True)
class ActionSpec:
    """How a person would say what the action does, for the checks (``expected_units``)."""

    name: str
    expected_units: tuple[str, ...]  # the ARKit units an animator would expect to see on (any of them)


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("brow_raise", ("browInnerUp", "browOuterUpLeft", "browOuterUpRight")),
    ActionSpec("brow_lower", ("browDownLeft", "browDownRight")),
    ActionSpec("cheek_raise", ("cheekSquintLeft", "cheekSquintRight", "eyeSquintLeft", "eyeSquintRight")),
    ActionSpec("nose_wrinkle", ("noseSneerLeft", "noseSneerRight")),
    ActionSpec("upper_lip_raise", ("mouthUpperUpLeft", "mouthUpperUpRight", "mouthShrugUpper")),
    ActionSpec("smile", ("mouthSmileLeft", "mouthSmileRight")),
    ActionSpec("dimple", ("mouthDimpleLeft", "mouthDimpleRight")),
    ActionSpec("lip_corner_depress", ("mouthFrownLeft", "mouthFrownRight")),
    ActionSpec("chin_raise", ("mouthShrugLower", "mouthRollLower")),
    ActionSpec("pucker", ("mouthPucker", "mouthFunnel")),
    ActionSpec("lip_stretch", ("mouthStretchLeft", "mouthStretchRight")),
    ActionSpec("lip_press", ("mouthPressLeft", "mouthPressRight", "mouthClose", "mouthRollUpper", "mouthRollLower")),
    ActionSpec("jaw_drop", ("jawOpen",)),
    ActionSpec("jaw_sideways", ("jawLeft", "jawRight")),
)
ACTION_NAMES = tuple(action.name for action in ACTIONS)


def _bumps(vertices_mm: np.ndarray, anchors_mm: np.ndarray, directions_mm: np.ndarray, radius_mm: float,
           mask: np.ndarray | None = None) -> np.ndarray:
    """(V, 3) mm: each anchor (A, 3) moves nearby skin by its direction (A, 3), Gaussian in distance."""
    distance2 = np.sum((vertices_mm[:, None, :] - anchors_mm[None]) ** 2, axis=-1)  # (V, A)
    weights = np.exp(-0.5 * distance2 / radius_mm**2)  # (V, A)
    field = weights @ directions_mm  # (V, 3)
    field /= np.maximum(1.0, weights.sum(axis=1, keepdims=True))  # overlapping bumps do not add up past one
    return field if mask is None else field * mask[:, None]


def _smooth_step(values: np.ndarray, low: float, high: float) -> np.ndarray:
    t = np.clip((values - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def action_fields(scan: Scan) -> dict[str, np.ndarray]:
    """Action name -> (V, 3) displacement of the scan's vertices in metres at intensity 1."""
    vertices = scan.vertices * 1000.0  # (V, 3) mm, head axes
    marks = scan.landmarks68 * 1000.0  # (68, 3) mm
    eye_height = marks[np.r_[RIGHT_EYE, LEFT_EYE], 1].mean()
    mouth_height = marks[[RIGHT_CORNER, LEFT_CORNER], 1].mean()
    mouth_centre = marks[MOUTH].mean(axis=0)
    above_eyes = _smooth_step(vertices[:, 1], eye_height + 2.0, eye_height + 10.0)  # brows move, lids stay
    below_eyes = 1.0 - _smooth_step(vertices[:, 1], eye_height - 8.0, eye_height - 2.0)
    side = np.sign(marks[:, 0] - mouth_centre[0])  # +1 on the subject's left

    def corners(direction_mm: tuple[float, float, float]) -> np.ndarray:
        """Both lip corners, the x component mirrored to each side: (2, 3)."""
        base = np.array(direction_mm)
        return np.stack([base * [side[c], 1.0, 1.0] for c in (RIGHT_CORNER, LEFT_CORNER)])

    brows = np.r_[RIGHT_BROW, LEFT_BROW]
    inner_brows = np.array([RIGHT_BROW[-1], RIGHT_BROW[-2], LEFT_BROW[0], LEFT_BROW[1]])
    cheeks = np.stack([marks[RIGHT_EYE].mean(axis=0), marks[LEFT_EYE].mean(axis=0)]) + [0.0, -16.0, 4.0]
    nose_sides = marks[NOSE][np.argsort(np.abs(marks[NOSE, 0] - mouth_centre[0]))[-4:]]
    fields = {
        "brow_raise": _bumps(vertices, marks[brows], np.tile([0.0, 6.0, 0.5], (len(brows), 1)), 16.0, above_eyes),
        "brow_lower": _bumps(vertices, marks[inner_brows],
                             np.array([[2.5, -4.0, 0.5], [2.0, -3.5, 0.5], [-2.5, -4.0, 0.5], [-2.0, -3.5, 0.5]]),
                             12.0, above_eyes),
        "cheek_raise": _bumps(vertices, cheeks, np.tile([0.0, 3.5, 1.0], (2, 1)), 13.0, below_eyes),
        "nose_wrinkle": _bumps(vertices, nose_sides, np.tile([0.0, 3.0, 0.5], (4, 1)), 8.0, below_eyes),
        "upper_lip_raise": _bumps(vertices, marks[UPPER_LIP], np.tile([0.0, 3.5, 1.0], (5, 1)), 9.0),
        "smile": _bumps(vertices, marks[[RIGHT_CORNER, LEFT_CORNER]], corners((6.0, 6.0, -3.0)), 14.0),
        "dimple": _bumps(vertices, marks[[RIGHT_CORNER, LEFT_CORNER]], corners((3.5, 0.0, -2.5)), 9.0),
        "lip_corner_depress": _bumps(vertices, marks[[RIGHT_CORNER, LEFT_CORNER]], corners((0.5, -4.5, 0.0)), 12.0),
        "chin_raise": _bumps(vertices, np.stack([marks[CHIN_TIP] * 0.5 + marks[57] * 0.5]), np.array([[0.0, 3.5, 2.0]]), 14.0),
        "pucker": _bumps(vertices, marks[MOUTH], np.column_stack([-(marks[MOUTH, 0] - mouth_centre[0]) * 0.25,
                                                                   np.zeros(len(MOUTH)), np.full(len(MOUTH), 4.0)]), 7.0),
        "lip_stretch": _bumps(vertices, marks[[RIGHT_CORNER, LEFT_CORNER]], corners((5.0, -1.0, -0.5)), 13.0),
        "lip_press": (_bumps(vertices, marks[UPPER_LIP], np.tile([0.0, -1.5, -0.5], (5, 1)), 6.0)
                      + _bumps(vertices, marks[LOWER_LIP], np.tile([0.0, 2.0, -0.5], (5, 1)), 6.0)),
    }
    # The jaw: skin below the mouth turns about an axis near the ears (drop) or shifts (sideways),
    # blended in over the lower lip so the upper lip stays.
    jaw_weight = 1.0 - _smooth_step(vertices[:, 1], mouth_height - 6.0, mouth_height + 1.0)  # (V,)
    pivot = np.array([mouth_centre[0], mouth_height + 25.0, mouth_centre[2] - 85.0])
    angle = np.radians(-6.0)  # the chin goes down and back
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(angle), np.sin(angle)], [0.0, -np.sin(angle), np.cos(angle)]])
    fields["jaw_drop"] = ((vertices - pivot) @ rotation.T + pivot - vertices) * jaw_weight[:, None]
    fields["jaw_sideways"] = np.outer(jaw_weight, [4.0, 0.0, 0.0])
    return {name: fields[name] / 1000.0 for name in ACTION_NAMES}


# -- clips: which action plays when, how the head moves ----------------------------------------------
LEAD_IN_S = 0.6  # a still, neutral start (the engine is not told; it finds its neutral)
RAMP_S, HOLD_S, GAP_S = 0.3, 0.3, 0.15  # each action rises, holds at its intensity, falls, rests


@dataclass(frozen=True)
class ActionClip:
    """A clip's plan: intensities per frame and head pose per frame (no pixels)."""

    fps: float
    intensities: np.ndarray  # (T, A) 0..1 per action of ACTION_NAMES
    hold_frames: dict[str, np.ndarray]  # action -> frames where it holds its peak
    head_angles_rad: np.ndarray  # (T, 3) yaw, pitch, roll
    head_shift_mm: np.ndarray  # (T, 3)


def plan_clip(actions: tuple[str, ...], fps: float, rng: np.random.Generator, max_angles_deg=(20.0, 12.0, 5.0),
              max_shift_mm=(10.0, 8.0, 15.0), still_seconds: float = 0.0) -> ActionClip:
    """Actions one after another (random intensity 0.6-1), the head turning smoothly up to
    ``max_angles_deg`` (yaw, pitch, roll) meanwhile; ``still_seconds`` with no action at all."""
    step_s = 2 * RAMP_S + HOLD_S + GAP_S
    seconds = LEAD_IN_S + len(actions) * step_s + still_seconds
    times = np.arange(int(round(seconds * fps))) / fps  # (T,)
    intensities = np.zeros((len(times), len(ACTION_NAMES)))
    holds = {}
    for number, name in enumerate(actions):
        start = LEAD_IN_S + number * step_s
        peak = rng.uniform(0.6, 1.0)
        rise = np.clip((times - start) / RAMP_S, 0.0, 1.0)
        fall = np.clip((start + 2 * RAMP_S + HOLD_S - times) / RAMP_S, 0.0, 1.0)
        curve = np.minimum(rise, fall)
        intensities[:, ACTION_NAMES.index(name)] = peak * curve * curve * (3.0 - 2.0 * curve)
        holds[name] = np.flatnonzero((times >= start + RAMP_S) & (times <= start + RAMP_S + HOLD_S))
    motion = smooth_signal(times, 2.0, rng, channels=6)  # (T, 6) in [-1, 1]
    ease_in = np.clip(times / LEAD_IN_S, 0.0, 1.0)[:, None]  # the head starts at rest too
    motion = (motion - motion[:1]) * ease_in
    motion /= np.maximum(np.abs(motion).max(axis=0), 1e-9)  # reach the stated amplitudes
    return ActionClip(fps, intensities, holds, np.radians(max_angles_deg) * motion[:, :3],
                      np.asarray(max_shift_mm) * motion[:, 3:])
