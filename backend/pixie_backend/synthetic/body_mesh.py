"""Triangle mesh of the mannequin: refined cage, facial relief, eyeballs, eye openings, mouth slit,
and a count fix-up that hits exact vertex and face counts.

Topology bookkeeping: a closed genus-0 triangle mesh has ``F = 2V - 4``, so the body plus two
eyeballs has ``2V - F = 12``. Opening a disk-shaped hole with ``b`` boundary vertices raises
``2V - F`` by ``b - 2``; splitting a boundary edge raises it by one; splitting an interior edge
adds one vertex and two triangles and leaves it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import meshops as mo
from .cage import REGION_INDEX, build_cage
from .features import FaceLayout, face_layout, sculpt_head, sculpt_trunk
from .skeleton import EYEBALL_RADIUS

#: ``2V - F`` of the real SMPL-X topology (two eyeballs, eye openings and a mouth slit).
TARGET_EULER_DEFECT = 42
#: Vertical gap left between the lips at rest, m.
LIP_GAP = 0.0012


@dataclass(frozen=True)
class BodyMesh:
    """The rest mesh and the bookkeeping later stages need."""

    vertices: np.ndarray
    """``(V, 3)`` float64 rest vertices, m."""
    faces: np.ndarray
    """``(F, 3)`` int64 outward triangles."""
    face_region: np.ndarray
    """``(F,)`` int64 index into ``cage.REGIONS``."""
    face_patch: np.ndarray
    """``(F,)`` int64: the cage quad each triangle descends from (eyeball triangles get ids
    past the cage quads, one per eyeball cube face)."""
    upper_lip: np.ndarray
    """``(K,)`` int64 vertices on the upper edge of the mouth slit (corners excluded)."""
    lower_lip: np.ndarray
    """``(K,)`` int64 vertices on the lower edge of the mouth slit (corners excluded)."""
    mouth_corners: np.ndarray
    """``(2,)`` int64: right and left mouth corner vertices."""
    layout: FaceLayout


def _refine(levels: int):
    cage = build_cage()
    v, q, mouth = cage.vertices, cage.quads, cage.mouth_line
    patch = np.arange(len(q))
    for _ in range(levels):
        s = mo.catmull_clark(v, q)
        mouth = s.refine_path(mouth)
        patch = patch[s.parent]
        v, q = s.vertices, s.quads
    tris = mo.triangulate_quads(v, q)
    patch = np.repeat(patch, 2)
    return v, tris, cage.region[patch], patch, mouth, len(cage.quads)


#: Regions the trunk relief may move (it fades out well before the hands and the head).
_TRUNK_REGIONS = ("torso", "neck", "left_leg", "right_leg", "left_arm", "right_arm")


def _vertices_of(f: np.ndarray, region: np.ndarray, names, n: int) -> np.ndarray:
    """``(n,)`` bool mask of the vertices of triangles in the named regions."""
    mask = np.zeros(n, dtype=bool)
    mask[f[np.isin(region, [REGION_INDEX[r] for r in names])].reshape(-1)] = True
    return mask


def _eyeballs(layout: FaceLayout, n: int, first_vertex: int, first_patch: int):
    sv, st = mo.sphere_mesh(n)
    verts, faces, region, patch = [], [], [], []
    # cube-face id of each sphere triangle: dominant axis of its centroid
    c = sv[st].mean(axis=1)
    axis = np.argmax(np.abs(c), axis=1)
    cube_face = 2 * axis + (c[np.arange(len(c)), axis] > 0)
    for k, (name, centre) in enumerate((("left_eyeball", layout.eye_left),
                                        ("right_eyeball", layout.eye_right))):
        verts.append(centre + EYEBALL_RADIUS * sv)
        faces.append(st + first_vertex + k * len(sv))
        region.append(np.full(len(st), REGION_INDEX[name]))
        patch.append(first_patch + 6 * k + cube_face)
    return (np.concatenate(verts), np.concatenate(faces), np.concatenate(region),
            np.concatenate(patch))


def _cut_slit(v: np.ndarray, f: np.ndarray, path: np.ndarray):
    """Cut the mesh open along a vertex path; the lower side gets new copies of its vertices.

    Returns:
        ``(vertices, faces, upper (K,), lower (K,))`` for the ``K`` interior path vertices.
    """
    inner = path[1:-1]
    copies = len(v) + np.arange(len(inner))
    v = np.concatenate([v, v[inner]], axis=0)
    f = f.copy()
    pos = {int(p): i for i, p in enumerate(inner)}
    # local path direction at each interior vertex (in the xy plane)
    d = v[path[2:]] - v[path[:-2]]
    touched = np.flatnonzero(np.isin(f, inner).any(axis=1))
    cent = v[f[touched]].mean(axis=1)
    for t, c in zip(touched, cent, strict=True):
        for corner in range(3):
            i = pos.get(int(f[t, corner]))
            if i is None:
                continue
            rel = c - v[inner[i]]
            below = d[i, 0] * rel[1] - d[i, 1] * rel[0] < 0.0
            if below:
                f[t, corner] = copies[i]
    v[inner, 1] += 0.5 * LIP_GAP
    v[copies, 1] -= 0.5 * LIP_GAP
    return v, f, inner, copies


def _almond(dx: np.ndarray, dy: np.ndarray, hw: float, hh: float) -> np.ndarray:
    """Normalised "radius" of points w.r.t. an almond-shaped eye opening (1 on the outline)."""
    u = dx / hw
    lens = np.maximum(1.0 - np.minimum(u * u, 1.0), 1e-6) ** 0.75
    return np.maximum(np.abs(u), np.abs(dy) / (hh * lens))


def _open_eye(v: np.ndarray, f: np.ndarray, region: np.ndarray, patch: np.ndarray,
              eye: np.ndarray, hw: float, hh: float):
    """Remove the head triangles in front of an eyeball inside the eye opening."""
    head = region == REGION_INDEX["head"]
    c = v[f].mean(axis=1)
    r = _almond(c[:, 0] - eye[0], c[:, 1] - eye[1], hw, hh)
    remove = head & (c[:, 2] > eye[2]) & (r < 1.0)
    if remove.sum() < 4:
        # coarse meshes: open the fan of the vertex nearest the front of the eyeball
        front = eye + np.array([0.0, 0.0, EYEBALL_RADIUS])
        cand = np.unique(f[head])
        nearest = cand[np.argmin(np.linalg.norm(v[cand] - front, axis=1))]
        remove = head & (f == nearest).any(axis=1)
    keep = ~remove
    rim_mask = np.zeros(len(v), dtype=bool)
    rim_mask[f[remove].reshape(-1)] = True
    used = np.zeros(len(v), dtype=bool)
    used[f[keep].reshape(-1)] = True
    rim = np.flatnonzero(rim_mask & used)
    # spread the rim over the almond outline (by angle order, corners on the extreme vertices),
    # resting on the eyeball
    ang = np.arctan2(v[rim, 1] - eye[1], v[rim, 0] - eye[0])
    order = np.argsort(ang)
    start = int(np.argmin(np.abs(ang[order])))
    order = np.roll(order, -start)
    phi = 2.0 * np.pi * np.arange(len(rim)) / len(rim)
    dx = hw * np.cos(phi)
    dy = hh * np.sin(phi) * np.abs(np.sin(phi)) ** 0.4
    r_rim = EYEBALL_RADIUS + 0.0010
    dz = np.sqrt(np.maximum(r_rim ** 2 - dx ** 2 - dy ** 2, 0.0))
    v = v.copy()
    v[rim[order]] = np.stack([eye[0] + dx, eye[1] + dy, eye[2] + dz], axis=1)
    return _compact(v, f[keep], region[keep], patch[keep])


def _compact(v, f, region, patch):
    used = np.zeros(len(v), dtype=bool)
    used[f.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    return v[used], remap[f], region, patch, remap, used


def _split_edges(v, f, region, patch, edges, faces_of_edge):
    """Split a set of edges, no two on the same triangle, at their midpoints."""
    n = len(v)
    mids = n + np.arange(len(edges))
    v = np.concatenate([v, 0.5 * (v[edges[:, 0]] + v[edges[:, 1]])], axis=0)
    new_f, new_r, new_p = [], [], []
    drop = np.zeros(len(f), dtype=bool)
    for (a, b), m, tris in zip(edges, mids, faces_of_edge, strict=True):
        for t in tris[tris >= 0]:
            tri = f[t]
            # rotate the triangle to (p, q, r) with p-q the split edge
            for rot in range(3):
                p, q, r = tri[rot], tri[(rot + 1) % 3], tri[(rot + 2) % 3]
                if {int(p), int(q)} == {int(a), int(b)}:
                    break
            new_f += [(p, m, r), (m, q, r)]
            new_r += [region[t]] * 2
            new_p += [patch[t]] * 2
            drop[t] = True
    f = np.concatenate([f[~drop], np.array(new_f, dtype=np.int64).reshape(-1, 3)], axis=0)
    region = np.concatenate([region[~drop], np.array(new_r, dtype=np.int64)])
    patch = np.concatenate([patch[~drop], np.array(new_p, dtype=np.int64)])
    return v, f, region, patch


def _pick_matching(lengths: np.ndarray, faces_of_edge: np.ndarray, count: int) -> np.ndarray:
    """Greedy longest-first choice of ``count`` edges with pairwise disjoint triangles."""
    order = np.argsort(-lengths, kind="stable")
    used: set[int] = set()
    chosen = []
    for e in order:
        tris = [int(t) for t in faces_of_edge[e] if t >= 0]
        if any(t in used for t in tris):
            continue
        used.update(tris)
        chosen.append(int(e))
        if len(chosen) == count:
            break
    return np.array(chosen, dtype=np.int64)


def _fix_counts(v, f, region, patch, target_vertices: int | None):
    """Split boundary edges up to ``2V - F = 42``, then interior edges up to the vertex target."""
    defect = 2 * len(v) - len(f)
    if defect > TARGET_EULER_DEFECT:
        raise RuntimeError(f"holes too large: 2V - F = {defect} > {TARGET_EULER_DEFECT}")
    while defect < TARGET_EULER_DEFECT:
        table = mo.edge_table(f, len(v))
        border = np.flatnonzero(table.counts == 1)
        e = table.edges[border]
        lengths = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
        pick = _pick_matching(lengths, table.edge_faces[border], TARGET_EULER_DEFECT - defect)
        v, f, region, patch = _split_edges(v, f, region, patch, e[pick],
                                           table.edge_faces[border][pick])
        defect = 2 * len(v) - len(f)
    if target_vertices is None:
        return v, f, region, patch
    if len(v) > target_vertices:
        raise RuntimeError(f"mesh has {len(v)} vertices, more than the target {target_vertices}")
    while len(v) < target_vertices:
        table = mo.edge_table(f, len(v))
        inner = np.flatnonzero(table.counts == 2)
        e = table.edges[inner]
        lengths = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
        pick = _pick_matching(lengths, table.edge_faces[inner], target_vertices - len(v))
        v, f, region, patch = _split_edges(v, f, region, patch, e[pick],
                                           table.edge_faces[inner][pick])
    return v, f, region, patch


def build_body_mesh(levels: int, eye_resolution: int,
                    target_vertices: int | None = None) -> BodyMesh:
    """Build the rest mesh.

    Args:
        levels: Catmull-Clark steps applied to the cage.
        eye_resolution: cells per cube face of each eyeball.
        target_vertices: exact vertex count to reach by edge splits, or None.

    Returns:
        The ``BodyMesh``; ``2V - F == 42``.
    """
    layout = face_layout()
    v, f, region, patch, mouth, n_patches = _refine(levels)
    v = sculpt_head(v, _vertices_of(f, region, ("head",), len(v)), layout)
    v = sculpt_trunk(v, _vertices_of(f, region, _TRUNK_REGIONS, len(v)))

    ev, ef, er, ep = _eyeballs(layout, eye_resolution, len(v), n_patches)
    v = np.concatenate([v, ev])
    f = np.concatenate([f, ef])
    region = np.concatenate([region, er])
    patch = np.concatenate([patch, ep])
    for eye in (layout.eye_left, layout.eye_right):
        v, f, region, patch, remap, _ = _open_eye(v, f, region, patch, eye,
                                                  layout.eye_half_width, layout.eye_half_height)
        mouth = remap[mouth]

    # mouth slit: the lip row between the corners, shortened (symmetrically) if the openings
    # would exceed the topological budget; a slit along m edges raises 2V - F by 2m - 2
    inside = np.flatnonzero(np.abs(v[mouth, 0]) <= layout.mouth_half_width)
    budget = TARGET_EULER_DEFECT - (2 * len(v) - len(f))
    while 2 * (len(inside) - 1) - 2 > budget:
        inside = inside[1:-1]
    path = mouth[inside]
    corners = path[[0, -1]]
    v, f, upper, lower = _cut_slit(v, f, path)
    v, f, region, patch = _fix_counts(v, f, region, patch, target_vertices)
    return BodyMesh(
        vertices=mo.snap(v), faces=f, face_region=region, face_patch=patch,
        upper_lip=upper, lower_lip=lower, mouth_corners=corners, layout=layout,
    )
