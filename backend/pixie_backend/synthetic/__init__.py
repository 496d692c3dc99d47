"""Synthetic stand-ins for the licensed SMPL-X / PIXIE body files (numpy only).

A procedurally built human mannequin in the official file formats, so that tests and demos run
without the licensed downloads::

    from pixie_backend.synthetic import build_body_model, write_body_assets

    model = build_body_model("small")          # arrays, see BodyModel
    paths = write_body_assets(tmp_dir, "full")  # SMPLX_NEUTRAL_2020.npz, smplx_extra_joints.yaml,
                                                # SMPLX_to_J14.pkl, smplx_tex.obj

Importing this package (or ``pixie_backend.synthetic.mannequin``) needs numpy only, so the add-on's
tests import it from a Blender-only environment (``.venv-bpy42``, where the project is installed
without its dependencies); the file writers (PyYAML) load on first use.
"""

from __future__ import annotations

_LAZY = {
    "NPZ_KEYS": "mannequin", "VARIANTS": "mannequin", "BodyModel": "mannequin", "build_body_model": "mannequin",
    "read_obj": "files", "read_obj_uvs": "files", "write_body_assets": "files",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
