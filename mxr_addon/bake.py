"""Write a bake plan (``models/bake_plan.py``) onto an MXR rig as F-curves: shape-key values, head
rotation or FLAME bone channels, the face-found flag, detail and micro-expression keys.

The plan is computed first, without touching the scene: a take that cannot be baked fails
before anything changes. Writing is then one pass.

Ownership: MXR writes only into actions it created (tagged ``mxr_owned``) and only the curves it
keys, each take into actions of its own (``takes``): a re-bake of the same take replaces its
actions' content, another take's actions (and detail and micro keys) are never changed. A user's
action found on the rig is kept alive with a fake user and reported, never deleted; shape keys MXR
did not create and drivers are never touched.

FLAME rigs: expressions, pose correctives and joint-shift locations as the plan computed them
(``bake_plan.flame_channels``), the take's head rotation on the ``neck`` bone (the head turns on
the neck, the neck base stays with the body the head is attached to).

Detail (``key_detail``, default on): what the fitted parameters leave unexplained, as a few
per-take ``MXR_Detail`` shape keys with per-frame weights (``models/detail.py``), keyed in the
same action as the expressions; a re-bake of the take replaces them (and their curves), a bake
of it without detail removes them, as they belong to the take that made them.

Micro-expressions (``key_micro``, default on): each event the network fitted becomes its own
``MXR_Micro <region> <apex scene frame>`` shape key, keyed over the event's frames only with its
time course (``models/micro_keys.py``); the expressions and detail are solved for the rest of the
face. At the captured values the rig shows the same face; an animator scales a micro key's curve
to exaggerate that micro-expression alone, or slides its keys to retime it.

Time: take frames land where the plan's ``TimeMapping`` puts them (the scene's own rate by
default, keys between frames where the rates differ; the scene's rate is changed only when asked
to match the take, and the range only grows to hold the take: each change is reported). Frames
without a face get no shape-key or rotation keys (the curves interpolate across the gap), and
the object's ``mxr_face_found`` property (0/1, constant interpolation) shows where the gaps are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ..models.bake_plan import BakePlan, EventOnScene, ShapeLayer, TimeMapping, plan_flame_bake, plan_head_bake
from ..models.correspondence import LandmarkEmbedding
from ..models.flame import FlameModel
from ..models.head_model import HeadModel
from ..ops.errors import MxrError
from ..ops.take import Take
from .curves import ensure_fcurve, remove_fcurves, write_keys
from .flame_rig import armature_of, bone_rest_axes, rig_expression_count, rig_identity
from .micro_layers import record_micro_layers
from .rig import DETAIL, MICRO, expression_keys, replace_take_keys, take_keys
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
    first_frame: int = 1  # the scene frames the take covers
    last_frame: int = 1
    events: list[EventOnScene] = field(default_factory=list)  # the take's micro events, for the timeline markers


def scene_time(scene: bpy.types.Scene, take: Take, *, match_take: bool = False, slowdown: float = 1.0,
               frame_start: int | None = None) -> TimeMapping:
    """Where ``take`` lands in ``scene``: from ``frame_start`` (the scene's start if None), at the
    scene's rate (or the take's)."""
    return TimeMapping.for_take(take, scene.frame_start if frame_start is None else frame_start,
                                scene.render.fps / scene.render.fps_base, match_take=match_take, slowdown=slowdown)


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
    match_take: bool = False,
    slowdown: float = 1.0,
) -> BakeResult:
    """Retarget ``take`` to ``head`` and key it on ``rig`` (built from ``head``) in ``scene``
    (see ``bake_plan.plan_head_bake`` for the options). ``take_path``: the file the take was read
    from, which names the take's actions (``takes.TakeName``)."""
    check_rig(rig, head)
    plan = plan_head_bake(head, take, scene_time(scene, take, match_take=match_take, slowdown=slowdown),
                          key_rotation=key_rotation, key_detail=key_detail, key_micro=key_micro)
    return write_bake(scene, rig, plan, TakeName.of(take, take_path), take.source_path)


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
    match_take: bool = False,
    slowdown: float = 1.0,
) -> BakeResult:
    """Retarget ``take`` to the FLAME ``model`` a rig was built from and key it: shape keys on
    the mesh, bone rotations (and joint-shift locations) on its armature (see
    ``bake_plan.plan_flame_bake``). ``take_path``: the file the take was read from."""
    armature = armature_of(rig)
    if armature is None:
        raise MxrError(f"{rig.name} lost its FLAME armature: import the FLAME rig again")
    plan = plan_flame_bake(model, landmarks, rig_identity(rig), rig_expression_count(rig), bone_rest_axes(armature),
                           take, scene_time(scene, take, match_take=match_take, slowdown=slowdown),
                           key_rotation=key_rotation, joints=joints, key_detail=key_detail, key_micro=key_micro)
    return write_bake(scene, rig, plan, TakeName.of(take, take_path), take.source_path)


def check_rig(rig: bpy.types.Object, head: HeadModel) -> None:
    """MxrError unless ``rig`` was built from ``head`` (the same units, in the same order)."""
    if tuple(expression_keys(rig)) != tuple(head.expression_names):
        raise MxrError(f"{rig.name} was not built from head '{head.name}': rebuild the rig or pick another")


def write_bake(scene: bpy.types.Scene, rig: bpy.types.Object, plan: BakePlan, take: TakeName,
               source_path: str) -> BakeResult:
    """Key ``plan`` on ``rig`` (an MXR open-head rig, or a FLAME rig's mesh when the plan has bone
    channels) in ``take``'s actions, and fit the scene's timing to it (reported)."""
    warnings = list(plan.warnings) + apply_scene_time(scene, plan)
    key = rig.data.shape_keys
    key_action = take_action(key, f"{rig.name} Expressions", take, warnings)
    write_shape_key_values(rig, key_action, plan.keyed_frames, plan.shape_keys, warnings)
    detail = write_shape_layer(rig, key_action, DETAIL, plan.detail)
    micro = write_shape_layer(rig, key_action, MICRO, plan.micro)
    record_micro_layers(rig, key_action[TAKE], micro, plan.micro_components, plan.micro_events)
    hold_other_takes_keys(key, key_action, plan.timing.frame_start)
    object_action = key_face_found(rig, plan, take, warnings)
    armature = armature_of(rig)
    if plan.bone_rotations and armature is not None:
        pose_action = take_action(armature, f"{armature.name} Pose", take, warnings)
        write_bone_channels(armature, pose_action, plan.keyed_frames, plan.bone_rotations, plan.bone_locations)
    elif plan.head_euler is not None:
        rig.rotation_mode = "XYZ"
        for axis in range(3):
            curve = ensure_fcurve(object_action, rig, "rotation_euler", axis)
            write_keys(curve, plan.keyed_frames, plan.head_euler[:, axis], "LINEAR")
    else:  # an earlier bake's head rotation is MXR's own: it must not keep animating this take
        remove_fcurves(object_action, rig, ["rotation_euler"], indices=(0, 1, 2))
    rig["mxr_source"] = source_path
    return BakeResult(plan.frame_count, int(plan.face_found.sum()), list(plan.shape_keys), warnings, detail, micro,
                      plan.timing.frame_start, plan.last_frame, plan.events)


def write_shape_key_values(rig: bpy.types.Object, action: bpy.types.Action, frames: np.ndarray,
                           values: dict[str, np.ndarray], warnings: list[str]) -> None:
    """Key each shape key named in ``values`` (name -> (n,)) at ``frames`` (n,) in ``action``."""
    key = rig.data.shape_keys
    for name, per_frame in values.items():
        block = key.key_blocks.get(name)
        if block is None:
            warnings.append(f"shape key '{name}' is missing on {rig.name}: not keyed")
            continue
        write_keys(ensure_fcurve(action, key, block.path_from_id("value")), frames, per_frame, "LINEAR")
    warnings += driven_paths_warning(key, list(values))


def write_bone_channels(armature: bpy.types.Object, action: bpy.types.Action, frames: np.ndarray,
                        rotations: dict[str, np.ndarray], locations: dict[str, np.ndarray]) -> None:
    """Key pose bones' quaternions (bone -> (n, 4)) and locations (bone -> (n, 3)) at ``frames`` (n,)."""
    for channel, per_bone in (("rotation_quaternion", rotations), ("location", locations)):
        for bone, values in per_bone.items():
            path = armature.pose.bones[bone].path_from_id(channel)
            for axis in range(values.shape[1]):
                write_keys(ensure_fcurve(action, armature, path, axis), frames, values[:, axis], "LINEAR")


def write_shape_layer(rig: bpy.types.Object, action: bpy.types.Action, record: str, layer: ShapeLayer) -> list[str]:
    """Replace the take's per-take keys of one kind (``record``: ``DETAIL`` or ``MICRO``; shape
    keys and their curves in its ``action``) with ``layer``'s. Returns the new keys' names."""
    key = rig.data.shape_keys
    remove_fcurves(action, key, [f'key_blocks["{name}"].value' for name in take_keys(action, record)])
    offsets = layer.offsets_m if len(layer.labels) else np.zeros((0, len(rig.data.vertices), 3))
    names = replace_take_keys(rig, action, record, layer.labels, offsets)
    for name, (frames, values) in zip(names, layer.curves):
        write_keys(ensure_fcurve(action, key, key.key_blocks[name].path_from_id("value")), frames, values, "LINEAR")
    return names


def key_face_found(rig: bpy.types.Object, plan: BakePlan, take: TakeName, warnings: list[str]) -> bpy.types.Action:
    """The 0/1 ``mxr_face_found`` property on every take frame (constant interpolation), in the
    take's action on the rig object. -> that action."""
    rig[FACE_FOUND] = int(plan.face_found[0])
    object_action = take_action(rig, f"{rig.name} Head", take, warnings)
    write_keys(ensure_fcurve(object_action, rig, f'["{FACE_FOUND}"]'), plan.scene_frames,
               plan.face_found.astype(np.float64), "CONSTANT")
    return object_action


def apply_scene_time(scene: bpy.types.Scene, plan: BakePlan) -> list[str]:
    """The scene's rate set to the take's if the plan matches the take, and its end moved to hold
    the take if it ends earlier; a warning for each change (the scene is the user's)."""
    warnings = []
    timing = plan.timing
    if timing.match_take:
        before = scene.render.fps / scene.render.fps_base
        scene.render.fps = max(1, round(timing.scene_fps))
        scene.render.fps_base = scene.render.fps / timing.scene_fps
        if not np.isclose(before, timing.scene_fps):
            warnings.append(f"the scene now runs at the take's {timing.scene_fps:g} frames/s (it was {before:g})")
    if plan.last_frame > scene.frame_end:
        warnings.append(f"the scene's end moved from frame {scene.frame_end} to {plan.last_frame} to hold the take")
        scene.frame_end = plan.last_frame
    return warnings


def driven_paths_warning(key: bpy.types.Key, names: list[str]) -> list[str]:
    """Drivers override F-curves: say which baked keys a (user's) driver hides."""
    if key.animation_data is None:
        return []
    driven = {driver.data_path for driver in key.animation_data.drivers}
    blocks = [key.key_blocks.get(name) for name in names]
    hidden = [block.name for block in blocks if block is not None and block.path_from_id("value") in driven]
    return [f"shape keys driven by your drivers (bake hidden, drivers kept): {', '.join(hidden)}"] if hidden else []
