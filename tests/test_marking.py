"""Marking a micro-expression on the timeline in real bpy (mxr_addon/marking.py): the take gains an
event and the rig a micro layer; the take before it is kept; other layers keep their tuning."""
from __future__ import annotations

import bpy
import numpy as np
import pytest

from conftest import synthetic_head, synthetic_take
from mxr.models.micro_keys import MICRO_LAYER_FROM_EVENTS
from mxr.models.network.event_profile import micro_profile
from mxr.models.network.events import region_landmarks
from mxr.models.network.features import EVENT_REGIONS, region_membership
from mxr.mxr_addon.heads import remember
from mxr.mxr_addon.panels import VIEW3D_PT_mxr_micro
from mxr.mxr_addon.pipeline import bake_take_file
from mxr.mxr_addon.rig import build_rig
from mxr.ops.take import MicroEvent, load_take, save_take

FRAME_START = 101
ONSET, OFFSET = 30, 42  # take frames of the brows' flicker (30 fps, as the scene)


def flicker_take(head, mouth_event: bool):
    """90 still frames whose brows rise 0.8 mm and fall back over take frames ONSET..OFFSET (no
    event there), and, with ``mouth_event``, a found mouth micro-expression at frames 6-15."""
    take = synthetic_take(head, frames=90, invalid=())
    take.macro_mm[:] = 0.0
    take.micro_mm[:] = 0.0
    times = np.arange(90) / take.fps
    brows = region_landmarks(region_membership(EVENT_REGIONS)[EVENT_REGIONS.index("brows")])
    rise = micro_profile(times, ONSET / take.fps, 34 / take.fps, 0.0, OFFSET / take.fps)  # (T,)
    take.macro_mm[:, brows, 1] = 0.8 * rise[:, None]
    take.macro_mm += np.random.default_rng(2).normal(0.0, 0.01, take.macro_mm.shape).astype(np.float32)
    if mouth_event:
        basis = head.landmark_basis() * 1000.0 * 0.6  # (K, 478, 3) mm
        take.micro_mm[:] = micro_profile(times, 0.2, 0.3, 0.0, 0.5)[:, None, None] * basis[0]
        take.events = [MicroEvent(6, 9, 15, "mouth", 0.8, 0.9)]
        take.settings = {"network": {"micro_layer": MICRO_LAYER_FROM_EVENTS}}
    return take


@pytest.fixture
def baked_flicker(empty_blend, tmp_path, request):
    """A rig playing the flicker take, baked from ``<tmp>/take.npz``; -> (scene, rig, take path)."""
    head = remember(synthetic_head())
    scene = empty_blend
    scene.frame_start = FRAME_START
    rig = build_rig(head, scene.collection)
    bpy.context.view_layer.objects.active = rig
    take_path = tmp_path / "take.npz"
    save_take(flicker_take(head, mouth_event=getattr(request, "param", False)), take_path)
    bake_take_file(scene, take_path, rig, reference_video=False)
    return scene, rig, take_path


def test_a_marked_flicker_becomes_a_micro_layer_of_the_take(baked_flicker):
    scene, rig, take_path = baked_flicker
    before = take_path.read_bytes()
    assert len(rig.mxr_micro_layers) == 0 and VIEW3D_PT_mxr_micro.poll(bpy.context)  # the panel offers to mark
    result = bpy.ops.mxr.mark_micro_expression(first_frame=FRAME_START + ONSET, last_frame=FRAME_START + OFFSET,
                                               region="BROWS")
    assert result == {"FINISHED"}
    (layer,) = rig.mxr_micro_layers
    assert layer.region == "brows" and (layer.onset_frame, layer.offset_frame) == (FRAME_START + ONSET,
                                                                                      FRAME_START + OFFSET)
    scene.frame_set(round(layer.apex_frame))
    assert rig.data.shape_keys.key_blocks[layer.key_name].value == pytest.approx(1.0, abs=0.05)
    (event,) = load_take(take_path).events  # the take file holds the mark
    assert (event.onset_frame, event.offset_frame, event.region) == (ONSET, OFFSET, "brows")
    assert (take_path.parent / "take.before-mark-1.npz").read_bytes() == before  # and the take before it is kept


@pytest.mark.parametrize("baked_flicker", [True], indirect=True)
def test_marking_keeps_the_tuning_of_the_layers_already_there(baked_flicker):
    _, rig, _ = baked_flicker
    (mouth,) = rig.mxr_micro_layers
    mouth.intensity = 2.0
    assert bpy.ops.mxr.mark_micro_expression(first_frame=FRAME_START + ONSET, last_frame=FRAME_START + OFFSET,
                                             region="BROWS") == {"FINISHED"}
    layers = {layer.region: layer for layer in rig.mxr_micro_layers}
    assert set(layers) == {"mouth", "brows"} and layers["mouth"].intensity == 2.0 and layers["brows"].intensity == 1.0


def test_a_mark_where_nothing_rises_is_refused_and_changes_nothing(baked_flicker):
    _, rig, take_path = baked_flicker
    before = take_path.read_bytes()
    with pytest.raises(RuntimeError, match="nothing in frames"):  # bpy.ops raises an operator's ERROR report
        bpy.ops.mxr.mark_micro_expression(first_frame=FRAME_START + 60, last_frame=FRAME_START + 70, region="BROWS")
    assert take_path.read_bytes() == before and not list(take_path.parent.glob("*.before-mark-*"))
    assert len(rig.mxr_micro_layers) == 0
