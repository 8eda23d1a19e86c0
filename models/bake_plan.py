"""The bake as data: everything a bake writes into Blender, computed from a take and a head
without Blender, before the scene is touched.

A bake is all or nothing: the take is checked and every value solved here, so a take that
cannot be baked (no face, a broken neutral) fails with ``MxrError`` before anything changes; the
Blender side (``mxr_addon/bake.py``) then writes a ``BakePlan`` in one pass.

Time: take frame k was shown at ``take.timestamps_s[k]``; it lands on the scene's timeline at
``frame_start + (t_k - t_0) * rate * slowdown`` scene frames (``TimeMapping``), at the scene's
own rate (real time, keys between frames where the rates differ) unless the scene is matched to
the take. Variable frame rate clips thus keep their timing; a high-speed clip plays slowed down
by ``slowdown``.

Values: the open head's units (``retarget.solve_units``) with the head's rotation as XYZ Euler
angles on the rig object; FLAME's expressions, pose correctives and bone channels
(``flame_channels``); both with the per-take detail shapes and one shape per micro-expression,
in Blender's axes and metres (``blender_frame``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..ops.errors import MxrError
from ..ops.take import MicroEvent, Take, frame_seconds
from .correspondence import LandmarkEmbedding
from .detail import DetailLayer, DetailSpread, detail_layer, head_residual, movable_vertices
from .flame import FlameModel, expression_names, pose_features, rodrigues, shaped_vertices, skinning_regions
from .head_model import HeadModel
from .micro_keys import MicroComponent, components_mm, micro_components
from .retarget import (SMOOTHING_S, FlameLandmarks, displacement_on, flame_rest_alignment, frame_chunks,
                       neutral_to_head, retarget_flame, solve_units)
from .similarity import Similarities
from .blender_frame import AXES, continuous_eulers_xyz, continuous_quaternions, head_to_blender, orthonormalised

FLAME_BONES = ("FLAME_root", "neck", "jaw", "eye.L", "eye.R")  # FLAME's joint order, as the rig names its bones
FLAME_POSE_KEYS = tuple(f"Pose{index:03d}" for index in range(36))  # FLAME's pose_features order
DETAIL_PREFIX = "MXR_Detail"  # a take's detail keys: MXR_Detail00, MXR_Detail01, ...
MICRO_PREFIX = "MXR_Micro"  # a take's micro keys: "MXR_Micro <region> <apex scene frame>"
SLOWDOWN_RANGE = (0.01, 100.0)


@dataclass(frozen=True)
class TimeMapping:
    """Where take time lands on the scene's timeline (see the module docstring)."""

    frame_start: int  # the scene frame of the take's first frame
    scene_fps: float  # the scene's rate (frames per second), or the take's when ``match_take``
    slowdown: float = 1.0  # scene seconds per take second (8: a 200 fps clip over 25 fps frames)
    match_take: bool = False  # set the scene's rate to the take's (the reference video then lines up)

    @classmethod
    def for_take(cls, take: Take, frame_start: int, scene_fps: float, *, match_take: bool = False,
                 slowdown: float = 1.0) -> "TimeMapping":
        if not SLOWDOWN_RANGE[0] <= slowdown <= SLOWDOWN_RANGE[1]:
            raise MxrError(f"slow motion must be {SLOWDOWN_RANGE[0]:g}-{SLOWDOWN_RANGE[1]:g}x, got {slowdown:g}")
        return cls(int(frame_start), float(take.fps if match_take else scene_fps), float(slowdown), match_take)

    def scene_frames(self, seconds: np.ndarray) -> np.ndarray:
        """Seconds since the take's first frame (n,) -> scene frames (n,) float64."""
        return self.frame_start + np.asarray(seconds, np.float64) * self.scene_fps * self.slowdown

    def take_frame(self, take: Take, scene_frame: float) -> int:
        """The take frame keyed nearest ``scene_frame`` (the inverse of ``scene_frames`` over the take's
        frame times, as a bake keys them), within the take."""
        shown = self.scene_frames(frame_seconds(take)[0])  # (T,) scene frames, increasing
        return int(np.argmin(np.abs(shown - scene_frame)))


@dataclass(frozen=True)
class EventOnScene:
    """A micro event's onset, apex and offset in scene frames (float: the mapping need not land
    on whole frames)."""

    region: str
    peak_mm: float
    onset: float
    apex: float
    offset: float
    layered: bool = True  # it has a micro key of its own; False: its motion stays in the macro layer


@dataclass
class ShapeLayer:
    """Per-take shape keys a bake creates (detail or micro): shapes and curves."""

    labels: list[str]  # the keys' names (Blender may suffix them on a clash)
    offsets_m: np.ndarray  # (N, V, 3) Blender metres from the Basis
    curves: list[tuple[np.ndarray, np.ndarray]]  # per key: (scene frames (n,), values (n,))


@dataclass
class BakePlan:
    """Everything one bake writes, by datablock. Curves are keyed at ``keyed_frames`` unless they
    carry their own frames."""

    frame_count: int  # take frames
    scene_frames: np.ndarray  # (T,) float64 where each take frame lands
    face_found: np.ndarray  # (T,) bool, the frames that are keyed
    shape_keys: dict[str, np.ndarray]  # expression (and FLAME pose) key -> (n,) values at keyed_frames
    head_euler: np.ndarray | None  # (n, 3) XYZ radians on the rig object, None: not keyed (removed)
    bone_rotations: dict[str, np.ndarray]  # FLAME bone -> (n, 4) quaternion (w, x, y, z), bone rest frame
    bone_locations: dict[str, np.ndarray]  # FLAME bone -> (n, 3) metres, bone rest frame (joint shift)
    detail: ShapeLayer
    micro: ShapeLayer
    micro_components: list[MicroComponent]  # one per micro key, in ``micro.labels``' order
    micro_events: list[EventOnScene]  # the same events, on the scene's timeline
    events: list[EventOnScene]  # every micro event of the take (the timeline markers)
    timing: TimeMapping
    alignment: Similarities  # the performer's canonical mm -> the head's rest metres and axes
    warnings: list[str] = field(default_factory=list)

    @property
    def keyed_frames(self) -> np.ndarray:
        return self.scene_frames[self.face_found]

    @property
    def last_frame(self) -> int:
        """The last scene frame the take reaches."""
        return int(np.ceil(self.scene_frames[-1] - 1e-6))


MAX_DEFORMATION_MM = 500.0  # no face moves a landmark half a metre from its neutral: a take that says so is broken


def check_bakeable(take: Take) -> None:
    """MxrError for a take that loads but cannot be baked; nothing has been changed yet."""
    if take.frame_count == 0:
        raise MxrError(f"the take of {take.source_path} has no frames: nothing to bake")
    if not np.all(np.isfinite(take.neutral_mm)):
        raise MxrError(f"the take of {take.source_path} has no usable neutral face (non-finite values): "
                       "reconstruct the video again")
    if not np.any(take.valid):
        raise MxrError(f"no frame of {take.source_path} has a face: nothing to bake")
    largest = max((float(np.nanmax(np.abs(layer[frames]), initial=0.0)) for layer in (take.macro_mm, take.micro_mm,
                   take.detail_mm) for frames in frame_chunks(take.frame_count)), default=0.0)
    if not largest <= MAX_DEFORMATION_MM:
        raise MxrError(f"the take of {take.source_path} moves the face by {largest:.3g} mm, beyond any face: "
                       "nothing to bake (the take is damaged; reconstruct the video again)")


MAX_SCENE_FRAME = 1_048_574  # Blender's last frame (MAXFRAME)


def check_fits_timeline(take: Take, timing: TimeMapping) -> None:
    """MxrError for a take that would run past Blender's last frame where ``timing`` puts it
    (absurd frame times, or a slow motion too slow for a long take); nothing has been changed yet."""
    last = float(timing.scene_frames(frame_seconds(take)[0])[-1])
    if not last <= MAX_SCENE_FRAME:
        raise MxrError(f"the take of {take.source_path} would run to scene frame {last:.0f}, past Blender's last "
                       f"frame {MAX_SCENE_FRAME}: its frame times are broken, or the slow motion is too slow")


@dataclass(frozen=True)
class TakeDeformation:
    """The take's deformation less the micro components that get keys of their own, (T, 478, 3)
    mm, made a slice of frames at a time: the solves read it in chunks, so a bake's memory does
    not grow with the clip beyond the take itself and its results."""

    take: Take
    components: list[MicroComponent]

    def __len__(self) -> int:
        return self.take.frame_count

    def __getitem__(self, frames: slice) -> np.ndarray:
        take = self.take
        total = take.macro_mm[frames].astype(np.float64)  # (n, 478, 3) mm, summed in place: no temporaries
        total += take.micro_mm[frames]
        total += take.detail_mm[frames]
        total -= components_mm(self.components, take.frame_count, frames)
        return total


# A bake's progress: (stage, fraction 0..1 of it), called from the solves' chunks; it may raise to
# stop the bake (Esc), which changes nothing as a plan is only data.
Progress = Callable[[str, float], None]
SOLVING, DETAIL = "solving", "detail"  # the stages a plan reports (a FLAME plan: solving only)


def _stage(on_progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    """A solve's ``on_chunk(done, total)`` reporting ``stage`` to ``on_progress``."""
    return None if on_progress is None else (lambda done, total: on_progress(stage, done / max(total, 1)))


def carried_events(take: Take, components: list[MicroComponent]) -> list[MicroEvent]:
    """The take's micro-expressions that get no key of their own (none of ``components``): the units
    carry them, so their frames are not smoothed (they keep their speed)."""
    layered = {_span(component.event) for component in components}
    return [event for event in take.events if _span(event) not in layered]


def _span(event: MicroEvent) -> tuple[int, int, int, str]:
    """What tells one event from another (events are not hashable): a set lookup, not n x n comparisons."""
    return event.onset_frame, event.apex_frame, event.offset_frame, event.region


def event_frames(events: list[MicroEvent], frame_count: int) -> np.ndarray:
    """(T,) bool: the frames within the events' spans (onset to offset, inclusive)."""
    inside = np.zeros(frame_count, bool)
    for event in events:
        inside[max(event.onset_frame, 0):event.offset_frame + 1] = True
    return inside


def plan_head_bake(head: HeadModel, take: Take, timing: TimeMapping, *, key_rotation: bool = True,
                   key_detail: bool = True, key_micro: bool = True, smoothing_s: float = SMOOTHING_S,
                   on_progress: Progress | None = None) -> BakePlan:
    """The bake of ``take`` onto a rig built from ``head`` (MXR's open head or a built-in one);
    ``smoothing_s``: how far neighbouring frames' units are solved together (``retarget.SMOOTHING_S``,
    0: each frame alone)."""
    check_bakeable(take)
    check_fits_timeline(take, timing)
    components = micro_components(take) if key_micro else []
    deformation = TakeDeformation(take, components)
    solve = solve_units(head, deformation, take.neutral_mm, on_chunk=_stage(on_progress, SOLVING),
                        seconds=np.asarray(take.timestamps_s, np.float64), smoothing_s=smoothing_s,
                        untied=event_frames(carried_events(take, components), take.frame_count))
    face_found = _face_frames(take, solve.coefficients)
    spread = (DetailSpread.build(head.vertices, head.landmarks, movable_vertices(head.vertex_count, head.regions))
              if key_detail or components else None)
    layer = (detail_layer(spread, head_residual(head, deformation, take.neutral_mm, solve, _stage(on_progress, DETAIL)))
             if key_detail else None)
    head_euler = continuous_eulers_xyz(AXES @ orthonormalised(take.head_rotation[face_found]) @ AXES.T) \
        if key_rotation else None
    shape_keys = dict(zip(head.expression_names, solve.coefficients[face_found].T))
    return _plan(take, timing, face_found, shape_keys, head_euler, {}, {}, layer, components, spread,
                 neutral_to_head(head, take.neutral_mm))


def plan_flame_bake(model: FlameModel, landmarks: LandmarkEmbedding, identity: np.ndarray, expressions: int,
                    bone_rest: np.ndarray, take: Take, timing: TimeMapping, *, key_rotation: bool = True,
                    joints: tuple[int, ...] = (2, 3, 4), key_detail: bool = True, key_micro: bool = True,
                    smoothing_s: float = SMOOTHING_S, on_progress: Progress | None = None) -> BakePlan:
    """The bake of ``take`` onto a FLAME rig built from ``model`` with ``identity`` (S',) and its
    first ``expressions`` components; ``bone_rest`` (5, 3, 3): each bone's rest axes in armature
    space (``FLAME_BONES`` order). ``joints``: the FLAME joints solved from the landmarks (jaw,
    eyes); the neck gets the take's head rotation (the neck base stays with the body). The detail
    layer's residual comes with the solve (one read of the take), so progress reports ``SOLVING``
    only. ``smoothing_s``: as ``plan_head_bake``'s (``retarget.retarget_flame``)."""
    check_bakeable(take)
    check_fits_timeline(take, timing)
    landmark_rig = FlameLandmarks.build(model, landmarks, identity, expressions)
    components = micro_components(take) if key_micro else []
    deformation = TakeDeformation(take, components)
    solved = retarget_flame(landmark_rig, deformation, take.neutral_mm, joints=joints,
                            on_chunk=_stage(on_progress, SOLVING), residual=key_detail,
                            seconds=np.asarray(take.timestamps_s, np.float64), smoothing_s=smoothing_s,
                            untied=event_frames(carried_events(take, components), take.frame_count))
    face_found = _face_frames(take, solved.expression)
    rotations = rodrigues(solved.pose[face_found])  # (n, 5, 3, 3) FLAME axes, local
    if key_rotation:
        rotations[:, 1] = orthonormalised(take.head_rotation[face_found])  # canonical -> camera = FLAME axes
    channels = flame_channels(model, bone_rest, solved.expression[face_found], rotations)
    spread, layer = None, None
    if key_detail or components:
        rest = shaped_vertices(model, identity, np.zeros(0))  # (V, 3) the rig's rest face, FLAME metres
        spread = DetailSpread.build(rest, landmarks, movable_vertices(model.vertex_count, skinning_regions(model)))
    if key_detail:
        layer = detail_layer(spread, solved.residual)
    return _plan(take, timing, face_found, channels.shape_keys, None, channels.rotations, channels.locations, layer,
                 components, spread, flame_rest_alignment(landmark_rig, take.neutral_mm))


def _face_frames(take: Take, solved: np.ndarray) -> np.ndarray:
    """(T,) bool: the frames with a face, a solve and a usable head rotation (a frame whose
    rotation is broken is left out, not keyed with garbage)."""
    rotation_ok = np.all(np.isfinite(take.head_rotation), axis=(1, 2))
    return np.asarray(take.valid, bool) & np.all(np.isfinite(solved), axis=1) & rotation_ok


def _plan(take: Take, timing: TimeMapping, face_found: np.ndarray, shape_keys: dict[str, np.ndarray],
          head_euler: np.ndarray | None, bone_rotations: dict, bone_locations: dict, layer: DetailLayer | None,
          components: list[MicroComponent], spread: DetailSpread | None, alignment: Similarities) -> BakePlan:
    """The parts every bake shares: time, face frames, detail, micro keys, events and warnings."""
    seconds, warnings = frame_seconds(take)
    frames = timing.scene_frames(seconds)  # (T,)
    if not face_found.any():
        raise MxrError(f"no frame of {take.source_path} could be solved: nothing to bake")
    missing = take.frame_count - int(face_found.sum())
    if missing:
        warnings.append(f"no face in {missing} of {take.frame_count} frames: no keys there (the curves interpolate "
                        "across)")
    unusable = int((np.asarray(take.valid, bool) & ~np.all(np.isfinite(take.head_rotation), axis=(1, 2))).sum())
    if unusable:
        warnings.append(f"{unusable} frames with a face have no usable head rotation: left unkeyed")
    detail = ShapeLayer([], np.zeros((0, 0, 3)), [])
    if layer is not None:
        detail = ShapeLayer([f"{DETAIL_PREFIX}{index:02d}" for index in range(len(layer.shapes))],
                            head_to_blender(layer.shapes),
                            [(frames[face_found], weights) for weights in layer.weights[face_found].T])
    layered = [component.event for component in components]
    events = [dataclasses.replace(_on_scene(event.region, event.peak_mm, frames, event.onset_frame, event.apex_frame,
                                            event.offset_frame), layered=event in layered) for event in take.events]
    micro_events = [_on_scene(c.event.region, c.event.peak_mm, frames, c.event.onset_frame, c.event.apex_frame,
                              c.event.offset_frame) for c in components]
    micro = ShapeLayer([f"{MICRO_PREFIX} {event.region} {round(event.apex)}" for event in micro_events],
                       np.zeros((0, 0, 3)), [])
    if components:
        patterns_m = displacement_on(alignment, np.stack([c.pattern_mm for c in components]))  # (E, 478, 3)
        micro.offsets_m = head_to_blender(spread.apply(patterns_m[:, spread.sources]))  # (E, V, 3)
        for component in components:
            span = np.zeros(take.frame_count, bool)
            span[component.first_frame:component.last_frame + 1] = True
            keyed = span & np.isfinite(component.weights)
            micro.curves.append((frames[keyed], component.weights[keyed]))
    return BakePlan(take.frame_count, frames, face_found, shape_keys, head_euler, bone_rotations, bone_locations,
                    detail, micro, components, micro_events, events, timing, alignment, warnings)


def _on_scene(region: str, peak_mm: float, frames: np.ndarray, onset: int, apex: int, offset: int) -> EventOnScene:
    return EventOnScene(region, float(peak_mm), float(frames[onset]), float(frames[apex]), float(frames[offset]))


@dataclass
class FlameChannels:
    """Per-frame values that pose a FLAME rig."""

    shape_keys: dict[str, np.ndarray]  # key name -> (n,) value
    rotations: dict[str, np.ndarray]  # bone -> (n, 4) quaternion (w, x, y, z), bone rest frame
    locations: dict[str, np.ndarray]  # bone -> (n, 3) metres, bone rest frame (the joint shift)


def flame_channels(model: FlameModel, bone_rest: np.ndarray, expression: np.ndarray,
                   rotations: np.ndarray) -> FlameChannels:
    """Channels for expression (n, E') and local joint rotations (n, 5, 3, 3) in FLAME axes, on a
    rig whose bones have rest axes ``bone_rest`` (5, 3, 3) in armature space.

    Shape keys: ``Exp`` = the coefficients, ``Pose`` = FLAME's (R - I) features. Bones: the
    rotation in each bone's rest frame, B^T (A R A^T) B, and the joint-shift location (I - R) d,
    d being how far the expression moves the joint (FLAME regresses its joints from the expressed
    mesh; Blender's bones keep their rest heads: see ``mxr_addon/flame_rig.py``).
    """
    expression = np.asarray(expression, dtype=np.float64)
    per_coefficient = np.einsum("jv,evc->ejc", model.joint_regressor, model.expression_basis[: expression.shape[1]])
    shift = head_to_blender(np.einsum("ejc,te->tjc", per_coefficient, expression))  # (n, 5, 3) Blender metres
    blender = AXES @ rotations @ AXES.T  # (n, 5, 3, 3) armature space
    shape_keys = dict(zip(expression_names(expression.shape[1]), expression.T))
    shape_keys.update(zip(FLAME_POSE_KEYS, pose_features(rotations).T))
    quaternions, locations = {}, {}
    for joint, bone in enumerate(FLAME_BONES):
        rest = bone_rest[joint]  # (3, 3) bone axes in armature space
        quaternions[bone] = continuous_quaternions(rest.T @ blender[:, joint] @ rest)  # (n, 4)
        translation = np.einsum("tab,tb->ta", np.eye(3) - blender[:, joint], shift[:, joint])  # (n, 3)
        locations[bone] = translation @ rest  # rest.T @ translation per frame
    return FlameChannels(shape_keys, quaternions, locations)
