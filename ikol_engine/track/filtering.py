"""Temporal filters and measures: per-frame arrays in, smoother per-frame arrays out.

Everything here works on plain numpy arrays whose first axis is time (T frames). A
``valid`` mask (T,) marks the frames that hold a measurement; the values of the other
frames are placeholders (they may be NaN) and are passed through untouched. Numpy only:
the Blender extension imports this module.

* :func:`one_euro`, :func:`one_euro_forward_backward`: the one-euro filter (Casiez,
  Roussel and Vogel, CHI 2012), and a zero-lag offline variant.
* :func:`running_median`: drop spikes a few frames long, keep longer changes.
* :func:`quaternion_continuity`: keep consecutive quaternions in one hemisphere;
  :func:`smoothed_quaternions`: joint rotations despiked and filtered.
* :func:`jitter`: mean joint acceleration, the number the benchmark reports.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Frames in the running median that removes spikes from observed twist and from the
#: rotations a temporal term pulls towards (about 0.23 s at 30 fps).
DESPIKE_FRAMES = 7

# --------------------------------------------------------------------------------------
# One-euro filter


@dataclass(frozen=True)
class OneEuroParams:
    """Tuning of the one-euro filter.

    ``min_cutoff`` (Hz) sets the smoothing when the signal is still (lower: less jitter,
    more lag); ``beta`` (per unit of the signal's speed) raises the cutoff as the signal
    moves fast (higher: less lag in fast motion); ``d_cutoff`` (Hz) smooths the speed
    estimate that drives it.
    """

    min_cutoff: float = 1.0
    beta: float = 0.5
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "beta", "d_cutoff"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"OneEuroParams.{name} must be a positive number, got {value!r}")


def _smoothing_factor(cutoff: np.ndarray | float, period: float) -> np.ndarray | float:
    """Exponential smoothing factor of a first-order low-pass with this cutoff (Hz)."""
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / period)


def _check_series(x: np.ndarray, fps: float, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Validates a (T, ...) series, its frame rate and mask; returns float x and bool mask."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1:
        raise ValueError("x needs a time axis: shape (T, ...)")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps!r}")
    if valid is None:
        valid = np.ones(len(x), dtype=bool)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (len(x),):
        raise ValueError(f"valid must have shape ({len(x)},), got {valid.shape}")
    return x, valid


def one_euro(x: np.ndarray, fps: float, params: OneEuroParams = OneEuroParams(),
             valid: np.ndarray | None = None) -> np.ndarray:
    """Filters a series causally with the one-euro filter, element-wise.

    Each element of the trailing dims is its own filter: a low-pass whose cutoff is
    ``min_cutoff + beta * |filtered derivative|``, so slow motion is smoothed hard and
    fast motion passes with little lag.

    Args:
        x: (T, ...) samples, one frame every ``1 / fps`` seconds.
        fps: frames per second.
        params: the filter's tuning.
        valid: (T,) frames to filter; None = all. Invalid frames are returned unchanged,
            do not update the filter, and the filter restarts at the next valid frame
            (the motion across a dropout is unknown, so the old state would only drag).
    Returns:
        (T, ...) float64 filtered samples.
    """
    x, valid = _check_series(x, fps, valid)
    period = 1.0 / fps
    derivative_alpha = _smoothing_factor(params.d_cutoff, period)
    out = x.copy()
    state = derivative = None
    for t in range(len(x)):
        if not valid[t]:
            state = None
            continue
        if state is None:
            state, derivative = x[t], np.zeros_like(x[t])
            continue
        derivative = derivative + derivative_alpha * ((x[t] - state) * fps - derivative)
        alpha = _smoothing_factor(params.min_cutoff + params.beta * np.abs(derivative), period)
        state = state + alpha * (x[t] - state)
        out[t] = state
    return out


def one_euro_forward_backward(x: np.ndarray, fps: float, params: OneEuroParams = OneEuroParams(),
                              valid: np.ndarray | None = None) -> np.ndarray:
    """The one-euro filter run forwards and backwards in time, averaged: no lag.

    A causal filter lags the signal by roughly its time constant; the same filter run on
    the reversed clip leads it by as much, so their mean is centred (offline video
    allows looking ahead). Shapes and ``valid`` as :func:`one_euro`.
    """
    x, valid = _check_series(x, fps, valid)
    forward = one_euro(x, fps, params, valid)
    backward = one_euro(x[::-1], fps, params, valid[::-1])[::-1]
    return 0.5 * (forward + backward)


def running_median(x: np.ndarray, window: int) -> np.ndarray:
    """Median over a centred window of ``window`` (odd) frames, element-wise.

    A spike of up to ``window // 2`` frames is replaced by its surroundings, while a
    change that lasts longer passes unchanged (a median keeps edges, a low-pass smears
    them). The clip's ends are padded with their first and last frames.

    Args:
        x: (T, ...) samples.
    Returns:
        (T, ...) float64; ``x`` itself (as float64) when T < ``window``.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window!r}")
    x = np.asarray(x, dtype=np.float64)
    if len(x) < window:
        return x
    half = window // 2
    padded = np.concatenate([x[:1].repeat(half, 0), x, x[-1:].repeat(half, 0)])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, window, axis=0), axis=-1)


# --------------------------------------------------------------------------------------
# Rotations and measures


def smoothed_quaternions(q: np.ndarray, fps: float, params: OneEuroParams, despike_frames: int) -> np.ndarray:
    """Joint rotations smoothed in time: spikes dropped (:func:`running_median`), then
    one-euro filtered, through continuous quaternions.

    Spikes go first: a joint that flips for a frame or two would otherwise stay in the
    low-passed result, smeared over its neighbours.

    Args:
        q: (T, J, 4) unit quaternions (any component order), T consecutive frames.
    Returns:
        (T, J, 4) float64 unit quaternions.
    """
    smooth = one_euro_forward_backward(running_median(quaternion_continuity(q), despike_frames), fps, params)
    return smooth / np.linalg.norm(smooth, axis=-1, keepdims=True)


def quaternion_continuity(q: np.ndarray) -> np.ndarray:
    """Flips quaternion signs so each lies in the hemisphere of its previous frame.

    q and -q are the same rotation, but keyframe interpolation between q_t and a
    -q_{t+1} takes the long way round; after this, consecutive quaternions of a joint
    have a dot product >= 0. The first frame keeps its sign.

    Args:
        q: (T, J, 4) quaternions (any component order).
    Returns:
        (T, J, 4) float64, each entry ``q`` or ``-q``.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 3 or q.shape[-1] != 4:
        raise ValueError(f"q must have shape (T, J, 4), got {q.shape}")
    # The sign of frame t relative to the raw frame t-1; its running product is the
    # flip that puts frame t next to the already corrected frame t-1.
    step = np.where(np.einsum("tjc,tjc->tj", q[1:], q[:-1]) < 0, -1.0, 1.0)
    sign = np.concatenate([np.ones((1, q.shape[1])), np.cumprod(step, axis=0)])
    return q * sign[..., None]


def jitter(x: np.ndarray, fps: float, valid: np.ndarray | None = None) -> float:
    """Mean joint acceleration magnitude, m/s^2 for x in metres.

    The acceleration of frame t is ``(x[t+1] - 2 x[t] + x[t-1]) * fps^2``, taken where
    frames t-1, t and t+1 are all valid, and its magnitude averaged over those frames
    and all keypoints.

    Args:
        x: (T, K, 3) positions.
        fps: frames per second.
        valid: (T,) bool; None = all.
    Returns:
        The mean, or NaN when no three consecutive frames are valid.
    """
    x, valid = _check_series(x, fps, valid)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, K, 3), got {x.shape}")
    if len(x) < 3:
        return float("nan")
    centre = valid[:-2] & valid[1:-1] & valid[2:]
    if not centre.any():
        return float("nan")
    acceleration = (x[2:] - 2.0 * x[1:-1] + x[:-2])[centre] * fps**2
    return float(np.linalg.norm(acceleration, axis=-1).mean())
