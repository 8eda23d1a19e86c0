"""The bake as data, without Blender's scene: timing, refusals, rotations in Blender's conventions."""
from __future__ import annotations

import dataclasses

import bpy  # noqa: F401  (bpy brings its mathutils, the reference for the conventions)
import mathutils
import numpy as np
import pytest

from conftest import synthetic_head, synthetic_take
from mxr.models.bake_plan import DETAIL, SOLVING, TakeDeformation, TimeMapping, check_bakeable, plan_head_bake
from mxr.models.micro_keys import MICRO_LAYER_FROM_EVENTS, components_mm, micro_components
from mxr.models.blender_frame import continuous_eulers_xyz, continuous_quaternions
from mxr.models.retarget import retarget_expressions, solve_units
from mxr.ops.errors import MxrError
from mxr.ops.take import MicroEvent, frame_seconds


def random_rotations(count: int, seed: int = 0) -> np.ndarray:
    """(count, 3, 3) rotations spread over the whole sphere (QR of Gaussian matrices)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(count, 3, 3)))
    q *= np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0] *= -1.0
    return q


def euler_matrix(angles: np.ndarray) -> np.ndarray:
    """Blender's XYZ Euler order, R = Rz Ry Rx, in float64 (mathutils computes in float32)."""
    (cx, cy, cz), (sx, sy, sz) = np.cos(angles), np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_eulers_are_blenders_and_stay_continuous():
    rotations = random_rotations(50)
    eulers = continuous_eulers_xyz(rotations[:1])
    np.testing.assert_allclose(eulers[0], mathutils.Matrix(rotations[0].tolist()).to_euler("XYZ"), atol=1e-6)
    np.testing.assert_allclose(euler_matrix(eulers[0]), np.array(mathutils.Euler(eulers[0], "XYZ").to_matrix()),
                               atol=1e-6)
    # Every frame's angles give its rotation back, whatever branch continuity chose.
    for rotation, angles in zip(rotations, continuous_eulers_xyz(rotations)):
        np.testing.assert_allclose(euler_matrix(angles), rotation, atol=1e-9)
    # A head turning twice round keeps turning: no 2 pi jump between frames.
    yaw = np.radians(np.linspace(0.0, 720.0, 200))
    turning = np.array([euler_matrix(np.array([0.1, 0.2, angle])) for angle in yaw])
    angles = continuous_eulers_xyz(turning)
    assert np.abs(np.diff(angles, axis=0)).max() < 0.1
    np.testing.assert_allclose(angles[:, 2], yaw, atol=1e-9)


def test_quaternions_are_blenders_and_never_flip():
    rotations = random_rotations(50, seed=1)
    quaternions = continuous_quaternions(rotations)
    for rotation, quaternion in zip(rotations, quaternions):
        reference = np.array(mathutils.Matrix(rotation.tolist()).to_quaternion())
        assert min(np.abs(quaternion - reference).max(), np.abs(quaternion + reference).max()) < 1e-6
    spin = np.array([euler_matrix(np.array([0.0, 0.0, angle])) for angle in np.radians(np.linspace(0, 720, 100))])
    assert np.all(np.sum(continuous_quaternions(spin)[1:] * continuous_quaternions(spin)[:-1], axis=1) > 0)


def test_take_time_lands_on_the_scenes_timeline():
    take = synthetic_take(synthetic_head(), frames=31, invalid=(), fps=30.0)
    seconds, warnings = frame_seconds(take)
    assert not warnings
    real_time = TimeMapping.for_take(take, frame_start=10, scene_fps=24.0)
    np.testing.assert_allclose(real_time.scene_frames(seconds), 10 + np.arange(31) * 0.8)  # keys between frames
    matched = TimeMapping.for_take(take, frame_start=10, scene_fps=24.0, match_take=True)
    np.testing.assert_allclose(matched.scene_frames(seconds), 10 + np.arange(31))
    slowed = TimeMapping.for_take(take, frame_start=1, scene_fps=24.0, slowdown=2.5)
    assert slowed.scene_frames(seconds)[-1] == pytest.approx(1 + 1.0 * 24 * 2.5)
    with pytest.raises(MxrError, match="slow motion"):
        TimeMapping.for_take(take, frame_start=1, scene_fps=24.0, slowdown=0.0)


def test_a_scene_frame_reads_as_the_take_frame_keyed_nearest_it():
    take = synthetic_take(synthetic_head(), frames=31, invalid=(), fps=30.0)
    real_time = TimeMapping.for_take(take, frame_start=10, scene_fps=24.0)  # take frame k on scene frame 10 + 0.8 k
    assert [real_time.take_frame(take, frame) for frame in (10, 14, 18, 0, 100)] == [0, 5, 10, 0, 30]
    slowed = TimeMapping.for_take(take, frame_start=1, scene_fps=24.0, slowdown=2.5)  # 2 scene frames a take frame
    assert [slowed.take_frame(take, frame) for frame in (1, 21, 61)] == [0, 10, 30]
    for k in range(31):  # the inverse of scene_frames
        assert real_time.take_frame(take, float(real_time.scene_frames(frame_seconds(take)[0])[k])) == k


def test_variable_frame_rate_follows_the_frames_own_times():
    take = synthetic_take(synthetic_head(), frames=30, invalid=(), fps=30.0)
    stamps = np.arange(30) / 30.0
    stamps[15:] += 0.5  # the camera stalled half a second
    take.timestamps_s = stamps
    seconds, warnings = frame_seconds(take)
    np.testing.assert_allclose(seconds, stamps)
    assert len(warnings) == 1 and "variable frame rate" in warnings[0]
    take.timestamps_s = np.full(30, np.nan)
    seconds, warnings = frame_seconds(take)
    np.testing.assert_allclose(seconds, np.arange(30) / 30.0)
    assert "not usable" in warnings[0]


@pytest.mark.parametrize("breakage, message", [
    ("no face", "has a face"),
    ("no frames", "no frames"),
    ("broken neutral", "neutral"),
])
def test_takes_that_cannot_be_baked_are_refused_before_anything(breakage, message):
    take = synthetic_take(synthetic_head(), frames=12, invalid=())
    if breakage == "no face":
        take.valid = np.zeros(12, bool)
    elif breakage == "no frames":
        take = dataclasses.replace(take, valid=np.zeros(0, bool))
    else:
        take.neutral_mm = take.neutral_mm.copy()
        take.neutral_mm[5, 1] = np.nan
    with pytest.raises(MxrError, match=message):
        check_bakeable(take)


def test_plan_holds_the_units_and_leaves_out_frames_it_cannot_key():
    head = synthetic_head()
    take = synthetic_take(head, frames=20, invalid=(3,))
    take.head_rotation = take.head_rotation.copy()
    take.head_rotation[7] = np.nan  # a face, but no usable pose: not keyed with garbage
    take.events = [MicroEvent(onset_frame=4, apex_frame=9, offset_frame=12, region="mouth", peak_mm=0.4,
                              confidence=0.9)]
    plan = plan_head_bake(head, take, TimeMapping.for_take(take, frame_start=1, scene_fps=24.0), key_micro=False)
    untied = (np.arange(20) >= 4) & (np.arange(20) <= 12)  # the event the units carry keeps its speed
    expected = solve_units(head, take.deformation_mm(), take.neutral_mm, seconds=take.timestamps_s,
                           untied=untied).coefficients
    assert not np.allclose(expected, retarget_expressions(head, take.deformation_mm(), take.neutral_mm,
                                                          seconds=take.timestamps_s), atol=1e-4)
    keyed = np.setdiff1d(np.arange(20), [3, 7])
    np.testing.assert_array_equal(np.flatnonzero(plan.face_found), keyed)
    np.testing.assert_allclose(plan.shape_keys["shape_0"], expected[keyed, 0])
    np.testing.assert_allclose(plan.keyed_frames, 1 + keyed * 0.8)
    assert plan.head_euler.shape == (18, 3)
    assert any("no usable head rotation" in warning for warning in plan.warnings)
    assert [(event.onset, event.apex, event.offset) for event in plan.events] == \
        [pytest.approx((1 + 4 * 0.8, 1 + 9 * 0.8, 1 + 12 * 0.8))]
    assert plan.last_frame == 17  # 1 + 19 * 0.8 = 16.2: the scene must reach frame 17


def test_the_deformation_the_solves_read_is_the_take_less_its_micro_keys():
    head = synthetic_head()
    take = synthetic_take(head, frames=12)
    take.micro_mm = np.zeros_like(take.macro_mm)
    take.micro_mm[4:9] = 0.3
    take.settings = {**take.settings, "network": {"micro_layer": MICRO_LAYER_FROM_EVENTS}}
    take.events = [MicroEvent(onset_frame=4, apex_frame=6, offset_frame=8, region="mouth", peak_mm=0.5,
                              confidence=0.9)]
    components = micro_components(take)
    deformation = TakeDeformation(take, components)
    expected = take.deformation_mm() - components_mm(components, take.frame_count)
    assert len(components) == 1 and len(deformation) == 12
    np.testing.assert_allclose(np.concatenate([deformation[0:5], deformation[5:12]]), expected, atol=1e-6)
    np.testing.assert_allclose(deformation[3:10][:, :, 1], take.macro_mm[3:10, :, 1], atol=1e-6)  # the key took it


def test_events_without_a_micro_key_are_marked_as_kept_in_the_macro_layer():
    head = synthetic_head()
    take = synthetic_take(head, frames=30, invalid=())
    take.micro_mm = np.zeros_like(take.macro_mm)
    take.micro_mm[5:10] = 0.3  # the first event's motion; the second's stayed in the macro layer
    take.settings = {**take.settings, "network": {"micro_layer": MICRO_LAYER_FROM_EVENTS}}
    take.events = [MicroEvent(5, 7, 9, "mouth", 0.5, 0.9), MicroEvent(18, 20, 23, "brows", 0.4, 0.9)]
    plan = plan_head_bake(head, take, TimeMapping.for_take(take, frame_start=1, scene_fps=take.fps))
    assert [(event.region, event.layered) for event in plan.events] == [("mouth", True), ("brows", False)]
    assert [event.region for event in plan.micro_events] == ["mouth"]


def test_a_plan_reports_its_progress_and_stops_when_told():
    head = synthetic_head()
    take = synthetic_take(head, frames=30, invalid=())
    timing = TimeMapping.for_take(take, frame_start=1, scene_fps=take.fps)
    heard = []
    plan_head_bake(head, take, timing, on_progress=lambda stage, fraction: heard.append((stage, fraction)))
    stages = list(dict.fromkeys(stage for stage, _ in heard))
    assert stages == [SOLVING, DETAIL] and all(heard[-1][1] == 1.0 for stage in stages)
    assert [fraction for stage, fraction in heard if stage == SOLVING][-1] == 1.0

    class Stop(Exception):
        pass

    def stop(stage: str, fraction: float) -> None:
        raise Stop

    with pytest.raises(Stop):  # Esc in Blender: the plan is only data, nothing to undo
        plan_head_bake(head, take, timing, on_progress=stop)
