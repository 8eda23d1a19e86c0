"""Known motion injected into real footage (ops/injection.py): the fields, their time course, the
projection through a take's camera and the warp, on small synthetic cases with hand-known answers."""
import cv2
import numpy as np
import pytest

from mxr.models.open_head import load_open_head
from mxr.ops import injection
from mxr.ops.canonical import SKIN_LANDMARK_COUNT
from mxr.ops.take import Take, unobserved_front_end

FOCAL_PX = 1000.0
FRAME_SIZE = (320, 320)  # (width, height) px
DEPTH_MM = 600.0  # the canonical origin's distance from the camera


@pytest.fixture(scope="module")
def neutral_mm() -> np.ndarray:
    """A face-shaped neutral (478, 3) mm: the open head's landmarks, centred."""
    points = load_open_head().landmark_positions().astype(np.float64) * 1000.0
    return points - points.mean(axis=0)


def perspective_take(neutral_mm: np.ndarray, rotations: np.ndarray, shifts_mm: np.ndarray) -> Take:
    """A take whose landmarks are its neutral posed by (T, 3, 3) rotations (take axes: y up, z to
    the viewer) at (T, 3) OpenCV camera shifts mm, seen through the test's pinhole camera; stored
    as ``ops/perspective.py`` stores a pose."""
    count = len(rotations)
    flip = np.diag([1.0, -1.0, -1.0])
    camera = np.einsum("tij,nj->tni", flip @ rotations, neutral_mm) + shifts_mm[:, None]  # (T, 478, 3) mm
    centre = np.array(FRAME_SIZE, np.float64) / 2.0
    landmarks = np.concatenate([FOCAL_PX * camera[..., :2] / camera[..., 2:3] + centre, np.zeros((count, 478, 1))], 2)
    depth = shifts_mm[:, 2]
    translation = np.stack([centre[0] + FOCAL_PX * shifts_mm[:, 0] / depth,
                            -(centre[1] + FOCAL_PX * shifts_mm[:, 1] / depth), np.zeros(count)], axis=1)
    zeros = np.zeros((count, 478, 3), np.float32)
    return Take(source_path="synthetic", source_sha256="0", fps=30.0, frame_size=FRAME_SIZE,
                timestamps_s=np.arange(count) / 30.0, valid=np.ones(count, bool), landmarks_px=landmarks.astype(np.float32),
                head_rotation=rotations.astype(np.float32), head_translation_px=translation.astype(np.float32),
                head_scale_px_per_mm=(FOCAL_PX / depth).astype(np.float32), neutral_mm=neutral_mm.astype(np.float32),
                macro_mm=zeros, micro_mm=zeros, detail_mm=zeros, **unobserved_front_end(count),
                settings={"camera": "perspective", "camera_focal_px": FOCAL_PX})


def frontal_take(neutral_mm: np.ndarray, frames: int = 5) -> Take:
    return perspective_take(neutral_mm, np.repeat(np.eye(3)[None], frames, axis=0),
                            np.tile([0.0, 0.0, DEPTH_MM], (frames, 1)))


# -- fields ----------------------------------------------------------------------------------------------
def test_every_field_peaks_at_one_mm_leaves_the_irises_and_is_local(neutral_mm):
    fields = injection.action_fields(neutral_mm)  # (A, 478, 3)
    size = np.linalg.norm(fields, axis=-1)
    assert fields.shape == (len(injection.ACTIONS), 478, 3)
    np.testing.assert_allclose(size.max(axis=1), 1.0)
    assert np.all(size[:, SKIN_LANDMARK_COUNT:] == 0.0)
    # local: each action moves under a third of the skin landmarks by a tenth of its peak or more
    assert np.all((size[:, :SKIN_LANDMARK_COUNT] >= 0.1).mean(axis=1) < 0.34)
    brows = fields[injection.ACTION_NAMES.index("inner_brow_raise")]
    assert np.linalg.norm(brows[[61, 291, 13, 14, 17, 152]], axis=1).max() < 1e-3  # the mouth stays
    assert brows[336, 1] > 0.5 and brows[107, 1] > 0.5  # both inner brows go up


def test_fields_follow_the_face_not_the_canonical_axes(neutral_mm):
    """A neutral turned 30 degrees about y gives the same field, turned with it."""
    angle = np.radians(30.0)
    turn = np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]])
    straight = injection.action_fields(neutral_mm)
    turned = injection.action_fields(neutral_mm @ turn.T)
    np.testing.assert_allclose(turned, straight @ turn.T, atol=1e-9)


def test_lip_fields_respect_the_mouth(neutral_mm):
    """Geodesic falloff: the upper lip's raise leaves the lower lip; the lip press moves the outer
    lips towards each other and holds the inner lips still (they would fold over each other)."""
    names = injection.ACTION_NAMES
    upper = injection.action_fields(neutral_mm)[names.index("upper_lip_raise")]
    assert upper[0, 1] > 0.8 and np.linalg.norm(upper[[17, 84, 314]], axis=1).max() < 0.05
    press = injection.action_fields(neutral_mm)[names.index("lip_press")]
    assert press[0, 1] < -0.5 and press[17, 1] > 0.5
    assert np.linalg.norm(press[injection.INNER_LIPS], axis=1).max() < 1e-9


# -- events ----------------------------------------------------------------------------------------------
def test_envelope_rises_holds_and_falls_back():
    event = injection.PlantedEvent("lip_press", "micro", onset_s=1.0, apex_s=1.1, hold_s=0.05, offset_s=1.4, peak_mm=1.0)
    times = np.arange(0.0, 2.0, 0.005)
    curve = injection.envelope(times, event)
    assert np.all(curve[times <= 1.0] == 0.0) and np.all(curve[times >= 1.4] == 0.0)
    assert np.all(curve[(times >= 1.1) & (times <= 1.15)] == pytest.approx(1.0))
    assert np.all(np.diff(curve[(times >= 1.0) & (times <= 1.1)]) >= 0)
    assert np.all(np.diff(curve[(times >= 1.15) & (times <= 1.4)]) <= 0)
    assert injection.envelope(np.array([1.05]), event)[0] == pytest.approx(0.5)  # a raised cosine: half way at mid-rise
    onset, apex, offset = event.frames(np.arange(60) / 30.0)  # 30 fps
    assert (onset, apex, offset) == (30, 33, 42)


def test_planned_events_stay_apart_on_usable_frames_within_their_ranges():
    fps = 25.0
    times = np.arange(int(40 * fps)) / fps
    usable = np.ones(len(times), bool)
    usable[200:260] = False  # the neutral, say
    plan = injection.EventPlan()
    events = injection.plan_events(times, usable, np.random.default_rng(3), plan)
    assert len(events) >= 12
    assert {event.action for event in events} == set(injection.ACTION_NAMES) or len(events) < len(injection.ACTIONS)
    for number, event in enumerate(events):
        span = (times >= event.onset_s - plan.margin_s) & (times <= event.offset_s + plan.margin_s)
        assert usable[span].all()
        if number % plan.macro_every == plan.macro_every - 1:
            assert event.kind == "macro" and plan.macro_peak_mm[0] <= event.peak_mm <= plan.macro_peak_mm[1]
        else:
            assert event.kind == "micro" and plan.micro_peak_mm[0] <= event.peak_mm <= plan.micro_peak_mm[1]
            assert plan.micro_duration_s[0] - 1e-9 <= event.offset_s - event.onset_s <= plan.micro_duration_s[1] + 1e-9
    for before, after in zip(events, events[1:]):
        assert after.onset_s - before.offset_s >= plan.gap_s[0] - 1e-9


def test_planted_motion_is_the_fields_times_the_envelopes(neutral_mm):
    fields = injection.action_fields(neutral_mm)
    times = np.arange(90) / 30.0
    events = [injection.PlantedEvent("cheek_raise", "micro", 0.5, 0.6, 0.0, 0.8, 1.2),
              injection.PlantedEvent("brow_lower", "macro", 1.5, 1.9, 0.5, 2.8, 3.0)]
    motion = injection.planted_motion_mm(events, fields, times)  # (T, 478, 3)
    cheek = fields[injection.ACTION_NAMES.index("cheek_raise")]
    np.testing.assert_allclose(motion[18], 1.2 * cheek)  # 0.6 s: the apex
    np.testing.assert_allclose(motion[60], 3.0 * fields[injection.ACTION_NAMES.index("brow_lower")])
    assert np.all(motion[:15] == 0.0) and np.all(motion[85:] == 0.0)


# -- projection ------------------------------------------------------------------------------------------
def test_take_camera_reprojects_the_take(neutral_mm):
    rotations = np.stack([cv2.Rodrigues(np.array([0.1 * k, -0.2, 0.05]))[0] for k in range(3)])
    take = perspective_take(neutral_mm, rotations, np.array([[10.0, -5.0, 550.0], [0.0, 0.0, 600.0], [-8.0, 6.0, 650.0]]))
    camera = injection.take_camera(take)
    np.testing.assert_allclose(camera.image_px(camera.posed(neutral_mm)), take.landmarks_px[..., :2], atol=1e-3)


def test_points_read_back_at_the_neutral_s_depth(neutral_mm):
    """The neutral reads as no motion; a point moved across the camera's view, at its depth,
    reads back as that move, turned into the canonical frame (the engine's reading)."""
    rotations = np.stack([cv2.Rodrigues(np.array([0.1 * k, -0.2, 0.05]))[0] for k in range(3)])
    take = perspective_take(neutral_mm, rotations, np.array([[10.0, -5.0, 550.0], [0.0, 0.0, 600.0], [-8.0, 6.0, 650.0]]))
    camera = injection.take_camera(take)
    posed = camera.posed(neutral_mm)  # (3, 478, 3) mm in the camera
    np.testing.assert_allclose(camera.read_mm(camera.image_px(posed), neutral_mm), 0.0, atol=1e-6)
    across = np.zeros_like(posed)
    across[..., 0], across[..., 1] = 1.5, -0.7  # mm in the camera's x and y: no change of depth
    moved = camera.read_mm(camera.image_px(posed + across), neutral_mm)  # (3, 478, 3)
    np.testing.assert_allclose(moved, np.einsum("tji,tnj->tni", camera.rotations, across), atol=1e-6)


def test_displacement_projects_as_computed_by_hand(neutral_mm):
    """Frontal head, nose tip at depth Z = 600 - z: a 1 mm move along x shifts it f / Z px right,
    along y (up) f / Z px up (image y down), towards the camera by f x (1 / (Z - 1) - 1 / Z)."""
    take = frontal_take(neutral_mm, frames=1)
    camera = injection.take_camera(take)
    nose = 1
    x, y, z = neutral_mm[nose]
    depth = DEPTH_MM - z
    motion = np.zeros((3, 478, 3))
    motion[0, nose], motion[1, nose], motion[2, nose] = (1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)
    landmarks = np.repeat(take.landmarks_px[..., :2].astype(np.float64), 3, axis=0)
    three = injection.TakeCamera(np.repeat(camera.rotations, 3, axis=0), np.repeat(camera.shifts_mm, 3, axis=0),
                                 camera.focal_px, camera.centre_px)
    shift = injection.image_displacements_px(three, landmarks, neutral_mm, motion)[:, nose]  # (3, 2) px
    np.testing.assert_allclose(shift[0], [FOCAL_PX / depth, 0.0], atol=1e-6)
    np.testing.assert_allclose(shift[1], [0.0, -FOCAL_PX / depth], atol=1e-6)
    np.testing.assert_allclose(shift[2], [FOCAL_PX * x * (1 / (depth - 1) - 1 / depth),
                                          -FOCAL_PX * y * (1 / (depth - 1) - 1 / depth)], atol=1e-6)


def test_jitter_does_not_move_the_field(neutral_mm):
    """Landmarks jittering 0.5 px frame to frame on a still head: the field is attached to their
    smoothed positions (the jitter roughly halved: a light smoothing, so a fast real motion such as
    speech does not leave the field behind) and its displacement does not change."""
    take = frontal_take(neutral_mm, frames=60)
    jitter = np.random.default_rng(0).normal(0.0, 0.5, take.landmarks_px[..., :2].shape)
    take.landmarks_px[..., :2] += jitter.astype(np.float32)
    motion = np.repeat(injection.action_fields(neutral_mm)[:1], 60, axis=0)  # (T, 478, 3) a steady 1 mm
    anchors, shift = injection.injected_displacements_px(take, motion)
    middle = slice(10, 50)
    assert np.std(anchors[middle] - anchors[middle].mean(axis=0), axis=0).mean() < 0.6 * 0.5
    assert np.abs(shift[middle] - shift[middle].mean(axis=0)).max() < 0.01


# -- the warp --------------------------------------------------------------------------------------------
def texture(size: int, seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8: smooth noise, a skin-like texture a few px across."""
    noise = np.random.default_rng(seed).normal(0.0, 1.0, (size, size)).astype(np.float32)
    grey = cv2.GaussianBlur(noise, (0, 0), 2.0)
    grey = np.clip(128 + 45 * grey / grey.std(), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def face_anchors_px(neutral_mm: np.ndarray) -> np.ndarray:
    """(478, 2) px: the neutral seen frontally, 1 px per mm, centred in the test frame."""
    return np.array(FRAME_SIZE, np.float64) / 2.0 + neutral_mm[:, :2] * [1.0, -1.0]


def test_a_constant_field_translates_the_face_and_leaves_the_rest(neutral_mm):
    frame = texture(FRAME_SIZE[0])
    anchors = face_anchors_px(neutral_mm)
    shift = np.tile([1.5, -0.75], (478, 1))
    warped = injection.warp_frame(frame, anchors, shift)
    expected = cv2.warpAffine(frame, np.array([[1.0, 0.0, 1.5], [0.0, 1.0, -0.75]]), FRAME_SIZE[::-1],
                              flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    inside = np.zeros(frame.shape[:2], np.uint8)  # well inside the face: the skin landmarks' hull, shrunk
    centre = anchors[:SKIN_LANDMARK_COUNT].mean(axis=0)
    hull = cv2.convexHull((centre + 0.8 * (anchors[injection.FACE_OVAL] - centre)).astype(np.float32)).astype(np.int32)
    cv2.fillConvexPoly(inside, hull, 1)
    difference = np.abs(warped.astype(int) - expected.astype(int))[inside.astype(bool)]
    assert difference.mean() < 0.5 and difference.max() <= 2
    ring = injection.feather_ring_px(anchors)
    outside = np.ones(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(outside, cv2.convexHull(ring.astype(np.float32)).astype(np.int32), 0)
    assert np.array_equal(warped[outside.astype(bool)], frame[outside.astype(bool)])  # bit-exact beyond the ring
    assert np.array_equal(injection.warp_frame(frame, anchors, np.zeros((478, 2))), frame)


def dots_px(points_px: np.ndarray, size: int, sigma_px: float = 1.2) -> np.ndarray:
    """(size, size) float32: a Gaussian dot at each of the points (N, 2) (continuous px)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # pixel centres
    image = np.zeros((size, size))
    for x, y in points_px:
        image += 200.0 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sigma_px**2)
    return image.astype(np.float32)


def centroid_px(image: np.ndarray, near_px: np.ndarray, radius_px: float = 4.0) -> np.ndarray:
    """(2,) continuous px: the intensity centroid of ``image`` within ``radius_px`` of ``near_px``."""
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(np.float64) + 0.5
    window = (np.abs(xx - near_px[0]) < radius_px) & (np.abs(yy - near_px[1]) < radius_px)
    weight = image[window]
    return np.array([xx[window] @ weight, yy[window] @ weight]) / weight.sum()


def test_a_smooth_field_moves_the_skin_under_each_landmark_by_its_displacement(neutral_mm):
    """By construction: a dot drawn on each of a spread of moved landmarks lands where the planted
    motion (two real actions, 1-4 px) puts that landmark; dots on still landmarks stay."""
    anchors = face_anchors_px(neutral_mm)
    fields = injection.action_fields(neutral_mm)
    names = injection.ACTION_NAMES
    motion = 2.0 * (fields[names.index("inner_brow_raise")] + fields[names.index("lip_corner_pull")])  # px = mm here
    shift = motion[:, :2] * [1.0, -1.0]
    size = np.linalg.norm(shift[:SKIN_LANDMARK_COUNT], axis=1)
    skin = anchors[:SKIN_LANDMARK_COUNT]
    apart = np.linalg.norm(skin[:, None] - skin[None], axis=-1)  # (468, 468) px
    # still: nothing within 4 px moves (the open head's lips touch: a still lower lip's dot would
    # take in the moving upper lip)
    still = np.flatnonzero(np.all((apart > 4.0) | (size[None] < 1e-3), axis=1))
    chosen: list[int] = []  # landmarks 8 px apart or more, so the dots do not overlap
    for index in np.r_[np.flatnonzero(size >= 1.0), still]:
        if all(np.linalg.norm(anchors[index] - anchors[other]) > 8.0 for other in chosen):
            chosen.append(int(index))
    frame = dots_px(anchors[chosen], FRAME_SIZE[0])
    warped = injection.warp_frame(frame, anchors, shift)
    moved = [index for index in chosen if size[index] >= 1.0]
    assert len(moved) >= 12 and len(chosen) - len(moved) >= 12
    error = np.array([np.linalg.norm(centroid_px(warped, anchors[k] + shift[k]) - centroid_px(frame, anchors[k]) - shift[k])
                      for k in chosen])  # (N,) px
    # 0.04 px of it is the centroid's own (a constant shift reads so); the rest, the dots' spread
    # over triangles of different slopes
    assert np.median(error) < 0.12 and error.max() < 0.25
