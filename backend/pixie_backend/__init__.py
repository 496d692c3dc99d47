"""pixie-backend: PIXIE whole-body SMPL-X reconstruction (official checkpoint, batched, no pytorch3d).

Importing this package is cheap and does not import torch; the heavy names are loaded on first use::

    from pixie_backend import Pixie, PixieConfig
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Pixie": ("pixie_backend.pipeline", "Pixie"),
    "PixieConfig": ("pixie_backend.config", "PixieConfig"),
    "PixieParams": ("pixie_backend.types", "PixieParams"),
    "PixieOutput": ("pixie_backend.types", "PixieOutput"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'pixie_backend' has no attribute {name!r}")
