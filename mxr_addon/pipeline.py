"""The steps operators and batch jobs share: import the built-in head or a FLAME rig, bake a take
file, switch a rig to another take baked onto it.

Stateless functions over a scene, so the operators stay thin and ``batch.py`` runs the same
code headless. Each step loads and checks its input before creating anything, so bad input
leaves the scene untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import bpy
import numpy as np

from ..models.flame import EXPRESSION_COMPONENTS, FlameFileError
from ..models.head_model import HeadModel
from ..models.flame_embedding import default_registration_path, load_landmark_embedding
from ..models.bake_plan import BakePlan, Progress, TimeMapping, plan_flame_bake, plan_head_bake
from ..models.blender_frame import head_to_blender
from ..models.retarget import SMOOTHING_S, estimate_flame_identity
from ..ops.errors import MxrError
from ..ops.take import Take, load_take
from .arkit_bake import bake_arkit_take
from .bake import BakeResult, check_rig, scene_time, write_bake
from .camera import FaceOnRig, add_reference_video
from .flatten import unmute_flattened_strips
from .flame_rig import (FLAME_LANDMARKS, FLAME_PATH, armature_of, bone_rest_axes, build_flame_rig, is_flame_rig,
                        rig_expression_count, rig_identity)
from .heads import builtin_head, flame_model, head_named
from .markers import mark_micro_events
from .micro_layers import mark_layers, place_tuned_markers, show_layers_of
from .rig import build_rig, is_rig, rotation_pivot
from .takes import RigTake, TakeName, assign_take


def import_builtin_head(scene: bpy.types.Scene, collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    """A new rig of the built-in open head, linked into ``collection`` (default: the scene's)."""
    return build_rig(builtin_head(), collection or scene.collection)


def import_flame(
    scene: bpy.types.Scene,
    flame_path: Path,
    *,
    expressions: int = EXPRESSION_COMPONENTS,
    identity_components: int = 0,
    identity_from_take: Path | None = None,
    identity_as_keys: bool = False,
    landmarks_path: Path | None = None,
    collection: bpy.types.Collection | None = None,
) -> bpy.types.Object:
    """A FLAME rig from the user's file (see ``flame_rig``); returns its mesh object.

    ``expressions`` leading expression components become ``Exp`` keys (1..100).
    ``identity_components`` identity coefficients are kept: the template's (zeros), or, with
    ``identity_from_take`` (a take file), fitted to the performer's neutral face
    (``estimate_flame_identity``), which needs the landmark registration. They are baked into
    the rest mesh, or become ``Shape`` keys set to those values with ``identity_as_keys``.
    ``landmarks_path``: the registration (default: ``scripts/flame_correspondence.py``'s output
    next to the FLAME file, if there); a rig without one imports, but cannot be baked onto.
    Everything is read and checked before anything is created.
    """
    flame_path = Path(flame_path)
    model = flame_model(flame_path)
    if not 1 <= expressions <= len(model.expression_basis):
        raise FlameFileError(f"expressions must be 1..{len(model.expression_basis)}, got {expressions}")
    if not 0 <= identity_components <= len(model.shape_basis):
        raise FlameFileError(f"identity components must be 0..{len(model.shape_basis)}, got {identity_components}")
    if landmarks_path is None and default_registration_path(flame_path).is_file():
        landmarks_path = default_registration_path(flame_path)
    identity = np.zeros(identity_components)
    if identity_from_take is not None:
        take = load_take(Path(identity_from_take))
        if landmarks_path is None:
            raise FlameFileError("fitting the identity to a take needs the landmark registration: run "
                                 f"scripts/flame_correspondence.py {flame_path}")
        landmarks = load_landmark_embedding(landmarks_path, model.vertex_count)
        identity = estimate_flame_identity(model, landmarks, take.neutral_mm, identity_components)
    elif landmarks_path is not None:
        load_landmark_embedding(landmarks_path, model.vertex_count)  # refuse a wrong file now, not at bake time
    return build_flame_rig(
        model, collection or scene.collection, bpy.context.view_layer, expressions=expressions, identity=identity,
        identity_as_keys=identity_as_keys, flame_path=flame_path.resolve(),
        landmarks_path=None if landmarks_path is None else Path(landmarks_path).resolve(),
    )


@dataclass
class TakeBake:
    rig: bpy.types.Object
    result: BakeResult
    camera: bpy.types.Object | None
    events_marked: int  # the take's micro events, as timeline markers (see ``markers``)


@dataclass
class PreparedBake:
    """A take and the rig it goes onto, read from the scene: ``compute`` makes the bake plan from
    them with numpy alone, so it may run off Blender's main thread (progress, Esc) while the scene
    is not touched; ``finish_take_bake`` then writes it, on the main thread."""

    take_path: Path
    take: Take
    timing: TimeMapping
    rig: bpy.types.Object | None  # None: a new head is built when the plan is written
    head: HeadModel | None  # the rig's head (None for a FLAME rig)
    compute: Callable[[Progress | None], BakePlan]
    key_rotation: bool
    key_detail: bool
    smoothing_s: float  # how far neighbouring frames' units are solved together


def prepare_take_bake(scene: bpy.types.Scene, take_path: Path, rig: bpy.types.Object | None = None, *,
                      key_rotation: bool = True, key_detail: bool = True, match_take: bool = False,
                      slowdown: float = 1.0, frame_start: int | None = None,
                      smoothing_s: float = SMOOTHING_S) -> PreparedBake:
    """Load ``take_path`` (MxrError if missing or corrupt) and read what baking it onto ``rig``
    needs from the scene (see ``bake_take_file``; ``frame_start``: the scene frame the take starts
    at, the scene's start if None); nothing is changed."""
    take = load_take(Path(take_path))
    timing = scene_time(scene, take, match_take=match_take, slowdown=slowdown, frame_start=frame_start)
    options = {"key_rotation": key_rotation, "key_detail": key_detail}
    if is_flame_rig(rig):
        model = flame_model(Path(rig[FLAME_PATH]))
        if not rig[FLAME_LANDMARKS]:
            raise FlameFileError(f"{rig.name} has no landmark registration: run scripts/flame_correspondence.py "
                                 f"{rig[FLAME_PATH]} and import the FLAME rig again")
        landmarks = load_landmark_embedding(Path(rig[FLAME_LANDMARKS]), model.vertex_count)
        identity, expressions, bone_rest = rig_identity(rig), rig_expression_count(rig), bone_rest_axes(armature_of(rig))
        return PreparedBake(Path(take_path), take, timing, rig, None, lambda on_progress: plan_flame_bake(
            model, landmarks, identity, expressions, bone_rest, take, timing, on_progress=on_progress,
            smoothing_s=smoothing_s, **options), key_rotation, key_detail, smoothing_s)
    head = head_named(str(rig["mxr_head"])) if is_rig(rig) else builtin_head()
    if is_rig(rig):
        check_rig(rig, head)
    return PreparedBake(Path(take_path), take, timing, rig if is_rig(rig) else None, head,
                        lambda on_progress: plan_head_bake(head, take, timing, on_progress=on_progress,
                                                           smoothing_s=smoothing_s, **options),
                        key_rotation, key_detail, smoothing_s)


def finish_take_bake(scene: bpy.types.Scene, prepared: PreparedBake, plan: BakePlan, *,
                     reference_video: bool = True) -> TakeBake:
    """Write ``plan`` (``prepared.compute``'s) into the scene in one pass: the rig (built if
    there was none), its take's actions, markers, micro layers, the reference camera."""
    take, rig = prepared.take, prepared.rig
    if rig is None:
        rig = build_rig(prepared.head, scene.collection)
    result = write_bake(scene, rig, plan, TakeName.of(take, prepared.take_path), take.source_path)
    record_bake_options(rig, prepared)
    marked = mark_micro_events(scene, rig, result.events)
    place_tuned_markers(scene, rig)
    camera = None
    if reference_video:
        face = None  # a FLAME head turns on its neck bone: framed from the front
        if prepared.head is not None:
            face = FaceOnRig(float(plan.alignment.scale[0]),
                             head_to_blender(plan.alignment.translation[0]) - rotation_pivot(prepared.head))
        camera, warnings = add_reference_video(scene, rig, take, prepared.timing, face, prepared.key_rotation)
        result.warnings += warnings
    return TakeBake(rig, result, camera, marked)


BAKE_OPTIONS = "mxr_bake"  # on a take's shape-key action: how it was baked (``record_bake_options``)


def record_bake_options(rig: bpy.types.Object, prepared: PreparedBake) -> None:
    """Keep on the take's shape-key action where its frames landed and what was keyed, so that the
    take can be baked again as it was and scene frames read as take frames (``baked_timing``)."""
    timing = prepared.timing
    rig.data.shape_keys.animation_data.action[BAKE_OPTIONS] = {
        "frame_start": timing.frame_start, "scene_fps": timing.scene_fps, "slowdown": timing.slowdown,
        "match_take": timing.match_take, "key_rotation": prepared.key_rotation, "key_detail": prepared.key_detail,
        "smoothing_s": prepared.smoothing_s}


def baked_timing(rig: bpy.types.Object) -> tuple[TimeMapping, dict] | None:
    """Where the take ``rig`` plays landed on the scene, and the options it was baked with
    (``prepare_take_bake``'s), from ``record_bake_options``; None for a take baked before they were kept."""
    key = rig.data.shape_keys if rig.type == "MESH" else None
    action = key.animation_data.action if key is not None and key.animation_data is not None else None
    if action is None or BAKE_OPTIONS not in action:
        return None
    options = action[BAKE_OPTIONS].to_dict()
    timing = TimeMapping(int(options["frame_start"]), float(options["scene_fps"]), float(options["slowdown"]),
                         bool(options["match_take"]))
    return timing, {"key_rotation": bool(options["key_rotation"]), "key_detail": bool(options["key_detail"]),
                    "match_take": timing.match_take, "slowdown": timing.slowdown, "frame_start": timing.frame_start,
                    "smoothing_s": float(options.get("smoothing_s", 0.0))}  # bakes before it was kept: none


def bake_take_file(
    scene: bpy.types.Scene,
    take_path: Path,
    rig: bpy.types.Object | None = None,
    *,
    key_rotation: bool = True,
    key_detail: bool = True,
    reference_video: bool = True,
    match_take: bool = False,
    slowdown: float = 1.0,
    frame_start: int | None = None,
    smoothing_s: float = SMOOTHING_S,
) -> TakeBake:
    """Load ``take_path`` (MxrError if missing or corrupt) and bake it onto ``rig``.

    Without a rig, the built-in head is imported. All or nothing: the take is loaded and the whole
    bake computed (``models/bake_plan.py``) before anything is created or changed, so a bad take
    leaves the scene as it was. A FLAME rig reloads its model and registration from the paths it
    stores. The take's actions are its own (``takes``): a re-bake of the same file replaces them,
    another take's are kept. ``match_take``: set the scene's rate to the take's (else the take
    plays in real time at the scene's rate); ``slowdown``: slow motion, scene seconds per take second;
    ``frame_start``: the scene frame the take starts at (the scene's start if None); ``smoothing_s``:
    how far neighbouring frames' units are solved together (``retarget.SMOOTHING_S``; 0: each alone).
    """
    prepared = prepare_take_bake(scene, take_path, rig, key_rotation=key_rotation, key_detail=key_detail,
                                 match_take=match_take, slowdown=slowdown, frame_start=frame_start,
                                 smoothing_s=smoothing_s)
    return finish_take_bake(scene, prepared, prepared.compute(None), reference_video=reference_video)


def bake_arkit_file(scene: bpy.types.Scene, take_path: Path, character: bpy.types.Object, *,
                    match_take: bool = False, slowdown: float = 1.0, smoothing_s: float = SMOOTHING_S) -> TakeBake:
    """Load ``take_path`` (MxrError if missing or corrupt) and bake it onto ``character``'s own
    ARKit-named shape keys through the built-in head (``arkit_bake``); mark its micro events."""
    if is_rig(character) or is_flame_rig(character):
        raise MxrError(f"{character.name} is one of MXR's heads: use Bake Take, which also keys its detail "
                       "and micro-expression layers")
    take = load_take(Path(take_path))
    result = bake_arkit_take(scene, character, builtin_head(), take, take_path, match_take=match_take,
                             slowdown=slowdown, smoothing_s=smoothing_s)
    return TakeBake(character, result, None, mark_micro_events(scene, character, result.events))


def switch_take(scene: bpy.types.Scene, rig: bpy.types.Object, take: RigTake) -> list[str]:
    """Show ``take`` on ``rig`` (one of ``takes.rig_takes(rig)``): its actions assigned (the others
    kept), its micro layers and their markers back, and the NLA strips a flatten muted playing
    again. -> warnings."""
    warnings = assign_take(take)
    unmute_flattened_strips(rig)
    show_layers_of(rig, take.name.identity)
    mark_layers(scene, rig)
    return warnings
