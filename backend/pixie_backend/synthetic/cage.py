"""Box-modelled quad cage of the mannequin (before Catmull-Clark refinement).

The cage is a closed, consistently oriented quad mesh: a torso tube with a crotch and shoulder caps,
legs and arms extruded from blocks of torso faces, a neck, a head box, a palm with four fingers
and a thumb (three segments each), and a foot per leg. Every face carries a region id
(``REGIONS``) that later decides which joints a vertex may follow.

Ring conventions: the vertices of a ring run counter-clockwise about the tube direction ``t``
(right-hand rule), and a ring frame ``(e1, e2)`` satisfies ``e1 x e2 = t``; a slot layout gives
each ring vertex a position in ``[-1, 1]^2`` of that frame. The right-hand limbs are built as
mirror images of the left ones, with their faces flipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import skeleton as sk
from .meshops import box_surface

REGIONS: tuple[str, ...] = (
    "torso", "neck", "head",
    "left_arm", "left_hand", "left_thumb", "left_index", "left_middle", "left_ring", "left_pinky",
    "right_arm", "right_hand", "right_thumb", "right_index", "right_middle", "right_ring",
    "right_pinky",
    "left_leg", "left_foot", "right_leg", "right_foot",
    "left_eyeball", "right_eyeball",
)
REGION_INDEX = {name: i for i, name in enumerate(REGIONS)}

#: Head box resolution (quads along x, y, z) and the neck hole in its bottom face.
HEAD_BOX = (6, 6, 3)
#: Superellipse exponent of the head box.
HEAD_EXPONENT = 2.6

X, Y, Z = np.eye(3)


@dataclass(frozen=True)
class Cage:
    """A closed quad cage."""

    vertices: np.ndarray
    """``(N, 3)`` float64, m."""
    quads: np.ndarray
    """``(M, 4)`` int64, outward (counter-clockwise seen from outside)."""
    region: np.ndarray
    """``(M,)`` int64 index into ``REGIONS``."""
    mouth_line: np.ndarray
    """``(P,)`` int64: cage vertices of the head-box row along the lips, right to left."""


def _shrink_comp(n: int) -> float:
    """Factor undoing Catmull-Clark shrinkage of a regular ``n``-ring around a tube."""
    return 6.0 / (4.0 + 2.0 * np.cos(2.0 * np.pi / n))


def _superellipse(layout: np.ndarray, p: float) -> np.ndarray:
    """Radially project points of ``[-1, 1]^2`` onto the unit superellipse of exponent ``p``."""
    a = np.abs(layout) + 1e-12
    s = (a[:, 0] ** p + a[:, 1] ** p) ** (-1.0 / p)
    return layout * s[:, None]


def ring_points(
    center: np.ndarray,
    e1: np.ndarray,
    e2: np.ndarray,
    half: tuple[float, float],
    layout: np.ndarray,
    p: float = 2.0,
    comp: bool = True,
) -> np.ndarray:
    """Place a ring of cage vertices on a superellipse.

    Args:
        center: ``(3,)``.
        e1, e2: ``(3,)`` orthonormal frame of the ring plane.
        half: half-sizes along ``e1`` and ``e2``, m (of the refined surface if ``comp``).
        layout: ``(n, 2)`` slot positions in ``[-1, 1]^2``.
        p: superellipse exponent.
        comp: enlarge the ring so that the refined surface has the requested size.

    Returns:
        ``(n, 3)``.
    """
    uv = _superellipse(np.asarray(layout, dtype=np.float64), p)
    k = _shrink_comp(len(layout)) if comp else 1.0
    return center[None] + k * (half[0] * uv[:, :1] * e1[None] + half[1] * uv[:, 1:] * e2[None])


def even_layout(n: int, start_deg: float) -> np.ndarray:
    """``n`` slots evenly spaced on the unit circle, counter-clockwise from ``start_deg``."""
    a = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _frame(t: np.ndarray, e1_hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``(e1, e2)`` with ``e1 x e2 = t`` and ``e1`` as close as possible to ``e1_hint``."""
    t = _unit(t)
    e1 = _unit(e1_hint - np.dot(e1_hint, t) * t)
    return e1, np.cross(t, e1)


class _Builder:
    """Accumulates cage vertices and faces."""

    def __init__(self) -> None:
        self._v: list[np.ndarray] = []
        self._q: list[np.ndarray] = []
        self._r: list[np.ndarray] = []
        self.n = 0

    def add(self, points: np.ndarray) -> np.ndarray:
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        ids = np.arange(self.n, self.n + len(pts))
        self._v.append(pts)
        self.n += len(pts)
        return ids

    def quads(self, quads: np.ndarray, region: str, flip: bool = False) -> None:
        q = np.atleast_2d(np.asarray(quads, dtype=np.int64))
        if flip:
            q = q[:, ::-1]
        self._q.append(q)
        self._r.append(np.full(len(q), REGION_INDEX[region]))

    def tube(self, a: np.ndarray, b: np.ndarray, region: str, flip: bool = False,
             skip: tuple[int, ...] = ()) -> None:
        """Quads joining ring ``a`` to ring ``b`` (same size); ``skip`` omits sides."""
        n = len(a)
        k = np.array([i for i in range(n) if i not in skip])
        k1 = (k + 1) % n
        self.quads(np.stack([a[k], a[k1], b[k1], b[k]], axis=1), region, flip)

    def transition(self, a: np.ndarray, b: np.ndarray, k: int, region: str,
                   flip: bool = False) -> None:
        """Quads joining ring ``a`` to ring ``b`` whose sizes differ by two.

        Side ``k`` of the smaller ring faces sides ``k .. k + 2`` of the larger one (a hexagon
        split into two quads); the other sides pair up one to one.
        """
        na, nb = len(a), len(b)
        quads = []
        if nb == na + 2:
            m = [i if i <= k else i + 2 for i in range(na)]  # a[i] faces b[m[i]]
            for i in range(na):
                if i != k:
                    quads.append((a[i], a[(i + 1) % na], b[m[(i + 1) % na]], b[m[i]]))
            quads += [(a[k], a[k + 1], b[k + 3], b[k + 2]), (a[k], b[k + 2], b[k + 1], b[k])]
        elif na == nb + 2:
            m = [i if i <= k else i + 2 for i in range(nb)]  # b[i] faces a[m[i]]
            for i in range(nb):
                if i != k:
                    quads.append((a[m[i]], a[m[(i + 1) % nb]], b[(i + 1) % nb], b[i]))
            quads += [(a[k], a[k + 1], a[k + 2], b[k]), (a[k + 2], a[k + 3], b[k + 1], b[k])]
        else:
            raise ValueError(f"ring sizes {na} and {nb} do not differ by two")
        self.quads(np.array(quads), region, flip)

    def position(self, ids: np.ndarray) -> np.ndarray:
        return np.concatenate(self._v, axis=0)[ids]

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = np.concatenate(self._v, axis=0)
        q = np.concatenate(self._q, axis=0)
        r = np.concatenate(self._r, axis=0)
        used = np.zeros(len(v), dtype=bool)
        used[q.reshape(-1)] = True
        remap = np.cumsum(used) - 1
        return v[used], remap[q], r, remap


# ----------------------------------------------------------------------------------------------
# Torso: a tube of 16-vertex rings laid out as the perimeter of a 6 x 2 grid (u along x, w along z)

_TORSO_SLOTS: tuple[tuple[int, int], ...] = (
    *((u, 2) for u in range(7)), (6, 1), *((u, 0) for u in range(6, -1, -1)), (0, 1),
)
_TORSO_SLOT = {uw: k for k, uw in enumerate(_TORSO_SLOTS)}
#: Layout in the torso frame (e1 = +z, e2 = +x).
_TORSO_LAYOUT = np.array([(w - 1.0, u / 3.0 - 1.0) for u, w in _TORSO_SLOTS])

#: Torso rings bottom to top: (y, half-depth z, half-width x, centre z, exponent).
_TORSO_RINGS: tuple[tuple[float, float, float, float, float], ...] = (
    (-0.475, 0.108, 0.158, -0.018, 2.4),
    (-0.335, 0.099, 0.150, -0.008, 2.4),
    (-0.195, 0.090, 0.135, 0.000, 2.3),
    (-0.075, 0.102, 0.148, 0.002, 2.4),
    (0.000, 0.106, 0.158, -0.002, 2.6),
    (0.096, 0.094, 0.177, -0.014, 3.0),
)
#: Hand-placed top ring (shoulder line, with the neck base dipping at the front), left half and
#: centre, keyed by torso grid slot; the right half is mirrored.
_TORSO_TOP: dict[tuple[int, int], tuple[float, float, float]] = {
    (3, 2): (0.000, 0.102, 0.058),
    (4, 2): (0.028, 0.104, 0.056),
    (5, 2): (0.056, 0.112, 0.048),
    (6, 2): (0.170, 0.128, 0.040),
    (6, 1): (0.192, 0.136, -0.016),
    (6, 0): (0.172, 0.132, -0.066),
    (5, 0): (0.056, 0.150, -0.072),
    (4, 0): (0.028, 0.153, -0.077),
    (3, 0): (0.000, 0.154, -0.079),
}
_TOP_CAP_SIDE = (0.060, 0.142, -0.012)  # grid (5, 1): side of the neck base
_CROTCH = ((0.042, -0.522, -0.006), (0.0, -0.535, -0.006))  # grid (4, 1) and (3, 1)

#: Arm root: the side of the torso (slots w = 2, 1, 0 at u = 6) between these two levels.
_ARM_LEVELS = (4, 5)


def _torso(b: _Builder) -> dict[str, np.ndarray]:
    e1, e2 = Z, X
    rings = []
    for y, rz, rx, zc, p in _TORSO_RINGS:
        pts = ring_points(np.array([0.0, y, zc]), e1, e2, (rz, rx), _TORSO_LAYOUT, p)
        rings.append(b.add(pts))
    top = np.zeros((16, 3))
    for (u, w), pos in _TORSO_TOP.items():
        top[_TORSO_SLOT[(u, w)]] = pos
        top[_TORSO_SLOT[(6 - u, w)]] = sk.mirror_x(np.asarray(pos))
    rings.append(b.add(top))

    # sides of each torso level that belong to the arm roots are left open
    left_side = (_TORSO_SLOT[(6, 2)], _TORSO_SLOT[(6, 1)])  # sides 6 -> 7 and 7 -> 8
    right_side = (_TORSO_SLOT[(0, 1)], _TORSO_SLOT[(0, 0)])  # sides 15 -> 0 and 14 -> 15
    for lv in range(len(rings) - 1):
        skip = left_side + right_side if lv in _ARM_LEVELS[:-1] else ()
        b.tube(rings[lv], rings[lv + 1], "torso", skip=skip)

    # bottom cap: crotch strip between the legs (normal -y)
    bottom = {uw: rings[0][k] for uw, k in _TORSO_SLOT.items()}
    c_left, c_mid = b.add(np.array(_CROTCH[0])), b.add(np.array(_CROTCH[1]))
    c_right = b.add(sk.mirror_x(np.array(_CROTCH[0])))
    bottom[(4, 1)], bottom[(3, 1)], bottom[(2, 1)] = c_left[0], c_mid[0], c_right[0]
    for u in (2, 3):
        for w in (0, 1):
            b.quads([bottom[(u, w)], bottom[(u + 1, w)], bottom[(u + 1, w + 1)], bottom[(u, w + 1)]],
                    "torso")
    # top cap: shoulder strips beside the neck (normal +y)
    topg = {uw: rings[-1][k] for uw, k in _TORSO_SLOT.items()}
    topg[(5, 1)] = b.add(np.array(_TOP_CAP_SIDE))[0]
    topg[(1, 1)] = b.add(sk.mirror_x(np.array(_TOP_CAP_SIDE)))[0]
    for u in (0, 5):
        for w in (0, 1):
            b.quads([topg[(u, w)], topg[(u, w + 1)], topg[(u + 1, w + 1)], topg[(u + 1, w)]], "torso")

    legs = {
        "left": np.array([bottom[uw] for uw in ((6, 2), (5, 2), (4, 2), (4, 1), (4, 0), (5, 0),
                                                (6, 0), (6, 1))]),
        "right": np.array([bottom[uw] for uw in ((0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0),
                                                 (0, 0), (0, 1))]),
    }
    neck = np.array([topg[uw] for uw in ((1, 2), (2, 2), (3, 2), (4, 2), (5, 2), (5, 1), (5, 0),
                                         (4, 0), (3, 0), (2, 0), (1, 0), (1, 1))])
    arms = {}
    lo, hi = _ARM_LEVELS
    for side, u in (("left", 6), ("right", 0)):
        top = [rings[hi][_TORSO_SLOT[(u, w)]] for w in (0, 1, 2)]  # back to front
        bottom = [rings[lo][_TORSO_SLOT[(u, w)]] for w in (2, 1, 0)]  # front to back
        arms[side] = np.array(top + bottom)
    return {"legs": legs, "neck": neck, "arms": arms}


# ----------------------------------------------------------------------------------------------
# Neck and head


def _head_shape(xn: np.ndarray, yn: np.ndarray, zn: np.ndarray) -> np.ndarray:
    """Head-box grid coordinates in ``[-1, 1]^3`` -> cage positions ``(n, 3)``."""
    d = np.stack([xn, yn, zn], axis=1)
    a = np.abs(d) + 1e-12
    u = d * ((a ** HEAD_EXPONENT).sum(axis=1) ** (-1.0 / HEAD_EXPONENT))[:, None]
    ux, uy, uz = u.T
    low = np.clip(-uy, 0.0, 1.0)
    half_x = 0.074 - 0.020 * low ** 1.6 - 0.010 * low ** 1.6 * np.clip(uz, 0, 1)
    front = 0.099 - 0.012 * np.clip(uy, 0, 1) ** 2
    back = 0.097 - 0.030 * low ** 1.5
    half_z = np.where(uz > 0, front, back)
    yc, half_y_up, half_y_dn = 0.282, 0.118, 0.114
    y = yc + np.where(uy > 0, half_y_up, half_y_dn) * uy
    # the skull base and the neck hole sit higher at the back than the chin at the front
    y = y + 0.055 * low * np.clip(-uz, 0, 1) ** 1.2
    z = -0.004 + half_z * uz
    # chin juts forward a little
    z = z + 0.010 * low ** 3 * np.clip(uz, 0, 1)
    comp = 1.10
    center = np.array([0.0, 0.28, -0.004])
    pts = np.stack([half_x * ux, y, z], axis=1)
    return center + comp * (pts - center)


def _head_box(b: _Builder) -> tuple[np.ndarray, np.ndarray]:
    """Head box with a 4 x 2 hole in its bottom face; returns (hole ring, mouth row)."""
    nx, ny, nz = HEAD_BOX
    hole = frozenset((i, k) for i in (1, 2, 3, 4) for k in (0, 1))  # bottom cells under the neck
    grid, quads = box_surface(nx, ny, nz, skip_bottom=hole)
    n = np.array(HEAD_BOX, dtype=np.float64)
    pts = _head_shape(*(2.0 * grid / n - 1.0).T)
    ids = b.add(pts)
    b.quads(ids[quads], "head")
    vid = {tuple(key): int(v) for key, v in zip(grid.tolist(), ids, strict=True)}
    # hole boundary, counter-clockwise about +y starting at its front-right corner
    ring_ik = [(1, 2), (2, 2), (3, 2), (4, 2), (5, 2), (5, 1), (5, 0), (4, 0), (3, 0), (2, 0),
               (1, 0), (1, 1)]
    ring = np.array([vid[(i, 0, k)] for i, k in ring_ik])
    mouth_row = np.array([vid[(i, 1, nz)] for i in range(nx + 1)])
    return ring, mouth_row


def _neck_head(b: _Builder, neck_ring: np.ndarray) -> np.ndarray:
    hole, mouth = _head_box(b)
    b.tube(neck_ring, hole, "neck")
    return mouth


# ----------------------------------------------------------------------------------------------
# Arms, hands, fingers

#: Palm layout: 4 quads across the hand (z) by 1 through it (y): top row then bottom row.
_PALM_LAYOUT = np.array([
    (1, -1), (1, -0.5), (1, 0), (1, 0.5), (1, 1), (-1, 1), (-1, 0.5), (-1, 0), (-1, -0.5), (-1, -1),
])
#: Wrist transition ring (8): the top row already has the palm's five vertices.
_WRIST_LAYOUT = np.array([(1, -1), (1, -0.5), (1, 0), (1, 0.5), (1, 1), (-1, 1), (-1, 0), (-1, -1)])
_ROUND6 = even_layout(6, -60.0)  # arm frame e1 = +y, e2 = +z: slot 0 at the top, towards the back

#: Arm rings (left side), 6 vertices: (x, y, z, half along y, half along z, exponent).
_ARM_RINGS: tuple[tuple[float, ...], ...] = (
    (0.235, 0.090, -0.025, 0.050, 0.052, 2.0),
    (0.305, 0.087, -0.028, 0.044, 0.046, 2.0),
    (0.378, 0.085, -0.032, 0.040, 0.042, 2.0),
    (0.445, 0.084, -0.035, 0.037, 0.039, 2.0),
    (0.515, 0.083, -0.034, 0.036, 0.040, 2.0),
    (0.590, 0.082, -0.032, 0.030, 0.036, 2.1),
    (0.664, 0.080, -0.030, 0.022, 0.031, 2.3),
)
#: Hand rings (left side): (x, y, z, half along y, half along z, exponent); sizes 8, 10, 10, 10.
_HAND_RINGS: tuple[tuple[float, ...], ...] = (
    (0.690, 0.079, -0.029, 0.019, 0.034, 2.6),
    (0.713, 0.078, -0.028, 0.017, 0.038, 2.8),
    (0.745, 0.077, -0.028, 0.0155, 0.040, 3.0),
    (0.776, 0.076, -0.028, 0.014, 0.040, 3.2),
)


def _finger(b: _Builder, base_ring: np.ndarray, finger: str, side: str, region: str) -> None:
    """Extrude a finger (3 segments) from a 4-vertex ring of the hand, left-side geometry."""
    flip = side == "right"
    pts = sk.finger_points(finger, "left")
    _, d = sk.finger_frame(finger, "left")
    thick, width = sk.FINGER_HALF_SIZE[finger]
    # frame: e1 = "up" (dorsal), e2 = t x e1; first ring orientation comes from the base quad
    base = b.position(base_ring)
    base = sk.mirror_x(base) if flip else base
    e1, e2 = _frame(d, Y)
    rel = base - base.mean(axis=0)
    ang = np.arctan2(rel @ e2, rel @ e1)
    layout = np.stack([np.cos(ang), np.sin(ang)], axis=1) * np.sqrt(2.0)
    layout = np.clip(layout, -1, 1)
    prev = base_ring
    for c, k in ((pts[1], 0.95), (pts[2], 0.88)):  # rings at the two inner joints
        ring = ring_points(c, e1, e2, (k * thick, k * width), layout, 2.2)
        ids = b.add(sk.mirror_x(ring) if flip else ring)
        b.tube(prev, ids, region, flip)
        prev = ids
    # a small ring just short of the tip, closed by one quad (refinement rounds it off)
    tip = pts[3] - 0.002 * d
    cap = ring_points(tip, e1, e2, (0.62 * thick, 0.62 * width), layout, 2.0)
    cap_ids = b.add(sk.mirror_x(cap) if flip else cap)
    b.tube(prev, cap_ids, region, flip)
    b.quads(cap_ids[None, :], region, flip)


def _arm(b: _Builder, root: np.ndarray, side: str) -> None:
    flip = side == "right"
    e1, e2 = Y, Z
    arm, hand = f"{side}_arm", f"{side}_hand"

    def ring(spec, layout):
        x, y, z, hy, hz, p = spec
        pts = ring_points(np.array([x, y, z]), e1, e2, (hy, hz), layout, p)
        return b.add(sk.mirror_x(pts) if flip else pts)

    prev = root
    for spec in _ARM_RINGS:
        ids = ring(spec, _ROUND6)
        b.tube(prev, ids, arm, flip)
        prev = ids
    # 6 -> 8 (top side widens) -> 10 (bottom side widens): the palm's 4 x 1 layout
    wrist = ring(_HAND_RINGS[0], _WRIST_LAYOUT)
    b.transition(prev, wrist, 1, hand, flip)
    palm0 = ring(_HAND_RINGS[1], _PALM_LAYOUT)
    b.transition(wrist, palm0, 5, hand, flip)
    palm1 = ring(_HAND_RINGS[2], _PALM_LAYOUT)
    thumb_side = 4  # from slot 4 (top, +z) to slot 5 (bottom, +z)
    b.tube(palm0, palm1, hand, flip, skip=(thumb_side,))
    knuckles = ring(_HAND_RINGS[3], _PALM_LAYOUT)
    b.tube(palm1, knuckles, hand, flip)
    thumb_ring = np.array([palm0[4], palm0[5], palm1[5], palm1[4]])
    fingers = ("pinky", "ring", "middle", "index")  # cap quads from -z to +z
    for i, finger in enumerate(fingers):
        base = np.array([knuckles[i], knuckles[i + 1], knuckles[8 - i], knuckles[9 - i]])
        _finger(b, base, finger, side, f"{side}_{finger}")
    _finger(b, thumb_ring, "thumb", side, f"{side}_thumb")


# ----------------------------------------------------------------------------------------------
# Legs and feet

#: Leg frame: e1 = +z (front), e2 = -x (towards the midline for the left leg).
_LEG_ROOT_LAYOUT = even_layout(8, -45.0)
_LEG_LAYOUT = even_layout(6, -60.0)
#: Toe cap layout: 2 quads across (x) by 1 through (y); top row then bottom row.
_FOOT_LAYOUT = np.array([(1, -1), (1, 0), (1, 1), (-1, 1), (-1, 0), (-1, -1)])

#: Leg rings (left side, horizontal, 6 vertices): (x, y, z, half front-back, half sideways,
#: exponent).
_LEG_RINGS: tuple[tuple[float, ...], ...] = (
    (0.090, -0.580, 0.006, 0.078, 0.075, 2.1),
    (0.093, -0.705, 0.006, 0.063, 0.060, 2.1),
    (0.097, -0.825, 0.008, 0.050, 0.050, 2.1),
    (0.094, -0.965, -0.008, 0.055, 0.048, 2.0),
    (0.087, -1.180, -0.030, 0.034, 0.029, 2.2),
)


def _leg(b: _Builder, root: np.ndarray, side: str) -> None:
    flip = side == "right"
    leg, foot_region = f"{side}_leg", f"{side}_foot"
    t = -Y
    e1, e2 = Z, np.cross(t, Z)  # e2 = -x: towards the body's midline for the left leg
    prev = None
    for i, (x, y, z, hf, hs, p) in enumerate(_LEG_RINGS):
        pts = ring_points(np.array([x, y, z]), e1, e2, (hf, hs), _LEG_LAYOUT, p)
        ids = b.add(sk.mirror_x(pts) if flip else pts)
        if i == 0:
            # 8 -> 6: the inner side (root sides 2..4) narrows to one side
            b.transition(root, ids, 2, leg, flip)
        else:
            b.tube(prev, ids, leg, flip)
        prev = ids
    # foot: rings turn from horizontal to vertical (facing +z); e1 rotates from +z to +y
    foot = (
        # centre, tube direction, half along e1, half along e2, exponent, layout blend
        ((0.088, -1.248, -0.010), (0.0, -0.75, 0.66), 0.060, 0.036, 2.4, 0.3),
        ((0.096, -1.272, 0.095), (0.0, -0.10, 1.0), 0.024, 0.046, 2.8, 0.8),
    )
    for c, tdir, h1, h2, p, s in foot:
        t = _unit(np.array(tdir))
        f2 = -X  # towards the midline, as in the leg frame
        f1 = np.cross(f2, t)
        layout = (1 - s) * _LEG_LAYOUT + s * _FOOT_LAYOUT
        pts = ring_points(np.array(c), f1, f2, (h1, h2), layout, p)
        ids = b.add(sk.mirror_x(pts) if flip else pts)
        b.tube(prev, ids, foot_region, flip)
        prev = ids
    # toe cap: 2 x 1 grid, one row of points at the toe tip
    c = np.array([0.100, -1.284, 0.192])
    tip = ring_points(c, Y, -X, (0.010, 0.040), _FOOT_LAYOUT, 3.0, comp=False)
    tip_ids = b.add(sk.mirror_x(tip) if flip else tip)
    b.tube(prev, tip_ids, foot_region, flip)
    cap = np.array([[tip_ids[0], tip_ids[1], tip_ids[4], tip_ids[5]],
                    [tip_ids[1], tip_ids[2], tip_ids[3], tip_ids[4]]])
    b.quads(cap, foot_region, flip)


def build_cage() -> Cage:
    """Build the mannequin cage (closed, oriented, genus 0)."""
    b = _Builder()
    att = _torso(b)
    mouth = _neck_head(b, att["neck"])
    for side in sk.SIDES:
        _arm(b, att["arms"][side], side)
        _leg(b, att["legs"][side], side)
    v, q, r, remap = b.finish()
    return Cage(vertices=v, quads=q, region=r, mouth_line=remap[mouth])
