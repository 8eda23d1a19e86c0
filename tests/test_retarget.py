import itertools

import numpy as np

from mxr.models.correspondence import LandmarkEmbedding
from mxr.models.head_model import HeadModel
from mxr.models.retarget import retarget_expressions, solve_box_ridge


def small_head(expressions: int = 4) -> HeadModel:
    """A random 'head' whose landmarks are vertices (barycentric one-hot), in metres."""
    rng = np.random.default_rng(7)
    vertices = rng.normal(scale=0.05, size=(478, 3)).astype(np.float32)
    basis = np.zeros((expressions, 478, 3), np.float32)
    for k in range(expressions):  # each expression moves its own block of landmarks
        basis[k, 100 * k:100 * k + 80] = rng.normal(scale=0.004, size=(80, 3))
    triangles = np.stack([np.arange(478)] * 3, axis=1).astype(np.int32)
    barycentric = np.tile(np.array([1.0, 0.0, 0.0], np.float32), (478, 1))
    return HeadModel(
        name="test",
        vertices=vertices,
        faces=np.array([[0, 1, 2]], np.int32),
        expression_basis=basis,
        expression_names=tuple(f"e{k}" for k in range(expressions)),
        regions={"head": np.arange(478, dtype=np.int32)},
        landmarks=LandmarkEmbedding(triangles, barycentric),
    )


def test_solve_box_ridge_matches_closed_form_when_unconstrained():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(60, 5))
    targets = rng.normal(size=(3, 60))
    expected = np.linalg.solve(basis.T @ basis + 0.5 * np.eye(5), basis.T @ targets.T).T
    got = solve_box_ridge(basis, targets, -1e9, 1e9, 0.5, iterations=2000)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_solve_box_ridge_matches_brute_force_in_a_box():
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(20, 2))
    target = rng.normal(size=(1, 20)) * 3
    grid = np.linspace(0, 1, 401)
    cost = [np.sum((basis @ np.array(c) - target[0]) ** 2) + 0.1 * np.sum(np.square(c))
            for c in itertools.product(grid, grid)]
    best = np.array(list(itertools.product(grid, grid))[int(np.argmin(cost))])
    got = solve_box_ridge(basis, target, 0.0, 1.0, 0.1, iterations=2000)[0]
    np.testing.assert_allclose(got, best, atol=3e-3)


def test_recovers_coefficients_of_a_scaled_rotated_performer():
    head = small_head()
    truth = np.array([[0.0, 0.0, 0.0, 0.0], [0.2, 0.7, 0.0, 1.0], [0.5, 0.1, 0.9, 0.3]])
    # The performer's face is the head's, rotated, in mm and 10% bigger.
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    to_performer = lambda points: 1100.0 * points @ rotation.T  # noqa: E731  metres -> performer mm
    neutral_mm = to_performer(head.landmark_positions())
    deformation_mm = to_performer(head.landmark_positions(truth)) - neutral_mm
    got = retarget_expressions(head, deformation_mm, neutral_mm, regularization=1e-6)
    np.testing.assert_allclose(got, truth, atol=2e-3)


def test_frames_without_a_face_stay_nan_and_bounds_hold():
    head = small_head()
    neutral_mm = 1000.0 * head.landmark_positions()
    deformation_mm = 1000.0 * (head.landmark_positions(np.array([[3.0, -2.0, 0.5, 0.5]] * 3)) - head.landmark_positions())
    deformation_mm[1] = np.nan
    got = retarget_expressions(head, deformation_mm, neutral_mm)
    assert np.isnan(got[1]).all()
    finite = got[[0, 2]]
    assert finite.min() >= 0.0 and finite.max() <= 1.0
    assert finite[0, 0] == 1.0 and finite[0, 1] == 0.0
