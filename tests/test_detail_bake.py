"""Detail shape keys baked onto the built-in-style head in real bpy: the evaluated mesh, re-bakes,
ownership, the operator's switch. Runs under bpy 4.2 too (tests/test_blender_4_2.py)."""
from __future__ import annotations

import bpy
import numpy as np
import pytest

from conftest import synthetic_head, synthetic_take
from test_addon_bake import curves_of
from test_detail import extra_field
from test_flame_rig import evaluated_vertices
from mxr.models.detail import DetailSpread, detail_layer, head_residual, movable_vertices
from mxr.models.retarget import solve_units
from mxr.mxr_addon.bake import bake_take
from mxr.mxr_addon.heads import remember
from mxr.models.blender_frame import head_to_blender
from mxr.mxr_addon.rig import build_rig
from mxr.ops.take import save_take


@pytest.fixture(scope="module")
def head():
    return remember(synthetic_head(name="detail_head", grid=20))


def take_with_detail(head, seed: int):
    """A synthetic take plus a smooth field the head's basis cannot express, in its detail_mm."""
    take = synthetic_take(head, frames=16, invalid=(5,), seed=seed)
    amounts = np.random.default_rng(seed).uniform(-1.0, 1.0, (take.frame_count, 2))  # (T, 2)
    extra = np.tensordot(amounts, head.landmarks.locate(extra_field(head.vertices.astype(np.float64))), axes=1)
    extra[~take.valid] = np.nan
    take.detail_mm = (extra * 1000.0).astype(np.float32)  # (T, 478, 3) mm
    return take


def expected_layer(head, take):
    solve = solve_units(head, take.deformation_mm(), take.neutral_mm, seconds=take.timestamps_s)
    spread = DetailSpread.build(head.vertices, head.landmarks, movable_vertices(head.vertex_count, head.regions))
    return solve.coefficients, detail_layer(spread, head_residual(head, take.deformation_mm(), take.neutral_mm, solve))


def detail_curve_paths(rig) -> set[str]:
    action = rig.data.shape_keys.animation_data.action
    return {curve.data_path for curve in curves_of(action) if "MXR_Detail" in curve.data_path}


def test_evaluated_mesh_is_expressions_plus_detail(empty_blend, head):
    scene = empty_blend
    take = take_with_detail(head, seed=1)
    rig = build_rig(head, scene.collection)
    result = bake_take(scene, rig, head, take, key_rotation=False)
    coefficients, layer = expected_layer(head, take)
    assert 1 <= len(layer.shapes) <= 8
    assert result.detail_keys == [f"MXR_Detail{n:02d}" for n in range(len(layer.shapes))]
    assert result.keys == list(head.expression_names)
    blocks = rig.data.shape_keys.key_blocks
    assert all((blocks[name].slider_min, blocks[name].slider_max) == (-2.0, 2.0) for name in result.detail_keys)
    for k in (0, 7, 15):
        scene.frame_set(scene.frame_start + k)
        vertices = head.evaluate(coefficients[k]) + np.tensordot(layer.weights[k], layer.shapes, axes=1)  # (V, 3)
        assert np.abs(evaluated_vertices(rig) - head_to_blender(vertices)).max() < 1e-5
    curve = next(c for c in curves_of(rig.data.shape_keys.animation_data.action) if "MXR_Detail00" in c.data_path)
    assert {round(point.co[0]) for point in curve.keyframe_points} == {scene.frame_start + k for k in range(16) if k != 5}


def test_rebake_replaces_detail_keys_and_keeps_the_users(empty_blend, head, tmp_path):
    scene = empty_blend
    rig = build_rig(head, scene.collection)
    bake_take(scene, rig, head, take_with_detail(head, seed=1))
    mine = rig.shape_key_add(name="my_corrective", from_mix=False)
    mine.data[0].co = (1.0, 2.0, 3.0)
    mine.value = 0.25

    second_take = take_with_detail(head, seed=2)
    second = bake_take(scene, rig, head, second_take, key_rotation=False)
    _, layer = expected_layer(head, second_take)
    names = [block.name for block in rig.data.shape_keys.key_blocks]
    assert [name for name in names if name.startswith("MXR_Detail")] == second.detail_keys
    assert detail_curve_paths(rig) == {f'key_blocks["{name}"].value' for name in second.detail_keys}
    scene.frame_set(scene.frame_start + 3)
    np.testing.assert_allclose([rig.data.shape_keys.key_blocks[n].value for n in second.detail_keys],
                               layer.weights[3], atol=1e-5)

    # The operator's switch: re-baking a take without detail removes its detail keys and curves only;
    # the take baked before from memory (another take) keeps its keys, which this one holds at 0.
    save_take(second_take, tmp_path / "take.npz")
    bpy.context.view_layer.objects.active = rig
    for key_detail in (True, False):
        assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "take.npz"), key_detail=key_detail,
                                     reference_video=False) == {"FINISHED"}
    blocks = rig.data.shape_keys.key_blocks
    assert [block.name for block in blocks if block.name.startswith("MXR_Detail")] == second.detail_keys
    assert list(rig.data.shape_keys.animation_data.action["mxr_detail"]) == []
    assert detail_curve_paths(rig) == {f'key_blocks["{name}"].value' for name in second.detail_keys}
    scene.frame_set(scene.frame_start + 3)
    assert [blocks[name].value for name in second.detail_keys] == [0.0] * len(second.detail_keys)
    assert blocks["my_corrective"].value == pytest.approx(0.25)
    assert tuple(blocks["my_corrective"].data[0].co) == pytest.approx((1.0, 2.0, 3.0))
