"""Dense optical flow between consecutive stabilised face crops (OpenCV DIS, CPU).

Profiles, measured (scripts/bench_frontend.py and tests/test_flow.py) on a real 256 px stabilised
face crop of single_face.mp4 warped by known smooth fields (Gaussian bumps peaking at 0.5 / 1 / 2 px
plus a 0.3 px global shift): median endpoint error inside the face, worst of three random fields,
and the time of one direction on one thread of this 2-core machine:

    profile   DIS settings                                              EPE px (0.5/1/2)    ms
    fast      FAST preset (finest scale 2)                              0.077 0.117 0.161   ~0.7
    balanced  FAST, finest scale 1, patch stride 6, 8 descent iters,    0.055 0.067 0.093   ~1.2-1.3
              2 var. iters
    fine      MEDIUM, finest scale 0, stride 4, 10 var. iters           0.035 0.041 0.046   ~14

``balanced`` is the default: the cheapest setting found that keeps the median error under 0.1 px
for motions up to 2 px (``fast`` does not: its finest level is a quarter of the crop). ``fine``
is for offline runs where accuracy matters more than speed.

Where ``balanced``'s forward flow spends its time (scripts/compare_flow_settings.py: one thread
on WolfgangLanger's crops, and the error at the true skin points of the two rendered scan clips,
120 / 30 fps): 1.30 ms in all, 0.73 ms without variational refinement, so ~0.3 ms for each of its
two iterations. It runs 8 gradient-descent iterations per patch, not the FAST preset's 16: 0.1 ms
less, the same error on known motion (0.055 / 0.067 / 0.093 against 0.053 / 0.066 / 0.090 px) and
at the lips and eyelids (lips p99 0.090 / 0.102 against 0.092 / 0.104 px; the tail over all
points, set by the face outline, 0.154 / 0.352 against 0.165 / 0.380). 4 iterations (1.23 ms)
keep the lips and eyelids too but reach 0.099 px at 2 px of known motion, the limit. Measured and
not kept, for the lips and eyelids: one refinement iteration (1.10 ms; lips p99 0.108 / 0.125 px),
none (0.73 ms; lips p99 0.147 / 0.162, eyelids 0.081 / 0.117 against 0.059 / 0.087), no spatial
propagation (1.20 ms; lips median 0.023 / 0.033 against 0.020 / 0.028, eyelids p99 0.063 /
0.113); patch stride 8 (1.10 ms) keeps the lips and eyelids but reaches 0.15 px at 2 px of known
motion with a grey level of noise. DIS's time is that of its finest level: a half-size crop at
finest scale 0 costs and measures the same as the full crop at finest scale 1.

The backward flow, used only for the forward-backward consistency check, runs at ULTRAFAST
(~0.5 ms): on correct motion the two flows disagree by a median 0.07 px, and the check (see
FB_ABSOLUTE_PX) falsely fails under 1 % of face pixels at 1 px motion and ~8 % at 2 px; it is
there to catch failures of a pixel and more (occlusion, a hand over the face, a lost track).
At half resolution it would cost 0.2 ms but falsely fail 17 % at 2 px, so it stays full size.

Not kept: an ULTRAFAST forward field refined at each point by Lucas-Kanade (one pyramid level,
started from the dense flow) costs ~0.6 ms a pair less and beats ``balanced`` at the points on
noiseless known motion (0.04-0.08 px), but not on real pixels: with 1-2 grey levels of noise a
9 px window is worse (0.10-0.13 px), and a 17 px window, equal in the median on the rendered scan
clips (0.019 / 0.037 px against 0.023 / 0.036), is worse in the tail there (99th percentile 0.22 /
0.48 px against 0.17 / 0.38) and fails the check on 5 % more landmarks of the real clips.

Both directions run on the crop's face columns only (``flow_columns``): the canonical layout puts
the face mesh at x 45..211 px of a 256 px crop (39..226 seen on the real clips, head turns
included), and the outer 24 px a side are hair and background. DIS time goes with the area, so
that saved ~14 % of the flow (1.58 -> 1.35 ms forward, with 16 descent iterations) at the same
error inside the face; the flow there is NaN, as it is for anything else the flow did not see.

Point refinement (``refine_at_points``): DIS's finest level at ``balanced`` is half the crop, its
patches 16 crop px, and its variational step smooths: skin motion that is local (a lid, a lip
corner, a brow: a few mm, 5-10 crop px across) comes out at about half its size, and a Gaussian
bump of 6 px std on a real crop at 0.33-0.5 of its peak. Measured on real footage with planted
motion (scripts/open_loop_inject.py's clips; the flow carried into image px through each crop's
similarity, as the network's features do, summed onset -> apex at the landmarks the event moves,
projected on the planted motion; median over the dev clips' 8 micro events, and over 25 more
planted on them with other seeds): the dense flow reads 0.57 (0.66 on the 25). Finer DIS
costs more for less: finest scale 0 with a quarter of the smoothness 0.83 (3.5x the time), the
``fine`` profile 0.73 (12x), a 512 px crop 0.76 (4x); cubic crops, sampling on the true skin
trajectory or flow against the onset frame change nothing at ``balanced``. So each point's flow is
refined from the dense value by Lucas-Kanade in a Gaussian window of std 2.5 crop px (3
Gauss-Newton steps; the window's brightness offset left out): 0.88 (0.86 on the 25; windows of
std 2 read 0.87 with more noise, 3 and 4 read 0.84 and 0.80). Held-out (cap12, cap13, franck: 40
micro events, faces of 60-80 px between the outer eye corners): 0.51 -> 0.66, which is all the
encoded clips hold there (a fine flow between the original's and the injected clip's same frame
reads 0.66; 0.86 before the encoding). Cost: 1.5-2 ms of one thread a pair on this 2-core machine
while loaded (three quarters of it ``cv2.remap``); the front-end's frames/s fell 1.26-1.42x.
The price is noise where the dense flow's smoothing was right: on the rendered scan clips (smooth
motion, compare_flow_settings.py's truth) the median error at the true points rises from 0.023 /
0.035 to 0.035 / 0.050 px (99th percentile 0.15 / 0.35 -> 0.27 / 0.54); on smooth known fields
with a grey level of noise (bench_frontend.py's) from 0.053-0.094 to 0.088-0.113 px at the
landmarks; between the two encodings of the planted clips, at landmarks nothing moves, from 0.054
to 0.081 px (median over events of the summed difference). On real footage the refined flow is
the more self-consistent: forward then backward, both refined, disagree by a median 0.034 px
against DIS's 0.068 / 0.041 (WolfgangLanger / single_face), and two steps against one by 0.041 /
0.040 against 0.058 / 0.044. A refinement that ends more than ``POINT_MAX_CHANGE_PX`` from the
dense flow has diverged (a flat or occluded window) and the dense value is kept.

The forward-backward check stays on the dense flows (the forward sampled at the point, not the
refined value): the ULTRAFAST backward is smooth, and checked against the refined forward it
"disagrees" wherever the refinement reads local motion (0.81 -> 0.63 of WolfgangLanger's landmarks
would pass); the check is for failures of a pixel and more, which the dense flows show.

Conventions: flow (H, W, 2) float32 crop px, (dx, dy) from ``previous`` to ``current``:
previous(x) ~ current(x + flow(x)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

FLOW_PROFILES: dict[str, dict[str, int]] = {
    "fast": {"preset": cv2.DISOPTICAL_FLOW_PRESET_FAST},
    "balanced": {"preset": cv2.DISOPTICAL_FLOW_PRESET_FAST, "FinestScale": 1, "PatchStride": 6,
                 "GradientDescentIterations": 8, "VariationalRefinementIterations": 2},
    "fine": {"preset": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, "FinestScale": 0, "PatchStride": 4,
             "VariationalRefinementIterations": 10},
    "consistency": {"preset": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST},
}
DEFAULT_FLOW_PROFILE = "balanced"
FLOW_COLUMN_MARGIN = 24 / 256  # of the crop's side, left and right, left out of the flow (see above)

# Forward-backward check: consistent when |F(x) + B(x + F(x))| <= ABSOLUTE + RELATIVE * |F(x)|.
# 0.3 px is ~3x the combined error of the two flows on correct motion (see the table above).
FB_ABSOLUTE_PX = 0.3
FB_RELATIVE = 0.05

POINT_WINDOW_SIGMA_PX = 2.5  # std of the Gaussian window a point's flow is refined in, crop px (see above)
POINT_ITERATIONS = 3  # Gauss-Newton steps from the dense flow
POINT_MAX_CHANGE_PX = 2.0  # a refinement this far from the dense flow has diverged: the dense flow is kept


def flow_parameters(profile: str) -> dict[str, object]:
    """Everything besides the images that decides a pair's flow and check with ``profile``: what
    a cache of flows must be keyed by (unknown profile: None for its settings)."""
    return {"profile": FLOW_PROFILES.get(profile), "consistency": FLOW_PROFILES["consistency"],
            "column_margin": FLOW_COLUMN_MARGIN, "fb_absolute_px": FB_ABSOLUTE_PX, "fb_relative": FB_RELATIVE,
            "point_window_sigma_px": POINT_WINDOW_SIGMA_PX, "point_iterations": POINT_ITERATIONS,
            "point_max_change_px": POINT_MAX_CHANGE_PX}


def make_dis(profile: str) -> cv2.DISOpticalFlow:
    """A DIS instance configured by one of ``FLOW_PROFILES``."""
    if profile not in FLOW_PROFILES:
        raise ValueError(f"unknown flow profile {profile!r}; choose from {sorted(FLOW_PROFILES)}")
    settings = dict(FLOW_PROFILES[profile])
    dis = cv2.DISOpticalFlow_create(settings.pop("preset"))
    for name, value in settings.items():
        getattr(dis, f"set{name}")(value)
    return dis


def dense_flow(dis: cv2.DISOpticalFlow, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey, (H, W) uint8 grey -> (H, W, 2) float32 crop px, previous -> current."""
    return dis.calc(previous, current, None)


def flow_columns(crop_size: int) -> slice:
    """The crop's columns (crop px) that the flow is computed on: all but ``FLOW_COLUMN_MARGIN``
    a side."""
    margin = round(FLOW_COLUMN_MARGIN * crop_size)
    return slice(margin, crop_size - margin)


def _columns_of(image: np.ndarray, columns: slice) -> np.ndarray:
    """(H, W) grey -> (H, w) contiguous copy of ``columns``, as DIS takes it."""
    return np.ascontiguousarray(image[:, columns])


def _full_width(window: np.ndarray, columns: slice) -> np.ndarray:
    """(H, w, 2) flow on ``columns`` of a square crop -> (H, H, 2) float32, NaN elsewhere."""
    full = np.full((window.shape[0], window.shape[0], 2), np.nan, np.float32)
    full[:, columns] = window
    return full


def windowed_flow(dis: cv2.DISOpticalFlow, previous: np.ndarray, current: np.ndarray, columns: slice) -> np.ndarray:
    """``dense_flow`` on ``columns`` only: (H, H) uint8 grey x 2 -> (H, H, 2) float32 crop px, NaN
    outside the columns. Flow vectors do not depend on where the window starts."""
    return _full_width(dense_flow(dis, _columns_of(previous, columns), _columns_of(current, columns)), columns)


def sample_bilinear(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(H, W, C) field at (N, 2) points (x, y) px, bilinear -> (N, C); NaN where a point is not
    inside the pixel-centre grid (0 <= x <= W-1, 0 <= y <= H-1) or not finite."""
    return bilinear_taps(points, field.shape[:2]).combine(lambda rows, columns: field[rows, columns])


@dataclass(frozen=True)
class BilinearTaps:
    """The four pixels around each of N points and their weights (``bilinear_taps``)."""

    inside: np.ndarray  # (N,) bool
    x0: np.ndarray  # (N,) int64 columns and rows of the top-left pixel, and of the bottom-right
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    fx: np.ndarray  # (N, 1) float64, the point's offset from the top-left pixel
    fy: np.ndarray

    def combine(self, read: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
        """The bilinear mix (N, C) of ``read(rows, columns)`` -> (N, C) at the four pixels; NaN outside."""
        fx, fy = self.fx, self.fy
        values = ((1 - fx) * (1 - fy) * read(self.y0, self.x0) + fx * (1 - fy) * read(self.y0, self.x1)
                  + (1 - fx) * fy * read(self.y1, self.x0) + fx * fy * read(self.y1, self.x1))
        values[~self.inside] = np.nan
        return values


def bilinear_taps(points: np.ndarray, shape: tuple[int, int]) -> BilinearTaps:
    """Where (N, 2) points (x, y) px read a field of ``shape`` (H, W) bilinearly: a caller that
    needs a field only at those pixels computes it there (``skin_track.aggregate_at``)."""
    height, width = shape
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    inside = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)
    x = np.where(inside, x, 0.0)
    y = np.where(inside, y, 0.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2 if width > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), height - 2 if height > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    return BilinearTaps(inside, x0, y0, x1, y1, (x - x0)[:, None], (y - y0)[:, None])


def forward_backward_error(forward: np.ndarray, backward: np.ndarray, points: np.ndarray) -> np.ndarray:
    """|F(p) + B(p + F(p))| px at (N, 2) points: 0 when the two flows agree. (N,), NaN outside."""
    return _forward_backward_error_at(sample_bilinear(forward, points), backward, points)


def _forward_backward_error_at(forward_at: np.ndarray, backward: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``forward_backward_error`` given F(p) already sampled, (N, 2): the per-frame path samples it once."""
    backward_at = sample_bilinear(backward, points + forward_at)  # (N, 2)
    return np.linalg.norm(forward_at + backward_at, axis=1)


def _point_window(sigma_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The square patch sampled around a point, (K', 2) offsets px (side 2r + 3, r = round(2 sigma):
    one px more a side for the gradients), and the Gaussian weights of its inner (2r + 1)^2 px, (K,)
    summing to 1."""
    radius = round(2 * sigma_px)
    side = np.arange(-radius - 1, radius + 2, dtype=np.float32)
    offsets = np.stack(np.meshgrid(side, side), axis=-1).reshape(-1, 2)  # row-major: y outer, x inner
    inner = side[1:-1]
    weights = np.exp(-(inner[None, :] ** 2 + inner[:, None] ** 2) / (2 * sigma_px**2)).ravel()
    return offsets, (weights / weights.sum()).astype(np.float32)


_POINT_OFFSETS, _POINT_WEIGHTS = _point_window(POINT_WINDOW_SIGMA_PX)
_POINT_SIDE = round(np.sqrt(len(_POINT_OFFSETS)))  # px, the sampled patch's side
_POINT_INNER = _POINT_OFFSETS.reshape(_POINT_SIDE, _POINT_SIDE, 2)[1:-1, 1:-1].reshape(-1, 2)  # (K, 2)


def _patches(image: np.ndarray, points: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(H, W) float32 image at (N, 2) points + (K, 2) offsets px, bilinear, edge pixels repeated -> (N, K)."""
    x = (points[:, :1] + offsets[:, 0]).astype(np.float32, copy=False)  # (N, K)
    y = (points[:, 1:] + offsets[:, 1]).astype(np.float32, copy=False)
    return cv2.remap(image, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def refine_at_points(previous: np.ndarray, current: np.ndarray, points: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Each point's flow refined from ``start``, the dense flow there, by Lucas-Kanade in a Gaussian
    window (``POINT_WINDOW_SIGMA_PX``): the dense flow's smoothing halves local skin motion (see
    above). previous, current (H, W) uint8 grey; points (N, 2) px in previous; start (N, 2) px.
    -> (N, 2) float32 px: NaN where start or the point is NaN, start where the refinement diverged."""
    refined = np.array(start, np.float32)
    ok = np.flatnonzero(np.all(np.isfinite(points), axis=1) & np.all(np.isfinite(start), axis=1))
    if len(ok) == 0:
        return refined
    at, flow = points[ok].astype(np.float32), refined[ok].copy()  # (n, 2)
    count, side, weights = len(ok), _POINT_SIDE, _POINT_WEIGHTS
    patch = _patches(previous.astype(np.float32), at, _POINT_OFFSETS).reshape(count, side, side)
    values = patch[:, 1:-1, 1:-1].reshape(count, -1)  # (n, K)
    grad_x = 0.5 * (patch[:, 1:-1, 2:] - patch[:, 1:-1, :-2]).reshape(count, -1)
    grad_y = 0.5 * (patch[:, 2:, 1:-1] - patch[:, :-2, 1:-1]).reshape(count, -1)
    # zero mean in the window: a change of brightness is not motion (einsum, not BLAS: no thread hand-off)
    grad_x -= np.einsum("nk,k->n", grad_x, weights)[:, None]
    grad_y -= np.einsum("nk,k->n", grad_y, weights)[:, None]
    weighted_x, weighted_y = grad_x * weights, grad_y * weights
    xx, xy, yy = (np.einsum("nk,nk->n", weighted_x, grad_x), np.einsum("nk,nk->n", weighted_x, grad_y),
                  np.einsum("nk,nk->n", weighted_y, grad_y))
    determinant = xx * yy - xy * xy
    base_x, base_y = np.einsum("nk,nk->n", weighted_x, values), np.einsum("nk,nk->n", weighted_y, values)
    target = current.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):  # flat windows: caught below
        for _ in range(POINT_ITERATIONS):
            moved = _patches(target, at + flow, _POINT_INNER)  # (n, K)
            error_x = np.einsum("nk,nk->n", weighted_x, moved) - base_x
            error_y = np.einsum("nk,nk->n", weighted_y, moved) - base_y
            flow[:, 0] -= (yy * error_x - xy * error_y) / determinant
            flow[:, 1] -= (xx * error_y - xy * error_x) / determinant
    diverged = ~(np.linalg.norm(flow - refined[ok], axis=1) <= POINT_MAX_CHANGE_PX)  # NaN included
    refined[ok] = np.where(diverged[:, None], refined[ok], flow)
    return refined


def dense_forward_backward_error(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """The forward-backward error at every pixel: (H, W) float32 px (inf where x + F(x) leaves the
    crop, NaN where either flow is NaN)."""
    height, width = forward.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    backward_at = cv2.remap(backward, grid_x + forward[..., 0], grid_y + forward[..., 1], cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(np.inf, np.inf))
    return np.linalg.norm(forward + backward_at, axis=2)


def is_consistent(error_px: np.ndarray, forward_px: np.ndarray) -> np.ndarray:
    """error (...) px and forward flow (..., 2) px -> (...) bool (False where either is NaN)."""
    magnitude = np.linalg.norm(forward_px, axis=-1)
    with np.errstate(invalid="ignore"):
        return error_px <= FB_ABSOLUTE_PX + FB_RELATIVE * magnitude


@dataclass
class PairFlow:
    """One pair's flows, kept on the flow columns only (``forward_window[:, k]`` is crop column
    ``columns.start + k``): the full-width arrays are built only when asked for, since allocating
    two fresh 0.5 MB arrays a frame costs ~0.1 ms each in page faults."""

    forward_window: np.ndarray  # (H, w, 2) float32 crop px, previous -> current, on ``columns``
    backward_window: np.ndarray  # (H, w, 2) float32 crop px, current -> previous (consistency profile)
    columns: slice  # the crop columns the windows cover
    at_points: np.ndarray  # (N, 2) float32 crop px, forward flow at the points, refined (NaN outside the columns)
    fb_error_px: np.ndarray  # (N,) float32 crop px, of the dense flows at the points (see above)
    consistent: np.ndarray  # (N,) bool

    @property
    def forward(self) -> np.ndarray:
        """(H, H, 2) float32 crop px, NaN outside ``columns``."""
        return _full_width(self.forward_window, self.columns)

    @property
    def backward(self) -> np.ndarray:
        """(H, H, 2) float32 crop px, NaN outside ``columns``."""
        return _full_width(self.backward_window, self.columns)


class FlowEstimator:
    """Forward flow at the chosen profile plus an ULTRAFAST backward flow for the consistency check,
    both on the face columns (``flow_columns``): points outside them get NaN and fail the check. The
    forward flow at the points is refined there (``refine_at_points``).

    One instance per thread: DIS objects keep per-call buffers.
    """

    def __init__(self, profile: str = DEFAULT_FLOW_PROFILE) -> None:
        self.profile = profile
        self._forward = make_dis(profile)
        self._backward = make_dis("consistency")

    def pair(self, previous: np.ndarray, current: np.ndarray, points: np.ndarray) -> PairFlow:
        """previous, current (H, H) uint8 grey crops; points (N, 2) crop px in ``previous``."""
        columns = flow_columns(previous.shape[1])
        previous_window, current_window = _columns_of(previous, columns), _columns_of(current, columns)
        forward = dense_flow(self._forward, previous_window, current_window)  # (H, w, 2)
        backward = dense_flow(self._backward, current_window, previous_window)
        points_window = points - np.array([columns.start, 0.0])  # crop px -> window px
        dense_at_points = sample_bilinear(forward, points_window)  # (N, 2)
        error = _forward_backward_error_at(dense_at_points, backward, points_window)
        at_points = refine_at_points(previous_window, current_window, points_window, dense_at_points)
        return PairFlow(forward, backward, columns, at_points, error.astype(np.float32),
                        is_consistent(error, dense_at_points))


def smooth_motion_field(shape: tuple[int, int], peak_px: float, seed: int) -> np.ndarray:
    """A known skin-like motion for measuring flow accuracy (benchmark, noise model, tests): 8
    Gaussian bumps scaled to ``peak_px`` plus a 0.3 px global x shift. (H, W, 2) px."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    field = np.zeros(shape + (2,), np.float32)
    for _ in range(8):
        cx, cy = rng.uniform(60, 200, 2)
        sigma = rng.uniform(12, 30)
        field += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))[..., None] * rng.normal(size=2)
    field *= peak_px / np.linalg.norm(field, axis=2).max()
    return field + np.array([0.3, 0.0], np.float32)
