"""FLAME's MediaPipe correspondence: supplied embedding files, combining, and the automatic
render-and-detect registration on a face-like FLAME-format model (real bpy, real MediaPipe)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mxr.models.correspondence import LANDMARK_COUNT, LandmarkEmbedding
from mxr.models.flame import FlameFileError, FlameModel, load_flame
from mxr.models.flame_embedding import (
    combine_embeddings,
    load_flame_head,
    load_landmark_embedding,
    read_supplied_embedding,
    save_landmark_embedding,
)
from mxr.models.head_model import HeadModel
from mxr.models.open_head import open_head_path

from flame_fixtures import FLAME_VERTEX_COUNT, face_like_flame_arrays, write_flame_pickle, write_malicious_pickle

SUPPLIED_COUNT = 105  # points in FLAME's own mediapipe_landmark_embedding.npz


@pytest.fixture(scope="module")
def flame_file(tmp_path_factory) -> Path:
    if not open_head_path().is_file():
        from mxr.scripts.build_head_asset import build_open_head

        build_open_head()
    return write_flame_pickle(tmp_path_factory.mktemp("flame") / "generic_model.pkl", face_like_flame_arrays(), "2020")


@pytest.fixture(scope="module")
def model(flame_file: Path) -> FlameModel:
    return load_flame(flame_file)


@pytest.fixture(scope="module")
def registration_file(flame_file: Path) -> Path:
    """The automatic registration, made by the script's command line."""
    from mxr.scripts.flame_correspondence import main

    output = flame_file.with_name("registration.npz")
    assert main([str(flame_file), str(output)]) == 0
    return output


def write_supplied(path: Path, model: FlameModel, landmarks: np.ndarray, seed: int = 0, **overrides) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {
        "lmk_face_idx": rng.integers(0, len(model.faces), len(landmarks)).astype(np.int64),
        "lmk_b_coords": rng.dirichlet(np.ones(3), len(landmarks)),
        "landmark_indices": np.asarray(landmarks, dtype=np.int64),
    }
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def test_supplied_embedding_is_read_against_the_faces(model: FlameModel, tmp_path: Path) -> None:
    landmarks = np.random.default_rng(1).choice(LANDMARK_COUNT, SUPPLIED_COUNT, replace=False)
    path = write_supplied(tmp_path / "embedding.npz", model, landmarks)
    supplied = read_supplied_embedding(path, model.faces)
    with np.load(path) as data:
        np.testing.assert_array_equal(supplied.triangles, model.faces[data["lmk_face_idx"]])
        np.testing.assert_allclose(supplied.barycentric, data["lmk_b_coords"])
    np.testing.assert_array_equal(supplied.landmark_indices, landmarks)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lmk_face_idx": np.full(3, 10**6)}, "outside the model's"),
        ({"landmark_indices": np.array([0, 0, 1])}, "repeats"),
        ({"landmark_indices": np.array([0, 1, 478])}, "MediaPipe indices"),
        ({"lmk_b_coords": np.full((3, 3), 0.5)}, "summing to 1"),
        ({"lmk_b_coords": np.full((3, 2), 0.5)}, r"lmk_b_coords \(N, 3\)"),
    ],
)
def test_supplied_embedding_errors(model: FlameModel, tmp_path: Path, overrides: dict, message: str) -> None:
    path = write_supplied(tmp_path / "bad.npz", model, np.array([3, 4, 5]), **overrides)
    with pytest.raises(FlameFileError, match=message):
        read_supplied_embedding(path, model.faces)


def test_supplied_embedding_file_errors(model: FlameModel, tmp_path: Path) -> None:
    with pytest.raises(FlameFileError, match="not found"):
        read_supplied_embedding(tmp_path / "absent.npz", model.faces)
    np.savez(tmp_path / "other.npz", lmk_face_idx=np.zeros(2))
    with pytest.raises(FlameFileError, match="lacks the keys"):
        read_supplied_embedding(tmp_path / "other.npz", model.faces)
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(FlameFileError, match="not a readable"):
        read_supplied_embedding(tmp_path / "text.npz", model.faces)


def test_supplied_points_win_and_a_partial_file_alone_is_refused(model: FlameModel, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    automatic = LandmarkEmbedding(
        model.faces[rng.integers(0, len(model.faces), LANDMARK_COUNT)].astype(np.int32),
        rng.dirichlet(np.ones(3), LANDMARK_COUNT).astype(np.float32),
    )
    landmarks = rng.choice(LANDMARK_COUNT, SUPPLIED_COUNT, replace=False)
    supplied = read_supplied_embedding(write_supplied(tmp_path / "e.npz", model, landmarks, seed=3), model.faces)
    combined = combine_embeddings(automatic, supplied)
    others = np.setdiff1d(np.arange(LANDMARK_COUNT), landmarks)
    np.testing.assert_array_equal(combined.triangles[landmarks], supplied.triangles)
    np.testing.assert_allclose(combined.barycentric[landmarks], supplied.barycentric, atol=1e-7)
    np.testing.assert_array_equal(combined.triangles[others], automatic.triangles[others])
    with pytest.raises(FlameFileError, match=f"covers {SUPPLIED_COUNT} of 478.*flame_correspondence"):
        combine_embeddings(None, supplied)
    everything = read_supplied_embedding(
        write_supplied(tmp_path / "all.npz", model, np.arange(LANDMARK_COUNT)), model.faces
    )
    assert combine_embeddings(None, everything).triangles.shape == (LANDMARK_COUNT, 3)


def test_registration_file_round_trip(model: FlameModel, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    embedding = LandmarkEmbedding(
        model.faces[rng.integers(0, len(model.faces), LANDMARK_COUNT)].astype(np.int32),
        rng.dirichlet(np.ones(3), LANDMARK_COUNT).astype(np.float32),
    )
    path = tmp_path / "registration.npz"
    save_landmark_embedding(path, embedding, model.vertex_count, np.ones(LANDMARK_COUNT, dtype=bool))
    loaded = load_landmark_embedding(path, model.vertex_count)
    np.testing.assert_array_equal(loaded.triangles, embedding.triangles)
    np.testing.assert_array_equal(loaded.barycentric, embedding.barycentric)
    with pytest.raises(FlameFileError, match="run scripts/flame_correspondence.py again"):
        load_landmark_embedding(path, model.vertex_count + 1)


def test_script_refuses_an_unsafe_file(tmp_path: Path, capsys) -> None:
    from mxr.scripts.flame_correspondence import main

    sentinel = tmp_path / "SENTINEL"
    assert main([str(write_malicious_pickle(tmp_path / "evil.pkl", f"touch {sentinel}"))]) == 1
    assert "refused to load the global" in capsys.readouterr().err
    assert not sentinel.exists()


def _regions_of(head: HeadModel, landmark: int) -> set[str]:
    corners = head.landmarks.triangles[landmark]
    return {name for name, indices in head.regions.items() if name != "head" and np.isin(corners, indices).all()}


def test_automatic_registration_puts_semantic_landmarks_in_place(flame_file: Path, registration_file: Path) -> None:
    head = load_flame_head(flame_file, registration_file)
    assert head.vertex_count == FLAME_VERTEX_COUNT
    with np.load(registration_file) as data:
        assert data["direct_hits"].sum() > 0.9 * LANDMARK_COUNT
    points = head.landmark_positions()  # (478, 3) metres on the neutral template
    face = points[:468]
    for landmark, side in ((33, -1), (133, -1), (263, 1), (362, 1), (61, -1), (291, 1), (468, -1), (473, 1)):
        assert np.sign(points[landmark, 0]) == side, landmark  # +X is the subject's left
    for outer, inner in ((33, 133), (263, 362)):  # eye corners: outer ones further out
        assert abs(points[outer, 0]) > abs(points[inner, 0]) + 0.01
    assert points[1, 2] >= np.quantile(face[:, 2], 0.95)  # the nose tip is about the front-most
    assert abs(points[1, 0]) < 0.01 and head.vertices[:, 2].max() - points[1, 2] < 0.01
    assert points[152, 1] <= np.quantile(face[:, 1], 0.01)  # the chin is about the lowest
    eye_height, mouth_height = points[[33, 133, 263, 362], 1].mean(), points[[61, 291], 1].mean()
    assert points[152, 1] < mouth_height < points[1, 1] < eye_height
    for iris in (468, 473):  # irises on the eyeballs, which FLAME's eye joints carry
        assert "eyeballs" in _regions_of(head, iris)
    assert "jaw" in _regions_of(head, 152)


def test_supplied_file_overrides_the_registration(flame_file: Path, registration_file: Path, model: FlameModel,
                                                 tmp_path: Path) -> None:
    landmarks = np.random.default_rng(5).choice(LANDMARK_COUNT, SUPPLIED_COUNT, replace=False)
    supplied_path = write_supplied(tmp_path / "embedding.npz", model, landmarks, seed=6)
    head = load_flame_head(flame_file, registration_file, supplied_path)
    registered = load_flame_head(flame_file, registration_file)
    supplied = read_supplied_embedding(supplied_path, model.faces)
    np.testing.assert_array_equal(head.landmarks.triangles[landmarks], supplied.triangles)
    others = np.setdiff1d(np.arange(LANDMARK_COUNT), landmarks)
    np.testing.assert_array_equal(head.landmarks.triangles[others], registered.landmarks.triangles[others])
