"""Blinks measured from the eyes' opening (models/blinks.py), and held there by the unit solve."""
from __future__ import annotations

import numpy as np

from mxr.models.blinks import (BLINK_OPEN_SHARE, BLINK_SHUT_SHARE, blink_columns, blink_from_opening,
                               measured_blinks)
from mxr.models.open_head import load_open_head
from mxr.models.retarget import solve_units
from mxr.ops.neutral import face_measures


def test_an_eyes_opening_reads_as_its_blink():
    shares = np.array([1.1, BLINK_OPEN_SHARE, (BLINK_OPEN_SHARE + BLINK_SHUT_SHARE) / 2, BLINK_SHUT_SHARE, 0.1, np.nan])
    np.testing.assert_allclose(blink_from_opening(shares), [0.0, 0.0, 0.5, 1.0, 1.0, np.nan])


def test_each_blink_unit_closes_the_eye_whose_lids_it_moves():
    head = load_open_head()
    names = head.expression_names
    columns = blink_columns(names, head.landmark_basis())
    assert set(columns) == {names.index("eyeBlinkLeft"), names.index("eyeBlinkRight")}
    assert sorted(columns.values()) == [0, 1]
    left_eye = columns[names.index("eyeBlinkLeft")]
    closing_left = head.landmark_positions(np.eye(len(names))[[names.index("eyeBlinkLeft")]])[0]  # (478, 3) m
    opening = face_measures(closing_left[None] * 1000.0)[0, :2] / face_measures(head.landmark_positions()[None] * 1000.0)[0, :2]
    assert opening[left_eye] < 0.5 < opening[1 - left_eye]  # the unit shuts that eye, not the other


def test_the_solve_holds_each_blink_at_its_measurement():
    head = load_open_head()
    names = head.expression_names
    neutral_mm = head.landmark_positions().astype(np.float64) * 1000.0
    amounts = np.zeros((3, len(names)))
    amounts[1, names.index("eyeBlinkLeft")] = 0.5  # one eye half shut
    amounts[2, names.index("mouthSmileLeft")] = amounts[2, names.index("mouthSmileRight")] = 0.8  # a smile
    faces_mm = head.landmark_positions(amounts).astype(np.float64) * 1000.0  # (3, 478, 3)
    solve = solve_units(head, faces_mm - neutral_mm, neutral_mm)
    measured = measured_blinks(neutral_mm, faces_mm)  # (3, 2)
    for unit, eye in blink_columns(names, head.landmark_basis()).items():
        np.testing.assert_allclose(solve.coefficients[:, unit], measured[:, eye], atol=1e-9)
    assert solve.coefficients[1, names.index("eyeBlinkLeft")] > 0.3  # half shut reads as a blink
    assert solve.coefficients[2, names.index("eyeBlinkLeft")] == 0.0  # a smile is no blink


def test_an_eye_that_cannot_be_measured_is_solved_as_before():
    head = load_open_head()
    neutral_mm = head.landmark_positions().astype(np.float64) * 1000.0
    faces_mm = np.repeat(neutral_mm[None], 2, axis=0)
    faces_mm[1, [33, 133, 159, 145, 263, 362, 386, 374]] = faces_mm[1, 33]  # both eyes in one point: 0 / 0
    assert np.isnan(measured_blinks(neutral_mm, faces_mm)[1]).all()
    solve = solve_units(head, faces_mm - neutral_mm, neutral_mm)
    assert np.all(np.isfinite(solve.coefficients))
