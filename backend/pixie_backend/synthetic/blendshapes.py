"""Shape, expression and pose-corrective blend shapes and the hand pose PCA of the mannequin.

Shape and expression bases are smooth displacement fields in metres per unit coefficient:

* ``shapedirs[..., :300]``: a few named body measurements first (stature, girth, shoulder width,
  leg length, ...), built from the skin weights so that limbs move as units, followed by smooth
  random fields (sums of Gaussian bumps) whose size decays with the index.
* ``shapedirs[..., 300:]``: 100 expression fields restricted to the face: named ones (mouth
  open, smile, brows, cheeks, blink, ...) then small local random fields; their largest
  displacement decays with the index (8 mm per unit for the first).
* ``posedirs``: per joint, a bulge that grows with ``1 - cos(angle)`` plus a small share of the
  joint's rotation, localised to the blend region of the joint and its parent.
"""

from __future__ import annotations

import numpy as np

from ..constants import JOINT_INDEX, NUM_JOINTS, SMPLX_PARENTS
from .features import FaceLayout
from .meshops import smoothstep

NUM_SHAPE = 300
_FACE_KIDS = (JOINT_INDEX["jaw"], JOINT_INDEX["left_eye_smplhf"], JOINT_INDEX["right_eye_smplhf"])
NUM_EXPRESSION = 100
#: RMS displacement (over all vertices) of shape component k: SHAPE_RMS * (k + 1) ** -SHAPE_DECAY.
SHAPE_RMS = 0.012
SHAPE_DECAY = 0.7
#: Largest displacement of expression k: EXPR_PEAK * (k + 1) ** -EXPR_DECAY (peak rather than
#: RMS, because expression fields are local).
EXPR_PEAK = 0.008
EXPR_DECAY = 0.5
#: Neighbour-averaging passes applied to the local limb radius that scales girth changes.
GIRTH_SMOOTHING = 12
#: Pose correctives: bulge per unit of (1 - cos angle), as a fraction of the local limb radius,
#: and the share of the joint rotation added in the rest pose.
BULGE_FRACTION = 0.18
ROTATION_SHARE = 0.08
#: Hand PCA: flexion per finger joint in the mean pose, rad.
HAND_MEAN_FLEX = 0.18


def _subtree(j: int) -> list[int]:
    out = [j]
    for c, p in enumerate(SMPLX_PARENTS):
        if p == j:
            out += _subtree(c)
    return out


def _sum_w(weights: np.ndarray, names: list[str] | tuple[str, ...]) -> np.ndarray:
    ids = sorted({k for n in names for k in _subtree(JOINT_INDEX[n])})
    return weights[:, ids].sum(axis=1)


def _gauss(p: np.ndarray, centre, sigma) -> np.ndarray:
    d = (p - np.asarray(centre)) / np.asarray(sigma)
    return np.exp(-(d * d).sum(axis=1))


def _bone_distance(vertices: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Skin-weighted distance of each vertex to the bones it follows, ``(V,)`` (a smooth
    "local limb radius")."""
    out = np.zeros(len(vertices))
    for j in np.flatnonzero(weights.max(axis=0) > 0):
        sel = np.flatnonzero(weights[:, j] > 0)
        kids = [c for c, q in enumerate(SMPLX_PARENTS) if q == j and c not in _FACE_KIDS]
        a = joints[j]
        # end segments continue in the direction of the parent bone (toes, fingertips, skull)
        b = joints[kids].mean(axis=0) if kids else a + 0.8 * (a - joints[SMPLX_PARENTS[j]])
        ab = b - a
        t = np.clip(((vertices[sel] - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        d = np.linalg.norm(vertices[sel] - (a + t[:, None] * ab), axis=1)
        out[sel] += weights[sel, j] * d
    return out


def _smooth_scalar(values: np.ndarray, edges: np.ndarray, iterations: int) -> np.ndarray:
    """Average each value with its mesh neighbours, ``iterations`` times."""
    n = len(values)
    ends = np.concatenate([edges[:, 0], edges[:, 1]])
    other = np.concatenate([edges[:, 1], edges[:, 0]])
    deg = np.bincount(ends, minlength=n).astype(np.float64)
    out = values.astype(np.float64)
    for _ in range(iterations):
        out = 0.5 * out + 0.5 * np.bincount(ends, out[other], n) / np.maximum(deg, 1.0)
    return out


def _random_fields(p: np.ndarray, rng: np.random.Generator, centres: np.ndarray,
                   widths: tuple[float, float], bumps: int, count: int) -> np.ndarray:
    """``count`` smooth random fields, each a sum of ``bumps`` Gaussian bumps with random vector
    amplitudes.

    Returns:
        ``(V, 3, count)``.
    """
    idx = rng.integers(0, len(centres), size=(count, bumps))
    sigma = rng.uniform(*widths, size=(count, bumps))
    amp = rng.normal(size=(count, bumps, 3))
    out = np.empty((len(p), 3, count))
    sq = (p * p).sum(axis=1)
    chunk = 32
    for s in range(0, count, chunk):
        c = centres[idx[s:s + chunk]].reshape(-1, 3)
        d2 = sq[:, None] + (c * c).sum(axis=1)[None] - 2.0 * p @ c.T
        g = np.exp(-np.maximum(d2, 0.0) / sigma[s:s + chunk].reshape(-1)[None] ** 2)
        g = g.reshape(len(p), -1, bumps).transpose(1, 0, 2)  # (k, V, bumps)
        out[:, :, s:s + chunk] = np.matmul(g, amp[s:s + chunk]).transpose(1, 2, 0)
    return out


def shape_directions(vertices: np.ndarray, normals: np.ndarray, edges: np.ndarray,
                     weights: np.ndarray, joints: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Body shape basis.

    Args:
        vertices: ``(V, 3)`` rest vertices.
        normals: ``(V, 3)`` unit vertex normals.
        edges: ``(E, 2)`` mesh edges (to smooth the local limb radius).
        weights: ``(V, 55)`` skin weights.
        joints: ``(55, 3)`` rest joints.
        rng: random generator (consumed).

    Returns:
        ``(V, 3, 300)`` float64, m per unit coefficient, RMS decreasing with the index.
    """
    p = vertices
    x, y, z = p.T
    sx = np.sign(x)
    pelvis = joints[JOINT_INDEX["pelvis"]]
    head_w = _sum_w(weights, ["head"])
    legs = _sum_w(weights, ["left_hip", "right_hip"])
    arms = _sum_w(weights, ["left_shoulder", "right_shoulder"])
    arms_c = arms + 0.5 * weights[:, [JOINT_INDEX["left_collar"], JOINT_INDEX["right_collar"]]].sum(1)
    torso = 1.0 - legs - arms - head_w
    eyes = weights[:, list(_FACE_KIDS[1:])].sum(axis=1)
    # girth changes are proportional to the local limb radius (fingers barely change), spare the
    # face and the eyes
    radius = _smooth_scalar(_bone_distance(p, weights, joints), edges, GIRTH_SMOOTHING)
    girth = np.clip(radius, 0.0, 0.15) * (1.0 - 0.85 * head_w) * (1.0 - eyes)

    def vec(dx=0.0, dy=0.0, dz=0.0):
        return np.stack(np.broadcast_arrays(dx, dy, dz), axis=1).astype(np.float64)

    named = [
        # stature: vertical stretch about the pelvis, slight widening
        vec(0.06 * x, y - pelvis[1], 0.06 * (z - pelvis[2])),
        # weight: girth along the normals, most on the trunk
        normals * (girth * (1.0 + 0.3 * torso + 0.6 * _gauss(p, (0, -0.17, 0.08),
                                                             (0.16, 0.12, 0.1))))[:, None],
        # shoulder width: arms and the outer shoulders move sideways
        vec(sx * arms_c),
        # leg length: legs move down
        vec(dy=-legs),
        # hip width
        vec(sx * (legs + _gauss(p, (0, -0.42, 0), (0.2, 0.08, 0.3)) * np.abs(x) / 0.15)),
        # torso length: everything above the waist moves up
        vec(dy=_sum_w(weights, ["spine2"])),
        # head size
        (p - joints[JOINT_INDEX["head"]] - np.array([0, 0.04, 0.0])) * head_w[:, None],
        # arm length: forearms and hands move outwards
        vec(sx * _sum_w(weights, ["left_elbow", "right_elbow"])),
        # belly
        vec(dz=_gauss(p, (0, -0.17, 0.1), (0.12, 0.1, 0.08))),
        # chest
        vec(dz=_gauss(p, (0.07, 0.0, 0.1), (0.06, 0.06, 0.06))
            + _gauss(p, (-0.07, 0.0, 0.1), (0.06, 0.06, 0.06))),
        # neck length: the head moves up
        vec(dy=head_w),
        # thigh girth
        normals * (girth * weights[:, [JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]]].sum(1)
                   )[:, None],
        # calf girth
        normals * (girth * weights[:, [JOINT_INDEX["left_knee"], JOINT_INDEX["right_knee"]]].sum(1)
                   )[:, None],
        # arm girth
        normals * (girth * (_sum_w(weights, ["left_shoulder", "right_shoulder"])
                            - _sum_w(weights, ["left_wrist", "right_wrist"])))[:, None],
        # buttocks
        vec(dz=-(_gauss(p, (0.07, -0.43, -0.1), (0.07, 0.08, 0.06))
                 + _gauss(p, (-0.07, -0.43, -0.1), (0.07, 0.08, 0.06)))),
        # foot size: feet scale about the ankles
        sum((p - joints[JOINT_INDEX[f"{s}_ankle"]]) * _sum_w(weights, [f"{s}_ankle"])[:, None]
             for s in ("left", "right")),
        # hand size: hands scale about the wrists
        sum((p - joints[JOINT_INDEX[f"{s}_wrist"]]) * _sum_w(weights, [f"{s}_wrist"])[:, None]
             for s in ("left", "right")),
        # shoulder slope
        vec(dy=arms_c - 0.5 * arms),
    ]
    centres = p[rng.permutation(len(p))[:512]]
    fields = np.concatenate([np.stack(named, axis=2), _random_fields(
        p, rng, centres, (0.08, 0.3), bumps=5, count=NUM_SHAPE - len(named))], axis=2)
    rms = np.sqrt((fields ** 2).sum(axis=1).mean(axis=0))
    target = SHAPE_RMS * (np.arange(NUM_SHAPE) + 1.0) ** -SHAPE_DECAY
    return fields * (target / rms)[None, None, :]


def face_mask(vertices: np.ndarray, weights: np.ndarray, layout: FaceLayout) -> np.ndarray:
    """Smooth ``(V,)`` weight in [0, 1]: 1 on the face, 0 behind the ears and below the chin."""
    x, y, z = vertices.T
    head = _sum_w(weights, ["head"]) - weights[:, [JOINT_INDEX["left_eye_smplhf"],
                                                   JOINT_INDEX["right_eye_smplhf"]]].sum(1)
    front = smoothstep((z - 0.0) / 0.05)
    height = smoothstep((layout.brow_y + 0.035 - y) / 0.03) * smoothstep((y - 0.15) / 0.02)
    return np.clip(head, 0, 1) * front * height


def expression_directions(vertices: np.ndarray, normals: np.ndarray, weights: np.ndarray,
                          layout: FaceLayout, rng: np.random.Generator) -> np.ndarray:
    """Expression basis, local to the face.

    Returns:
        ``(V, 3, 100)`` float64, m per unit coefficient, zero away from the face.
    """
    p = vertices
    x = p[:, 0]
    m = face_mask(vertices, weights, layout)
    jaw = weights[:, JOINT_INDEX["jaw"]] * m
    my, mw = layout.mouth_y, layout.mouth_half_width
    eye_l, eye_r = layout.eye_left, layout.eye_right
    zf = layout.eye_left[2] + 0.015
    corner_l = _gauss(p, (mw, my, zf), (0.012, 0.01, 0.03))
    corner_r = _gauss(p, (-mw, my, zf), (0.012, 0.01, 0.03))
    lips = _gauss(p, (0, my, zf), (0.025, 0.012, 0.04))
    upper = lips * smoothstep((p[:, 1] - my) / 0.002)
    lower = lips * smoothstep((my - p[:, 1]) / 0.002)
    # the eyelid rims stay put under brow motion (they hug the eyeballs)
    lids_fixed = 1.0 - sum(_gauss(p, e, (0.017, 0.009, 0.03)) for e in (eye_l, eye_r))
    brows = (_gauss(p, (eye_l[0], layout.brow_y, zf), (0.022, 0.012, 0.04)) + _gauss(
        p, (eye_r[0], layout.brow_y, zf), (0.022, 0.012, 0.04))) * lids_fixed
    inner_brows = _gauss(p, (0, layout.brow_y - 0.004, zf), (0.022, 0.01, 0.04)) * lids_fixed
    towards_mid = -np.tanh(x / 0.012)  # smooth sign: no crossing at the midline
    cheeks = _gauss(p, (0.042, 0.235, zf), (0.018, 0.018, 0.05)) + _gauss(
        p, (-0.042, 0.235, zf), (0.018, 0.018, 0.05))
    lids_up = sum(_gauss(p, (e[0], e[1] + 0.007, e[2] + 0.012), (0.014, 0.005, 0.01))
                  for e in (eye_l, eye_r))
    lids_dn = sum(_gauss(p, (e[0], e[1] - 0.007, e[2] + 0.012), (0.014, 0.005, 0.01))
                  for e in (eye_l, eye_r))
    nose = _gauss(p, (0, layout.nose_base_y + 0.01, zf + 0.01), (0.016, 0.012, 0.04))

    def vec(dx=0.0, dy=0.0, dz=0.0):
        return np.stack(np.broadcast_arrays(dx, dy, dz), axis=1).astype(np.float64)

    named = [
        vec(dy=-jaw, dz=-0.25 * jaw),  # mouth open
        vec(np.sign(x) * 0.5 * (corner_l + corner_r), 0.8 * (corner_l + corner_r),
            -0.3 * (corner_l + corner_r)),  # smile
        vec(dy=brows),  # brows up
        vec(0.6 * towards_mid * inner_brows, -0.6 * inner_brows, 0.2 * inner_brows),  # frown
        vec(0.4 * towards_mid * lips, 0.0, 0.8 * lips),  # pucker
        vec(np.sign(x) * (corner_l + corner_r), dz=-0.2 * (corner_l + corner_r)),  # wide
        normals * cheeks[:, None],  # cheeks puffed
        vec(dy=-lids_up, dz=0.2 * lids_up),  # blink
        vec(dy=upper, dz=0.3 * upper),  # upper lip up
        vec(dy=-lower, dz=0.2 * lower),  # lower lip down
        vec(dy=nose, dz=-0.3 * nose),  # nose wrinkle
        vec(dx=jaw),  # jaw sideways
        vec(0.5 * corner_l, 0.8 * corner_l, -0.3 * corner_l),  # left half smile
        vec(-0.5 * corner_r, 0.8 * corner_r, -0.3 * corner_r),  # right half smile
        vec(dy=lids_dn, dz=0.2 * lids_dn),  # squint
        vec(dz=-lips),  # lips pressed
    ]
    centres = p[m > 0.5]
    fields = np.concatenate([np.stack(named, axis=2), _random_fields(
        p, rng, centres, (0.008, 0.025), bumps=3, count=NUM_EXPRESSION - len(named))], axis=2)
    fields *= m[:, None, None]
    peak = np.linalg.norm(fields, axis=1).max(axis=0)
    target = EXPR_PEAK * (np.arange(NUM_EXPRESSION) + 1.0) ** -EXPR_DECAY
    return fields * (target / peak)[None, None, :]


def pose_directions(vertices: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Pose-corrective basis.

    Column ``9 (j - 1) + 3 r + s`` is the displacement per unit of entry ``(r, s)`` of
    ``R_j - I`` (the layout ``smplx.lbs`` uses).

    Returns:
        ``(V, 3, 486)`` float64, m; zero outside the blend regions.
    """
    n = len(vertices)
    out = np.zeros((n, 3, (NUM_JOINTS - 1) * 9))
    eye = np.eye(3)
    for j in range(1, NUM_JOINTS):
        p = SMPLX_PARENTS[j]
        g = np.minimum(1.0, 4.0 * weights[:, j] * weights[:, p])
        sel = np.flatnonzero(g > 0)
        if len(sel) == 0:
            continue
        kids = [c for c, q in enumerate(SMPLX_PARENTS) if q == j]
        axis = (joints[kids].mean(0) if kids else joints[j]) - joints[p]
        axis /= max(np.linalg.norm(axis), 1e-9)
        rel = vertices[sel] - joints[j]
        radial = rel - (rel @ axis)[:, None] * axis[None]
        dist = np.linalg.norm(radial, axis=1)
        radial /= np.maximum(dist, 1e-9)[:, None]
        radius = float(np.median(dist))
        gs = g[sel][:, None]
        block = np.zeros((len(sel), 3, 9))
        for r in range(3):
            for s in range(3):
                col = -0.5 * BULGE_FRACTION * radius * radial * eye[r, s]
                col = col + ROTATION_SHARE * eye[:, r][None] * rel[:, s:s + 1]
                block[:, :, 3 * r + s] = gs * col
        out[sel, :, 9 * (j - 1): 9 * j] = block
    return out


def _orthonormal_columns(a: np.ndarray) -> np.ndarray:
    """Modified Gram-Schmidt, twice, on the columns of ``(N, N)`` ``a``: orthonormal columns
    spanning the same nested subspaces. Elementwise numpy only (no LAPACK), so the result has the
    same bits on every machine and thread count."""
    q = np.array(a, dtype=np.float64)
    for _ in range(2):
        for i in range(q.shape[1]):
            q[:, i] /= np.sqrt((q[:, i] * q[:, i]).sum())
            proj = (q[:, i:i + 1] * q[:, i + 1:]).sum(axis=0)
            q[:, i + 1:] -= q[:, i:i + 1] * proj[None]
    return q


def hand_pca(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hand pose PCA in the MANO layout (15 joints x axis-angle).

    Returns:
        ``(components_left (45, 45), components_right (45, 45), mean_left (45,),
        mean_right (45,))``; components are orthonormal rows, the first one a fist-closing
        flexion of all fingers.
    """
    flex = np.zeros((15, 3))
    flex[:12, 2] = -1.0  # fingers (index, middle, pinky, ring) curl about -z on the left hand
    flex[12:, 1] = -0.6  # thumb folds across the palm
    flex[12:, 2] = -0.4
    a = rng.normal(size=(45, 45))
    a[:, 0] = flex.reshape(-1)
    comp_l = _orthonormal_columns(a).T
    if comp_l[0] @ flex.reshape(-1) < 0:
        comp_l[0] *= -1.0
    mirror = np.tile(np.array([1.0, -1.0, -1.0]), 15)  # reflect axis-angles in the x = 0 plane
    comp_r = comp_l * mirror[None]
    mean_l = HAND_MEAN_FLEX * flex.reshape(-1)
    return comp_l, comp_r, mean_l, mean_l * mirror
