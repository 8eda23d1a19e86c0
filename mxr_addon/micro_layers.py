"""Micro-expressions as layers an animator tunes live: intensity, timing and duration per event.

Every micro key a bake creates (``bake.key_micro_layer``) gets an entry in its rig's
``mxr_micro_layers``: which key, where the event was captured, and three numbers the animator
moves (``models.micro_keys.MicroTuning``). Moving one retunes the key's F-curve from the tuning
it had to the new one (``retune_keys``: relative, so hand edits to the curve are kept, scaled and
moved with it) and moves and renames the event's timeline marker. It is an ordinary property
edit, one undo step; the numbers are not animatable, since the curve they move is what plays.

The layers on show are those of one take (``mxr_micro_take`` on the rig; each take has its own
action and micro keys, see ``takes``), and they tune only curves of that take's action, when the
rig's Key plays it. A re-bake of the take replaces its layers, as it replaces the keys themselves;
a micro-expression found again (same region and apex frame) keeps its tuning. Baking or switching
to another take puts the layers on show aside on the rig (``mxr_micro_aside``), tuning and all,
and brings back that take's (``show_layers_of``).

Registered after the classes (``register_properties``): ``Object.mxr_micro_layers`` holds them,
``Object.mxr_micro_index`` is the one the panel shows.
"""
# No `from __future__ import annotations`: bpy reads property annotations as real objects.

import bpy
import numpy as np

from ..models.bake_plan import EventOnScene
from ..models.micro_keys import MicroComponent, MicroTuning, retune_keys, scaled_intensities, tuned_frames
from .curves import action_curves
from .markers import marker_name, marker_prefix, remove_rig_markers
from .rig import SLIDER_LIMIT, find_rig, widen_slider
from .takes import TAKE

_KEY_ARRAYS = ("co", "handle_left", "handle_right")  # (x frame, y value) pairs of every keyframe
PREVIEW_MARGIN_S = 0.25  # s of context either side of a micro-expression when looping it
LAYERS_TAKE = "mxr_micro_take"  # on the rig: the identity of the take whose layers it shows
ASIDE = "mxr_micro_aside"  # on the rig: [{"take", "index", "layers"}] of the takes not on show


_not_retuning: set[int] = set()  # layers whose numbers are written as they are (by ``as_pointer()``)


def _retune(layer: "MXR_MicroLayer", context: bpy.types.Context) -> None:
    """Update callback of the three tuning numbers: bring the curve and the marker to them."""
    if layer.as_pointer() in _not_retuning:  # our own writes: every write calls this again
        return
    before, after = MicroTuning(*layer.applied), layer.tuning()
    if after == before:
        return
    rig = layer.id_data
    curve = micro_curve(rig, layer.key_name)
    if curve is None:  # the key was renamed or deleted, or its take is not the Key's: give the numbers back
        _write_as_is(layer, {"intensity": before.intensity, "shift_frames": before.shift_frames,
                             "stretch": before.stretch})
        return
    low, high = retune_curve(curve, layer.apex_frame, before, after)
    widen_slider(rig.data.shape_keys.key_blocks[layer.key_name], low, high)
    if context is not None and context.scene is not None:
        _move_marker(context.scene, rig, layer, before, after)
    layer.applied = (after.intensity, after.shift_frames, after.stretch)


class MXR_MicroLayer(bpy.types.PropertyGroup):
    """One micro-expression of the last bake: its key, where it was captured, how it is tuned."""

    key_name: bpy.props.StringProperty(name="Shape Key", description="The micro key this layer tunes")
    region: bpy.props.StringProperty(name="Region", description="Face region of the micro-expression")
    apex_frame: bpy.props.FloatProperty(name="Captured Apex", options=set(),
                                        description="Scene frame of the apex as captured")
    onset_frame: bpy.props.FloatProperty(name="Captured Onset", options=set(),
                                         description="Scene frame of the onset as captured")
    offset_frame: bpy.props.FloatProperty(name="Captured Offset", options=set(),
                                          description="Scene frame of the offset as captured")
    peak_mm: bpy.props.FloatProperty(name="Captured Peak", options=set(),
                                     description="Largest skin motion at the apex as captured, in millimetres")
    marker: bpy.props.StringProperty(name="Marker", description="Name of the event's timeline marker")
    # Not animatable (options=set()): they move the key's curve, which is what plays.
    intensity: bpy.props.FloatProperty(
        name="Intensity", default=1.0, min=0.01, max=SLIDER_LIMIT, soft_min=0.1, soft_max=4.0, options=set(),
        update=_retune, description="Strength of the micro-expression relative to the capture: 2 doubles it "
                                    "(mute the key to switch it off)")
    shift_frames: bpy.props.FloatProperty(
        name="Shift", default=0.0, soft_min=-48.0, soft_max=48.0, step=100, precision=1, options=set(),
        update=_retune, description="Frames the micro-expression moves in time, later when positive")
    stretch: bpy.props.FloatProperty(
        name="Duration", default=1.0, min=0.1, max=10.0, soft_min=0.25, soft_max=4.0, options=set(),
        update=_retune, description="Duration relative to the capture, about its apex: 2 plays it twice as long")
    mute_before_solo: bpy.props.BoolProperty(options={"HIDDEN"},
                                             description="The key's own mute when the rig's solo began")
    applied: bpy.props.FloatVectorProperty(
        size=3, default=(1.0, 0.0, 1.0), options={"HIDDEN"},
        description="The tuning the curve has now (intensity, shift, duration)")

    def tuning(self) -> MicroTuning:
        return MicroTuning(self.intensity, self.shift_frames, self.stretch)

    def apex_now(self) -> float:
        """Scene frame of the apex under the current tuning."""
        return float(tuned_frames(np.array([self.apex_frame]), self.apex_frame, self.tuning())[0])

    def span_now(self) -> tuple[float, float]:
        """Scene frames of the onset and the offset under the current tuning."""
        onset, offset = tuned_frames(np.array([self.onset_frame, self.offset_frame]), self.apex_frame, self.tuning())
        return float(onset), float(offset)


def _write_as_is(layer: MXR_MicroLayer, values: dict) -> None:
    """Set ``layer``'s properties to ``values`` without retuning its curve (which has them already)."""
    _not_retuning.add(layer.as_pointer())
    try:
        for name, value in values.items():
            setattr(layer, name, value)
    finally:
        _not_retuning.discard(layer.as_pointer())


def micro_curve(rig: bpy.types.Object, key_name: str) -> bpy.types.FCurve | None:
    """The value F-curve of ``rig``'s shape key ``key_name`` in the action its Key plays, if that
    is the action of the take whose layers the rig shows; None if either is gone (the animator
    deleted or renamed the key) or the Key plays another take."""
    key = rig.data.shape_keys
    if key is None or key_name not in key.key_blocks or key.animation_data is None:
        return None
    action = key.animation_data.action
    if action is None or action.get(TAKE) != rig.get(LAYERS_TAKE):
        return None
    curves = action_curves(action, key)
    return None if curves is None else curves.find(key.key_blocks[key_name].path_from_id("value"))


def retune_curve(curve: bpy.types.FCurve, apex_frame: float, before: MicroTuning,
                 after: MicroTuning) -> tuple[float, float]:
    """Move every keyframe of ``curve`` (and its handles) from tuning ``before`` to ``after``.
    -> the lowest and highest key value now (0, 0 without keys)."""
    points = curve.keyframe_points
    key_values = np.zeros(1)
    for name in _KEY_ARRAYS:
        pairs = np.empty(2 * len(points), np.float32)
        points.foreach_get(name, pairs)
        frames, values = retune_keys(pairs[0::2], pairs[1::2], apex_frame, before, after)
        pairs[0::2], pairs[1::2] = frames, values
        points.foreach_set(name, pairs)
        if name == "co" and len(points):
            key_values = values
    curve.update()
    return float(key_values.min()), float(key_values.max())


def _move_marker(scene: bpy.types.Scene, rig: bpy.types.Object, layer: MXR_MicroLayer, before: MicroTuning,
                 after: MicroTuning) -> None:
    """Move the layer's timeline marker from the apex of ``before`` to that of ``after`` and say
    its new span and peak. Only this rig's marker of this event is touched: its stored name,
    under the rig's prefix, where ``before`` put it (a copy of the rig has its own prefix)."""
    captured = np.array([layer.onset_frame, layer.apex_frame, layer.offset_frame])
    apex_before = round(tuned_frames(captured[1:2], layer.apex_frame, before)[0])
    marker = next((m for m in scene.timeline_markers if m.name == layer.marker and m.frame == apex_before
                   and m.name.startswith(marker_prefix(rig))), None)
    if marker is None:
        return
    onset, apex, offset = tuned_frames(captured, layer.apex_frame, after)
    marker.frame = round(apex)
    marker.name = marker_name(rig, layer.region, layer.peak_mm * after.intensity, onset, offset)
    layer.marker = marker.name


def record_micro_layers(rig: bpy.types.Object, take: str, key_names: list[str], components: list[MicroComponent],
                        events: list[EventOnScene]) -> None:
    """Replace the layers of ``take`` (its identity) with one per new micro key (its component,
    and its event on the scene's timeline) and show them on ``rig``; their markers are named as
    ``markers.mark_micro_events`` names them.

    A key the take's last bake also made (the same name: the same region and apex frame) gets that
    layer's tuning again, so a re-bake (other options, a re-run of the same video) does not undo
    the animator's work; ``place_tuned_markers`` then moves the new markers to match."""
    show_layers_of(rig, take)
    layers = rig.mxr_micro_layers
    tunings = {layer.key_name: layer.tuning() for layer in layers}
    layers.clear()
    for name, component, event in zip(key_names, components, events):
        layer = layers.add()
        layer.key_name, layer.region, layer.peak_mm = name, event.region, event.peak_mm
        layer.apex_frame, layer.onset_frame, layer.offset_frame = event.apex, event.onset, event.offset
        tuning = tunings.get(name, MicroTuning())  # retunes the new curve; no marker yet (the bake's come later)
        layer.intensity, layer.shift_frames, layer.stretch = tuning.intensity, tuning.shift_frames, tuning.stretch
        layer.marker = marker_name(rig, event.region, event.peak_mm, layer.onset_frame, layer.offset_frame)
    rig.mxr_micro_index = 0
    rig.mxr_micro_solo = ""


def show_layers_of(rig: bpy.types.Object, take: str) -> None:
    """Make ``rig``'s layers those of ``take`` (its identity): the layers on show, of another take,
    are put aside with their tuning (a solo ended first), and ``take``'s come back (none if it has
    none)."""
    shown = rig.get(LAYERS_TAKE, "")
    if shown == take:
        return
    end_solo(rig)
    stored = list(rig.get(ASIDE, []))
    back = next((entry.to_dict() for entry in stored if entry["take"] == take), {"index": 0, "layers": []})
    aside = [entry.to_dict() for entry in stored if entry["take"] not in (shown, take)]
    if shown:
        aside.append({"take": shown, "index": rig.mxr_micro_index,
                      "layers": [_layer_values(layer) for layer in rig.mxr_micro_layers]})
    rig.mxr_micro_layers.clear()
    for values in back["layers"]:
        _write_as_is(rig.mxr_micro_layers.add(), values)
    rig.mxr_micro_index = back["index"]
    rig[ASIDE] = aside
    rig[LAYERS_TAKE] = take


def _layer_values(layer: MXR_MicroLayer) -> dict:
    """Every property of ``layer``, as plain values (to put it aside)."""
    properties = [prop for prop in layer.bl_rna.properties if prop.identifier not in ("rna_type", "name")]
    return {prop.identifier: getattr(layer, prop.identifier)[:] if getattr(prop, "is_array", False)
            else getattr(layer, prop.identifier) for prop in properties}


def end_solo(rig: bpy.types.Object) -> None:
    """Give every micro key on show the mute it had before the rig's solo, if one is on."""
    if not rig.mxr_micro_solo:
        return
    for layer, block in micro_blocks(rig):
        block.mute = layer.mute_before_solo
    rig.mxr_micro_solo = ""


def mark_layers(scene: bpy.types.Scene, rig: bpy.types.Object) -> None:
    """Replace ``rig``'s micro-event markers with one per layer on show, where its tuning has the
    apex (a take's markers, when it is switched back to)."""
    remove_rig_markers(scene, rig)
    for layer in rig.mxr_micro_layers:
        scene.timeline_markers.new(layer.marker, frame=round(layer.apex_now()))


def place_tuned_markers(scene: bpy.types.Scene, rig: bpy.types.Object) -> None:
    """Move the markers of ``rig``'s tuned layers from their captured place (where a bake puts
    them) to where the tuning has the micro-expression."""
    for layer in rig.mxr_micro_layers:
        if layer.tuning() != MicroTuning():
            _move_marker(scene, rig, layer, MicroTuning(), layer.tuning())


def micro_blocks(rig: bpy.types.Object) -> list[tuple[MXR_MicroLayer, bpy.types.ShapeKey]]:
    """(layer, its shape key) for each of ``rig``'s layers whose key is still there."""
    key = rig.data.shape_keys
    if key is None:
        return []
    blocks = key.key_blocks
    return [(layer, blocks[layer.key_name]) for layer in rig.mxr_micro_layers if layer.key_name in blocks]


def rig_with_layers(context: bpy.types.Context) -> bpy.types.Object | None:
    """The scene's MXR rig if it has micro layers."""
    rig = find_rig(context)
    return rig if rig is not None and len(rig.mxr_micro_layers) > 0 else None


def active_layer(context: bpy.types.Context) -> MXR_MicroLayer | None:
    """The micro layer the panel shows for the scene's MXR rig, if there is one."""
    rig = rig_with_layers(context)
    if rig is None or not 0 <= rig.mxr_micro_index < len(rig.mxr_micro_layers):
        return None
    return rig.mxr_micro_layers[rig.mxr_micro_index]


class MXR_UL_micro_layers(bpy.types.UIList):
    """A row per micro-expression: region and apex frame (an error icon where its key's curve is
    gone, a solo icon on the soloed one), intensity, the key's on/off switch."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        key = data.data.shape_keys
        block = key.key_blocks.get(item.key_name) if key is not None else None
        icon = "ERROR" if micro_curve(data, item.key_name) is None else (
            "SOLO_ON" if data.mxr_micro_solo == item.key_name else "SHAPEKEY_DATA")
        row = layout.row(align=True)
        row.label(text=f"{item.region}  {round(item.apex_now())}", icon=icon)
        row.prop(item, "intensity", text="", emboss=False)
        if block is not None:
            row.prop(block, "mute", text="", emboss=False, invert_checkbox=True)


class _OnSelectedLayer:
    """Mixin: an operator on the micro layer the panel shows, available only when there is one."""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return active_layer(context) is not None


class MXR_OT_micro_go_to_apex(_OnSelectedLayer, bpy.types.Operator):
    """Jump to the selected micro-expression's apex"""

    bl_idname = "mxr.micro_go_to_apex"
    bl_label = "Go to Apex"

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.scene.frame_set(round(active_layer(context).apex_now()))
        return {"FINISHED"}


class MXR_OT_micro_preview_range(_OnSelectedLayer, bpy.types.Operator):
    """Set the preview range to the selected micro-expression and a little around it, to loop it
    while tuning (Alt P clears it)"""

    bl_idname = "mxr.micro_preview_range"
    bl_label = "Loop It"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        onset, offset = active_layer(context).span_now()
        margin = PREVIEW_MARGIN_S * scene.render.fps / scene.render.fps_base  # frames
        scene.use_preview_range = True
        scene.frame_preview_start = int(np.floor(onset - margin))
        scene.frame_preview_end = max(int(np.ceil(offset + margin)), scene.frame_preview_start + 1)
        scene.frame_set(scene.frame_preview_start)
        return {"FINISHED"}


class MXR_OT_micro_solo(_OnSelectedLayer, bpy.types.Operator):
    """Show only the selected micro-expression (mute the rig's other micro keys); again, give
    every micro key back the mute it had before"""

    bl_idname = "mxr.micro_solo"
    bl_label = "Solo"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        rig, chosen = rig_with_layers(context), active_layer(context)
        if rig.mxr_micro_solo == chosen.key_name:
            end_solo(rig)
            return {"FINISHED"}
        pairs = micro_blocks(rig)
        if not rig.mxr_micro_solo:  # the first solo: remember the mutes to give back
            for layer, block in pairs:
                layer.mute_before_solo = block.mute
        for layer, block in pairs:
            block.mute = layer.key_name != chosen.key_name
        rig.mxr_micro_solo = chosen.key_name
        return {"FINISHED"}


class MXR_OT_micro_reset(_OnSelectedLayer, bpy.types.Operator):
    """Give the selected micro-expression back its captured intensity, timing and duration"""

    bl_idname = "mxr.micro_reset"
    bl_label = "Reset Tuning"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        layer = active_layer(context)
        layer.intensity, layer.shift_frames, layer.stretch = 1.0, 0.0, 1.0
        return {"FINISHED"}


class MXR_OT_micro_scale_all(bpy.types.Operator):
    """Multiply the intensity of every micro-expression of the rig (the micro layer as a whole)"""

    bl_idname = "mxr.micro_scale_all"
    bl_label = "Scale All"
    bl_options = {"REGISTER", "UNDO"}

    factor: bpy.props.FloatProperty(name="Factor", default=1.5, min=0.01, soft_max=4.0,
                                    description="Each micro-expression's intensity is multiplied by this")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return rig_with_layers(context) is not None

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        layers = rig_with_layers(context).mxr_micro_layers
        limits = layers[0].bl_rna.properties["intensity"]
        intensities, clamped = scaled_intensities([layer.intensity for layer in layers], self.factor,
                                                  limits.hard_min, limits.hard_max)
        for layer, intensity in zip(layers, intensities):
            layer.intensity = float(intensity)
        if clamped:
            self.report({"WARNING"}, f"{clamped} micro-expression(s) held at the intensity limits "
                                     f"({limits.hard_min:g}..{limits.hard_max:g})")
        return {"FINISHED"}


classes = (MXR_MicroLayer, MXR_UL_micro_layers, MXR_OT_micro_go_to_apex, MXR_OT_micro_preview_range,
           MXR_OT_micro_solo, MXR_OT_micro_reset, MXR_OT_micro_scale_all)


def register_properties() -> None:
    bpy.types.Object.mxr_micro_layers = bpy.props.CollectionProperty(type=MXR_MicroLayer)
    bpy.types.Object.mxr_micro_index = bpy.props.IntProperty(name="Micro-expression", default=0, min=0)
    bpy.types.Object.mxr_micro_solo = bpy.props.StringProperty(
        name="Soloed", description="The micro key shown alone (the others muted by Solo); empty: none")


def unregister_properties() -> None:
    del bpy.types.Object.mxr_micro_solo
    del bpy.types.Object.mxr_micro_index
    del bpy.types.Object.mxr_micro_layers
