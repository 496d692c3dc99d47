"""Synthetic result files and model packages for tests (numpy only, no torch, no licensed data).

Writes files exactly as ``docs/result-format.md`` (format v1) describes, independently of the
backend's writer: a model package from an SMPL-X-format body model, and a result file whose
``vertices`` come from this module's own numpy linear blend skinning (:func:`lbs`, cross-checked
against ``smplx.lbs.lbs`` in ``tests/addon_io/test_fake_result.py``).

Body models: :func:`load_body_model` uses the synthetic mannequin of
``pixie_backend.synthetic.mannequin`` (``"full"``: 10,475 vertices; ``"small"``) when it is
available, and otherwise :func:`toy_body_model` (one octahedron per joint for "small"; UV
spheres with SMPL-X's 10,475 vertices for "full").

    from tests.support.fake_result import make_fixture
    fx = make_fixture(tmp_path, variant="small", num_persons=2, seed=3)
    fx.result_path, fx.package_path, fx.image_path
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import importlib.util
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

from pixie_blender.io.constants import JOINT_NAMES  # noqa: E402  (pure Python, no bpy)
from pixie_blender.io.constants import PARENTS as _PARENTS  # noqa: E402

PARENTS = np.array(_PARENTS)
NUM_BETAS, NUM_EXPR, EXPR_OFFSET = 200, 50, 300
HASH_ORDER = (
    "v_template",
    "faces",
    "uv_coords",
    "uv_faces",
    "weights",
    "parents",
    "shapedirs",
    "exprdirs",
    "posedirs",
    "joints_template",
    "joints_shapedirs",
    "joints_exprdirs",
)


# --------------------------------------------------------------------------------------------
# body models


def _toy_joints() -> np.ndarray:
    """Plausible y-up rest joints (metres) for the 55 SMPL-X joints."""
    j = {
        "pelvis": (0.0, 0.0, 0.0),
        "left_hip": (0.06, -0.09, 0.0),
        "right_hip": (-0.06, -0.09, 0.0),
        "spine1": (0.0, 0.11, -0.01),
        "left_knee": (0.1, -0.47, 0.0),
        "right_knee": (-0.1, -0.47, 0.0),
        "spine2": (0.0, 0.24, 0.0),
        "left_ankle": (0.09, -0.87, -0.04),
        "right_ankle": (-0.09, -0.87, -0.04),
        "spine3": (0.0, 0.3, 0.02),
        "left_foot": (0.11, -0.93, 0.09),
        "right_foot": (-0.11, -0.93, 0.09),
        "neck": (0.0, 0.51, 0.0),
        "left_collar": (0.07, 0.42, 0.0),
        "right_collar": (-0.07, 0.42, 0.0),
        "head": (0.0, 0.6, 0.03),
        "left_shoulder": (0.17, 0.44, -0.01),
        "right_shoulder": (-0.17, 0.44, -0.01),
        "left_elbow": (0.43, 0.43, -0.02),
        "right_elbow": (-0.43, 0.43, -0.02),
        "left_wrist": (0.68, 0.44, -0.01),
        "right_wrist": (-0.68, 0.44, -0.01),
        "jaw": (0.0, 0.62, 0.05),
        "left_eye_smplhf": (0.03, 0.68, 0.09),
        "right_eye_smplhf": (-0.03, 0.68, 0.09),
    }
    out = np.zeros((55, 3))
    for i, n in enumerate(JOINT_NAMES[:25]):
        out[i] = j[n]
    fingers = ("index", "middle", "pinky", "ring", "thumb")
    z_off = {"index": 0.025, "middle": 0.005, "pinky": -0.035, "ring": -0.015, "thumb": 0.04}
    for side, sgn, wrist in (("left", 1.0, 20), ("right", -1.0, 21)):
        for f in fingers:
            base = out[wrist] + np.array([sgn * (0.09 if f != "thumb" else 0.03), -0.01, z_off[f]])
            for k in range(3):
                idx = JOINT_NAMES.index(f"{side}_{f}{k + 1}")
                out[idx] = base + np.array([sgn * 0.025 * k, 0.0, 0.0])
    return out


def _uv_sphere(rings: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit UV sphere: 2 poles + rings × segments vertices, 2·segments·rings triangles."""
    th = np.linspace(0, np.pi, rings + 2)[1:-1]
    ph = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    T, Pp = np.meshgrid(th, ph, indexing="ij")
    ring = np.stack([np.sin(T) * np.cos(Pp), np.cos(T), np.sin(T) * np.sin(Pp)], -1).reshape(-1, 3)
    v = np.concatenate([[[0.0, 1.0, 0.0]], ring, [[0.0, -1.0, 0.0]]])
    faces = []
    top, bottom = 0, 1 + rings * segments
    idx = lambda r, k: 1 + r * segments + (k % segments)  # noqa: E731
    for k in range(segments):
        faces.append([top, idx(0, k + 1), idx(0, k)])
        faces.append([bottom, idx(rings - 1, k), idx(rings - 1, k + 1)])
        for r in range(rings - 1):
            a, b, c, d = idx(r, k), idx(r, k + 1), idx(r + 1, k), idx(r + 1, k + 1)
            faces += [[a, b, d], [a, d, c]]
    return v, np.array(faces)


def toy_body_model(seed: int = 0, dense: bool = False) -> SimpleNamespace:
    """A stand-in SMPL-X-format body: a blob around each joint, with the arrays of
    ``SMPLX_NEUTRAL_2020.npz`` (v_template, f, shapedirs (V,3,400), posedirs (V,3,486),
    J_regressor, weights, kintree_table) and UVs (vt, ft).

    ``dense=False``: one octahedron per joint (330 vertices). ``dense=True``: UV spheres with
    exactly SMPL-X's 10,475 vertices (≈20.7k triangles) and up to 4 weights per vertex, for
    timing when the synthetic mannequin is not available."""
    rng = np.random.default_rng(seed)
    J = _toy_joints()
    if dense:
        shapes = [_uv_sphere(3, 89)] + [_uv_sphere(11, 17)] * 54  # 269 + 54·189 = 10475
    else:
        octa = (
            np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float),
            np.array(
                [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
            ),
        )
        shapes = [octa] * 55
    verts, faces, owner = [], [], []
    n = 0
    for k, (sv, sf) in enumerate(shapes):
        r = 0.012 if k >= 25 else 0.04
        verts.append(J[k] + r * sv)
        faces.append(sf + n)
        owner.append(np.full(len(sv), k))
        n += len(sv)
    v = np.concatenate(verts)
    faces = np.concatenate(faces).astype(np.int64)
    owner = np.concatenate(owner)
    V = len(v)
    weights = np.zeros((V, 55))
    for k in range(55):
        sel = owner == k
        chain = [k]
        while len(chain) < (4 if dense else 2) and PARENTS[chain[-1]] >= 0:
            chain.append(int(PARENTS[chain[-1]]))
        w = np.array([0.7, 0.3, 0.2, 0.1][: len(chain)])
        if dense:  # vary the weights per vertex
            w = w[None, :] * rng.uniform(0.5, 1.5, size=(int(sel.sum()), len(chain)))
            w /= w.sum(axis=1, keepdims=True)
            weights[np.ix_(np.flatnonzero(sel), chain)] = w
        else:
            weights[np.ix_(np.flatnonzero(sel), chain)] = w / w.sum()
    J_reg = np.zeros((55, V))
    for k in range(55):
        J_reg[k, owner == k] = 1.0 / np.count_nonzero(owner == k)
    # blend shapes that move each blob coherently with its joint, plus a little noise
    joint_dirs = rng.normal(size=(55, 3, 400)) * (0.01 / (1.0 + np.arange(400) / 10.0))
    shapedirs = joint_dirs[owner].astype(np.float32)
    shapedirs += rng.normal(scale=0.001, size=shapedirs.shape).astype(np.float32)
    shapedirs[:, :, EXPR_OFFSET:] *= 0.3
    posedirs = rng.normal(scale=0.002, size=(V, 3, 486)).astype(np.float32)
    vt = rng.uniform(0.02, 0.98, size=(V + 7, 2))
    ft = (faces + 3) % (V + 7)
    return SimpleNamespace(
        v_template=v.astype(np.float32),
        f=faces.astype(np.uint32),
        shapedirs=shapedirs,
        posedirs=posedirs,
        J_regressor=J_reg.astype(np.float32),
        weights=weights.astype(np.float32),
        kintree_table=np.stack([PARENTS, np.arange(55)]).astype(np.int64),
        vt=vt.astype(np.float32),
        ft=ft.astype(np.int64),
        name="toy-dense" if dense else "toy",
    )


def _import_mannequin():
    """The mannequin generator (numpy only; installed without dependencies in ``.venv-bpy42``), or None."""
    try:
        return importlib.import_module("pixie_backend.synthetic.mannequin")
    except ImportError:
        return None


_BODY_CACHE: dict[tuple[str, int], Any] = {}


def _import_face_assets():
    """``pixie_backend.synthetic.face_assets`` (numpy only) next to the mannequin, or None."""
    if _import_mannequin() is None:
        return None
    try:
        return importlib.import_module("pixie_backend.synthetic.face_assets")
    except ImportError:
        return None


def face_detail_maps(body, size: int = 256, amplitude: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """A facial displacement (size, size) float32 metres, in the body's UV layout and only inside
    the synthetic face mask (horizontal "wrinkles" in FLAME UV, copied texel by texel like
    upstream's ``texture_flame2smplx``), and a matching tangent-space normal map (size, size, 3)
    uint8 (finite differences in UV, one UV unit taken as 0.25 m). Row 0 = top (v = 1)."""
    fa = _import_face_assets()
    if fa is None or getattr(body, "vt", None) is None:
        raise RuntimeError("face detail maps need the synthetic mannequin (pixie_backend.synthetic)")
    cached = fa.texel_map(body, size)
    ids = cached["target_pixel_ids"]
    rows, cols = cached["y_coords"][ids].astype(int), cached["x_coords"][ids].astype(int)
    uv = cached["source_uv_points"]
    face, _ = fa.face_masks(body)
    n = face.shape[0]
    v = 1.0 - (np.arange(n) + 0.5) / n
    pattern = amplitude * np.sin(2 * np.pi * 14 * v)[:, None] * face
    src_r = np.clip(n * (1 - uv[:, 1]), 0, n - 1).astype(int)
    src_c = np.clip(n * uv[:, 0], 0, n - 1).astype(int)
    disp = np.zeros((size, size), np.float32)
    disp[rows, cols] = pattern[src_r, src_c]
    du = np.gradient(disp, axis=1) * size / 0.25
    dv = -np.gradient(disp, axis=0) * size / 0.25
    nrm = np.stack([-du, -dv, np.ones_like(du)], axis=-1)
    nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True)
    return disp, np.round((nrm * 0.5 + 0.5) * 255).astype(np.uint8)


def load_body_model(variant: str = "small", seed: int = 0):
    """The synthetic mannequin when available (``variant`` "full" or "small"), else the toy body."""
    key = (variant, seed)
    if key not in _BODY_CACHE:
        mod = _import_mannequin()
        if mod is not None:
            body = mod.build_body_model(variant, seed=seed)
        else:
            body = toy_body_model(seed, dense=variant == "full")
        _BODY_CACHE[key] = body
    return _BODY_CACHE[key]


# --------------------------------------------------------------------------------------------
# model package


def package_arrays(body, *, with_uv: bool = True) -> dict[str, np.ndarray]:
    """The arrays of a model package, derived from an SMPL-X-format body model."""
    v = np.asarray(body.v_template, dtype=np.float32)
    sd = np.asarray(body.shapedirs, dtype=np.float32)
    J_reg = np.asarray(body.J_regressor, dtype=np.float64)
    shapedirs = sd[:, :, :NUM_BETAS]
    exprdirs = sd[:, :, EXPR_OFFSET : EXPR_OFFSET + NUM_EXPR]
    arrays = {
        "v_template": v,
        "faces": np.asarray(body.f).astype(np.int32),
        "weights": np.asarray(body.weights, dtype=np.float32),
        "parents": np.asarray(body.kintree_table)[0].astype(np.int32),
        "shapedirs": np.ascontiguousarray(shapedirs),
        "exprdirs": np.ascontiguousarray(exprdirs),
        "posedirs": np.asarray(body.posedirs, dtype=np.float32),
        "joints_template": (J_reg @ v.astype(np.float64)).astype(np.float32),
        "joints_shapedirs": np.einsum("jv,vdk->jdk", J_reg, shapedirs.astype(np.float64)).astype(np.float32),
        "joints_exprdirs": np.einsum("jv,vdk->jdk", J_reg, exprdirs.astype(np.float64)).astype(np.float32),
    }
    arrays["parents"][0] = -1
    if with_uv and getattr(body, "vt", None) is not None:
        arrays["uv_coords"] = np.asarray(body.vt, dtype=np.float32)
        arrays["uv_faces"] = np.asarray(body.ft).astype(np.int32)
    return arrays


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    """The package content hash of docs/result-format.md (independent of pixie_blender.io)."""
    h = hashlib.sha256()
    for name in HASH_ORDER:
        if name in arrays:
            a = np.ascontiguousarray(arrays[name])
            le = a.astype(a.dtype.newbyteorder("<"), copy=False)
            h.update(f"{name}|{le.dtype.str}|{tuple(le.shape)}".encode())
            h.update(le.tobytes())
    return h.hexdigest()


def write_package(
    arrays: dict[str, np.ndarray],
    out_dir: Path,
    *,
    synthetic: bool = True,
    compress: bool = False,
    header_overrides: dict | None = None,
) -> Path:
    sha = content_sha256(arrays)
    header = {
        "format": "pixie-smplx-package",
        "version": 1,
        "content_sha256": sha,
        "smplx_sha256": hashlib.sha256(b"synthetic-smplx").hexdigest(),
        "synthetic": synthetic,
        "joint_names": list(JOINT_NAMES),
        "num_vertices": int(arrays["v_template"].shape[0]),
        "uv_source": "smplx_tex.obj" if "uv_coords" in arrays else None,
    }
    header.update(header_overrides or {})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"smplx_package_{sha[:12]}.npz"
    save = np.savez_compressed if compress else np.savez
    save(path, header=np.array(json.dumps(header)), **arrays)
    return path


# --------------------------------------------------------------------------------------------
# posing (independent numpy implementation of the doc's posing equation)


def axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    aa = np.asarray(aa, dtype=np.float64)
    theta = np.linalg.norm(aa, axis=-1, keepdims=True)
    k = aa / np.maximum(theta, 1e-12)
    K = np.zeros(aa.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2] = -k[..., 2], k[..., 1]
    K[..., 1, 0], K[..., 1, 2] = k[..., 2], -k[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -k[..., 1], k[..., 0]
    t = theta[..., None]
    return np.eye(3) + np.sin(t) * K + (1 - np.cos(t)) * (K @ K)


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    cos = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    theta = np.arccos(cos)
    v = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    s = np.sin(theta)[..., None]
    return np.where(s > 1e-8, v * theta[..., None] / np.maximum(2 * s, 1e-12), v / 2)


def lbs(
    v_shaped: np.ndarray,
    J: np.ndarray,
    rotations: np.ndarray,
    parents: np.ndarray,
    weights: np.ndarray,
    posedirs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear blend skinning of ``v_shaped + posedirs·(R − I)`` about rest joints ``J``, root about
    ``J[0]``, no translation. Returns (posed vertices, posed joints, pose correctives), float64."""
    R = np.asarray(rotations, dtype=np.float64)
    feat = (R[1:] - np.eye(3)).reshape(-1)
    correctives = np.asarray(posedirs, dtype=np.float64) @ feat
    n = len(parents)
    G = np.zeros((n, 4, 4))
    for k in range(n):
        T = np.eye(4)
        T[:3, :3] = R[k]
        p = int(parents[k])
        T[:3, 3] = J[k] - (J[p] if p >= 0 else 0.0)
        G[k] = T if p < 0 else G[p] @ T
    A = G.copy()
    A[:, :3, 3] -= np.einsum("kij,kj->ki", G[:, :3, :3], J)
    W = np.asarray(weights, dtype=np.float64)
    Tv = np.einsum("vk,kij->vij", W, A)
    vp = np.asarray(v_shaped, dtype=np.float64) + correctives
    verts = np.einsum("vij,vj->vi", Tv[:, :3, :3], vp) + Tv[:, :3, 3]
    return verts, G[:, :3, 3].copy(), correctives


def random_pose(rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """55 plausible relative rotations in the PIXIE frame (root ≈ 180° about X)."""
    aa = np.zeros((55, 3))
    aa[0] = rng.normal(scale=0.15 * scale, size=3)
    aa[1:22] = rng.normal(scale=0.25 * scale, size=(21, 3))
    aa[22] = [abs(rng.normal(scale=0.15 * scale)), 0.0, 0.0]  # jaw opens about x
    aa[25:] = rng.normal(scale=0.15 * scale, size=(30, 3))
    R = axis_angle_to_matrix(aa)
    R[0] = axis_angle_to_matrix(np.array([np.pi, 0.0, 0.0])) @ R[0]
    return R


@dataclass
class FakeFixture:
    result_path: Path
    package_path: Path
    image_path: Path | None
    package: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    header: dict[str, Any] = field(default_factory=dict)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 array as an 8-bit RGB PNG (zlib only)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)
    return Path(path)


def _test_image(width: int, height: int, points: list[np.ndarray]) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[..., 0] = 40 + (xx * 120 // max(width, 1))
    img[..., 1] = 60 + (yy * 100 // max(height, 1))
    img[..., 2] = 90
    for pts in points:  # mark the projected keypoints so a render shows the alignment
        for u, v in np.round(pts).astype(int):
            if 0 <= u < width and 0 <= v < height:
                img[max(v - 1, 0) : v + 2, max(u - 1, 0) : u + 2] = (255, 230, 40)
    return img


def make_fixture(
    out_dir: Path,
    *,
    variant: str = "small",
    num_persons: int = 1,
    seed: int = 0,
    image_size: tuple[int, int] = (640, 480),
    with_albedo: bool = False,
    with_displacement: bool | str = False,  # True: a pattern everywhere; "face": on the face only
    with_image: bool = True,
    with_uv: bool = True,
    compress: bool = False,
    stem: str = "photo",
    package_dir: Path | None = None,
    body=None,
    pose_scale: float = 1.0,
) -> FakeFixture:
    """Write ``<stem>.pixie.npz`` (+ its model package and, optionally, ``<stem>.png``) to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    body = body if body is not None else load_body_model(variant)
    pkg = package_arrays(body, with_uv=with_uv)
    package_path = write_package(pkg, package_dir or out_dir, compress=compress)
    sha = content_sha256(pkg)
    rng = np.random.default_rng(seed)
    W, H = image_size
    P = num_persons
    V = pkg["v_template"].shape[0]
    J_reg_rows = rng.choice(V, size=90, replace=V < 90)

    keys = (
        "betas",
        "expression",
        "full_pose",
        "vertices",
        "joints",
        "keypoints_2d",
        "joints_rest",
        "pose_correctives",
        "cam",
        "cam_image_px",
        "bbox",
        "crop_center",
        "crop_size",
        "crop_tform",
        "moderator_weights",
        "tex",
        "light",
    )
    per: dict[str, list] = {k: [] for k in keys}
    for i in range(P):
        betas = rng.normal(size=NUM_BETAS) * np.where(np.arange(NUM_BETAS) < 10, 1.0, 0.2)
        expr = rng.normal(scale=0.7, size=NUM_EXPR)
        R = random_pose(rng, pose_scale)
        v_shaped = (
            pkg["v_template"].astype(np.float64)
            + pkg["shapedirs"].astype(np.float64) @ betas
            + pkg["exprdirs"].astype(np.float64) @ expr
        )
        J = (
            pkg["joints_template"].astype(np.float64)
            + pkg["joints_shapedirs"].astype(np.float64) @ betas
            + pkg["joints_exprdirs"].astype(np.float64) @ expr
        )
        verts, pj, corr = lbs(v_shaped, J, R, pkg["parents"], pkg["weights"], pkg["posedirs"])
        joints = np.concatenate([pj, verts[J_reg_rows]], axis=0)  # 55 + 90 = 145 keypoints
        height_m = float(np.ptp(verts[:, 1])) or 1.0
        a = 0.6 * H / height_m * rng.uniform(0.8, 1.0)
        u0 = W * (i + 1) / (P + 1) + rng.uniform(-5, 5)
        v0 = H * 0.5 + rng.uniform(-5, 5)
        bx, by = u0 - a * J[0, 0], v0 - a * J[0, 1]
        uv = np.stack([a * verts[:, 0] + bx, a * verts[:, 1] + by], -1)
        x1, y1 = uv.min(0)
        x2, y2 = uv.max(0)
        L = int(1.1 * max(x2 - x1, y2 - y1))
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        s = 2 * a / L
        k = 223.0 / L
        per["betas"].append(betas)
        per["expression"].append(expr)
        per["full_pose"].append(R)
        per["vertices"].append(verts)
        per["joints"].append(joints)
        per["keypoints_2d"].append(np.stack([a * joints[:, 0] + bx, a * joints[:, 1] + by], -1))
        per["joints_rest"].append(J)
        per["pose_correctives"].append(corr)
        per["cam"].append([s, (bx - cx) / a, (by - cy) / a])
        per["cam_image_px"].append([a, bx, by])
        per["bbox"].append([x1, y1, x2, y2])
        per["crop_center"].append([cx, cy])
        per["crop_size"].append(L)
        per["crop_tform"].append([[k, 0, -(cx - L / 2) * k], [0, k, -(cy - L / 2) * k], [0, 0, 1]])
        mw = rng.uniform(0.1, 0.9, size=(3, 1))
        per["moderator_weights"].append(np.concatenate([mw, 1 - mw], axis=1))
        per["tex"].append(rng.normal(size=50))
        per["light"].append(rng.normal(scale=0.3, size=(9, 3)))

    arrays = {k: np.asarray(v) for k, v in per.items()}
    for k, v in list(arrays.items()):
        if v.dtype.kind == "f":
            arrays[k] = v.astype(np.float32)
    arrays["crop_size"] = arrays["crop_size"].astype(np.int32)
    fp = arrays["full_pose"]
    arrays["global_orient"] = fp[:, 0:1]
    arrays["body_pose"] = fp[:, 1:22]
    arrays["jaw_pose"] = fp[:, 22:23]
    arrays["leye_pose"] = fp[:, 23:24]
    arrays["reye_pose"] = fp[:, 24:25]
    arrays["left_hand_pose"] = fp[:, 25:40]
    arrays["right_hand_pose"] = fp[:, 40:55]
    aa = matrix_to_axis_angle(fp.astype(np.float64)).astype(np.float32)
    arrays["global_orient_aa"] = aa[:, 0]
    arrays["body_pose_aa"] = aa[:, 1:22].reshape(P, 63)
    arrays["jaw_pose_aa"] = aa[:, 22]
    arrays["leye_pose_aa"] = aa[:, 23]
    arrays["reye_pose_aa"] = aa[:, 24]
    arrays["left_hand_pose_aa"] = aa[:, 25:40].reshape(P, 45)
    arrays["right_hand_pose_aa"] = aa[:, 40:55].reshape(P, 45)
    arrays["transl"] = np.zeros((P, 3), np.float32)
    appearance: dict[str, Any] = {}
    if with_albedo:
        t = np.linspace(0, 1, 256, dtype=np.float32)
        alb = np.zeros((P, 256, 256, 3), np.uint8)
        for i in range(P):
            alb[i, ..., 0] = (200 * t[None, :]).astype(np.uint8) + 30
            alb[i, ..., 1] = (180 * t[:, None]).astype(np.uint8) + 40
            alb[i, ..., 2] = 90 + 40 * i
        arrays["albedo_uv"] = alb
        appearance["albedo_uv"] = {"colorspace": "sRGB", "uv": "smplx_tex"}
    version = 1
    if with_displacement == "face":  # on the face only, with the v2 extras, as the backend writes it
        d, nrm = face_detail_maps(body)
        version = 2
        arrays["displacement_uv"] = np.repeat(d[None], P, axis=0).astype(np.float16)
        arrays["normal_map_uv"] = np.repeat(nrm[None], P, axis=0)
        arrays["head_confidence"] = arrays["moderator_weights"][:, 0, 1].copy()
        arrays["detail_gate"] = np.ones(P, np.uint8)
        appearance["displacement_uv"] = {"units": "m", "along": "outward normal", "uv": "smplx_tex"}
        appearance["normal_map_uv"] = {"space": "tangent", "encoding": "n*0.5+0.5", "uv": "smplx_tex"}
        appearance["notices"] = []
    elif with_displacement:
        yy, xx = np.mgrid[0:128, 0:128]
        d = (0.002 * np.sin(xx / 6.0) * np.cos(yy / 9.0)).astype(np.float32)
        arrays["displacement_uv"] = np.repeat(d[None], P, axis=0)
        appearance["displacement_uv"] = {"units": "m", "uv": "smplx_tex"}

    image_path = None
    if with_image:
        image_path = write_png(
            out_dir / f"{stem}.png", _test_image(W, H, list(arrays["keypoints_2d"][:, :55]))
        )
    header = {
        "format": "pixie-result",
        "version": version,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "producer": {"name": "fake_result", "version": "0"},
        "synthetic": True,
        "source": {
            "path": f"{stem}.png",
            "name": stem,
            "width": W,
            "height": H,
            "sha256": hashlib.sha256(image_path.read_bytes()).hexdigest() if image_path else None,
        },
        "frame": None,
        "num_persons": P,
        "status": "ok",
        "model": {
            "checkpoint_sha256": hashlib.sha256(b"random-weights").hexdigest(),
            "smplx_sha256": hashlib.sha256(b"synthetic-smplx").hexdigest(),
            "package": {"file": package_path.name, "sha256": sha},
        },
        "joint_names": list(JOINT_NAMES),
        "conventions": {
            "frame": "pixie",
            "rotation": "matrix_column_vectors_relative",
            "units": "m",
            "hand_mean": "flat",
            "crop_convention": "pixie",
        },
        "settings": {"device": "cpu", "precision": "fp32"},
        "appearance": appearance,
    }
    result_path = out_dir / f"{stem}.pixie.npz"
    save = np.savez_compressed if compress else np.savez
    save(result_path, header=np.array(json.dumps(header)), **arrays)
    return FakeFixture(
        result_path=result_path,
        package_path=package_path,
        image_path=image_path,
        package=pkg,
        params=arrays,
        header=header,
    )


def rewrite_result(
    src: Path,
    dst: Path,
    *,
    header_update: dict | None = None,
    drop: tuple[str, ...] = (),
    replace: dict | None = None,
) -> Path:
    """Copy a result file with a modified header or arrays (bad-file tests)."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays.pop("header")[()]))
    for k, v in (header_update or {}).items():
        header[k] = v
    for k in drop:
        arrays.pop(k, None)
    arrays.update(replace or {})
    np.savez(dst, header=np.array(json.dumps(header)), **arrays)
    return Path(dst)
