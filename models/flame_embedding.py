"""Where MediaPipe's 478 landmarks sit on a user's FLAME surface.

Two sources, combined:
- **automatic** (all 478): the project's render-and-detect registration, run once per FLAME file
  by ``scripts/flame_correspondence.py`` (it needs bpy and MediaPipe): the neutral template is
  rendered frontally, MediaPipe finds the landmarks, and each is cast back onto the front-most
  triangle (iris landmarks onto the eyeballs). The result is saved next to nothing of FLAME's: an
  .npz of triangle indices and barycentric weights (``save_landmark_embedding``).
- **supplied** (a subset): FLAME's own ``mediapipe_landmark_embedding.npz`` (keys
  ``lmk_face_idx`` (N,) face indices, ``lmk_b_coords`` (N, 3) barycentric weights,
  ``landmark_indices`` (N,) the MediaPipe index of each point; N = 105 in the MPI file).

The supplied points were placed by FLAME's authors, so where they exist they win; the landmarks
they do not cover (373 of 478 for the MPI file) come from the automatic registration. A supplied
file alone is not enough: ``combine_embeddings`` says so rather than inventing the rest.

numpy only: Blender's Python imports this module.
"""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .correspondence import LANDMARK_COUNT, LandmarkEmbedding
from .flame import FlameFileError, FlameModel, load_flame, skinning_regions, to_head_model
from .head_model import HeadModel

EMBEDDING_FORMAT = "mxr.flame_landmarks"
EMBEDDING_VERSION = 1
SUPPLIED_KEYS = ("lmk_face_idx", "lmk_b_coords", "landmark_indices")


@dataclass(frozen=True)
class SuppliedLandmarks:
    """Some MediaPipe landmarks, each placed in a triangle of the FLAME mesh."""

    landmark_indices: np.ndarray  # (N,) int64, MediaPipe indices 0..477, unique
    triangles: np.ndarray  # (N, 3) int32, vertex indices of each landmark's triangle
    barycentric: np.ndarray  # (N, 3) float64, weights summing to 1


def read_supplied_embedding(path: Path, faces: np.ndarray) -> SuppliedLandmarks:
    """Read a FLAME-style landmark embedding .npz (no pickles) against the model's faces (F, 3)."""
    path = Path(path)
    if not path.is_file():
        raise FlameFileError(f"landmark embedding file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in SUPPLIED_KEYS if key not in data.files]
            if missing:
                raise FlameFileError(f"{path} lacks the keys {missing} of a FLAME landmark embedding")
            face_index, weights, landmark_indices = (np.asarray(data[key]) for key in SUPPLIED_KEYS)
    except FlameFileError:
        raise
    except (OSError, ValueError) as error:
        raise FlameFileError(f"{path} is not a readable .npz landmark embedding ({error})") from None
    count = len(landmark_indices)
    if face_index.shape != (count,) or weights.shape != (count, 3) or landmark_indices.shape != (count,):
        raise FlameFileError(
            f"{path}: expected lmk_face_idx (N,), lmk_b_coords (N, 3), landmark_indices (N,); got "
            f"{face_index.shape}, {weights.shape}, {landmark_indices.shape}"
        )
    landmark_indices = landmark_indices.astype(np.int64)
    face_index = face_index.astype(np.int64)
    if count and (face_index.min() < 0 or face_index.max() >= len(faces)):
        raise FlameFileError(f"{path}: lmk_face_idx points outside the model's {len(faces)} faces")
    if count and (landmark_indices.min() < 0 or landmark_indices.max() >= LANDMARK_COUNT):
        raise FlameFileError(f"{path}: landmark_indices must be MediaPipe indices 0..{LANDMARK_COUNT - 1}")
    if len(np.unique(landmark_indices)) != count:
        raise FlameFileError(f"{path}: landmark_indices repeats a landmark")
    weights = weights.astype(np.float64)
    if not np.all(np.isfinite(weights)) or np.any(np.abs(weights.sum(axis=1) - 1.0) > 1e-3):
        raise FlameFileError(f"{path}: lmk_b_coords rows must be barycentric weights summing to 1")
    return SuppliedLandmarks(landmark_indices, np.asarray(faces)[face_index].astype(np.int32), weights)


def combine_embeddings(automatic: LandmarkEmbedding | None, supplied: SuppliedLandmarks | None) -> LandmarkEmbedding:
    """All 478 landmarks: the supplied ones where given, the automatic registration elsewhere."""
    if automatic is None:
        covered = 0 if supplied is None else len(supplied.landmark_indices)
        if covered < LANDMARK_COUNT:
            raise FlameFileError(
                f"the landmark embedding covers {covered} of {LANDMARK_COUNT} MediaPipe landmarks; run "
                "scripts/flame_correspondence.py on the FLAME file to register the rest automatically"
            )
        triangles = np.zeros((LANDMARK_COUNT, 3), dtype=np.int32)
        barycentric = np.zeros((LANDMARK_COUNT, 3), dtype=np.float32)
    else:
        triangles = automatic.triangles.astype(np.int32).copy()
        barycentric = automatic.barycentric.astype(np.float32).copy()
    if supplied is not None:
        triangles[supplied.landmark_indices] = supplied.triangles
        barycentric[supplied.landmark_indices] = supplied.barycentric
    return LandmarkEmbedding(triangles, barycentric)


def default_registration_path(flame_path: Path) -> Path:
    """Where ``scripts/flame_correspondence.py`` writes a FLAME file's registration by default:
    ``<FLAME file stem>_mxr_landmarks.npz`` next to it (MXR's file, none of FLAME's data)."""
    flame_path = Path(flame_path)
    return flame_path.with_name(flame_path.stem + "_mxr_landmarks.npz")


def save_landmark_embedding(path: Path, embedding: LandmarkEmbedding, vertex_count: int, direct_hits: np.ndarray) -> None:
    """Write the automatic registration's result (.npz, no pickles), atomically.

    ``direct_hits`` (478,) bool: landmarks whose camera ray hit their surface (the rest snapped to
    the nearest allowed triangle); kept for people checking the registration."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(
        temporary,
        format=np.array(EMBEDDING_FORMAT),
        version=np.array(EMBEDDING_VERSION),
        vertex_count=np.array(vertex_count),
        landmark_triangles=embedding.triangles.astype(np.int32),
        landmark_barycentric=embedding.barycentric.astype(np.float32),
        direct_hits=np.asarray(direct_hits, dtype=bool),
    )
    temporary.replace(path)


def load_landmark_embedding(path: Path, vertex_count: int) -> LandmarkEmbedding:
    """Read what ``save_landmark_embedding`` wrote, for a model with ``vertex_count`` vertices."""
    path = Path(path)
    if not path.is_file():
        raise FlameFileError(f"landmark registration not found: {path}; run scripts/flame_correspondence.py")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "format" not in data.files or str(data["format"]) != EMBEDDING_FORMAT:
                raise FlameFileError(f"{path} is not an MXR FLAME landmark registration")
            if int(data["version"]) != EMBEDDING_VERSION or int(data["vertex_count"]) != vertex_count:
                raise FlameFileError(
                    f"{path} was made for version {int(data['version'])} / {int(data['vertex_count'])} vertices, "
                    f"not version {EMBEDDING_VERSION} / {vertex_count}; run scripts/flame_correspondence.py again"
                )
            triangles, barycentric = np.asarray(data["landmark_triangles"]), np.asarray(data["landmark_barycentric"])
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile, zlib.error) as error:
        raise FlameFileError(f"{path} is not a readable landmark registration ({error})") from None
    _check_embedding(path, triangles, barycentric, vertex_count)
    return LandmarkEmbedding(triangles, barycentric)


def _check_embedding(path: Path, triangles: np.ndarray, barycentric: np.ndarray, vertex_count: int) -> None:
    """FlameFileError unless the registration places all 478 landmarks on the model's vertices
    with finite weights: a broken one would import and then fail the first bake."""
    if triangles.shape != (LANDMARK_COUNT, 3) or barycentric.shape != (LANDMARK_COUNT, 3):
        raise FlameFileError(f"{path} places {triangles.shape} / {barycentric.shape} landmarks, not ({LANDMARK_COUNT}, 3); "
                             "run scripts/flame_correspondence.py again")
    if triangles.dtype.kind not in "iu" or triangles.min() < 0 or triangles.max() >= vertex_count:
        raise FlameFileError(f"{path} names vertices outside the model's 0..{vertex_count - 1}")
    if barycentric.dtype.kind != "f" or not np.all(np.isfinite(barycentric)):
        raise FlameFileError(f"{path} holds landmark weights that are not finite numbers")


@dataclass(frozen=True)
class RegistrationGeometry:
    """What the render-and-detect registration needs of a head (the fields of the open head's
    ``OpenHeadGeometry`` that ``scripts/build_head_asset.py`` reads)."""

    vertices: np.ndarray  # (V, 3) metres, neutral template
    faces: np.ndarray  # (F, 3) int32
    regions: dict[str, np.ndarray]  # needs "eyeballs": where the iris landmarks may land


def registration_geometry(model: FlameModel) -> RegistrationGeometry:
    """The neutral template with its eyeballs (what FLAME's eye joints carry) for registration."""
    eyeballs = skinning_regions(model)["eyeballs"]
    if not np.all(np.isin(model.faces, eyeballs), axis=1).any():
        raise FlameFileError(
            "the FLAME model has no eyeball triangles (vertices its eye joints carry); the iris "
            "landmarks have nowhere to land"
        )
    return RegistrationGeometry(model.template, model.faces, {"eyeballs": eyeballs})


def load_flame_head(
    flame_path: Path, registration_path: Path | None = None, supplied_path: Path | None = None, name: str | None = None
) -> HeadModel:
    """A user's FLAME file as a ``HeadModel``, its landmarks from the saved automatic registration
    and/or a supplied embedding file (supplied points win; see the module docstring)."""
    model = load_flame(flame_path, name=name)
    automatic = None if registration_path is None else load_landmark_embedding(registration_path, model.vertex_count)
    supplied = None if supplied_path is None else read_supplied_embedding(supplied_path, model.faces)
    return to_head_model(model, combine_embeddings(automatic, supplied))
