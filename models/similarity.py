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


def fit_similarities(source: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None) -> Similarities:
    """Similarities taking source (N, 3) onto each of targets (T, N, 3) in least squares, each
    point weighted by ``weights`` (N,) >= 0 when given (zero leaves a point out)."""
    share = np.full(len(source), 1.0 / len(source)) if weights is None else weights / np.sum(weights)  # (N,)
    source_mean = share @ source  # (3,)
    target_mean = np.einsum("n,tni->ti", share, targets)  # (T, 3)
    source_centred = source - source_mean  # (N, 3)
    target_centred = targets - target_mean[:, None, :]  # (T, N, 3)
    covariance = np.einsum("n,tni,nj->tij", share, target_centred, source_centred)  # (T, 3, 3)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones_like(singular)
    sign[:, 2] = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)  # no reflections
    rotation = np.einsum("tij,tj,tjk->tik", u, sign, vt)
    variance = share @ np.sum(source_centred**2, axis=1)
    scale = np.sum(singular * sign, axis=1) / variance  # (T,)
    translation = target_mean - scale[:, None] * np.einsum("tij,j->ti", rotation, source_mean)
    return Similarities(rotation, translation, scale)
