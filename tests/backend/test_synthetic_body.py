"""The synthetic SMPL-X mannequin: arrays, rig, topology, and the official file formats."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import yaml
from pixie_backend.constants import (
    EXTRA_JOINT_NAMES,
    J14_NAMES,
    JOINT_INDEX,
    NUM_JOINTS,
    SMPLX_JOINT_NAMES,
    SMPLX_PARENTS,
)
from pixie_backend.synthetic import (
    NPZ_KEYS,
    BodyModel,
    build_body_model,
    read_obj,
    read_obj_uvs,
    write_body_assets,
)
from pixie_backend.synthetic.mannequin import ROOT_PARENT

FULL_V, FULL_F = 10475, 20908
EULER_DEFECT = 42  # 2V - F of the real model


@pytest.fixture(scope="module")
def small() -> BodyModel:
    return build_body_model("small")


@pytest.fixture(scope="module")
def full() -> BodyModel:
    return build_body_model("full")


def expected_shapes(v: int, f: int) -> dict[str, tuple[int, ...]]:
    return {
        "v_template": (v, 3), "f": (f, 3), "shapedirs": (v, 3, 400), "posedirs": (v, 3, 486),
        "J_regressor": (55, v), "weights": (v, 55), "kintree_table": (2, 55),
        "hands_componentsl": (45, 45), "hands_componentsr": (45, 45), "hands_meanl": (45,),
        "hands_meanr": (45,), "lmk_faces_idx": (51,), "lmk_bary_coords": (51, 3),
        "dynamic_lmk_faces_idx": (79, 17), "dynamic_lmk_bary_coords": (79, 17, 3),
    }


def check_arrays(m: BodyModel) -> None:
    v, f = len(m.v_template), len(m.f)
    arrays = m.npz_arrays()
    assert tuple(arrays) == NPZ_KEYS
    for key, shape in expected_shapes(v, f).items():
        assert arrays[key].shape == shape, key
    for key in ("f", "ft"):
        assert getattr(m, key).dtype == np.uint32, key
    for key in ("kintree_table", "lmk_faces_idx", "dynamic_lmk_faces_idx", "extra_joint_faces"):
        assert getattr(m, key).dtype == np.int64, key
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights",
                "lmk_bary_coords", "dynamic_lmk_bary_coords", "vt", "extra_joint_bary",
                "j14_regressor", "hands_componentsl", "hands_meanl"):
        assert getattr(m, key).dtype == np.float64, key
    assert m.vt.shape[1] == 2 and m.ft.shape == (f, 3) and len(m.vt) > v
    assert m.extra_joint_faces.shape == (22,) and m.extra_joint_bary.shape == (22, 3)
    assert m.j14_regressor.shape == (14, v)
    for a in arrays.values():
        assert np.isfinite(a).all()


def test_small_arrays(small):
    check_arrays(small)
    assert 800 <= len(small.v_template) <= 3000


def test_full_counts(full):
    assert full.v_template.shape == (FULL_V, 3)
    assert full.f.shape == (FULL_F, 3)
    assert 2 * FULL_V - FULL_F == EULER_DEFECT


@pytest.mark.slow
def test_full_arrays(full):
    check_arrays(full)


def test_determinism(small):
    again = build_body_model("small", seed=0)
    assert again == small
    other = build_body_model("small", seed=1)
    np.testing.assert_array_equal(other.v_template, small.v_template)
    assert not np.array_equal(other.shapedirs[..., 20:], small.shapedirs[..., 20:])


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant"):
        build_body_model("medium")


def test_kinematic_tree(small):
    kt = small.kintree_table
    assert kt[0, 0] == ROOT_PARENT
    np.testing.assert_array_equal(kt[0, 1:], SMPLX_PARENTS[1:])
    np.testing.assert_array_equal(kt[1], np.arange(NUM_JOINTS))


# ----------------------------------------------------------------------------------------------
# Topology


def edge_face_counts(f: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = f.reshape(-1).astype(np.int64), np.roll(f, -1, axis=1).reshape(-1).astype(np.int64)
    keys = np.minimum(a, b) * n + np.maximum(a, b)
    uniq, counts = np.unique(keys, return_counts=True)
    return np.stack([uniq // n, uniq % n], 1), counts


def components(n: int, edges: np.ndarray) -> np.ndarray:
    label = np.arange(n)
    while True:
        m = np.minimum(label[edges[:, 0]], label[edges[:, 1]])
        new = label.copy()
        np.minimum.at(new, edges[:, 0], m)
        np.minimum.at(new, edges[:, 1], m)
        new = new[new]
        if np.array_equal(new, label):
            return label
        label = new


@pytest.mark.parametrize("variant", ["small", "full"])
def test_mesh_closed_except_openings(variant, small, full):
    m = small if variant == "small" else full
    v, f = m.v_template, m.f.astype(np.int64)
    n = len(v)
    assert 2 * n - len(f) == EULER_DEFECT
    edges, counts = edge_face_counts(f, n)
    assert set(np.unique(counts)) <= {1, 2}
    # consistent orientation: every directed edge once
    directed = f.reshape(-1) * n + np.roll(f, -1, axis=1).reshape(-1)
    assert len(np.unique(directed)) == len(directed)
    # body + two eyeballs; borders: two eye openings and the mouth slit
    assert len(np.unique(components(n, edges))) == 3
    border = edges[counts == 1]
    loops = components(n, border)[np.unique(border)]
    assert len(np.unique(loops)) == 3
    # outward: positive enclosed volume, no degenerate triangles
    p = v[f]
    assert np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6.0 > 0.03
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    assert area.min() > 1e-9


def test_triangle_quality(full):
    p = full.v_template[full.f.astype(np.int64)]
    e = np.linalg.norm(p[:, [1, 2, 0]] - p, axis=2)
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    aspect = e.max(1) ** 2 / (2 * area)  # longest edge / its height; 1.15 equilateral
    assert np.median(aspect) < 3.0
    assert np.quantile(aspect, 0.99) < 8.0


# ----------------------------------------------------------------------------------------------
# Rig


def test_skin_weights(small):
    w = small.weights
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    assert ((w > 0).sum(1) <= 4).all()
    # eyeballs are rigid to their eye joints
    for name in ("left_eye_smplhf", "right_eye_smplhf"):
        j = JOINT_INDEX[name]
        ball = w[:, j] > 0
        assert ball.sum() >= 26
        np.testing.assert_array_equal(w[ball, j], 1.0)
    # every joint drives some vertex rigidly
    assert (w.max(0) > 0.99).all()


def test_joint_regressor(small):
    r = small.J_regressor
    assert (r >= 0).all()
    np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-12)
    assert ((r > 0).sum(1) <= 0.2 * r.shape[1]).all()
    np.testing.assert_allclose(r @ small.v_template, small.joints, atol=1e-9)


def inside(points: np.ndarray, v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Ray-parity inside test (ray towards +x with a slight tilt)."""
    d = np.array([1.0, 0.0123, 0.0071])
    p0, p1, p2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    e1, e2 = p1 - p0, p2 - p0
    h = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, h)
    out = []
    for o in points:
        s = o - p0
        u = np.einsum("ij,ij->i", s, h) / det
        q = np.cross(s, e1)
        vv = (q @ d) / det
        t = np.einsum("ij,ij->i", q, e2) / det
        out.append(((u >= 0) & (vv >= 0) & (u + vv <= 1) & (t > 0)).sum() % 2 == 1)
    return np.array(out)


def test_joints_plausible(small):
    j = small.joints
    v = small.v_template
    for i, name in enumerate(SMPLX_JOINT_NAMES):
        if name.startswith("left_"):
            assert j[i, 0] > 0, name
            np.testing.assert_allclose(j[JOINT_INDEX["right" + name[4:]]], j[i] * [-1, 1, 1],
                                       atol=1e-6)
    y = {n: j[JOINT_INDEX[n], 1] for n in SMPLX_JOINT_NAMES}
    assert y["head"] > y["neck"] > y["spine3"] > y["spine2"] > y["spine1"] > y["pelvis"]
    assert y["pelvis"] > y["left_hip"] > y["left_knee"] > y["left_ankle"] > y["left_foot"]
    assert min(y.values()) == pytest.approx(y["left_foot"])
    np.testing.assert_allclose(j[JOINT_INDEX["pelvis"]], (0.0, -0.35, 0.01), atol=0.02)
    height = v[:, 1].max() - v[:, 1].min()
    span = v[:, 0].max() - v[:, 0].min()
    assert 1.6 < height < 1.8
    assert 0.95 < span / height < 1.1
    for side, s in (("left", 1), ("right", -1)):
        wrist = j[JOINT_INDEX[f"{side}_wrist"], 0] * s
        for finger in ("index", "middle", "ring", "pinky", "thumb"):
            xs = [j[JOINT_INDEX[f"{side}_{finger}{k}"], 0] * s for k in (1, 2, 3)]
            assert wrist < xs[0] < xs[1] < xs[2], (side, finger)
    body = [i for i, n in enumerate(SMPLX_JOINT_NAMES) if "eye" not in n]
    assert inside(j[body], v, small.f.astype(np.int64)).all()


def test_j14_regressor(small):
    r = small.j14_regressor
    assert (r >= 0).all()
    np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-12)
    j14 = r @ small.v_template
    ref = small.joints[[JOINT_INDEX[n] for n in J14_NAMES]]
    d = np.linalg.norm(j14 - ref, axis=1)
    assert (d > 0.005).all() and (d < 0.12).all()


def test_surface_points(small):
    for faces, bary in ((small.lmk_faces_idx, small.lmk_bary_coords),
                        (small.dynamic_lmk_faces_idx, small.dynamic_lmk_bary_coords),
                        (small.extra_joint_faces, small.extra_joint_bary)):
        assert faces.min() >= 0 and faces.max() < len(small.f)
        assert (bary >= -1e-12).all()
        np.testing.assert_allclose(bary.sum(-1), 1.0, atol=1e-9)


def surface(m: BodyModel, faces: np.ndarray, bary: np.ndarray) -> np.ndarray:
    return np.einsum("...k,...kc->...c", bary, m.v_template[m.f.astype(np.int64)[faces]])


def test_landmarks_on_the_face(small):
    lmk = surface(small, small.lmk_faces_idx, small.lmk_bary_coords)
    eye = small.joints[JOINT_INDEX["left_eye_smplhf"]]
    assert (lmk[:, 2] > eye[2] - 0.005).all()
    assert (np.abs(lmk[:, 0]) < 0.07).all()
    # 68-point order: brows above eyes above nose tip above mouth
    brows, nose_tip, eyes, mouth = lmk[0:10], lmk[13], lmk[19:31], lmk[31:51]
    assert brows[:, 1].min() > eyes[:, 1].max() > nose_tip[1] > mouth[:, 1].max()
    assert lmk[0, 0] < 0 < lmk[9, 0]  # point 17 at the person's right (image left)
    contour = surface(small, small.dynamic_lmk_faces_idx, small.dynamic_lmk_bary_coords)
    front = contour[0]
    assert front[0, 0] < 0 < front[16, 0]
    assert abs(front[8, 0]) < 0.01 and front[8, 1] == pytest.approx(front[:, 1].min(), abs=0.01)
    # turning the head changes which triangles carry the contour
    assert not np.array_equal(small.dynamic_lmk_faces_idx[0], small.dynamic_lmk_faces_idx[39])
    assert not np.array_equal(small.dynamic_lmk_faces_idx[39], small.dynamic_lmk_faces_idx[78])


def test_extra_joints(small):
    p = dict(zip(EXTRA_JOINT_NAMES, surface(small, small.extra_joint_faces,
                                            small.extra_joint_bary), strict=True))
    j = {n: small.joints[i] for i, n in enumerate(SMPLX_JOINT_NAMES)}
    assert p["head_top"][1] > max(q[1] for k, q in p.items() if k != "head_top")
    assert p["nose"][2] > j["head"][2] + 0.08
    for side, s in (("left", 1), ("right", -1)):
        assert p[f"{side}_ear"][0] * s > 0.06
        assert p[f"{side}_eye"][2] > j[f"{side}_eye_smplhf"][2]
        assert p[f"{side}_heel"][2] < j[f"{side}_ankle"][2]
        assert p[f"{side}_big_toe"][2] > j[f"{side}_foot"][2]
        assert abs(p[f"{side}_big_toe"][0]) < abs(p[f"{side}_small_toe"][0])
        for finger in ("index", "middle", "ring", "pinky", "thumb"):
            tip, dip = p[f"{side}_{finger}"], j[f"{side}_{finger}3"]
            assert 0.012 < np.linalg.norm(tip - dip) < 0.035
            assert tip[0] * s > dip[0] * s


# ----------------------------------------------------------------------------------------------
# Blend shapes


def test_shape_and_expression_bases(small):
    sd = small.shapedirs
    rms = np.sqrt((sd[..., :300] ** 2).sum(1).mean(0))
    assert (np.diff(rms) <= 1e-12).all()
    peak = np.linalg.norm(sd[..., 300:], axis=1).max(0)
    assert (np.diff(peak) <= 1e-12).all()
    assert 0.005 < rms[0] < 0.03 and 0.003 < peak[0] < 0.02
    # +-2 on the first ten betas stays within centimetres
    assert np.abs(2 * sd[..., :10]).max() < 0.12
    # expressions only move the face
    moved = np.linalg.norm(sd[..., 300:], axis=1).max(1) > 0
    assert small.v_template[moved, 1].min() > 0.14
    assert (small.weights[moved][:, [JOINT_INDEX["head"], JOINT_INDEX["jaw"]]].sum(1) > 0).all()


def test_posedirs_local(small):
    pd = small.posedirs
    assert np.abs(pd).max() < 0.03
    knee = JOINT_INDEX["left_knee"]
    block = np.abs(pd[:, :, 9 * (knee - 1): 9 * knee]).max(axis=(1, 2))
    near = np.linalg.norm(small.v_template - small.joints[knee], axis=1) < 0.15
    assert block[~near].max() == 0.0 and block[near].max() > 1e-4
    eye = JOINT_INDEX["left_eye_smplhf"]
    assert not pd[:, :, 9 * (eye - 1): 9 * eye].any()


def test_hand_pca(small):
    for c in (small.hands_componentsl, small.hands_componentsr):
        np.testing.assert_allclose(c @ c.T, np.eye(45), atol=1e-10)


# ----------------------------------------------------------------------------------------------
# UVs


def check_uv_layout(m: BodyModel) -> None:
    vt, ft = m.vt, m.ft.astype(np.int64)
    assert vt.min() >= 0.0 and vt.max() <= 1.0
    uv = vt[ft]
    signed = 0.5 * ((uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1])
                    - (uv[:, 1, 1] - uv[:, 0, 1]) * (uv[:, 2, 0] - uv[:, 0, 0]))
    assert (signed > 0).all()  # no flipped triangles
    # no overlaps: sample a grid of points and count the triangles covering each
    res = 400
    cover = np.zeros((res, res), dtype=np.int32)
    lo = np.floor(uv.min(1) * res - 0.5).astype(int)
    hi = np.ceil(uv.max(1) * res - 0.5).astype(int)
    for t in range(len(ft)):
        xs = np.arange(max(lo[t, 0], 0), min(hi[t, 0], res - 1) + 1)
        ys = np.arange(max(lo[t, 1], 0), min(hi[t, 1], res - 1) + 1)
        if not len(xs) or not len(ys):
            continue
        gx, gy = np.meshgrid((xs + 0.5) / res, (ys + 0.5) / res, indexing="ij")
        a, b, c = uv[t]
        d1 = (b[0] - a[0]) * (gy - a[1]) - (b[1] - a[1]) * (gx - a[0])
        d2 = (c[0] - b[0]) * (gy - b[1]) - (c[1] - b[1]) * (gx - b[0])
        d3 = (a[0] - c[0]) * (gy - c[1]) - (a[1] - c[1]) * (gx - c[0])
        eps = 1e-12
        cover[np.ix_(xs, ys)] += ((d1 > eps) & (d2 > eps) & (d3 > eps)).astype(np.int32)
    assert cover.max() == 1
    assert (cover > 0).mean() > 0.25  # reasonably packed


def test_uv_layout(small):
    check_uv_layout(small)


@pytest.mark.slow
def test_uv_layout_full(full):
    check_uv_layout(full)


# ----------------------------------------------------------------------------------------------
# Files


def test_written_files_load_like_upstream(small, tmp_path):
    paths = write_body_assets(tmp_path, model=small)
    assert set(paths) == {"SMPLX_NEUTRAL_2020.npz", "smplx_extra_joints.yaml",
                          "SMPLX_to_J14.pkl", "smplx_tex.obj"}
    data = np.load(paths["SMPLX_NEUTRAL_2020.npz"], allow_pickle=True)
    assert set(data.files) == set(NPZ_KEYS)
    for key in NPZ_KEYS:
        np.testing.assert_array_equal(data[key], getattr(small, key))
        assert data[key].dtype == getattr(small, key).dtype
    with open(paths["smplx_extra_joints.yaml"]) as fh:
        extra = yaml.safe_load(fh)
    assert list(extra) == list(EXTRA_JOINT_NAMES)
    for i, name in enumerate(EXTRA_JOINT_NAMES):
        assert extra[name]["face"] == small.extra_joint_faces[i]
        np.testing.assert_allclose(extra[name]["bc"], small.extra_joint_bary[i], rtol=0, atol=0)
    with open(paths["SMPLX_to_J14.pkl"], "rb") as fh:
        j14 = pickle.load(fh, encoding="latin1")
    assert isinstance(j14, np.ndarray) and j14.shape == (14, len(small.v_template))
    np.testing.assert_array_equal(j14, small.j14_regressor)
    v, f, vt, ft = read_obj(paths["smplx_tex.obj"])
    np.testing.assert_allclose(v, small.v_template, atol=1e-7)
    np.testing.assert_array_equal(f, small.f)
    vt2, ft2 = read_obj_uvs(paths["smplx_tex.obj"])
    np.testing.assert_allclose(vt2, small.vt, atol=1e-7)
    np.testing.assert_array_equal(ft2, small.ft)


def test_read_obj_robust(tmp_path):
    text = """# a comment
mtllib x.mtl
o body
v 0 0 0
v 1 0 0
v 0 1 0
v 0 0 1
vn 0 0 1
vt 0 0
vt 1 0
vt 0 1 0
g part
usemtl skin
s 1
f 1/1/1 2/2/1 3/3/1
f -4/-3 -2/-1 -3/-2  # relative indices
"""
    path = tmp_path / "t.obj"
    path.write_text(text)
    vt, ft = read_obj_uvs(path)
    assert vt.shape == (3, 2)
    np.testing.assert_array_equal(ft, [[0, 1, 2], [0, 2, 1]])
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nvt 0 0\nf 1/1 2/1 4/1 3/1\n")
    with pytest.raises(ValueError, match="triangles"):
        read_obj_uvs(path)
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="no UV"):
        read_obj_uvs(path)


def smplx_forward(model: BodyModel, tmp_path, **params):
    torch = pytest.importorskip("torch")
    smplx = pytest.importorskip("smplx")
    paths = write_body_assets(tmp_path, model=model)
    layer = smplx.create(str(paths["SMPLX_NEUTRAL_2020.npz"]), model_type="smplx",
                         gender="neutral", ext="npz", use_pca=False, flat_hand_mean=True,
                         num_betas=200, num_expression_coeffs=50, use_face_contour=True)
    n = len(model.v_template)
    sel = layer.vertex_joint_selector
    if int(sel.extra_joints_idxs.max()) >= n:
        # smplx picks its extra joints by fixed vertex ids of the real mesh; point them at ours
        sel.extra_joints_idxs = torch.zeros_like(sel.extra_joints_idxs)
    with torch.no_grad():
        rest = layer()
        out = layer(**{k: torch.tensor(v, dtype=torch.float32)[None] for k, v in params.items()})
    return rest, out


def test_smplx_forward_small(small, tmp_path):
    body_pose = np.zeros(63)
    body_pose[3 * (JOINT_INDEX["left_elbow"] - 1) + 1] = -1.2
    body_pose[3 * (JOINT_INDEX["left_knee"] - 1)] = 1.0
    betas = np.zeros(200)
    betas[:3] = (1.5, -1.0, 0.5)
    expression = np.zeros(50)
    expression[0] = 2.0
    rest, out = smplx_forward(small, tmp_path, body_pose=body_pose, betas=betas,
                              expression=expression, jaw_pose=np.array([0.3, 0.0, 0.0]))
    n = len(small.v_template)
    assert tuple(out.vertices.shape) == (1, n, 3)
    np.testing.assert_allclose(rest.vertices[0].numpy(), small.v_template, atol=1e-5)
    np.testing.assert_allclose(rest.joints[0, :55].numpy(), small.joints, atol=1e-5)
    v = out.vertices[0].numpy()
    assert np.isfinite(v).all()
    # the bent left elbow moves the left hand, the right hand stays (up to shape)
    lw, rw = out.joints[0, JOINT_INDEX["left_wrist"]], out.joints[0, JOINT_INDEX["right_wrist"]]
    assert abs(float(lw[2]) - small.joints[JOINT_INDEX["left_wrist"], 2]) > 0.1
    assert abs(float(rw[2]) - small.joints[JOINT_INDEX["right_wrist"], 2]) < 0.05


@pytest.mark.slow
def test_smplx_forward_full(full, tmp_path):
    rest, out = smplx_forward(full, tmp_path, betas=np.ones(200) * 0.2)
    assert tuple(out.vertices.shape) == (1, FULL_V, 3)
    np.testing.assert_allclose(rest.vertices[0].numpy(), full.v_template, atol=1e-5)
