"""The expression a found neutral still holds, taken out of it.

Why: every frame is read as a displacement from the neutral, and a clip need not have a frame at
rest. WolfgangLanger_Pexels.mp4 cries, worries and laughs; its most neutral-looking frames
(``ops.neutral``) have the lips parted and the jaw a little open, so a closed mouth read as a
chin raise, a laugh's jaw short, and most of its open-jaw frames failed the labelled check.

How (issue 21's suggestion): the open head's units are the model of what an expression is. The
rest face is the neutral less the units ``held`` >= 0 that leave the take's frames least active
under the bake's first non-negative unit solve (``models.retarget``: its prices, no smoothing):

    minimise over held >= 0 and c_t >= 0:  sum_t |d_t + B held - B c_t|^2 + price . c_t
                                            + HELD_PRICE_FACTOR price . held

d_t the frames' displacements from the found neutral, B the units at the landmarks (x and y, the
rigid motions solved out). ``held`` grows only where many frames ask to go below the neutral (a
closed mouth against a neutral with the jaw open), since every frame pays for it; the extra price
keeps a true neutral as it is (dev: single_face's labelled neutral frames stayed neutral at 10,
not at 1 or 3). Solved by alternating the frames' units and ``held`` (a convex problem, each step
a box-constrained least squares). The eyes' units are left out: the blinks are measured from the
lids against the neutral, and the gaze is not the face's shape.

The open head's units are only a model of expression: where they misfit the performer, "least
active" can mean "fits the misfit" (single_face's neutral was said to hold 0.24 of a pucker, which
its smiles, narrower than the open head's, fit better without). So the rest face is kept only
where it looks more neutral than the found one by the finder's own, model-free measures
(``ops.neutral.face_score``: eye and mouth opening, mouth width, corner and brow height against
the take's frames): WolfgangLanger's rest face scores 1.53 against its found neutral's 1.66 (the
mouth opening 0.41 -> 0.09 spreads from the calm frames'), single_face's 2.11 against 1.98 (its
mouth widened past them), so only hers is taken.
"""
from __future__ import annotations

import numpy as np

from ..models.head_model import HeadModel
from ..models.retarget import neutral_to_head, seen_landmark_basis, solve_box_ridge, unit_system
from .neutral import face_measures, face_score

HELD_PRICE_FACTOR = 10.0
ROUNDS = 6
ITERATIONS = 300
SAMPLED_FRAMES = 1500  # at most this many frames, spread over the take, say what the neutral holds
NOT_HELD_PREFIXES = ("eyeBlink", "eyeLook")


def held_expression(head: HeadModel, neutral_mm: np.ndarray,
                    deformation_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The units (K,) >= 0 of ``head`` the neutral (478, 3) mm holds, judged by the frames'
    displacements from it, ``deformation_mm`` (n, 478, 3) mm (NaN rows: no face), and that
    expression as a canonical displacement (478, 3) mm, x and y only (the take reads no depth
    motion): the rest face is ``neutral_mm - shift``, every frame's displacement ``+ shift``."""
    system = unit_system(head, neutral_mm)
    count = len(head.expression_names)
    held = np.zeros(count)
    _, _, targets = system.targets(np.asarray(deformation_mm, np.float64))  # (n, M)
    if len(targets) == 0:
        return held, np.zeros((len(neutral_mm), 3))
    basis = system.projected  # (M, K)
    free = np.array([not name.startswith(NOT_HELD_PREFIXES) for name in head.expression_names])
    lower, upper = head.coefficient_bounds
    for _ in range(ROUNDS):
        units = solve_box_ridge(basis, targets + basis @ held, lower, upper, system.ridge, ITERATIONS,
                                system.prices)  # (n, K): the frames, read against the rest face
        # held, the frames' units fixed: |B held - mean_t(B c_t - d_t)|^2 + price . held, per frame
        wanted = (units @ basis.T - targets).mean(axis=0)  # (M,)
        held[free] = solve_box_ridge(basis[:, free], wanted[None], 0.0, upper, system.ridge[free], ITERATIONS,
                                     HELD_PRICE_FACTOR * system.prices[free])[0]
    return held, expression_shift_mm(head, neutral_mm, held)


def rest_face(head: HeadModel, neutral_mm: np.ndarray, deformation_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``held_expression``, kept only where the rest face it gives looks more neutral than the found
    one (``ops.neutral.face_score`` against the frames ``neutral_mm + deformation_mm``): the units
    (K,) taken out and the shift (478, 3) mm (zeros where none)."""
    held, shift_mm = held_expression(head, neutral_mm, deformation_mm)
    if not held.any():
        return held, shift_mm
    neutral = np.asarray(neutral_mm, np.float64)
    faces = neutral + np.asarray(deformation_mm, np.float64)
    measures = face_measures(faces[np.all(np.isfinite(faces), axis=(1, 2))])  # (n, 6)
    if face_score(neutral - shift_mm, measures) < face_score(neutral, measures):
        return held, shift_mm
    return np.zeros_like(held), np.zeros_like(shift_mm)


def expression_shift_mm(head: HeadModel, neutral_mm: np.ndarray, units: np.ndarray) -> np.ndarray:
    """The units (K,) of ``head`` as the take would show them on the performer whose neutral is
    ``neutral_mm`` (478, 3): a canonical displacement (478, 3) mm, x and y only."""
    alignment = neutral_to_head(head, neutral_mm)  # the performer's neutral (mm) -> the head (m)
    shift_m = np.tensordot(np.asarray(units, np.float64), seen_landmark_basis(head), axes=1)  # (478, 3) head axes
    shift_mm = shift_m @ alignment.rotation[0] / alignment.scale[0]
    shift_mm[:, 2] = 0.0
    return shift_mm


def sampled_frames(valid: np.ndarray) -> np.ndarray:
    """At most ``SAMPLED_FRAMES`` frame indices with a face, spread evenly over the take."""
    frames = np.flatnonzero(np.asarray(valid, bool))
    return frames[np.unique(np.linspace(0, len(frames) - 1, min(SAMPLED_FRAMES, len(frames))).astype(np.int64))]
