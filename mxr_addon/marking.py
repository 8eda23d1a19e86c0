"""Marking a micro-expression the detector missed, on the timeline: the frames where the animator
sees it in the reference video become an event of the take the rig plays, with a micro key and a
layer to tune like a found one (``models.marked_events``).

The mark is an edit of the take: the marked take replaces the take file (the file before it is
kept beside it, ``<take>.before-mark-<n>.npz``), and the take is baked again as it was baked
(``pipeline.baked_timing``: the same start frame, timing and keys), so that it stays the same take:
its other micro layers keep their tuning, other takes are not touched. A take baked before its
options were kept must be baked once more before it can be marked. Undo takes the scene back, not
the file: its state before the mark is the kept copy.
"""
# No `from __future__ import annotations`: bpy reads property annotations as real objects.

import os
import shutil
from pathlib import Path

import bpy

from ..models.marked_events import mark_event
from ..models.network.events import StretchReader
from ..models.network.features import EVENT_REGIONS
from ..ops.atomic import replacing
from ..ops.errors import MxrError
from ..ops.take import Take, load_take, save_take
from .pipeline import bake_take_file, baked_timing
from .rig import find_rig
from .takes import shown_take

HALF_SPAN_S = 0.15  # without a preview range: the mark spans this either side of the current frame
_REGIONS = [("AUTO", "Strongest", "The face region that moves most over the marked frames")] + [
    (region.upper(), region.capitalize(), f"A micro-expression of the {region}") for region in EVENT_REGIONS]


def take_file_of(rig: bpy.types.Object) -> Path:
    """The take file of the take ``rig`` plays (MxrError if it plays none, or one not from a file)."""
    shown = shown_take(rig)
    if shown is None:
        raise MxrError(f"{rig.name} plays no MXR take: bake one first")
    path = shown.take_path
    if path is None or not path.is_file():
        raise MxrError(f"the take {shown.label} is not in a take file MXR can read ({path or 'baked from its video'}): "
                       "bake it from its take file again")
    return path


def backup_path(take_path: Path) -> Path:
    """A name beside ``take_path`` no file has yet: ``<take>.before-mark-<n>.npz``."""
    stem = take_path.name.removesuffix(".npz")
    number = 1
    while (take_path.parent / f"{stem}.before-mark-{number}.npz").exists():
        number += 1
    return take_path.parent / f"{stem}.before-mark-{number}.npz"


class MXR_OT_mark_micro_expression(bpy.types.Operator):
    """Make the frames where you see a micro-expression in the video a micro layer of the take the
    MXR head plays (from the frame before it rises to the frame after it has fallen back)"""

    bl_idname = "mxr.mark_micro_expression"
    bl_label = "Mark Micro-Expression"
    bl_options = {"REGISTER", "UNDO"}

    first_frame: bpy.props.IntProperty(name="From Frame", description="The scene frame just before it rises")
    last_frame: bpy.props.IntProperty(name="To Frame", description="The scene frame just after it has fallen back")
    region: bpy.props.EnumProperty(name="Region", items=_REGIONS, default="AUTO")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rig = find_rig(context)
        return rig is not None and shown_take(rig) is not None

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        scene = context.scene
        if scene.use_preview_range:
            self.first_frame, self.last_frame = scene.frame_preview_start, scene.frame_preview_end
        else:
            half = max(1, round(HALF_SPAN_S * scene.render.fps / scene.render.fps_base))
            self.first_frame, self.last_frame = scene.frame_current - half, scene.frame_current + half
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        rig = find_rig(context)
        try:
            take_path = take_file_of(rig)
            baked = baked_timing(rig)
            if baked is None:
                raise MxrError(f"bake {take_path.name} once more before marking it (MXR did not yet keep how it "
                               "was baked)")
            timing, options = baked
            take = load_take(take_path)
            first, last = (timing.take_frame(take, frame) for frame in (self.first_frame, self.last_frame))
            region = None if self.region == "AUTO" else self.region.lower()
            reread, why_not = _stretch_reader(take)
            marked = mark_event(take, first, last, region, reread)
            backup = backup_path(take_path)
            with replacing(backup) as stream, open(take_path, "rb") as source:  # the take before the mark, whole
                shutil.copyfileobj(source, stream)
            save_take(marked, take_path)
        except MxrError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        except OSError as error:
            self.report({"ERROR"}, f"cannot write the take: {error}")
            return {"CANCELLED"}
        try:
            bake_take_file(context.scene, take_path, rig, reference_video=False, **options)
        except MxrError as error:  # the bake changed nothing: nor does the mark
            os.replace(backup, take_path)
            self.report({"ERROR"}, f"{error}; the take is as it was")
            return {"CANCELLED"}
        event = next(event for event in marked.events if (event.onset_frame, event.offset_frame) == (first, last))
        self.report({"WARNING"} if why_not else {"INFO"},
                    f"MXR: a {event.region} micro-expression over take frames {first}-{last} is a micro layer now"
                    f"{'; ' + why_not if why_not else ''}; the take before it is kept as {backup.name}")
        return {"FINISHED"}


def _stretch_reader(take: Take) -> tuple[StretchReader | None, str]:
    """The event's stretch read again by flow from the take's video (``stretch_flow``), as the
    engine reads the events it finds; None and why not where the video or OpenCV is not there
    (the add-on's rig and bake need neither)."""
    try:
        from ..ops.stretch_flow import source_stretch_reader
    except ImportError:
        return None, "OpenCV is not installed: the event is read from the take's points alone"
    return source_stretch_reader(take)


classes = (MXR_OT_mark_micro_expression,)
