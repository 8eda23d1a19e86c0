"""The one interface every head (built-in open head, FLAME, ...) implements.

Conventions, shared with the take file and the Blender rig builder:
- units: metres;
- axes: +X the subject's left, +Y up, +Z out of the face (towards a camera that faces it);
  Blender's Z-up world is reached by (x, y, z) -> (x, -z, y) at import.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .correspondence import LandmarkEmbedding

HEAD_ASSET_FORMAT = "mxr.head"
HEAD_ASSET_VERSION = 1


@dataclass(frozen=True)
class HeadModel:
    """A linear head: template + expression basis, with regions and a landmark embedding."""

    name: str
    vertices: np.ndarray  # (V, 3) float32, metres, neutral template
    faces: np.ndarray  # (F, 3) or (F, 4) int32, vertex indices (quads keep the artist's topology)
    expression_basis: np.ndarray  # (K, V, 3) float32, metres per unit coefficient
    expression_names: tuple[str, ...]  # (K,)
    regions: dict[str, np.ndarray]  # region name -> vertex indices (int32)
    landmarks: LandmarkEmbedding  # MediaPipe 478 landmarks on this surface
    # Default coefficient range (lower, upper) of the expression basis; ARKit units are 0..1.
    coefficient_bounds: tuple[float, float] = (0.0, 1.0)
    identity_basis: np.ndarray | None = None  # (S, V, 3) metres, optional
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        count = self.vertices.shape[0]
        if self.vertices.shape != (count, 3):
            raise ValueError(f"vertices must be (V, 3), got {self.vertices.shape}")
        if self.expression_basis.shape != (len(self.expression_names), count, 3):
            raise ValueError(
                f"expression_basis must be (K={len(self.expression_names)}, V={count}, 3), "
                f"got {self.expression_basis.shape}"
            )
        if self.faces.ndim != 2 or self.faces.shape[1] not in (3, 4):
            raise ValueError(f"faces must be (F, 3) or (F, 4), got {self.faces.shape}")

    @property
    def vertex_count(self) -> int:
        return int(self.vertices.shape[0])

    def triangles(self) -> np.ndarray:
        """(F', 3) triangles; quads split along their 0-2 diagonal."""
        return triangulate(self.faces)

    def evaluate(self, coefficients: np.ndarray) -> np.ndarray:
        """Vertex positions for expression coefficients (..., K) -> (..., V, 3) metres."""
        offsets = np.tensordot(coefficients, self.expression_basis, axes=([-1], [0]))
        return self.vertices + offsets

    def landmark_positions(self, coefficients: np.ndarray | None = None) -> np.ndarray:
        """The 478 landmarks on the (deformed) surface: (..., 478, 3) metres."""
        vertices = self.vertices if coefficients is None else self.evaluate(coefficients)
        return self.landmarks.locate(vertices)

    def landmark_basis(self) -> np.ndarray:
        """The expression basis seen at the landmarks: (K, 478, 3) metres per unit coefficient."""
        return self.landmarks.locate(self.expression_basis)

    # -- storage ------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the asset as an .npz (no pickles), atomically."""
        arrays = {
            "format": np.array(HEAD_ASSET_FORMAT),
            "version": np.array(HEAD_ASSET_VERSION),
            "name": np.array(self.name),
            "vertices": self.vertices.astype(np.float32),
            "faces": self.faces.astype(np.int32),
            "expression_basis": self.expression_basis.astype(np.float32),
            "expression_names": np.array(self.expression_names),
            "coefficient_bounds": np.array(self.coefficient_bounds, dtype=np.float64),
            "region_names": np.array(sorted(self.regions)),
            "landmark_triangles": self.landmarks.triangles.astype(np.int32),
            "landmark_barycentric": self.landmarks.barycentric.astype(np.float32),
        }
        for region, indices in self.regions.items():
            arrays[f"region/{region}"] = np.asarray(indices, dtype=np.int32)
        if self.identity_basis is not None:
            arrays["identity_basis"] = self.identity_basis.astype(np.float32)
        for key, value in self.extras.items():
            arrays[f"extra/{key}"] = value
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".partial.npz")
        np.savez_compressed(temporary, **arrays)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> "HeadModel":
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != HEAD_ASSET_FORMAT:
                raise ValueError(f"{path} is not an MXR head asset")
            version = int(data["version"])
            if version != HEAD_ASSET_VERSION:
                raise ValueError(f"{path}: head asset version {version}, expected {HEAD_ASSET_VERSION}")
            regions = {str(name): data[f"region/{name}"] for name in data["region_names"]}
            extras = {key[len("extra/"):]: data[key] for key in data.files if key.startswith("extra/")}
            return cls(
                name=str(data["name"]),
                vertices=data["vertices"],
                faces=data["faces"],
                expression_basis=data["expression_basis"],
                expression_names=tuple(str(n) for n in data["expression_names"]),
                regions=regions,
                landmarks=LandmarkEmbedding(data["landmark_triangles"], data["landmark_barycentric"]),
                coefficient_bounds=tuple(float(b) for b in data["coefficient_bounds"]),
                identity_basis=data["identity_basis"] if "identity_basis" in data.files else None,
                extras=extras,
            )


def triangulate(faces: np.ndarray) -> np.ndarray:
    """(F, 3|4) polygons -> (F', 3) triangles; quads split along their 0-2 diagonal."""
    faces = np.asarray(faces)
    if faces.shape[1] == 3:
        return faces
    return np.concatenate([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]], axis=0)
