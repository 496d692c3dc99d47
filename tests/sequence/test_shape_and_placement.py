"""The fixed shape of a track (geometric median of betas) and the backend's perspective placement."""

from __future__ import annotations

import numpy as np
import pytest
from pixie_backend.sequence.placement import default_camera, perspective_translation, project
from pixie_backend.sequence.shape import robust_betas


def test_geometric_median_resists_outliers():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=200)
    frames = truth + rng.normal(scale=0.05, size=(70, 200))
    outliers = truth + rng.normal(loc=3.0, scale=1.0, size=(30, 200))  # 30 % bad frames
    x = np.concatenate([frames, outliers])
    med = robust_betas(x)
    assert np.linalg.norm(med - truth) < 0.25 * np.linalg.norm(x.mean(axis=0) - truth)
    # it minimises the sum of distances: any nudge increases it
    cost = lambda y: np.linalg.norm(x - y, axis=1).sum()  # noqa: E731
    for _ in range(10):
        assert cost(med) <= cost(med + rng.normal(scale=1e-3, size=200)) + 1e-9


def test_geometric_median_special_cases():
    same = np.tile(np.arange(5.0), (4, 1))
    np.testing.assert_array_equal(robust_betas(same), np.arange(5.0))
    one_dim = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    assert robust_betas(one_dim)[0] == pytest.approx(2.0, abs=1e-6)  # the 1-D median
    w = np.array([1.0, 1.0, 5.0])
    np.testing.assert_allclose(robust_betas(np.array([[0.0, 0], [1, 0], [0, 1]]), w), [0, 1], atol=1e-9)
    with pytest.raises(ValueError):
        robust_betas(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        robust_betas(np.zeros((2, 3)), weights=np.array([-1.0, 1.0]))


def test_perspective_translation_matches_weak_perspective_at_the_pelvis():
    cam = default_camera(1920, 1080)
    assert cam.focal_px == pytest.approx(np.hypot(1920, 1080)) and (cam.cx, cam.cy) == (959.5, 539.5)
    rng = np.random.default_rng(1)
    a = rng.uniform(80, 400, 10)
    cam_px = np.stack([a, rng.uniform(0, 1920, 10), rng.uniform(0, 1080, 10)], -1)
    pelvis = np.stack(
        [rng.normal(scale=0.05, size=10), rng.uniform(-0.4, -0.3, 10), rng.normal(scale=0.03, size=10)], -1
    )
    t = perspective_translation(cam_px, pelvis, cam)
    # the pelvis projects where the weak-perspective camera puts it, and a small offset in the
    # plane of the pelvis is scaled by a (first order)
    uv = project(pelvis + t, cam)
    np.testing.assert_allclose(uv, cam_px[:, 1:] + cam_px[:, :1] * pelvis[:, :2], atol=1e-9)
    d = np.array([1e-4, -2e-4, 0.0])
    duv = project(pelvis + d + t, cam) - uv
    np.testing.assert_allclose(duv, a[:, None] * d[:2], rtol=1e-6)
    assert t[:, 2] + pelvis[:, 2] == pytest.approx(cam.focal_px / a)
    with pytest.raises(ValueError):
        perspective_translation(-cam_px, pelvis, cam)
    with pytest.raises(ValueError):
        default_camera(0, 10)
