"""Writing result files (format v2) and model packages (v1), ``docs/result-format.md``.

The arrays and their shapes are declared once, in :mod:`.format_spec`; every file is checked against
that table before it is written. Everything is written atomically (:mod:`pixie_backend.atomic`), so
an interrupted run never leaves a half-written file under a final name.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from .. import constants as C
from ..atomic import atomic_write
from ..body.smplx_layer import PixieSMPLX
from ..geometry.camera import crop_to_image_points, image_ortho_camera, normalized_to_crop_pixels
from ..geometry.rotations import rotmat_to_axis_angle
from .format_spec import PACKAGE_ARRAYS, PACKAGE_HASH_ORDER, RESULT_ARRAYS, check_arrays

RESULT_FORMAT = "pixie-result"
PACKAGE_FORMAT = "pixie-smplx-package"
#: Result files. 2 adds the face appearance (lit and photo textures, the detail normal map, the
#: detail gate and head confidence, float16 displacement); a v2 reader reads v1 files.
FORMAT_VERSION = 2
#: Model packages (unchanged since 1).
PACKAGE_VERSION = 1
RESULT_SUFFIX = ".pixie.npz"

def atomic_savez(path: Path, arrays: dict[str, np.ndarray], compress: bool = False) -> None:
    """``np.savez`` through :func:`~pixie_backend.atomic.atomic_write`."""
    with atomic_write(path) as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)


def json_array(obj) -> np.ndarray:
    """A 0-d unicode array holding JSON (loads with ``allow_pickle=False``)."""
    return np.array(json.dumps(obj, sort_keys=True))


def content_hash(arrays: dict[str, np.ndarray], order: Iterable[str]) -> str:
    h = hashlib.sha256()
    for name in order:
        if name not in arrays:
            continue
        a = np.ascontiguousarray(arrays[name])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        h.update(f"{name}|{a.dtype.str}|{tuple(a.shape)}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class PackageRef:
    path: Path
    sha256: str


def package_arrays(smplx: PixieSMPLX, uvs: tuple[np.ndarray, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The model-package arrays derived from the loaded SMPL-X layer (+ optional UVs)."""
    f32 = np.float32
    v = smplx.num_vertices
    shapedirs = smplx.shapedirs.cpu().numpy().astype(f32)
    jreg = smplx.J_regressor.cpu().numpy().astype(np.float64)
    v_t = smplx.v_template.cpu().numpy().astype(f32)
    arrays = {
        "v_template": v_t,
        "faces": smplx.faces.cpu().numpy().astype(np.int32),
        "weights": smplx.lbs_weights.cpu().numpy().astype(f32),
        "parents": smplx.parents.cpu().numpy().astype(np.int32),
        "shapedirs": np.ascontiguousarray(shapedirs[:, :, : C.NUM_BETAS]),
        "exprdirs": np.ascontiguousarray(shapedirs[:, :, C.NUM_BETAS:]),
        "posedirs": np.ascontiguousarray(smplx.posedirs.cpu().numpy().T.reshape(v, 3, C.NUM_POSE_BASIS).astype(f32)),
        "joints_template": (jreg @ v_t.astype(np.float64)).astype(f32),
        "joints_shapedirs": np.einsum("jv,vkl->jkl", jreg, shapedirs[:, :, : C.NUM_BETAS]).astype(f32),
        "joints_exprdirs": np.einsum("jv,vkl->jkl", jreg, shapedirs[:, :, C.NUM_BETAS:]).astype(f32),
    }
    if uvs is not None:
        vt, ft = uvs
        if ft.shape != arrays["faces"].shape:
            raise ValueError(f"UV faces {ft.shape} do not match the model's triangles {arrays['faces'].shape}")
        arrays["uv_coords"] = np.asarray(vt, f32)
        arrays["uv_faces"] = np.asarray(ft, np.int32)
    return arrays


#: Content hash of the package of a loaded SMPL-X layer (+ UVs object), so that a long-lived
#: process (the service) computes the package only for the first output folder that lacks it.
_PACKAGE_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def write_package(out_dir: Path, smplx: PixieSMPLX, uvs: tuple[np.ndarray, np.ndarray] | None,
                  smplx_sha256: str | None, synthetic: bool) -> PackageRef:
    """Write ``smplx_package_<hash12>.npz`` into ``out_dir`` unless an identical one is there.

    The arrays and their hash are computed once per SMPL-X layer (and UV object); a folder that
    already holds the package (by name) costs a ``stat``.
    """
    known = _PACKAGE_DIGESTS.get(smplx)
    arrays = None
    if known is not None and known[0] is uvs:
        digest = known[1]
    else:
        arrays = package_arrays(smplx, uvs)
        check_arrays(arrays, PACKAGE_ARRAYS)
        digest = content_hash(arrays, PACKAGE_HASH_ORDER)
        _PACKAGE_DIGESTS[smplx] = (uvs, digest)
    path = out_dir / f"smplx_package_{digest[:12]}.npz"
    if not path.is_file():
        if arrays is None:
            arrays = package_arrays(smplx, uvs)
        header = {
            "format": PACKAGE_FORMAT, "version": PACKAGE_VERSION, "content_sha256": digest,
            "smplx_sha256": smplx_sha256, "synthetic": synthetic, "joint_names": list(C.SMPLX_JOINT_NAMES),
            "num_vertices": int(arrays["v_template"].shape[0]),
            "uv_source": "smplx_tex.obj" if uvs is not None else None,
        }
        atomic_savez(path, {"header": json_array(header), **arrays})
    return PackageRef(path, digest)


def _np(t: torch.Tensor | None, dtype=np.float32) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(dtype)


def result_arrays(out, persons, crop_size: int) -> dict[str, np.ndarray]:
    """Per-person arrays of one image (see the format doc), all from the model's own outputs
    (nothing is evaluated again).

    Args:
        out: :class:`~pixie_backend.types.PixieOutput` for the image's P persons (CPU), with its
            ``joints_rest`` and ``pose_correctives``.
        persons: the P :class:`~pixie_backend.pipeline.PersonCrop` records.
        crop_size: body-crop size (224).
    """
    p = out.params
    n = p.batch_size
    full = p.full_pose()
    aa = rotmat_to_axis_angle(full)  # (P, 55, 3)
    center = torch.tensor(np.stack([q.center for q in persons]), dtype=torch.float32)
    side = torch.tensor([q.side for q in persons], dtype=torch.float32)
    uv = normalized_to_crop_pixels(out.keypoints2d, crop_size)
    if out.joints_rest is None or out.pose_correctives is None:
        raise ValueError("the model output has no rest joints / pose correctives (decode() fills them)")
    weights = out.moderator_weights if out.moderator_weights is not None else torch.full((n, 3, 2), float("nan"))
    eye = np.broadcast_to(np.eye(3, dtype=np.float32), (n, 1, 3, 3))
    arrays = {
        "betas": _np(p.betas), "expression": _np(p.expression),
        "global_orient": _np(p.global_orient), "body_pose": _np(p.body_pose), "jaw_pose": _np(p.jaw_pose),
        "leye_pose": eye.copy(), "reye_pose": eye.copy(),
        "left_hand_pose": _np(p.left_hand_pose), "right_hand_pose": _np(p.right_hand_pose),
        "full_pose": _np(full),
        "global_orient_aa": _np(aa[:, 0]), "body_pose_aa": _np(aa[:, 1:22].reshape(n, 63)),
        "jaw_pose_aa": _np(aa[:, 22]), "leye_pose_aa": _np(aa[:, 23]), "reye_pose_aa": _np(aa[:, 24]),
        "left_hand_pose_aa": _np(aa[:, 25:40].reshape(n, 45)), "right_hand_pose_aa": _np(aa[:, 40:55].reshape(n, 45)),
        "transl": np.zeros((n, 3), np.float32),
        "cam": _np(p.cam), "cam_image_px": _np(image_ortho_camera(p.cam, center, side, crop_size)),
        "bbox": np.stack([q.box for q in persons]).astype(np.float32),
        "crop_center": center.numpy(), "crop_size": side.numpy(),
        "crop_tform": np.stack([q.tform for q in persons]).astype(np.float32),
        "moderator_weights": _np(weights),
        "vertices": _np(out.vertices), "joints": _np(out.keypoints3d),
        "keypoints_2d": _np(crop_to_image_points(uv, center, side, crop_size)),
        "joints_rest": _np(out.joints_rest), "pose_correctives": _np(out.pose_correctives),
    }
    if p.tex is not None:
        arrays["tex"] = _np(p.tex)
    if p.light is not None:
        arrays["light"] = _np(p.light)
    return arrays


def result_header(source: dict, num_persons: int, package: PackageRef, checkpoint_sha256: str | None,
                  smplx_sha256: str | None, synthetic: bool, settings: dict, frame: int | None = None) -> dict:
    return {
        "format": RESULT_FORMAT, "version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "producer": {"name": "pixie-backend", "version": __version__},
        "synthetic": synthetic, "source": source, "frame": frame, "num_persons": num_persons, "status": "ok",
        "model": {"checkpoint_sha256": checkpoint_sha256, "smplx_sha256": smplx_sha256,
                  "package": {"file": package.path.name, "sha256": package.sha256}},
        "joint_names": list(C.SMPLX_JOINT_NAMES),
        "conventions": {"frame": "pixie", "rotation": "matrix_column_vectors_relative", "units": "m",
                        "hand_mean": "flat", "crop_convention": settings.get("part_convention")},
        "settings": settings, "appearance": {},
    }


def write_result(path: Path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    check_arrays(arrays, RESULT_ARRAYS)
    atomic_savez(path, {"header": json_array(header), **arrays})


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray, uvs: tuple[np.ndarray, np.ndarray] | None,
              upright_about: np.ndarray | None = None) -> None:
    """A quick-look OBJ (1-based, ``f v/vt``), atomically.

    Args:
        vertices: (V, 3) PIXIE-frame vertices.
        faces: (F, 3) triangles.
        uvs: optional (vt (T, 2), ft (F, 3)).
        upright_about: the root joint (3,) to turn the body upright about (180° about X, as the
            format doc's upright frame); None writes the PIXIE frame as is (upside down in most viewers).
    """
    v = np.asarray(vertices, np.float64)
    if upright_about is not None:
        d = np.array([1.0, -1.0, -1.0])
        v = v * d + (1 - d) * np.asarray(upright_about, np.float64)
    lines = [f"# pixie-backend {__version__}: posed SMPL-X mesh, y up, metres\n"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in v]
    f = np.asarray(faces, np.int64) + 1
    if uvs is not None:
        vt, ft = uvs
        lines += [f"vt {a:.6f} {b:.6f}\n" for a, b in vt]
        ft = np.asarray(ft, np.int64) + 1
        lines += [f"f {a}/{ta} {b}/{tb} {c}/{tc}\n" for (a, b, c), (ta, tb, tc) in zip(f, ft, strict=True)]
    else:
        lines += [f"f {a} {b} {c}\n" for a, b, c in f]
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(lines)
