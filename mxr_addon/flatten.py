"""Flatten: the take a rig shows, baked into one plain action set that exports as one clip.

Why: a take plays from several places: its actions (the Key's shape keys, the rig object's head
rotation, a FLAME rig's bones: ``takes``), micro layers tuned by moving their curves
(``micro_layers``; a layer switched off is a muted key) and NLA strips under it (an earlier
take, a user's visemes). Exporters cut animation into clips by action. glTF (default mode
"Actions") writes an animation per action and, on 4.4+, merges those of one action across
objects (4.2 merges only NLA tracks of one name); its importer plays the first and stashes the
rest in muted NLA tracks. FBX (defaults "All Actions", "NLA Strips") writes a take per object
and each action that fits it, and samples the shape keys into each: shape keys under an object
with no action of its own are not exported at all.

Flatten samples every value the rig's datablocks animate (active actions and playing NLA strips,
as Blender evaluates them: tuning, influence, strip timing) at every scene frame, where the
exporters sample, and keys them in one pass into a new action set "<take> (flat)". On 4.4+ it
is one action with a slot per datablock: glTF writes it as one animation, FBX as one take of
the object. On 4.2 (an action animates one datablock) it is an action per datablock, each also
stashed in a muted NLA track "<take> (flat)", as glTF's importer stashes clips: 4.2's glTF
exporter merges them by that name into one animation, FBX skips muted tracks. A muted shape key
is keyed at 0, as the mesh shows it: FBX writes a muted key's value (glTF leaves the key out).

Nothing is lost: the actions the set replaces (the take's, a user's) keep a fake user, and
Switch Take plays the take again; the NLA strips it holds are muted, not removed (playing, they
would export as clips of their own), and play again when the rig switches back to a take;
drivers and shape keys are not touched. A re-flatten of the
take on the rig replaces the set's content in place, so exports never find two.
"""
from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from ..ops.errors import MxrError
from .curves import ensure_fcurve, slot_curves, write_keys
from .flame_rig import armature_of
from .rig import OWNED, find_rig
from .takes import ANIMATES, TAKE_NAME, TakeName, assign_keeping, has_takes, shown_take

FLAT = "mxr_flat"  # on a flat action: the identity of the take it was flattened from
FLAT_RIG = "mxr_flat_rig"  # on a flat action: the rig (object) it was flattened for
MUTED_BY_FLATTEN = "mxr_flat_muted"  # on a datablock: "<track>\t<strip>" of each NLA strip a flatten muted
SLOTTED = "slots" in bpy.types.Action.bl_rna.properties  # 4.4+: one action animates several datablocks


@dataclass(frozen=True)
class Channel:
    """One animated value: ``datablock.path_resolve(data_path)``, item ``index`` of an array."""

    datablock: bpy.types.ID
    data_path: str
    index: int


@dataclass
class FlatTake:
    """A take as the rig plays it, sampled at every scene frame, not yet written."""

    rig: bpy.types.Object
    take: TakeName
    datablocks: list[bpy.types.ID]  # what the flat set animates (``flat_datablocks``)
    frames: np.ndarray  # (n,) scene frames
    channels: list[Channel]
    values: np.ndarray  # (n, C) each channel's value as shown at each frame
    baked_strips: list[bpy.types.NlaStrip]  # the playing NLA strips the values hold

    @property
    def name(self) -> str:
        return flat_name(self.take, self.rig)


def flat_name(take: TakeName, rig: bpy.types.Object) -> str:
    """The flat set's name: the take's, which glTF and FBX name the clip after."""
    return f"{take.label or rig.name} (flat)"


def flatten_target(context: bpy.types.Context) -> bpy.types.Object | None:
    """The active mesh if a take was baked onto it (an ARKit character), else the scene's MXR rig."""
    active = context.active_object
    if active is not None and active.type == "MESH" and has_takes(active):
        return active
    return find_rig(context)


def flatten_shown_take(scene: bpy.types.Scene, rig: bpy.types.Object | None) -> tuple[FlatTake, list[str]]:
    """Bake the take ``rig`` shows into its flat action set (see the module); all or nothing:
    MxrError, with nothing changed, if it cannot be done. -> what was flattened, warnings."""
    flat = sample_shown_take(scene, rig)
    return flat, write_flat_take(flat)


def sample_shown_take(scene: bpy.types.Scene, rig: bpy.types.Object | None) -> FlatTake:
    """Everything ``rig``'s datablocks play, sampled at the scene's frames; the scene's current
    frame is given back. MxrError if there is no take on show, or the rig cannot take new actions."""
    take = _refuse_what_cannot_be_flattened(rig)
    datablocks = flat_datablocks(rig)
    channels = list(dict.fromkeys(channel for datablock in datablocks for channel in _played_channels(datablock)))
    frames = np.arange(scene.frame_start, scene.frame_end + 1, dtype=np.float64)
    values = _sample(scene, frames, channels)
    values[:, [_shows_nothing(channel) for channel in channels]] = 0.0
    strips = dict.fromkeys(strip for datablock in datablocks if datablock.animation_data is not None
                           for strip, _ in _playing_strips(datablock.animation_data))
    return FlatTake(rig, take, datablocks, frames, channels, values, list(strips))


def flat_datablocks(rig: bpy.types.Object) -> list[bpy.types.ID]:
    """What the flat set animates: the shape keys and the one object under which FBX writes the
    performance, a FLAME rig's armature (its take samples the bones and every shape key), else
    the mesh object. FBX writes a take for each object playing the set: on a FLAME rig's mesh it
    would be a second one, without the bones; the mesh keeps its take's face-found flag, which
    neither format exports."""
    return [datablock for datablock in (rig.data.shape_keys, armature_of(rig) or rig) if datablock is not None]


def write_flat_take(flat: FlatTake) -> list[str]:
    """Key ``flat`` into its action set (assigned to its datablocks) in one pass and mute the
    strips it holds. -> warnings (a user's action or NLA blending replaced)."""
    warnings: list[str] = []
    actions = _assigned_flat_actions(flat, warnings)
    for channel, values in zip(flat.channels, flat.values.T):
        curve = ensure_fcurve(actions[channel.datablock], channel.datablock, channel.data_path, channel.index)
        write_keys(curve, flat.frames, values, "LINEAR")
    _remember_muted(flat)
    for strip in flat.baked_strips:
        strip.mute = True
    for datablock in flat.datablocks:
        _play_alone(datablock.animation_data, warnings)
    return warnings


def unmute_flattened_strips(rig: bpy.types.Object) -> int:
    """Play again the NLA strips a flatten of ``rig`` muted (they are in the flat copy, not in the
    take it switches back to). -> how many."""
    count = 0
    for datablock in flat_datablocks(rig):
        muted = set(datablock.get(MUTED_BY_FLATTEN, ()))
        if not muted:
            continue
        for track in datablock.animation_data.nla_tracks if datablock.animation_data is not None else ():
            for strip in track.strips:
                if f"{track.name}\t{strip.name}" in muted and strip.mute:
                    strip.mute = False
                    count += 1
        del datablock[MUTED_BY_FLATTEN]
    return count


def _remember_muted(flat: FlatTake) -> None:
    """Note on each datablock which of its NLA strips ``flat`` mutes (``unmute_flattened_strips``)."""
    for datablock in flat.datablocks:
        animation = datablock.animation_data
        muted = [f"{track.name}\t{strip.name}" for track in (animation.nla_tracks if animation else ())
                 for strip in track.strips if any(strip == baked for baked in flat.baked_strips)]
        if muted:
            datablock[MUTED_BY_FLATTEN] = sorted(set(datablock.get(MUTED_BY_FLATTEN, ())) | set(muted))


def shown_flat(obj: bpy.types.Object) -> str | None:
    """The name of the flat set ``obj``'s shape keys play, if they play one (cheap enough for a panel)."""
    key = obj.data.shape_keys if obj.type == "MESH" else None
    action = key.animation_data.action if key is not None and key.animation_data is not None else None
    if action is None or FLAT not in action:
        return None
    return flat_name(TakeName(action[FLAT], action.get(TAKE_NAME, "")), obj)


def _refuse_what_cannot_be_flattened(rig: bpy.types.Object | None) -> TakeName:
    """The take ``rig`` shows; MxrError if there is none, or its animation cannot be changed now."""
    if rig is None:
        raise MxrError("no MXR head or baked character in the scene: select one to flatten")
    if not has_takes(rig):
        raise MxrError(f"{rig.name} has no MXR take to flatten: bake one first")
    if shown_flat(rig) is not None:
        raise MxrError(f"{rig.name} plays its flat copy already: switch to the take (MXR panel, take menu), "
                       "change it and flatten it again")
    take = shown_take(rig)
    if take is None:
        raise MxrError(f"{rig.name} plays none of its MXR takes: switch to one (MXR panel, take menu) and flatten it")
    for datablock in flat_datablocks(rig):
        if datablock.library is not None:
            raise MxrError(f"{datablock.name} is linked from another file: flatten in that file, or make it local")
        if datablock.animation_data is not None and datablock.animation_data.use_tweak_mode:
            raise MxrError(f"{datablock.name} is in NLA tweak mode: leave it (Tab in the NLA editor) and flatten again")
    return take


def _playing_strips(animation: bpy.types.AnimData) -> list[tuple[bpy.types.NlaStrip, bpy.types.NlaStrip]]:
    """(top-level strip, strip with an action in it) for each action the NLA plays now: every
    unmuted strip of the unmuted tracks (the solo track alone, if one is), meta strips opened."""
    if not animation.use_nla:
        return []
    tracks = [track for track in animation.nla_tracks if not track.mute]
    tracks = [track for track in tracks if track.is_solo] or tracks
    return [(strip, inner) for track in tracks for strip in track.strips if not strip.mute
            for inner in _action_strips(strip)]


def _action_strips(strip: bpy.types.NlaStrip) -> list[bpy.types.NlaStrip]:
    """``strip`` if it plays an action, else the action strips inside it (a meta strip's)."""
    if strip.action is not None:
        return [strip]
    return [inner for child in strip.strips for inner in _action_strips(child)]


def _played_channels(datablock: bpy.types.ID) -> list[Channel]:
    """The values ``datablock``'s active action and playing NLA strips animate (unmuted curves
    whose path still resolves: a deleted key's curve is left behind)."""
    animation = datablock.animation_data
    if animation is None:
        return []
    played = [(inner.action, getattr(inner, "action_slot", None)) for _, inner in _playing_strips(animation)]
    if animation.action is not None:
        played.append((animation.action, getattr(animation, "action_slot", None)))
    channels = [Channel(datablock, curve.data_path, curve.array_index)
                for action, slot in played for curve in slot_curves(action, slot) if not curve.mute]
    return [channel for channel in channels if _resolves(channel)]


def _value(channel: Channel) -> float:
    value = channel.datablock.path_resolve(channel.data_path)
    return float(value if isinstance(value, (bool, int, float)) else value[channel.index])


def _resolves(channel: Channel) -> bool:
    try:
        _value(channel)
    except (ValueError, IndexError, TypeError, KeyError):
        return False
    return True


def _shows_nothing(channel: Channel) -> bool:
    """A muted shape key's value: the mesh ignores it, FBX does not."""
    if not isinstance(channel.datablock, bpy.types.Key) or not channel.data_path.endswith(".value"):
        return False
    block = channel.datablock.path_resolve(channel.data_path.rsplit(".", 1)[0])
    return isinstance(block, bpy.types.ShapeKey) and block.mute


def _sample(scene: bpy.types.Scene, frames: np.ndarray, channels: list[Channel]) -> np.ndarray:
    """(n, C) each channel's evaluated value at each of ``frames``; the current frame is kept."""
    current = scene.frame_current, scene.frame_subframe
    values = np.empty((len(frames), len(channels)))
    try:
        for row, frame in enumerate(frames):
            scene.frame_set(int(frame))
            values[row] = [_value(channel) for channel in channels]
    finally:
        scene.frame_set(current[0], subframe=current[1])
    return values


def _assigned_flat_actions(flat: FlatTake, warnings: list[str]) -> dict[bpy.types.ID, bpy.types.Action]:
    """``flat``'s action for each datablock, emptied and assigned to it: one action with a slot
    per datablock on 4.4+, one action per datablock on legacy actions."""
    if SLOTTED:
        action = _emptied(_flat_action(flat, None, flat.name), flat)
        for datablock in flat.datablocks:
            assign_keeping(datablock, action, warnings, action.slots.new(datablock.id_type, datablock.name))
        return dict.fromkeys(flat.datablocks, action)
    actions = {}
    for datablock in flat.datablocks:  # the object's is the one FBX names its take after
        name = f"{flat.name} · Shape Keys" if isinstance(datablock, bpy.types.Key) else flat.name
        actions[datablock] = _emptied(_flat_action(flat, datablock, name), flat)
        assign_keeping(datablock, actions[datablock], warnings)
        _stash(datablock.animation_data, actions[datablock], flat.name)
    return actions


def _stash(animation: bpy.types.AnimData, action: bpy.types.Action, track_name: str) -> None:
    """Put ``action`` in a muted NLA track ``track_name`` (once): 4.2's glTF exporter merges the
    animations of NLA tracks of one name, muted or not, into one, and FBX skips muted tracks (the
    glTF importer stashes its clips the same way)."""
    if any(track.name == track_name and any(strip.action == action for strip in track.strips)
           for track in animation.nla_tracks):
        return
    track = animation.nla_tracks.new()
    track.name = track_name
    track.strips.new(track_name, int(action.frame_start), action)
    track.mute = True


def _flat_action(flat: FlatTake, datablock: bpy.types.ID | None, name: str) -> bpy.types.Action:
    """The action an earlier flatten of the take made for the rig (for ``datablock``, on legacy
    actions) while no other datablock uses it (a copy of the rig shares it), else a new one."""
    for action in bpy.data.actions:
        if (action.get(FLAT) == flat.take.identity and action.get(FLAT_RIG) == flat.rig
                and action.get(ANIMATES) == datablock
                and bpy.data.user_map(subset=[action])[action] <= set(flat.datablocks)):
            return action
    action = bpy.data.actions.new(name)
    action[OWNED], action[FLAT], action[FLAT_RIG] = True, flat.take.identity, flat.rig
    action[TAKE_NAME] = flat.take.label
    if datablock is not None:
        action[ANIMATES] = datablock
    action.use_fake_user = True
    return action


def _emptied(action: bpy.types.Action, flat: FlatTake) -> bpy.types.Action:
    """``action`` without curves (and slots), its frame range set to ``flat``'s frames: exporters
    take a clip's range from it, also for a datablock with nothing keyed."""
    if SLOTTED:
        for layer in list(action.layers):
            action.layers.remove(layer)
        for slot in list(action.slots):
            action.slots.remove(slot)
    else:
        action.fcurves.clear()
    action.use_frame_range = True
    action.frame_start, action.frame_end = float(flat.frames[0]), float(flat.frames[-1])
    return action


def _play_alone(animation: bpy.types.AnimData, warnings: list[str]) -> None:
    """Make the assigned flat action replace everything under it at full influence: it holds the
    evaluated values, blended already."""
    if animation.action_blend_type != "REPLACE" or animation.action_influence != 1.0:
        warnings.append(f"{animation.id_data.name} plays its flat action at blend 'Replace', influence 1 "
                        f"(was '{animation.action_blend_type.title()}', {animation.action_influence:g})")
        animation.action_blend_type, animation.action_influence = "REPLACE", 1.0
