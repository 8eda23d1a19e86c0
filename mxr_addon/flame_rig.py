"""Build a FLAME head rig in Blender that evaluates to FLAME's formula under the per-frame channel
values ``models/bake_plan.flame_channels`` computes.

The rig is what a technical artist expects of a skinned head:
- an armature ``MXR <name> Rig`` with five deforming bones, one per FLAME joint, heads at the
  joints regressed from the rig's rest mesh: ``FLAME_root`` (FLAME's global joint) -> ``neck``
  -> ``jaw``, ``eye.L``, ``eye.R`` (.L is the subject's left, Blender +X). ``FLAME_root`` and
  ``neck`` point up, ``jaw`` and the eyes point forward (-Y, where the face looks);
- the mesh ``MXR <name>`` parented to it, one vertex group per bone from FLAME's skinning
  weights, an Armature modifier (plain linear blend skinning, no volume preservation: FLAME's
  LBS), and relative shape keys: ``Basis``, optionally ``Shape000..`` (identity), ``Exp000..``
  (expressions) and ``Pose000..Pose035`` (FLAME's pose correctives).

FLAME applies every blendshape, correctives included, in rest space before skinning; Blender's
shape keys also act before the Armature modifier, so the two pipelines line up term by term.
Units are metres, axes Blender's ((x, y, z) -> (x, -z, y), see ``models/blender_frame.py``).

Bone rotations are quaternions in each bone's own rest frame. FLAME's local rotation R of a
joint (FLAME axes, about the joint, relative to its parent) becomes ``B^T (A R A^T) B`` with A
the change of axes and B the bone's rest orientation; because every bone is axis-aligned the
channels stay readable (jaw open = rotation about the jaw bone's X).

Pose correctives are **baked per frame**, not driven: the bake keys ``Pose000..`` from the same
rotations it keys on the bones. Reasons: FBX and glTF carry F-curves, not drivers (a driven
rig exports only as well as the exporter samples it, and reimports without the drivers); 36
driver expressions per rig are opaque to an animator who wants to key over a corrective; and
the same per-frame bake already carries the joint shift below. The cost: after hand-editing a
jaw or eye key, that frame's correctives (FLAME's are millimetre-scale) lag until the take is
baked again.

Joint shift: FLAME regresses its joints from the *expressed* mesh, so expressions move the
joints slightly (sub-millimetre), while Blender bones keep their rest heads. For a local rotation
R about a joint moved by d, FLAME's transform equals Blender's rotation about the rest head plus
a translation (I - R) d; the bake keys that as the bone's location, so the rig matches FLAME to
float precision. Identity as ``Shape`` keys works the same way for the identity the rig was built
with; dialling identity keys by hand afterwards does not move the bones (rebuild the rig).
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..models.bake_plan import FLAME_BONES as BONES  # FLAME's JOINT_NAMES order
from ..models.bake_plan import FLAME_POSE_KEYS as POSE_KEYS  # FLAME's pose_features order
from ..models.blender_frame import head_to_blender
from ..models.flame import (
    FLAME_COEFFICIENT_BOUNDS,
    FlameModel,
    expression_names,
    identity_names,
    shaped_vertices,
)
from .rig import EXPRESSIONS, HEAD_NAME, OWNED, slider_range

FLAME_PATH = "mxr_flame_path"  # rig properties: where the model came from, to reload it for baking
FLAME_LANDMARKS = "mxr_flame_landmarks"  # the landmark registration (.npz), '' if none
FLAME_IDENTITY = "mxr_flame_identity"  # identity coefficients the rest mesh and bones were built with
_UP, _FORWARD = np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])  # Blender axes
# Bone direction and length as a fraction of the head's height (FLAME's template y extent).
_BONE_SHAPE = {"FLAME_root": (_UP, 0.25), "neck": (_UP, 0.45), "jaw": (_FORWARD, 0.4),
               "eye.L": (_FORWARD, 0.1), "eye.R": (_FORWARD, 0.1)}


def rest_vertices(model: FlameModel, identity: np.ndarray, identity_as_keys: bool) -> np.ndarray:
    """The Basis shape (V, 3) FLAME metres: the template, plus the identity unless it gets keys."""
    return model.template if identity_as_keys else shaped_vertices(model, identity, np.zeros(0))


def build_flame_rig(
    model: FlameModel,
    collection: bpy.types.Collection,
    view_layer: bpy.types.ViewLayer,
    *,
    expressions: int,
    identity: np.ndarray,
    identity_as_keys: bool,
    flame_path: Path,
    landmarks_path: Path | None,
) -> bpy.types.Object:
    """A FLAME rig for ``model`` in ``collection``: returns the mesh object (the rig MXR bakes
    onto); its parent is the armature. ``identity`` (S',) coefficients, ``expressions`` the
    number of ``Exp`` keys (the leading FLAME components; 100 keys are heavy to play back).
    ``view_layer`` must hold ``collection`` (bones are made in edit mode)."""
    identity = np.asarray(identity, dtype=np.float64)
    joints = model.joint_regressor @ shaped_vertices(model, identity, np.zeros(0))  # (5, 3) FLAME metres
    name = f"MXR {model.name}"
    armature = _build_armature(f"{name} Rig", head_to_blender(joints), float(np.ptp(model.template[:, 1])),
                               model.parents, collection, view_layer)

    basis = rest_vertices(model, identity, identity_as_keys)
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(head_to_blender(basis), [], np.asarray(model.faces, dtype=np.int64))
    mesh.validate()
    mesh.polygons.foreach_set("use_smooth", np.ones(len(mesh.polygons), dtype=bool))
    mesh[OWNED] = True
    rig = bpy.data.objects.new(name, mesh)
    rig.parent = armature
    collection.objects.link(rig)
    for bone, weights in zip(BONES, model.skinning_weights.T):
        group = rig.vertex_groups.new(name=bone)
        for weight in np.unique(weights[weights > 0]):
            group.add(np.flatnonzero(weights == weight).tolist(), float(weight), "REPLACE")
    modifier = rig.modifiers.new("FLAME Skinning", "ARMATURE")
    modifier.object = armature
    modifier.use_vertex_groups, modifier.use_bone_envelopes = True, False
    modifier.use_deform_preserve_volume = False

    names = expression_names(expressions)
    rig[OWNED] = True
    rig[HEAD_NAME] = model.name
    rig[EXPRESSIONS] = [*names, *POSE_KEYS]
    rig[FLAME_PATH] = str(flame_path)
    rig[FLAME_LANDMARKS] = "" if landmarks_path is None else str(landmarks_path)
    rig[FLAME_IDENTITY] = identity.tolist()

    rig.shape_key_add(name="Basis", from_mix=False)
    mesh.shape_keys[OWNED] = True
    mesh.shape_keys.name = name
    coefficient_range = slider_range(FLAME_COEFFICIENT_BOUNDS)
    if identity_as_keys:
        for key, component, value in zip(identity_names(len(identity)), model.shape_basis, identity):
            _add_key(rig, key, basis + component, coefficient_range).value = float(value)
    for key, component in zip(names, model.expression_basis[:expressions]):
        _add_key(rig, key, basis + component, coefficient_range)
    for key, component in zip(POSE_KEYS, model.pose_basis):
        _add_key(rig, key, basis + component, slider_range((-1.0, 1.0)))  # (R - I) entries lie in [-2, 2]
    mesh.update()
    return rig


def _add_key(rig: bpy.types.Object, name: str, target: np.ndarray, limits: tuple[float, float]) -> bpy.types.ShapeKey:
    """A shape key ``name`` whose full-value shape is ``target`` (V, 3) FLAME metres."""
    block = rig.shape_key_add(name=name, from_mix=False)
    block.slider_min, block.slider_max = limits
    block.data.foreach_set("co", head_to_blender(target).astype(np.float32).ravel())
    return block


def _build_armature(
    name: str, joints: np.ndarray, head_height: float, parents: np.ndarray,
    collection: bpy.types.Collection, view_layer: bpy.types.ViewLayer,
) -> bpy.types.Object:
    """Armature object with one bone per FLAME joint, heads at ``joints`` (5, 3) Blender metres."""
    data = bpy.data.armatures.new(name)
    data[OWNED] = True
    armature = bpy.data.objects.new(name, data)
    armature[OWNED] = True
    armature.show_in_front = True
    collection.objects.link(armature)
    previous = view_layer.objects.active
    view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    edit_bones = data.edit_bones
    for bone, joint, parent in zip(BONES, joints, parents):
        direction, length = _BONE_SHAPE[bone]
        edit_bone = edit_bones.new(bone)
        edit_bone.head = joint
        edit_bone.tail = joint + direction * length * head_height
        edit_bone.roll = 0.0
        edit_bone.use_deform = True
        if parent >= 0:
            edit_bone.parent = edit_bones[BONES[parent]]
    bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = previous
    for pose_bone in armature.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"
    return armature


def is_flame_rig(rig: bpy.types.Object | None) -> bool:
    return rig is not None and FLAME_PATH in rig and armature_of(rig) is not None


def armature_of(rig: bpy.types.Object) -> bpy.types.Object | None:
    """The MXR armature a FLAME rig's mesh hangs from (its parent), if still there."""
    parent = rig.parent
    return parent if parent is not None and parent.type == "ARMATURE" and parent.get(OWNED) else None


def rig_identity(rig: bpy.types.Object) -> np.ndarray:
    """(S',) identity coefficients the rig's rest mesh and bones were built with."""
    return np.asarray(rig.get(FLAME_IDENTITY, []), dtype=np.float64)


def rig_expression_count(rig: bpy.types.Object) -> int:
    return sum(1 for name in rig.get(EXPRESSIONS, []) if str(name).startswith("Exp"))


def bone_rest_axes(armature: bpy.types.Object) -> np.ndarray:
    """(5, 3, 3) each FLAME bone's rest axes in armature space, ``BONES`` order: what
    ``bake_plan.flame_channels`` needs of the rig."""
    return np.array([np.array(armature.data.bones[bone].matrix_local.to_3x3()) for bone in BONES])
