"""Temporal smoothing of per-frame body parameters: the One-Euro filter, zero phase.

SHARED MODULE. This file exists twice, byte for byte: ``pixie_blender/io/smoothing.py`` (the
add-on smooths at import, so raw results stay in the file and the strength can change without
recomputing) and ``backend/pixie_backend/sequence/smoothing.py`` (the backend's exports). Neither
side may import the other's runtime, so the one implementation is copied;
``tests/contract/test_sequence_contract.py`` fails if the copies differ. Edit one, copy it over. It
imports only numpy and the standard library.

The filter is the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012): a first-order low-pass
whose cutoff rises with the signal's speed, ``fc = min_cutoff + beta·|speed|``, so slow motion
(jitter) is smoothed strongly and fast motion passes with little lag. Each output is a convex
combination of inputs, so it never overshoots the data. Results are offline, so every segment is
filtered forward and backward and the two passes are averaged: the forward lag and the backward
lead cancel (zero phase), and a step keeps its position in time.

* Vectors (translation, expression, betas): per component.
* Rotations: unit quaternions (WXYZ), filtered on SO(3): the derivative is the angular velocity
  vector and the low-pass step is a slerp from the previous output towards the new sample; inputs
  are first made sign-continuous. The two passes are averaged by slerp midpoint.
* Missing frames: only valid frames are filtered, with their true time steps; a gap longer than
  ``max_gap_s`` starts a new segment (the filter restarts).

One user parameter, ``strength`` in [0, 1] (0: off), sets ``min_cutoff`` on a log scale from 10 Hz
to 0.2 Hz (:func:`min_cutoff_hz`); ``beta`` is fixed per kind of value (:data:`BETA`).
"""

from __future__ import annotations

import math

import numpy as np

#: Default strength (min_cutoff ≈ 1.41 Hz).
DEFAULT_STRENGTH = 0.5
#: min_cutoff at strength 0+ and at strength 1 (Hz).
CUTOFF_LIGHT_HZ = 10.0
CUTOFF_HEAVY_HZ = 0.2
#: Cutoff of the speed estimate (Hz), as in the One-Euro paper.
DERIVATIVE_CUTOFF_HZ = 1.0
#: Speed sensitivity per kind of value, in seconds per unit: rotation (rad), translation (m),
#: expression and shape coefficients (unitless).
BETA = {"rotation": 0.8, "translation": 1.5, "expression": 0.5, "shape": 0.0}
#: A gap between valid frames longer than this restarts the filter (seconds).
MAX_GAP_S = 0.5


def min_cutoff_hz(strength: float) -> float:
    """``min_cutoff`` for a strength in (0, 1]: 10 Hz · (0.2 / 10) ** strength."""
    s = float(np.clip(strength, 0.0, 1.0))
    return CUTOFF_LIGHT_HZ * (CUTOFF_HEAVY_HZ / CUTOFF_LIGHT_HZ) ** s


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a one-pole low-pass: r / (1 + r), r = 2π·fc·dt."""
    r = 2.0 * math.pi * np.asarray(cutoff) * dt
    return r / (1.0 + r)


# ----------------------------------------------------------------------------------------------
# quaternions (WXYZ, unit)


def normalize_quaternions(q: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4)."""
    q = np.asarray(q, dtype=np.float64)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def continuous_quaternions(q: np.ndarray) -> np.ndarray:
    """Sign continuity along axis 0 of (T, ..., 4): q_t is negated when q_t·q_(t−1) < 0."""
    q = np.array(q, dtype=np.float64, copy=True)
    for t in range(1, q.shape[0]):
        flip = np.sum(q[t] * q[t - 1], axis=-1) < 0
        q[t][flip] *= -1.0
    return q


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation (..., 4) from ``q0`` (t = 0) to ``q1`` (t = 1) along the shorter arc.

    ``t`` broadcasts against the leading dimensions."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    small = sin < 1e-6
    safe = np.where(small, 1.0, sin)
    w0 = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(small, t, np.sin(t * theta) / safe)
    return normalize_quaternions(w0 * q0 + w1 * q1)


def quaternion_angle(q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """Geodesic angle (radians, in [0, π]) between the rotations of unit quaternions (..., 4)."""
    dot = np.abs(np.sum(np.asarray(q0) * np.asarray(q1), axis=-1))
    return 2.0 * np.arccos(np.clip(dot, 0.0, 1.0))


def relative_rotation_vector(q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """Rotation vector (..., 3) of ``q0⁻¹·q1`` (the turn from ``q0`` to ``q1`` in ``q0``'s frame),
    the shorter way."""
    w0, v0 = q0[..., :1], -q0[..., 1:]  # conjugate of q0
    w1, v1 = q1[..., :1], q1[..., 1:]
    w = w0 * w1 - np.sum(v0 * v1, axis=-1, keepdims=True)
    v = w0 * v1 + w1 * v0 + np.cross(v0, v1)
    v = np.where(w < 0, -v, v)
    w = np.abs(w)
    s = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, w)
    return v * np.where(s > 1e-12, angle / np.where(s > 1e-12, s, 1.0), 2.0)


# ----------------------------------------------------------------------------------------------
# the One-Euro filter, one direction


def one_euro_vectors(
    values: np.ndarray, times: np.ndarray, min_cutoff: float, beta: float, d_cutoff: float = DERIVATIVE_CUTOFF_HZ
) -> np.ndarray:
    """Causal One-Euro filter of ``values`` (T, D) sampled at increasing ``times`` (T,) seconds."""
    x = np.asarray(values, dtype=np.float64)
    out = np.empty_like(x)
    if len(x) == 0:
        return out
    out[0] = x[0]
    dx = np.zeros(x.shape[1:])
    for t in range(1, len(x)):
        dt = float(times[t] - times[t - 1])
        raw = (x[t] - out[t - 1]) / dt
        dx = dx + _alpha(d_cutoff, dt) * (raw - dx)
        a = _alpha(min_cutoff + beta * np.abs(dx), dt)
        out[t] = out[t - 1] + a * (x[t] - out[t - 1])
    return out


def one_euro_quaternions(
    quats: np.ndarray, times: np.ndarray, min_cutoff: float, beta: float, d_cutoff: float = DERIVATIVE_CUTOFF_HZ
) -> np.ndarray:
    """Causal One-Euro filter on SO(3) of unit quaternions (T, J, 4). The derivative is the angular
    velocity (rotation vector from the previous output to the new sample, per second), low-passed
    as a vector; the cutoff uses its norm; the low-pass step is a slerp towards the new sample.
    About a fixed axis this is exactly the scalar filter of the angle."""
    q = np.asarray(quats, dtype=np.float64)
    out = np.empty_like(q)
    if len(q) == 0:
        return out
    out[0] = q[0]
    omega = np.zeros(q.shape[1:-1] + (3,))
    for t in range(1, len(q)):
        dt = float(times[t] - times[t - 1])
        raw = relative_rotation_vector(out[t - 1], q[t]) / dt
        omega = omega + _alpha(d_cutoff, dt) * (raw - omega)
        a = _alpha(min_cutoff + beta * np.linalg.norm(omega, axis=-1), dt)
        out[t] = slerp(out[t - 1], q[t], a)
    return out


# ----------------------------------------------------------------------------------------------
# zero phase, segments, public entry points


def segments(times: np.ndarray, valid: np.ndarray | None = None, max_gap_s: float = MAX_GAP_S) -> list[np.ndarray]:
    """Index arrays of the runs of valid frames, split where consecutive valid frames are more
    than ``max_gap_s`` apart."""
    times = np.asarray(times, dtype=np.float64)
    idx = np.flatnonzero(np.ones(len(times), bool) if valid is None else np.asarray(valid, bool))
    if len(idx) == 0:
        return []
    cuts = np.flatnonzero(np.diff(times[idx]) > max_gap_s) + 1
    return np.split(idx, cuts)


def _check_times(times: np.ndarray) -> np.ndarray:
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or (len(times) > 1 and not (np.diff(times) > 0).all()):
        raise ValueError("times must be a strictly increasing 1-D array (seconds)")
    return times


def smooth_vectors(
    values: np.ndarray,
    times: np.ndarray,
    strength: float = DEFAULT_STRENGTH,
    kind: str = "translation",
    valid: np.ndarray | None = None,
    max_gap_s: float = MAX_GAP_S,
) -> np.ndarray:
    """Zero-phase One-Euro smoothing of (T, ...) values over valid frames; invalid rows are
    returned unchanged. ``kind`` picks ``beta`` (:data:`BETA`)."""
    times = _check_times(times)
    x = np.asarray(values, dtype=np.float64)
    out = x.copy()
    if strength <= 0 or len(x) < 2:
        return out
    flat = x.reshape(len(x), -1)
    res = out.reshape(len(x), -1)
    fc, beta = min_cutoff_hz(strength), BETA[kind]
    for seg in segments(times, valid, max_gap_s):
        if len(seg) < 2:
            continue
        t = times[seg]
        fwd = one_euro_vectors(flat[seg], t, fc, beta)
        bwd = one_euro_vectors(flat[seg][::-1], -t[::-1], fc, beta)[::-1]
        res[seg] = 0.5 * (fwd + bwd)
    return out


def smooth_quaternions(
    quats: np.ndarray,
    times: np.ndarray,
    strength: float = DEFAULT_STRENGTH,
    valid: np.ndarray | None = None,
    max_gap_s: float = MAX_GAP_S,
) -> np.ndarray:
    """Zero-phase One-Euro smoothing on SO(3) of unit quaternions (T, J, 4) over valid frames.
    The output is sign-continuous along each segment; invalid rows are returned unchanged."""
    times = _check_times(times)
    q = normalize_quaternions(quats)
    out = q.copy()
    if strength <= 0 or len(q) < 2:
        return out
    fc, beta = min_cutoff_hz(strength), BETA["rotation"]
    for seg in segments(times, valid, max_gap_s):
        if len(seg) < 2:
            continue
        t = times[seg]
        qs = continuous_quaternions(q[seg])
        fwd = one_euro_quaternions(qs, t, fc, beta)
        bwd = one_euro_quaternions(qs[::-1], -t[::-1], fc, beta)[::-1]
        out[seg] = slerp(fwd, bwd, 0.5)
    return out


def resample(
    times_src: np.ndarray, times_dst: np.ndarray, quats: np.ndarray | None = None, vectors: np.ndarray | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Values at ``times_dst`` from samples at ``times_src`` (both increasing): slerp for quaternions
    (T, J, 4), linear for vectors (T, ...); held constant outside the sampled range."""
    ts = _check_times(times_src)
    td = np.asarray(times_dst, dtype=np.float64)
    hi = np.clip(np.searchsorted(ts, td, side="right"), 1, max(len(ts) - 1, 1))
    lo = hi - 1
    if len(ts) == 1:
        lo = hi = np.zeros(len(td), int)
        w = np.zeros(len(td))
    else:
        w = np.clip((td - ts[lo]) / (ts[hi] - ts[lo]), 0.0, 1.0)
    q_out = v_out = None
    if quats is not None:
        q = continuous_quaternions(normalize_quaternions(quats))
        q_out = slerp(q[lo], q[hi], w.reshape((-1,) + (1,) * (q.ndim - 2)))
    if vectors is not None:
        v = np.asarray(vectors, dtype=np.float64)
        ww = w.reshape((-1,) + (1,) * (v.ndim - 1))
        v_out = (1.0 - ww) * v[lo] + ww * v[hi]
    return q_out, v_out
