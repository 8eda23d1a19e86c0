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
  than spread over dimple and upper-lip raise.
- The units are read as MediaPipe's landmarks show them (``arkit.TRACKER_GAINS``): its eyelid
  points travel about 40 % of the lids' way, so the blink units are scaled to match.
- Antagonistic pairs (``arkit.ANTAGONIST_PAIRS``) are never both on: after a first solve the
  weaker of each pair is held at zero and the frame solved again.

All frames are solved together with FISTA (accelerated projected gradient), so a whole take
retargets in milliseconds with numpy alone.

FLAME adds joints: ``retarget_flame`` solves the jaw (and eyes) with the expressions by
Gauss-Newton through ``FlameLandmarks`` (FLAME's exact forward pass at the landmarks), and
``estimate_flame_identity`` fits identity coefficients to the performer's neutral face.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arkit import antagonist_indices, sparsity_prices, tracker_gains
from .correspondence import LandmarkEmbedding
from .flame import FLAME_COEFFICIENT_BOUNDS, FlameModel, joint_transforms, pose_features, rodrigues, shaped_vertices
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


def solve_box_ridge(
    basis: np.ndarray,
    targets: np.ndarray,
    lower: float | np.ndarray,
    upper: float | np.ndarray,
    regularization: float | np.ndarray,
    iterations: int = 300,
    linear_penalty: float | np.ndarray = 0.0,
) -> np.ndarray:
    """min ||basis @ c - y||^2 + sum_k regularization_k c_k^2 + sum_k linear_penalty_k c_k,
    lower <= c <= upper, for many y at once (with lower >= 0 the linear term is an L1 penalty).

    basis: (M, K) shared by all targets, or (T, M, K) one per target; targets: (T, M) ->
    coefficients (T, K). ``lower``, ``upper``, ``regularization`` and ``linear_penalty`` are
    scalars or broadcast against (T, K) (per coefficient, per target).
    """
    count = basis.shape[-1]
    gram = np.swapaxes(basis, -1, -2) @ basis  # (K, K) or (T, K, K)
    gram = gram + np.broadcast_to(regularization, gram.shape[:-2] + (count,))[..., None] * np.eye(count)
    linear = np.einsum("tm,...mk->tk", targets, basis) if basis.ndim == 2 else np.einsum("tm,tmk->tk", targets, basis)
    linear = linear - 0.5 * np.asarray(linear_penalty)
    step = 1.0 / np.linalg.eigvalsh(gram)[..., -1:]  # (1,) or (T, 1)
    coefficients = np.clip(np.zeros_like(linear), lower, upper)
    momentum_point = coefficients.copy()
    momentum = 1.0
    for _ in range(iterations):
        gradient = np.einsum("...k,...kl->...l", momentum_point, gram) - linear
        updated = np.clip(momentum_point - step * gradient, lower, upper)
        next_momentum = (1.0 + np.sqrt(1.0 + 4.0 * momentum**2)) / 2.0
        momentum_point = updated + ((momentum - 1.0) / next_momentum) * (updated - coefficients)
        coefficients, momentum = updated, next_momentum
    return coefficients


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
    """Canonical displacements (T, 478, 3) mm -> the head's metres and axes (T, 478, 3).

    Displacements are vectors: scaled and rotated by the neutral's alignment, not translated.
    """
    return alignment.scale[0] * deformation_mm.astype(np.float64) @ alignment.rotation[0].T


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
    rigid_m: np.ndarray  # (T, 478, 3) metres, head axes: the rigid part of the displacement, NaN likewise
    landmark_weights: np.ndarray  # (478,) 0/1: the landmarks that were read (their x and y; see DEPTH_WEIGHT)


def solve_units(
    head: HeadModel,
    deformation_mm: np.ndarray,
    neutral_mm: np.ndarray,
    regularization: float = 0.01,
    bounds: tuple[float, float] | None = None,
    sparsity: float = SPARSITY,
    iterations: int = 400,
) -> UnitSolve:
    """The head's units for canonical displacements (T, 478, 3) mm (see the module docstring).

    ``regularization`` and ``sparsity`` are relative to the basis' mean squared column norm, so
    they do not depend on units or head size. Frames whose displacement is NaN (no face) come
    back as NaN rows.
    """
    lower, upper = head.coefficient_bounds if bounds is None else bounds
    rest_m = head.landmark_positions().astype(np.float64)  # (478, 3)
    alignment, kept = _robust_alignment(rest_m, neutral_mm)
    displacement = displacement_on(alignment, deformation_mm)  # (T, 478, 3) m
    weights = (kept[:, None] * AXIS_WEIGHTS).reshape(-1)  # (478*3,)
    count = len(head.expression_names)
    basis = seen_landmark_basis(head).reshape(count, -1).T * weights[:, None]  # (M, K)
    rigid = rigid_motions(rest_m).reshape(7, -1).T  # (M, 7) unweighted
    left, singular, _ = np.linalg.svd(rigid * weights[:, None], full_matrices=False)
    orthonormal = left[:, singular > 1e-9 * singular[0]]  # (M, r): the rigid motions the weights still see
    projected = basis - orthonormal @ (orthonormal.T @ basis)  # rigid motion solved out exactly

    valid = np.all(np.isfinite(displacement), axis=(1, 2))
    coefficients = np.full((len(displacement), count), np.nan)
    rigid_m = np.full(displacement.shape, np.nan)
    if valid.any():
        targets = displacement[valid].reshape(int(valid.sum()), -1) * weights  # (n, M)
        targets_projected = targets - (targets @ orthonormal) @ orthonormal.T
        scale = float(np.mean(np.sum(projected**2, axis=0)))
        # Scaled by the gain squared, as the columns are: a unit's shrinkage in coefficient units is
        # then what it would be without the gain (the blink's 0.4 would otherwise cost it 6x more).
        gains_squared = tracker_gains(head.expression_names) ** 2
        ridge = regularization * scale * gains_squared  # (K,)
        prices = sparsity * scale * sparsity_prices(head.expression_names) * gains_squared  # (K,)
        low = np.full((len(targets), count), float(lower))
        high = np.full((len(targets), count), float(upper))
        solved = solve_box_ridge(projected, targets_projected, low, high, ridge, iterations, prices)
        pairs = antagonist_indices(head.expression_names)
        if pairs:
            for first, second in pairs:
                first_loses = solved[:, first] < solved[:, second]
                high[first_loses, first] = np.minimum(high[first_loses, first], 0.0)
                high[~first_loses, second] = np.minimum(high[~first_loses, second], 0.0)
            low = np.minimum(low, high)
            solved = solve_box_ridge(projected, targets_projected, low, high, ridge, iterations, prices)
        coefficients[valid] = solved
        motion, *_ = np.linalg.lstsq(rigid * weights[:, None], (targets - solved @ basis.T).T, rcond=None)  # (7, n)
        rigid_m[valid] = (rigid @ motion).T.reshape(-1, 478, 3)
    return UnitSolve(coefficients, rigid_m, kept)


def retarget_expressions(
    head: HeadModel,
    deformation_mm: np.ndarray,
    neutral_mm: np.ndarray,
    regularization: float = 0.01,
    bounds: tuple[float, float] | None = None,
    sparsity: float = SPARSITY,
) -> np.ndarray:
    """Expression coefficients (T, K) for canonical displacements (T, 478, 3) mm; NaN rows where
    there is no face. See ``solve_units``."""
    return solve_units(head, deformation_mm, neutral_mm, regularization, bounds, sparsity).coefficients


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

    @classmethod
    def build(cls, model: FlameModel, landmarks: LandmarkEmbedding, shape: np.ndarray, expressions: int) -> "FlameLandmarks":
        """For ``model`` with identity ``shape`` (S',) and its first ``expressions`` components."""
        triangles = landmarks.triangles.astype(np.int64)  # (L, 3)
        mix = landmarks.barycentric.astype(np.float64)[..., None] * model.skinning_weights[triangles]  # (L, 3, J)
        shaped = shaped_vertices(model, shape, np.zeros(0))  # (V, 3)
        basis = model.expression_basis[:expressions]  # (E, V, 3)

        def collapse(points: np.ndarray) -> np.ndarray:  # (..., V, 3) -> (..., L, J, 3)
            return np.einsum("ltj,...ltc->...ljc", mix, points[..., triangles, :])

        return cls(
            rest=collapse(shaped), expression=collapse(basis), pose=collapse(model.pose_basis),
            weight=mix.sum(axis=1), joints_rest=model.joint_regressor @ shaped,
            joints_expression=np.einsum("jv,evc->ejc", model.joint_regressor, basis), parents=model.parents,
        )

    def locate(self, expression: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """Landmarks (..., L, 3) metres for expression (..., E) and pose (..., J, 3) axis-angle."""
        offset, basis = self.affine(pose)
        return offset + np.einsum("...e,...elc->...lc", expression, basis)

    def affine(self, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks as offset (..., L, 3) + expression @ basis (..., E, L, 3) at a fixed pose."""
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


@dataclass
class FlameRetarget:
    expression: np.ndarray  # (T, E) coefficients, NaN rows where the take has no face
    pose: np.ndarray  # (T, 5, 3) axis-angle per FLAME joint (only the solved joints move), NaN rows likewise


def flame_rest_alignment(rig: FlameLandmarks, neutral_mm: np.ndarray) -> Similarities:
    """Similarity from the performer's neutral (mm) onto the FLAME rest landmarks (m)."""
    rest_landmarks = rig.locate(np.zeros(rig.expression.shape[0]), np.zeros((len(rig.parents), 3)))  # (L, 3)
    return fit_similarities(neutral_mm.astype(np.float64), rest_landmarks[None])


def retarget_flame(
    rig: FlameLandmarks,
    deformation_mm: np.ndarray,
    neutral_mm: np.ndarray,
    joints: tuple[int, ...] = (2,),
    regularization: float = 0.01,
    iterations: int = 8,
    bounds: tuple[float, float] = FLAME_COEFFICIENT_BOUNDS,
    max_step_rad: float = 0.3,
) -> FlameRetarget:
    """FLAME expression coefficients and joint rotations (default: the jaw, joint 2) per frame.

    FLAME opens the mouth mostly with the jaw joint, which expression blendshapes cannot mimic,
    so the jaw is solved with the expressions. Gauss-Newton on both at once: at the current
    rotations the landmarks are affine in the expressions (exactly) and are linearised in the
    solved joints' axis-angles (finite differences); each step is the same box-constrained ridge
    as ``retarget_expressions`` with the expressions bounded by ``bounds`` and the rotation step
    by ``max_step_rad`` (a trust region: a bad linearisation cannot throw the jaw around).
    Rotations carry a small damping, not a prior: a still jaw stays near zero because the
    target says so. The take's deformation is canonical (head pose removed), so the neck and
    global joints stay at zero here; the head pose is keyed separately. Frames with NaN
    displacement (no face) come back as NaN rows.
    """
    count = deformation_mm.shape[0]
    components = rig.expression.shape[0]
    displacement = displacement_on(flame_rest_alignment(rig, neutral_mm), deformation_mm)  # (T, L, 3) m
    valid = np.all(np.isfinite(displacement), axis=(1, 2))
    expression = np.full((count, components), np.nan)
    pose = np.full((count, len(rig.parents), 3), np.nan)
    if not valid.any():
        return FlameRetarget(expression, pose)
    zero_pose = np.zeros((len(rig.parents), 3))
    rest = rig.locate(np.zeros(components), zero_pose)  # (L, 3)
    targets = (rest + displacement[valid]).reshape(int(valid.sum()), -1)  # (n, L*3) metres
    frames = len(targets)
    rest_basis = (rig.locate(np.eye(components), zero_pose) - rest).reshape(components, -1)  # (E, L*3)
    ridge = regularization * float(np.mean(np.sum(rest_basis**2, axis=1)))
    unknowns = [(joint, axis) for joint in joints for axis in range(3)]
    # Unknowns per frame: the E coefficients, then the rotation steps (damped slightly, bounded).
    damping = np.concatenate([np.full(components, ridge), np.full(len(unknowns), 1e-3 * ridge)])
    lower = np.concatenate([np.full(components, bounds[0]), np.full(len(unknowns), -max_step_rad)])
    upper = np.concatenate([np.full(components, bounds[1]), np.full(len(unknowns), max_step_rad)])
    solved = np.zeros((frames, len(rig.parents), 3))  # (n, J, 3)
    coefficients = np.zeros((frames, components))
    epsilon = 1e-6  # radians, finite-difference step
    for _ in range(iterations):
        offset, basis = rig.affine(solved)  # (n, L, 3), (n, E, L, 3)
        current = offset + np.einsum("ne,nelc->nlc", coefficients, basis)
        columns = []
        for joint, axis in unknowns:
            nudged = solved.copy()
            nudged[:, joint, axis] += epsilon
            columns.append((rig.locate(coefficients, nudged) - current).reshape(frames, -1) / epsilon)
        jacobian = np.concatenate([basis.reshape(frames, components, -1), np.stack(columns, axis=1)], axis=1)  # (n, K, M)
        # Columns scaled to unit norm: metres per radian and per coefficient differ by ~100x,
        # which would stall the projected gradient. u = scale * x.
        scale = np.maximum(np.linalg.norm(jacobian, axis=2), 1e-12)  # (n, K)
        residual = targets - offset.reshape(frames, -1)  # the affine part's target for the coefficients
        update = solve_box_ridge(
            np.swapaxes(jacobian / scale[..., None], 1, 2), residual,
            lower * scale, upper * scale, damping / scale**2,
        ) / scale
        coefficients = update[:, :components]
        for position, (joint, axis) in enumerate(unknowns):
            solved[:, joint, axis] += update[:, components + position]
    expression[valid] = coefficients
    pose[valid] = solved
    return FlameRetarget(expression, pose)


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
