"""Baking takes onto rigs in real bpy: values, gaps, ownership, bad input, both operators."""
from __future__ import annotations

import math

import bpy
import numpy as np
import pytest

from conftest import synthetic_head, synthetic_take
from mxr.models.micro_keys import MICRO_LAYER_FROM_EVENTS
from mxr.models.network.event_profile import micro_profile
from mxr.models.open_head import load_open_head
from mxr.models.retarget import displacement_on, neutral_to_head, retarget_expressions
from mxr.mxr_addon.bake import bake_take
from mxr.mxr_addon.heads import remember
from mxr.mxr_addon.rig import build_rig
from mxr.ops.take import MicroEvent, save_take


@pytest.fixture
def head():
    return remember(synthetic_head())


def curves_of(action):
    """All F-curves of an action, on the 4.2 (legacy) and the 4.4+ (slotted) API alike."""
    if not hasattr(action, "slots"):
        return list(action.fcurves)
    from bpy_extras.anim_utils import action_get_channelbag_for_slot

    bags = [action_get_channelbag_for_slot(action, slot) for slot in action.slots]
    return [curve for bag in bags if bag is not None for curve in bag.fcurves]


def curve_at(action, data_path):
    return next(curve for curve in curves_of(action) if curve.data_path == data_path)


def evaluated(scene, rig, frame):
    """(shape key values by name, mxr_face_found, rotation_euler) at a scene frame."""
    scene.frame_set(frame)
    values = {block.name: block.value for block in rig.data.shape_keys.key_blocks}
    return values, rig["mxr_face_found"], tuple(rig.rotation_euler)


def test_bake_values_match_retargeting_and_gaps_have_no_keys(empty_blend, head):
    scene = empty_blend
    scene.frame_start = 5
    take = synthetic_take(head, frames=24, invalid=(3, 4, 10), fps=29.97)
    rig = build_rig(head, scene.collection)
    scene.frame_end = 20  # the user's range: it grows to hold the take, and says so
    result = bake_take(scene, rig, head, take, match_take=True)
    expected = retarget_expressions(head, take.deformation_mm(), take.neutral_mm, seconds=take.timestamps_s)  # (T, K)

    assert (result.frame_count, result.frames_keyed) == (24, 21)
    assert result.keys == list(head.expression_names)
    assert (scene.frame_start, scene.frame_end) == (5, 28) == (result.first_frame, result.last_frame)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(29.97)
    assert any("the scene now runs at the take's 29.97 frames/s (it was 30)" in w for w in result.warnings)
    assert any("end moved from frame 20 to 28" in w for w in result.warnings)
    for k in (0, 1, 7, 15, 23):
        values, found, _ = evaluated(scene, rig, scene.frame_start + k)
        assert found == 1
        np.testing.assert_allclose([values[n] for n in head.expression_names], expected[k], atol=1e-5)
    for k in (3, 4, 10):
        assert evaluated(scene, rig, scene.frame_start + k)[1] == 0

    key = rig.data.shape_keys
    for name in head.expression_names:
        curve = curve_at(key.animation_data.action, f'key_blocks["{name}"].value')
        keyed = {round(point.co[0]) for point in curve.keyframe_points}
        assert keyed == {scene.frame_start + k for k in range(24) if k not in (3, 4, 10)}
        assert {point.interpolation for point in curve.keyframe_points} == {"LINEAR"}


def test_the_take_plays_in_real_time_at_the_scenes_own_rate(empty_blend, head):
    scene = empty_blend
    scene.render.fps, scene.frame_start, scene.frame_end = 24, 11, 20
    take = synthetic_take(head, frames=31, invalid=(), fps=30.0)
    rig = build_rig(head, scene.collection)
    result = bake_take(scene, rig, head, take)
    assert scene.render.fps / scene.render.fps_base == 24  # the user's rate is kept
    assert (scene.frame_end, result.last_frame) == (35, 35)  # 31 frames at 30 fps = 1 s = 24 scene frames
    assert any("end moved from frame 20 to 35" in w for w in result.warnings)
    curve = curve_at(rig.data.shape_keys.animation_data.action, 'key_blocks["shape_0"].value')
    keyed = np.array([point.co[0] for point in curve.keyframe_points])
    np.testing.assert_allclose(keyed, 11 + np.arange(31) * 0.8, atol=1e-4)  # keys between frames
    expected = retarget_expressions(head, take.deformation_mm(), take.neutral_mm, seconds=take.timestamps_s)  # (T, K)
    scene.frame_set(11 + 8)  # take frame 10 (1/3 s)
    assert rig.data.shape_keys.key_blocks["shape_0"].value == pytest.approx(expected[10, 0], abs=1e-5)


def test_head_rotation_in_blender_axes(empty_blend, head):
    scene = empty_blend
    take = synthetic_take(head, frames=12, invalid=())
    rig = build_rig(head, scene.collection)
    bake_take(scene, rig, head, take)
    # The synthetic pose is a yaw about the head's up axis (canonical +Y) = Blender's +Z.
    for k in (0, 6, 11):
        yaw = math.atan2(float(take.head_rotation[k, 0, 2]), float(take.head_rotation[k, 0, 0]))
        rotation = evaluated(scene, rig, scene.frame_start + k)[2]
        np.testing.assert_allclose(rotation, (0.0, 0.0, yaw), atol=1e-5)

    # Baked again without head rotation: the first take's rotation must not keep animating the rig.
    bake_take(scene, rig, head, take, key_rotation=False)
    assert not [curve for curve in curves_of(rig.animation_data.action) if curve.data_path == "rotation_euler"]


def test_rebake_replaces_only_mxr_data(empty_blend, head):
    scene = empty_blend
    rig = build_rig(head, scene.collection)
    key = rig.data.shape_keys
    mine = rig.shape_key_add(name="my_corrective", from_mix=False)
    mine.value = 0.25
    user_action = bpy.data.actions.new("animator's blink")
    key.animation_data_create().action = user_action
    key.key_blocks["shape_0"].value = 0.9
    key.key_blocks["shape_0"].keyframe_insert("value", frame=1)

    first = bake_take(scene, rig, head, synthetic_take(head, seed=1))
    assert any("animator's blink" in warning for warning in first.warnings)
    mxr_action = key.animation_data.action
    assert mxr_action["mxr_owned"] and mxr_action is not user_action
    # One "MXR", not two, and the take it holds (the source video's name, for a take not read from a file).
    assert mxr_action.name == f"{rig.name} Expressions · performer" and rig.name.startswith("MXR ")

    second_take = synthetic_take(head, seed=2)
    second = bake_take(scene, rig, head, second_take)
    assert second.warnings == ["no face in 3 of 24 frames: no keys there (the curves interpolate across)"]
    assert key.animation_data.action == mxr_action  # MXR's own action is reused, not duplicated
    assert len([a for a in bpy.data.actions if a.get("mxr_owned")]) == 2  # expressions + head
    expected = retarget_expressions(head, second_take.deformation_mm(), second_take.neutral_mm,
                                    seconds=second_take.timestamps_s)
    values, _, _ = evaluated(scene, rig, scene.frame_start)
    np.testing.assert_allclose([values[n] for n in head.expression_names], expected[0], atol=1e-5)

    # The animator switches back to their action; a re-bake finds MXR's own action again.
    key.animation_data.action = user_action
    third = bake_take(scene, rig, head, second_take)
    assert key.animation_data.action == mxr_action and any("animator's blink" in w for w in third.warnings)
    assert len([a for a in bpy.data.actions if a.get("mxr_owned")]) == 2

    assert user_action.name in bpy.data.actions and user_action.use_fake_user
    kept = curves_of(user_action)
    assert [curve.data_path for curve in kept] == ['key_blocks["shape_0"].value']
    assert [tuple(point.co) for point in kept[0].keyframe_points] == [(1.0, pytest.approx(0.9))]
    assert key.key_blocks["my_corrective"].value == pytest.approx(0.25)


def test_bake_operator_on_corrupt_take_cancels_and_creates_nothing(empty_blend, tmp_path):
    corrupt = tmp_path / "broken.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a take")
    counts = (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.actions))
    # bpy.ops turns an operator's ERROR report into RuntimeError (the UI shows the report instead).
    for path, message in ((corrupt, "not a readable take file"), (tmp_path / "missing.npz", "take file not found")):
        with pytest.raises(RuntimeError, match=message):
            bpy.ops.mxr.bake_take(filepath=str(path))
    assert (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.actions)) == counts


def broken_take(head, breakage):
    """A take that loads but cannot be baked."""
    take = synthetic_take(head, frames=12, invalid=(), source_path="/nonexistent/broken.mp4")
    if breakage == "no face":
        take.valid = np.zeros(12, bool)
        for name in ("macro_mm", "micro_mm", "detail_mm", "head_rotation"):
            getattr(take, name)[:] = np.nan
    else:
        take.neutral_mm[3] = np.nan
    return take


@pytest.mark.parametrize("breakage, message", [("no face", "has a face"), ("broken neutral", "neutral")])
def test_a_take_that_cannot_be_baked_changes_nothing(empty_blend, tmp_path, breakage, message):
    head = load_open_head()
    save_take(broken_take(head, breakage), tmp_path / "broken.npz")
    counts = lambda: (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.actions), len(bpy.data.cameras))  # noqa: E731
    before = counts()
    with pytest.raises(RuntimeError, match=message):  # a fresh scene: no orphan head is left behind
        bpy.ops.mxr.bake_take(filepath=str(tmp_path / "broken.npz"))
    assert counts() == before

    good = synthetic_take(head, frames=10, invalid=(), source_path="/nonexistent/broken.mp4")  # the same video
    save_take(good, tmp_path / "good.npz")
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "good.npz")) == {"FINISHED"}
    rig = bpy.context.view_layer.objects.active
    state = lambda: ({a.name: [tuple(p.co) for c in curves_of(a) for p in c.keyframe_points] for a in bpy.data.actions},  # noqa: E731
                     counts(), empty_blend.render.fps, empty_blend.frame_end, [b.name for b in rig.data.shape_keys.key_blocks])
    baked = state()
    with pytest.raises(RuntimeError, match=message):  # onto the rig: the earlier bake stays as it was
        bpy.ops.mxr.bake_take(filepath=str(tmp_path / "broken.npz"), match_take=True)
    assert state() == baked


def test_bake_operator_builds_open_head_and_reference_camera(empty_blend, tmp_path):
    head = load_open_head()
    take = synthetic_take(head, frames=10, invalid=(2,), source_path=str(tmp_path / "gone.mp4"))
    save_take(take, tmp_path / "take.npz")
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "take.npz")) == {"FINISHED"}
    rig = bpy.context.view_layer.objects.active
    assert rig["mxr_head"] == head.name
    expected = retarget_expressions(head, take.deformation_mm(), take.neutral_mm, seconds=take.timestamps_s)
    values, _, _ = evaluated(empty_blend, rig, empty_blend.frame_start + 5)
    np.testing.assert_allclose([values[n] for n in head.expression_names], expected[5], atol=1e-5)
    camera = bpy.data.objects["MXR Reference"]
    assert camera["mxr_owned"] and len(camera.data.background_images) == 0  # video missing: warned only
    # Baking again onto the same (active) rig reuses it.
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "take.npz")) == {"FINISHED"}
    assert len([obj for obj in bpy.data.objects if obj.type == "MESH"]) == 1


def test_the_bakes_smoothing_is_the_users_and_is_kept_for_a_rebake(empty_blend, tmp_path):
    from mxr.mxr_addon.pipeline import baked_timing
    from mxr.models.retarget import SMOOTHING_S

    head = load_open_head()
    take = synthetic_take(head, frames=12, invalid=(), source_path=str(tmp_path / "gone.mp4"))
    save_take(take, tmp_path / "take.npz")
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "take.npz"), smoothing=0.0) == {"FINISHED"}
    rig = bpy.context.view_layer.objects.active
    each_alone = retarget_expressions(head, take.deformation_mm(), take.neutral_mm)  # no times: each frame alone
    values, _, _ = evaluated(empty_blend, rig, empty_blend.frame_start + 5)
    np.testing.assert_allclose([values[n] for n in head.expression_names], each_alone[5], atol=1e-5)
    assert baked_timing(rig)[1]["smoothing_s"] == 0.0  # a re-bake (marking a micro-expression) bakes it so again
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "take.npz")) == {"FINISHED"}  # the default
    assert baked_timing(rig)[1]["smoothing_s"] == pytest.approx(SMOOTHING_S)
    smoothed = retarget_expressions(head, take.deformation_mm(), take.neutral_mm, seconds=take.timestamps_s)
    values, _, _ = evaluated(empty_blend, rig, empty_blend.frame_start + 5)
    np.testing.assert_allclose([values[n] for n in head.expression_names], smoothed[5], atol=1e-5)
    assert not np.allclose(smoothed, each_alone, atol=1e-3)


def test_micro_events_become_timeline_markers_and_only_mxrs_are_replaced(empty_blend, tmp_path):
    head = load_open_head()
    take = synthetic_take(head, frames=20, invalid=(), source_path=str(tmp_path / "gone.mp4"))
    take.events = [MicroEvent(onset_frame=4, apex_frame=7, offset_frame=11, region="mouth", peak_mm=0.42, confidence=0.9),
                   MicroEvent(onset_frame=13, apex_frame=15, offset_frame=18, region="brows", peak_mm=0.3, confidence=0.8)]
    save_take(take, tmp_path / "events.npz")
    empty_blend.timeline_markers.new("Intro", frame=3)  # the user's own
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "events.npz")) == {"FINISHED"}
    rig = bpy.context.view_layer.objects.active
    start = empty_blend.frame_start
    ours = sorted((m.frame, m.name) for m in empty_blend.timeline_markers if m.name.startswith(f"MXR {rig.name}: "))
    # The take's micro layer is not one built from its events: no micro keys, and the markers say so.
    assert ours == [(start + 7, f"MXR {rig.name}: mouth 0.42 mm ({start + 4}-{start + 11}), in macro"),
                    (start + 15, f"MXR {rig.name}: brows 0.30 mm ({start + 13}-{start + 18}), in macro")]
    take.events = []
    save_take(take, tmp_path / "quiet.npz")
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "quiet.npz")) == {"FINISHED"}  # the same rig again
    assert [m.name for m in empty_blend.timeline_markers] == ["Intro"]


def test_each_micro_expression_gets_its_own_key_keyed_over_its_frames_only(empty_blend):
    head = load_open_head()
    scene = empty_blend
    take = synthetic_take(head, frames=40, invalid=(30,))
    times = np.arange(40) / take.fps
    profile = micro_profile(times, 0.2, 0.3, 0.0, 0.5)  # frames 6..15
    mouth_pattern = head.landmark_basis()[head.expression_names.index("mouthSmileLeft")] * 1000.0 * 0.6  # mm
    take.micro_mm[:] = profile[:, None, None] * mouth_pattern
    take.micro_mm[30] = np.nan
    take.events = [MicroEvent(onset_frame=6, apex_frame=9, offset_frame=15, region="mouth", peak_mm=1.0, confidence=0.9)]
    take.settings = {"network": {"micro_layer": MICRO_LAYER_FROM_EVENTS}}  # as the engine writes it
    rig = build_rig(head, scene.collection)
    mine = rig.shape_key_add(name="my_corrective", from_mix=False)

    scene.frame_start = 101
    result = bake_take(scene, rig, head, take)
    assert result.micro_keys == ["MXR_Micro mouth 110"]  # named after its apex's scene frame, like its marker
    key = rig.data.shape_keys
    curve = curve_at(key.animation_data.action, 'key_blocks["MXR_Micro mouth 110"].value')
    keyed = [round(point.co[0]) - scene.frame_start for point in curve.keyframe_points]
    assert keyed == list(range(4, 18))  # the event and its margin: a curve the animator can move as one piece
    values, _, _ = evaluated(scene, rig, scene.frame_start + 9)
    assert values["MXR_Micro mouth 110"] == pytest.approx(1.0, abs=1e-5)
    assert evaluated(scene, rig, scene.frame_start + 25)[0]["MXR_Micro mouth 110"] == 0.0  # outside: nothing
    # The expressions carry the rest of the face: the macro layer alone (which the synthetic basis holds exactly).
    expected = retarget_expressions(head, take.macro_mm, take.neutral_mm, seconds=take.timestamps_s)
    np.testing.assert_allclose([values[n] for n in head.expression_names], expected[9], atol=1e-4)
    # The key's shape is the pattern, spread over the mesh: seen at the landmarks, it is the pattern.
    basis = np.array([v.co for v in key.reference_key.data])
    shape = np.array([v.co for v in key.key_blocks["MXR_Micro mouth 110"].data]) - basis  # Blender axes
    at_landmarks = head.landmarks.locate(np.stack([shape[:, 0], shape[:, 2], -shape[:, 1]], axis=1))  # head axes
    target = displacement_on(neutral_to_head(head, take.neutral_mm), mouth_pattern[None])[0]
    face = np.arange(468)
    assert np.median(np.linalg.norm(at_landmarks[face] - target[face], axis=1)) < 0.1 * np.abs(target).max()

    take.events = []  # the same rig, a take without micro-expressions: MXR's micro keys go, the user's stay
    assert bake_take(scene, rig, head, take).micro_keys == []
    assert "MXR_Micro mouth 110" not in key.key_blocks and mine.name in key.key_blocks
    assert not [c for c in curves_of(key.animation_data.action) if "MXR_Micro" in c.data_path]


def write_video(path, frames=12, size=(160, 120), fps=30.0):
    """A small real video file (moving grey ramp, no face), written with OpenCV."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for index in range(frames):
        image = np.full((size[1], size[0], 3), 40 + 10 * index, dtype=np.uint8)
        writer.write(image)
    writer.release()
    return path


@pytest.mark.engine
def test_reference_video_is_the_camera_background(empty_blend, tmp_path):
    empty_blend.frame_start = 3
    head = load_open_head()
    video = write_video(tmp_path / "performer.mp4")
    users_clip = bpy.data.movieclips.load(str(video))  # the animator tracks this very video
    users_clip.frame_start = 40
    take = synthetic_take(head, frames=12, invalid=(), source_path=str(video))
    take.frame_indices = take.frame_indices + 5  # the take starts at the clip's frame 5
    save_take(take, tmp_path / "take.npz")
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "take.npz")) == {"FINISHED"}
    camera = bpy.data.objects["MXR Reference"]
    assert camera.data.show_background_images and len(camera.data.background_images) == 1
    background = camera.data.background_images[0]
    assert background.source == "MOVIE_CLIP" and background.clip.filepath == str(video)
    assert background.clip.frame_start == empty_blend.frame_start - 5  # video frame 5 = take frame 0
    assert empty_blend.camera == camera
    assert background.clip != users_clip and users_clip.frame_start == 40 and not users_clip.get("mxr_owned")
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "take.npz")) == {"FINISHED"}  # re-bake reuses MXR's clip
    assert len(bpy.data.movieclips) == 2


def test_demo_blend_is_saved_and_head_frames_render(empty_blend, tmp_path):
    from mxr.mxr_addon.batch import build_demo_blend

    head = load_open_head()
    save_take(synthetic_take(head, frames=8, invalid=(1,)), tmp_path / "take.npz")
    renders = build_demo_blend(tmp_path / "take.npz", tmp_path / "out" / "demo.blend", tmp_path / "renders", [0, 5])
    assert [path.name for path in renders] == ["head_00001.png", "head_00006.png"]
    assert all(path.stat().st_size > 1000 for path in renders)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["demo.blend"]  # no temp left behind


@pytest.mark.engine
def test_reconstruct_operator_reports_engine_errors_and_changes_nothing(empty_blend, tmp_path):
    counts = (len(bpy.data.objects), len(bpy.data.actions))
    with pytest.raises(RuntimeError, match="video not found"):
        bpy.ops.mxr.reconstruct_video(filepath=str(tmp_path / "missing.mp4"))
    video = write_video(tmp_path / "no_face.mp4")
    with pytest.raises(RuntimeError, match="engine"):  # the real engine finds no face in it
        bpy.ops.mxr.reconstruct_video(filepath=str(video), take_path=str(tmp_path / "take.npz"))
    assert not (tmp_path / "take.npz").exists()
    assert (len(bpy.data.objects), len(bpy.data.actions)) == counts


@pytest.mark.engine
def test_reconstruct_operator_runs_the_engine_and_bakes(empty_blend, tmp_path):
    """The blocking path scripts use: engine process -> take next to nothing (take_path) -> bake."""
    from mxr.ops.sample_data import DEFAULT_CLIP, SAMPLE_DATA_DIR

    video = SAMPLE_DATA_DIR / DEFAULT_CLIP
    if not video.is_file():
        pytest.skip("sample clip missing: run ./scripts/setup")
    take_path = tmp_path / "take.npz"
    assert bpy.ops.mxr.reconstruct_video(filepath=str(video), take_path=str(take_path)) == {"FINISHED"}
    rig = bpy.context.view_layer.objects.active
    assert take_path.is_file() and rig["mxr_source"] == str(video)
    assert (empty_blend.frame_start, empty_blend.frame_end) == (1, 250)  # the user's range holds the take: kept
    assert tuple(rig.animation_data.action.frame_range) == (1, 72)
    assert len(bpy.data.objects["MXR Reference"].data.background_images) == 1


@pytest.mark.engine
def test_reconstruct_operator_takes_the_neutral_the_user_names(empty_blend, tmp_path):
    from mxr.ops.sample_data import DEFAULT_CLIP, SAMPLE_DATA_DIR
    from mxr.ops.take import load_take

    video = SAMPLE_DATA_DIR / DEFAULT_CLIP
    if not video.is_file():
        pytest.skip("sample clip missing: run ./scripts/setup")
    counts = (len(bpy.data.objects), len(bpy.data.actions))
    with pytest.raises(RuntimeError, match="must not come before"):
        bpy.ops.mxr.reconstruct_video(filepath=str(video), take_path=str(tmp_path / "bad.npz"), neutral="FRAMES",
                                      neutral_first=9, neutral_last=3)
    assert not (tmp_path / "bad.npz").exists() and (len(bpy.data.objects), len(bpy.data.actions)) == counts
    take_path = tmp_path / "take.npz"
    assert bpy.ops.mxr.reconstruct_video(filepath=str(video), take_path=str(take_path), neutral="FRAMES",
                                         neutral_first=2, neutral_last=8) == {"FINISHED"}
    settings = load_take(take_path).settings
    assert settings["neutral_method"] == "frames" and settings["neutral_frames"] == [2, 8]


def test_takes_are_kept_with_the_project_and_clips_of_the_same_name_do_not_share_one(empty_blend, tmp_path):
    from pathlib import Path

    from mxr.mxr_addon.operators import default_take_path

    first, second = tmp_path / "day1" / "clip.mp4", tmp_path / "day2" / "clip.mp4"
    unsaved = default_take_path(first)
    assert unsaved.parent == Path(bpy.utils.user_resource("DATAFILES", path="mxr_takes"))  # not the temp folder
    assert default_take_path(second) != unsaved and default_take_path(first) == unsaved
    # the case (#19 item 12): /shoot1/take01.mp4 and /shoot2/take01.mov; and one name in one folder
    takes = {default_take_path(tmp_path / "shoot1" / "take01.mp4"), default_take_path(tmp_path / "shoot2" / "take01.mov"),
             default_take_path(tmp_path / "shoot1" / "take01.mov")}
    assert len(takes) == 3
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot 12.blend"))
    saved = default_take_path(first)
    assert saved.parent == tmp_path / "shot 12_mxr_takes" and saved.name.startswith("clip-")
