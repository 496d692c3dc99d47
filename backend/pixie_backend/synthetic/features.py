"""Facial relief of the mannequin: nose, brows, eye sockets, lips, chin and ears.

Every feature is a smooth displacement field of the rest position, applied to head vertices only.
Dimensions are in metres in the model frame (y up, face towards +z, the person's left at +x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import JOINT_INDEX
from .meshops import smoothstep
from .skeleton import EYEBALL_RADIUS, rest_joints


@dataclass(frozen=True)
class FaceLayout:
    """Positions of the facial features, m."""

    eye_left: np.ndarray
    """``(3,)`` centre of the left eyeball (the left eye joint)."""
    eye_right: np.ndarray
    """``(3,)`` centre of the right eyeball."""
    eye_half_width: float = 0.0128
    """Half-width of the eye opening (corner to corner / 2)."""
    eye_half_height: float = 0.0052
    """Half-height of the eye opening."""
    mouth_y: float = 0.211
    """Height of the lip line at the midline."""
    mouth_half_width: float = 0.025
    """Half-width of the mouth (corner to corner / 2)."""
    nose_tip: tuple[float, float] = (0.240, 0.019)
    """Height of the nose tip and its protrusion."""
    nose_base_y: float = 0.225
    """Height of the subnasale (where the nose meets the upper lip)."""
    nose_root_y: float = 0.292
    """Height of the nasal bridge between the eyes."""
    brow_y: float = 0.306
    """Height of the brow ridge."""
    chin: tuple[float, float] = (0.178, 0.007)
    """Height of the chin prominence and its protrusion."""
    ear: tuple[float, float, float] = (0.073, 0.272, -0.014)
    """Centre of the left ear (x, y, z)."""


def face_layout() -> FaceLayout:
    """The feature layout matching ``skeleton.rest_joints()``."""
    j = rest_joints()
    return FaceLayout(eye_left=j[JOINT_INDEX["left_eye_smplhf"]],
                      eye_right=j[JOINT_INDEX["right_eye_smplhf"]])


def _gauss(d2: np.ndarray) -> np.ndarray:
    return np.exp(-d2)


def sculpt_head(vertices: np.ndarray, mask: np.ndarray, layout: FaceLayout) -> np.ndarray:
    """Add the facial relief and ears to the head vertices.

    Args:
        vertices: ``(V, 3)`` rest vertices.
        mask: ``(V,)`` bool, the vertices that may move (the head).
        layout: feature positions.

    Returns:
        ``(V, 3)`` new vertices.
    """
    p = vertices[mask]
    x, y, z = p.T
    ax = np.abs(x)
    front = smoothstep((z - 0.03) / 0.04)  # 0 behind the cheeks, 1 on the face
    dz = np.zeros(len(p))
    dx = np.zeros(len(p))

    # nose: a ridge from the bridge to the tip, undercut to the subnasale, with alae
    tip_y, tip_h = layout.nose_tip
    root_y, base_y = layout.nose_root_y, layout.nose_base_y
    s_up = np.clip((root_y - y) / (root_y - tip_y), 0.0, 1.0)
    h_up = 0.003 + (tip_h - 0.003) * s_up ** 1.6
    s_dn = np.clip((y - base_y) / (tip_y - base_y), 0.0, 1.0)
    h = np.where(y >= tip_y, h_up, tip_h * np.sqrt(smoothstep(s_dn)))
    h = np.where(y > root_y + 0.01, 0.0, h * smoothstep((root_y + 0.01 - y) / 0.012))
    w = 0.0065 + 0.0075 * np.clip((root_y - y) / (root_y - base_y), 0.0, 1.0) ** 2
    dz += front * h * _gauss((x / w) ** 2)
    for sx in (-1.0, 1.0):
        ala = _gauss(((x - sx * 0.0155) / 0.0075) ** 2 + ((y - (base_y + 0.006)) / 0.0065) ** 2)
        dz += front * 0.0065 * ala

    # brow ridge and cheekbones
    brow = _gauss(((y - layout.brow_y) / 0.009) ** 2) * smoothstep((0.058 - ax) / 0.02)
    dz += front * 0.0035 * brow
    cheek = _gauss(((ax - 0.040) / 0.016) ** 2 + ((y - 0.255) / 0.014) ** 2)
    dz += front * 0.003 * cheek

    # eye sockets: the surface in front of each eyeball sinks towards it
    r_rim = EYEBALL_RADIUS + 0.0012
    for e in (layout.eye_left, layout.eye_right):
        ex, ey = x - e[0], y - e[1]
        socket = _gauss((ex / 0.019) ** 2 + (ey / 0.0125) ** 2)
        d2 = ex ** 2 + ey ** 2
        on_ball = e[2] + np.sqrt(np.maximum(r_rim ** 2 - d2, 0.0))
        target = np.where(d2 < r_rim ** 2, on_ball, e[2] + 0.002)
        dz += front * socket * np.minimum(target - (z + dz), 0.0)

    # lips and chin
    mw = layout.mouth_half_width
    along = smoothstep((mw + 0.004 - ax) / 0.012)
    up = _gauss(((y - (layout.mouth_y + 0.0055)) / 0.0055) ** 2)
    lo = _gauss(((y - (layout.mouth_y - 0.0065)) / 0.0065) ** 2)
    dz += front * along * (0.0045 * up + 0.0055 * lo)
    corner = _gauss(((ax - mw) / 0.006) ** 2 + ((y - layout.mouth_y) / 0.006) ** 2)
    dz -= front * 0.003 * corner
    cy, ch = layout.chin
    dz += front * ch * _gauss((x / 0.018) ** 2 + ((y - cy) / 0.012) ** 2)
    labial = _gauss((x / 0.02) ** 2 + ((y - (cy + 0.017)) / 0.005) ** 2)
    dz -= front * 0.002 * labial

    # ears: outward bumps on the sides of the head, behind the jaw
    exr, eyr, ezr = layout.ear
    ear = _gauss(((y - eyr) / 0.026) ** 2 + ((z - ezr) / 0.017) ** 2)
    side = smoothstep((ax - 0.045) / 0.02)
    dx += np.sign(x) * side * 0.007 * ear

    out = vertices.copy()
    out[mask, 0] += dx
    out[mask, 2] += dz
    return out


#: Trunk relief: (centre (x, y, z), sigma (x, y, z), displacement along z), m. Mirrored in x
#: where the centre has x > 0.
_TRUNK_BUMPS: tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...] = (
    ((0.075, 0.030, 0.10), (0.055, 0.050, 0.05), 0.014),  # chest
    ((0.0, -0.190, 0.09), (0.10, 0.080, 0.05), 0.006),  # belly
    ((0.070, -0.440, -0.10), (0.065, 0.070, 0.05), -0.020),  # buttocks
    ((0.0, -0.230, -0.09), (0.12, 0.080, 0.05), 0.010),  # small of the back
    ((0.085, 0.030, -0.10), (0.050, 0.060, 0.05), -0.007),  # shoulder blades
)


def sculpt_trunk(vertices: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Add chest, belly, buttocks and back curvature (smooth bumps along z).

    Args:
        vertices: ``(V, 3)`` rest vertices.
        mask: ``(V,)`` bool, the vertices that may move (everything but head, hands, eyes).

    Returns:
        ``(V, 3)`` new vertices.
    """
    p = vertices[mask]
    dz = np.zeros(len(p))
    for centre, sigma, h in _TRUNK_BUMPS:
        for sx in ((1.0, -1.0) if centre[0] > 0 else (1.0,)):
            c = np.array([sx * centre[0], centre[1], centre[2]])
            d = (p - c) / np.asarray(sigma)
            dz += h * np.exp(-(d * d).sum(axis=1))
    out = vertices.copy()
    out[mask, 2] += dz
    return out
