"""The rig builder and the import operator, in real bpy."""
from __future__ import annotations

import bpy
import numpy as np
import pytest

from conftest import synthetic_head
from mxr.models.open_head import load_open_head
from mxr.models.blender_frame import head_to_blender
from mxr.mxr_addon.rig import build_rig, expression_keys, is_rig, slider_range


def shape_key_coordinates(rig: bpy.types.Object, name: str) -> np.ndarray:
    """World coordinates (V, 3) of a shape key's target (the rig is unrotated here)."""
    block = rig.data.shape_keys.key_blocks[name]
    values = np.empty(len(block.data) * 3, dtype=np.float32)
    block.data.foreach_get("co", values)
    return values.reshape(-1, 3) + np.array(rig.location)


def test_synthetic_rig_has_named_keys_ranges_groups_and_tags(empty_blend):
    head = synthetic_head()
    rig = build_rig(head, empty_blend.collection)
    blocks = rig.data.shape_keys.key_blocks
    assert [block.name for block in blocks] == ["Basis", *head.expression_names]
    assert expression_keys(rig) == list(head.expression_names)
    low, high = slider_range(head.coefficient_bounds)
    assert (low, high) == (0.0, 2.0)
    for name in head.expression_names:
        assert (blocks[name].slider_min, blocks[name].slider_max) == pytest.approx((low, high))
    np.testing.assert_allclose(shape_key_coordinates(rig, "Basis"), head_to_blender(head.vertices), atol=1e-6)
    np.testing.assert_allclose(
        shape_key_coordinates(rig, "shape_2"), head_to_blender(head.vertices + head.expression_basis[2]), atol=1e-6
    )
    assert sorted(group.name for group in rig.vertex_groups) == sorted(head.regions)
    assert all(polygon.use_smooth for polygon in rig.data.polygons)
    assert rig["mxr_owned"] and rig["mxr_head"] == head.name and rig.data.shape_keys["mxr_owned"]
    assert is_rig(rig)
    # The origin (rotation pivot) is the rest landmarks' centroid, as the take's head pose expects.
    np.testing.assert_allclose(rig.location, head_to_blender(head.landmark_positions().mean(axis=0)), atol=1e-6)


def test_axes_face_looks_at_blender_front():
    # +Z out of the face (head) -> -Y in Blender (the front view looks along +Y); +Y up -> +Z.
    np.testing.assert_array_equal(head_to_blender(np.array([[1.0, 2.0, 3.0]])), [[1.0, -3.0, 2.0]])


def test_signed_bounds_widen_both_ways():
    assert slider_range((-1.0, 1.0)) == (-2.0, 2.0)
    assert slider_range((-8.0, 8.0)) == (-10.0, 10.0)  # Blender's own slider limit


def test_import_head_operator_builds_the_open_head(empty_blend):
    head = load_open_head()
    assert bpy.ops.mxr.import_head() == {"FINISHED"}
    rig = bpy.context.view_layer.objects.active
    assert is_rig(rig) and rig["mxr_head"] == head.name
    assert len(rig.data.vertices) == head.vertex_count
    assert len(rig.data.shape_keys.key_blocks) == 1 + len(head.expression_names) == 53
    assert "jawOpen" in rig.data.shape_keys.key_blocks
    # Z-up: the head's height runs along Blender Z, the face towards -Y.
    coordinates = shape_key_coordinates(rig, "Basis")
    assert np.ptp(coordinates[:, 2]) == pytest.approx(np.ptp(head.vertices[:, 1]), rel=1e-5)
