"""Canonical (head-agnostic) deformation -> a head's expression coefficients (and FLAME's joints).

The take's displacements d_t (478, 3) mm are carried onto the head by the similarity s R that
takes the performer's neutral onto the head's rest landmarks, then read as the head's units:

    minimise_{c, r}  || W (s R d_t - B c - G r) ||^2 + ridge ||c||^2 + sum_k price_k c_k
    subject to  lower <= c <= upper

- W weighs the landmarks: x and y fully, depth by ``DEPTH_WEIGHT`` (not at all: the image shows
  no depth motion), and zero where the head's landmark embedding disagrees with the
  performer's neutral by far more than the face shapes differ (a point cast into the mouth or
  past the silhouette when the head's correspondence was made: the open head has ten inner-lip
  points 8 cm off). The similarity is fitted with the same weights, iteratively.
- G r is a small rigid motion (rotation, shift and scale of the face, solved with the units and
  not penalised): the head pose the take could not remove (MediaPipe's mesh bends by a few mm as
  the head turns) would otherwise be read as expression: jawLeft and jawRight both at 1, gaze
  units pinned.
- price_k is a sparsity weight (an L1 term on non-negative units): the units that refine a
  primary action pay more (``arkit.sparsity_prices``), so a smile is read as mouthSmile rather
  than spread over dimple and upper-lip raise. Then, the other units held, those supporting units
  are solved again on what is left, at about a primary unit's price (``arkit.REFINING_UNIT_PRICE``):
  what the primary units cannot show (a laugh's raised upper lip) is read instead of dropped.
- The units are read as MediaPipe's landmarks show them (``arkit.TRACKER_GAINS``): its eyelid
  points travel about 40 % of the lids' way, so the blink units are scaled to match.
- Antagonistic pairs (``arkit.ANTAGONIST_PAIRS``) are never both on: after a first solve the
  weaker of each pair is held at zero and the frame solved again.
- Given the frames' times, neighbouring frames are solved together (a zero-phase smoothness term,
  ``SMOOTHING_S``), so that a unit does not flip between two nearly equal readings of one face.

All frames are solved together with FISTA (accelerated projected gradient), so a whole take
retargets in milliseconds with numpy alone.

FLAME adds joints: ``retarget_flame`` solves the jaw (and eyes) with the expressions by
Gauss-Newton through ``FlameLandmarks`` (FLAME's exact forward pass at the landmarks), and
``estimate_flame_identity`` fits identity coefficients to the performer's neutral face.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .arkit import REFINING_UNIT_PRICE, antagonist_indices, refining_units, sparsity_prices, tracker_gains
from .blinks import blink_columns, measured_blinks
from .correspondence import LandmarkEmbedding
from .flame import (FLAME_COEFFICIENT_BOUNDS, FlameModel, joint_transforms, pose_features, rodrigues, shaped_vertices,
                    unskinned)
from .head_model import HeadModel
from .similarity import Similarities, fit_similarities

# Weight of a landmark's depth residual against its x and y: none. The engine's takes read the face
# from the image through a pinhole camera (ops/perspective.py) and carry no depth motion; MediaPipe's
# own depth, in older takes, is a learned guess that bends as the head turns. (0.3 read a real
# jaw opening 10-30 % short against a depth that never moved; on the dev labelled frames 0 took
# jaw-open frames from 0.05 to 0.22 passing and smiles from 0.15 to 0.28.)
DEPTH_WEIGHT = 0.0
# A landmark whose place on the head is further from the aligned performer's neutral than this many
# times the median distance (and at least OUTLIER_FLOOR_M) is left out of the alignment and solve.
OUTLIER_FACTOR = 3.0
OUTLIER_FLOOR_M = 0.004
SPARSITY = 0.03  # the primary units' L1 weight, relative to the basis' mean squared column norm
SKIN_LANDMARK_COUNT = 468  # the 468 skin points come first; the irises follow the gaze: not in the alignment
AXIS_WEIGHTS = np.array([1.0, 1.0, DEPTH_WEIGHT])
# Neighbouring frames are solved together: a change of a unit between frames dt apart costs
# (SMOOTHING_S / dt)^2 times its squared size (in its own column's squared norm), so a unit alone
# follows the face with a response of 1 / (1 + (2 pi f SMOOTHING_S)^2) at f Hz, and no longer flips
# from one frame to the next between two readings of the same face that cost nearly the same (a
# smile read as mouthPress on every other frame). Zero-phase: nothing lags. Chosen to keep 0.85 of a
# 4 Hz motion (speech's syllables) and of the shortest micro-expression (a 0.15 s pulse: 0.82-0.88
# measured on the open head's units); on WolfgangLanger the frames where a unit flickers (a blip of a
# frame or two, 0.15 off the frames around it, ``scripts/open_loop.py``) went from 6.2 % to 2.1 %,
# the labelled dev frames unchanged (0.01 s: 4.0 %; 0.02 s: 1.3 % but 0.8 of 4 Hz). See docs/OPEN_LOOP.md.
SMOOTHING_S = 0.015
CHUNK_MARGIN_SPANS = 10  # a chunk's margin, in smoothing spans (SMOOTHING_S)
# Frames solved (and located, skinned) at a time: memory stays flat in clip length.
CHUNK_FRAMES = 1024
# The FLAME solve's: its many per-chunk work arrays (a few MB each at 512 frames) are then reused by
# the C allocator instead of being mapped afresh and page-faulted in every time (a 10,000-frame bake
# plan: about 100,000 page faults at 1024 frames, 20,000 at 512; 0.1-0.2 s of the plan's 2 s).
FLAME_CHUNK_FRAMES = 512


def solve_box_ridge(
    basis: np.ndarray,
    targets: np.ndarray,
    lower: float | np.ndarray,
    upper: float | np.ndarray,
    regularization: float | np.ndarray,
    iterations: int = 300,
    linear_penalty: float | np.ndarray = 0.0,
    coupling: np.ndarray | None = None,
) -> np.ndarray:
    """min ||basis @ c - y||^2 + sum_k regularization_k c_k^2 + sum_k linear_penalty_k c_k
    + sum_t sum_k coupling_tk (c_t+1,k - c_t,k)^2, lower <= c <= upper, for many y at once (with
    lower >= 0 the linear term is an L1 penalty).

    basis: (M, K) shared by all targets, or (T, M, K) one per target; targets: (T, M) ->
    coefficients (T, K). ``lower``, ``upper``, ``regularization`` and ``linear_penalty`` are
    scalars or broadcast against (T, K) (per coefficient, per target). ``coupling`` (T-1, K), shared
    basis only: how much a change between consecutive targets costs (0 where they are no
    neighbours); the iterations are then raised with the coupling's stiffness (FISTA needs about
    the square root of the condition number's growth).
    """
    count = basis.shape[-1]
    gram = np.swapaxes(basis, -1, -2) @ basis  # (K, K) or (T, K, K)
    gram = gram + np.broadcast_to(regularization, gram.shape[:-2] + (count,))[..., None] * np.eye(count)
    linear = np.einsum("tm,...mk->tk", targets, basis) if basis.ndim == 2 else np.einsum("tm,tmk->tk", targets, basis)
    linear = linear - 0.5 * np.asarray(linear_penalty)
    largest = np.linalg.eigvalsh(gram)[..., -1:]  # (1,) or (T, 1)
    stiffest = 4.0 * float(np.max(coupling, initial=0.0)) if coupling is not None else 0.0
    step = 1.0 / (largest + stiffest)
    if stiffest > 0.0:
        iterations = int(np.ceil(iterations * np.sqrt(1.0 + stiffest / float(np.min(largest)))))
    coefficients = np.clip(np.zeros_like(linear), lower, upper)
    momentum_point = coefficients.copy()
    momentum = 1.0
    shared = gram.ndim == 2  # one matrix product (BLAS) for all targets; einsum's would not use it
    for _ in range(iterations):
        product = momentum_point @ gram if shared else (momentum_point[:, None, :] @ gram)[:, 0, :]
        gradient = product - linear  # (T, K)
        if stiffest > 0.0:
            pull = coupling * (momentum_point[1:] - momentum_point[:-1])  # (T-1, K)
            gradient[:-1] -= pull
            gradient[1:] += pull
        updated = np.clip(momentum_point - step * gradient, lower, upper)
        next_momentum = (1.0 + np.sqrt(1.0 + 4.0 * momentum**2)) / 2.0
        momentum_point = updated + ((momentum - 1.0) / next_momentum) * (updated - coefficients)
        coefficients, momentum = updated, next_momentum
    return coefficients


def _solve_antagonists_apart(basis: np.ndarray, targets: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                             regularization: np.ndarray, iterations: int, linear_penalty: np.ndarray,
                             coupling: np.ndarray | None, pairs: list[tuple[int, int]]) -> np.ndarray:
    """``solve_box_ridge`` (bounds (T, K)), then again with the weaker of each antagonist pair (column
    indices) held at zero on each frame: a face does one or the other (``arkit.ANTAGONIST_PAIRS``)."""
    solved = solve_box_ridge(basis, targets, lower, upper, regularization, iterations, linear_penalty, coupling)
    if not pairs:
        return solved
    upper = upper.copy()
    for first, second in pairs:
        first_loses = solved[:, first] < solved[:, second]
        upper[first_loses, first] = np.minimum(upper[first_loses, first], 0.0)
        upper[~first_loses, second] = np.minimum(upper[~first_loses, second], 0.0)
    return solve_box_ridge(basis, targets, np.minimum(lower, upper), upper, regularization, iterations,
                           linear_penalty, coupling)


def smooth_in_time(values: np.ndarray, coupling: np.ndarray) -> np.ndarray:
    """(n, D) values of consecutive frames -> the same, each column solved with its neighbours:
    minimise sum_t |x_t - v_t|^2 + sum_t coupling_t |x_t+1 - x_t|^2 for ``coupling`` (n-1,) (0 where
    two frames are not tied): (I + L) x = v with L the chain's weighted Laplacian, a tridiagonal
    solve (Thomas). What ``solve_units``' coupling does to a unit that no other unit overlaps, for
    solves whose units do not compete (FLAME's expression components)."""
    count = len(values)
    if count < 2:
        return np.array(values, np.float64)
    weight = np.asarray(coupling, np.float64)  # (n-1,)
    diagonal = 1.0 + np.concatenate([[0.0], weight]) + np.concatenate([weight, [0.0]])  # (n,)
    solved = np.array(values, np.float64)  # (n, D): forward sweep in place
    scale = np.empty(count)
    scale[0] = diagonal[0]
    for t in range(1, count):
        factor = -weight[t - 1] / scale[t - 1]
        scale[t] = diagonal[t] + factor * weight[t - 1]
        solved[t] -= factor * solved[t - 1]
    solved[-1] /= scale[-1]
    for t in range(count - 2, -1, -1):
        solved[t] = (solved[t] + weight[t] * solved[t + 1]) / scale[t]
    return solved


def chained_coupling(rows: np.ndarray, seconds: np.ndarray, smoothing_s: float,
                     untied: np.ndarray | None = None) -> np.ndarray:
    """(n-1,) how strongly consecutive ``rows`` (frame indices, increasing) are tied: (smoothing_s /
    dt)^2 between neighbouring frames dt apart, 0 across a gap (a frame without a face) and where
    either is ``untied`` (T,) bool."""
    neighbours = np.diff(rows) == 1
    if untied is not None:
        loose = np.asarray(untied, bool)[rows]
        neighbours &= ~(loose[1:] | loose[:-1])
    gap_s = np.diff(np.asarray(seconds, np.float64)[rows])
    return np.where(neighbours, (smoothing_s / np.maximum(gap_s, 1e-6)) ** 2, 0.0)


def neutral_to_head(head: HeadModel, neutral_mm: np.ndarray) -> Similarities:
    """Similarity (one frame) from the performer's canonical neutral (mm) to the head's rest
    landmarks (m), fitted on the skin landmarks whose place on the head agrees with the performer's."""
    return _robust_alignment(head.landmark_positions().astype(np.float64), neutral_mm)[0]


def _robust_alignment(rest_m: np.ndarray, neutral_mm: np.ndarray, rounds: int = 4) -> tuple[Similarities, np.ndarray]:
    """Weighted similarity neutral (478, 3) mm -> rest (478, 3) m, refitted without the outliers,
    and the (478,) 0/1 weights of the landmarks kept (the irises too, where they agree)."""
    neutral = neutral_mm.astype(np.float64)
    kept = np.ones(len(rest_m))

    def fitted(kept: np.ndarray) -> Similarities:
        fit_weights = kept.copy()
        fit_weights[SKIN_LANDMARK_COUNT:] = 0.0
        return fit_similarities(neutral, rest_m[None], fit_weights)

    for _ in range(rounds):
        distance = np.linalg.norm(fitted(kept).apply(neutral[None])[0] - rest_m, axis=1)  # (478,) m
        limit = max(OUTLIER_FACTOR * float(np.median(distance[:SKIN_LANDMARK_COUNT])), OUTLIER_FLOOR_M)
        kept = (distance <= limit).astype(np.float64)
    return fitted(kept), kept


def displacement_on(alignment: Similarities, deformation_mm: np.ndarray) -> np.ndarray:
    """Canonical displacements (T, 478, 3) mm -> the head's metres and axes (T, 478, 3) float64.

    Displacements are vectors: scaled and rotated by the neutral's alignment, not translated; one
    2-D matrix product (a batched (478, 3) x (3, 3) one per frame is five times slower).
    """
    deformation = np.asarray(deformation_mm, np.float64)
    linear = alignment.scale[0] * alignment.rotation[0].T  # (3, 3) mm -> metres, acting on row vectors
    return (deformation.reshape(-1, 3) @ linear).reshape(deformation.shape)


def rigid_motions(points_m: np.ndarray) -> np.ndarray:
    """(7, N, 3) small rigid motions of points (N, 3) m: rotations about x, y, z (per radian),
    shifts along x, y, z (per metre) and a scaling (per unit), about the points' centroid."""
    centred = points_m - points_m.mean(axis=0)
    rotations = np.stack([np.cross(axis, centred) for axis in np.eye(3)])  # (3, N, 3)
    shifts = np.broadcast_to(np.eye(3)[:, None, :], (3,) + centred.shape)
    return np.concatenate([rotations, shifts, centred[None]])


def seen_landmark_basis(head: HeadModel) -> np.ndarray:
    """(K, 478, 3) metres per unit: the head's units at the landmarks as MediaPipe shows them."""
    return head.landmark_basis().astype(np.float64) * tracker_gains(head.expression_names)[:, None, None]


@dataclass(frozen=True)
class UnitSolve:
    """A take read as a head's units: coefficients and the rigid motion solved with them."""

    coefficients: np.ndarray  # (T, K), NaN rows where the take has no face
    rigid_motion: np.ndarray  # (T, 7): amounts of ``rigid_basis_m`` per frame, NaN rows likewise
    rigid_basis_m: np.ndarray  # (7, 478, 3) metres, head axes: ``rigid_motions`` of the head's rest landmarks
    landmark_weights: np.ndarray  # (478,) 0/1: the landmarks that were read (their x and y; see DEPTH_WEIGHT)

    def rigid_m(self, frames: slice = slice(None)) -> np.ndarray:
        """The rigid part of the displacement at ``frames``: (n, 478, 3) metres, head axes."""
        return np.tensordot(self.rigid_motion[frames], self.rigid_basis_m, axes=1)


@dataclass(frozen=True)
class UnitSystem:
    """The least-squares system a take's frames are read in as a head's units (the module docstring):
    M = 478 * 3 weighted landmark coordinates, K units."""

    alignment: Similarities  # the performer's neutral (mm) -> the head's rest landmarks (m)
    kept: np.ndarray  # (478,) 0/1: the landmarks read
    weights: np.ndarray  # (M,) each coordinate's weight (``AXIS_WEIGHTS`` where kept)
    basis: np.ndarray  # (M, K) the units at the landmarks as MediaPipe sees them, weighted
    rigid_basis_m: np.ndarray  # (7, 478, 3) ``rigid_motions`` of the head's rest landmarks
    orthonormal: np.ndarray  # (M, r) the rigid motions the weights still see, orthonormal
    projected: np.ndarray  # (M, K) the basis with the rigid motions solved out
    ridge: np.ndarray  # (K,) relative to the projected basis' mean squared column norm, as the prices
    prices: np.ndarray  # (K,) the first solve's L1 prices

    def targets(self, deformation_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canonical displacements (n, 478, 3) mm -> which frames have a face (n,) bool, their
        weighted head-frame targets (n_valid, M), and the same with the rigid motions solved out."""
        displacement = displacement_on(self.alignment, deformation_mm)  # (n, 478, 3) m
        valid = np.all(np.isfinite(displacement), axis=(1, 2))
        targets = displacement[valid].reshape(-1, self.weights.size) * self.weights
        return valid, targets, targets - (targets @ self.orthonormal) @ self.orthonormal.T


def unit_system(head: HeadModel, neutral_mm: np.ndarray, regularization: float = 0.01,
                sparsity: float = SPARSITY) -> UnitSystem:
    """The ``UnitSystem`` for a performer's neutral (478, 3) mm on ``head`` (``solve_units``' arguments)."""
    rest_m = head.landmark_positions().astype(np.float64)  # (478, 3)
    alignment, kept = _robust_alignment(rest_m, neutral_mm)
    weights = (kept[:, None] * AXIS_WEIGHTS).reshape(-1)  # (478*3,)
    count = len(head.expression_names)
    basis = seen_landmark_basis(head).reshape(count, -1).T * weights[:, None]  # (M, K)
    rigid_basis = rigid_motions(rest_m)  # (7, 478, 3)
    left, singular, _ = np.linalg.svd(rigid_basis.reshape(7, -1).T * weights[:, None], full_matrices=False)
    orthonormal = left[:, singular > 1e-9 * singular[0]]  # (M, r)
    projected = basis - orthonormal @ (orthonormal.T @ basis)  # rigid motion solved out exactly
    scale = float(np.mean(np.sum(projected**2, axis=0)))
    # Scaled by the gain squared, as the columns are: a unit's shrinkage in coefficient units is
    # then what it would be without the gain (the blink's 0.4 would otherwise cost it 6x more).
    gains_squared = tracker_gains(head.expression_names) ** 2
    return UnitSystem(alignment, kept, weights, basis, rigid_basis, orthonormal, projected,
                      regularization * scale * gains_squared,
                      sparsity * scale * sparsity_prices(head.expression_names) * gains_squared)


def chunk_margin(seconds: np.ndarray, smoothing_s: float) -> int:
    """Frames of its neighbours' a chunk is solved with on each side, so that the smoothing does not
    stop at its edges (a frame's pull fades within a few smoothing spans): ``CHUNK_MARGIN_SPANS``."""
    if len(seconds) < 2:
        return 0
    return int(np.ceil(CHUNK_MARGIN_SPANS * smoothing_s / np.median(np.diff(np.asarray(seconds, np.float64)))))


def with_margins(kept_frames: slice, margin: int, frame_count: int) -> tuple[slice, np.ndarray]:
    """The frames a chunk is solved on (``kept_frames`` and ``margin`` of its neighbours' on each
    side, within the take) and (n,) bool: which of them are the chunk's own, to keep."""
    frames = slice(max(kept_frames.start - margin, 0), min(kept_frames.stop + margin, frame_count))
    own = np.zeros(frames.stop - frames.start, bool)
    own[kept_frames.start - frames.start:kept_frames.stop - frames.start] = True
    return frames, own


def frame_chunks(frame_count: int, chunk_frames: int = CHUNK_FRAMES) -> list[slice]:
    """Consecutive slices of at most ``chunk_frames`` frames covering ``frame_count``."""
    return [slice(start, min(start + chunk_frames, frame_count)) for start in range(0, frame_count, chunk_frames)]


def solve_units(
    head: HeadModel,
    deformation_mm: np.ndarray,
    neutral_mm: np.ndarray,
    regularization: float = 0.01,
    bounds: tuple[float, float] | None = None,
    sparsity: float = SPARSITY,
    iterations: int = 400,
    chunk_frames: int = CHUNK_FRAMES,
    on_chunk: Callable[[int, int], None] | None = None,
    seconds: np.ndarray | None = None,
    smoothing_s: float = SMOOTHING_S,
    untied: np.ndarray | None = None,
) -> UnitSolve:
    """The head's units for canonical displacements (T, 478, 3) mm (see the module docstring).

    ``deformation_mm``: an array, or anything that has ``len`` and gives (n, 478, 3) mm for a
    slice of frames (``bake_plan.TakeDeformation``): it is read ``chunk_frames`` frames at a time,
    so memory stays flat in clip length (``on_chunk(frames_done, frame_count)`` after each chunk:
    progress, or an exception that stops the solve). ``regularization`` and ``sparsity`` are
    relative to the basis' mean squared column norm, so they do not depend on units or head size.
    Frames whose displacement is NaN (no face) come back as NaN rows. With the frames' times
    ``seconds`` (T,), neighbouring frames are solved together (``SMOOTHING_S``), except the frames
    ``untied`` (T,) bool marks, which are tied to no neighbour (a micro-expression keeps its speed).
    """
    lower, upper = head.coefficient_bounds if bounds is None else bounds
    system = unit_system(head, neutral_mm, regularization, sparsity)
    weights, basis, projected = system.weights, system.basis, system.projected
    ridge, prices = system.ridge, system.prices
    count = len(head.expression_names)
    rigid = system.rigid_basis_m.reshape(7, -1).T  # (M, 7) unweighted
    # (K,) each unit's own weight in the fit: its smoothing then follows the face to the same frequency,
    # whether it moves many landmarks far (jawOpen) or a few a little (browInnerUp)
    smoothness = np.sum(projected**2, axis=0)
    pairs = antagonist_indices(head.expression_names)
    refining = refining_units(head.expression_names)  # (K,) bool
    refining_prices = (prices / sparsity_prices(head.expression_names) * REFINING_UNIT_PRICE)[refining]
    position = np.cumsum(refining) - 1  # a refining unit's column among the refining ones
    refining_pairs = [(int(position[a]), int(position[b])) for a, b in pairs if refining[a] and refining[b]]
    blinks = blink_columns(head.expression_names, head.landmark_basis())  # unit -> eye: measured, not solved
    neutral = np.asarray(neutral_mm, np.float64)

    frame_count = len(deformation_mm)
    coefficients = np.full((frame_count, count), np.nan)
    rigid_motion = np.full((frame_count, 7), np.nan)
    smooth = seconds is not None and smoothing_s > 0.0
    margin = chunk_margin(seconds, smoothing_s) if smooth else 0
    for kept_frames in frame_chunks(frame_count, chunk_frames):
        frames, own = with_margins(kept_frames, margin, frame_count)
        deformation = np.asarray(deformation_mm[frames], np.float64)  # (n, 478, 3) mm
        valid, targets, targets_projected = system.targets(deformation)  # (n,), (n_valid, M) twice
        if not valid.any():
            continue
        coupling = None
        if smooth:  # (n_valid - 1, K): neighbouring frames with a face, by how close in time they are
            rows = np.flatnonzero(valid) + frames.start
            coupling = chained_coupling(rows, seconds, smoothing_s, untied)[:, None] * smoothness
        low = np.full((len(targets), count), float(lower))
        high = np.full((len(targets), count), float(upper))
        if blinks:
            measured = measured_blinks(neutral, neutral + deformation[valid])  # (n, 2)
            for unit, eye in blinks.items():
                known = np.isfinite(measured[:, eye])  # an eye that cannot be measured is solved as before
                low[known, unit] = high[known, unit] = np.clip(measured[known, eye], lower, upper)
        solved = _solve_antagonists_apart(projected, targets_projected, low, high, ridge, iterations, prices,
                                          coupling, pairs)
        if refining.any():  # the supporting units again, on what the others left (arkit.REFINING_UNIT_PRICE)
            rest = targets_projected - np.where(refining, 0.0, solved) @ projected.T  # (n, M)
            solved[:, refining] = _solve_antagonists_apart(
                projected[:, refining], rest, low[:, refining], high[:, refining], ridge[refining], iterations,
                refining_prices, None if coupling is None else coupling[:, refining], refining_pairs)
        motion, *_ = np.linalg.lstsq(rigid * weights[:, None], (targets - solved @ basis.T).T, rcond=None)  # (7, n)
        coefficients[kept_frames][valid[own]] = solved[own[valid]]
        rigid_motion[kept_frames][valid[own]] = motion.T[own[valid]]
        if on_chunk is not None:
            on_chunk(kept_frames.stop, frame_count)
    return UnitSolve(coefficients, rigid_motion, system.rigid_basis_m, system.kept)


def retarget_expressions(
    head: HeadModel,
    deformation_mm: np.ndarray,
    neutral_mm: np.ndarray,
    regularization: float = 0.01,
    bounds: tuple[float, float] | None = None,
    sparsity: float = SPARSITY,
    seconds: np.ndarray | None = None,
) -> np.ndarray:
    """Expression coefficients (T, K) for canonical displacements (T, 478, 3) mm; NaN rows where
    there is no face; ``seconds`` (T,) the frames' times (see ``solve_units``)."""
    return solve_units(head, deformation_mm, neutral_mm, regularization, bounds, sparsity,
                       seconds=seconds).coefficients


# -- FLAME: expressions and joint rotations ------------------------------------------------------


@dataclass(frozen=True)
class FlameLandmarks:
    """FLAME evaluated at the 478 landmarks only, exactly (``embedding.locate(flame_forward(..))``).

    A landmark is a barycentric mix of three vertices and FLAME's skinning is linear in the rest
    vertices, so everything the forward pass needs collapses per landmark and joint up front:
    ``sum_i b_i w_ij x_i`` for the rest mesh, each expression component and each pose corrective.
    A frame then costs O(478 * 5) instead of O(5023 * 5), and for fixed joint rotations the
    landmarks are affine in the expression coefficients (joints are regressed linearly from the
    expressed mesh, and the skinning translations are linear in the joints).
    """

    rest: np.ndarray  # (L, J, 3) metres: sum_i b_i w_ij x_i over the shaped template
    expression: np.ndarray  # (E, L, J, 3) metres per coefficient
    pose: np.ndarray  # (36, L, J, 3) metres per (R - I) entry
    weight: np.ndarray  # (L, J) sum_i b_i w_ij
    joints_rest: np.ndarray  # (J, 3) metres, regressed from the shaped template
    joints_expression: np.ndarray  # (E, J, 3) metres per coefficient
    parents: np.ndarray  # (J,)
    skinning: _Skinning  # the (landmark, joint) pairs ``locate`` skins

    @classmethod
    def build(cls, model: FlameModel, landmarks: LandmarkEmbedding, shape: np.ndarray, expressions: int) -> "FlameLandmarks":
        """For ``model`` with identity ``shape`` (S',) and its first ``expressions`` components."""
        triangles = landmarks.triangles.astype(np.int64)  # (L, 3)
        mix = landmarks.barycentric.astype(np.float64)[..., None] * model.skinning_weights[triangles]  # (L, 3, J)
        shaped = shaped_vertices(model, shape, np.zeros(0))  # (V, 3)
        basis = model.expression_basis[:expressions]  # (E, V, 3)

        def collapse(points: np.ndarray) -> np.ndarray:  # (..., V, 3) -> (..., L, J, 3)
            return np.einsum("ltj,...ltc->...ljc", mix, points[..., triangles, :])

        rest, expression, pose, weight = collapse(shaped), collapse(basis), collapse(model.pose_basis), mix.sum(axis=1)
        joints_rest = model.joint_regressor @ shaped
        joints_expression = np.einsum("jv,evc->ejc", model.joint_regressor, basis)
        return cls(rest=rest, expression=expression, pose=pose, weight=weight, joints_rest=joints_rest,
                   joints_expression=joints_expression, parents=model.parents,
                   skinning=_Skinning.build(rest, expression, pose, weight, joints_rest, joints_expression))

    def locate(self, expression: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """Landmarks (..., L, 3) metres for expression (..., E) and pose (..., J, 3) axis-angle.

        Skinned per (landmark, joint) pair, ``CHUNK_FRAMES`` frames at a time: never the
        (..., E, L, 3) basis that ``affine`` builds (11 GB for 10,000 frames of 100 expressions)."""
        expression = np.asarray(expression, dtype=np.float64)
        pose = np.asarray(pose, dtype=np.float64)
        batch = np.broadcast_shapes(expression.shape[:-1], pose.shape[:-2])
        expression = np.broadcast_to(expression, batch + expression.shape[-1:]).reshape(-1, expression.shape[-1])
        pose = np.broadcast_to(pose, batch + pose.shape[-2:]).reshape(-1, *pose.shape[-2:])
        located = np.empty((len(expression),) + self.rest.shape[:1] + (3,))  # (n, L, 3)
        for part in frame_chunks(len(located)):
            located[part] = np.moveaxis(self.skinned(expression[part], pose[part]), -1, 0)
        return located.reshape(batch + located.shape[1:])

    def skinned(self, expression: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """Landmarks (L, 3, n) metres, frames last, for expression (n, E) and pose (n, J, 3): one
        chunk of ``locate``, in the layout it is computed in (a caller that works per landmark
        saves the transposition)."""
        count, pair_rows = len(expression), 3 * len(self.skinning.weight)
        rotations = rodrigues(pose)  # (n, J, 3, 3)
        inputs = np.concatenate([np.asarray(expression, np.float64).T, pose_features(rotations).T, np.ones((1, count))])
        affine = self.skinning.affine.T @ inputs  # (P*3 + J*3, n)
        joints = np.ascontiguousarray(affine[pair_rows:].T).reshape(count, -1, 3)
        transforms, _ = joint_transforms(rotations, joints, self.parents)  # (n, J, 3, 4)
        skinned = np.zeros((len(self.rest), 3, count))  # (L, 3, n)
        still = np.all(transforms[..., :3] == np.eye(3), axis=(0, 2, 3))  # (J,) the root and neck in a bake
        _skin(skinned, _frames_last(transforms[..., :3]), _frames_last(transforms[..., 3]),
              affine[:pair_rows].reshape(-1, 3, count), self.skinning.weight, self.skinning.groups, still)
        return skinned

    def affine(self, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks as offset (..., L, 3) + expression @ basis (..., E, L, 3) at a fixed pose: the
        exact per-frame basis, too large to build for a take; the reference the solver's closed-form
        gradient is tested against."""
        rotations = rodrigues(pose)  # (..., J, 3, 3)
        joints = np.broadcast_to(self.joints_rest, rotations.shape[:-2] + (3,))
        transforms, _ = joint_transforms(rotations, joints, self.parents)  # (..., J, 3, 4)
        rest = self.rest + np.tensordot(pose_features(rotations), self.pose, axes=([-1], [0]))  # (..., L, J, 3)
        offset = np.einsum("...jab,...ljb->...la", transforms[..., :3], rest)
        offset += np.einsum("lj,...ja->...la", self.weight, transforms[..., 3])
        # Expression moves the joints too: the translations' share, linear in the joints.
        batch = rotations.shape[:-3] + self.joints_expression.shape[:1]  # (..., E)
        rotations_e = np.broadcast_to(rotations[..., None, :, :, :], batch + rotations.shape[-3:])
        joints_e = np.broadcast_to(self.joints_expression, batch + self.joints_expression.shape[-2:])
        shifts, _ = joint_transforms(rotations_e, joints_e, self.parents)  # (..., E, J, 3, 4)
        basis = np.einsum("...jab,eljb->...ela", transforms[..., :3], self.expression)
        basis += np.einsum("lj,...eja->...ela", self.weight, shifts[..., 3])
        return offset, basis


_Groups = tuple[tuple[int, slice, slice | np.ndarray], ...]  # per joint: (joint, its pairs, their landmarks)


@dataclass(frozen=True)
class _Skinning:
    """A rig's (landmark, joint) pairs that carry anything (a third of the dense (L, J) on FLAME),
    grouped by joint, and what is affine in [coefficients, pose features, 1] about them: one
    product gives every pair's point before skinning and the joints."""

    weight: np.ndarray  # (P,) the pair's skinning weight sum_i b_i w_ij
    groups: _Groups
    # (E + 36 + 1, P*3 + J*3) metres per coefficient, pose feature and 1: the pairs' points, then the joints
    affine: np.ndarray

    @classmethod
    def build(cls, rest: np.ndarray, expression: np.ndarray, pose: np.ndarray, weight: np.ndarray,
              joints_rest: np.ndarray, joints_expression: np.ndarray) -> "_Skinning":
        """From ``FlameLandmarks``' arrays (see there)."""
        pair_joint, pair_landmark, groups = _grouped_pairs(_carried(rest, expression, pose, weight))
        points = np.concatenate([expression, pose, rest[None]])[:, pair_landmark, pair_joint]  # (E + 36 + 1, P, 3)
        joints = np.concatenate([joints_expression, np.zeros((len(pose),) + joints_rest.shape), joints_rest[None]])
        return cls(weight=weight[pair_landmark, pair_joint], groups=groups,
                   affine=np.concatenate([points.reshape(len(points), -1), joints.reshape(len(joints), -1)], axis=1))


def _carried(rest: np.ndarray, expression: np.ndarray, pose: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(L, J) bool: the (landmark, joint) pairs with any weight, rest point, expression or pose
    corrective (the arrays as in ``FlameLandmarks``, ``pose`` (F, L, J, 3) any of its features)."""
    return (weight != 0) | np.any(rest != 0, axis=-1) | np.any(expression != 0, axis=(0, -1)) | np.any(
        pose != 0, axis=(0, -1))


def _grouped_pairs(carried: np.ndarray) -> tuple[np.ndarray, np.ndarray, _Groups]:
    """The pairs where ``carried`` (L', J) holds, grouped by joint: their joints (P,), their rows
    of ``carried`` (P,), and per joint (joint, its pairs, their rows: a slice where consecutive,
    so indexing with it takes a view)."""
    pair_joint, pair_landmark = np.nonzero(carried.T)
    groups = []
    for joint in np.unique(pair_joint):
        pairs = slice(int(np.searchsorted(pair_joint, joint)), int(np.searchsorted(pair_joint, joint, side="right")))
        rows = pair_landmark[pairs]
        consecutive = np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows)))
        groups.append((int(joint), pairs, slice(int(rows[0]), int(rows[0]) + len(rows)) if consecutive else rows))
    return pair_joint, pair_landmark, tuple(groups)


def _skin(into: np.ndarray, turns: np.ndarray, shifts: np.ndarray, points: np.ndarray, weight: np.ndarray,
          groups: _Groups, still: np.ndarray | None = None) -> None:
    """Adds M_j q + w t_j of every pair to its landmark's row of ``into`` (L', 3, n): M (J, 3, 3, n),
    t (J, 3, n) metres, the pairs' points q (P, 3, n) metres and weights w (P,), frames last.
    ``still`` (J,) bool: joints whose M is I in every frame, their q added as it is (the same sum)."""
    for joint, pairs, landmarks in groups:  # one (p, 3, n) temporary alive at a time: each reuses the last's memory
        if still is not None and still[joint]:
            into[landmarks] += points[pairs]
        else:
            into[landmarks] += np.einsum("abn,pbn->pan", turns[joint], points[pairs])
        into[landmarks] += weight[pairs, None, None] * shifts[joint]


def _frames_last(array: np.ndarray) -> np.ndarray:
    """(n, ...) -> (..., n), contiguous: per-landmark work then runs along whole rows of frames."""
    return np.ascontiguousarray(np.moveaxis(array, 0, -1))


@dataclass
class FlameRetarget:
    expression: np.ndarray  # (T, E) coefficients, NaN rows where the take has no face
    pose: np.ndarray  # (T, 5, 3) axis-angle per FLAME joint (only the solved joints move), NaN rows likewise
    # (T, L, 3) float32 metres in rest space: what the solution leaves unexplained (``retarget_flame``'s
    # ``residual``), NaN rows likewise; None when not asked for
    residual: np.ndarray | None = None


def flame_rest_alignment(rig: FlameLandmarks, neutral_mm: np.ndarray) -> Similarities:
    """Similarity from the performer's neutral (mm) onto the FLAME rest landmarks (m)."""
    rest_landmarks = rig.locate(np.zeros(rig.expression.shape[0]), np.zeros((len(rig.parents), 3)))  # (L, 3)
    return fit_similarities(neutral_mm.astype(np.float64), rest_landmarks[None])


def _skew(vectors: np.ndarray) -> np.ndarray:
    """Cross-product matrices (..., 3, 3) of vectors (..., 3)."""
    x, y, z = np.moveaxis(vectors, -1, 0)
    zero = np.zeros_like(x)
    return np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(vectors.shape + (3,))


def _inverse_right_jacobian(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3, 3): the axis-angle step d that matches a body-frame rotation step w, d = J_r^-1 w
    (rodrigues(a + d) = rodrigues(a) rodrigues(w) to first order)."""
    angle2 = np.sum(axis_angle**2, axis=-1)
    angle = np.sqrt(angle2)
    small = angle < 1e-3
    safe = np.where(small, 1.0, angle)
    factor = np.where(small, 1.0 / 12.0 + angle2 / 720.0,
                      1.0 / safe**2 - (1.0 + np.cos(safe)) / (2.0 * safe * np.sin(safe)))
    cross = _skew(axis_angle)
    return np.eye(3) + 0.5 * cross + factor[..., None, None] * (cross @ cross)


@dataclass(frozen=True)
class _FlameSystem:
    """What ``retarget_flame`` needs that no frame changes, for one rig and set of solved joints.

    Landmarks split in two: ``others``, where no moving joint (a solved joint or its children)
    reaches, so FLAME there is affine in the expressions and pose features and its share of the
    normal equations is an (E, E) Gram and a few small products; and ``reached``, evaluated per
    frame through their (landmark, moving joint) pairs, grouped by joint (a group's landmarks
    consecutive where they can be: a slice, not a gather). An iteration is two products over
    the frames: ``affine`` takes [coefficients, pose features, 1] to what is affine in them (the
    reached landmarks at rest pose, the pairs' points, the joints), and ``normal`` takes the near
    residuals and [coefficients, pose features] back to the normal equations' right-hand side,
    the far landmarks' Gram included. ``inverse`` is the inverse of the Gauss-Newton matrix at
    rest, every frame's step (see ``retarget_flame``).
    """

    solved: np.ndarray  # (S,) the solved joints
    subtrees: tuple[np.ndarray, ...]  # per solved joint: it and the joints below it
    feature_columns: np.ndarray  # (F,) the pose features (R - I entries) the solved joints drive
    reached: np.ndarray  # (R,) landmarks some moving joint carries, grouped by the first that does
    groups: _Groups  # per moving joint: its pairs and their landmarks (rows of ``reached``)
    pair_landmark: np.ndarray  # (P,) index into ``reached``, unique within a group
    pair_weight: np.ndarray  # (P,) the pair's skinning weight sum_i b_i w_ij
    # (E + F + 1, R*3 + P*3 + J*3) metres per coefficient, pose feature and 1: the reached landmarks'
    # displacement at rest pose, the pairs' points, the joints
    affine: np.ndarray
    # (E + F, R*3 + P*3 + E + F + J*3): [r at the reached landmarks, (G - I)^T r per pair, c, f, the
    # joints' adjoint] -> the expressions' and pose features' J^T r - ridge c, far landmarks included
    normal: np.ndarray
    # (E + F, R*3 + P*3 + J*3) float32: ``affine`` less its constant row, what varies with the frame
    # (millimetres), for ``_FlameState.at``'s product in float32 (twice as fast)
    affine_varying: np.ndarray
    others: np.ndarray  # (N,) landmarks no moving joint carries
    others_expression: np.ndarray  # (E, N*3) metres per coefficient
    others_pose: np.ndarray  # (F, N*3)
    joints_expression: np.ndarray  # (E, J*3) metres per coefficient
    ridge: float
    jacobian: np.ndarray  # (K, L*3) K = E + 3 S, at rest: the expressions, then the joints' body-frame rotations
    hessian: np.ndarray  # (K, K) the Gauss-Newton matrix at rest, ridge and damping added
    inverse: np.ndarray  # (K, K)

    @classmethod
    def build(cls, rig: FlameLandmarks, joints: tuple[int, ...], regularization: float) -> "_FlameSystem":
        count, parents = len(rig.parents), rig.parents
        solved = np.array(sorted(set(joints)), dtype=np.int64)
        below = np.eye(count, dtype=bool)  # below[a, b]: b is a or under a
        for joint in range(1, count):
            below[:, joint] |= below[:, parents[joint]]
        moving = below[solved].any(axis=0)
        feature_columns = np.concatenate([np.arange(9 * (joint - 1), 9 * joint) for joint in solved if joint > 0]
                                         + [np.zeros(0, dtype=np.int64)]).astype(np.int64)
        pose = rig.pose[feature_columns]  # (F, L, J, 3)
        carried = _carried(rig.rest, rig.expression, pose, rig.weight) & moving  # (L, J)
        reached = np.flatnonzero(carried.any(axis=1))
        reached = reached[np.argsort(np.argmax(carried[reached], axis=1), kind="stable")]  # by first carrying joint
        others = np.flatnonzero(~carried.any(axis=1))
        pair_joint, pair_landmark, groups = _grouped_pairs(carried[reached])
        landmark_of_pair = reached[pair_landmark]
        expressions, features = rig.expression.shape[0], len(feature_columns)
        basis = rig.expression.sum(axis=2)  # (E, L, 3) at rest
        pose_basis = pose.sum(axis=2)  # (F, L, 3)
        others_expression = basis[:, others].reshape(expressions, -1)
        others_pose = pose_basis[:, others].reshape(features, -1)
        ridge = regularization * float(np.mean(np.sum(basis.reshape(expressions, -1) ** 2, axis=1)))

        def near_rows(at_rest: np.ndarray, per_joint: np.ndarray) -> np.ndarray:  # (k, L, 3), (k, L, J, 3)
            return np.concatenate([at_rest[:, reached].reshape(len(at_rest), -1),
                                   per_joint[:, landmark_of_pair, pair_joint].reshape(len(per_joint), -1)], axis=1)

        near = np.concatenate([near_rows(basis, rig.expression), near_rows(pose_basis, pose),
                               near_rows(np.zeros((1,) + basis.shape[1:]), rig.rest[None])])  # (E + F + 1, R*3 + P*3)
        joints_expression = rig.joints_expression.reshape(expressions, -1)
        joint_rows = np.concatenate([joints_expression, np.zeros((features, joints_expression.shape[1])),
                                     rig.joints_rest.reshape(1, -1)])  # (E + F + 1, J*3) metres
        far = np.concatenate([others_expression, others_pose])  # (E + F, N*3)
        far_gram = far @ far.T + np.diag(np.concatenate([np.full(expressions, ridge), np.zeros(features)]))
        affine = np.concatenate([near, joint_rows], axis=1)
        system = cls(
            solved=solved, subtrees=tuple(np.flatnonzero(below[joint]) for joint in solved),
            feature_columns=feature_columns, reached=reached, groups=groups, pair_landmark=pair_landmark,
            pair_weight=rig.weight[landmark_of_pair, pair_joint], affine=affine,
            affine_varying=affine[:-1].astype(np.float32),
            normal=np.concatenate([near[:-1], -far_gram, joint_rows[:-1]], axis=1), others=others,
            others_expression=others_expression, others_pose=others_pose, joints_expression=joints_expression,
            ridge=ridge, jacobian=np.zeros((0, 0)), hessian=np.zeros((0, 0)), inverse=np.zeros((0, 0)),
        )
        # The Gauss-Newton matrix at rest: its Jacobian's columns are the expressions and each solved
        # joint's body-frame rotation steps, at zero expression and pose.
        rest_state = _FlameState.at(system, rig, np.zeros((1, expressions)), np.zeros((1, len(solved), 3)))
        rotation_columns = rest_state.rotation_columns(system, rig)  # (1, 3S, L*3)
        jacobian = np.concatenate([basis.reshape(expressions, -1), rotation_columns[0]])  # (K, L*3)
        damping = np.concatenate([np.full(expressions, ridge), np.full(3 * len(solved), 1e-3 * ridge)])
        hessian = jacobian @ jacobian.T + np.diag(damping)
        inverse = np.linalg.inv(hessian)
        object.__setattr__(system, "jacobian", jacobian)
        object.__setattr__(system, "hessian", hessian)
        object.__setattr__(system, "inverse", 0.5 * (inverse + inverse.T))
        return system


@dataclass
class _FlameState:
    """FLAME at one estimate for n frames, on the reached landmarks (the others need no evaluation).
    The per-landmark arrays keep frames last: gathering landmarks then moves whole rows."""

    coefficients: np.ndarray  # (n, E)
    rotations: np.ndarray  # (n, J, 3, 3) local
    joints: np.ndarray  # (n, J, 3) metres, the expressed rest joints
    transforms: np.ndarray  # (n, J, 3, 4)
    posed_joints: np.ndarray  # (n, J, 3) metres
    turns: np.ndarray  # (J, 3, 3, n) the skinning rotations less the identity, G - I, frames last
    inputs: np.ndarray  # (E + F + 1, n) [coefficients, the solved joints' (R - I) entries, 1], frames last
    local: np.ndarray  # (P, 3, n) metres: each pair's rest point with expression and correctives
    reached: np.ndarray  # (R, 3, n) metres: the reached landmarks less their rest place

    @classmethod
    def at(cls, system: _FlameSystem, rig: FlameLandmarks, coefficients: np.ndarray, angles: np.ndarray) -> "_FlameState":
        """``angles`` (n, S, 3) axis-angle of the solved joints."""
        count, reached_rows, pair_rows = len(coefficients), 3 * len(system.reached), 3 * len(system.pair_landmark)
        rotations = np.broadcast_to(np.eye(3), (count, len(rig.parents), 3, 3)).copy()
        rotations[:, system.solved] = rodrigues(angles)
        features = pose_features(rotations)[:, system.feature_columns]
        inputs = np.concatenate([coefficients.T, features.T, np.ones((1, count))])
        # What varies with the frame in float32 (millimetres: float32's 1e-7 of them is 1e-10 m), the
        # rest places added in float64.
        affine = system.affine_varying.T @ inputs[:-1].astype(np.float32) + system.affine[-1][:, None]  # (3R+3P+3J, n)
        reached = affine[:reached_rows].reshape(-1, 3, count)
        local = affine[reached_rows:reached_rows + pair_rows].reshape(-1, 3, count)
        joints = np.ascontiguousarray(affine[reached_rows + pair_rows:].T).reshape(count, -1, 3)
        transforms, posed_joints = joint_transforms(rotations, joints, rig.parents)
        turns = _frames_last(transforms[..., :3] - np.eye(3))  # G - I: the pairs move by (G - I) q + w t
        _skin(reached, turns, _frames_last(transforms[..., 3]), local, system.pair_weight, system.groups)
        return cls(coefficients, rotations, joints, transforms, posed_joints, turns, inputs, local, reached)

    def rotation_columns(self, system: _FlameSystem, rig: FlameLandmarks) -> np.ndarray:
        """(n, 3S, L*3): the landmarks' derivatives in each solved joint's body-frame rotation about
        x, y and z, by complex step (exact; independent of ``_flame_steps``' closed form)."""
        step = 1e-30
        count, columns, reached_count = len(self.coefficients), 3 * len(system.solved), len(system.reached)
        rotations = np.repeat(self.rotations[:, None].astype(np.complex128), columns, axis=1)  # (n, 3S, J, 3, 3)
        features = np.zeros((count, columns, len(system.feature_columns)))
        for index, joint in enumerate(np.repeat(system.solved, 3)):
            change = self.rotations[:, joint] @ _skew(np.eye(3)[index % 3])  # (n, 3, 3)
            rotations[:, index, joint] += 1j * step * change
            if joint > 0:
                position = np.searchsorted(system.feature_columns, 9 * (joint - 1))
                features[:, index, position:position + 9] = change.reshape(count, 9)
        joints = np.broadcast_to(self.joints[:, None], rotations.shape[:-2] + (3,))
        transforms = joint_transforms(rotations, joints, rig.parents)[0].imag / step  # (n, 3S, J, 3, 4)
        near_pose = system.affine[len(system.joints_expression):-1, :3 * (reached_count + len(system.pair_landmark))]
        near = (features @ near_pose).reshape(count, columns, -1, 3)  # (n, 3S, R + P, 3) the pose features' share
        reached, pairs = near[:, :, :reached_count], near[:, :, reached_count:]
        local = np.moveaxis(self.local, -1, 0)  # (n, P, 3)
        for joint, group, landmarks in system.groups:
            moved = np.einsum("nkab,npb->nkpa", transforms[:, :, joint, :, :3], local[:, group])
            moved += system.pair_weight[group, None] * transforms[:, :, joint, None, :, 3]
            moved += np.einsum("nab,nkpb->nkpa", self.transforms[:, joint, :, :3] - np.eye(3), pairs[:, :, group])
            reached[:, :, landmarks] += moved
        landmarks = np.zeros((count, columns, len(system.reached) + len(system.others), 3))
        landmarks[:, :, system.reached] = reached
        landmarks[:, :, system.others] = (features @ system.others_pose).reshape(count, columns, -1, 3)
        return landmarks.reshape(count, columns, -1)


def _axial(matrices: np.ndarray) -> np.ndarray:
    """(..., 3): a with <[w]x, M> = w . a for every w (the skew part of M (..., 3, 3) as a vector)."""
    return np.stack([matrices[..., 2, 1] - matrices[..., 1, 2], matrices[..., 0, 2] - matrices[..., 2, 0],
                     matrices[..., 1, 0] - matrices[..., 0, 1]], axis=-1)


def _translation_adjoint(world: np.ndarray, pulls: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """d/dJ of sum_j t_j(J) . pulls_j (n, J, 3), t_j the skinning translations (linear in the rest
    joints J): reverse mode through ``joint_transforms``' recursion, world rotations (n, J, 3, 3)."""
    posed = pulls.copy()  # adjoint of the posed joints, accumulated from the children
    adjoint = -(pulls[..., None, :] @ world)[..., 0, :]  # t_j = posed_j - G_j J_j
    for joint in range(len(parents) - 1, 0, -1):
        parent = parents[joint]
        posed[:, parent] += posed[:, joint]
        pulled = np.einsum("nba,nb->na", world[:, parent], posed[:, joint])  # posed_j = posed_p + G_p (J_j - J_p)
        adjoint[:, joint] += pulled
        adjoint[:, parent] -= pulled
    adjoint[:, 0] += posed[:, 0]
    return adjoint


def _flame_steps(system: _FlameSystem, rig: FlameLandmarks, state: _FlameState, others_target: np.ndarray,
                 others_pose_target: np.ndarray, reached_target: np.ndarray) -> np.ndarray:
    """The objective's descent direction J^T r - ridge c (n, E + 3S) at ``state`` (r = y - FLAME),
    the rotations' part in body-frame steps.

    ``others_target`` (n, E) and ``others_pose_target`` (n, F) are the far landmarks' targets
    projected on their expression and pose bases; ``reached_target`` (R, 3, n) the near ones'
    displacements from rest, frames last."""
    count, joint_count, expressions = len(state.coefficients), len(rig.parents), len(system.joints_expression)
    reached_rows = 3 * len(system.reached)
    near_rows = reached_rows + 3 * len(system.pair_landmark)
    input_rows = near_rows + len(state.inputs) - 1
    stacked = np.empty((system.normal.shape[1], count))  # what ``normal`` reads, frames last
    residual = stacked[:reached_rows].reshape(-1, 3, count)  # (R, 3, n) r at the reached landmarks
    np.subtract(reached_target, state.reached, out=residual)
    unrotated = stacked[reached_rows:near_rows].reshape(-1, 3, count)  # (P, 3, n) (G - I)^T r per pair
    stacked[near_rows:input_rows] = state.inputs[:-1]  # c, f for the far landmarks' Gram
    pulls = np.zeros((joint_count, 3, count))  # sum w r per joint
    moments = np.zeros((joint_count, 3, 3, count))  # sum r q^T per joint
    for joint, pairs, landmarks in system.groups:
        at_pairs = residual[landmarks]  # (p, 3, n)
        turned_back = np.ascontiguousarray(np.swapaxes(state.turns[joint], 0, 1))  # (G - I)^T, (3, 3, n)
        np.einsum("abn,pbn->pan", turned_back, at_pairs, out=unrotated[pairs])
        pulls[joint] = np.einsum("p,pan->an", system.pair_weight[pairs], at_pairs)
        for axis in range(3):  # a row at a time: one einsum over both axes is several times slower
            moments[joint, axis] = np.einsum("pn,pbn->bn", at_pairs[:, axis], state.local[pairs])
    pulls, moments = np.moveaxis(pulls, -1, 0), np.moveaxis(moments, -1, 0)  # (n, J, 3), (n, J, 3, 3)
    world = state.transforms[..., :3]
    # Expressions: the far landmarks through their Gram, the near ones directly, and the joints the
    # expressions move (the skinning translations are linear in the joints): one product, ``normal``.
    stacked[input_rows:] = _translation_adjoint(world, pulls, rig.parents).reshape(count, -1).T
    gradient = (system.normal @ stacked).T  # (n, E + F)
    gradient_c, gradient_f = gradient[:, :expressions] + others_target, gradient[:, expressions:] + others_pose_target
    # Rotations: a body-frame step w of joint s turns its subtree's world transforms by [G_s w]x
    # about the joint (dG_d = [G_s w]x G_d, dt_d = [G_s w]x (t_d - o_s)), and moves its pose features.
    torques = _axial(np.matmul(moments, np.swapaxes(world, -1, -2)))  # (n, J, 3)
    gradient_r = np.zeros((count, len(system.solved), 3))
    for index, (joint, subtree) in enumerate(zip(system.solved, system.subtrees)):
        arms = state.transforms[:, subtree][..., 3] - state.posed_joints[:, joint, None]  # (n, d, 3)
        turning = torques[:, subtree] + np.cross(arms, pulls[:, subtree])
        gradient_r[:, index] = np.einsum("nba,nb->na", world[:, joint], turning.sum(axis=1))
        if joint > 0:
            position = np.searchsorted(system.feature_columns, 9 * (joint - 1))
            block = gradient_f[:, position:position + 9].reshape(count, 3, 3)
            gradient_r[:, index] += _axial(np.matmul(np.swapaxes(state.rotations[:, joint], 1, 2), block))
    return np.concatenate([gradient_c, gradient_r.reshape(count, -1)], axis=1)


def _box_step(system: _FlameSystem, direction: np.ndarray, low: np.ndarray, high: np.ndarray,
              rounds: int = 30) -> np.ndarray:
    """The step (n, K) minimising 1/2 s^T H s - direction^T s with ``low <= s[:, :E] <= high``
    (n, E), H the system's fixed Gauss-Newton matrix; the expressions' bounds only.

    Most frames never reach a bound: their step is H^-1 direction. The others take the
    primal-dual active set method (a few rounds): the bounds that bind are fixed through their
    multipliers, an (a, a) solve per frame with a the number of bound coefficients, so H^-1 is
    never refactored."""
    inverse = system.inverse
    step = direction @ inverse
    components = low.shape[1]
    slack = 1e-12
    rows = np.flatnonzero(np.any((step[:, :components] < low - slack) | (step[:, :components] > high + slack), axis=1))
    if not len(rows):
        return step
    free, low, high = step[rows], low[rows], high[rows]
    scale = 1.0 / np.diag(system.hessian)[:components]  # multipliers -> coefficient units
    current, multipliers, previous = free.copy(), np.zeros_like(low), None
    for _ in range(rounds):
        probe = current[:, :components] + multipliers * scale
        upper, lower = probe > high, probe < low
        active = upper | lower
        if previous is not None and np.array_equal(active, previous):
            break
        previous = active
        width = int(active.sum(axis=1).max())
        if width == 0:
            current, multipliers = free.copy(), np.zeros_like(low)
            continue
        order = np.argsort(~active, axis=1, kind="stable")[:, :width]  # (r, a) the bound ones first
        used = np.take_along_axis(active, order, axis=1)
        bound = np.take_along_axis(np.where(upper, high, low), order, axis=1)
        block = inverse[order[:, :, None], order[:, None, :]]  # (r, a, a)
        block = np.where(used[:, :, None] & used[:, None, :], block, np.eye(width))
        right = np.where(used, np.take_along_axis(free[:, :components], order, axis=1) - bound, 0.0)
        solved = np.linalg.solve(block, right[..., None])[..., 0] * used  # (r, a)
        current = free - np.einsum("ra,rak->rk", solved, inverse[order])
        multipliers = np.zeros_like(low)
        np.put_along_axis(multipliers, order, solved, axis=1)
    current[:, :components] = np.clip(current[:, :components], low, high)
    step[rows] = current
    return step


@dataclass
class _StepHistory:
    """Anderson acceleration of each frame's Gauss-Newton iteration.

    With one matrix for every frame, an iteration near the solution is a linear contraction of
    the error, by about 0.3 and by up to 0.6 where skinning blends joints and the expressions move
    the lever arms (there the exact matrix differs most from the one at rest). The last ``depth``
    changes of the estimate and of its step span the slow directions: each step is corrected by
    the combination of them whose step changes best cancel it (least squares per frame), which
    converges like GMRES rather than like the plain iteration (on a FLAME-sized take a chunk's
    slowest frames take 13 iterations instead of 43). A zero step stays a zero step: the
    solution is the same.
    """

    estimate_changes: np.ndarray  # (n, depth, K) between consecutive estimates
    step_changes: np.ndarray  # (n, depth, K) between their Gauss-Newton steps
    last_estimate: np.ndarray  # (n, K)
    last_step: np.ndarray  # (n, K)
    taken: int = 0  # steps so far, as many for every frame (a chunk's frames start together)

    @classmethod
    def empty(cls, count: int, size: int, depth: int) -> "_StepHistory":
        return cls(np.zeros((count, depth, size)), np.zeros((count, depth, size)), np.zeros((count, size)),
                   np.zeros((count, size)))

    def accelerated(self, estimate: np.ndarray, step: np.ndarray) -> np.ndarray:
        """The step (n, K) to take from ``estimate`` (n, K), whose Gauss-Newton step is ``step``."""
        depth = self.step_changes.shape[1]
        if self.taken:
            slot = (self.taken - 1) % depth  # the oldest change makes way
            self.estimate_changes[:, slot] = estimate - self.last_estimate
            self.step_changes[:, slot] = step - self.last_step
        recorded = min(self.taken, depth)
        self.last_estimate, self.last_step, self.taken = estimate, step, self.taken + 1
        if not recorded:
            return step
        changes = self.step_changes[:, :recorded]  # (n, m, K)
        gram = changes @ np.swapaxes(changes, 1, 2)  # (n, m, m); a whisker of ridge keeps parallel changes solvable
        gram += (1e-10 * np.trace(gram, axis1=1, axis2=2) + np.finfo(float).tiny)[:, None, None] * np.eye(recorded)
        weights = np.linalg.solve(gram, changes @ step[..., None])  # (n, m, 1)
        return step - np.sum(weights * (self.estimate_changes[:, :recorded] + changes), axis=1)

    def of(self, frames: np.ndarray) -> "_StepHistory":
        """The history of ``frames`` (bool (n,)) only."""
        return _StepHistory(self.estimate_changes[frames], self.step_changes[frames], self.last_estimate[frames],
                            self.last_step[frames], self.taken)


def _targets(system: _FlameSystem, by_landmark: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For displacements (L, 3, n) metres, frames last: the far landmarks' projected on their
    expression (n, E) and pose (n, F) bases, and the reached landmarks' (R, 3, n) (``_flame_steps``)."""
    others = by_landmark[system.others].reshape(-1, by_landmark.shape[-1])  # (N*3, n)
    return (system.others_expression @ others).T, (system.others_pose @ others).T, by_landmark[system.reached]


def _solve_flame_frames(system: _FlameSystem, rig: FlameLandmarks, by_landmark: np.ndarray,
                        bounds: tuple[float, float], max_step_rad: float, iterations: int,
                        tolerance: float, history_depth: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Expressions (n, E) and the solved joints' axis-angles (n, S, 3) for displacements
    (L, 3, n) metres from rest, frames last; see ``retarget_flame``. The frames still changing
    are kept together (their targets, estimates and ``_StepHistory``), so each iteration works
    on them alone."""
    count, components = by_landmark.shape[-1], len(system.joints_expression)
    others_target, others_pose_target, reached_target = _targets(system, by_landmark)
    solution = np.zeros((count, components + 3 * len(system.solved)))  # expressions, then axis-angles (radians)
    frames, estimate = np.arange(count), solution.copy()  # the frames still changing, and their estimates
    history = _StepHistory.empty(count, solution.shape[1], history_depth)
    for iteration in range(iterations):
        coefficients, angles = estimate[:, :components], estimate[:, components:].reshape(len(frames), -1, 3)
        if iteration:  # the state lives inside the call only: the next one reuses its memory
            direction = _flame_steps(system, rig, _FlameState.at(system, rig, coefficients, angles), others_target,
                                     others_pose_target, reached_target)
        else:  # every frame starts at rest, where the direction is J^T y with the rest Jacobian: one product
            direction = (system.jacobian @ by_landmark.reshape(-1, count)).T
        step = _box_step(system, direction, bounds[0] - coefficients, bounds[1] - coefficients)
        rotation = np.einsum("nsab,nsb->nsa", _inverse_right_jacobian(angles),
                             step[:, components:].reshape(len(frames), -1, 3))
        step[:, components:] = np.clip(rotation, -max_step_rad, max_step_rad).reshape(len(frames), -1)
        change = np.abs(step).max(axis=1)  # the Gauss-Newton step's largest coefficient or angle
        taken = history.accelerated(estimate, step)
        reaching = coefficients + step[:, :components]
        binding = np.any((reaching <= bounds[0] + 1e-12) | (reaching >= bounds[1] - 1e-12), axis=1)
        taken[binding] = step[binding]  # where a bound binds, the active set changes the map: plain steps
        taken[:, components:] = np.clip(taken[:, components:], -max_step_rad, max_step_rad)
        estimate = estimate + taken
        estimate[:, :components] = np.clip(estimate[:, :components], *bounds)
        solution[frames] = estimate
        moving = change > tolerance
        if not moving.all():
            frames, estimate, history = frames[moving], estimate[moving], history.of(moving)
            others_target, others_pose_target = others_target[moving], others_pose_target[moving]
            reached_target = reached_target[..., moving]
        if not len(frames):
            break
    return solution[:, :components], solution[:, components:].reshape(count, -1, 3)


def _rest_residual(system: _FlameSystem, rig: FlameLandmarks, by_landmark: np.ndarray, coefficients: np.ndarray,
                   angles: np.ndarray) -> np.ndarray:
    """What FLAME at expressions (n, E) and the solved joints' axis-angles (n, S, 3) leaves
    unexplained of displacements (L, 3, n) metres from rest, frames last, brought back to rest
    space: (L, 3, n) float32 metres.

    FLAME is evaluated as the solve evaluates it (the reached landmarks through ``_FlameState``,
    the others affine in the expressions and pose features). Shape keys act before skinning, so a
    rest-space offset d at a landmark shows posed as (sum_j w_j G_j) d, with w the landmark's
    skinning weights and G_j the joints' world rotations: the residual is unrotated by that blend
    (``flame.unskinned``; the jaw's rotation, mostly)."""
    state = _FlameState.at(system, rig, coefficients, angles)
    components, count = len(system.joints_expression), len(coefficients)
    posed = by_landmark.copy()  # (L, 3, n) becomes the posed residual
    posed[system.reached] -= state.reached
    far = system.others_expression.T @ state.inputs[:components] + system.others_pose.T @ state.inputs[components:-1]
    posed[system.others] -= far.reshape(-1, 3, count)  # (N*3, n) -> (N, 3, n)
    return unskinned(rig.weight, state.transforms[..., :3], posed)


def retarget_flame(
    rig: FlameLandmarks,
    deformation_mm: np.ndarray,
    neutral_mm: np.ndarray,
    joints: tuple[int, ...] = (2,),
    regularization: float = 0.01,
    iterations: int = 60,
    bounds: tuple[float, float] = FLAME_COEFFICIENT_BOUNDS,
    max_step_rad: float = 0.3,
    tolerance: float = 1e-6,
    chunk_frames: int = FLAME_CHUNK_FRAMES,
    on_chunk: Callable[[int, int], None] | None = None,
    residual: bool = False,
    seconds: np.ndarray | None = None,
    smoothing_s: float = SMOOTHING_S,
    untied: np.ndarray | None = None,
) -> FlameRetarget:
    """FLAME expression coefficients and joint rotations (default: the jaw, joint 2) per frame.

    FLAME opens the mouth mostly with the jaw joint, which expression blendshapes cannot mimic,
    so the jaw is solved with the expressions: per frame

        minimise_{c, r}  || y - FLAME(c, r) ||^2 + ridge ||c||^2,   bounds[0] <= c <= bounds[1]

    at the landmarks (every axis alike), with ``ridge`` as in ``retarget_expressions``. The take's
    deformation is canonical (head pose removed), so the neck and global joints stay at zero here;
    the head pose is keyed separately. Frames with NaN displacement (no face) come back as NaN rows.

    Solved as Gauss-Newton with one matrix for every frame: the Gauss-Newton matrix at rest, in
    each joint's body-frame rotation steps. A landmark the jaw carries turns with it, and a
    rotation changes no inner product, so the exact matrix of a frame differs from the one at
    rest only where skinning blends joints and by what the expressions move the joints and the
    lever arms: the step (with the exact gradient, so the fixed point is the exact minimum)
    gains about a factor 4 an iteration, and Anderson acceleration (``_StepHistory``) takes the
    frames where it gains less there too (on a FLAME-sized take of 100 expressions, jaw and eyes:
    7 to 8 iterations a frame to 1e-6, at most 13). An iteration is two products over the
    frames, (n, E + F) x (E + F, 3 R + 3 P) and back (``_FlameSystem``), R the landmarks the
    solved joints reach and P their (landmark, joint) pairs; the first, from rest, one. A frame
    stops when its Gauss-Newton step moves no coefficient by more than ``tolerance`` (and no angle
    by more radians), or after ``iterations``; the expressions' bounds are kept by an active-set
    step (``_box_step``); each rotation step is clipped to ``max_step_rad``. ``chunk_frames``
    frames are solved at a time, so memory does not grow with the clip; ``on_chunk`` as in
    ``solve_units``.

    ``residual``: also what the solution leaves unexplained, in rest space (``_rest_residual``:
    the detail layer's input), computed with each chunk's solve from the displacements it already
    holds, so the take is read once.

    With the frames' times ``seconds`` (T,), the solved expressions and joint angles are then solved
    with their neighbours' (``smooth_in_time``, ``SMOOTHING_S``; ``untied`` (T,) bool frames are tied
    to none): FLAME's components do not compete for a motion as the open head's units do, so this
    is what ``solve_units``' coupling gives a unit alone, the same response at every frame rate.
    """
    count = len(deformation_mm)
    components = rig.expression.shape[0]
    expression = np.full((count, components), np.nan)
    pose = np.full((count, len(rig.parents), 3), np.nan)
    unexplained = np.full((count,) + rig.rest.shape[:1] + (3,), np.nan, np.float32) if residual else None
    alignment = flame_rest_alignment(rig, neutral_mm)
    system = None
    smooth = seconds is not None and smoothing_s > 0.0
    margin = chunk_margin(seconds, smoothing_s) if smooth else 0
    for kept_frames in frame_chunks(count, chunk_frames):
        frames, own = with_margins(kept_frames, margin, count)
        displacement = displacement_on(alignment, deformation_mm[frames])  # (n, L, 3) metres
        valid = np.all(np.isfinite(displacement), axis=(1, 2))
        if not valid.any():
            continue
        system = system or _FlameSystem.build(rig, tuple(joints), regularization)
        by_landmark = _frames_last(displacement if valid.all() else displacement[valid])  # (L, 3, v)
        coefficients, angles = _solve_flame_frames(system, rig, by_landmark, bounds, max_step_rad, iterations,
                                                   tolerance)
        if smooth:  # the expressions and angles (v, E + 3 S), each with its neighbours'
            coupling = chained_coupling(np.flatnonzero(valid) + frames.start, seconds, smoothing_s, untied)
            together = smooth_in_time(np.concatenate([coefficients, angles.reshape(len(angles), -1)], axis=1), coupling)
            coefficients = np.clip(together[:, :components], *bounds)
            angles = together[:, components:].reshape(angles.shape)
        if margin:  # only the chunk's own frames are kept (no copies where it has no margins)
            kept = own[valid]  # (v,) of the solved frames
            by_landmark, coefficients, angles = by_landmark[..., kept], coefficients[kept], angles[kept]
        solved_pose = np.zeros((len(coefficients), len(rig.parents), 3))
        solved_pose[:, system.solved] = angles
        expression[kept_frames][valid[own]] = coefficients
        pose[kept_frames][valid[own]] = solved_pose
        if unexplained is not None:
            rest = _rest_residual(system, rig, by_landmark, coefficients, angles)
            unexplained[kept_frames][valid[own]] = np.moveaxis(rest, -1, 0)
        if on_chunk is not None:
            on_chunk(kept_frames.stop, count)
    return FlameRetarget(expression, pose, unexplained)


def estimate_flame_identity(
    model: FlameModel,
    landmarks: LandmarkEmbedding,
    neutral_mm: np.ndarray,
    components: int,
    regularization: float = 0.01,
    rounds: int = 3,
    bounds: tuple[float, float] = FLAME_COEFFICIENT_BOUNDS,
) -> np.ndarray:
    """FLAME identity coefficients (components,) whose neutral landmarks best match the
    performer's neutral face (478, 3) mm, up to a similarity (size is the similarity's, not the
    identity's: MediaPipe's canonical face has no reliable absolute scale).

    Each round fits the similarity onto the current identity's landmarks, then solves the
    identity by the same box-constrained ridge as the expressions, with the directions a small
    change of that similarity could take (scale, rotation, translation: 7) projected out of the
    problem: otherwise identity and similarity trade off against each other and plain
    alternation crawls (hundreds of rounds); with the projection a few rounds converge.
    """
    basis = landmarks.locate(model.shape_basis[:components]).reshape(components, -1).T  # (478*3, S')
    template = landmarks.locate(model.template)  # (478, 3)
    strength = regularization * float(np.mean(np.sum(basis**2, axis=0)))
    identity = np.zeros(components)
    for _ in range(rounds):
        current = template + (basis @ identity).reshape(-1, 3)
        alignment = fit_similarities(neutral_mm.astype(np.float64), current[None])
        performer = alignment.apply(neutral_mm.astype(np.float64)[None])[0]  # (478, 3) metres on the head
        centred = performer - performer.mean(axis=0)
        similarity = np.stack([centred, *np.cross(np.eye(3)[:, None, :], centred[None]), *np.broadcast_to(
            np.eye(3)[:, None, :], (3,) + centred.shape)]).reshape(7, -1).T  # (478*3, 7) scale, rotations, shifts
        orthonormal, _ = np.linalg.qr(similarity)  # (478*3, 7)
        projected = basis - orthonormal @ (orthonormal.T @ basis)
        residual = (performer - template).ravel()
        target = residual - orthonormal @ (orthonormal.T @ residual)
        identity = solve_box_ridge(projected, target[None], *bounds, strength)[0]
    return identity
