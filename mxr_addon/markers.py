"""A take's micro events as timeline markers: where to look, and how strong, before tuning.

One marker per event at its apex, named ``MXR <rig>: <region> <peak> mm (<onset>-<offset>)`` in
scene frames, and ``..., in macro`` where the event has no micro key to tune (its motion stays in
the macro layer: the network's own micro layer, or a pattern too faint to key). Markers cannot carry MXR's ownership tag, so MXR's are recognised by that name
prefix and only they are replaced by a re-bake of the same rig; a user's markers, and another
rig's, are never touched.
"""
from __future__ import annotations

import bpy

from ..models.bake_plan import EventOnScene

MARKER_NAME_BYTES = 63  # Blender keeps this much of a marker's name
IN_MACRO = ", in macro"  # the end of the name of an event's marker that has no micro key


def marker_prefix(rig: bpy.types.Object) -> str:
    return f"MXR {rig.name}: "


def marker_name(rig: bpy.types.Object, region: str, peak_mm: float, onset_frame: float, offset_frame: float,
                layered: bool = True) -> str:
    """The name of ``rig``'s marker for an event (frames: scene frames), as Blender stores it: cut
    to ``MARKER_NAME_BYTES`` of UTF-8 (a long rig name leaves little of the rest)."""
    name = f"{marker_prefix(rig)}{region} {peak_mm:.2f} mm ({round(onset_frame)}-{round(offset_frame)})"
    name += "" if layered else IN_MACRO
    return name.encode()[:MARKER_NAME_BYTES].decode(errors="ignore")


def remove_rig_markers(scene: bpy.types.Scene, rig: bpy.types.Object) -> None:
    """Remove ``rig``'s micro-event markers from ``scene`` (a user's and other rigs' stay)."""
    prefix = marker_prefix(rig)
    for marker in [m for m in scene.timeline_markers if m.name.startswith(prefix)]:
        scene.timeline_markers.remove(marker)


def mark_micro_events(scene: bpy.types.Scene, rig: bpy.types.Object, events: list[EventOnScene]) -> int:
    """Replace ``rig``'s micro-event markers in ``scene`` by ``events`` (a marker sits on the
    whole frame nearest the apex). -> the number of markers added."""
    remove_rig_markers(scene, rig)
    for event in events:
        scene.timeline_markers.new(marker_name(rig, event.region, event.peak_mm, event.onset, event.offset,
                                               event.layered), frame=round(event.apex))
    return len(events)
