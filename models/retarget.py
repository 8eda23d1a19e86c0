"""Canonical (head-agnostic) deformation -> a head's expression coefficients.

Regularized, box-constrained least squares through the landmark embedding: for each frame t,

    minimise_c  || s R d_t - B c ||^2 + lam ||c||^2   subject to  lower <= c <= upper

where d_t (478, 3) is the take's displacement from the performer's neutral (mm), s R the
similarity that carries the performer's neutral onto the head's rest landmarks, and B (478*3, K)
the head's expression basis seen at the landmarks. All frames are solved together with FISTA
(accelerated projected gradient), so a whole take retargets in milliseconds with numpy alone.
"""
from __future__ import annotations

import numpy as np

from .head_model import HeadModel
from .similarity import Similarities, fit_similarities


def solve_box_ridge(
    basis: np.ndarray,
    targets: np.ndarray,
    lower: float,
    upper: float,
    regularization: float,
    iterations: int = 300,
) -> np.ndarray:
    """min ||basis @ c - y||^2 + regularization ||c||^2, lower <= c <= upper, for many y at once.

    basis: (M, K); targets: (T, M) -> coefficients (T, K).
    """
    gram = basis.T @ basis + regularization * np.eye(basis.shape[1])  # (K, K)
    linear = targets @ basis  # (T, K)
    step = 1.0 / np.linalg.eigvalsh(gram)[-1]
    coefficients = np.clip(np.zeros_like(linear), lower, upper)
    momentum_point = coefficients.copy()
    momentum = 1.0
    for _ in range(iterations):
        gradient = momentum_point @ gram - linear
        updated = np.clip(momentum_point - step * gradient, lower, upper)
        next_momentum = (1.0 + np.sqrt(1.0 + 4.0 * momentum**2)) / 2.0
        momentum_point = updated + ((momentum - 1.0) / next_momentum) * (updated - coefficients)
        coefficients, momentum = updated, next_momentum
    return coefficients


def neutral_to_head(head: HeadModel, neutral_mm: np.ndarray) -> Similarities:
    """Similarity (one frame) from the performer's canonical neutral (mm) to the head's rest
    landmarks (m)."""
    rest_landmarks = head.landmark_positions().astype(np.float64)[None]  # (1, 478, 3)
    return fit_similarities(neutral_mm.astype(np.float64), rest_landmarks)


def retarget_expressions(
    head: HeadModel,
    deformation_mm: np.ndarray,
    neutral_mm: np.ndarray,
    regularization: float = 0.01,
    bounds: tuple[float, float] | None = None,
) -> np.ndarray:
    """Expression coefficients (T, K) for canonical displacements (T, 478, 3) mm.

    Frames whose displacement is NaN (no face) come back as NaN rows. ``regularization`` is
    relative to the basis' mean squared column norm, so it does not depend on units or head size.
    """
    lower, upper = head.coefficient_bounds if bounds is None else bounds
    alignment = neutral_to_head(head, neutral_mm)
    # Displacements are vectors: scale and rotate, no translation. (T, 478, 3) -> metres on the head
    displacement_head = alignment.scale[0] * deformation_mm.astype(np.float64) @ alignment.rotation[0].T
    basis = head.landmark_basis().astype(np.float64).reshape(len(head.expression_names), -1).T  # (478*3, K)
    valid = np.all(np.isfinite(displacement_head), axis=(1, 2))
    coefficients = np.full((deformation_mm.shape[0], basis.shape[1]), np.nan)
    if valid.any():
        strength = regularization * float(np.mean(np.sum(basis**2, axis=0)))
        targets = displacement_head[valid].reshape(int(valid.sum()), -1)
        coefficients[valid] = solve_box_ridge(basis, targets, lower, upper, strength)
    return coefficients
