"""Synthetic stand-ins for the licensed SMPL-X / PIXIE body files (numpy only).

A procedurally built human mannequin in the official file formats, so that tests and demos run
without the licensed downloads::

    from pixie_backend.synthetic import build_body_model, write_body_assets

    model = build_body_model("small")          # arrays, see BodyModel
    paths = write_body_assets(tmp_dir, "full")  # SMPLX_NEUTRAL_2020.npz, smplx_extra_joints.yaml,
                                                # SMPLX_to_J14.pkl, smplx_tex.obj
"""

from __future__ import annotations

from .files import read_obj, read_obj_uvs, write_body_assets
from .mannequin import NPZ_KEYS, VARIANTS, BodyModel, build_body_model

__all__ = ["NPZ_KEYS", "VARIANTS", "BodyModel", "build_body_model", "read_obj", "read_obj_uvs",
           "write_body_assets"]
