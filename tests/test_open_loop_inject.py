"""scripts/open_loop_inject.py: an injected copy is read against the original's rest face, and the
planted fields lie on the neutral the engine found, whatever it then took out of it."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mxr.models.open_head import load_open_head
from mxr.ops.held_expression import expression_shift_mm


@pytest.fixture
def inject(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import open_loop_inject
    return open_loop_inject


def test_the_injected_take_is_read_against_the_originals_rest_and_fields_lie_on_the_found_neutral(inject):
    from conftest import synthetic_take

    head = load_open_head()
    found = synthetic_take(head)
    units = np.zeros(len(head.expression_names))
    units[head.expression_names.index("jawOpen")] = 0.12
    shift_mm = expression_shift_mm(head, found.neutral_mm, units)
    assert np.abs(shift_mm[:, :2]).max() > 2.0 and np.all(shift_mm[:, 2] == 0.0)
    # the engine took the held jaw out of the original; the injected copy, on named frames, kept it
    original = dataclasses.replace(found, neutral_mm=(found.neutral_mm - shift_mm).astype(np.float32),
                                   macro_mm=(found.macro_mm + shift_mm).astype(np.float32),
                                   settings={**found.settings, "neutral_held": {"jawOpen": 0.12}})
    np.testing.assert_allclose(inject.found_neutral_mm(original), found.neutral_mm, atol=0.05)  # recomputed: 0.03 mm
    injected = inject.with_rest_of(original, found)
    np.testing.assert_allclose(injected.neutral_mm, original.neutral_mm, atol=0.05)
    np.testing.assert_allclose(np.nan_to_num(injected.deformation_mm()), np.nan_to_num(original.deformation_mm()),
                               atol=0.05)
    # a take from before the correction (nothing held) is its own found neutral, bit for bit
    assert np.array_equal(inject.found_neutral_mm(found), found.neutral_mm.astype(np.float64))


def test_the_points_a_take_was_read_from_come_back_from_its_layers(inject):
    """``read_points_px``: the image points the engine read (here: the posed neutral's projection
    moved by known px) come back from the take's layers, however its total is split among them and
    whatever rest face the engine took out of its neutral; a frame without a face gives NaN."""
    import cv2
    from test_injection import perspective_take

    from mxr.ops import injection

    points = load_open_head().landmark_positions().astype(np.float64) * 1000.0
    neutral_mm = points - points.mean(axis=0)
    rotations = np.stack([cv2.Rodrigues(np.array([0.1 * k, -0.2, 0.05]))[0] for k in range(3)])
    shifts_mm = np.array([[10.0, -5.0, 550.0], [0.0, 0.0, 600.0], [-8.0, 6.0, 650.0]])
    take = perspective_take(neutral_mm, rotations, shifts_mm)
    rng = np.random.default_rng(0)
    moved_px = take.landmarks_px[..., :2] + rng.uniform(-3.0, 3.0, (3, 478, 2))
    read_mm = injection.take_camera(take).read_mm(moved_px, neutral_mm)  # (3, 478, 3) mm, as the engine reads
    assert np.abs(read_mm).max() > 1.0
    # the engine's rest face: its neutral less a held expression, every frame's displacement plus it
    held_mm = np.concatenate([rng.uniform(-1.5, 1.5, (478, 2)), np.zeros((478, 1))], axis=1)
    layered = dataclasses.replace(take, neutral_mm=(neutral_mm - held_mm).astype(np.float32),
                                  macro_mm=(0.6 * read_mm + held_mm).astype(np.float32),
                                  micro_mm=(0.3 * read_mm).astype(np.float32),
                                  detail_mm=(0.1 * read_mm).astype(np.float32))
    np.testing.assert_allclose(inject.read_points_px(layered), moved_px, atol=2e-3)  # float32 layers
    np.testing.assert_allclose(inject.read_points_px(take), take.landmarks_px[..., :2], atol=1e-3)
    faceless = dataclasses.replace(layered, valid=np.array([True, False, True]),
                                   head_rotation=np.where(np.arange(3)[:, None, None] == 1, np.nan,
                                                          layered.head_rotation).astype(np.float32))
    points_px = inject.read_points_px(faceless)
    assert np.isnan(points_px[1]).all()
    np.testing.assert_allclose(points_px[[0, 2]], moved_px[[0, 2]], atol=2e-3)
