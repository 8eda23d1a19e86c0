"""FLAME's forward pass: Rodrigues, blendshapes, correctives, skinning, and numpy vs torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mxr.models.flame import (
    FlameModel,
    flame_forward,
    load_flame,
    pose_features,
    rodrigues,
    shaped_vertices,
)
from mxr.models.flame_torch import FlameLayer
from mxr.models.flame_torch import rodrigues as rodrigues_torch

from flame_fixtures import random_flame_arrays, write_flame_pickle

JAW = 2


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> FlameModel:
    path = tmp_path_factory.mktemp("flame") / "flame2020.pkl"
    return load_flame(write_flame_pickle(path, random_flame_arrays(seed=1), "2020"))


def test_rodrigues_against_known_rotations() -> None:
    quarter_turn_z = rodrigues(np.array([0.0, 0.0, np.pi / 2]))
    np.testing.assert_allclose(quarter_turn_z, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(quarter_turn_z @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-15)
    half_turn_x = rodrigues(np.array([np.pi, 0.0, 0.0]))
    np.testing.assert_allclose(half_turn_x, np.diag([1.0, -1.0, -1.0]), atol=1e-15)
    np.testing.assert_array_equal(rodrigues(np.zeros(3)), np.eye(3))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 3)) * np.array([[1.0], [1e-6]] * 25)  # large and tiny angles
    rotations = rodrigues(vectors)
    np.testing.assert_allclose(rotations @ np.swapaxes(rotations, 1, 2), np.broadcast_to(np.eye(3), (50, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", rotations, vectors), vectors, atol=1e-12)  # axis fixed
    np.testing.assert_allclose(rodrigues_torch(torch.from_numpy(vectors)).numpy(), rotations, atol=1e-14)


def test_rest_pose_is_template_plus_blendshapes(model: FlameModel) -> None:
    rng = np.random.default_rng(1)
    shape, expression = rng.normal(size=300), rng.normal(size=100)
    vertices, joints = flame_forward(model, shape, expression, np.zeros((5, 3)))
    expected = (
        model.template
        + np.einsum("s,svc->vc", shape, model.shape_basis)
        + np.einsum("e,evc->vc", expression, model.expression_basis)
    )
    np.testing.assert_allclose(vertices, expected, atol=1e-12)
    np.testing.assert_allclose(joints, model.joint_regressor @ expected, atol=1e-12)
    # Fewer coefficients use the leading components.
    np.testing.assert_allclose(
        shaped_vertices(model, shape[:10], expression[:5]),
        shaped_vertices(model, np.r_[shape[:10], np.zeros(290)], np.r_[expression[:5], np.zeros(95)]),
        atol=1e-12,
    )


def test_correctives_vanish_at_rest() -> None:
    features = pose_features(rodrigues(np.zeros((5, 3))))
    assert features.shape == (36,)
    np.testing.assert_array_equal(features, 0.0)
    # and they follow (R_j - I) row-major, non-root joints only
    pose = np.zeros((5, 3))
    pose[JAW] = [0.3, 0.0, 0.0]
    features = pose_features(rodrigues(pose))
    np.testing.assert_allclose(features[9:18], (rodrigues(pose[JAW]) - np.eye(3)).ravel())
    np.testing.assert_array_equal(np.delete(features, np.s_[9:18]), 0.0)


def test_jaw_rotation_moves_only_jaw_weighted_vertices(model: FlameModel) -> None:
    shape = np.random.default_rng(2).normal(size=300)
    pose = np.zeros((5, 3))
    rest, rest_joints = flame_forward(model, shape, np.zeros(100), pose)
    pose[JAW] = [0.25, 0.0, 0.0]  # open the mouth
    opened, opened_joints = flame_forward(model, shape, np.zeros(100), pose)
    moved = np.linalg.norm(opened - rest, axis=1) > 1e-12
    jaw_weighted = model.skinning_weights[:, JAW] > 0
    assert jaw_weighted.sum() > 50
    np.testing.assert_array_equal(moved, jaw_weighted)
    np.testing.assert_allclose(opened_joints, rest_joints, atol=1e-15)  # the jaw turns about its joint


def test_global_rotation_turns_everything_about_the_root(model: FlameModel) -> None:
    rng = np.random.default_rng(3)
    shape, expression = rng.normal(size=300), rng.normal(size=100)
    pose = rng.normal(scale=0.2, size=(5, 3))
    turned_pose = pose.copy()
    turned_pose[0] = [0.0, 0.7, 0.0]
    pose[0] = 0.0
    vertices, joints = flame_forward(model, shape, expression, pose)
    turned, _ = flame_forward(model, shape, expression, turned_pose)
    rotation = rodrigues(turned_pose[0])
    np.testing.assert_allclose(turned, (vertices - joints[0]) @ rotation.T + joints[0], atol=1e-12)


def test_batched_frames_match_single_frames(model: FlameModel) -> None:
    rng = np.random.default_rng(4)
    shape, expression = rng.normal(size=(3, 300)), rng.normal(size=(3, 100))
    pose = rng.normal(scale=0.3, size=(3, 5, 3))
    vertices, joints = flame_forward(model, shape, expression, pose)
    assert vertices.shape == (3, model.vertex_count, 3) and joints.shape == (3, 5, 3)
    for frame in range(3):
        single, single_joints = flame_forward(model, shape[frame], expression[frame], pose[frame])
        np.testing.assert_allclose(vertices[frame], single, atol=1e-12)
        np.testing.assert_allclose(joints[frame], single_joints, atol=1e-12)
    shared, _ = flame_forward(model, shape[0], expression[0], pose)  # one face, three poses
    assert shared.shape == (3, model.vertex_count, 3)
    np.testing.assert_allclose(shared[0], vertices[0], atol=1e-12)


def test_torch_agrees_with_numpy(model: FlameModel) -> None:
    rng = np.random.default_rng(5)
    shape, expression = rng.normal(size=(4, 300)), rng.normal(size=(4, 100))
    pose = rng.normal(scale=0.4, size=(4, 5, 3))
    pose[0] = 0.0  # rest pose, where the Taylor branch runs
    expected, expected_joints = flame_forward(model, shape, expression, pose)
    layer = FlameLayer(model, dtype=torch.float64)
    vertices, joints = layer(torch.from_numpy(shape), torch.from_numpy(expression), torch.from_numpy(pose))
    np.testing.assert_allclose(vertices.numpy(), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(joints.numpy(), expected_joints, atol=1e-6, rtol=0)
    assert np.abs(vertices.numpy() - expected).max() < 1e-12  # same formulas: rounding only


def test_torch_gradients_are_finite_at_rest(model: FlameModel) -> None:
    layer = FlameLayer(model, dtype=torch.float64)
    pose = torch.zeros(1, 5, 3, dtype=torch.float64, requires_grad=True)
    expression = torch.zeros(1, 100, dtype=torch.float64, requires_grad=True)
    vertices, _ = layer(torch.zeros(1, 300, dtype=torch.float64), expression, pose)
    vertices.square().sum().backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0
    assert torch.isfinite(expression.grad).all()
