"""Temporal kernels: one-euro filtering, gap filling, left/right swaps, quaternion signs, jitter."""
import numpy as np
import pytest

from ikol_engine.track.cleanup import fill_gaps, fix_left_right_swaps, gap_runs, swap_pairs
import roma
import torch

from ikol_engine.track.filtering import (
    OneEuroParams, jitter, one_euro, one_euro_forward_backward, quaternion_continuity, running_median,
)
from ikol_engine.track.options import SolveOptions
from ikol_engine.track.passes import smoothed_rotations

FPS = 30.0


# --------------------------------------------------------------------------------------
# One-euro filter


@pytest.fixture
def noisy_sine():
    """A 0.5 Hz sine of amplitude 1 sampled at 30 fps, with noise of 0.02 rms."""
    t = np.arange(600) / FPS
    clean = np.sin(2 * np.pi * 0.5 * t)
    return clean, clean + np.random.default_rng(0).normal(0, 0.02, len(t))


def lag_frames(filtered: np.ndarray, clean: np.ndarray, reach: int = 10) -> int:
    """Frames by which ``filtered`` trails ``clean``: the cross-correlation peak."""
    inner = slice(reach + 10, len(clean) - reach - 10)
    shifts = np.arange(-reach, reach + 1)
    scores = [np.dot(np.roll(filtered, -s)[inner], clean[inner]) for s in shifts]
    return int(shifts[np.argmax(scores)])


def mean_second_difference(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x, 2, axis=0)).mean())


@pytest.mark.parametrize("field", ["min_cutoff", "beta", "d_cutoff"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_params_must_be_positive(field, value):
    with pytest.raises(ValueError, match=field):
        OneEuroParams(**{field: value})


def test_forward_backward_has_no_lag_and_less_jitter(noisy_sine):
    clean, noisy = noisy_sine
    forward = one_euro(noisy, FPS, OneEuroParams())
    both = one_euro_forward_backward(noisy, FPS, OneEuroParams())
    assert lag_frames(noisy, clean) == 0
    assert lag_frames(forward, clean) >= 1  # measured: 1 frame (3 with beta = 0.1)
    assert lag_frames(both, clean) == 0
    # Measured: jitter / 2.95 forwards, / 3.18 forward-backward.
    assert mean_second_difference(noisy) / mean_second_difference(both) > 2.8
    # ... while keeping the signal: measured within 0.053 of the clean sine.
    assert np.abs(both - clean)[20:-20].max() < 0.08


def test_forward_backward_keeps_a_step():
    step = np.where(np.arange(100) >= 50, 1.0, 0.0)
    out = one_euro_forward_backward(step, FPS, OneEuroParams())
    # Symmetric about the step, within 5% of each level 4 frames from it (measured 3.7%).
    np.testing.assert_allclose(out[50:] + out[49::-1], 1.0, atol=1e-12)
    assert out[53] > 0.95 and out[46] < 0.05
    assert np.all(np.diff(out) >= 0)


def test_trailing_dims_are_independent_filters(noisy_sine):
    _, noisy = noisy_sine
    rng = np.random.default_rng(1)
    x = noisy[:, None, None] * rng.uniform(0.1, 3.0, (1, 4, 3)) + rng.normal(0, 1, (1, 4, 3))
    out = one_euro(x, FPS, OneEuroParams())
    for k in range(4):
        for c in range(3):
            alone = one_euro(x[:, k, c], FPS, OneEuroParams())
            np.testing.assert_allclose(out[:, k, c], alone, rtol=0, atol=1e-12)


def test_invalid_frames_pass_through_and_restart_the_filter(noisy_sine):
    _, noisy = noisy_sine
    x = noisy.copy()
    valid = np.ones(len(x), dtype=bool)
    valid[200:205] = False
    x[200:205] = np.nan
    for filt in (one_euro, one_euro_forward_backward):
        out = filt(x, FPS, OneEuroParams(), valid)
        assert np.isnan(out[200:205]).all()
        # Each side is filtered as if it were its own clip.
        np.testing.assert_allclose(out[:200], filt(x[:200], FPS, OneEuroParams()), atol=1e-12)
        np.testing.assert_allclose(out[205:], filt(x[205:], FPS, OneEuroParams()), atol=1e-12)
    assert one_euro(x, FPS, OneEuroParams(), valid)[205] == x[205]


# --------------------------------------------------------------------------------------
# Gaps


def test_gap_runs():
    valid = np.array([0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 0], dtype=bool)
    assert gap_runs(valid) == [(0, 2), (4, 5), (6, 9), (10, 11)]
    assert gap_runs(np.ones(4, dtype=bool)) == []
    assert gap_runs(np.zeros(3, dtype=bool)) == [(0, 3)]


def test_fill_gaps_interpolates_short_and_holds_long():
    frames = 20
    x = np.stack([np.arange(frames) * 1.0, np.arange(frames) ** 2.0], -1)[:, None, :]  # (T, 1, 2)
    valid = np.ones(frames, dtype=bool)
    valid[[0, 1, 5, 6, 10, 11, 12, 13, 19]] = False
    garbage = x.copy()
    garbage[~valid] = np.nan
    filled, interpolated, held = fill_gaps(garbage, valid, max_gap=3)

    np.testing.assert_array_equal(np.flatnonzero(interpolated), [5, 6])
    np.testing.assert_array_equal(np.flatnonzero(held), [0, 1, 10, 11, 12, 13, 19])
    np.testing.assert_array_equal(filled[valid], x[valid])
    # Linear data is interpolated exactly; the square between 4 and 7 along the chord.
    np.testing.assert_allclose(filled[[5, 6], 0, 0], [5.0, 6.0])
    np.testing.assert_allclose(filled[[5, 6], 0, 1], [16 + 33 / 3, 16 + 66 / 3])
    # Held at the nearest valid frame: 9 for 10-11, 14 for 12-13; ends from 2 and 18.
    np.testing.assert_array_equal(filled[[0, 1, 10, 11, 12, 13, 19], 0, 0], [2, 2, 9, 9, 14, 14, 18])


def test_fill_gaps_edge_cases():
    x = np.arange(5.0)
    valid = np.array([1, 0, 0, 0, 1], dtype=bool)
    filled, interpolated, held = fill_gaps(x, valid, max_gap=0)
    np.testing.assert_array_equal(filled, [0, 0, 0, 4, 4])  # the tie goes to the earlier frame
    assert held[1:4].all() and not interpolated.any()
    filled, interpolated, _ = fill_gaps(x, valid, max_gap=3)
    np.testing.assert_array_equal(filled, x)
    assert interpolated.sum() == 3
    with pytest.raises(ValueError, match="valid frame"):
        fill_gaps(x, np.zeros(5, dtype=bool), max_gap=3)


# --------------------------------------------------------------------------------------
# Left/right swaps

# Keypoints of a toy walker: unpaired pelvis, neck, head; pairs of hips, shoulders,
# knees, ankles, wrists.
PAIRS = [(3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]


def walker(frames: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth walk (metres, y up, forward +x) with 5 mm noise and confidences in 0.5..1.

    Legs and arms swing out of phase; the knees (2 cm apart sideways) pass each other in
    every stride, and from frame 150 to 210 the hands cross in front of the body and
    back, so the wrists legitimately trade sides.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / FPS
    swing = np.sin(2 * np.pi * 0.9 * t)
    cross = np.clip(np.sin(np.pi * (t - 5.0) / 2.0), 0, None) * (t >= 5.0) * (t <= 7.0)
    points = np.zeros((frames, 13, 3))
    side = np.array([1.0, -1.0])  # left at +z
    points[:, 0] = [0, 0.95, 0]
    points[:, 1] = [0, 1.45, 0]
    points[:, 2] = [0.02, 1.65, 0]
    for (left, right), height, width, reach in [
        ((3, 4), 0.92, 0.10, 0.02),
        ((5, 6), 1.42, 0.18, -0.03),
        ((7, 8), 0.50, 0.01, 0.20),
        ((9, 10), 0.08, 0.10, 0.35),
    ]:
        for k, s in zip((left, right), side):
            points[:, k, 0] = s * reach * swing
            points[:, k, 1] = height
            points[:, k, 2] = s * width
    for k, s in zip((11, 12), side):
        points[:, k, 0] = -s * 0.2 * swing + 0.3 * cross
        points[:, k, 1] = 0.85 + 0.35 * cross
        points[:, k, 2] = s * 0.25 * (1 - 2 * cross)  # trades sides when cross = 1
    points[..., 0] += 1.3 * t[:, None]  # walking forward
    points[..., 1] += 0.03 * np.abs(swing)[:, None]  # bobbing
    points += rng.normal(0, 0.005, points.shape)
    confidence = rng.uniform(0.5, 1.0, points.shape[:2])
    return points, confidence


def test_walker_has_no_false_positives():
    points, confidence = walker()
    fixed, fixed_confidence, swapped = fix_left_right_swaps(points, confidence, PAIRS)
    assert not swapped.any()
    np.testing.assert_array_equal(fixed, points)
    np.testing.assert_array_equal(fixed_confidence, confidence)


@pytest.mark.parametrize("bad", [slice(100, 130), slice(0, 5), slice(295, 300), slice(171, 172)])
def test_swapped_runs_are_found_exactly(bad):
    points, confidence = walker()
    truth = np.zeros(len(points), dtype=bool)
    truth[bad] = True
    fixed, fixed_confidence, swapped = fix_left_right_swaps(
        swap_pairs(points, PAIRS, truth), swap_pairs(confidence, PAIRS, truth), PAIRS)
    np.testing.assert_array_equal(np.flatnonzero(swapped), np.flatnonzero(truth))
    np.testing.assert_array_equal(fixed, points)
    np.testing.assert_array_equal(fixed_confidence, confidence)


def test_fast_travel_does_not_hide_swaps():
    # Running at 5.3 m/s moves the body 18 cm a frame, as much as half its width:
    # compared uncentred, a swapped frame would look no closer than the true one.
    points, confidence = walker()
    points[..., 0] += 4.0 * np.arange(len(points))[:, None] / FPS
    truth = np.zeros(len(points), dtype=bool)
    truth[100:130] = True
    _, _, swapped = fix_left_right_swaps(
        swap_pairs(points, PAIRS, truth), swap_pairs(confidence, PAIRS, truth), PAIRS)
    np.testing.assert_array_equal(swapped, truth)


def test_swaps_across_dropouts_and_low_confidence():
    points, confidence = walker(seed=3)
    truth = np.zeros(len(points), dtype=bool)
    truth[[*range(40, 60), *range(200, 203), 250]] = True
    valid = np.ones(len(points), dtype=bool)
    valid[[55, 56, 57, 120, 121]] = False  # a dropout inside a swapped run, and one outside
    confidence[:, 9] = np.where(np.arange(len(points)) % 7 == 0, 0.0, confidence[:, 9])  # ankle lost
    raw = swap_pairs(points, PAIRS, truth)
    raw[~valid] = np.nan
    raw[confidence == 0] = np.nan
    _, _, swapped = fix_left_right_swaps(raw, swap_pairs(confidence, PAIRS, truth), PAIRS, valid)
    np.testing.assert_array_equal(np.flatnonzero(swapped), np.flatnonzero(truth & valid))


def test_each_chain_after_a_long_dropout_has_its_own_majority():
    points, confidence = walker()
    truth = np.zeros(len(points), dtype=bool)
    truth[[*range(0, 10), *range(200, 300)]] = True  # after the dropout, all swapped ...
    valid = np.ones(len(points), dtype=bool)
    valid[150:200] = False  # ... but nothing links it to the start
    raw = swap_pairs(points, PAIRS, truth)
    _, _, swapped = fix_left_right_swaps(raw, confidence, PAIRS, valid, max_link_gap=10)
    np.testing.assert_array_equal(np.flatnonzero(swapped), np.arange(10))
    _, _, swapped = fix_left_right_swaps(raw, confidence, PAIRS, valid, max_link_gap=60)
    np.testing.assert_array_equal(np.flatnonzero(swapped), np.flatnonzero(truth))


def test_swap_pairs_takes_any_trailing_dims():
    array = np.arange(2 * 13 * 2).reshape(2, 13, 2)
    out = swap_pairs(array, [(3, 4), (11, 12)], np.array([False, True]))
    np.testing.assert_array_equal(out[0], array[0])
    np.testing.assert_array_equal(out[1, [3, 4, 11, 12]], array[1, [4, 3, 12, 11]])
    np.testing.assert_array_equal(np.delete(out[1], [3, 4, 11, 12], 0), np.delete(array[1], [3, 4, 11, 12], 0))
    with pytest.raises(ValueError, match="disjoint"):
        swap_pairs(array, [(3, 4), (4, 5)], np.ones(2, dtype=bool))


# --------------------------------------------------------------------------------------
# Quaternions and jitter


def test_quaternion_continuity():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4, 400)[:, None]
    angle = 3.0 * np.sin(t * rng.uniform(0.5, 2.0, (1, 6))) + 2 * t  # several full turns
    axis = np.stack([np.cos(t + rng.uniform(0, 6, (1, 6))), np.sin(0.7 * t + 1.0) * np.ones((1, 6)),
                     np.ones((400, 6))], -1)
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    smooth = np.concatenate([np.cos(angle / 2)[..., None], np.sin(angle / 2)[..., None] * axis], -1)
    flips = np.where(rng.random((400, 6)) < 0.3, -1.0, 1.0)
    flips[0] = 1.0
    q = smooth * flips[..., None]
    out = quaternion_continuity(q)
    assert (np.einsum("tjc,tjc->tj", out[1:], out[:-1]) >= 0).all()
    assert (np.all(out == q, axis=-1) | np.all(out == -q, axis=-1)).all()
    # The path is smooth, so the result is the smooth path itself (its first frame's sign).
    np.testing.assert_allclose(out, smooth, atol=1e-12)


def test_jitter_of_constant_acceleration():
    t = np.arange(50) / FPS
    acceleration = np.array([[3.0, -4.0, 0.0], [0.0, 0.0, 9.81]])  # (K, 3): |a| 5 and 9.81
    x = 0.5 * acceleration * t[:, None, None] ** 2 + np.array([0.3, 1.0, -2.0]) * t[:, None, None]
    assert jitter(x, FPS) == pytest.approx((5.0 + 9.81) / 2, rel=1e-9)
    valid = np.ones(len(t), dtype=bool)
    valid[[10, 30]] = False
    spiky = x.copy()
    spiky[[10, 30]] = 1e3  # placeholders in invalid frames do not count
    assert jitter(spiky, FPS, valid) == pytest.approx((5.0 + 9.81) / 2, rel=1e-9)
    assert np.isnan(jitter(x[:2], FPS))
    assert np.isnan(jitter(x, FPS, np.arange(len(t)) % 2 == 0))


# --------------------------------------------------------------------------------------
# Spikes


def test_running_median_drops_short_spikes_and_keeps_steps():
    rng = np.random.default_rng(3)
    x = np.zeros((60, 2))
    x[30:] = 1.0                      # a step that lasts
    x[10:13, 0] = 5.0                 # a 3-frame spike
    x[45, 1] = -4.0                   # a 1-frame spike
    x += rng.normal(0, 1e-3, x.shape)
    out = running_median(x, 7)
    assert np.abs(out[5:25]).max() < 0.01
    assert np.abs(out[33:] - 1.0).max() < 0.01
    assert np.abs(out[28] - 0.0).max() < 0.01 and np.abs(out[31] - 1.0).max() < 0.01  # the step stays sharp
    assert running_median(x[:5], 7).shape == (5, 2) and np.array_equal(running_median(x[:5], 7), x[:5])
    with pytest.raises(ValueError):
        running_median(x, 4)


def test_reference_rotations_ignore_a_two_frame_flip():
    """A joint turning steadily whose rotation flips by 150 degrees for two frames: the
    temporal term's reference stays on the steady turn, not on a smear of the flip."""
    frames = 90
    angle = torch.linspace(0.0, 1.0, frames)                       # radians, 0.33 rad/s at 30 fps
    rotvec = torch.zeros(frames, 24, 3)
    rotvec[:, 18, 2] = angle
    steady = roma.rotvec_to_rotmat(rotvec)
    flipped = steady.clone()
    flip = roma.rotvec_to_rotmat(torch.tensor([np.radians(150.0), 0.0, 0.0], dtype=torch.float32))
    flipped[40:42, 18] = flipped[40:42, 18] @ flip
    reference = smoothed_rotations(flipped, FPS, SolveOptions())
    error = np.degrees(roma.rotmat_geodesic_distance(reference[:, 18], steady[:, 18]).numpy())
    assert error.max() < 2.0, error.max()
