"""Synthetic training and evaluation sequences with ground truth for every layer.

Why: no public data pairs face video with sub-millimetre 3D ground truth of micro-expressions, so
the network learns, and is judged, on sequences generated from the head model itself. Each
sequence is a full take (``ops.take`` v2) laid out exactly as the engine writes one, observations
and landmark-only baseline included, plus the truth it was made from:

    identity  random smooth deformation + scale of the head's neutral landmarks
    macro     slow, large expressions (key poses of 1-3 basis units, smooth transitions) and blinks
    speech    (optional, ``speech_probability``) stretches of talking: jaw and lip shapes changing
              3-6 times a second, part of the macro layer; as fast as micro events and larger
    micro     short (0.15-0.5 s) low-amplitude (0.2-1.5 mm) AU-like events: onset -> apex -> offset
    detail    slowly varying smooth fields outside the span of the expression basis and rigid motion
    pose      smooth random rotation (yaw +-25, pitch/roll +-15 deg), translation and scale
    camera    MediaPipe's weak perspective: image px = image_to_camera(scale * R @ face_mm + t)

Landmark bias is modelled, not measured: the landmarks show ``expression_gain`` of the true
expression displacement and carry a smooth static offset from the skin points (both marked assumed
in the JSON); the flow follows the skin points.

Observations follow the measured noise model (``noise_model.json``, ``scripts/measure_noise.py``):
landmarks = projected (biased) landmark points + temporally correlated jitter; the crop transform
is fitted on those noisy landmarks as the engine does; flow = the true skin motion between the two
stabilised crops + a magnitude-dependent error, with forward-backward errors drawn to match.

Ground truth lives in the performer's canonical face frame (mm, +X subject's left, +Y up, +Z out of
the face, origin at the truth neutral's landmark centroid). The baseline's canonical frame differs
from it by a similarity (its neutral comes from noisy frames, its millimetres from an assumed 63 mm
interpupillary distance): evaluation must map estimates through ``align_to_truth`` first.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ...ops.canonical import IRIS_LANDMARKS, canonicalize, image_to_camera
from ...ops.crops import DEFAULT_CROP_SIZE, stabilising_transform
from ...ops.flow import is_consistent
from ...ops.take import BASELINE_VERSION, LANDMARK_COUNT, MicroEvent, Take
from ..head_model import HeadModel
from ..similarity import Similarities, fit_similarities
from .event_profile import micro_profile, smoothstep

NOISE_MODEL_PATH = Path(__file__).resolve().parent / "noise_model.json"
# Landmark groups for the noise model, in the order a landmark is claimed (first region wins).
NOISE_GROUPS = ("iris", "eyes", "brows", "nose", "mouth", "cheeks", "jaw", "contour")

# AU-like micro actions: (region, {unit: weight}). "Left"/"Right" pairs may fire on one side only.
MICRO_ACTIONS: dict[str, tuple[str, dict[str, float]]] = {
    "inner_brow_raise": ("brows", {"browInnerUp": 1.0}),  # AU1
    "brow_raise": ("brows", {"browInnerUp": 0.6, "browOuterUpLeft": 1.0, "browOuterUpRight": 1.0}),  # AU1+2
    "brow_lower": ("brows", {"browDownLeft": 1.0, "browDownRight": 1.0}),  # AU4
    "upper_lid_raise": ("eyes", {"eyeWideLeft": 1.0, "eyeWideRight": 1.0}),  # AU5
    "lid_tighten": ("eyes", {"eyeSquintLeft": 1.0, "eyeSquintRight": 1.0}),  # AU7
    "cheek_raise": ("cheeks", {"cheekSquintLeft": 1.0, "cheekSquintRight": 1.0}),  # AU6
    "nose_wrinkle": ("nose", {"noseSneerLeft": 1.0, "noseSneerRight": 1.0}),  # AU9
    "upper_lip_raise": ("mouth", {"mouthUpperUpLeft": 1.0, "mouthUpperUpRight": 1.0}),  # AU10
    "lip_corner_pull": ("mouth", {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}),  # AU12
    "dimpler": ("mouth", {"mouthDimpleLeft": 1.0, "mouthDimpleRight": 1.0}),  # AU14
    "lip_corner_depress": ("mouth", {"mouthFrownLeft": 1.0, "mouthFrownRight": 1.0}),  # AU15
    "lip_stretch": ("mouth", {"mouthStretchLeft": 1.0, "mouthStretchRight": 1.0}),  # AU20
    "lip_press": ("mouth", {"mouthPressLeft": 1.0, "mouthPressRight": 1.0}),  # AU24
    "chin_raise": ("jaw", {"mouthShrugLower": 1.0}),  # AU17, the chin
    "jaw_drop": ("jaw", {"jawOpen": 1.0}),  # AU26
}
# Mouth shapes of speech (visemes, roughly): the units one syllable draws from besides jawOpen.
SPEECH_UNITS = ("mouthFunnel", "mouthPucker", "mouthClose", "mouthStretchLeft", "mouthStretchRight",
                "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
                "mouthRollLower", "mouthRollUpper", "mouthPressLeft", "mouthPressRight")
# Units that macro key poses draw from: everything but gaze, tongue and blinks (blinks are separate).
_MACRO_EXCLUDED_PREFIXES = ("eyeLook", "tongue", "eyeBlink")


# -- configuration -------------------------------------------------------------------------------
@dataclass(eq=False)  # holds an array: compare fields explicitly
class NoiseModel:
    """How the front-end's observations differ from the truth. Every number is measured or marked
    assumed in ``noise_model.json``, which documents how (``scripts/measure_noise.py``).

    Landmark jitter (px) scales with the face's width in px relative to the measured clips': the
    face mesh model sees a fixed-size face crop, so its errors are a fraction of the face.
    """

    reference_face_width_px: float = 200.0  # face width (landmark x extent) in the measured clips
    landmark_group: np.ndarray = field(default_factory=lambda: np.zeros(LANDMARK_COUNT, np.int64))  # (478,) -> NOISE_GROUPS
    jitter_independent_px: dict[str, list[float]] = field(default_factory=dict)  # group -> (x, y, z) std, per landmark
    jitter_shared_px: dict[str, list[float]] = field(default_factory=dict)  # group -> (x, y, z) std, common to the group
    jitter_global_px: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # whole-face common shift std
    jitter_autocorrelation: float = 0.0  # AR(1) coefficient from one frame to the next
    expression_gain: float = 1.0  # fraction of the true expression displacement the landmarks show
    static_bias_mm: float = 0.0  # std of a per-sequence smooth offset of landmarks from the skin points
    flow_error_floor_px: float = 0.0  # median flow endpoint error at zero motion (crop px)
    flow_error_per_px: float = 0.0  # growth of that median per px of motion
    flow_fb_floor_px: float = 0.0  # median forward-backward error at zero motion (crop px)
    flow_fb_per_px: float = 0.0  # growth of that median per px of motion
    flow_outlier_rate: float = 0.0  # fraction of landmarks per frame whose flow fails grossly
    flow_outlier_px: float = 2.0  # typical size of a gross flow failure (crop px)

    @classmethod
    def none(cls) -> "NoiseModel":
        """No noise, no bias: observations are the exact projection of the truth."""
        return cls()

    @property
    def is_zero(self) -> bool:
        """No jitter, no bias, no flow error: observations are exact projections."""
        amplitudes = [self.jitter_global_px, self.static_bias_mm, self.flow_error_floor_px, self.flow_error_per_px,
                      self.flow_fb_floor_px, self.flow_fb_per_px, self.flow_outlier_rate,
                      *self.jitter_independent_px.values(), *self.jitter_shared_px.values()]
        return self.expression_gain == 1.0 and not np.any(np.concatenate([np.ravel(a) for a in amplitudes]))


def load_noise_model(path: Path | None = None) -> NoiseModel:
    """The measured noise model (``models/network/noise_model.json`` by default)."""
    data = json.loads(Path(path or NOISE_MODEL_PATH).read_text())
    values = {name: data[name]["value"] if isinstance(data[name], dict) and "value" in data[name] else data[name]
              for name in NoiseModel.__dataclass_fields__ if name in data}
    values["landmark_group"] = np.asarray(values.get("landmark_group", np.zeros(LANDMARK_COUNT)), np.int64)
    return NoiseModel(**values)


@dataclass
class SyntheticConfig:
    fps_range: tuple[float, float] = (24.0, 200.0)  # drawn log-uniformly
    duration_range_s: tuple[float, float] = (2.0, 6.0)
    neutral_seconds: float = 0.5  # lead-in without expression: the baseline's neutral reference
    # identity
    identity_scale_range: tuple[float, float] = (0.9, 1.1)  # overall size of the neutral
    identity_axis_scale: float = 0.06  # +- relative width / height / depth change
    identity_deformation_mm: float = 3.0  # peak of the smooth random neutral deformation
    # macro expressions
    macro_interval_s: tuple[float, float] = (0.6, 2.0)  # time between key poses
    macro_transition_s: tuple[float, float] = (0.3, 0.8)  # slow: longer than micro events
    macro_units_per_pose: tuple[int, int] = (1, 3)
    macro_amplitude: tuple[float, float] = (0.15, 0.7)  # basis coefficient of each active unit
    macro_neutral_probability: float = 0.3  # a key pose is neutral (so micro events also occur on a still face)
    blink_rate_per_s: float = 0.25
    blink_duration_s: tuple[float, float] = (0.12, 0.3)
    # speech: off by default, so the held-out sets stay what they were; training turns it on
    speech_probability: float = 0.0  # a sequence has talking at all
    speech_fraction: tuple[float, float] = (0.3, 0.9)  # of the time after the lead-in spent talking
    speech_syllables_per_s: tuple[float, float] = (3.0, 6.0)
    speech_jaw_open: tuple[float, float] = (0.03, 0.3)  # jawOpen coefficient of a syllable (~1-12 mm)
    speech_mouth_amplitude: tuple[float, float] = (0.05, 0.5)  # coefficient of each mouth shape unit
    # micro events
    micro_rate_per_s: tuple[float, float] = (0.3, 1.0)  # drawn per sequence
    micro_duration_s: tuple[float, float] = (0.15, 0.5)  # onset -> offset
    micro_peak_mm: tuple[float, float] = (0.2, 1.5)  # peak skin displacement, drawn log-uniformly
    micro_unilateral_probability: float = 0.3
    micro_gap_s: float = 0.1  # events never overlap: at least this between one offset and the next onset
    # detail
    detail_peak_mm: tuple[float, float] = (0.1, 0.8)
    detail_fields: int = 2
    detail_timescale_s: float = 1.5
    # head motion and camera
    yaw_deg: float = 25.0
    pitch_deg: float = 15.0
    roll_deg: float = 15.0
    head_timescale_s: tuple[float, float] = (0.8, 3.0)  # fastest period of the smooth pose motion
    translation_fraction: float = 0.08  # +- of the frame size the face wanders
    scale_variation: float = 0.05  # +- relative change of the face size over the clip
    image_sizes: tuple[tuple[int, int], ...] = ((640, 360), (640, 480), (1280, 720), (1920, 1080))
    face_width_px: tuple[float, float] = (150.0, 400.0)  # capped at 0.75 of the frame height
    noise: NoiseModel = field(default_factory=load_noise_model)
    macro_only: bool = False  # pre-training: no micro events


# -- the sequence ----------------------------------------------------------------------------------
@dataclass
class SyntheticSequence:
    take: Take  # observations and baseline reconstruction, as the engine would write them
    truth_neutral_mm: np.ndarray  # (478, 3) mm, canonical face frame, centroid at the origin
    truth_macro_mm: np.ndarray  # (T, 478, 3) mm displacement from neutral
    truth_micro_mm: np.ndarray  # (T, 478, 3) mm
    truth_detail_mm: np.ndarray  # (T, 478, 3) mm, orthogonal to the expression basis and rigid motion
    truth_macro_coefficients: np.ndarray  # (T, K), truth_macro_mm = coefficients @ landmark basis (mm)
    truth_micro_coefficients: np.ndarray  # (T, K)
    truth_events: list[MicroEvent]
    truth_head_rotation: np.ndarray  # (T, 3, 3) canonical -> camera
    truth_head_translation_px: np.ndarray  # (T, 3) camera px
    truth_scale_px_per_mm: np.ndarray  # (T,)
    truth_landmarks_px: np.ndarray  # (T, 478, 3) image px of the skin points (noise-free, unbiased)
    truth_flow_px: np.ndarray  # (T, 478, 2) crop px, true skin motion t-1 -> t (NaN at frame 0)

    def truth_deformation_mm(self) -> np.ndarray:
        """(T, 478, 3) mm, macro + micro + detail."""
        return self.truth_macro_mm + self.truth_micro_mm + self.truth_detail_mm


# -- small building blocks ---------------------------------------------------------------------------
def smooth_signal(times_s: np.ndarray, shortest_period_s: float, rng: np.random.Generator,
                  channels: int = 1, components: int = 5) -> np.ndarray:
    """Random smooth signals in [-1, 1]: sums of sinusoids no faster than ``shortest_period_s``,
    so their smoothness does not depend on the frame rate. (T,) times -> (T, channels)."""
    frequencies = rng.uniform(0.1, 1.0, (components, channels)) / shortest_period_s  # Hz
    phases = rng.uniform(0.0, 2.0 * np.pi, (components, channels))
    weights = rng.uniform(0.3, 1.0, (components, channels))
    waves = np.sin(2.0 * np.pi * frequencies[None] * times_s[:, None, None] + phases[None])  # (T, C, ch)
    return np.einsum("tcj,cj->tj", waves, weights) / weights.sum(axis=0)


def rbf_field(points_mm: np.ndarray, rng: np.random.Generator, bumps: int, sigma_mm: tuple[float, float]) -> np.ndarray:
    """A smooth random displacement field over the points: Gaussian bumps centred on random
    points with random 3D directions. (N, 3) mm -> (N, 3), unnormalised."""
    centres = points_mm[rng.integers(0, len(points_mm), bumps)]  # (B, 3)
    sigmas = rng.uniform(*sigma_mm, bumps)  # (B,)
    directions = rng.normal(size=(bumps, 3))  # (B, 3)
    squared = np.sum((points_mm[:, None, :] - centres[None]) ** 2, axis=2)  # (N, B)
    return np.exp(-squared / (2.0 * sigmas**2)) @ directions


def rotation_from_angles(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(T,) radians each -> (T, 3, 3) = Rz(roll) @ Ry(yaw) @ Rx(pitch); yaw turns about +Y (up),
    pitch about +X, roll about +Z (towards the camera)."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], axis=-1).reshape(-1, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], axis=-1).reshape(-1, 3, 3)
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], axis=-1).reshape(-1, 3, 3)
    return rz @ ry @ rx


def landmark_regions(head: HeadModel) -> dict[str, np.ndarray]:
    """Landmark indices of each head region: a landmark belongs to a region when at least two
    corners of its embedding triangle are region vertices. name -> (n,) int64."""
    triangles = head.landmarks.triangles  # (478, 3)
    return {name: np.flatnonzero(np.isin(triangles, vertices).sum(axis=1) >= 2)
            for name, vertices in head.regions.items()}


def landmark_noise_groups(head: HeadModel) -> np.ndarray:
    """(478,) index into NOISE_GROUPS: the iris points, then the head's regions in NOISE_GROUPS order
    (first claim wins), the rest ("contour": forehead, face outline)."""
    regions = landmark_regions(head)
    groups = np.full(LANDMARK_COUNT, NOISE_GROUPS.index("contour"), np.int64)
    claimed = np.zeros(LANDMARK_COUNT, bool)
    for index, name in enumerate(NOISE_GROUPS):
        members = IRIS_LANDMARKS if name == "iris" else regions.get(name, np.array([], np.int64))
        members = members[~claimed[members]]
        groups[members] = index
        claimed[members] = True
    return groups


def expression_landmark_basis_mm(head: HeadModel) -> np.ndarray:
    """(K, 478, 3) mm per unit coefficient."""
    return head.landmark_basis().astype(np.float64) * 1000.0


def detail_complement(basis_mm: np.ndarray, neutral_mm: np.ndarray) -> np.ndarray:
    """Orthonormal basis of what detail must avoid: the expression basis and the linearised
    similarity motions (translation, rotation, scale) of the neutral, which the baseline's rigid
    alignment would absorb. -> (1434, r) columns."""
    translations = [np.tile(axis, (LANDMARK_COUNT, 1)) for axis in np.eye(3)]
    rotations = [np.cross(axis, neutral_mm) for axis in np.eye(3)]
    rigid = np.stack(translations + rotations + [neutral_mm]).reshape(7, -1)  # (7, 1434)
    span = np.concatenate([basis_mm.reshape(len(basis_mm), -1), rigid]).T  # (1434, K + 7)
    u, singular, _ = np.linalg.svd(span, full_matrices=False)
    return u[:, singular > 1e-9 * singular[0]]


def project_out(field_mm: np.ndarray, complement: np.ndarray) -> np.ndarray:
    """(478, 3) -> (478, 3) with its component in the complement's span removed."""
    flat = field_mm.reshape(-1)
    return (flat - complement @ (complement.T @ flat)).reshape(field_mm.shape)


def align_to_truth(neutral_mm_estimate: np.ndarray, truth_neutral_mm: np.ndarray) -> Similarities:
    """The similarity (length-1 ``Similarities``) taking an estimate's canonical frame onto the
    truth's, fitted on the two neutrals (all 478 landmarks). Map displacements with
    ``displacements_to_truth``, points with ``.apply``."""
    return fit_similarities(np.asarray(neutral_mm_estimate, np.float64),
                            np.asarray(truth_neutral_mm, np.float64)[None])


def displacements_to_truth(displacement_mm: np.ndarray, alignment: Similarities) -> np.ndarray:
    """(..., 478, 3) displacements in the estimate's frame -> the truth's frame (scale * R, no shift)."""
    return alignment.scale[0] * displacement_mm @ alignment.rotation[0].T


# -- the layers ---------------------------------------------------------------------------------------
def random_neutral_mm(head: HeadModel, config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """A random identity: the head's neutral landmarks, scaled overall and per axis and bent by a
    smooth random field, centred on their centroid. (478, 3) mm."""
    neutral = head.landmark_positions().astype(np.float64) * 1000.0  # (478, 3) mm
    neutral -= neutral.mean(axis=0)
    axis_scale = 1.0 + rng.uniform(-config.identity_axis_scale, config.identity_axis_scale, 3)
    neutral = neutral * axis_scale * rng.uniform(*config.identity_scale_range)
    bend = rbf_field(neutral, rng, bumps=6, sigma_mm=(15.0, 40.0))
    neutral = neutral + bend * (config.identity_deformation_mm / np.linalg.norm(bend, axis=1).max())
    return neutral - neutral.mean(axis=0)


def macro_coefficients(head: HeadModel, times_s: np.ndarray, config: SyntheticConfig,
                       rng: np.random.Generator) -> np.ndarray:
    """Key poses joined by slow smooth transitions, plus blinks; neutral during the lead-in. (T, K)."""
    names = head.expression_names
    units = [k for k, name in enumerate(names) if not name.startswith(_MACRO_EXCLUDED_PREFIXES)]
    coefficients = np.zeros((len(times_s), len(names)))
    pose = np.zeros(len(names))
    key_time = config.neutral_seconds + rng.uniform(0.0, 0.3)
    while key_time < times_s[-1]:
        target = np.zeros(len(names))
        if rng.random() >= config.macro_neutral_probability:
            chosen = rng.choice(units, rng.integers(config.macro_units_per_pose[0], config.macro_units_per_pose[1] + 1),
                                replace=False)
            target[chosen] = rng.uniform(*config.macro_amplitude, len(chosen))
        ramp = smoothstep((times_s - key_time) / rng.uniform(*config.macro_transition_s))  # (T,)
        coefficients += ramp[:, None] * (target - pose)[None]
        pose = target
        key_time += rng.uniform(*config.macro_interval_s)
    blinks = [names.index(name) for name in ("eyeBlinkLeft", "eyeBlinkRight") if name in names]
    blink_time = config.neutral_seconds + rng.exponential(1.0 / config.blink_rate_per_s)
    while blinks and blink_time < times_s[-1]:
        duration = rng.uniform(*config.blink_duration_s)
        phase = (times_s - blink_time) / duration  # 0 -> 1 over the blink
        coefficients[:, blinks] += (rng.uniform(0.8, 1.0) * np.sin(np.pi * np.clip(phase, 0.0, 1.0)) ** 2)[:, None]
        blink_time += duration + rng.exponential(1.0 / config.blink_rate_per_s)
    return coefficients


def speech_coefficients(head: HeadModel, times_s: np.ndarray, config: SyntheticConfig,
                        rng: np.random.Generator) -> np.ndarray:
    """Talking: one stretch after the lead-in in which a syllable's target (jaw opening plus
    one or two mouth shapes) follows the last every 1/3 - 1/6 s, joined by smooth steps and
    closing to rest at both ends. (T, K)."""
    names = head.expression_names
    coefficients = np.zeros((len(times_s), len(names)))
    mouth_units = [names.index(name) for name in SPEECH_UNITS if name in names]
    jaw = names.index("jawOpen")
    available = times_s[-1] - config.neutral_seconds
    length = rng.uniform(*config.speech_fraction) * available
    start = config.neutral_seconds + rng.uniform(0.0, available - length)
    rate = rng.uniform(*config.speech_syllables_per_s)
    key_time, pose = start, np.zeros(len(names))
    while key_time < start + length:
        target = np.zeros(len(names))
        target[jaw] = rng.uniform(*config.speech_jaw_open)
        shapes = rng.choice(mouth_units, rng.integers(1, 3), replace=False)
        target[shapes] = rng.uniform(*config.speech_mouth_amplitude, len(shapes))
        step = rng.uniform(0.6, 1.4) / rate  # s to this syllable's target
        coefficients += smoothstep((times_s - key_time) / step)[:, None] * (target - pose)[None]
        pose = target
        key_time += step
    coefficients -= smoothstep((times_s - key_time) / (1.0 / rate))[:, None] * pose[None]  # back to rest
    return coefficients


def micro_action_coefficients(head: HeadModel, action: str, rng: np.random.Generator,
                              unilateral_probability: float) -> np.ndarray:
    """Unit-less coefficient pattern (K,) of one AU-like action, sometimes on one side only."""
    names = head.expression_names
    pattern = np.zeros(len(names))
    for unit, weight in MICRO_ACTIONS[action][1].items():
        pattern[names.index(unit)] = weight
    if rng.random() < unilateral_probability:
        dropped = "Left" if rng.random() < 0.5 else "Right"
        sided = [k for k, name in enumerate(names) if name.endswith(dropped) and pattern[k] > 0]
        if len(sided) < np.count_nonzero(pattern):  # keep at least one unit
            pattern[sided] = 0.0
    return pattern


def micro_events(head: HeadModel, times_s: np.ndarray, fps: float, basis_mm: np.ndarray, config: SyntheticConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, list[MicroEvent]]:
    """Non-overlapping micro events after the lead-in: (T, K) coefficients and their records.

    Each event's amplitude is set so its largest landmark displacement equals a drawn peak (mm)."""
    coefficients = np.zeros((len(times_s), basis_mm.shape[0]))
    events: list[MicroEvent] = []
    if config.macro_only:
        return coefficients, events
    rate = rng.uniform(*config.micro_rate_per_s)
    onset = config.neutral_seconds + rng.exponential(1.0 / rate)
    actions = list(MICRO_ACTIONS)
    while True:
        duration = rng.uniform(*config.micro_duration_s)
        offset = onset + duration
        if offset > times_s[-1]:
            return coefficients, events
        apex = onset + rng.uniform(0.25, 0.45) * duration
        hold = rng.uniform(0.0, 0.15) * duration
        action = actions[rng.integers(len(actions))]
        pattern = micro_action_coefficients(head, action, rng, config.micro_unilateral_probability)
        unit_peak = np.linalg.norm(np.tensordot(pattern, basis_mm, axes=1), axis=1).max()  # mm at coefficient 1
        peak_mm = float(np.exp(rng.uniform(*np.log(config.micro_peak_mm))))
        profile = micro_profile(times_s, onset, apex, hold, offset)  # (T,)
        coefficients += profile[:, None] * (pattern * peak_mm / unit_peak)[None]
        active = np.flatnonzero(profile > 0)
        apex_frame = int(active[np.argmax(profile[active])])
        events.append(MicroEvent(onset_frame=int(np.floor(onset * fps)), apex_frame=apex_frame,
                                 offset_frame=int(np.ceil(offset * fps)), region=MICRO_ACTIONS[action][0],
                                 peak_mm=peak_mm * float(profile[apex_frame]), confidence=1.0))
        onset = offset + config.micro_gap_s + rng.exponential(1.0 / rate)


def detail_displacements(neutral_mm: np.ndarray, basis_mm: np.ndarray, times_s: np.ndarray,
                         config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Slowly varying smooth fields that neither the expression basis nor a similarity can
    express, faded in after the lead-in. (T, 478, 3) mm."""
    complement = detail_complement(basis_mm, neutral_mm)
    fields = []
    for _ in range(config.detail_fields):
        field_mm = project_out(rbf_field(neutral_mm, rng, bumps=3, sigma_mm=(8.0, 20.0)), complement)
        fields.append(field_mm * rng.uniform(*config.detail_peak_mm) / np.linalg.norm(field_mm, axis=1).max())
    weights = smooth_signal(times_s, config.detail_timescale_s, rng, channels=config.detail_fields)  # (T, F)
    weights *= smoothstep((times_s - config.neutral_seconds) / config.detail_timescale_s)[:, None]
    return np.tensordot(weights, np.stack(fields), axes=1) / config.detail_fields


@dataclass
class _Camera:
    frame_size: tuple[int, int]  # (width, height) px
    rotation: np.ndarray  # (T, 3, 3)
    translation_px: np.ndarray  # (T, 3) camera px (x right, y up, z towards the camera)
    scale_px_per_mm: np.ndarray  # (T,)


def random_camera(neutral_mm: np.ndarray, times_s: np.ndarray, config: SyntheticConfig,
                  rng: np.random.Generator) -> _Camera:
    """Frame size, smooth head rotation, wandering position and a slowly changing face size."""
    width, height = config.image_sizes[rng.integers(len(config.image_sizes))]
    face_width_mm = np.ptp(neutral_mm[:, 0])
    face_width_px = rng.uniform(config.face_width_px[0], min(config.face_width_px[1], 0.75 * height))
    limits = np.radians([config.yaw_deg, config.pitch_deg, config.roll_deg])
    centre = rng.uniform(-0.5, 0.5, 3)
    swing = rng.uniform(0.0, 0.5, 3)
    motion = smooth_signal(times_s, rng.uniform(*config.head_timescale_s), rng, channels=6)  # (T, 6)
    angles = limits * (centre + swing * motion[:, :3])  # (T, 3) yaw, pitch, roll
    wander = config.translation_fraction * np.array([width, height]) * motion[:, 3:5]  # (T, 2) px
    scale = face_width_px / face_width_mm * (1.0 + config.scale_variation * motion[:, 5])  # (T,)
    translation = np.column_stack([width / 2 + wander[:, 0], -(height / 2 + wander[:, 1]), np.zeros(len(times_s))])
    return _Camera((int(width), int(height)), rotation_from_angles(*angles.T), translation, scale)


def project(camera: _Camera, points_mm: np.ndarray) -> np.ndarray:
    """Canonical points (T, N, 3) mm -> MediaPipe image px (T, N, 3): x right, y down, z like x
    (away from the camera). Weak perspective, as MediaPipe's landmarks."""
    camera_px = camera.scale_px_per_mm[:, None, None] * (points_mm @ camera.rotation.transpose(0, 2, 1))
    return image_to_camera(camera_px + camera.translation_px[:, None, :])


# -- noise -------------------------------------------------------------------------------------------
def _ar1(shape: tuple[int, ...], rho: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance AR(1) noise along axis 0: n_t = rho n_(t-1) + sqrt(1 - rho^2) e_t."""
    innovations = rng.standard_normal(shape)
    noise = np.empty(shape)
    noise[0] = innovations[0]
    keep, fresh = rho, np.sqrt(1.0 - rho * rho)
    for t in range(1, shape[0]):
        noise[t] = keep * noise[t - 1] + fresh * innovations[t]
    return noise


def landmark_jitter_px(noise: NoiseModel, frames: int, face_width_px: float, rng: np.random.Generator) -> np.ndarray:
    """Jitter in image px (x, y, z): per landmark + shared by each group + shared by the whole face,
    each AR(1) in time, scaled to the face size. (T, 478, 3)."""
    if noise.is_zero:
        return np.zeros((frames, LANDMARK_COUNT, 3))
    groups = noise.landmark_group
    independent = np.array([noise.jitter_independent_px.get(name, [0.0] * 3) for name in NOISE_GROUPS])  # (G, 3)
    shared = np.array([noise.jitter_shared_px.get(name, [0.0] * 3) for name in NOISE_GROUPS])  # (G, 3)
    rho = noise.jitter_autocorrelation
    jitter = _ar1((frames, LANDMARK_COUNT, 3), rho, rng) * independent[groups][None]
    jitter += (_ar1((frames, len(NOISE_GROUPS), 3), rho, rng) * shared[None])[:, groups]
    jitter += _ar1((frames, 1, 3), rho, rng) * np.asarray(noise.jitter_global_px)[None, None]
    return jitter * (face_width_px / noise.reference_face_width_px)


def flow_observations(true_flow_px: np.ndarray, noise: NoiseModel,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy flow, forward-backward error and the engine's consistency verdict from the true flow.

    Endpoint errors are isotropic Gaussian whose median grows linearly with the motion (a 2D
    Gaussian of per-axis std s has median endpoint error 1.1774 s); a few outliers fail grossly.
    (T, 478, 2) crop px -> (T, 478, 2), (T, 478), (T, 478) bool; frame 0 NaN / NaN / False."""
    magnitude = np.linalg.norm(true_flow_px, axis=-1)  # (T, 478)
    rayleigh_median = np.sqrt(2.0 * np.log(2.0))
    sigma = (noise.flow_error_floor_px + noise.flow_error_per_px * magnitude) / rayleigh_median
    flow = true_flow_px + sigma[..., None] * rng.standard_normal(true_flow_px.shape)
    fb_sigma = (noise.flow_fb_floor_px + noise.flow_fb_per_px * magnitude) / rayleigh_median
    fb_error = fb_sigma * np.linalg.norm(rng.standard_normal(true_flow_px.shape), axis=-1)
    outliers = rng.random(magnitude.shape) < noise.flow_outlier_rate
    gross = noise.flow_outlier_px * rng.standard_normal(true_flow_px.shape)
    flow = np.where(outliers[..., None], flow + gross, flow)
    fb_error = np.where(outliers, np.linalg.norm(gross, axis=-1) * rng.uniform(1.0, 2.0, magnitude.shape), fb_error)
    consistent = is_consistent(fb_error, flow) & np.isfinite(magnitude)
    return flow, np.where(np.isfinite(magnitude), fb_error, np.nan), consistent


# -- generation --------------------------------------------------------------------------------------
def baseline_reconstruction(landmarks_px: np.ndarray, valid: np.ndarray, fps: float,
                            neutral_seconds: float) -> dict[str, np.ndarray]:
    """The engine's landmark-only baseline (ops.reconstruct): ``canonicalize`` with the first
    ``neutral_seconds`` of valid frames as the neutral, all deformation in macro."""
    first_valid = int(np.argmax(valid))
    span = max(1, int(round(neutral_seconds * fps)))
    neutral_frames = np.arange(first_valid, min(first_valid + span, len(valid)))
    canonical = canonicalize(landmarks_px, valid, neutral_frames)
    macro_mm = canonical.faces_mm - canonical.neutral_mm  # (T, 478, 3)
    zeros = np.where(np.isfinite(macro_mm), 0.0, np.nan)
    return {"neutral_mm": canonical.neutral_mm, "macro_mm": macro_mm, "micro_mm": zeros, "detail_mm": zeros,
            "head_rotation": canonical.poses.rotation, "head_translation_px": canonical.poses.translation,
            "head_scale_px_per_mm": canonical.poses.scale,
            "neutral_frames": np.array([neutral_frames[0], neutral_frames[-1]])}


def generate_sequence(head: HeadModel, config: SyntheticConfig, rng: np.random.Generator) -> SyntheticSequence:
    """One random sequence with its observations, baseline reconstruction and ground truth."""
    fps = round(float(np.exp(rng.uniform(*np.log(config.fps_range)))), 3)
    frames = max(int(round(rng.uniform(*config.duration_range_s) * fps)), int(np.ceil(config.neutral_seconds * fps)) + 2)
    times_s = np.arange(frames) / fps  # (T,)
    basis_mm = expression_landmark_basis_mm(head)  # (K, 478, 3)

    neutral_mm = random_neutral_mm(head, config, rng)  # (478, 3)
    macro_coefficients_ = macro_coefficients(head, times_s, config, rng)  # (T, K)
    if config.speech_probability > 0 and rng.random() < config.speech_probability:  # no draw when off
        macro_coefficients_ += speech_coefficients(head, times_s, config, rng)
    micro_coefficients, events = micro_events(head, times_s, fps, basis_mm, config, rng)  # (T, K)
    macro_mm = np.tensordot(macro_coefficients_, basis_mm, axes=1)  # (T, 478, 3)
    micro_mm = np.tensordot(micro_coefficients, basis_mm, axes=1)
    detail_mm = detail_displacements(neutral_mm, basis_mm, times_s, config, rng)
    camera = random_camera(neutral_mm, times_s, config, rng)

    skin_mm = neutral_mm + macro_mm + micro_mm + detail_mm  # (T, 478, 3)
    skin_px = project(camera, skin_mm)  # (T, 478, 3) the true skin points in the image

    # What MediaPipe reports: a biased point (static offset, partial expression) + jitter.
    noise = config.noise
    static_bias = rbf_field(neutral_mm, rng, bumps=8, sigma_mm=(10.0, 30.0))
    static_bias *= noise.static_bias_mm / max(np.std(static_bias), 1e-12)
    expression_mm = macro_mm + micro_mm + detail_mm
    observed_mm = neutral_mm + static_bias + noise.expression_gain * expression_mm
    face_width_px = float(np.median(np.ptp(skin_px[:, :, 0], axis=1)))
    landmarks_px = project(camera, observed_mm) + landmark_jitter_px(noise, frames, face_width_px, rng)

    crop_from_image = np.stack([stabilising_transform(frame) for frame in landmarks_px])  # (T, 2, 3)
    skin_crop = skin_px[:, :, :2] @ crop_from_image[:, :, :2].transpose(0, 2, 1) + crop_from_image[:, None, :, 2]
    true_flow = np.full((frames, LANDMARK_COUNT, 2), np.nan)
    # Skin motion between the crops of t-1 and t, the flow at each landmark's point in crop t-1
    # (the motion field is treated as uniform over the landmark's sub-pixel offset from its skin point).
    true_flow[1:] = skin_crop[1:] - skin_crop[:-1]
    flow, fb_error, consistent = flow_observations(true_flow, noise, rng)

    valid = np.ones(frames, bool)
    baseline = baseline_reconstruction(landmarks_px, valid, fps, config.neutral_seconds)
    digest = hashlib.sha256(landmarks_px.astype(np.float32).tobytes()).hexdigest()
    take = Take(
        source_path=f"synthetic://{head.name}/{digest[:16]}", source_sha256=digest, fps=fps,
        frame_size=camera.frame_size, timestamps_s=times_s, valid=valid,
        landmarks_px=landmarks_px.astype(np.float32),
        head_rotation=baseline["head_rotation"].astype(np.float32),
        head_translation_px=baseline["head_translation_px"].astype(np.float32),
        head_scale_px_per_mm=baseline["head_scale_px_per_mm"].astype(np.float32),
        neutral_mm=baseline["neutral_mm"].astype(np.float32), macro_mm=baseline["macro_mm"].astype(np.float32),
        micro_mm=baseline["micro_mm"].astype(np.float32), detail_mm=baseline["detail_mm"].astype(np.float32),
        frame_indices=np.arange(frames, dtype=np.int64), analysis_scale=1.0,
        landmark_confidence=np.ones(frames, np.float32), crop_size_px=DEFAULT_CROP_SIZE,
        crop_from_image=crop_from_image.astype(np.float32), flow_at_landmarks_px=flow.astype(np.float32),
        flow_fb_error_px=fb_error.astype(np.float32), flow_consistent=consistent,
        model_version=BASELINE_VERSION,  # the reconstruction fields hold the engine's baseline
        settings={"synthetic": True, "head": head.name, "neutral_seconds": config.neutral_seconds,
                  "neutral_frames": [int(f) for f in baseline["neutral_frames"]], "noise_free": noise.is_zero,
                  "macro_only": config.macro_only},
    )
    return SyntheticSequence(
        take=take, truth_neutral_mm=neutral_mm, truth_macro_mm=macro_mm, truth_micro_mm=micro_mm,
        truth_detail_mm=detail_mm, truth_macro_coefficients=macro_coefficients_,
        truth_micro_coefficients=micro_coefficients, truth_events=events, truth_head_rotation=camera.rotation,
        truth_head_translation_px=camera.translation_px, truth_scale_px_per_mm=camera.scale_px_per_mm,
        truth_landmarks_px=skin_px, truth_flow_px=true_flow,
    )


def generate_dataset(head: HeadModel, config: SyntheticConfig, count: int, seed: int) -> Iterator[SyntheticSequence]:
    """``count`` sequences; sequence i depends only on (seed, i), so a dataset can be regenerated
    or sharded without generating what comes before."""
    for index in range(count):
        yield generate_sequence(head, config, np.random.default_rng([seed, index]))
