"""Operators: thin wrappers that validate input, call pipeline services and report.

Errors a person can fix (missing or corrupt take, no engine Python, engine failure) arrive as
``MxrError`` and become ``self.report({'ERROR'}, ...)`` + ``{'CANCELLED'}``, never a traceback.
"""
# No `from __future__ import annotations`: bpy reads property annotations as real objects.
import hashlib
import os
import threading
from pathlib import Path

import bpy

from ..models.bake_plan import BakePlan
from ..models.retarget import SMOOTHING_S
from ..ops.errors import MxrError
from .arkit_bake import has_arkit_keys
from .engine_job import EngineJob, resolve_engine_python
from .flatten import flatten_shown_take, flatten_target
from .heads import builtin_head
from .pipeline import (PreparedBake, TakeBake, bake_arkit_file, bake_take_file, finish_take_bake, import_builtin_head,
                       import_flame, prepare_take_bake, switch_take)
from .preferences import ROOT_PACKAGE, engine_python_setting, flame_path_setting, remember_flame_path
from .rig import find_rig, is_rig
from .takes import has_takes, rig_takes


def _make_active(context: bpy.types.Context, obj: bpy.types.Object) -> None:
    context.view_layer.update()  # new objects reach the view layer's bases on the next sync
    if context.view_layer.objects.get(obj.name) is None:
        return
    for selected in context.selected_objects:
        selected.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj


def _report_bake(operator: bpy.types.Operator, baked: TakeBake) -> None:
    for warning in baked.result.warnings:
        operator.report({"WARNING"}, warning)
    result = baked.result
    operator.report(
        {"INFO"},
        f"MXR: baked {result.frames_keyed}/{result.frame_count} frames with a face onto "
        f"{baked.rig.name} over frames {result.first_frame}-{result.last_frame} ({len(result.keys)} shape keys, {len(result.detail_keys)} detail keys, "
        f"{len(result.micro_keys)} micro-expression keys, {baked.events_marked} micro events marked in the timeline)",
    )


class MXR_OT_import_head(bpy.types.Operator):
    """Add MXR's built-in open head (52 ARKit-named shape keys) to the scene"""

    bl_idname = "mxr.import_head"
    bl_label = "Import MXR Head"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            rig = import_builtin_head(context.scene, context.collection)
        except MxrError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        _make_active(context, rig)
        return {"FINISHED"}


class MXR_OT_import_flame(bpy.types.Operator):
    """Build a FLAME head rig (mesh, armature, expression / pose-corrective shape keys) from your
    own FLAME model file"""

    bl_idname = "mxr.import_flame"
    bl_label = "Import FLAME Rig"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(name="FLAME Model", subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_glob: bpy.props.StringProperty(default="*.pkl", options={"HIDDEN"})
    expressions: bpy.props.IntProperty(
        name="Expressions", default=100, min=1, max=100,
        description="Expression shape keys (FLAME's leading components); fewer keys play back faster")
    identity_components: bpy.props.IntProperty(
        name="Identity Components", default=0, min=0, max=300,
        description="Identity coefficients kept (the leading components); 0: the template's face")
    identity_take: bpy.props.StringProperty(
        name="Identity From Take", subtype="FILE_PATH",
        description="A take file whose performer's neutral face the identity is fitted to "
                    "(empty: FLAME's template identity)")
    identity_as_keys: bpy.props.BoolProperty(
        name="Identity As Shape Keys", default=False,
        description="Shape000.. keys set to the identity, instead of identity baked into the rest mesh")
    landmarks_path: bpy.props.StringProperty(
        name="Landmark Registration", subtype="FILE_PATH",
        description="scripts/flame_correspondence.py's output (empty: <model>_mxr_landmarks.npz next "
                    "to the model, if there); needed to bake takes onto the rig")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if not self.filepath:
            self.filepath = flame_path_setting(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        path = bpy.path.abspath(self.filepath or flame_path_setting(context))
        if not path:
            self.report({"ERROR"}, "no FLAME model file given (set one in MXR's preferences or pick one)")
            return {"CANCELLED"}
        try:
            rig = import_flame(
                context.scene, Path(path), expressions=self.expressions,
                identity_components=self.identity_components,
                identity_from_take=Path(bpy.path.abspath(self.identity_take)) if self.identity_take else None,
                identity_as_keys=self.identity_as_keys,
                landmarks_path=Path(bpy.path.abspath(self.landmarks_path)) if self.landmarks_path else None,
                collection=context.collection,
            )
        except MxrError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        remember_flame_path(context, path)
        _make_active(context, rig)
        if not rig["mxr_flame_landmarks"]:
            self.report({"WARNING"}, "no landmark registration found: the rig imports, but baking a take onto it "
                                     f"needs scripts/flame_correspondence.py {path}")
        return {"FINISHED"}


class _BakesATakeFile:
    """Mixin: an operator that asks for a take file (a file browser, unless ``filepath`` is given)
    and bakes it with ``bake``; an error a person can fix becomes an ERROR report."""

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        self._interactive = True  # a person is waiting: a long bake may go modal (``_BakesInBackground``)
        if self.filepath:
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not self.filepath:
            self.report({"ERROR"}, "no take file given")
            return {"CANCELLED"}
        try:
            status = self.bake(context, Path(bpy.path.abspath(self.filepath)))
        except MxrError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return status or {"FINISHED"}


class _Cancelled(Exception):
    """Raised in the planning thread at its next chunk once Esc was pressed."""


class _BakesInBackground:
    """Mixin: compute a bake plan in a thread (numpy only, ``pipeline.PreparedBake``) while Blender
    stays responsive, with its progress in the status bar; Esc stops it before anything is
    written, so the scene is as it was. The plan is written on the main thread when it is done.
    From a script (no person waiting: ``invoke`` was not called) the bake runs to its end at once."""

    def bake_prepared(self, context: bpy.types.Context, prepared: PreparedBake) -> set[str]:
        if not getattr(self, "_interactive", False) or context.window is None:
            return self.finish_bake(context, prepared, prepared.compute(None))
        self._prepared, self._progress, self._outcome = prepared, ("starting", 0.0), {}
        self._stop_requested = threading.Event()

        def on_progress(stage: str, fraction: float) -> None:
            if self._stop_requested.is_set():
                raise _Cancelled
            self._progress = (stage, fraction)

        def plan() -> None:
            try:
                self._outcome["plan"] = prepared.compute(on_progress)
            except _Cancelled:
                self._outcome["cancelled"] = True
            except MxrError as error:
                self._outcome["error"] = str(error)
            except Exception as error:  # noqa: BLE001 (a bug: reported, never left to die in a thread)
                self._outcome["error"] = f"the bake failed ({type(error).__name__}: {error}); nothing was changed"

        self._thread = threading.Thread(target=plan, name="MXR bake plan", daemon=True)
        self._thread.start()
        window_manager = context.window_manager
        self._timer = window_manager.event_timer_add(0.1, window=context.window)
        window_manager.progress_begin(0, 100)
        window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC":
            self._stop_requested.set()
        if event.type != "TIMER":
            return {"RUNNING_MODAL"} if event.type == "ESC" else {"PASS_THROUGH"}
        if self._thread.is_alive():
            stage, fraction = self._progress
            context.window_manager.progress_update(100.0 * fraction)
            stopping = ", stopping" if self._stop_requested.is_set() else " (Esc cancels)"
            context.workspace.status_text_set(f"MXR bake: {stage} {100 * fraction:.0f}%{stopping}")
            return {"RUNNING_MODAL"}
        self._end_modal(context)
        if "plan" in self._outcome:
            try:
                return self.finish_bake(context, self._prepared, self._outcome["plan"])
            except ReferenceError:  # the rig was deleted while the plan was computed
                self.report({"ERROR"}, "the MXR head was removed while the bake was computed: nothing was written")
            except MxrError as error:
                self.report({"ERROR"}, str(error))
        elif self._outcome.get("cancelled"):
            self.report({"WARNING"}, "MXR: bake cancelled, the scene is as it was")
        else:
            self.report({"ERROR"}, self._outcome.get("error", "the bake stopped"))
        return {"CANCELLED"}

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the modal run (a new or loaded file): stop the planning thread too."""
        self._stop_requested.set()
        self._end_modal(context)

    def _end_modal(self, context: bpy.types.Context) -> None:
        window_manager = context.window_manager
        window_manager.event_timer_remove(self._timer)
        window_manager.progress_end()
        context.workspace.status_text_set(None)


class _SmoothsUnits:
    """Mixin: how far neighbouring frames' units are solved together (``retarget.SMOOTHING_S``)."""

    smoothing: bpy.props.FloatProperty(
        name="Smoothing", default=SMOOTHING_S, min=0.0, max=1.0, soft_max=0.1, step=0.1, precision=3,
        unit="TIME_ABSOLUTE",
        description="Solve neighbouring frames' units together over about this long, so that a unit does not "
                    "flicker from frame to frame; 0 solves each frame alone. At 0.015 s a 4 Hz motion keeps "
                    "~0.85 of its size, slower ones all of it, and nothing lags")


class _PlacesATake:
    """Mixin: where the take lands on the scene's timeline (``bake_plan.TimeMapping``)."""

    match_take: bpy.props.BoolProperty(
        name="Match Scene to Take", default=False,
        description="Set the scene's frame rate to the take's, so the reference video lines up frame by frame "
                    "(off: the scene keeps its rate and the take plays in real time, keys between frames)")
    slowdown: bpy.props.FloatProperty(
        name="Slow Motion", default=1.0, min=0.01, max=100.0, soft_max=16.0,
        description="Scene seconds per second of the take: 8 plays a 200 fps clip over a 25 fps scene frame by frame")

    def timing(self) -> dict:
        return {"match_take": self.match_take, "slowdown": self.slowdown}


class MXR_OT_bake_take(_BakesATakeFile, _BakesInBackground, _PlacesATake, _SmoothsUnits, bpy.types.Operator):
    """Bake an MXR take file onto the active MXR head (a new head if there is none)"""

    bl_idname = "mxr.bake_take"
    bl_label = "Bake Take"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(name="Take", subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_glob: bpy.props.StringProperty(default="*.npz", options={"HIDDEN"})
    key_rotation: bpy.props.BoolProperty(name="Head Rotation", default=True,
                                         description="Key the head's rotation from the video")
    key_detail: bpy.props.BoolProperty(name="Detail", default=True,
                                       description="Key what the expressions cannot express as a few "
                                                   "per-take MXR_Detail shape keys")
    reference_video: bpy.props.BoolProperty(name="Reference Video", default=True,
                                            description="Show the source video behind the head in MXR's camera")

    def bake(self, context: bpy.types.Context, take_path: Path) -> set[str]:
        return self.bake_prepared(context, prepare_take_bake(
            context.scene, take_path, find_rig(context), key_rotation=self.key_rotation, key_detail=self.key_detail,
            smoothing_s=self.smoothing, **self.timing()))

    def finish_bake(self, context: bpy.types.Context, prepared: PreparedBake, plan: BakePlan) -> set[str]:
        baked = finish_take_bake(context.scene, prepared, plan, reference_video=self.reference_video)
        _make_active(context, baked.rig)
        _report_bake(self, baked)
        return {"FINISHED"}


class MXR_OT_bake_arkit(_BakesATakeFile, _PlacesATake, _SmoothsUnits, bpy.types.Operator):
    """Bake an MXR take onto the active mesh's own ARKit shape keys (eyeBlinkLeft, jawOpen, ... in
    the common spellings, or the keys its unit map names), through MXR's built-in head"""

    bl_idname = "mxr.bake_arkit"
    bl_label = "Bake onto ARKit Keys"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(name="Take", subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_glob: bpy.props.StringProperty(default="*.npz", options={"HIDDEN"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = context.active_object
        if obj is None or obj.type != "MESH" or is_rig(obj):
            cls.poll_message_set("Select your character: a mesh with ARKit-named shape keys (eyeBlinkLeft, jawOpen, ...)")
            return False
        try:
            found = has_arkit_keys(obj, builtin_head())
        except MxrError as error:
            cls.poll_message_set(str(error))
            return False
        if not found:
            cls.poll_message_set(f"{obj.name} has no ARKit-named shape keys (eyeBlinkLeft, jawOpen, ...): set its "
                                 "unit map (MXR panel, Your Rig)")
        return found

    def bake(self, context: bpy.types.Context, take_path: Path) -> None:
        character = context.active_object
        baked = bake_arkit_file(context.scene, take_path, character, smoothing_s=self.smoothing, **self.timing())
        for warning in baked.result.warnings:
            self.report({"WARNING"}, warning)
        result = baked.result
        self.report({"INFO"}, f"MXR: baked {result.frames_keyed}/{result.frame_count} frames with a face onto "
                              f"{len(result.keys)} ARKit shape keys of {character.name}, "
                              f"{baked.events_marked} micro events marked in the timeline")


_take_items: list[tuple[str, str, str]] = []  # Blender keeps no reference to a dynamic enum's strings: this does


def _takes_of_rig(self, context: bpy.types.Context) -> list[tuple[str, str, str]]:
    """The switch's choices: the takes baked onto the scene's MXR rig (identifier, name, identity)."""
    rig = find_rig(context)
    _take_items[:] = [(take.name.key, take.name.label, take.name.identity) for take in rig_takes(rig)] if rig else []
    return _take_items


class MXR_OT_switch_take(bpy.types.Operator):
    """Play another take baked onto the MXR head: its actions assigned, its micro-expression layers
    and markers back; the other takes' actions are kept as they are (NLA strips too)"""

    bl_idname = "mxr.switch_take"
    bl_label = "Switch Take"
    bl_options = {"REGISTER", "UNDO"}

    take: bpy.props.EnumProperty(name="Take", items=_takes_of_rig)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rig = find_rig(context)
        return rig is not None and has_takes(rig)

    def execute(self, context: bpy.types.Context) -> set[str]:
        rig = find_rig(context)
        chosen = next((take for take in rig_takes(rig) if take.name.key == self.take), None)
        if chosen is None:
            self.report({"ERROR"}, f"no take '{self.take}' on {rig.name}")
            return {"CANCELLED"}
        try:
            warnings = switch_take(context.scene, rig, chosen)
        except MxrError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        for warning in warnings:
            self.report({"WARNING"}, warning)
        return {"FINISHED"}


class MXR_OT_flatten_take(bpy.types.Operator):
    """Bake the take the MXR head (or the active baked character) plays, micro-expression tuning
    and playing NLA strips included, into one plain action set "<take> (flat)" that FBX and glTF
    export as one clip; the take is kept (the take menu plays it again)"""

    bl_idname = "mxr.flatten_take"
    bl_label = "Flatten for Export"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        rig = flatten_target(context)
        try:
            flat, warnings = flatten_shown_take(context.scene, rig)
        except MxrError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        for warning in warnings:
            self.report({"WARNING"}, warning)
        muted = f", {len(flat.baked_strips)} NLA strips it holds muted" if flat.baked_strips else ""
        self.report({"INFO"}, f"MXR: {rig.name} plays '{flat.name}' (frames {int(flat.frames[0])}-"
                              f"{int(flat.frames[-1])}, {len(flat.channels)} channels{muted}), one clip to export; "
                              "the take stays in the take menu")
        return {"FINISHED"}


def default_take_path(video: Path) -> Path:
    """Where *Reconstruct Video* keeps a take unless told: in ``<blend>_mxr_takes`` beside the saved
    .blend (it travels with the project), else in MXR's folder of Blender's user data (never the
    system's temp folder, which is emptied); named after the video and a hash of its full path, so
    two clips of the same name in different folders never share a take."""
    if bpy.data.filepath:
        blend = Path(bpy.data.filepath)
        folder = blend.parent / f"{blend.stem}_mxr_takes"
    else:
        folder = Path(bpy.utils.user_resource("DATAFILES", path="mxr_takes", create=True))
    tag = hashlib.sha256(str(video.resolve()).encode()).hexdigest()[:8]
    return folder / f"{video.stem}-{tag}.mxr.npz"


def engine_cache_environment() -> dict[str, str]:
    """Where the engine keeps its caches (the front-end's, matplotlib's font list: MediaPipe imports
    matplotlib) when MXR runs as an installed extension: the extension's folder in Blender's user
    data (``extension_path_user``), never the extension's own folder, which Blender replaces on
    update. Empty from a checkout (scripts, tests), and a variable already set keeps its folder."""
    if not ROOT_PACKAGE.startswith("bl_ext."):
        return {}
    folders = {"MXR_CACHE_DIR": "frontend_cache", "MPLCONFIGDIR": "matplotlib"}
    return {variable: bpy.utils.extension_path_user(ROOT_PACKAGE, path=folder, create=True)
            for variable, folder in folders.items() if variable not in os.environ}


class MXR_OT_reconstruct_video(_PlacesATake, _SmoothsUnits, bpy.types.Operator):
    """Reconstruct the face in a video with MXR's engine (a separate process), then bake it.
    Esc cancels: the scene is left as it was"""

    bl_idname = "mxr.reconstruct_video"
    bl_label = "Reconstruct Video"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(name="Video", subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_glob: bpy.props.StringProperty(default="*.mp4;*.mov;*.avi;*.mkv;*.webm", options={"HIDDEN"})
    take_path: bpy.props.StringProperty(name="Take File", subtype="FILE_PATH",
                                        description="Where to write the take (empty: a folder named after the .blend, beside "
                                                    "it, or MXR's folder in Blender's user data for an unsaved file)")
    key_rotation: bpy.props.BoolProperty(name="Head Rotation", default=True)
    neutral: bpy.props.EnumProperty(
        name="Neutral Face",
        items=(("FOUND", "Found in the Take", "The engine finds the calmest run of frames (open eyes, closed mouth, "
                                              "brows and lip corners where they usually are) and takes out what "
                                              "expression they still hold (a parted jaw), judged by the whole take"),
               ("FRAMES", "Frames", "These video frames show the performer's face at rest; every expression is "
                                    "read against them")),
        default="FOUND",
    )
    neutral_first: bpy.props.IntProperty(name="First", min=0, default=0,
                                         description="First video frame (from 0) showing the neutral face")
    neutral_last: bpy.props.IntProperty(name="Last", min=0, default=5,
                                        description="Last video frame (from 0) showing the neutral face")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        self._interactive = True  # execute() goes modal instead of blocking Blender
        if self.filepath:
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def _job(self, context: bpy.types.Context) -> EngineJob:
        video = Path(bpy.path.abspath(self.filepath))
        if not video.is_file():
            raise MxrError(f"video not found: {video}")
        take = Path(bpy.path.abspath(self.take_path)) if self.take_path else default_take_path(video)
        options: tuple[str, ...] = ()
        if self.neutral == "FRAMES":
            if self.neutral_last < self.neutral_first:
                raise MxrError(f"the neutral frames run from {self.neutral_first} to {self.neutral_last}: "
                               "the last must not come before the first")
            options = ("--neutral-frames", f"{self.neutral_first}-{self.neutral_last}")
        take.parent.mkdir(parents=True, exist_ok=True)
        return EngineJob(resolve_engine_python(engine_python_setting(context)), video, take, options=options,
                         environment=engine_cache_environment())

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            job = self._job(context)
            if getattr(self, "_interactive", False) and context.window is not None:
                return self._start_modal(context, job.start())
            job.run()
            return self._finish(context, job)
        except MxrError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}

    def _finish(self, context: bpy.types.Context, job: EngineJob) -> set[str]:
        """Bake the finished job's take (MxrError if the engine failed)."""
        take = job.result()
        for warning in job.warnings:
            self.report({"WARNING"}, f"engine: {warning}")
        baked = bake_take_file(context.scene, take, find_rig(context), key_rotation=self.key_rotation,
                               smoothing_s=self.smoothing, **self.timing())
        _make_active(context, baked.rig)
        note = job.neutral_note()
        self.report({"INFO"}, f"MXR: the take is in {take}" + (f"; {note}" if note else ""))
        _report_bake(self, baked)
        return {"FINISHED"}

    # -- interactive: a timer polls the engine, Esc terminates it --------------------------------
    def _start_modal(self, context: bpy.types.Context, job: EngineJob) -> set[str]:
        self._running = job
        window_manager = context.window_manager
        self._timer = window_manager.event_timer_add(0.2, window=context.window)
        window_manager.progress_begin(0, 100)
        window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _stop_modal(self, context: bpy.types.Context) -> None:
        window_manager = context.window_manager
        window_manager.event_timer_remove(self._timer)
        window_manager.progress_end()
        context.workspace.status_text_set(None)

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender aborts the modal run (a new or loaded file, a closed window): stop the engine too."""
        self._running.cancel()
        self._stop_modal(context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        job = self._running
        if event.type == "ESC":
            job.cancel()
            self._stop_modal(context)
            self.report({"INFO"}, "MXR: reconstruction cancelled, nothing changed")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if job.poll():
            progress = job.progress
            eta = f", {progress.eta_s:.0f} s left" if progress.eta_s is not None else ""
            context.window_manager.progress_update(100.0 * progress.fraction)
            context.workspace.status_text_set(f"MXR {progress.stage}: {100 * progress.fraction:.0f}%{eta} (Esc cancels)")
            return {"RUNNING_MODAL"}
        self._stop_modal(context)
        try:
            return self._finish(context, job)
        except MxrError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}


classes = (MXR_OT_import_head, MXR_OT_import_flame, MXR_OT_bake_take, MXR_OT_bake_arkit, MXR_OT_switch_take,
           MXR_OT_flatten_take, MXR_OT_reconstruct_video)
