"""MediaPipe's 478 face landmarks embedded in a head's surface (barycentric).

The embedding is what makes a take head-agnostic: the engine speaks in landmarks, every head
says where those landmarks sit on its own surface.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANDMARK_COUNT = 478


@dataclass(frozen=True)
class LandmarkEmbedding:
    """Each landmark as a point inside one triangle of the head mesh."""

    triangles: np.ndarray  # (478, 3) int32, vertex indices of the triangle holding each landmark
    barycentric: np.ndarray  # (478, 3) float32, weights summing to 1

    def locate(self, vertices: np.ndarray) -> np.ndarray:
        """Landmark positions for vertex data (..., V, 3) -> (..., 478, 3)."""
        corners = vertices[..., self.triangles, :]  # (..., 478, 3 corners, 3)
        return np.einsum("...lcd,lc->...ld", corners, self.barycentric)
