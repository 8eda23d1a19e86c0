"""retarget_flame's solver: chunking, recovery of known parameters, bounds, frames without a face,
and its closed-form gradient against FLAME's own derivatives (numpy only, no Blender)."""
from __future__ import annotations

import numpy as np
import pytest

from mxr.models.flame import joint_transforms, load_flame, rodrigues
from mxr.models.flame_embedding import load_landmark_embedding
from mxr.models.retarget import (FlameLandmarks, _FlameState, _FlameSystem, _flame_steps, displacement_on,
                                 flame_rest_alignment, retarget_flame)

from flame_fixtures import flame_take, random_flame_arrays, write_flame_pickle, write_synthetic_registration

EXPRESSIONS = 12
JAW, EYES = 2, (3, 4)


@pytest.fixture(scope="module")
def model_and_landmarks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flame_retarget")
    model = load_flame(write_flame_pickle(folder / "flame.pkl", random_flame_arrays(seed=4), "2023"))
    landmarks = load_landmark_embedding(write_synthetic_registration(folder / "flame.npz", model), model.vertex_count)
    return model, landmarks


@pytest.fixture(scope="module")
def rig(model_and_landmarks) -> FlameLandmarks:
    model, landmarks = model_and_landmarks
    return FlameLandmarks.build(model, landmarks, np.zeros(0), EXPRESSIONS)


def moving_face(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Expressions (T, E) and a pose (T, 5, 3): the jaw opening 0..0.3 rad, the eyes turning."""
    rng = np.random.default_rng(seed)
    expression = rng.uniform(-1.5, 1.5, (frames, EXPRESSIONS))
    pose = np.zeros((frames, 5, 3))
    pose[:, JAW, 0] = np.linspace(0.0, 0.3, frames)
    pose[:, JAW, 1:] = rng.normal(0.0, 0.03, (frames, 2))
    pose[:, EYES[0], :2] = rng.uniform(-0.2, 0.2, (frames, 2))
    pose[:, EYES[1], :2] = rng.uniform(-0.2, 0.2, (frames, 2))
    return expression, pose


def test_chunks_change_nothing(model_and_landmarks, rig):
    expression, pose = moving_face(23, seed=1)
    take = flame_take(*model_and_landmarks, np.zeros(0), expression, pose, invalid=(4, 11))
    deformation = take.deformation_mm() + np.random.default_rng(2).normal(0.0, 0.2, (23, 478, 3))
    whole = retarget_flame(rig, deformation, take.neutral_mm, joints=(2, 3, 4))
    chunked = retarget_flame(rig, deformation, take.neutral_mm, joints=(2, 3, 4), chunk_frames=5)
    np.testing.assert_allclose(chunked.expression, whole.expression, atol=1e-9)
    np.testing.assert_allclose(chunked.pose, whole.pose, atol=1e-9)


def test_smoothed_solves_tie_neighbouring_frames_and_chunks_still_change_nothing(model_and_landmarks, rig):
    expression, pose = moving_face(23, seed=1)
    take = flame_take(*model_and_landmarks, np.zeros(0), expression, pose, invalid=(4, 11))
    deformation = take.deformation_mm() + np.random.default_rng(2).normal(0.0, 0.2, (23, 478, 3))
    seconds = np.arange(23) / 30.0
    alone = retarget_flame(rig, deformation, take.neutral_mm, joints=(2, 3, 4), residual=True)
    whole = retarget_flame(rig, deformation, take.neutral_mm, joints=(2, 3, 4), residual=True, seconds=seconds)
    chunked = retarget_flame(rig, deformation, take.neutral_mm, joints=(2, 3, 4), residual=True, seconds=seconds,
                             chunk_frames=5)
    # the margins hold what a frame's pull reaches, but for a tail of ~1e-5
    np.testing.assert_allclose(chunked.expression, whole.expression, atol=1e-4)
    np.testing.assert_allclose(chunked.pose, whole.pose, atol=1e-4)
    np.testing.assert_allclose(chunked.residual, whole.residual, atol=1e-6)
    valid = take.valid
    rough = lambda solved: np.abs(np.diff(solved.expression[12:23], 2, axis=0)).mean()  # noqa: E731
    assert rough(whole) < 0.9 * rough(alone)  # random expressions from frame to frame: smoothed
    assert np.isnan(whole.expression[[4, 11]]).all() and np.isfinite(whole.expression[valid]).all()
    untied = np.zeros(23, bool)
    untied[14:18] = True
    loose = retarget_flame(rig, deformation, take.neutral_mm, joints=(2, 3, 4), seconds=seconds, untied=untied)
    np.testing.assert_allclose(loose.expression[15:17], alone.expression[15:17], atol=1e-9)  # tied to none


def test_smooth_in_time_is_the_chains_filter():
    """A sinusoid at w rad/frame through the chain with coupling c comes out scaled by
    1 / (1 + 2 c (1 - cos w)), unshifted (away from the ends)."""
    from mxr.models.retarget import smooth_in_time

    frames, omega, strength = 200, 2 * np.pi / 10, 0.8
    wave = np.stack([np.sin(omega * np.arange(frames)), np.cos(omega * np.arange(frames))], axis=1)  # (T, 2)
    smoothed = smooth_in_time(wave, np.full(frames - 1, strength))
    np.testing.assert_allclose(smoothed[50:150], wave[50:150] / (1 + 2 * strength * (1 - np.cos(omega))), atol=1e-9)
    gap = np.full(frames - 1, strength)
    gap[99] = 0.0  # not tied across frames 99-100: each side is its own chain
    apart = smooth_in_time(wave, gap)
    np.testing.assert_allclose(apart[:100], smooth_in_time(wave[:100], np.full(99, strength)), atol=1e-12)


def test_jaw_eyes_and_expressions_are_recovered(model_and_landmarks, rig):
    expression, pose = moving_face(16, seed=3)
    take = flame_take(*model_and_landmarks, np.zeros(0), expression, pose)
    solved = retarget_flame(rig, take.deformation_mm(), take.neutral_mm, joints=(2, 3, 4), regularization=1e-8,
                            tolerance=1e-10)
    np.testing.assert_allclose(solved.pose, pose * [[0], [0], [1], [1], [1]], atol=1e-6)
    np.testing.assert_allclose(solved.expression, expression, atol=1e-5)


def test_stops_at_the_minimum(model_and_landmarks, rig):
    """A frame stops when its Gauss-Newton step is below the tolerance, and is then within about
    as much of the minimum: the accelerated steps leave no slow direction behind."""
    expression, pose = moving_face(24, seed=8)
    take = flame_take(*model_and_landmarks, np.zeros(0), expression, pose)
    deformation = take.deformation_mm() + np.random.default_rng(9).normal(0.0, 0.2, (24, 478, 3))
    solved = retarget_flame(rig, deformation, take.neutral_mm, joints=(2, 3, 4))
    converged = retarget_flame(rig, deformation, take.neutral_mm, joints=(2, 3, 4), tolerance=1e-12, iterations=500)
    np.testing.assert_allclose(solved.expression, converged.expression, atol=2e-6)
    np.testing.assert_allclose(solved.pose, converged.pose, atol=2e-6)


def test_bounds_hold_and_bind(model_and_landmarks, rig):
    expression, pose = moving_face(6, seed=4)
    expression[2, :3] = [3.8, -3.5, 3.2]  # past FLAME's +-3
    take = flame_take(*model_and_landmarks, np.zeros(0), expression, pose)
    solved = retarget_flame(rig, take.deformation_mm(), take.neutral_mm, joints=(2, 3, 4), regularization=1e-6)
    assert np.abs(solved.expression).max() <= 3.0
    np.testing.assert_allclose(solved.expression[2, :3], [3.0, -3.0, 3.0])
    narrow = retarget_flame(rig, take.deformation_mm(), take.neutral_mm, joints=(2, 3, 4), bounds=(-0.5, 0.25))
    assert narrow.expression.min() >= -0.5 and narrow.expression.max() <= 0.25
    assert np.isclose(narrow.expression, 0.25).any() and np.isclose(narrow.expression, -0.5).any()


def test_bound_solution_is_optimal(model_and_landmarks, rig):
    """At a solution with bound coefficients, no feasible small step lowers the objective."""
    expression, pose = moving_face(3, seed=5)
    take = flame_take(*model_and_landmarks, np.zeros(0), expression, pose)
    bounds = (-0.6, 0.6)
    solved = retarget_flame(rig, take.deformation_mm(), take.neutral_mm, joints=(JAW,), bounds=bounds,
                            tolerance=1e-10)
    rest = rig.locate(np.zeros(EXPRESSIONS), np.zeros((5, 3)))
    target = rest + displacement_on(flame_rest_alignment(rig, take.neutral_mm), take.deformation_mm())
    ridge = 0.01 * np.mean(np.sum(rig.expression.sum(axis=2).reshape(EXPRESSIONS, -1) ** 2, axis=1))

    def objective(coefficients: np.ndarray, frame_pose: np.ndarray, frame: int) -> float:
        return float(np.sum((rig.locate(coefficients, frame_pose) - target[frame]) ** 2) + ridge * coefficients @ coefficients)

    rng = np.random.default_rng(6)
    for frame in range(3):
        best = objective(solved.expression[frame], solved.pose[frame], frame)
        for _ in range(20):
            nudged = np.clip(solved.expression[frame] + rng.normal(0.0, 1e-3, EXPRESSIONS), *bounds)
            frame_pose = solved.pose[frame] + np.eye(5)[JAW][:, None] * rng.normal(0.0, 1e-4, 3)
            assert objective(nudged, frame_pose, frame) >= best - 1e-15


def test_frames_without_a_face_come_back_nan(model_and_landmarks, rig):
    expression, pose = moving_face(5)
    take = flame_take(*model_and_landmarks, np.zeros(0), expression, pose, invalid=(0, 3))
    solved = retarget_flame(rig, take.deformation_mm(), take.neutral_mm, joints=(2, 3, 4), chunk_frames=2)
    assert np.isnan(solved.expression[[0, 3]]).all() and np.isnan(solved.pose[[0, 3]]).all()
    assert np.isfinite(solved.expression[[1, 2, 4]]).all() and np.all(solved.pose[[1, 2, 4]][:, :2] == 0.0)
    none = retarget_flame(rig, np.full((4, 478, 3), np.nan), take.neutral_mm)
    assert np.isnan(none.expression).all() and np.isnan(none.pose).all()


def test_residual_is_what_the_solution_leaves_in_rest_space(model_and_landmarks, rig):
    """The residual the solve returns is the target less FLAME at the solution, each landmark's
    offset unskinned by the blend of its joints' world rotations (a plain solve per landmark)."""
    expression, pose = moving_face(9, seed=10)
    take = flame_take(*model_and_landmarks, np.zeros(0), expression, pose, invalid=(2,))
    deformation = take.deformation_mm() + np.random.default_rng(11).normal(0.0, 0.2, (9, 478, 3))
    solved = retarget_flame(rig, deformation, take.neutral_mm, joints=(2, 3, 4), chunk_frames=4, residual=True)
    assert solved.residual.dtype == np.float32 and np.isnan(solved.residual[2]).all()
    found = np.flatnonzero(np.isfinite(solved.expression[:, 0]))
    rest = rig.locate(np.zeros(EXPRESSIONS), np.zeros((5, 3)))
    target = rest + displacement_on(flame_rest_alignment(rig, take.neutral_mm), deformation[found])
    posed = target - rig.locate(solved.expression[found], solved.pose[found])  # (n, L, 3)
    rotations = rodrigues(solved.pose[found])
    world = joint_transforms(rotations, np.broadcast_to(rig.joints_rest, rotations.shape[:-2] + (3,)), rig.parents)[0]
    blend = np.einsum("lj,njab->nlab", rig.weight, world[..., :3])  # (n, L, 3, 3)
    expected = np.linalg.solve(blend, posed[..., None])[..., 0]
    # nanometres apart: FLAME's frame-dependent part is a float32 product in the solve (``_FlameState.at``)
    np.testing.assert_allclose(solved.residual[found], expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    assert np.abs(expected).max() > 1e-4  # the noise is there to be left over


@pytest.mark.parametrize("joints", [(2, 3, 4), (1,)])
def test_closed_form_gradient_is_flames_own(rig, joints):
    """The solver's descent direction J^T r - ridge c, rotations in body-frame steps, against the
    Jacobian from FLAME's forward pass (expressions: the affine basis; rotations: complex step),
    at a posed, expressed state; the neck case turns the jaw and eyes below it."""
    system = _FlameSystem.build(rig, joints, 0.01)
    rng = np.random.default_rng(7)
    coefficients = rng.normal(0.0, 1.0, (2, EXPRESSIONS))
    angles = rng.normal(0.0, 0.2, (2, len(system.solved), 3))
    rest = rig.locate(np.zeros(EXPRESSIONS), np.zeros((5, 3)))
    displacement = rng.normal(0.0, 0.003, (2,) + rest.shape)
    state = _FlameState.at(system, rig, coefficients, angles)
    others = displacement[:, system.others].reshape(2, -1)
    direction = _flame_steps(system, rig, state, others @ system.others_expression.T, others @ system.others_pose.T,
                             np.moveaxis(displacement[:, system.reached], 0, -1))
    for frame in range(2):
        pose = np.zeros((5, 3))
        pose[system.solved] = angles[frame]
        offset, basis = rig.affine(pose)
        residual = (rest + displacement[frame] - rig.locate(coefficients[frame], pose)).ravel()
        jacobian = np.concatenate([basis.reshape(EXPRESSIONS, -1), state.rotation_columns(system, rig)[frame]])
        expected = jacobian @ residual - np.concatenate([system.ridge * coefficients[frame], np.zeros(3 * len(joints))])
        # to float32's precision: the state's frame-dependent part is a float32 product (``_FlameState.at``)
        np.testing.assert_allclose(direction[frame], expected, rtol=0, atol=1e-7 * np.abs(expected).max() + 1e-18)
