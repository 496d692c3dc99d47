"""PIXIE's spherical-harmonics lighting as a Blender world (numpy only).

PIXIE's ``light`` (9, 3) shades a unit normal ``n`` of the PIXIE frame (x right, y down, z away from
the camera) as ``s(n) = Σ_k light[k]·f_k·P_k(n)`` with ``P = [1, x, y, z, xy, xz, yz, x² − y²,
3z² − 1]`` and DECA's factors ``f`` (see ``pixie_backend.appearance.lighting``): the Lambertian
kernel ``A_l`` folded into bands 1 and 2 but not band 0. A diffuse surface of albedo ``ρ`` lit by
an environment of radiance ``L(ω)`` has outgoing radiance ``ρ·E(n)/π`` with
``E(n) = ∫ L(ω) max(0, n·ω) dω``; so ``ρ·s(n)`` is reproduced by the environment whose real,
orthonormal SH coefficients are ``light[0]`` (band 0) and ``π·light[k]`` (bands 1, 2).

Directions: the avatar's rig maps the PIXIE frame to Blender by the upright fix ``diag(1, −1, −1)``
and the axis swap ``(x, y, z) → (x, −z, y)``, so a Blender world direction ``(x, y, z)`` is the
PIXIE direction ``(x, −z, y)``. Blender's equirectangular environment maps a direction to
``u = ½ − atan2(y, x)/2π``, ``v = ½ + asin(z)/π`` (checked with Cycles).
"""

from __future__ import annotations

import math

import numpy as np

#: DECA/PIXIE factors f_k.
SH_FACTORS = np.array(
    [
        1.0 / math.sqrt(4 * math.pi),
        *([(2 * math.pi / 3) * math.sqrt(3 / (4 * math.pi))] * 3),
        *([(math.pi / 4) * 3 * math.sqrt(5 / (12 * math.pi))] * 3),
        (math.pi / 4) * (3 / 2) * math.sqrt(5 / (12 * math.pi)),
        (math.pi / 4) * (1 / 2) * math.sqrt(5 / (4 * math.pi)),
    ]
)
#: Normalisation c_k of the orthonormal real SH ``Y_k = c_k·P_k``.
SH_NORMALISATION = np.array(
    [
        1.0 / math.sqrt(4 * math.pi),
        *([math.sqrt(3 / (4 * math.pi))] * 3),
        *([math.sqrt(15 / (4 * math.pi))] * 3),
        math.sqrt(15 / (16 * math.pi)),
        math.sqrt(5 / (16 * math.pi)),
    ]
)
#: Radiance coefficient per PIXIE coefficient: 1 for band 0, π for bands 1 and 2.
RADIANCE_SCALE = np.array([1.0] + [math.pi] * 8)


def sh_polynomials(n: np.ndarray) -> np.ndarray:
    """``P_k(n)``: (..., 3) -> (..., 9)."""
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    return np.stack([np.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1], axis=-1)


def pixie_shading(normals: np.ndarray, light: np.ndarray) -> np.ndarray:
    """PIXIE's SH shading of PIXIE-frame normals: (..., 3), (9, 3) -> (..., 3) RGB."""
    return (sh_polynomials(np.asarray(normals, np.float64)) * SH_FACTORS) @ np.asarray(light, np.float64)


def blender_to_pixie_direction(d: np.ndarray) -> np.ndarray:
    """World directions (..., 3) of Blender -> the PIXIE frame of the imported avatars."""
    d = np.asarray(d, np.float64)
    return np.stack([d[..., 0], -d[..., 2], d[..., 1]], axis=-1)


def equirect_directions(width: int, height: int) -> np.ndarray:
    """Blender world direction of each texel centre of an equirectangular image with row 0 at the
    top: (height, width, 3)."""
    u = (np.arange(width) + 0.5) / width
    v = 1.0 - (np.arange(height) + 0.5) / height
    uu, vv = np.meshgrid(u, v)
    phi = (0.5 - uu) * 2 * math.pi
    elev = (vv - 0.5) * math.pi
    return np.stack([np.cos(elev) * np.cos(phi), np.cos(elev) * np.sin(phi), np.sin(elev)], axis=-1)


def sh_environment(light: np.ndarray, width: int = 128, height: int = 64) -> np.ndarray:
    """The environment radiance that reproduces PIXIE's shading, (height, width, 3) float32, row 0
    at the top (up), in Blender world directions; negative radiance (a strong band 2) is clipped."""
    light = np.asarray(light, np.float64).reshape(9, 3)
    d = blender_to_pixie_direction(equirect_directions(width, height))
    coeffs = light * RADIANCE_SCALE[:, None]
    radiance = (sh_polynomials(d) * SH_NORMALISATION) @ coeffs
    return np.clip(radiance, 0.0, None).astype(np.float32)
