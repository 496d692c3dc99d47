"""Joint labels, skin weights and joint regressors of the mannequin.

* Labels: every vertex follows one joint. The region a vertex comes from (``cage.REGIONS``) fixes
  the chain of joints it may follow; planes through the joints along the chain pick one.
* Skin weights: one-hot labels away from joints; in a band around every label boundary the
  weights are the harmonic interpolation (uniform graph Laplacian) of the fixed ones, so they
  blend smoothly across joints and never leak between limbs that merely lie close together.
  At most ``MAX_INFLUENCES`` non-zero weights per vertex, rows sum to one.
* Regressors: each joint is a convex combination of a ring of vertices around it whose mean is
  the intended joint position (maximum-entropy weights with a prescribed mean).
"""

from __future__ import annotations

import numpy as np

from ..constants import J14_NAMES, JOINT_INDEX, NUM_JOINTS, SMPLX_JOINT_NAMES, SMPLX_PARENTS
from . import meshops as mo
from .cage import REGION_INDEX
from .skeleton import FINGER_NAMES

MAX_INFLUENCES = 4
#: Band half-width around a label boundary, as a fraction of the limb radius there.
BAND_FRACTION = 0.75
BAND_LIMITS = (0.004, 0.06)
#: A band never takes more than this fraction of the segments on either side of its joint, so
#: every segment keeps a rigid core.
BAND_SEGMENT_FRACTION = 0.45
#: Fixed band half-widths (m) for joints whose "limb radius" means little.
BAND_OVERRIDES: dict[str, float] = {"jaw": 0.014}
#: Weights below this are dropped before the top-4 cut.
MIN_WEIGHT = 2e-3

#: Torso: heights of the spine joint planes come from the skeleton; the collars take the
#: upper torso beyond this distance from the midline, above ``COLLAR_MIN_Y``.
COLLAR_MIN_X = 0.085
COLLAR_MIN_Y = -0.020
#: Jaw: below the line from the lip line (at the face front) up to the jaw hinge, in front of
#: the back edge of the jaw; (z, y) of the two points, m.
JAW_LINE = ((0.092, 0.211), (0.000, 0.262))
JAW_BACK_Z = -0.018

#: J14 targets relative to the SMPL-X joint of the same name (LSP-style placement), m.
J14_OFFSETS: dict[str, tuple[float, float, float]] = {
    "right_ankle": (0.000, -0.022, 0.010),
    "right_knee": (0.000, -0.012, 0.012),
    "right_hip": (-0.022, -0.030, 0.008),
    "left_hip": (0.022, -0.030, 0.008),
    "left_knee": (0.000, -0.012, 0.012),
    "left_ankle": (0.000, -0.022, 0.010),
    "right_wrist": (-0.012, -0.004, 0.006),
    "right_elbow": (-0.010, -0.008, 0.010),
    "right_shoulder": (-0.015, 0.020, 0.010),
    "left_shoulder": (0.015, 0.020, 0.010),
    "left_elbow": (0.010, -0.008, 0.010),
    "left_wrist": (0.012, -0.004, 0.006),
    "neck": (0.000, 0.045, 0.030),
    "head": (0.000, 0.085, 0.025),
}


def _region_chains() -> dict[str, tuple[str, ...]]:
    chains: dict[str, tuple[str, ...]] = {"neck": ("neck",)}
    for s in ("left", "right"):
        chains[f"{s}_arm"] = (f"{s}_shoulder", f"{s}_elbow", f"{s}_wrist")
        chains[f"{s}_hand"] = (f"{s}_wrist",)
        for finger in FINGER_NAMES:
            chains[f"{s}_{finger}"] = (f"{s}_wrist", *(f"{s}_{finger}{k}" for k in (1, 2, 3)))
        chains[f"{s}_leg"] = (f"{s}_hip", f"{s}_knee", f"{s}_ankle")
        chains[f"{s}_foot"] = (f"{s}_knee", f"{s}_ankle", f"{s}_foot")
        chains[f"{s}_eyeball"] = (f"{s}_eye_smplhf",)
    chains["torso"] = ("pelvis", "spine1", "spine2", "spine3")
    chains["head"] = ("head",)
    return chains


REGION_CHAINS = _region_chains()


def _plane_normal(joints: np.ndarray, j: int) -> np.ndarray:
    name = _name(j)
    if name.endswith("_foot"):
        return np.array([0.0, 0.0, 1.0])
    if name.startswith("spine"):
        return np.array([0.0, 1.0, 0.0])
    d = joints[j] - joints[SMPLX_PARENTS[j]]
    return d / np.linalg.norm(d)


def _name(j: int) -> str:
    return SMPLX_JOINT_NAMES[j]


def vertex_labels(vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray,
                  joints: np.ndarray, upper_lip: np.ndarray, lower_lip: np.ndarray) -> np.ndarray:
    """The joint each vertex follows rigidly away from joints.

    Args:
        vertices: ``(V, 3)`` rest vertices.
        faces: ``(F, 3)``.
        face_region: ``(F,)`` region ids.
        joints: ``(55, 3)`` rest joints.
        upper_lip, lower_lip: vertices on the two edges of the mouth slit.

    Returns:
        ``(V,)`` int64 joint index.
    """
    vregion = np.full(len(vertices), -1, dtype=np.int64)
    vregion[faces.reshape(-1)] = np.repeat(face_region, 3)
    labels = np.full(len(vertices), -1, dtype=np.int64)
    for name, chain in REGION_CHAINS.items():
        sel = np.flatnonzero(vregion == REGION_INDEX[name])
        if len(sel) == 0:
            continue
        ids = [JOINT_INDEX[c] for c in chain]
        k = np.zeros(len(sel), dtype=np.int64)
        passed = np.ones(len(sel), dtype=bool)
        for i, j in enumerate(ids[1:], start=1):
            s = (vertices[sel] - joints[j]) @ _plane_normal(joints, j)
            passed &= s >= 0.0
            k[passed] = i
        labels[sel] = np.asarray(ids)[k]

    x, y, z = vertices.T
    torso = vregion == REGION_INDEX["torso"]
    collar = torso & (np.abs(x) > COLLAR_MIN_X) & (y > COLLAR_MIN_Y)
    labels[collar & (x > 0)] = JOINT_INDEX["left_collar"]
    labels[collar & (x < 0)] = JOINT_INDEX["right_collar"]

    head = vregion == REGION_INDEX["head"]
    (z0, y0), (z1, y1) = JAW_LINE
    line_y = y0 + (z - z0) * (y1 - y0) / (z1 - z0)
    jaw = head & (y < line_y) & (z > JAW_BACK_Z)
    labels[jaw] = JOINT_INDEX["jaw"]
    labels[upper_lip] = JOINT_INDEX["head"]
    labels[lower_lip] = JOINT_INDEX["jaw"]
    if (labels < 0).any():
        raise RuntimeError("some vertices got no joint label")
    return labels


def _boundary_points(vertices, edges, labels):
    la, lb = labels[edges[:, 0]], labels[edges[:, 1]]
    cross = la != lb
    e = edges[cross]
    mids = 0.5 * (vertices[e[:, 0]] + vertices[e[:, 1]])
    return mids, np.minimum(la[cross], lb[cross]), np.maximum(la[cross], lb[cross])


def _depth(j: int) -> int:
    d = 0
    while SMPLX_PARENTS[j] >= 0:
        j = SMPLX_PARENTS[j]
        d += 1
    return d


def _segment_length(joints: np.ndarray, j: int) -> float:
    """Distance from joint ``j`` to its nearest child along a limb (inf for end segments)."""
    kids = [c for c, q in enumerate(SMPLX_PARENTS) if q == j
            and not _name(c).endswith("_eye_smplhf") and _name(c) != "jaw"]
    if not kids:
        return float("inf")
    return float(min(np.linalg.norm(joints[k] - joints[j]) for k in kids))


def _free_band(vertices, edges, labels, joints):
    """Vertices within the blending band of some label boundary.

    Every label keeps at least a quarter of its vertices (those deepest inside) fixed.
    """
    mids, a, b = _boundary_points(vertices, edges, labels)
    closeness = np.full(len(vertices), np.inf)  # distance to a boundary / band half-width
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    for la, lb in pairs:
        sel = (a == la) & (b == lb)
        pts = mids[sel]
        child = la if _depth(la) > _depth(lb) else lb
        parent = lb if child == la else la
        radius = float(np.median(np.linalg.norm(pts - joints[child], axis=1)))
        seg = min(float(np.linalg.norm(joints[child] - joints[parent])),
                  _segment_length(joints, child))
        r = min(BAND_FRACTION * radius, BAND_SEGMENT_FRACTION * seg)
        r = BAND_OVERRIDES.get(_name(child), float(np.clip(r, *BAND_LIMITS)))
        lo, hi = pts.min(0) - r, pts.max(0) + r
        cand = np.flatnonzero(((vertices >= lo) & (vertices <= hi)).all(axis=1))
        for s in range(0, len(cand), 4096):
            c = cand[s:s + 4096]
            d = np.sqrt(((vertices[c, None, :] - pts[None]) ** 2).sum(-1).min(axis=1)) / r
            closeness[c] = np.minimum(closeness[c], d)
    free = closeness < 1.0
    for j in np.unique(labels):
        own = np.flatnonzero(labels == j)
        if free[own].all():
            free[own[closeness[own] >= np.quantile(closeness[own], 0.75)]] = False
    return free


def _harmonic_fill(n, edges, fixed_w, free):
    """Replace the rows of ``free`` vertices by the harmonic interpolation of the fixed rows."""
    w = fixed_w.copy()
    offsets, nbrs = mo.neighbor_csr(edges, n)
    deg = np.diff(offsets)
    fe = edges[free[edges[:, 0]] & free[edges[:, 1]]]
    comp = mo.connected_components(n, fe)
    free_ids = np.flatnonzero(free)
    comps = comp[free_ids]
    order = np.argsort(comps, kind="stable")
    free_ids, comps = free_ids[order], comps[order]
    splits = np.flatnonzero(np.diff(comps)) + 1
    for ids in np.split(free_ids, splits):
        local = np.full(n, -1, dtype=np.int64)
        local[ids] = np.arange(len(ids))
        m = len(ids)
        a = np.zeros((m, m))
        a[np.arange(m), np.arange(m)] = deg[ids]
        rhs = np.zeros((m, w.shape[1]))
        rows = np.repeat(np.arange(m), deg[ids])
        cols = np.concatenate([nbrs[offsets[i]:offsets[i + 1]] for i in ids])
        inner = local[cols] >= 0
        np.add.at(a, (rows[inner], local[cols[inner]]), -1.0)
        np.add.at(rhs, rows[~inner], w[cols[~inner]])
        w[ids] = np.linalg.solve(a, rhs)
    return w


def _sparsify(w: np.ndarray) -> np.ndarray:
    w = np.where(w < MIN_WEIGHT, 0.0, w)
    top = np.argsort(-w, axis=1, kind="stable")[:, :MAX_INFLUENCES]
    keep = np.zeros_like(w, dtype=bool)
    np.put_along_axis(keep, top, True, axis=1)
    w = np.where(keep, w, 0.0)
    return w / w.sum(axis=1, keepdims=True)


def skin_weights(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray,
                 joints: np.ndarray, pinned: np.ndarray) -> np.ndarray:
    """Linear-blend-skinning weights.

    Args:
        vertices: ``(V, 3)``.
        faces: ``(F, 3)``.
        labels: ``(V,)`` joint followed away from joints.
        joints: ``(55, 3)``.
        pinned: ``(K,)`` vertices that keep their one-hot label (e.g. the lips).

    Returns:
        ``(V, 55)`` float64, rows sum to 1, at most 4 non-zeros per row.
    """
    n = len(vertices)
    edges = mo.unique_edges(faces, n)
    w = np.zeros((n, NUM_JOINTS))
    w[np.arange(n), labels] = 1.0
    free = _free_band(vertices, edges, labels, joints)
    free[pinned] = False
    w = mo.snap(_harmonic_fill(n, edges, w, free))  # exact ties stay ties on every machine
    return _sparsify(w)


# ----------------------------------------------------------------------------------------------
# Regressors


def max_entropy_weights(points: np.ndarray, target: np.ndarray, iters: int = 60,
                        tol: float = 1e-7) -> np.ndarray | None:
    """Positive weights summing to one whose weighted mean of ``points`` is ``target``.

    The maximum-entropy solution ``w_i ~ exp(theta . p_i)``; None if ``target`` lies outside
    the convex hull of the points (no such weights exist).

    Args:
        points: ``(K, 3)``.
        target: ``(3,)``.

    Returns:
        ``(K,)`` or None.
    """
    d = points - target
    scale = max(float(np.abs(d).max()), 1e-9)
    d = d / scale
    theta = np.zeros(3)
    for _ in range(iters):
        a = d @ theta
        w = np.exp(a - a.max())
        w /= w.sum()
        g = w @ d
        if np.linalg.norm(g) * scale < tol:
            return w
        h = (d * w[:, None]).T @ d - np.outer(g, g) + 1e-9 * np.eye(3)
        step = np.linalg.solve(h, g)
        # damped Newton on log-sum-exp (convex); backtrack until it decreases
        f0 = np.log(np.exp(a - a.max()).sum()) + a.max()
        t = 1.0
        while t > 1e-6:
            a1 = d @ (theta - t * step)
            if np.log(np.exp(a1 - a1.max()).sum()) + a1.max() <= f0:
                break
            t *= 0.5
        theta = theta - t * step
        if np.linalg.norm(theta) > 1e4:
            return None
    a = d @ theta
    w = np.exp(a - a.max())
    w /= w.sum()
    return w if np.linalg.norm(w @ d) * scale < 1e-5 else None


def _joint_radius(vertices, boundary, labels, joints, j):
    p = SMPLX_PARENTS[j]
    mids, a, b = boundary
    if p >= 0:
        sel = ((a == min(j, p)) & (b == max(j, p)))
        if sel.any():
            return float(np.median(np.linalg.norm(mids[sel] - joints[j], axis=1)))
    own = np.flatnonzero(labels == j)
    if len(own):
        return float(np.median(np.linalg.norm(vertices[own] - joints[j], axis=1)))
    return 0.05


def _regress_one(vertices, labels, joints, j, target, radius, allowed, spacing, slab_scale=0.15):
    normal = _plane_normal(joints, j) if SMPLX_PARENTS[j] >= 0 else np.array([0.0, 1.0, 0.0])
    near_lab = np.isin(labels, allowed)
    dist = np.linalg.norm(vertices - target, axis=1)
    height = np.abs((vertices - target) @ normal)
    half = max(slab_scale * radius, 1.2 * spacing)
    for grow in (1.0, 1.5, 2.0, 3.0, 4.0, 6.0):
        slab = height < half * grow
        cand = np.flatnonzero(near_lab & slab & (dist < 1.8 * radius * grow))
        if len(cand) < 4:
            continue
        w = max_entropy_weights(vertices[cand], target)
        if w is None:
            continue
        keep = w > 1e-4 * w.max()
        cand, w = cand[keep], w[keep]
        w2 = max_entropy_weights(vertices[cand], target)
        if w2 is not None:
            return cand, w2
    raise RuntimeError(f"cannot place joint {_name(j)} inside the mesh")


def _local_spacing(vertices: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean length of the edges at each vertex, ``(V,)``."""
    length = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    ends = edges.reshape(-1)
    return np.bincount(ends, np.repeat(length, 2), len(vertices)) / np.maximum(
        np.bincount(ends, minlength=len(vertices)), 1)


def _allowed_labels(j: int) -> list[int]:
    p = SMPLX_PARENTS[j]
    kids = [c for c, q in enumerate(SMPLX_PARENTS) if q == j]
    return [j] + ([p] if p >= 0 else []) + kids


def joint_regressor(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray,
                    joints: np.ndarray) -> np.ndarray:
    """Sparse joint regressor placing each joint at ``joints``.

    Returns:
        ``(55, V)`` float64, non-negative rows summing to one.
    """
    n = len(vertices)
    edges = mo.unique_edges(faces, n)
    spacing = _local_spacing(vertices, edges)
    boundary = _boundary_points(vertices, edges, labels)
    reg = np.zeros((NUM_JOINTS, n))
    for j in range(NUM_JOINTS):
        if _name(j).endswith("_eye_smplhf"):
            own = np.flatnonzero(labels == j)
            w = max_entropy_weights(vertices[own], joints[j])
            reg[j, own] = w
            continue
        radius = _joint_radius(vertices, boundary, labels, joints, j)
        near = np.linalg.norm(vertices - joints[j], axis=1) < 2.0 * radius
        cand, w = _regress_one(vertices, labels, joints, j, joints[j], radius, _allowed_labels(j),
                               float(np.median(spacing[near])) if near.any() else 0.005)
        reg[j, cand] = w
    return reg


def j14_regressor(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray,
                  joints: np.ndarray) -> np.ndarray:
    """LSP-style 14-joint regressor (rows in ``constants.J14_NAMES`` order).

    Returns:
        ``(14, V)`` float64, non-negative rows summing to one.
    """
    n = len(vertices)
    edges = mo.unique_edges(faces, n)
    spacing = _local_spacing(vertices, edges)
    boundary = _boundary_points(vertices, edges, labels)
    reg = np.zeros((len(J14_NAMES), n))
    for row, name in enumerate(J14_NAMES):
        j = JOINT_INDEX[name]
        target = joints[j] + np.asarray(J14_OFFSETS[name])
        radius = _joint_radius(vertices, boundary, labels, joints, j)
        allowed = _allowed_labels(j) + ([JOINT_INDEX["jaw"]] if name == "head" else [])
        near = np.linalg.norm(vertices - target, axis=1) < 2.0 * radius
        cand, w = _regress_one(vertices, labels, joints, j, target, radius, allowed,
                               float(np.median(spacing[near])) if near.any() else 0.005,
                               slab_scale=0.3)
        reg[row, cand] = w
    return reg


__all__ = ["joint_regressor", "j14_regressor", "max_entropy_weights", "skin_weights",
           "vertex_labels"]
