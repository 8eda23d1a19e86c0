"""Bake a take onto an MXR rig as F-curves: shape-key values, head rotation, face-found flag.

Ownership: MXR writes only into actions it created (tagged ``mxr_owned``) and only the curves it
keys, each take into actions of its own (``takes``): a re-bake of the same take replaces its
actions' content, another take's actions (and detail and micro keys) are never changed. A user's
action found on the rig is kept alive with a fake user and reported, never deleted; shape keys MXR
did not create and drivers are never touched.

FLAME rigs (``bake_flame_take``): expressions, jaw and eye rotations solved together
(``retarget_flame``), the take's head rotation on the ``neck`` bone (the head turns on the
neck, the neck base stays with the body the head is attached to), pose correctives and the
joint shift keyed per frame (see ``flame_rig``).

Detail (``key_detail``, default on): what the fitted parameters leave unexplained becomes a few
per-take ``MXR_Detail`` shape keys with per-frame weights (``models/detail.py``), keyed in the
same action as the expressions; a re-bake of the take replaces them (and their curves), a bake
of it without detail removes them, as they belong to the take that made them.

Micro-expressions (``key_micro``, default on): each event the network fitted becomes its own
``MXR_Micro <region> <apex scene frame>`` shape key (named after the frame its timeline marker
sits on; its pattern spread like the detail), keyed over the event's frames only with its time
course (``models/micro_keys.py``); the expressions and detail are solved for the rest of the face. At the captured values the rig shows the same face; an
animator scales a micro key's curve to exaggerate that micro-expression alone, or slides its keys
to retime it. A re-bake replaces them like the detail keys.

Frames: take frame ``k`` lands on scene frame ``frame_start + k``. Frames without a face get no
shape-key or rotation keys (the curves interpolate across the gap), and the object's
``mxr_face_found`` property (0/1, constant interpolation) shows where the gaps are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import bpy
import mathutils
import numpy as np

from ..models.correspondence import LandmarkEmbedding
from ..models.detail import DetailLayer, DetailSpread, detail_layer, flame_residual, head_residual, movable_vertices
from ..models.flame import FlameModel, rodrigues, shaped_vertices, skinning_regions
from ..models.head_model import HeadModel
from ..models.micro_keys import MicroComponent, components_mm, micro_components
from ..models.similarity import Similarities
from ..models.retarget import (FlameLandmarks, displacement_on, flame_rest_alignment, neutral_to_head, retarget_flame,
                               solve_units)
from ..ops.errors import MxrError
from ..ops.take import Take
from .curves import ensure_fcurve, remove_fcurves, write_keys
from .flame_rig import FlameChannels, armature_of, flame_channels, rig_expression_count, rig_identity
from .micro_layers import record_micro_layers
from .rig import (AXES, DETAIL, DETAIL_PREFIX, MICRO, MICRO_PREFIX, expression_keys, head_to_blender,
                  replace_take_keys, take_keys)
from .takes import TAKE, TakeName, hold_other_takes_keys, take_action

FACE_FOUND = "mxr_face_found"


@dataclass
class BakeResult:
    frame_count: int  # frames in the take
    frames_keyed: int  # frames with a face, i.e. with shape-key keys
    keys: list[str]  # expression (and FLAME pose) shape keys that received F-curves
    warnings: list[str] = field(default_factory=list)
    detail_keys: list[str] = field(default_factory=list)  # the take's detail shape keys, keyed too
    micro_keys: list[str] = field(default_factory=list)  # one shape key per micro-expression, keyed over its frames


def bake_take(
    scene: bpy.types.Scene,
    rig: bpy.types.Object,
    head: HeadModel,
    take: Take,
    *,
    key_rotation: bool = True,
    key_detail: bool = True,
    key_micro: bool = True,
    take_path: Path | None = None,
) -> BakeResult:
    """Retarget ``take`` to ``head`` and key it on ``rig`` (built from ``head``) in ``scene``;
    with ``key_detail``, what the expressions cannot express as detail shape keys; with
    ``key_micro``, each micro-expression as a shape key of its own. ``take_path``: the file the
    take was read from, which names the take's actions (``takes.TakeName``)."""
    names = expression_keys(rig)
    if tuple(names) != tuple(head.expression_names):
        raise MxrError(f"{rig.name} was not built from head '{head.name}': rebuild the rig or pick another")
    components = micro_components(take) if key_micro else []
    deformation = take.deformation_mm() - components_mm(components, take.frame_count)  # (T, 478, 3) without them
    solve = solve_units(head, deformation, take.neutral_mm)
    coefficients = solve.coefficients  # (T, K)
    valid = np.all(np.isfinite(coefficients), axis=1)  # (T,)
    frame_start = scene.frame_start
    frames = frame_start + np.arange(take.frame_count, dtype=np.float64)  # (T,) scene frames

    set_scene_timing(scene, take.fps, take.frame_count)
    warnings: list[str] = []
    take_name = TakeName.of(take, take_path)
    key = rig.data.shape_keys
    key_action = take_action(key, f"{rig.name} Expressions", take_name, warnings)
    for name, values in zip(names, coefficients.T):
        block = key.key_blocks.get(name)
        if block is None:
            warnings.append(f"shape key '{name}' is missing on {rig.name}: not keyed")
            continue
        curve = ensure_fcurve(key_action, key, block.path_from_id("value"))
        write_keys(curve, frames[valid], values[valid], "LINEAR")
    warnings += driven_paths_warning(key, names)
    spread = (DetailSpread.build(head.vertices, head.landmarks, movable_vertices(head.vertex_count, head.regions))
              if key_detail or components else None)
    layer = detail_layer(spread, head_residual(head, deformation, take.neutral_mm, solve)) if key_detail else None
    detail = key_detail_layer(rig, key_action, frames[valid], layer, valid)
    micro = key_micro_layer(rig, key_action, frames, components, spread, neutral_to_head(head, take.neutral_mm))
    hold_other_takes_keys(key, key_action, frame_start)

    object_action = key_face_found(rig, frames, valid, take_name, warnings)
    if key_rotation:
        rig.rotation_mode = "XYZ"
        eulers = blender_eulers(take.head_rotation[valid])  # (n, 3) radians
        for axis in range(3):
            curve = ensure_fcurve(object_action, rig, "rotation_euler", axis)
            write_keys(curve, frames[valid], eulers[:, axis], "LINEAR")
    else:  # an earlier bake's head rotation is MXR's own: it must not keep animating this take
        remove_fcurves(object_action, rig, ["rotation_euler"], indices=(0, 1, 2))
    rig["mxr_source"] = take.source_path
    return BakeResult(take.frame_count, int(valid.sum()), names, warnings, detail, micro)


def bake_flame_take(
    scene: bpy.types.Scene,
    rig: bpy.types.Object,
    model: FlameModel,
    landmarks: LandmarkEmbedding,
    take: Take,
    *,
    key_rotation: bool = True,
    joints: tuple[int, ...] = (2, 3, 4),
    key_detail: bool = True,
    key_micro: bool = True,
    take_path: Path | None = None,
) -> BakeResult:
    """Retarget ``take`` to the FLAME ``model`` a rig was built from and key it: shape keys on
    the mesh, bone rotations (and joint-shift locations) on its armature. ``joints``: the FLAME
    joints solved from the landmarks (jaw, eyes); the neck gets the take's head rotation.
    ``key_detail``: the residual, brought to rest space, as detail shape keys (before skinning);
    ``key_micro``: each micro-expression as a shape key of its own (rest space likewise).
    ``take_path``: the file the take was read from, which names the take's actions."""
    armature = armature_of(rig)
    if armature is None:
        raise MxrError(f"{rig.name} lost its FLAME armature: import the FLAME rig again")
    expressions = rig_expression_count(rig)
    landmark_rig = FlameLandmarks.build(model, landmarks, rig_identity(rig), expressions)
    components = micro_components(take) if key_micro else []
    deformation = take.deformation_mm() - components_mm(components, take.frame_count)  # (T, 478, 3) without them
    solved = retarget_flame(landmark_rig, deformation, take.neutral_mm, joints=joints)
    valid = np.all(np.isfinite(solved.expression), axis=1)  # (T,)
    frames = scene.frame_start + np.arange(take.frame_count, dtype=np.float64)  # (T,) scene frames
    rotations = rodrigues(solved.pose[valid])  # (n, 5, 3, 3) FLAME axes, local
    if key_rotation:
        rotations[:, 1] = orthonormalised(take.head_rotation[valid])  # canonical -> camera = FLAME axes
    channels = flame_channels(armature, model, solved.expression[valid], rotations)

    set_scene_timing(scene, take.fps, take.frame_count)
    warnings: list[str] = []
    take_name = TakeName.of(take, take_path)
    key_action = key_flame_channels(rig, armature, frames[valid], channels, warnings, take_name)
    spread, layer = None, None
    if key_detail or components:
        rest = shaped_vertices(model, rig_identity(rig), np.zeros(0))  # (V, 3) the rig's rest face, FLAME metres
        spread = DetailSpread.build(rest, landmarks, movable_vertices(model.vertex_count, skinning_regions(model)))
    if key_detail:
        residual = flame_residual(landmark_rig, deformation, take.neutral_mm, solved.expression, solved.pose)
        layer = detail_layer(spread, residual)
    detail = key_detail_layer(rig, key_action, frames[valid], layer, valid)
    micro = key_micro_layer(rig, key_action, frames, components, spread,
                            flame_rest_alignment(landmark_rig, take.neutral_mm))
    hold_other_takes_keys(rig.data.shape_keys, key_action, scene.frame_start)
    key_face_found(rig, frames, valid, take_name, warnings)
    rig["mxr_source"] = take.source_path
    return BakeResult(take.frame_count, int(valid.sum()), list(channels.shape_keys), warnings, detail, micro)


def key_detail_layer(
    rig: bpy.types.Object, action: bpy.types.Action, frames: np.ndarray, layer: DetailLayer | None, valid: np.ndarray
) -> list[str]:
    """Replace the take's detail keys (shape keys and their curves in its ``action``) with
    ``layer``'s, keyed at ``frames`` (n,) = the take's ``valid`` (T,) frames; ``None``: remove
    them only. Returns the new keys' names."""
    key = rig.data.shape_keys
    remove_fcurves(action, key, [f'key_blocks["{name}"].value' for name in take_keys(action, DETAIL)])
    shapes = np.zeros((0, len(rig.data.vertices), 3)) if layer is None else head_to_blender(layer.shapes)
    names = replace_take_keys(rig, action, DETAIL, [f"{DETAIL_PREFIX}{index:02d}" for index in range(len(shapes))],
                              shapes)
    if layer is not None:
        for name, weights in zip(names, layer.weights[valid].T):
            write_keys(ensure_fcurve(action, key, key.key_blocks[name].path_from_id("value")), frames, weights, "LINEAR")
    return names


def key_micro_layer(rig: bpy.types.Object, action: bpy.types.Action, frames: np.ndarray,
                    components: list[MicroComponent], spread: DetailSpread | None, alignment: Similarities) -> list[str]:
    """Replace the take's micro keys (curves in its ``action``) with one per component: its
    pattern, carried into the head's metres by ``alignment`` (the performer's neutral onto the
    rig's rest landmarks) and spread over the mesh by ``spread``, keyed at the take's ``frames``
    (T,) scene frames where its weight is defined and inside its span (0 at both ends), so that
    the curve can be moved as one piece."""
    key = rig.data.shape_keys
    remove_fcurves(action, key, [f'key_blocks["{name}"].value' for name in take_keys(action, MICRO)])
    offsets = np.zeros((0, len(rig.data.vertices), 3))
    if components:
        patterns_m = displacement_on(alignment, np.stack([c.pattern_mm for c in components]))  # (E, 478, 3)
        offsets = head_to_blender(spread.apply(patterns_m[:, spread.sources]))
    first_frame = int(frames[0]) if len(frames) else 0
    labels = [f"{MICRO_PREFIX} {c.region} {first_frame + c.apex_frame}" for c in components]
    names = replace_take_keys(rig, action, MICRO, labels, offsets)
    for name, component in zip(names, components):
        span = np.zeros(len(frames), bool)
        span[component.first_frame:component.last_frame + 1] = True
        keyed = span & np.isfinite(component.weights)
        curve = ensure_fcurve(action, key, key.key_blocks[name].path_from_id("value"))
        write_keys(curve, frames[keyed], component.weights[keyed], "LINEAR")
    record_micro_layers(rig, action[TAKE], names, components, first_frame)
    return names


def key_flame_channels(
    rig: bpy.types.Object, armature: bpy.types.Object, frames: np.ndarray, channels: FlameChannels, warnings: list[str],
    take: TakeName,
) -> bpy.types.Action:
    """Key ``channels`` at ``frames`` (n,): shape keys in ``take``'s action on the mesh's Key, bone
    rotations and locations in its action on the armature object. -> the Key's action."""
    key = rig.data.shape_keys
    key_action = take_action(key, f"{rig.name} Expressions", take, warnings)
    for name, values in channels.shape_keys.items():
        block = key.key_blocks.get(name)
        if block is None:
            warnings.append(f"shape key '{name}' is missing on {rig.name}: not keyed")
            continue
        write_keys(ensure_fcurve(key_action, key, block.path_from_id("value")), frames, values, "LINEAR")
    warnings += driven_paths_warning(key, list(channels.shape_keys))
    pose_action = take_action(armature, f"{armature.name} Pose", take, warnings)
    for channel, per_bone in (("rotation_quaternion", channels.rotations), ("location", channels.locations)):
        for bone, values in per_bone.items():
            path = armature.pose.bones[bone].path_from_id(channel)
            for axis in range(values.shape[1]):
                write_keys(ensure_fcurve(pose_action, armature, path, axis), frames, values[:, axis], "LINEAR")
    return key_action


def key_face_found(rig: bpy.types.Object, frames: np.ndarray, valid: np.ndarray, take: TakeName,
                   warnings: list[str]) -> bpy.types.Action:
    """The 0/1 ``mxr_face_found`` property on every take frame (constant interpolation), in the
    take's action on the rig object. -> that action."""
    rig[FACE_FOUND] = int(valid[0]) if len(valid) else 0
    object_action = take_action(rig, f"{rig.name} Head", take, warnings)
    write_keys(ensure_fcurve(object_action, rig, f'["{FACE_FOUND}"]'), frames, valid.astype(np.float64), "CONSTANT")
    return object_action


def set_scene_timing(scene: bpy.types.Scene, fps: float, frame_count: int) -> None:
    """Scene rate = take rate (29.97 as 30/1.001) and range = the take, from ``frame_start``."""
    scene.render.fps = max(1, round(fps))
    scene.render.fps_base = scene.render.fps / fps
    scene.frame_end = scene.frame_start + max(frame_count, 1) - 1


def orthonormalised(rotations: np.ndarray) -> np.ndarray:
    """The nearest rotations (n, 3, 3) float64 to stored float32 matrices (n, 3, 3)."""
    u, _, vt = np.linalg.svd(rotations.astype(np.float64))
    return u @ vt


def blender_eulers(rotations: np.ndarray) -> np.ndarray:
    """Head rotations (n, 3, 3) canonical -> camera, as Blender XYZ Euler angles (n, 3) radians.

    The camera frame has x right, y up, z towards the camera, and the canonical face frame looks
    down +Z, so a face looking straight at the camera is the identity. Both frames are mapped to
    Blender by the rig's change of axes (a face looking at the camera faces Blender's front view,
    -Y): R_blender = AXES @ R @ AXES.T. Angles are made continuous frame to frame so F-curves
    do not jump by 2 pi.
    """
    blender = AXES @ orthonormalised(rotations) @ AXES.T  # (n, 3, 3)
    eulers = np.empty((len(blender), 3))
    previous = None
    for index, matrix in enumerate(blender):
        euler = mathutils.Matrix(matrix.tolist()).to_euler("XYZ", *([previous] if previous else []))
        eulers[index] = euler
        previous = euler
    return eulers


def driven_paths_warning(key: bpy.types.Key, names: list[str]) -> list[str]:
    """Drivers override F-curves: say which baked keys a (user's) driver hides."""
    if key.animation_data is None:
        return []
    driven = {driver.data_path for driver in key.animation_data.drivers}
    blocks = [key.key_blocks.get(name) for name in names]
    hidden = [block.name for block in blocks if block is not None and block.path_from_id("value") in driven]
    return [f"shape keys driven by your drivers (bake hidden, drivers kept): {', '.join(hidden)}"] if hidden else []
