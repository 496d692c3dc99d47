"""One body shape per track: a robust average of the per-frame betas."""

from __future__ import annotations

import numpy as np


def robust_betas(
    betas: np.ndarray, weights: np.ndarray | None = None, iterations: int = 200, tol: float = 1e-9
) -> np.ndarray:
    """The geometric median of per-frame shape vectors (Weiszfeld's algorithm).

    The point minimising the sum of Euclidean distances to the frames' betas: unlike the mean, a
    minority of wrong frames (a bad crop, a half-visible person) cannot pull it far (breakdown
    point 50 %), and unlike a per-component median it treats the shape vector as a whole.

    Args:
        betas: (N, B) per-frame shape coefficients, N ≥ 1.
        weights: optional (N,) non-negative frame weights (e.g. confidences); default equal.

    Returns:
        (B,) float64.
    """
    x = np.asarray(betas, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"betas must be (N, B) with N >= 1, got {x.shape}")
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(x),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be (N,) non-negative with a positive sum")
    y = np.average(x, axis=0, weights=w)
    scale = max(float(np.abs(x).max()), 1.0)
    eps = 1e-12 * scale
    for _ in range(iterations):
        d = np.linalg.norm(x - y, axis=1)
        near = d < eps
        if near.any():  # y sits on samples: it is the median if the others' pull is weaker than theirs
            far = ~near
            if not far.any():
                return y
            pull = ((w[far] / d[far])[:, None] * (x[far] - y)).sum(axis=0)
            if np.linalg.norm(pull) <= w[near].sum():
                return y
            d = np.maximum(d, eps)
        inv = w / d
        y_new = (inv[:, None] * x).sum(axis=0) / inv.sum()
        if np.linalg.norm(y_new - y) <= tol * scale:
            return y_new
        y = y_new
    return y
