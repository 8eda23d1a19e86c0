"""The numpy orthographic ray-cast that embeds image landmarks in a mesh, against hand-computed answers."""
from __future__ import annotations

import numpy as np

from mxr.models.correspondence import OrthographicProjection, embed_image_landmarks

# A camera looking down -Z: 100 px per unit, world (0, 0) at pixel (50, 50), image y down.
PROJECTION = OrthographicProjection(np.array([[100.0, 0.0, 0.0, 50.0], [0.0, -100.0, 0.0, 50.0], [0.0, 0.0, 1.0, 0.0]]))


def test_projection_round_trip() -> None:
    points = np.array([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]])
    image = PROJECTION.project(points)
    np.testing.assert_allclose(image, [[60.0, 70.0, 0.3], [50.0, 50.0, 0.0]])
    np.testing.assert_allclose(PROJECTION.unproject(image[:, :2], depth=0.3)[0], points[0])


def test_landmark_inside_a_flat_triangle_gets_its_barycentric_weights() -> None:
    vertices = np.array([[0.0, 0.0, 0.0], [0.4, 0.0, 0.0], [0.0, 0.4, 0.0]])
    # World (0.1, 0.1) -> pixel (60, 40); weights: 1 - 0.25 - 0.25, 0.25, 0.25.
    embedding, hits = embed_image_landmarks(vertices, np.array([[0, 1, 2]]), np.array([[60.0, 40.0]]), PROJECTION)
    assert hits.tolist() == [True]
    np.testing.assert_array_equal(embedding.triangles, [[0, 1, 2]])
    np.testing.assert_allclose(embedding.barycentric, [[0.5, 0.25, 0.25]], atol=1e-6)
    np.testing.assert_allclose(embedding.locate(vertices), [[0.1, 0.1, 0.0]], atol=1e-6)


def test_front_most_of_two_stacked_planes_wins() -> None:
    # Two unit squares (two triangles each) at z = 0 (back) and z = 0.5 (front).
    square = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    back = np.column_stack([square, np.zeros(4)])
    front = np.column_stack([square, np.full(4, 0.5)])
    vertices = np.concatenate([back, front])
    triangles = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    pixels = np.array([[70.0, 40.0], [30.0, 60.0]])  # world (0.2, 0.1) and (-0.2, -0.1)
    embedding, hits = embed_image_landmarks(vertices, triangles, pixels, PROJECTION)
    assert hits.all()
    assert np.all(embedding.triangles >= 4)
    np.testing.assert_allclose(embedding.locate(vertices), [[0.2, 0.1, 0.5], [-0.2, -0.1, 0.5]], atol=1e-6)


def test_landmark_off_the_mesh_snaps_to_the_nearest_edge_point() -> None:
    vertices = np.array([[0.0, 0.0, 0.0], [0.4, 0.0, 0.0], [0.0, 0.4, 0.0]])
    # Pixel (70, 60) is world (0.2, -0.1): below the edge y = 0, nearest point (0.2, 0, 0).
    embedding, hits = embed_image_landmarks(vertices, np.array([[0, 1, 2]]), np.array([[70.0, 60.0]]), PROJECTION)
    assert hits.tolist() == [False]
    np.testing.assert_allclose(embedding.locate(vertices), [[0.2, 0.0, 0.0]], atol=1e-6)


def test_disallowed_front_surface_snaps_within_the_depth_window() -> None:
    # A small front triangle (not allowed, like an eyeball) in a hole of an allowed ring at depth
    # 0.4, with a far allowed plane behind at depth 0: the landmark must land on the ring's edge.
    front = np.array([[-0.1, -0.1, 0.5], [0.1, -0.1, 0.5], [0.0, 0.1, 0.5]])
    ring = np.array([[0.2, -0.2, 0.4], [0.6, -0.2, 0.4], [0.2, 0.2, 0.4]])  # to the right of the hole
    back = np.array([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 1.0, 0.0]])
    vertices = np.concatenate([front, ring, back])
    triangles = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    surface = np.array([False, True, True])
    embedding, hits = embed_image_landmarks(
        vertices, triangles, np.array([[50.0, 50.0]]), PROJECTION, surface=surface, depth_window=0.2
    )
    assert hits.tolist() == [False]
    np.testing.assert_array_equal(embedding.triangles, [[3, 4, 5]])
    np.testing.assert_allclose(embedding.locate(vertices), [[0.2, 0.0, 0.4]], atol=1e-6)
