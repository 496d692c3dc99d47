"""The SH world reproduces PIXIE's shading: the Lambertian irradiance of the environment built from
``light`` (numerical integration over the equirectangular image), divided by π, equals PIXIE's SH
shading of the same normal in the PIXIE frame."""

from __future__ import annotations

import math

import numpy as np

from pixie_blender.io import lighting as L


def _irradiance_over_pi(env: np.ndarray, normal_blender: np.ndarray) -> np.ndarray:
    h, w = env.shape[:2]
    d = L.equirect_directions(w, h)
    elev = (0.5 - (np.arange(h) + 0.5) / h) * math.pi  # row 0 = top
    solid = np.cos(elev)[:, None] * (2 * math.pi / w) * (math.pi / h)
    cos = np.clip(d @ normal_blender, 0.0, None)
    return (env * (cos * solid)[..., None]).sum(axis=(0, 1)) / math.pi


def test_environment_reproduces_pixie_shading():
    rng = np.random.default_rng(3)
    light = rng.normal(scale=0.04, size=(9, 3))
    light[0] = [2.4, 2.0, 1.8]  # ambient dominant: the radiance stays positive (nothing clipped)
    env = L.sh_environment(light, 512, 256)
    assert env.min() > 0
    for n in rng.normal(size=(8, 3)):
        n /= np.linalg.norm(n)
        got = _irradiance_over_pi(env.astype(np.float64), n)
        want = L.pixie_shading(L.blender_to_pixie_direction(n), light)
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)


def test_directions_follow_the_avatar_frame():
    # Blender up is PIXIE's −y (y points down there); the avatar faces −Y in Blender, PIXIE's −z
    np.testing.assert_allclose(L.blender_to_pixie_direction(np.array([0, 0, 1.0])), [0, -1, 0])
    np.testing.assert_allclose(L.blender_to_pixie_direction(np.array([0, -1, 0.0])), [0, 0, -1])
    d = L.equirect_directions(8, 4)
    assert d[0, :, 2].min() > 0.6 and d[-1, :, 2].max() < -0.6  # row 0 looks up
    # Blender's mapping u = 1/2 − atan2(y, x)/2π, v = 1/2 + asin(z)/π (v = 1 at row 0)
    d = L.equirect_directions(16, 8)
    u = (np.arange(16) + 0.5) / 16
    phi = np.arctan2(d[3, :, 1], d[3, :, 0])
    np.testing.assert_allclose(np.exp(1j * phi), np.exp(1j * (0.5 - u) * 2 * math.pi), atol=1e-12)
    v = 1 - (np.arange(8) + 0.5) / 8
    np.testing.assert_allclose(d[:, 0, 2], np.sin((v - 0.5) * math.pi), atol=1e-12)


def test_light_from_above_brightens_upward_normals():
    light = np.zeros((9, 3))
    light[0] = 1.0
    light[2] = -0.5  # PIXIE y is down: negative y coefficient = light from above
    env = L.sh_environment(light, 64, 32)
    assert env[0].mean() > env[-1].mean()
