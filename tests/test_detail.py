"""The detail layer (numpy): residual recovery, PCA energy and cap, still regions, faceless frames."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import synthetic_head
from mxr.models.detail import (FACE_SOURCES, DetailSpread, compress, detail_layer, distances, head_residual,
                               leading_eigenpairs, movable_vertices)
from mxr.models.flame import rodrigues, unskinned
from mxr.models.open_head import load_open_head
from mxr.models.retarget import CHUNK_FRAMES, solve_units


def extra_field(vertices: np.ndarray) -> np.ndarray:
    """Two smooth vertex fields (2, V, 3) metres (~2 mm) no expression of the synthetic head has."""
    x, y = vertices[:, 0] / 0.08, (vertices[:, 1] - 1.6) / 0.1  # about -1..1 over the sheet
    bulge = np.stack([0.3 * x * y, np.zeros_like(x), np.cos(2.0 * x) * (1.0 - y**2)], axis=1)
    shear = np.stack([np.sin(1.5 * y), 0.5 * x**2, 0.2 * x], axis=1)
    return 0.002 * np.stack([bulge, shear])


def take_with_extra(head, frames: int = 30, invalid: tuple[int, ...] = (4, 17)):
    """Canonical deformation (T, 478, 3) mm = basis part + a known extra field, neutral (478, 3) mm."""
    rng = np.random.default_rng(5)
    coefficients = rng.uniform(0.0, 0.6, (frames, len(head.expression_names)))  # (T, K)
    amounts = rng.uniform(-1.0, 1.0, (frames, 2))  # (T, 2)
    vertex_offsets = np.tensordot(coefficients, head.expression_basis, axes=1) + np.tensordot(
        amounts, extra_field(head.vertices.astype(np.float64)), axes=1)  # (T, V, 3) metres
    deformation_mm = head.landmarks.locate(vertex_offsets) * 1000.0
    deformation_mm[list(invalid)] = np.nan
    return deformation_mm, head.landmark_positions().astype(np.float64) * 1000.0


def rms_mm(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum(values**2, axis=-1))) * 1000.0)


def test_what_the_basis_cannot_express_is_recovered_as_detail():
    head = synthetic_head(grid=30)
    deformation_mm, neutral_mm = take_with_extra(head)
    solve = solve_units(head, deformation_mm, neutral_mm)
    coefficients = solve.coefficients
    residual = head_residual(head, deformation_mm, neutral_mm, solve)  # (T, 478, 3) metres
    layer = detail_layer(DetailSpread.build(head.vertices, head.landmarks), residual)
    valid = np.all(np.isfinite(coefficients), axis=1)
    detail = head.landmarks.locate(np.tensordot(layer.weights[valid], layer.shapes, axes=1))  # (n, 478, 3)
    without, with_detail = rms_mm(residual[valid]), rms_mm(residual[valid] - detail)
    print(f"residual RMS at the landmarks: {without:.3f} mm without detail, {with_detail:.4f} mm with "
          f"({layer.shapes.shape[0]} detail shapes)")
    assert without > 0.2  # the extra field is well beyond the basis (x and y: the depth is not read)
    assert with_detail < 0.15 * without  # measured: 0.315 mm -> 0.028 mm with 5 detail shapes
    assert layer.shapes.shape[0] <= 8 and np.all(np.abs(layer.weights[valid]) <= 1.0 + 1e-12)


def test_pca_keeps_the_requested_energy_and_caps_the_count():
    rng = np.random.default_rng(0)
    frames, landmarks = 40, 50
    strengths = np.array([8.0, 4.0, 2.0, 1.0, 0.5, 0.25]) * 1e-3  # metres
    scores = np.linalg.qr(rng.normal(size=(frames, 6)))[0] * strengths  # (T, 6)
    directions = np.linalg.qr(rng.normal(size=(landmarks * 3, 6)))[0].T  # (6, L*3) orthonormal
    residual = (scores @ directions).reshape(frames, landmarks, 3)
    share = np.cumsum(strengths**2) / np.sum(strengths**2)  # 0.753, 0.941, 0.988, 0.9976, ...
    for energy in (0.9, 0.99, 0.999):
        components, weights = compress(residual, energy=energy, max_shapes=8)
        expected = int(np.searchsorted(share, energy)) + 1
        assert components.shape == (expected, landmarks, 3) and weights.shape == (frames, expected)
        kept = np.tensordot(weights, components, axes=1)
        assert 1.0 - np.sum((residual - kept) ** 2) / np.sum(residual**2) >= energy - 1e-9
        np.testing.assert_allclose(np.abs(weights).max(axis=0), 1.0)  # weights span [-1, 1]
        np.testing.assert_allclose(weights[np.argmax(np.abs(weights), axis=0), np.arange(expected)], 1.0)
    components, weights = compress(residual, energy=0.999999, max_shapes=3)
    assert len(components) == 3
    components, weights = compress(residual, energy=1.0, max_shapes=8)
    np.testing.assert_allclose(np.tensordot(weights, components, axes=1), residual, atol=1e-12)


def test_compression_reads_a_long_take_in_chunks_like_one_svd():
    rng = np.random.default_rng(2)
    frames, landmarks = CHUNK_FRAMES + 300, 20  # two chunks
    residual = (rng.normal(size=(frames, 3)) @ rng.normal(size=(3, landmarks * 3)) * 1e-3).reshape(frames, landmarks, 3)
    residual += rng.normal(scale=1e-5, size=residual.shape)
    residual[[5, CHUNK_FRAMES + 7]] = np.nan
    components, weights = compress(residual.astype(np.float32), energy=0.99, landmarks=np.arange(2, landmarks))
    valid = np.all(np.isfinite(residual), axis=(1, 2))
    reference = residual[valid][:, 2:].reshape(int(valid.sum()), -1)
    _, singular, directions = np.linalg.svd(reference, full_matrices=False)  # the simple reference
    assert components.shape == (3, landmarks - 2, 3) and np.isnan(weights[~valid]).all()
    for component, direction in zip(components.reshape(3, -1), directions[:3]):  # the same subspace
        assert abs(abs(component @ direction) / np.linalg.norm(component) - 1.0) < 1e-4
    kept = np.tensordot(weights[valid], components, axes=1).reshape(len(reference), -1)
    assert np.sum((reference - kept) ** 2) <= np.sum(singular[3:] ** 2) * 1.01


def test_back_of_the_head_and_neck_do_not_move():
    head = load_open_head()
    spread = DetailSpread.build(head.vertices, head.landmarks, movable_vertices(head.vertex_count, head.regions))
    residual = np.broadcast_to(np.array([0.002, -0.001, 0.003]), (1, len(FACE_SOURCES), 3))  # 3.7 mm everywhere
    offsets = np.linalg.norm(spread.apply(residual)[0], axis=1)  # (V,) metres
    back = np.flatnonzero(head.vertices[:, 2] < 0.02)  # the back of the open head; the face starts at z = 0.057
    assert len(back) > 200 and len(head.regions["neck"]) > 100
    assert np.all(offsets[back] == 0.0) and np.all(offsets[head.regions["neck"]] == 0.0)
    assert np.all(offsets[head.regions["eyeballs"]] == 0.0)
    face = head.landmarks.locate(spread.apply(residual))[0, FACE_SOURCES]  # the face moves with the residual
    assert np.median(np.linalg.norm(face - residual[0], axis=1)) < 0.1 * np.linalg.norm(residual[0, 0])


@pytest.mark.parametrize("invalid", [(4, 17), tuple(range(30))])
def test_frames_without_a_face_stay_nan(invalid):
    head = synthetic_head(grid=16)
    deformation_mm, neutral_mm = take_with_extra(head, invalid=invalid)
    solve = solve_units(head, deformation_mm, neutral_mm)
    layer = detail_layer(DetailSpread.build(head.vertices, head.landmarks),
                         head_residual(head, deformation_mm, neutral_mm, solve))
    faceless = np.zeros(30, dtype=bool)
    faceless[list(invalid)] = True
    assert layer.weights.shape == (30, len(layer.shapes))
    assert np.isnan(layer.weights[faceless]).all() and np.isfinite(layer.weights[~faceless]).all()
    assert np.isfinite(layer.shapes).all()


def test_unskinning_by_cramers_rule_is_a_plain_solve_per_landmark():
    rng = np.random.default_rng(5)
    frames, landmarks, joints = 40, 30, 5
    weight = rng.uniform(0.0, 1.0, (landmarks, joints)) * (rng.uniform(size=(landmarks, joints)) < 0.4)
    weight[:, 1] += 0.2  # every landmark skinned somewhere
    weight[:8] = np.eye(joints)[rng.integers(0, 2, 8)]  # carried by resting joints only
    weight[8] = 0.5 * np.eye(joints)[1]  # weights that do not sum to one: still divided out
    pose = rng.normal(scale=0.4, size=(frames, joints, 3))
    pose[:, :2] = 0.0  # the root and the neck rest, as in a bake
    world = rodrigues(pose)  # (n, J, 3, 3) standing in for the world rotations
    posed = rng.normal(scale=1e-3, size=(frames, landmarks, 3))
    expected = np.linalg.solve(np.einsum("lj,njab->nlab", weight, world), posed[..., None])[..., 0]
    fast = np.moveaxis(unskinned(weight, world, np.moveaxis(posed, 0, -1)), -1, 0)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast, expected, rtol=1e-5, atol=1e-11)
    resting = unskinned(weight, np.broadcast_to(np.eye(3), world.shape), np.moveaxis(posed, 0, -1))
    np.testing.assert_allclose(np.moveaxis(resting, -1, 0), posed / weight.sum(axis=1)[:, None], rtol=1e-6)


@pytest.mark.parametrize("decay", [0.5, 0.97])
def test_leading_eigenpairs_are_eighs(decay):
    """A decaying spectrum converges by subspace iteration; a flat one falls back on eigh: the same pairs."""
    rng = np.random.default_rng(6)
    size = 120
    basis = np.linalg.qr(rng.normal(size=(size, size)))[0]
    spectrum = decay ** np.arange(size)
    matrix = (basis * spectrum) @ basis.T
    values, vectors = leading_eigenpairs(matrix, 8)
    np.testing.assert_allclose(values, spectrum[:8], rtol=1e-10)
    np.testing.assert_allclose(np.abs(np.sum(vectors * basis[:, :8], axis=0)), 1.0, atol=1e-10)
    small_values, _ = leading_eigenpairs(matrix[:30, :30], 8)  # small matrices: eigh directly
    np.testing.assert_allclose(small_values, np.linalg.eigvalsh(matrix[:30, :30])[::-1][:8], rtol=1e-12)


def test_distances_are_the_plain_norm():
    rng = np.random.default_rng(7)
    points, centres = rng.normal(scale=0.1, size=(50, 3)), rng.normal(scale=0.1, size=(20, 3))
    centres[0] = points[3]  # zero distance
    plain = np.linalg.norm(points[:, None] - centres[None], axis=2)
    np.testing.assert_allclose(distances(points, centres), plain, rtol=1e-12, atol=1e-8)
