"""UV layout of the mannequin (the ``vt`` / ``ft`` of ``smplx_tex.obj``).

Charts are unions of triangles that share a body region and the dominant axis of the normal of
the cage face they come from (a "cube projection" per body part), plus one front chart for the
face. Each chart is projected orthographically along its axis, split into connected islands,
and the islands are shelf-packed into the unit square at a common texel density (the face at
``FACE_DENSITY`` times that). Vertices on island borders get one UV per island, so ``T > V``.
"""

from __future__ import annotations

import numpy as np

from . import meshops as mo
from .cage import REGION_INDEX

#: Texel density of the face chart relative to the rest of the body.
FACE_DENSITY = 2.0
#: A head triangle belongs to the face chart if its cage face normal has z above this.
FACE_NORMAL_Z = 0.45
#: A triangle stays in its chart only if its own normal has at least this component along the
#: chart's projection axis (otherwise it moves to the chart of its own dominant axis), which
#: keeps every triangle well away from folding over in its projection.
MIN_FACING = 0.3
#: Gap between islands, as a fraction of the atlas side.
MARGIN = 0.004

#: In-plane axes (u, v) for a projection along each signed axis, chosen so that triangles
#: facing that way keep counter-clockwise orientation: (u axis, u sign, v axis, v sign).
_PROJ = {
    (0, +1): (2, -1, 1, +1), (0, -1): (2, +1, 1, +1),
    (1, +1): (0, +1, 2, -1), (1, -1): (0, +1, 2, +1),
    (2, +1): (0, +1, 1, +1), (2, -1): (0, -1, 1, +1),
}


def _project(points: np.ndarray, axis: int, sign: int) -> np.ndarray:
    ua, us, va, vs = _PROJ[(axis, sign)]
    return np.stack([us * points[:, ua], vs * points[:, va]], axis=1)


def _signed_area(uv: np.ndarray) -> np.ndarray:
    a, b, c = uv[:, 0], uv[:, 1], uv[:, 2]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _chart_keys(vertices, faces, face_region, face_patch):
    """Chart key per triangle: (region, axis, sign), with the face chart as axis 3."""
    fn = mo.face_normals(vertices, faces, normalize=False)
    n_patch = face_patch.max() + 1
    pn = np.stack([np.bincount(face_patch, fn[:, c], n_patch) for c in range(3)], axis=1)
    pn /= np.maximum(np.linalg.norm(pn, axis=1, keepdims=True), 1e-300)
    n = pn[face_patch]
    axis = np.argmax(np.abs(n), axis=1)
    sign = np.where(n[np.arange(len(n)), axis] >= 0, 1, -1)
    face = (face_region == REGION_INDEX["head"]) & (n[:, 2] > FACE_NORMAL_Z)
    axis = np.where(face, 3, axis)
    sign = np.where(face, 1, sign)
    # a triangle must face its chart's axis: otherwise fall back to its own normal's axis
    own = mo.face_normals(vertices, faces)
    for _ in range(3):
        ax_eff = np.where(axis == 3, 2, axis)
        flipped = own[np.arange(len(own)), ax_eff] * sign <= MIN_FACING
        if not flipped.any():
            break
        na = np.argmax(np.abs(own), axis=1)
        axis = np.where(flipped, na, axis)
        sign = np.where(flipped, np.where(own[np.arange(len(own)), na] >= 0, 1, -1), sign)
    return face_region.astype(np.int64) * 8 + (axis * 2 + (sign > 0))


def _islands(faces: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Island id per triangle: connected (through edges) triangles with the same chart key."""
    nf = len(faces)
    table = mo.edge_table(faces, int(faces.max()) + 1)
    ef = table.edge_faces
    inner = (ef[:, 1] >= 0)
    ef = ef[inner]
    same = keys[ef[:, 0]] == keys[ef[:, 1]]
    return mo.connected_components(nf, ef[same])


def _projected(vertices: np.ndarray, faces: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Triangles projected along their chart axis, ``(F, 3, 2)`` (face chart: along +z)."""
    out = np.zeros((len(faces), 3, 2))
    axis_sign = keys % 8
    for code in np.unique(axis_sign):
        sel = axis_sign == code
        axis, positive = divmod(int(code), 2)
        pts = vertices[faces[sel]].reshape(-1, 3)
        out[sel] = _project(pts, min(axis, 2), 1 if positive else -1).reshape(-1, 3, 2)
    return out


def _split_folds(vertices: np.ndarray, faces: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Move triangles out of islands that fold over themselves around a vertex.

    Within an island every triangle keeps its orientation (``_chart_keys``), so an island can
    only overlap itself where the projected angles around a vertex add up to a full turn or
    more on the island's border (or to more than a full turn inside it): a saddle whose fan
    wraps around in the projection. The least well-facing triangle of such a fan gets a chart
    of its own; repeat until no fan wraps.
    """
    keys = keys.copy()
    n = len(vertices)
    fresh = int(keys.max()) // 8 + 1
    normals = mo.face_normals(vertices, faces)
    full = np.bincount(faces.reshape(-1), minlength=n)
    for _ in range(20):
        island = _islands(faces, keys)
        uv = _projected(vertices, faces, keys)
        a, b, c = uv[:, 0], uv[:, 1], uv[:, 2]

        def angle(p, q, r):
            u, w = q - p, r - p
            return np.arctan2(u[:, 0] * w[:, 1] - u[:, 1] * w[:, 0], (u * w).sum(axis=1))

        ang = np.stack([angle(a, b, c), angle(b, c, a), angle(c, a, b)], axis=1)
        key = (island[:, None] * n + faces).reshape(-1)
        uniq, inv = np.unique(key, return_inverse=True)
        total = np.bincount(inv, ang.reshape(-1))
        count = np.bincount(inv)
        closed = count == full[uniq % n]
        bad = np.where(closed, total > 2 * np.pi + 1e-6, total > 2 * np.pi - 1e-6)
        if not bad.any():
            return keys
        corner_bad = bad[inv].reshape(-1, 3).any(axis=1)
        # in each offending fan, move the triangle that faces its axis least
        facing = np.einsum("ij,ij->i", normals, np.stack([_axis_vector(k) for k in keys]))
        for fan in uniq[bad]:
            isl, v = divmod(int(fan), n)
            tris = np.flatnonzero((island == isl) & (faces == v).any(axis=1) & corner_bad)
            if len(tris):
                t = tris[np.argmin(facing[tris])]
                keys[t] = fresh * 8 + keys[t] % 8
                fresh += 1
    raise RuntimeError("could not unfold the UV charts")


def _axis_vector(key: int) -> np.ndarray:
    axis, positive = divmod(int(key) % 8, 2)
    d = np.zeros(3)
    d[min(axis, 2)] = 1.0 if positive else -1.0
    return d


def _pack(sizes: np.ndarray) -> tuple[np.ndarray, float]:
    """Shelf-pack rectangles ``(N, 2)`` (w, h); returns lower-left corners and the atlas side."""
    order = np.argsort(-sizes[:, 1], kind="stable")
    total = float((sizes[:, 0] * sizes[:, 1]).sum())
    side = max(np.sqrt(total * 1.15), float(sizes[:, 0].max()), float(sizes[:, 1].max()))
    gap = MARGIN * side
    while True:
        pos = np.zeros_like(sizes)
        x = y = shelf = 0.0
        for i in order:
            w, h = sizes[i]
            if x + w > side and x > 0:
                x, y = 0.0, y + shelf + gap
                shelf = 0.0
            pos[i] = (x, y)
            x += w + gap
            shelf = max(shelf, h)
        if y + shelf <= side:
            return pos, side
        side *= 1.04
        gap = MARGIN * side


def uv_layout(vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray,
              face_patch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping UV charts.

    Args:
        vertices: ``(V, 3)``.
        faces: ``(F, 3)``.
        face_region: ``(F,)`` region ids.
        face_patch: ``(F,)`` cage face ids.

    Returns:
        ``(vt (T, 2) float64 in [0, 1], ft (F, 3) int64)``.
    """
    keys = _split_folds(vertices, faces, _chart_keys(vertices, faces, face_region, face_patch))
    island = _islands(faces, keys)
    _, island = np.unique(island, return_inverse=True)
    n_isl = island.max() + 1
    # one UV vertex per (island, mesh vertex)
    corner_key = island[:, None].astype(np.int64) * len(vertices) + faces
    uniq, ft = np.unique(corner_key.reshape(-1), return_inverse=True)
    ft = ft.reshape(-1, 3)
    uv_island = uniq // len(vertices)
    uv_vertex = uniq % len(vertices)
    isl_key = np.zeros(n_isl, dtype=np.int64)
    isl_key[island] = keys
    axis_sign = isl_key % 8
    axis, sign = axis_sign // 2, np.where(axis_sign % 2 == 1, 1, -1)
    uv = np.zeros((len(uniq), 2))
    is_face = axis == 3
    for a in range(4):
        for s in (-1, 1):
            sel = (axis[uv_island] == a) & (sign[uv_island] == s)
            if sel.any():
                uv[sel] = _project(vertices[uv_vertex[sel]], min(a, 2), s)
    scale = np.where(is_face, FACE_DENSITY, 1.0)[uv_island]
    uv *= scale[:, None]
    lo = np.stack([np.full(n_isl, np.inf)] * 2, axis=1)
    hi = -lo
    np.minimum.at(lo, uv_island, uv)
    np.maximum.at(hi, uv_island, uv)
    pos, side = _pack(hi - lo)
    uv = (uv - lo[uv_island] + pos[uv_island]) / side
    return uv, ft
