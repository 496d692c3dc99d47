"""Surface points of the mannequin as (triangle, barycentric) pairs.

* The 51 static face landmarks (68-point iBUG order without the 17 contour points, i.e. points
  17..67: brows, nose bridge, nostrils, eyes, outer and inner lips), found by casting rays from
  the front onto the face.
* The dynamic contour table: 79 rows x 17 points along the jaw and cheek silhouette. Row ``a``
  (0..39) is the silhouette with the head turned by ``yaw = -a`` degrees about +y, rows 40..78
  by ``yaw = row - 39`` degrees (the rule of ``pixie-inference.md`` section 8.3).
* The 22 extra joints of ``constants.EXTRA_JOINT_NAMES``.

Image conventions: the camera looks along -z, so the person's right (-x) is on the image left;
contour point 0 is at the person's right ear, point 8 at the chin, point 16 at the left ear.
"""

from __future__ import annotations

import numpy as np

from ..constants import EXTRA_JOINT_NAMES, JOINT_INDEX, NUM_CONTOUR_LANDMARKS, NUM_DYNAMIC_LUT_ROWS
from . import meshops as mo
from .body_mesh import BodyMesh
from .cage import REGION_INDEX
from .skeleton import FINGER_NAMES, finger_points

#: Inner-lip landmarks sit this far off the edges of the mouth slit, m.
INNER_LIP_OFFSET = 0.0012
#: Yaw limit of the contour table, degrees.
MAX_YAW_DEG = 39
#: Directions of the 17 contour rays in the image plane (degrees from +x, counter-clockwise):
#: from the person's right temple, under the chin, to the left temple.
CONTOUR_RAY_DEG = np.linspace(172.0, 368.0, NUM_CONTOUR_LANDMARKS)


def _static_targets(mesh: BodyMesh, vertices: np.ndarray) -> np.ndarray:
    """``(51, 2)`` image-plane (x, y) positions of the static landmarks, iBUG points 17..67."""
    lay = mesh.layout
    pts: list[tuple[float, float]] = []
    by = lay.brow_y
    brow_x = np.array([0.053, 0.044, 0.034, 0.024, 0.014])  # outer -> inner
    brow_dy = np.array([-0.004, 0.000, 0.002, 0.002, 0.000])
    # 17-21: right brow, outer -> inner; 22-26: left brow, inner -> outer
    pts += [(-x, by + d) for x, d in zip(brow_x, brow_dy, strict=True)]
    pts += [(x, by + d) for x, d in zip(brow_x[::-1], brow_dy[::-1], strict=True)]
    tip_y = lay.nose_tip[0]
    pts += [(0.0, y) for y in np.linspace(lay.nose_root_y - 0.004, tip_y, 4)]  # 27-30: bridge
    base = lay.nose_base_y + 0.002
    pts += [(-0.013, base + 0.003), (-0.0065, base + 0.001), (0.0, base),
            (0.0065, base + 0.001), (0.013, base + 0.003)]  # 31-35: nostrils, right -> left
    # eyes: just outside the openings so that the rays land on the lids
    hw, hh = 1.06 * lay.eye_half_width, 1.25 * lay.eye_half_height
    for cx, cy, outer in ((lay.eye_right[0], lay.eye_right[1], -1.0),
                          (lay.eye_left[0], lay.eye_left[1], 1.0)):
        u = np.array([1.0, 0.45, -0.45, -1.0, -0.45, 0.45]) * outer  # outer, up, up, inner, ...
        v = np.array([0.0, 1.0, 1.0, 0.0, -1.0, -1.0])
        lid = hh * np.maximum(1.0 - u * u, 0.0) ** 0.6
        ring = [(cx + hw * a, cy + b * (lid_k if b else 0.0)) for a, b, lid_k in zip(u, v, lid, strict=True)]
        if outer < 0:  # right eye: 36 outer corner, 37-38 upper, 39 inner, 40-41 lower
            pts += ring
        else:  # left eye: 42 inner corner, 43-44 upper, 45 outer, 46-47 lower
            pts += [ring[3], ring[2], ring[1], ring[0], ring[5], ring[4]]
    corners = vertices[mesh.mouth_corners]
    mw = 0.5 * abs(corners[1, 0] - corners[0, 0])
    my = lay.mouth_y
    outer_up = [0.70, 0.30, 0.0]
    up_dy = [0.0065, 0.0095, 0.0085]
    lo_dy = [-0.0085, -0.0115, -0.0125]
    pts += [(-mw - 0.002, my)]  # 48
    pts += [(-f * mw, my + d) for f, d in zip(outer_up, up_dy, strict=True)]  # 49-51
    pts += [(f * mw, my + d) for f, d in zip(outer_up[1::-1], up_dy[1::-1], strict=True)]  # 52-53
    pts += [(mw + 0.002, my)]  # 54
    pts += [(f * mw, my + d) for f, d in zip(outer_up, lo_dy, strict=True)]  # 55-57
    pts += [(-f * mw, my + d) for f, d in zip(outer_up[1::-1], lo_dy[1::-1], strict=True)]  # 58-59
    # inner lips: just off the two edges of the mouth slit
    def lip_y(x: float, ids: np.ndarray, offset: float) -> float:
        lip = vertices[ids]
        order = np.argsort(lip[:, 0])
        return float(np.interp(x, lip[order, 0], lip[order, 1])) + offset

    up, lo = mesh.upper_lip, mesh.lower_lip
    ic = corners[0, 1] + 0.0006
    pts += [(-mw + 0.002, ic)]  # 60
    pts += [(x, lip_y(x, up, INNER_LIP_OFFSET)) for x in (-0.45 * mw, 0.0, 0.45 * mw)]  # 61-63
    pts += [(mw - 0.002, ic)]  # 64
    pts += [(x, lip_y(x, lo, -INNER_LIP_OFFSET)) for x in (0.45 * mw, 0.0, -0.45 * mw)]  # 65-67
    return np.array(pts)


def _cast(vertices, faces, candidates, origins, direction):
    """Nearest hit of rays from ``origins`` along ``direction`` on the candidate faces."""
    dirs = np.broadcast_to(np.asarray(direction, dtype=np.float64), origins.shape)
    f, bary, _ = mo.ray_hits(origins, np.ascontiguousarray(dirs), vertices, faces[candidates])
    if (f < 0).any():
        raise RuntimeError(f"{int((f < 0).sum())} landmark rays missed the mesh")
    return candidates[f], bary


def static_landmarks(mesh: BodyMesh) -> tuple[np.ndarray, np.ndarray]:
    """The 51 static face landmarks.

    Returns:
        ``(faces (51,) int64, barycentrics (51, 3) float64)``.
    """
    v, f = mesh.vertices, mesh.faces
    xy = _static_targets(mesh, v)
    head = np.flatnonzero(mesh.face_region == REGION_INDEX["head"])
    origins = np.concatenate([xy, np.full((len(xy), 1), 1.0)], axis=1)
    return _cast(v, f, head, origins, (0.0, 0.0, -1.0))


def _rot_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _contour_faces(mesh: BodyMesh, joints: np.ndarray) -> np.ndarray:
    """Head triangles that may carry contour points: the lower face, in front of the ears."""
    c = mesh.vertices[mesh.faces].mean(axis=1)
    lay = mesh.layout
    head = mesh.face_region == REGION_INDEX["head"]
    low = c[:, 1] < lay.eye_left[1] - 0.004
    front = c[:, 2] > joints[JOINT_INDEX["head"], 2] + 0.0
    return np.flatnonzero(head & low & front)


def _silhouette(p2: np.ndarray, faces: np.ndarray, centre: np.ndarray, ray_deg: np.ndarray):
    """Farthest crossing of rays from ``centre`` with the projected triangle edges.

    Args:
        p2: ``(V, 2)`` projected vertices.
        faces: ``(F, 3)`` candidate triangles.
        centre: ``(2,)``.
        ray_deg: ``(R,)`` ray directions.

    Returns:
        ``(face (R,), barycentric (R, 3))`` with ``face`` indexing ``faces``.
    """
    a = faces.reshape(-1)
    b = np.roll(faces, -1, axis=1).reshape(-1)
    pa, pb = p2[a] - centre, p2[b] - centre
    e = pb - pa
    d = mo.snap(np.stack([np.cos(np.deg2rad(ray_deg)), np.sin(np.deg2rad(ray_deg))], axis=1))
    # solve centre + t d = pa + s e
    det = d[:, None, 0] * (-e[None, :, 1]) - d[:, None, 1] * (-e[None, :, 0])
    ok = np.abs(det) > 1e-14
    det = np.where(ok, det, 1.0)
    t = (pa[None, :, 0] * (-e[None, :, 1]) - pa[None, :, 1] * (-e[None, :, 0])) / det
    s = (d[:, None, 0] * pa[None, :, 1] - d[:, None, 1] * pa[None, :, 0]) / det
    hit = ok & (s >= 0.0) & (s <= 1.0) & (t > 0.0)
    t = np.where(hit, t, -np.inf)
    k = np.argmax(t, axis=1)
    if not np.isfinite(t[np.arange(len(k)), k]).all():
        raise RuntimeError("a contour ray missed the face")
    sk = s[np.arange(len(k)), k]
    face, corner = k // 3, k % 3
    bary = np.zeros((len(k), 3))
    bary[np.arange(len(k)), corner] = 1.0 - sk
    bary[np.arange(len(k)), (corner + 1) % 3] = sk
    return face, bary


def contour_table(mesh: BodyMesh, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The yaw-dependent jaw/cheek contour landmarks.

    Returns:
        ``(faces (79, 17) int64, barycentrics (79, 17, 3) float64)``.
    """
    cand = _contour_faces(mesh, joints)
    sub = mesh.faces[cand]
    pivot = joints[JOINT_INDEX["head"]]
    lay = mesh.layout
    centre3 = np.array([0.0, lay.nose_base_y - 0.008, lay.eye_left[2]])
    yaws = np.concatenate([-np.arange(MAX_YAW_DEG + 1), np.arange(1, MAX_YAW_DEG + 1)])
    faces = np.zeros((NUM_DYNAMIC_LUT_ROWS, NUM_CONTOUR_LANDMARKS), dtype=np.int64)
    bary = np.zeros((NUM_DYNAMIC_LUT_ROWS, NUM_CONTOUR_LANDMARKS, 3))
    for row, yaw in enumerate(yaws):
        # snapped: the silhouette's argmax decides between the two copies of a shared edge
        r = mo.snap(_rot_y(float(yaw)))
        p = mo.snap((mesh.vertices - pivot) @ r.T + pivot)
        c = mo.snap((centre3 - pivot) @ r.T + pivot)
        f, b = _silhouette(p[:, :2], sub, c[:2], CONTOUR_RAY_DEG)
        faces[row], bary[row] = cand[f], b
    return faces, bary


def extra_joints(mesh: BodyMesh, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 22 extra vertex joints, in ``constants.EXTRA_JOINT_NAMES`` order.

    Returns:
        ``(faces (22,) int64, barycentrics (22, 3) float64)``.
    """
    v, f = mesh.vertices, mesh.faces
    lay = mesh.layout
    region = mesh.face_region

    def faces_of(*names: str) -> np.ndarray:
        return np.flatnonzero(np.isin(region, [REGION_INDEX[n] for n in names]))

    out: dict[str, tuple[int, np.ndarray]] = {}

    def put(name, cand, origin, direction):
        fi, bi = _cast(v, f, cand, np.asarray(origin, dtype=np.float64)[None], direction)
        out[name] = (int(fi[0]), bi[0])

    head = faces_of("head")
    head_j = joints[JOINT_INDEX["head"]]
    put("head_top", head, (0.0, 1.0, head_j[2]), (0.0, -1.0, 0.0))
    put("nose", head, (0.0, lay.nose_tip[0], 1.0), (0.0, 0.0, -1.0))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        ex, ey, ez = lay.ear
        put(f"{side}_ear", head, (sign * 1.0, ey, ez), (-sign, 0.0, 0.0))
        eye = lay.eye_left if side == "left" else lay.eye_right
        put(f"{side}_eye", faces_of(f"{side}_eyeball"), (eye[0], eye[1], 1.0), (0.0, 0.0, -1.0))
        foot = faces_of(f"{side}_foot")
        ankle = joints[JOINT_INDEX[f"{side}_ankle"]]
        toe = joints[JOINT_INDEX[f"{side}_foot"]]
        put(f"{side}_big_toe", foot, (toe[0] - sign * 0.018, toe[1] - 0.008, 1.0), (0, 0, -1.0))
        put(f"{side}_small_toe", foot, (toe[0] + sign * 0.028, toe[1] - 0.010, 1.0), (0, 0, -1.0))
        put(f"{side}_heel", foot, (ankle[0], ankle[1] - 0.055, -1.0), (0.0, 0.0, 1.0))
        for finger in FINGER_NAMES:
            pts = finger_points(finger, side)
            d = pts[3] - pts[2]
            d /= np.linalg.norm(d)
            put(f"{side}_{finger}", faces_of(f"{side}_{finger}"), pts[3] + 0.03 * d, -d)
    names = list(EXTRA_JOINT_NAMES)
    faces_out = np.array([out[n][0] for n in names], dtype=np.int64)
    bary_out = np.stack([out[n][1] for n in names])
    return faces_out, bary_out


def barycentric_points(vertices: np.ndarray, faces: np.ndarray, face_idx: np.ndarray,
                       bary: np.ndarray) -> np.ndarray:
    """Evaluate surface points: ``(..., 3)`` from face ids ``(...)`` and barycentrics ``(..., 3)``."""
    return np.einsum("...k,...kc->...c", bary, vertices[faces[face_idx]])


__all__ = ["barycentric_points", "contour_table", "extra_joints",
           "static_landmarks"]
