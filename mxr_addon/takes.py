"""Takes on a rig: every take baked gets actions of its own, so that no bake overwrites another.

A bake keys one action per datablock it animates (a rig's shape-key Key, the rig object, a FLAME
rig's armature) and tags it with the take (``mxr_take``: the take file's resolved path and the
source video's sha256, what makes two bakes "the same take") and the datablock (``mxr_animates``).
A re-bake of the same take replaces its actions' content; another take gets new actions, named
after it. An earlier take's actions are never changed or deleted: they keep a fake user, so they
outlive being unassigned, and an NLA strip holding one keeps playing it as baked. A user's action
found on a datablock keeps a fake user too, and the bake says so.

A take's detail and micro shape keys are its own as well (recorded on its Key action, see
``rig.replace_take_keys``): a bake leaves the other takes' keys on the mesh and keys them at 0 in
its own action (``hold_other_takes_keys``), so that it plays alone, also over an earlier take's
NLA strip, and a blend of two takes fades each one's keys with it.

Switching takes (``assign_take``) assigns a take's actions back to the datablocks they were baked
for; per-take keys its actions do not animate (those of takes baked after it) are set to 0.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ..ops.errors import MxrError
from ..ops.take import Take
from .curves import action_curves, assign_action, ensure_fcurve, write_keys
from .flame_rig import armature_of
from .rig import DETAIL, MICRO, OWNED, take_keys

TAKE = "mxr_take"  # on MXR's actions: the identity of the take baked into it (``TakeName.identity``)
TAKE_NAME = "mxr_take_name"  # on MXR's actions: the take's readable name (``TakeName.label``)
ANIMATES = "mxr_animates"  # on MXR's actions: the datablock it was baked for
TAKE_SUFFIXES = (".npz", ".mxr")  # a take file "performer.mxr.npz" is the take "performer"


@dataclass(frozen=True)
class TakeName:
    """What makes two bakes the same take (``identity``), and what its actions are named after."""

    identity: str
    label: str

    @classmethod
    def of(cls, take: Take, take_path: Path | None = None) -> TakeName:
        """The take file's resolved path and the video's sha256: the same file re-made from the same
        video is the same take. A take not read from a file is known by its source video."""
        if take_path is None:
            source, label = take.source_path, Path(take.source_path).stem
        else:
            source, label = str(Path(take_path).resolve()), Path(take_path).name
            for suffix in TAKE_SUFFIXES:
                label = label.removesuffix(suffix)
        return cls(f"{source} sha256:{take.source_sha256}", label)

    @property
    def take_path(self) -> Path | None:
        """The take file the take was baked from (``of``'s identity), None for one known by its video."""
        source = Path(self.identity.rsplit(" sha256:", 1)[0])
        return source if source.suffix == ".npz" else None

    @property
    def key(self) -> str:
        """A short stand-in for the identity, where Blender limits names (enum items)."""
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]


@dataclass
class RigTake:
    """A take baked onto a rig: its action for each datablock it animates."""

    name: TakeName
    actions: list[tuple[bpy.types.ID, bpy.types.Action]] = field(default_factory=list)


def take_action(datablock: bpy.types.ID, label: str, take: TakeName, warnings: list[str]) -> bpy.types.Action:
    """``datablock``'s action for ``take``, assigned to it: the one an earlier bake of the take
    made, else a new one named "MXR <label> · <take label>" (one "MXR": rigs MXR imports are
    already called "MXR ...").

    The earlier action is reused only while no other datablock uses it: a copy of a baked rig or
    character shares it, and baking the copy must not change the original."""
    action = next((found for found in _take_actions(datablock, take.identity) if _used_only_by(found, datablock)),
                  None)
    if action is None:
        name = label if label.startswith("MXR ") else f"MXR {label}"
        action = bpy.data.actions.new(f"{name} · {take.label}" if take.label else name)
        action[OWNED] = True
        action[TAKE], action[TAKE_NAME], action[ANIMATES] = take.identity, take.label, datablock
        action.use_fake_user = True
    assign_keeping(datablock, action, warnings)
    return action


def rig_datablocks(obj: bpy.types.Object) -> list[bpy.types.ID]:
    """What a bake animates on ``obj``: its shape keys, the object, a FLAME rig's armature."""
    key = obj.data.shape_keys if obj.type == "MESH" else None
    return [datablock for datablock in (key, obj, armature_of(obj)) if datablock is not None]


def has_takes(obj: bpy.types.Object) -> bool:
    """Whether a take was baked onto ``obj`` (cheap enough to ask while drawing a panel)."""
    datablocks = rig_datablocks(obj)
    return any(TAKE in action and action.get(ANIMATES) in datablocks for action in bpy.data.actions)


def rig_takes(obj: bpy.types.Object) -> list[RigTake]:
    """The takes baked onto ``obj``, by name: for each, its action per datablock (the one a re-bake
    would replace, where there are several)."""
    datablocks = rig_datablocks(obj)
    names = {action[TAKE]: TakeName(action[TAKE], action.get(TAKE_NAME, "")) for action in bpy.data.actions
             if TAKE in action and action.get(ANIMATES) in datablocks}
    takes = []
    for name in sorted(names.values(), key=lambda name: (name.label, name.identity)):
        take = RigTake(name)
        for datablock in datablocks:
            found = _take_actions(datablock, name.identity)
            if found:
                take.actions.append((datablock, max(found, key=lambda action: _used_only_by(action, datablock))))
        takes.append(take)
    return takes


def shown_take(obj: bpy.types.Object) -> TakeName | None:
    """The take whose actions ``obj``'s datablocks play now (the first one found with one)."""
    for datablock in rig_datablocks(obj):
        action = datablock.animation_data.action if datablock.animation_data is not None else None
        if action is not None and TAKE in action:
            return TakeName(action[TAKE], action.get(TAKE_NAME, ""))
    return None


def assign_take(take: RigTake) -> list[str]:
    """Assign ``take``'s actions to the datablocks they were baked for (nothing is changed if one
    is in NLA tweak mode); per-take shape keys they do not animate are set to 0. -> warnings."""
    tweaked = [datablock.name for datablock, _ in take.actions
               if datablock.animation_data is not None and datablock.animation_data.use_tweak_mode]
    if tweaked:
        raise MxrError(f"{', '.join(tweaked)} in NLA tweak mode: leave it (Tab in the NLA editor) and switch again")
    warnings: list[str] = []
    for datablock, action in take.actions:
        assign_keeping(datablock, action, warnings)
        if isinstance(datablock, bpy.types.Key):
            _rest_unheld_keys(datablock, action)
    return warnings


def other_takes_keys(key: bpy.types.Key, action: bpy.types.Action) -> list[str]:
    """The detail and micro keys on ``key`` that other takes than ``action``'s made."""
    own = set(take_keys(action, DETAIL) + take_keys(action, MICRO))
    names = {name for other in bpy.data.actions if other != action and TAKE in other and other.get(ANIMATES) == key
             for name in take_keys(other, DETAIL) + take_keys(other, MICRO)}
    return sorted(name for name in names - own if name in key.key_blocks)


def hold_other_takes_keys(key: bpy.types.Key, action: bpy.types.Action, frame: float) -> None:
    """Key the other takes' detail and micro keys at 0 in ``action`` (one constant key at
    ``frame``): its take plays alone, also over another take's NLA strip."""
    for name in other_takes_keys(key, action):
        curve = ensure_fcurve(action, key, key.key_blocks[name].path_from_id("value"))
        write_keys(curve, np.array([frame]), np.zeros(1), "CONSTANT")


def _rest_unheld_keys(key: bpy.types.Key, action: bpy.types.Action) -> None:
    """Set the other takes' keys that ``action`` (assigned to ``key``) does not hold to 0: nothing
    animates them now, and they would keep the value the last take playing them left."""
    curves = action_curves(action, key)
    for name in other_takes_keys(key, action):
        if curves is None or curves.find(key.key_blocks[name].path_from_id("value")) is None:
            key.key_blocks[name].value = 0.0


def _take_actions(datablock: bpy.types.ID, identity: str) -> list[bpy.types.Action]:
    """MXR's actions of the take ``identity`` baked for ``datablock``."""
    return [action for action in bpy.data.actions if action.get(TAKE) == identity and action.get(ANIMATES) == datablock]


def assign_keeping(datablock: bpy.types.ID, action: bpy.types.Action, warnings: list[str],
                   slot: bpy.types.ActionSlot | None = None) -> None:
    """Assign ``action`` to ``datablock`` (through ``slot``, if given); the action it replaces
    keeps a fake user (a user's, with a warning), so nothing is lost when it has no other user."""
    animation = datablock.animation_data or datablock.animation_data_create()
    current = animation.action
    if current is not None and current != action:
        current.use_fake_user = True
        if not current.get(OWNED):
            warnings.append(f"kept your action '{current.name}' (fake user) and assigned MXR's bake to "
                            f"{datablock.name}")
    assign_action(animation, action, slot)


def _used_only_by(action: bpy.types.Action, datablock: bpy.types.ID) -> bool:
    """No datablock but ``datablock`` uses ``action`` (assigned, in an NLA strip, or linked by an ID property)."""
    return bpy.data.user_map(subset=[action])[action] <= {datablock}
