"""The built-in open head asset: geometry, face units, regions and its MediaPipe correspondence.

Uses models/data/open_head.npz as ./scripts/setup built it; builds it (real bpy Workbench render,
real MediaPipe) when a clean checkout has not yet.
"""
from __future__ import annotations

import numpy as np
import pytest

from mxr.models.head_model import HeadModel
from mxr.models.open_head import load_open_head, open_head_path

FACE_REGIONS = ("brows", "eyes", "nose", "cheeks", "mouth", "jaw")


@pytest.fixture(scope="session")
def head() -> HeadModel:
    if not open_head_path().is_file():
        from mxr.scripts.build_head_asset import build_open_head

        build_open_head()
    return load_open_head()


def landmark_region(head: HeadModel, landmark: int) -> set[str]:
    """Regions (other than head) that hold all three corners of a landmark's triangle."""
    corners = head.landmarks.triangles[landmark]
    return {name for name, indices in head.regions.items() if name != "head" and np.isin(corners, indices).all()}


def test_shapes_and_names(head: HeadModel) -> None:
    assert 3000 < head.vertex_count < 8000
    assert head.faces.shape[1] == 4
    assert head.faces.min() >= 0 and head.faces.max() < head.vertex_count
    assert len(head.expression_names) == 52
    assert {"jawOpen", "eyeBlinkLeft", "mouthSmileLeft"} <= set(head.expression_names)
    assert list(head.expression_names) == sorted(head.expression_names)
    assert head.landmarks.triangles.shape == (478, 3)
    np.testing.assert_allclose(head.landmarks.barycentric.sum(axis=1), 1.0, atol=1e-5)


def test_metres_and_facing_plus_z(head: HeadModel) -> None:
    height = np.ptp(head.vertices[:, 1])
    assert 0.2 < height < 0.3
    nose_tip_z = head.vertices[:, 2].max()
    ear_side = np.abs(head.vertices[:, 0]) > 0.07  # the ears are the widest part of the head
    assert nose_tip_z > head.vertices[ear_side, 2].max() + 0.05


def test_regions_are_non_empty_and_disjoint(head: HeadModel) -> None:
    separate = (*FACE_REGIONS, "eyeballs", "neck")
    for name in (*separate, "head"):
        assert len(head.regions[name]) > 0, name
    for position, first in enumerate(separate):
        for second in separate[position + 1:]:
            assert not np.intersect1d(head.regions[first], head.regions[second]).size, (first, second)
    assert len(head.regions["head"]) == head.vertex_count


def test_jaw_open_moves_the_jaw_down(head: HeadModel) -> None:
    offsets = head.expression_basis[head.expression_names.index("jawOpen")]  # (V, 3) metres
    motion = np.linalg.norm(offsets, axis=1)
    moved = np.flatnonzero(motion > 0.25 * motion.max())
    in_jaw_or_mouth = np.isin(moved, np.concatenate([head.regions["jaw"], head.regions["mouth"]]))
    assert in_jaw_or_mouth.mean() > 0.9
    assert offsets[moved, 1].mean() < -0.005


def test_semantic_landmarks_land_in_their_regions(head: HeadModel) -> None:
    positions = head.landmark_positions()  # (478, 3) metres
    for landmark, region, side in [(33, "eyes", -1), (133, "eyes", -1), (263, "eyes", 1), (362, "eyes", 1),
                                   (61, "mouth", -1), (291, "mouth", 1), (468, "eyeballs", -1),
                                   (473, "eyeballs", 1)]:
        assert region in landmark_region(head, landmark), landmark
        assert np.sign(positions[landmark, 0]) == side, landmark
    assert "nose" in landmark_region(head, 1)
    assert "jaw" in landmark_region(head, 152)
    face = positions[:468]
    assert positions[1, 2] > np.quantile(face[:, 2], 0.98)  # the nose tip is about the front-most
    assert face[:, 1].argmin() == 152  # the chin is the lowest


def test_landmarks_sit_on_the_visible_face(head: HeadModel) -> None:
    positions = head.landmark_positions()
    assert positions[:, 2].min() > 0.05  # none fell through to the back of the head


def test_render_leaves_no_data_behind(tmp_path) -> None:
    import bpy

    from mxr.mxr_addon.landmark_render import render_head_front

    before = {name: len(getattr(bpy.data, name)) for name in ("scenes", "objects", "meshes", "cameras", "worlds")}
    vertices = np.array([[-0.1, -0.1, 0.0], [0.1, -0.1, 0.0], [0.1, 0.1, 0.0], [-0.1, 0.1, 0.0]])
    projection = render_head_front(vertices, np.array([[0, 1, 2, 3]]), 64, tmp_path / "quad.png")
    after = {name: len(getattr(bpy.data, name)) for name in before}
    assert after == before
    assert (tmp_path / "quad.png").is_file()
    np.testing.assert_allclose(projection.project(np.array([[0.0, 0.0, 0.0]]))[0, :2], [32.0, 32.0])


def test_missing_asset_message_says_run_setup(monkeypatch, tmp_path) -> None:
    import mxr.models.open_head as open_head

    monkeypatch.setattr(open_head, "open_head_path", lambda: tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match="scripts/setup"):
        open_head.load_open_head()
