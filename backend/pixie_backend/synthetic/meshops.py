"""Vectorised mesh operations on index arrays (numpy only).

Faces are ``(F, k)`` int64 arrays of vertex indices, oriented counter-clockwise seen from outside
(right-hand rule gives the outward normal). Vertices are ``(V, 3)`` float64 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: :func:`snap` rounds to multiples of ``2**-SNAP_BITS`` (about 2.3e-10).
SNAP_BITS = 32


def snap(x: np.ndarray, bits: int = SNAP_BITS) -> np.ndarray:
    """Round to the nearest multiple of ``2**-bits``, elementwise (float64 in, float64 out).

    The generator snaps its arrays between stages and at the end. Thread counts and instruction
    sets (BLAS kernels, SIMD versions of ``exp``/``sin``) change the last bits of float results;
    snapping removes that noise, so every decision taken on the numbers afterwards (ties in a
    sort, thresholds) and every written array is the same on every machine. The grid is far
    below anything the body or a test can see (0.2 nm) and far above the noise (1e-16).
    """
    scale = float(2 ** bits)
    return np.round(np.asarray(x, dtype=np.float64) * scale) / scale + 0.0  # + 0.0: no -0.0


def smoothstep(x: np.ndarray) -> np.ndarray:
    """C1 ramp from 0 (x <= 0) to 1 (x >= 1), elementwise."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def edge_key(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Order-independent integer key of the edges ``(a, b)`` in a mesh with ``n`` vertices."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return lo.astype(np.int64) * n + hi


@dataclass(frozen=True)
class EdgeTable:
    """The undirected edges of a polygon mesh with fixed face arity ``k``."""

    edges: np.ndarray
    """``(E, 2)`` int64, vertex pairs with ``edges[:, 0] < edges[:, 1]``, sorted by key."""
    face_edges: np.ndarray
    """``(F, k)`` int64: edge id of face side ``i`` (from corner ``i`` to corner ``i + 1``)."""
    edge_faces: np.ndarray
    """``(E, 2)`` int64: the (up to) two faces of each edge, -1 where there is none."""
    counts: np.ndarray
    """``(E,)`` int64: number of faces on each edge."""

    def lookup(self, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
        """Edge ids of the vertex pairs ``(a, b)``; raises if one is not an edge."""
        keys = edge_key(self.edges[:, 0], self.edges[:, 1], n)
        q = edge_key(np.asarray(a), np.asarray(b), n)
        idx = np.searchsorted(keys, q)
        idx = np.clip(idx, 0, len(keys) - 1)
        if not np.array_equal(keys[idx], q):
            raise ValueError("some vertex pairs are not edges of the mesh")
        return idx


def edge_table(faces: np.ndarray, n_vertices: int) -> EdgeTable:
    """Build the edge table of a polygon mesh.

    Args:
        faces: ``(F, k)`` vertex indices.
        n_vertices: number of vertices.

    Returns:
        The ``EdgeTable``; edges on more than two faces raise ``ValueError``.
    """
    f, k = faces.shape
    a = faces.reshape(-1)
    b = np.roll(faces, -1, axis=1).reshape(-1)
    keys = edge_key(a, b, n_vertices)
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    if counts.max(initial=0) > 2:
        raise ValueError("non-manifold mesh: an edge has more than two faces")
    edges = np.stack([uniq // n_vertices, uniq % n_vertices], axis=1)
    order = np.argsort(inverse, kind="stable")
    face_of_side = np.repeat(np.arange(f), k)[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    edge_faces = np.full((len(uniq), 2), -1, dtype=np.int64)
    edge_faces[:, 0] = face_of_side[starts]
    two = counts == 2
    edge_faces[two, 1] = face_of_side[starts[two] + 1]
    return EdgeTable(edges, inverse.reshape(f, k), edge_faces, counts)


@dataclass(frozen=True)
class Subdivided:
    """Result of one Catmull-Clark step on a closed quad mesh."""

    vertices: np.ndarray
    """``(V + E + F, 3)``: moved old vertices, then one point per edge, then one per face."""
    quads: np.ndarray
    """``(4F, 4)``: four children per parent face, in parent order."""
    parent: np.ndarray
    """``(4F,)``: parent face of each child."""
    edges: EdgeTable
    """Edge table of the parent mesh; edge ``e`` became vertex ``V + e``."""
    n_parent_vertices: int

    def refine_path(self, path: np.ndarray) -> np.ndarray:
        """Map a vertex path of the parent mesh to the child mesh (edge points interleaved).

        Args:
            path: ``(P,)`` vertex ids, consecutive ones joined by parent edges.

        Returns:
            ``(2P - 1,)`` vertex ids.
        """
        path = np.asarray(path, dtype=np.int64)
        mids = self.n_parent_vertices + self.edges.lookup(path[:-1], path[1:], self.n_parent_vertices)
        out = np.empty(2 * len(path) - 1, dtype=np.int64)
        out[0::2] = path
        out[1::2] = mids
        return out


def catmull_clark(vertices: np.ndarray, quads: np.ndarray) -> Subdivided:
    """One Catmull-Clark subdivision step of a closed, manifold quad mesh.

    Args:
        vertices: ``(V, 3)``.
        quads: ``(F, 4)``, consistently oriented.

    Returns:
        ``Subdivided``; orientation is preserved.
    """
    n, m = len(vertices), len(quads)
    table = edge_table(quads, n)
    if (table.counts != 2).any():
        raise ValueError("Catmull-Clark needs a closed mesh: some edges have one face")
    e0, e1 = table.edges[:, 0], table.edges[:, 1]
    face_pts = vertices[quads].mean(axis=1)
    f0, f1 = table.edge_faces[:, 0], table.edge_faces[:, 1]
    edge_pts = (vertices[e0] + vertices[e1] + face_pts[f0] + face_pts[f1]) / 4.0

    valence = np.bincount(table.edges.reshape(-1), minlength=n).astype(np.float64)
    corner = quads.reshape(-1)
    face_sum = np.stack(
        [np.bincount(corner, np.repeat(face_pts[:, c], 4), minlength=n) for c in range(3)], axis=1
    )
    face_cnt = np.bincount(corner, minlength=n).astype(np.float64)
    mid = 0.5 * (vertices[e0] + vertices[e1])
    ends = table.edges.reshape(-1)
    mid_sum = np.stack(
        [np.bincount(ends, np.repeat(mid[:, c], 2), minlength=n) for c in range(3)], axis=1
    )
    f_avg = face_sum / face_cnt[:, None]
    r_avg = mid_sum / valence[:, None]
    moved = (f_avg + 2.0 * r_avg + (valence[:, None] - 3.0) * vertices) / valence[:, None]

    new_vertices = np.concatenate([moved, edge_pts, face_pts], axis=0)
    ev = n + table.face_edges  # (F, 4) edge point of side i: corner i -> i + 1
    fv = n + len(e0) + np.arange(m)
    a, b, c, d = quads.T
    children = np.stack(
        [
            np.stack([a, ev[:, 0], fv, ev[:, 3]], axis=1),
            np.stack([b, ev[:, 1], fv, ev[:, 0]], axis=1),
            np.stack([c, ev[:, 2], fv, ev[:, 1]], axis=1),
            np.stack([d, ev[:, 3], fv, ev[:, 2]], axis=1),
        ],
        axis=1,
    ).reshape(-1, 4)
    return Subdivided(new_vertices, children, np.repeat(np.arange(m), 4), table, n)


def triangulate_quads(vertices: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Split each quad along its shorter diagonal.

    Args:
        vertices: ``(V, 3)``.
        quads: ``(F, 4)``.

    Returns:
        ``(2F, 3)`` triangles; triangles ``2i`` and ``2i + 1`` come from quad ``i``.
    """
    a, b, c, d = quads.T
    d_ac = np.linalg.norm(vertices[a] - vertices[c], axis=1)
    d_bd = np.linalg.norm(vertices[b] - vertices[d], axis=1)
    use_ac = d_ac <= d_bd
    t0 = np.where(use_ac[:, None], np.stack([a, b, c], 1), np.stack([a, b, d], 1))
    t1 = np.where(use_ac[:, None], np.stack([a, c, d], 1), np.stack([b, c, d], 1))
    return np.stack([t0, t1], axis=1).reshape(-1, 3)


def face_normals(vertices: np.ndarray, faces: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Normals of triangles ``(F, 3)`` -> ``(F, 3)`` (unit, or twice the area if not normalised)."""
    p = vertices[faces]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    if normalize:
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    return n


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals of a triangle mesh, ``(V, 3)``."""
    fn = face_normals(vertices, faces, normalize=False)
    acc = np.zeros_like(vertices)
    for c in range(3):
        np.add.at(acc, faces[:, c], fn)
    return acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-300)


def unique_edges(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Undirected edges ``(E, 2)`` of a polygon mesh."""
    return edge_table(faces, n_vertices).edges


def neighbor_csr(edges: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Compressed adjacency of an undirected graph.

    Returns:
        ``(offsets (n + 1,), neighbours (2E,))``: neighbours of ``i`` are
        ``neighbours[offsets[i]:offsets[i + 1]]``.
    """
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    order = np.argsort(src, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
    return offsets, dst[order]


def connected_components(n: int, edges: np.ndarray) -> np.ndarray:
    """Component label of each node of an undirected graph (labels are the smallest node id).

    Args:
        n: number of nodes.
        edges: ``(E, 2)``.

    Returns:
        ``(n,)`` int64.
    """
    label = np.arange(n)
    a, b = edges[:, 0], edges[:, 1]
    while True:
        m = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, a, m)
        np.minimum.at(new, b, m)
        new = new[new]  # pointer jumping
        if np.array_equal(new, label):
            return label
        label = new


def ray_hits(
    origins: np.ndarray, directions: np.ndarray, vertices: np.ndarray, faces: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First hit of each ray with a set of triangles (Moller-Trumbore, both sides count).

    Args:
        origins: ``(R, 3)``.
        directions: ``(R, 3)``.
        vertices: ``(V, 3)``.
        faces: ``(F, 3)`` candidate triangles.

    Returns:
        ``(face (R,), barycentric (R, 3), distance (R,))``; face is an index into ``faces`` and
        -1 where a ray hits nothing (its distance is ``inf``).
    """
    p0, p1, p2 = (vertices[faces[:, i]] for i in range(3))
    e1, e2 = p1 - p0, p2 - p0
    r = len(origins)
    best_f = np.full(r, -1, dtype=np.int64)
    best_t = np.full(r, np.inf)
    best_b = np.zeros((r, 3))
    chunk = max(1, 2_000_000 // max(len(faces), 1))
    for s in range(0, r, chunk):
        o = origins[s:s + chunk, None, :]
        d = directions[s:s + chunk, None, :]
        h = np.cross(d, e2[None])
        det = np.einsum("rfc,fc->rf", h, e1)
        ok = np.abs(det) > 1e-14
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        sv = o - p0[None]
        u = inv * np.einsum("rfc,rfc->rf", sv, h)
        q = np.cross(sv, e1[None])
        v = inv * np.einsum("rfc,rfc->rf", np.broadcast_to(d, q.shape), q)
        t = inv * np.einsum("rfc,fc->rf", q, e2)
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        t = np.where(hit, t, np.inf)
        j = np.argmin(t, axis=1)
        rows = np.arange(len(j))
        tj = t[rows, j]
        good = np.isfinite(tj)
        sl = slice(s, s + len(j))
        best_f[sl] = np.where(good, j, -1)
        best_t[sl] = tj
        uj, vj = u[rows, j], v[rows, j]
        best_b[sl] = np.where(good[:, None], np.stack([1 - uj - vj, uj, vj], 1), 0.0)
    return best_f, best_b, best_t


def box_surface(
    nx: int, ny: int, nz: int, skip_bottom: frozenset[tuple[int, int]] = frozenset()
) -> tuple[np.ndarray, np.ndarray]:
    """Quad grid on the surface of a box with ``nx x ny x nz`` cells, faces outward.

    Args:
        nx, ny, nz: cells along x, y and z.
        skip_bottom: cells ``(i, k)`` of the bottom (-y) face to leave open.

    Returns:
        ``(grid (N, 3) int64, quads (M, 4) int64)``: integer grid coordinates of the surface
        points and quads indexing them.
    """
    g = np.stack(np.meshgrid(np.arange(nx + 1), np.arange(ny + 1), np.arange(nz + 1),
                             indexing="ij"), axis=-1).reshape(-1, 3)
    on = (g[:, 0] % nx == 0) | (g[:, 1] % ny == 0) | (g[:, 2] % nz == 0)
    g = g[on]
    lut = np.full((nx + 1, ny + 1, nz + 1), -1, dtype=np.int64)
    lut[g[:, 0], g[:, 1], g[:, 2]] = np.arange(len(g))

    def cells(n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = np.meshgrid(np.arange(n1), np.arange(n2), indexing="ij")
        return a.reshape(-1), b.reshape(-1)

    quads = []
    i, j = cells(nx, ny)
    for k, flip in ((nz, False), (0, True)):
        q = np.stack([lut[i, j, k], lut[i + 1, j, k], lut[i + 1, j + 1, k], lut[i, j + 1, k]], 1)
        quads.append(q[:, ::-1] if flip else q)
    j, k = cells(ny, nz)
    for i_, flip in ((nx, False), (0, True)):
        q = np.stack([lut[i_, j, k], lut[i_, j + 1, k], lut[i_, j + 1, k + 1], lut[i_, j, k + 1]], 1)
        quads.append(q[:, ::-1] if flip else q)
    k, i = cells(nz, nx)
    q = np.stack([lut[i, ny, k], lut[i, ny, k + 1], lut[i + 1, ny, k + 1], lut[i + 1, ny, k]], 1)
    quads.append(q)
    keep = np.array([(a, b) not in skip_bottom for a, b in zip(i, k, strict=True)], dtype=bool)
    q = np.stack([lut[i, 0, k], lut[i + 1, 0, k], lut[i + 1, 0, k + 1], lut[i, 0, k + 1]], 1)
    quads.append(q[keep])
    return g, np.concatenate(quads, axis=0)


def sphere_mesh(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit cube-sphere: ``6 n^2 + 2`` vertices, ``12 n^2`` outward triangles.

    Returns:
        ``(vertices (V, 3), triangles (F, 3))``.
    """
    g, quads = box_surface(n, n, n)
    # equal-angle cube map gives evenly sized cells
    c = np.tan((g / n * 2.0 - 1.0) * (np.pi / 4.0))
    v = c / np.linalg.norm(c, axis=1, keepdims=True)
    return v, triangulate_quads(v, quads)
