"""Build a Blender head rig (mesh + shape keys + region groups) from a ``HeadModel``.

The rig is plain Blender data an animator already knows: one mesh object, a ``Basis`` shape key
and one shape key per expression, named exactly as the head's ``expression_names`` so that the
baker (and any user tooling, e.g. ARKit-named drivers) can find them by name.
"""
from __future__ import annotations

import bpy
import numpy as np

from ..models.blender_frame import head_to_blender
from ..models.head_model import HeadModel

OWNED = "mxr_owned"  # custom property on every ID MXR creates; re-bakes touch only these
HEAD_NAME = "mxr_head"  # the HeadModel.name a rig was built from
EXPRESSIONS = "mxr_expressions"  # the shape keys MXR created, so user-added keys are never touched
DETAIL = "mxr_detail"  # on a take's shape-key action: the detail shape keys its last bake created
MICRO = "mxr_micro"  # on a take's shape-key action: the micro-expression shape keys its last bake created

# Blender clamps ShapeKey.slider_min/max to [-10, 10].
SLIDER_LIMIT = 10.0  # Blender's bound on a shape key's slider range, either way


def slider_range(bounds: tuple[float, float]) -> tuple[float, float]:
    """Slider range for coefficients in ``bounds``.

    Wider than the solver's bounds on purpose: animators exaggerate (the point of separating
    micro-expressions is to scale them up), and a key value outside the slider range is clamped
    silently on evaluation. Zero stays inside so the neutral pose is always reachable.
    """
    lower, upper = bounds
    low = max(-SLIDER_LIMIT, min(lower, 0.0) * 2.0)
    high = min(SLIDER_LIMIT, max(upper, 0.0) * 2.0)
    return low, high


def widen_slider(block: bpy.types.ShapeKey, low: float, high: float) -> None:
    """Let the key's value reach ``low``..``high`` (up to ``SLIDER_LIMIT``): a value outside the
    slider range is clamped silently, and an exaggerated micro-expression must not be cut off."""
    block.slider_max = min(SLIDER_LIMIT, max(block.slider_max, float(np.ceil(high))))
    block.slider_min = max(-SLIDER_LIMIT, min(block.slider_min, float(np.floor(low))))


def rotation_pivot(head: HeadModel) -> np.ndarray:
    """The rig's origin (3,) in Blender metres: the centroid of the head's rest landmarks.

    The take's head rotation turns the face about the neutral face's landmark centroid (the
    canonical origin), so keying the object's rotation about this point reproduces the pose.
    """
    return head_to_blender(head.landmark_positions().astype(np.float64).mean(axis=0))


def build_rig(head: HeadModel, collection: bpy.types.Collection, name: str | None = None) -> bpy.types.Object:
    """A new mesh object for ``head`` linked into ``collection``; nothing else is changed."""
    name = name or f"MXR {head.name}"
    mesh = bpy.data.meshes.new(name)
    pivot = rotation_pivot(head)
    vertices = head_to_blender(head.vertices.astype(np.float64)) - pivot  # (V, 3) metres, object space
    mesh.from_pydata(vertices, [], np.asarray(head.faces, dtype=np.int64))
    mesh.validate()
    mesh.polygons.foreach_set("use_smooth", np.ones(len(mesh.polygons), dtype=bool))
    mesh[OWNED] = True

    rig = bpy.data.objects.new(name, mesh)
    rig.location = pivot  # world positions are the head's own; only the origin moves
    rig[OWNED] = True
    rig[HEAD_NAME] = head.name
    rig[EXPRESSIONS] = list(head.expression_names)
    collection.objects.link(rig)

    for region, indices in sorted(head.regions.items()):
        group = rig.vertex_groups.new(name=region)
        group.add(np.asarray(indices, dtype=np.int64).tolist(), 1.0, "REPLACE")

    rig.shape_key_add(name="Basis", from_mix=False)
    mesh.shape_keys[OWNED] = True
    mesh.shape_keys.name = name
    low, high = slider_range(head.coefficient_bounds)
    targets = head_to_blender(head.vertices[None].astype(np.float64) + head.expression_basis) - pivot  # (K, V, 3)
    for expression, coordinates in zip(head.expression_names, targets):
        block = rig.shape_key_add(name=expression, from_mix=False)
        block.slider_min, block.slider_max = low, high
        block.data.foreach_set("co", coordinates.astype(np.float32).ravel())
    mesh.update()
    return rig


def is_rig(obj: bpy.types.ID | None) -> bool:
    """An MXR head rig: a mesh object MXR built, still carrying its shape keys."""
    return (
        obj is not None
        and getattr(obj, "type", None) == "MESH"
        and bool(obj.get(OWNED))
        and HEAD_NAME in obj
        and obj.data.shape_keys is not None
    )


def find_rig(context: bpy.types.Context) -> bpy.types.Object | None:
    """The active object if it is an MXR rig, else the first MXR rig in the scene."""
    if is_rig(context.active_object):
        return context.active_object
    return next((obj for obj in context.scene.objects if is_rig(obj)), None)


def expression_keys(rig: bpy.types.Object) -> list[str]:
    """Names of the shape keys MXR created on ``rig`` (user-added keys are not in it)."""
    return [str(name) for name in rig.get(EXPRESSIONS, [])]


def take_keys(action: bpy.types.Action, record: str) -> list[str]:
    """Names of the per-take shape keys the last bake of ``action``'s take created, by the
    ``record`` property on the action that lists them: ``DETAIL`` or ``MICRO``."""
    return [str(name) for name in action.get(record, [])]


def replace_take_keys(rig: bpy.types.Object, action: bpy.types.Action, record: str, names: list[str],
                      offsets: np.ndarray) -> list[str]:
    """Replace the per-take shape keys listed in ``action[record]`` (``action``: the take's on the
    rig's Key) with one key per name, shaped by ``offsets`` (N, V, 3) Blender metres (object axes,
    from the Basis); returns their names.

    Detail and micro keys belong to one take, so a re-bake of the take removes those its last bake
    created (only those MXR recorded creating); other takes' keys stay, as their takes play them.
    A name another take's key has already gets Blender's suffix (".001"). Their slider range covers
    weights in [-1, 1] with the same room to exaggerate as the expressions.
    """
    blocks = rig.data.shape_keys.key_blocks
    for name in take_keys(action, record):
        if name in blocks:
            rig.shape_key_remove(blocks[name])
    basis = np.empty(len(rig.data.vertices) * 3, dtype=np.float32)
    rig.data.shape_keys.reference_key.data.foreach_get("co", basis)
    low, high = slider_range((-1.0, 1.0))
    created = []
    for name, offset in zip(names, offsets):
        block = rig.shape_key_add(name=name, from_mix=False)
        block.slider_min, block.slider_max = low, high
        block.data.foreach_set("co", (basis + offset.astype(np.float32).ravel()))
        created.append(block.name)  # Blender renames on a clash with a user's key or another take's
    action[record] = created
    rig.data.update()
    return created
