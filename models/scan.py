"""A real textured face scan as a head-like mesh: menpo3d's James (OBJ + JPEG + 68 3D landmarks).

Why: rendered clips of a real scanned face, deformed by known amounts, are the only footage here
whose 3D skin motion is known exactly, so they judge the engine on real skin texture and real
geometry instead of the open head's clay render.

The scan comes in millimetres in the scanner's axes (roughly +Y up, +Z out of the face, turned a
few degrees). ``load_scan`` brings it to the project's head convention: metres, +X the subject's
left, +Y up, +Z out of the face, origin at the centroid of the 68 landmarks, the axes set by the
landmarks (the eye line is +X, the mouth -> eyes direction, made orthogonal to it, is +Y).
Only numpy: Blender and the engine can both use it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCAN_DIR = Path(__file__).resolve().parents[1] / ".cache" / "data" / "menpo3d"
MM_PER_M = 1000.0
# Groups of menpo3d's james.ljson (68 iBUG points, grouped by label rather than in iBUG order).
# "leye" is the eye on the image's left, i.e. the subject's right eye.
RIGHT_EYE_GROUP, LEFT_EYE_GROUP, MOUTH_GROUP = "leye", "reye", "mouth"


@dataclass(frozen=True)
class ObjMesh:
    """A triangle mesh with per-corner texture coordinates, as stored in the file."""

    vertices: np.ndarray  # (V, 3) float64, file units
    triangles: np.ndarray  # (T, 3) int64 vertex indices
    uv: np.ndarray  # (T, 3, 2) float32 texture coordinates of each corner (0..1, v up)


@dataclass(frozen=True)
class Scan:
    """The scan in head axes (metres), with its texture and landmarks."""

    vertices: np.ndarray  # (V, 3) float64 metres, head axes
    triangles: np.ndarray  # (T, 3) int64
    uv: np.ndarray  # (T, 3, 2) float32
    texture_path: Path  # the colour image the uv coordinates index
    landmarks68: np.ndarray  # (68, 3) float64 metres, head axes (iBUG points on the skin)
    landmark_groups: dict[str, np.ndarray]  # label -> indices into landmarks68
    to_head: np.ndarray  # (3, 4) file mm -> head metres: x_head = to_head[:, :3] @ x_file + to_head[:, 3]


def read_obj(path: Path) -> ObjMesh:
    """Vertices, triangles and corner texture coordinates of a Wavefront OBJ (polygons fanned)."""
    vertices: list[list[float]] = []
    texcoords: list[list[float]] = []
    corners: list[tuple[int, int]] = []  # (vertex, texcoord) per triangle corner, 0-based
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "v":
            vertices.append([float(value) for value in fields[1:4]])
        elif fields[0] == "vt":
            texcoords.append([float(value) for value in fields[1:3]])
        elif fields[0] == "f":
            polygon = [_corner(token, len(vertices), len(texcoords)) for token in fields[1:]]
            for second in range(1, len(polygon) - 1):
                corners.extend([polygon[0], polygon[second], polygon[second + 1]])
    pairs = np.asarray(corners, dtype=np.int64).reshape(-1, 3, 2)  # (T, 3 corners, vertex/texcoord)
    if np.any(pairs[..., 1] < 0):
        raise ValueError(f"{path}: some faces have no texture coordinates")
    uv = np.asarray(texcoords, dtype=np.float32)[pairs[..., 1]]  # (T, 3, 2)
    return ObjMesh(np.asarray(vertices, dtype=np.float64), pairs[..., 0], uv)


def _corner(token: str, vertex_count: int, texcoord_count: int) -> tuple[int, int]:
    """An OBJ face corner ``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn`` -> 0-based (v, vt), vt -1 if absent.
    Negative OBJ indices count back from the elements read so far."""
    parts = token.split("/")
    vertex = int(parts[0])
    texcoord = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    vertex = vertex - 1 if vertex > 0 else vertex_count + vertex
    texcoord = texcoord - 1 if texcoord > 0 else (texcoord_count + texcoord if texcoord < 0 else -1)
    return vertex, texcoord


def read_ljson(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """menpo's landmark JSON: points (N, 3) in file units and label -> indices."""
    group = json.loads(Path(path).read_text())["groups"]["LJSON"]
    points = np.asarray(group["landmarks"]["points"], dtype=np.float64)
    labels = {label["label"]: np.asarray(label["mask"], dtype=np.int64) for label in group["labels"]}
    return points, labels


def head_frame(landmarks_mm: np.ndarray, groups: dict[str, np.ndarray]) -> np.ndarray:
    """(3, 4) map file mm -> head metres from the 68 landmarks: +X along the eye line towards the
    subject's left eye, +Y from the mouth towards the eyes (orthogonal to X), +Z = X x Y (out of
    the face), origin at the landmarks' centroid."""
    right_eye = landmarks_mm[groups[RIGHT_EYE_GROUP]].mean(axis=0)
    left_eye = landmarks_mm[groups[LEFT_EYE_GROUP]].mean(axis=0)
    mouth = landmarks_mm[groups[MOUTH_GROUP]].mean(axis=0)
    x_axis = _unit(left_eye - right_eye)
    up = (left_eye + right_eye) / 2.0 - mouth
    y_axis = _unit(up - np.dot(up, x_axis) * x_axis)
    z_axis = np.cross(x_axis, y_axis)
    rotation = np.stack([x_axis, y_axis, z_axis]) / MM_PER_M  # rows: head axes in file coordinates
    return np.column_stack([rotation, -rotation @ landmarks_mm.mean(axis=0)])


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def load_scan(directory: Path = SCAN_DIR) -> Scan:
    """James in head axes and metres; a clear error when the data has not been fetched."""
    directory = Path(directory)
    obj_path, landmark_path, texture_path = (directory / name for name in ("james.obj", "james.ljson", "james.jpg"))
    if not all(path.is_file() for path in (obj_path, landmark_path, texture_path)):
        raise FileNotFoundError(f"the menpo3d scan is missing in {directory}; run scripts/fetch_data.py first")
    mesh = read_obj(obj_path)
    landmarks_mm, groups = read_ljson(landmark_path)
    to_head = head_frame(landmarks_mm, groups)

    def transform(points: np.ndarray) -> np.ndarray:
        return points @ to_head[:, :3].T + to_head[:, 3]

    return Scan(transform(mesh.vertices), mesh.triangles, mesh.uv, texture_path, transform(landmarks_mm), groups, to_head)
