"""Temporal smoothing (``pixie_blender.io.smoothing``): the One-Euro filter against an independent
scalar implementation of the paper's algorithm, jitter, lag and overshoot on noisy synthetic
trajectories, rotations on SO(3), missing frames."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixie_blender.io import convert
from pixie_blender.io import smoothing as S
from tests.support.fake_result import axis_angle_to_matrix

FPS = 30.0
T = 240
TIMES = np.arange(T) / FPS


def _reference_one_euro(x, times, min_cutoff, beta, d_cutoff=1.0):
    """Casiez et al. (CHI 2012), one scalar sample at a time, written out from the paper."""

    def alpha(cutoff, te):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / te)

    out = [x[0]]
    dx_prev = 0.0
    for i in range(1, len(x)):
        te = times[i] - times[i - 1]
        dx = (x[i] - out[-1]) / te
        dx_hat = alpha(d_cutoff, te) * dx + (1 - alpha(d_cutoff, te)) * dx_prev
        cutoff = min_cutoff + beta * abs(dx_hat)
        a = alpha(cutoff, te)
        out.append(a * x[i] + (1 - a) * out[-1])
        dx_prev = dx_hat
    return np.array(out)


def _quats(aa):
    return convert.rotmat_to_quat_wxyz(axis_angle_to_matrix(aa))


def _noisy_rotations(rng, clean_aa, sigma):
    """Clean rotations (T, J, 3 axis-angle) times random rotations of about ``sigma`` radians."""
    noise = axis_angle_to_matrix(rng.normal(scale=sigma, size=clean_aa.shape))
    return convert.rotmat_to_quat_wxyz(axis_angle_to_matrix(clean_aa) @ noise)


def _rot_jitter(q):
    """Mean angle between q_t and the slerp midpoint of its neighbours (a second difference on SO(3))."""
    mid = S.slerp(q[:-2], q[2:], 0.5)
    return float(S.quaternion_angle(q[1:-1], mid).mean())


def test_one_euro_equals_the_papers_algorithm():
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.02, 0.05, size=200))  # variable time steps
    x = np.cumsum(rng.normal(size=200)) * 0.1
    got = S.one_euro_vectors(x[:, None], times, 1.3, 0.7)[:, 0]
    np.testing.assert_allclose(got, _reference_one_euro(x, times, 1.3, 0.7), rtol=0, atol=1e-12)


def test_quaternion_filter_reduces_to_the_scalar_filter_about_one_axis():
    """Rotations about one fixed axis: SO(3) One-Euro of the angle is the scalar One-Euro."""
    rng = np.random.default_rng(1)
    angle = 0.4 * np.sin(TIMES * 3) + rng.normal(scale=0.05, size=T)
    q = _quats(np.stack([np.zeros(T), angle, np.zeros(T)], -1))[:, None]
    got = S.one_euro_quaternions(q, TIMES, 1.0, 0.8)[:, 0]
    ref = _reference_one_euro(angle, TIMES, 1.0, 0.8)
    np.testing.assert_allclose(got, _quats(np.stack([np.zeros(T), ref, np.zeros(T)], -1)), atol=1e-9)


@pytest.mark.parametrize(("kind", "amplitude", "sigma"), [("translation", 0.3, 0.02), ("expression", 1.5, 0.15)])
def test_vector_jitter_goes_down_and_tracks_the_motion(kind, amplitude, sigma):
    rng = np.random.default_rng(2)
    clean = amplitude * np.sin(2 * np.pi * 0.5 * TIMES)[:, None] * np.ones((1, 3))
    noisy = clean + rng.normal(scale=sigma, size=clean.shape)
    smooth = S.smooth_vectors(noisy, TIMES, S.DEFAULT_STRENGTH, kind)
    jitter = lambda v: np.std(np.diff(v, 2, axis=0))  # noqa: E731
    assert jitter(smooth) < 0.4 * jitter(noisy)
    assert np.sqrt(np.mean((smooth - clean) ** 2)) < 0.65 * np.sqrt(np.mean((noisy - clean) ** 2))


def test_rotation_jitter_goes_down_on_so3():
    rng = np.random.default_rng(3)
    J = 55
    clean = np.zeros((T, J, 3))
    clean[..., 0] = 0.6 * np.sin(2 * np.pi * 0.5 * TIMES)[:, None]
    clean[..., 2] = 0.3 * np.cos(2 * np.pi * 0.3 * TIMES)[:, None]
    noisy = _noisy_rotations(rng, clean, 0.03)
    noisy[1::2] *= -1.0  # sign flips must not matter
    smooth = S.smooth_quaternions(noisy, TIMES, S.DEFAULT_STRENGTH)
    assert _rot_jitter(smooth) < 0.4 * _rot_jitter(S.continuous_quaternions(noisy))
    truth = _quats(clean)
    assert S.quaternion_angle(smooth, truth).mean() < 0.65 * S.quaternion_angle(noisy, truth).mean()
    np.testing.assert_allclose(np.linalg.norm(smooth, axis=-1), 1.0, atol=1e-12)
    # continuous output (interpolation between keys takes the short way)
    assert (np.sum(smooth[1:] * smooth[:-1], axis=-1) > 0).all()


def _step_lag_and_overshoot(y, level0, level1, sigma, step_at):
    """Frames after the step until y stays within the noise band (3σ) of the new level; how far y
    goes beyond either level, in units of σ."""
    band = 3 * sigma
    lag = next(i for i in range(step_at, len(y)) if np.all(np.abs(y[i:] - level1) <= band)) - step_at
    lead = step_at - 1 - next(i for i in range(step_at - 1, -1, -1) if np.all(np.abs(y[: i + 1] - level0) <= band))
    lo, hi = min(level0, level1), max(level0, level1)
    over = max(y.max() - hi, lo - y.min(), 0.0) / sigma
    return lag, lead, over


@pytest.mark.parametrize(("kind", "step", "sigma"), [("translation", 0.3, 0.02), ("expression", 2.0, 0.15)])
def test_vector_step_lag_and_overshoot(kind, step, sigma):
    rng = np.random.default_rng(4)
    for trial in range(5):
        x = np.where(np.arange(T) >= T // 2, step, 0.0) + rng.normal(scale=sigma, size=T)
        y = S.smooth_vectors(x[:, None], TIMES, S.DEFAULT_STRENGTH, kind)[:, 0]
        lag, lead, over = _step_lag_and_overshoot(y, 0.0, step, sigma, T // 2)
        assert lag <= 2 and lead <= 2, (trial, lag, lead)
        assert over <= 3.0, (trial, over)


def test_rotation_step_lag_and_overshoot():
    rng = np.random.default_rng(5)
    sigma, step = 0.03, 0.5
    axis = np.array([0.3, 0.8, -0.5]) / np.linalg.norm([0.3, 0.8, -0.5])
    for trial in range(5):
        angle = np.where(np.arange(T) >= T // 2, step, 0.0)
        clean = (angle[:, None] * axis)[:, None]
        q = _noisy_rotations(rng, clean, sigma / math.sqrt(3))  # σ per axis → about σ in angle
        y = S.smooth_quaternions(q, TIMES, S.DEFAULT_STRENGTH)[:, 0]
        # signed angle along the step axis, and the distance off it
        aa = np.array([_axis_angle(qq) for qq in y])
        along = aa @ axis
        lag, lead, over = _step_lag_and_overshoot(along, 0.0, step, sigma, T // 2)
        assert lag <= 2 and lead <= 2, (trial, lag, lead)
        assert over <= 3.0, (trial, over)


def _axis_angle(q):
    q = q if q[0] >= 0 else -q
    s = np.linalg.norm(q[1:])
    return q[1:] * (2 * math.atan2(s, q[0]) / s) if s > 1e-12 else np.zeros(3)


def test_strength_zero_is_off_and_stronger_is_smoother():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(T, 2))
    np.testing.assert_array_equal(S.smooth_vectors(x, TIMES, 0.0), x)
    j = [np.std(np.diff(S.smooth_vectors(x, TIMES, s, "expression"), 2, axis=0)) for s in (0.2, 0.5, 0.9)]
    assert j[0] > j[1] > j[2]


def test_zero_phase_on_a_ramp_and_constant():
    ramp = np.stack([0.5 * TIMES, -0.2 * TIMES], -1)
    y = S.smooth_vectors(ramp + 0.0, TIMES, 0.8, "translation")
    np.testing.assert_allclose(y[30:-30], ramp[30:-30], atol=1e-4)  # forward lag cancels backward lead
    const = np.full((T, 3), 0.7)
    np.testing.assert_allclose(S.smooth_vectors(const, TIMES, 1.0), const, atol=1e-12)


def test_missing_frames_and_gaps():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(T, 1))
    valid = np.ones(T, bool)
    valid[50:60] = False  # 10 frames = 0.33 s: bridged with the true time step
    valid[120:140] = False  # 20 frames = 0.67 s > MAX_GAP_S: the filter restarts
    y = S.smooth_vectors(x, TIMES, 0.5, "expression", valid=valid)
    np.testing.assert_array_equal(y[~valid], x[~valid])  # invalid rows untouched
    later = S.smooth_vectors(x[140:], TIMES[140:], 0.5, "expression")
    np.testing.assert_allclose(y[140:], later, atol=1e-12)  # independent of what came before the gap
    bridged = S.smooth_vectors(x[:120][valid[:120]], TIMES[:120][valid[:120]], 0.5, "expression")
    np.testing.assert_allclose(y[:120][valid[:120]], bridged, atol=1e-12)
    assert [len(s) for s in S.segments(TIMES, valid)] == [110, 100]


def test_resample_slerps_and_lerps():
    q0 = _quats(np.array([[0.0, 0.0, 0.0]]))
    q1 = _quats(np.array([[0.0, 0.0, 1.0]]))
    q, v = S.resample(
        np.array([0.0, 1.0]), np.array([0.0, 0.25, 1.0, 2.0]), np.stack([q0, -q1]), np.array([[0.0], [4.0]])
    )
    np.testing.assert_allclose(q[1], _quats(np.array([[0.0, 0.0, 0.25]])), atol=1e-12)
    np.testing.assert_allclose(S.quaternion_angle(q[3], q1), 0.0, atol=1e-7)  # held after the end
    np.testing.assert_allclose(v[:, 0], [0.0, 1.0, 4.0, 4.0])


def test_bad_times_are_refused():
    with pytest.raises(ValueError, match="increasing"):
        S.smooth_vectors(np.zeros((3, 1)), np.array([0.0, 0.0, 1.0]), 0.5)
