"""Least-squares similarity transforms (Umeyama 1991), batched over frames."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Similarities:
    """Per-frame x -> scale * rotation @ x + translation."""

    rotation: np.ndarray  # (T, 3, 3)
    translation: np.ndarray  # (T, 3)
    scale: np.ndarray  # (T,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(T, N, 3) -> (T, N, 3)."""
        rotated = np.einsum("tij,tnj->tni", self.rotation, points)
        return self.scale[:, None, None] * rotated + self.translation[:, None, :]

    def invert(self, points: np.ndarray) -> np.ndarray:
        """Inverse of ``apply``: (T, N, 3) -> (T, N, 3)."""
        centred = points - self.translation[:, None, :]
        return np.einsum("tji,tnj->tni", self.rotation, centred) / self.scale[:, None, None]


def fit_similarities(source: np.ndarray, targets: np.ndarray) -> Similarities:
    """Similarities taking source (N, 3) onto each of targets (T, N, 3) in least squares."""
    source_mean = source.mean(axis=0)
    target_mean = targets.mean(axis=1)  # (T, 3)
    source_centred = source - source_mean  # (N, 3)
    target_centred = targets - target_mean[:, None, :]  # (T, N, 3)
    covariance = np.einsum("tni,nj->tij", target_centred, source_centred) / len(source)  # (T, 3, 3)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones_like(singular)
    sign[:, 2] = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)  # no reflections
    rotation = np.einsum("tij,tj,tjk->tik", u, sign, vt)
    variance = np.mean(np.sum(source_centred**2, axis=1))
    scale = np.sum(singular * sign, axis=1) / variance  # (T,)
    translation = target_mean - scale[:, None] * np.einsum("tij,j->ti", rotation, source_mean)
    return Similarities(rotation, translation, scale)


def fit_weighted_similarity(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> Similarities:
    """The similarity (one frame) taking source (N, 3) onto target (N, 3) in weighted least
    squares, weights (N,) >= 0 (zero leaves a point out)."""
    share = weights / weights.sum()  # (N,)
    source_mean = share @ source
    target_mean = share @ target
    source_centred = source - source_mean
    target_centred = target - target_mean
    covariance = np.einsum("n,ni,nj->ij", share, target_centred, source_centred)  # (3, 3)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.array([1.0, 1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = float(np.sum(singular * sign) / (share @ np.sum(source_centred**2, axis=1)))
    translation = target_mean - scale * rotation @ source_mean
    return Similarities(rotation[None], translation[None], np.array([scale]))
