"""The open-loop judge's facial actions on the real scan: local, in the direction named, no head model."""
import numpy as np

from mxr.models.scan import load_scan
from mxr.models.scan_actions import ACTION_NAMES, CHIN_TIP, LEFT_BROW, LEFT_CORNER, RIGHT_CORNER, action_fields, plan_clip


def test_each_action_moves_its_own_part_of_the_face_the_way_it_is_named():
    scan = load_scan()
    fields = action_fields(scan)
    assert tuple(fields) == ACTION_NAMES and all(f.shape == scan.vertices.shape for f in fields.values())

    def motion_mm(action: str, landmark: int) -> np.ndarray:
        """The field at the scan vertex nearest an annotated landmark, mm."""
        nearest = np.argmin(np.linalg.norm(scan.vertices - scan.landmarks68[landmark], axis=1))
        return fields[action][nearest] * 1000.0

    assert motion_mm("brow_raise", LEFT_BROW[2])[1] > 4.0 and np.linalg.norm(motion_mm("brow_raise", CHIN_TIP)) < 0.1
    assert motion_mm("brow_lower", LEFT_BROW[0])[1] < -2.0
    smile_left, smile_right = motion_mm("smile", LEFT_CORNER), motion_mm("smile", RIGHT_CORNER)
    assert smile_left[1] > 3.0 and smile_right[1] > 3.0 and smile_left[0] > 2.0 and smile_right[0] < -2.0
    assert motion_mm("jaw_drop", CHIN_TIP)[1] < -5.0 and np.linalg.norm(motion_mm("jaw_drop", LEFT_BROW[2])) < 0.1
    assert motion_mm("pucker", 51)[2] > 2.0  # the upper lip's centre comes forward
    for name, field in fields.items():  # every action stays below 15 mm and leaves the top of the head alone
        assert np.linalg.norm(field, axis=1).max() < 0.015, name
        top = scan.vertices[:, 1] > scan.landmarks68[:, 1].max() + 0.06  # the crown, 6 cm above the brows
        assert np.linalg.norm(field[top], axis=1).max() < 2e-4, name


def test_a_clip_plays_each_action_once_and_holds_it_while_the_head_turns():
    rng = np.random.default_rng(0)
    clip = plan_clip(("smile", "jaw_drop"), 30.0, rng)
    smile, jaw = ACTION_NAMES.index("smile"), ACTION_NAMES.index("jaw_drop")
    assert np.all(clip.intensities[:, [i for i in range(len(ACTION_NAMES)) if i not in (smile, jaw)]] == 0.0)
    held = clip.intensities[clip.hold_frames["smile"], smile]
    assert held.min() >= 0.6 and np.ptp(held) < 1e-9
    assert np.all(clip.intensities[clip.hold_frames["smile"], jaw] == 0.0)
    np.testing.assert_allclose(np.degrees(np.abs(clip.head_angles_rad).max(axis=0)), [20.0, 12.0, 5.0])
    assert np.all(clip.head_angles_rad[0] == 0.0) and np.all(clip.intensities[0] == 0.0)
