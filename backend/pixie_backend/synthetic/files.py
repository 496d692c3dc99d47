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

from ..body.obj_io import read_obj, read_obj_uvs  # noqa: F401  (re-exported)
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


