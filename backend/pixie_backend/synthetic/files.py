"""Write the synthetic body in the official file formats, and read UVs back from an OBJ.

Files written by ``write_body_assets`` (names as in the PIXIE data folder):

* ``SMPLX_NEUTRAL_2020.npz``: ``np.savez`` of ``mannequin.NPZ_KEYS`` (read by ``smplx`` and
  upstream PIXIE with ``np.load(..., allow_pickle=True)``);
* ``smplx_extra_joints.yaml``: ``name: {face: int, bc: [b0, b1, b2]}`` in
  ``constants.EXTRA_JOINT_NAMES`` order (upstream keeps the key order);
* ``SMPLX_to_J14.pkl``: a pickled float64 array ``(14, V)`` (upstream reads it with
  ``pickle.load(f, encoding="latin1")``);
* ``smplx_tex.obj``: ``v`` (rest vertices), ``vt``, ``f v/vt v/vt v/vt`` (1-based), triangles in
  the order of ``f`` in the npz.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import yaml

from ..constants import EXTRA_JOINT_NAMES
from .mannequin import BodyModel, build_body_model

SMPLX_MODEL_FILE = "SMPLX_NEUTRAL_2020.npz"
EXTRA_JOINTS_FILE = "smplx_extra_joints.yaml"
J14_FILE = "SMPLX_to_J14.pkl"
TEX_OBJ_FILE = "smplx_tex.obj"


def write_npz(model: BodyModel, path: Path) -> None:
    """Write ``SMPLX_NEUTRAL_2020.npz``."""
    with open(path, "wb") as fh:
        np.savez(fh, **model.npz_arrays())


def write_extra_joints(model: BodyModel, path: Path) -> None:
    """Write ``smplx_extra_joints.yaml``."""
    data = {
        name: {"face": int(face), "bc": [float(b) for b in bc]}
        for name, face, bc in zip(EXTRA_JOINT_NAMES, model.extra_joint_faces,
                                  model.extra_joint_bary, strict=True)
    }
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False, default_flow_style=None)


def write_j14(model: BodyModel, path: Path) -> None:
    """Write ``SMPLX_to_J14.pkl`` (protocol 2, readable by Python 2 style loaders)."""
    with open(path, "wb") as fh:
        pickle.dump(np.ascontiguousarray(model.j14_regressor, dtype=np.float64), fh, protocol=2)


def write_tex_obj(model: BodyModel, path: Path) -> None:
    """Write ``smplx_tex.obj`` with rest vertices, UVs and triangles ``v/vt``."""
    f = model.f.astype(np.int64) + 1
    ft = model.ft.astype(np.int64) + 1
    corners = np.stack([f, ft], axis=2).reshape(len(f), 6)
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write("# synthetic SMPL-X mannequin (pixie-blender test asset, not the licensed model)\n")
        np.savetxt(fh, model.v_template, fmt="v %.8f %.8f %.8f")
        np.savetxt(fh, model.vt, fmt="vt %.8f %.8f")
        np.savetxt(fh, corners, fmt="f %d/%d %d/%d %d/%d")


def write_body_assets(out_dir: str | Path, variant: str = "full", seed: int = 0,
                      model: BodyModel | None = None) -> dict[str, Path]:
    """Build the synthetic body and write it in the official formats.

    Args:
        out_dir: folder to write into (created if missing).
        variant: ``"full"`` or ``"small"`` (see ``build_body_model``).
        seed: random seed of ``build_body_model``.
        model: an already built model to write instead (then ``variant`` and ``seed`` are
            ignored).

    Returns:
        File name -> written path, for the four files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = build_body_model(variant, seed)
    paths = {name: out / name for name in (SMPLX_MODEL_FILE, EXTRA_JOINTS_FILE, J14_FILE,
                                           TEX_OBJ_FILE)}
    write_npz(model, paths[SMPLX_MODEL_FILE])
    write_extra_joints(model, paths[EXTRA_JOINTS_FILE])
    write_j14(model, paths[J14_FILE])
    write_tex_obj(model, paths[TEX_OBJ_FILE])
    return paths


def _index(token: str, count: int, line_no: int, what: str) -> int:
    """OBJ index (1-based, or negative = relative to the end) -> 0-based."""
    try:
        i = int(token)
    except ValueError:
        raise ValueError(f"line {line_no}: bad {what} index {token!r}") from None
    if i > 0:
        return i - 1
    if i < 0:
        return count + i
    raise ValueError(f"line {line_no}: {what} index 0 is not valid in OBJ")


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read vertices, UVs and triangles of a triangulated OBJ with texture coordinates.

    Normals, comments and ``g``/``o``/``s``/``usemtl``/``mtllib`` lines are ignored.

    Args:
        path: the ``.obj`` file.

    Returns:
        ``(v (V, 3), f (F, 3) int64, vt (T, 2), ft (F, 3) int64)``, indices 0-based.

    Raises:
        ValueError: a face that is not a triangle, a face corner without a UV index, or an
            index out of range; the message names the line.
    """
    v: list[list[float]] = []
    vt: list[list[float]] = []
    f: list[list[int]] = []
    ft: list[list[int]] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line_no, raw in enumerate(fh, start=1):
            parts = raw.split("#", 1)[0].split()
            if not parts:
                continue
            tag = parts[0]
            if tag == "v":
                v.append([float(x) for x in parts[1:4]])
            elif tag == "vt":
                vt.append([float(x) for x in parts[1:3]])
            elif tag == "f":
                corners = parts[1:]
                if len(corners) != 3:
                    raise ValueError(
                        f"{path}: line {line_no}: face with {len(corners)} corners; only "
                        "triangles are supported (triangulate the mesh before exporting)")
                fv, fvt = [], []
                for c in corners:
                    sub = c.split("/")
                    if len(sub) < 2 or not sub[1]:
                        raise ValueError(f"{path}: line {line_no}: face corner {c!r} has no UV "
                                         "index (expected v/vt or v/vt/vn)")
                    fv.append(_index(sub[0], len(v), line_no, "vertex"))
                    fvt.append(_index(sub[1], len(vt), line_no, "UV"))
                f.append(fv)
                ft.append(fvt)
    va = np.asarray(v, dtype=np.float64).reshape(-1, 3)
    vta = np.asarray(vt, dtype=np.float64).reshape(-1, 2)
    fa = np.asarray(f, dtype=np.int64).reshape(-1, 3)
    fta = np.asarray(ft, dtype=np.int64).reshape(-1, 3)
    if fa.size and (fa.min() < 0 or fa.max() >= len(va)):
        raise ValueError(f"{path}: a face refers to a vertex that does not exist")
    if fta.size and (fta.min() < 0 or fta.max() >= len(vta)):
        raise ValueError(f"{path}: a face refers to a UV that does not exist")
    return va, fa, vta, fta


def read_obj_uvs(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """UVs of a triangulated OBJ such as ``smplx_tex.obj``.

    Returns:
        ``(vt (T, 2) float64, ft (F, 3) int64)``, ``ft`` 0-based and in file face order.
    """
    _, _, vt, ft = read_obj(path)
    return vt, ft
