import itertools

import numpy as np

from mxr.models.correspondence import LandmarkEmbedding
from mxr.models.head_model import HeadModel
from mxr.models.retarget import retarget_expressions, solve_box_ridge, solve_units


def small_head(expressions: int = 4, names: tuple[str, ...] | None = None) -> HeadModel:
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
        expression_names=names or tuple(f"e{k}" for k in range(expressions)),
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
    got = retarget_expressions(head, deformation_mm, neutral_mm, regularization=1e-6, sparsity=0.0)
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


def rotation_about(axis: int, degrees: float) -> np.ndarray:
    angle = np.radians(degrees)
    plane = [i for i in range(3) if i != axis]
    rotation = np.eye(3)
    rotation[np.ix_(plane, plane)] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return rotation


def test_head_motion_left_in_the_take_is_not_read_as_expression():
    head = small_head()
    truth = np.array([[0.0, 0.0, 0.0, 0.0], [0.6, 0.0, 0.3, 0.0], [0.0, 0.8, 0.0, 0.5]])
    neutral_mm = 1000.0 * head.landmark_positions()
    faces_mm = 1000.0 * head.landmark_positions(truth)  # (T, 478, 3)
    centre = neutral_mm.mean(axis=0)
    wobble = rotation_about(0, 3.0) @ rotation_about(1, -2.0)  # what a pose error of a few degrees leaves
    turned_mm = (faces_mm - centre) @ wobble.T + centre + np.array([1.5, -0.8, 0.4])
    still = retarget_expressions(head, faces_mm - neutral_mm, neutral_mm, sparsity=0.0)
    turned = retarget_expressions(head, turned_mm - neutral_mm, neutral_mm, sparsity=0.0)
    np.testing.assert_allclose(turned, still, atol=0.03)
    np.testing.assert_allclose(turned, truth, atol=0.03)


def test_antagonists_are_never_both_on():
    head = small_head(names=("jawLeft", "jawRight", "mouthSmileLeft", "mouthFrownLeft"))
    basis = head.landmark_basis()  # (4, 478, 3) metres
    # Both of each pair asked for at once: the solve keeps the stronger and explains the rest without it.
    deformation_mm = 1000.0 * np.stack([basis[0] * 0.9 + basis[1] * 0.5, basis[2] * 0.3 + basis[3] * 0.7])
    got = retarget_expressions(head, deformation_mm, 1000.0 * head.landmark_positions())
    assert np.all(np.minimum(got[:, 0], got[:, 1]) == 0.0) and np.all(np.minimum(got[:, 2], got[:, 3]) == 0.0)
    assert got[0, 0] > 0.5 and got[1, 3] > 0.6  # the stronger keeps its motion (jawLeft, supporting, pays its price)


def test_supporting_units_pay_more_than_primary_ones():
    # Two units that move the landmarks alike: the primary one (mouthSmileLeft) takes the motion.
    head = small_head(names=("mouthSmileLeft", "mouthDimpleLeft", "e2", "e3"))
    basis = np.array(head.expression_basis)
    basis[1] = basis[0] * 1.05
    head = HeadModel(head.name, head.vertices, head.faces, basis, head.expression_names, head.regions, head.landmarks)
    deformation_mm = 1000.0 * head.landmark_basis()[0][None] * 0.6
    got = retarget_expressions(head, deformation_mm, 1000.0 * head.landmark_positions())[0]
    assert got[0] > 0.5 and got[1] < 0.05


def test_what_the_primary_units_cannot_show_is_read_as_the_supporting_units_that_show_it():
    # A laugh's raised upper lip beside its smile: the smile is the primary unit's, the rest is read
    # as the supporting unit (at its first price alone it would be mostly dropped: about 0.2).
    head = small_head(names=("mouthSmileLeft", "mouthUpperUpLeft", "e2", "e3"))
    deformation_mm = 1000.0 * np.tensordot(np.array([[0.6, 0.5, 0.0, 0.0]]), head.landmark_basis(), axes=1)
    got = retarget_expressions(head, deformation_mm, 1000.0 * head.landmark_positions())[0]
    np.testing.assert_allclose(got[:2], [0.6, 0.5], atol=0.04)
    assert np.all(got[2:] < 0.02)


def test_landmarks_the_head_misplaces_are_left_out():
    head = small_head()
    truth = np.array([[0.5, 0.2, 0.0, 0.7]])
    neutral_mm = 1000.0 * head.landmark_positions()
    deformation_mm = 1000.0 * head.landmark_positions(truth) - neutral_mm
    # The performer's face disagrees with the head's embedding at a few points by 8 cm (as the
    # open head's inner-lip points did) and moves there in a way no unit explains.
    broken = np.arange(120, 130)
    neutral_mm[broken] += 80.0
    deformation_mm[:, broken] += np.array([0.0, 6.0, 0.0])
    solve = solve_units(head, deformation_mm, neutral_mm, regularization=1e-6, sparsity=0.0)
    assert np.all(solve.landmark_weights[broken] == 0.0) and solve.landmark_weights.sum() >= 478 - 10
    np.testing.assert_allclose(solve.coefficients, truth, atol=0.01)


class FrameSlices:
    """A deformation that only gives slices of frames, as ``bake_plan.TakeDeformation`` does."""

    def __init__(self, deformation_mm: np.ndarray) -> None:
        self.deformation_mm, self.read = deformation_mm, []

    def __len__(self) -> int:
        return len(self.deformation_mm)

    def __getitem__(self, frames: slice) -> np.ndarray:
        self.read.append(frames)
        return self.deformation_mm[frames]


def random_take(frames: int, seed: int, no_face: list[int]) -> tuple[HeadModel, np.ndarray, np.ndarray]:
    """``small_head`` and a take of random units on it: (head, neutral (478, 3) mm, deformation
    (T, 478, 3) mm, NaN on the ``no_face`` frames)."""
    head = small_head()
    truth = np.random.default_rng(seed).uniform(0.0, 1.0, (frames, 4))
    neutral_mm = 1000.0 * head.landmark_positions()
    deformation_mm = 1000.0 * (head.landmark_positions(truth) - head.landmark_positions())
    deformation_mm[no_face] = np.nan
    return head, neutral_mm, deformation_mm


def test_a_take_solved_in_chunks_is_the_take_solved_at_once():
    head, neutral_mm, deformation_mm = random_take(11, seed=3, no_face=[2, 7])
    whole = solve_units(head, deformation_mm, neutral_mm)
    slices = FrameSlices(deformation_mm)
    chunked = solve_units(head, slices, neutral_mm, chunk_frames=4)
    assert [(s.start, s.stop) for s in slices.read] == [(0, 4), (4, 8), (8, 11)]
    np.testing.assert_allclose(chunked.coefficients, whole.coefficients, atol=1e-12)
    np.testing.assert_allclose(chunked.rigid_m(), whole.rigid_m(), atol=1e-12)
    assert np.isnan(chunked.coefficients[[2, 7]]).all() and np.isnan(chunked.rigid_motion[[2, 7]]).all()
    assert chunked.rigid_m(slice(3, 6)).shape == (3, 478, 3)


def test_coupled_frames_follow_a_sinusoid_with_the_smoothing_filters_response():
    """Orthonormal basis, no ridge, no bounds: each unit is the target filtered by the coupling,
    whose response to a sinusoid at w rad/frame is 1 / (1 + 2 c (1 - cos w)), with no phase shift."""
    basis = np.linalg.qr(np.random.default_rng(5).normal(size=(30, 3)))[0]  # (30, 3) orthonormal columns
    frames, omega, strength = 240, 2 * np.pi / 12, 1.5
    wave = np.sin(omega * np.arange(frames))
    targets = np.outer(wave, basis[:, 1])  # (T, 30): unit 1 moves, the others do not
    coupling = np.full((frames - 1, 3), strength)
    got = solve_box_ridge(basis, targets, -1e9, 1e9, 0.0, iterations=3000, coupling=coupling)
    middle = slice(60, 180)  # away from the ends, where the free boundary changes the response
    expected = wave / (1.0 + 2.0 * strength * (1.0 - np.cos(omega)))
    np.testing.assert_allclose(got[middle, 1], expected[middle], atol=2e-3)
    np.testing.assert_allclose(got[:, [0, 2]], 0.0, atol=1e-9)


def test_smoothing_stops_a_unit_flipping_between_two_near_equal_readings_without_lag():
    """Two units that move the same landmarks almost alike: each frame is read by one of them (the
    L1 price), and a face between them is read by the one or the other on alternate frames."""
    head = small_head()
    basis = head.expression_basis.copy()
    basis[1] = basis[0] + 0.15 * np.random.default_rng(9).normal(scale=0.004, size=basis[0].shape) * (basis[0] != 0)
    head = HeadModel(head.name, head.vertices, head.faces, basis, head.expression_names, head.regions, head.landmarks)
    seconds = np.arange(48) / 24.0
    slow = 0.5 + 0.3 * np.sin(2 * np.pi * 1.0 * seconds)  # a 1 Hz expression ...
    truth = np.zeros((48, 4))
    truth[:, 0] = np.where(np.arange(48) % 2 == 0, slow, 0.0)  # ... shown by the one unit on even frames
    truth[:, 1] = np.where(np.arange(48) % 2 == 1, slow, 0.0)  # and by the other on odd ones
    neutral_mm = 1000.0 * head.landmark_positions()
    deformation_mm = 1000.0 * (head.landmark_positions(truth) - head.landmark_positions())
    apart = retarget_expressions(head, deformation_mm, neutral_mm)
    together = retarget_expressions(head, deformation_mm, neutral_mm, seconds=seconds)
    flips = lambda units: np.abs(np.diff(units[:, 0])).mean()  # noqa: E731  unit 0's jumps between frames
    assert flips(apart) > 0.2 and flips(together) < 0.2 * flips(apart)
    summed = together[:, 0] + together[:, 1]  # the expression, whichever unit shows it: follows the 1 Hz wave
    fitted = np.linalg.lstsq(np.stack([np.sin(2 * np.pi * seconds), np.cos(2 * np.pi * seconds), np.ones(48)], 1)[4:-4],
                             summed[4:-4], rcond=None)[0]
    assert abs(np.arctan2(fitted[1], fitted[0])) < 0.05  # no lag


def test_a_smoothed_take_solved_in_chunks_is_the_take_solved_at_once():
    head, neutral_mm, deformation_mm = random_take(60, seed=4, no_face=[20, 41])  # not tied across a frame with no face
    seconds = np.arange(60) / 30.0
    whole = solve_units(head, deformation_mm, neutral_mm, seconds=seconds)
    chunked = solve_units(head, deformation_mm, neutral_mm, seconds=seconds, chunk_frames=16)
    np.testing.assert_allclose(chunked.coefficients, whole.coefficients, atol=1e-4)
    assert np.isnan(chunked.coefficients[[20, 41]]).all()
    assert not np.allclose(whole.coefficients, solve_units(head, deformation_mm, neutral_mm).coefficients, atol=1e-3)


def test_frames_left_untied_keep_a_fast_motion_at_its_full_size():
    head = small_head()
    seconds = np.arange(48) / 24.0
    pulse = np.where(np.abs(seconds - 1.0) < 0.08, 0.6, 0.0)  # a 0.15 s flicker of unit 2
    truth = np.zeros((48, 4))
    truth[:, 2] = pulse
    neutral_mm = 1000.0 * head.landmark_positions()
    deformation_mm = 1000.0 * (head.landmark_positions(truth) - head.landmark_positions())
    alone = solve_units(head, deformation_mm, neutral_mm).coefficients[:, 2]
    tied = solve_units(head, deformation_mm, neutral_mm, seconds=seconds).coefficients[:, 2]
    untied = solve_units(head, deformation_mm, neutral_mm, seconds=seconds,
                         untied=np.abs(seconds - 1.0) < 0.15).coefficients[:, 2]
    assert tied.max() < 0.99 * alone.max()  # smoothed, it loses a little of its size
    np.testing.assert_allclose(untied, alone, atol=1e-3)  # untied around it, none
