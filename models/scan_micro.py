"""Micro-expressions planted in a scan clip's plan: the open-loop check of events found while the face talks.

Why: issue 20 asks that a talking face give few false micro events *and* that micro-expressions
planted in it are still found. On real footage that is measured on held-out franck.mp4 only
(``scripts/open_loop_inject.py``); this plants them into the scan's talking clip
(``scan_speech``), where the truth is exact and the split is dev. Each is one of the scan's own
actions (``scan_actions``) that speech does not use, rising and falling as a raised cosine over
0.2-0.5 s at a fifth or so of its full size (peaks of about 0.5-1.8 mm), every 2-4 s. numpy only.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .scan_actions import ACTION_NAMES, ActionClip

MICRO_ACTIONS = ("brow_raise", "brow_lower", "cheek_raise", "nose_wrinkle", "dimple", "lip_corner_depress",
                 "chin_raise")
MICRO_S = (0.2, 0.5)  # onset to offset
INTENSITY = (0.15, 0.3)  # of the action at its full size (3.5-6 mm at its anchors)
EVERY_S = (2.0, 4.0)  # from one planted event's start to the next
LEAD_IN_S = 1.0  # none in the clip's first second (the engine may find its neutral there)
HOLD_PREFIX = "micro"  # ActionClip.hold_frames keys: "micro <n> <action>" -> the event's frames


def with_micro_events(clip: ActionClip, rng: np.random.Generator) -> ActionClip:
    """``clip`` with micro-expressions added to its intensities (T, A); their frames (onset to
    offset, where the action is on) in ``hold_frames`` under ``planted_key`` names."""
    times = np.arange(len(clip.intensities)) / clip.fps  # (T,)
    intensities = clip.intensities.copy()
    holds = dict(clip.hold_frames)
    start, number = LEAD_IN_S + rng.uniform(0.0, EVERY_S[0]), 0
    while start + MICRO_S[1] < times[-1]:
        action = MICRO_ACTIONS[rng.integers(len(MICRO_ACTIONS))]
        length = rng.uniform(*MICRO_S)
        phase = np.clip((times - start) / length, 0.0, 1.0)
        curve = rng.uniform(*INTENSITY) * 0.5 * (1.0 - np.cos(2.0 * np.pi * phase))
        intensities[:, ACTION_NAMES.index(action)] += curve
        holds[planted_key(number, action)] = np.flatnonzero(curve > 0.0)
        start += rng.uniform(*EVERY_S)
        number += 1
    return replace(clip, intensities=intensities, hold_frames=holds)


def planted_key(number: int, action: str) -> str:
    return f"{HOLD_PREFIX} {number} {action}"


def planted_action(key: str) -> str | None:
    """The action of a ``hold_frames`` key made by ``with_micro_events``; None for any other."""
    parts = key.split(" ")
    return parts[2] if len(parts) == 3 and parts[0] == HOLD_PREFIX else None
