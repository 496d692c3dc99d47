"""Register the add-on from a list of modules that each expose ``CLASSES`` (registered in order,
unregistered in reverse) and optionally ``register_extra()`` / ``unregister_extra()``.

To add a feature module, append its name to :data:`MODULES`.
"""

from __future__ import annotations

import importlib

import bpy

MODULES: tuple[str, ...] = (
    "preferences",
    "properties",
    "operators.import_result",
    "operators.import_sequence",
    "operators.export",
    "operators.body",
    "operators.cache",
    "ui.panels",
    "ui.menus",
    "scene.joint_follow_registration",
    "operators.data_setup",
    "ui.data_setup",
    "operators.backend",
    "operators.reconstruct",
)

_registered: list = []
_extras: list = []


def _modules() -> list:
    return [importlib.import_module(f"{__package__}.{name}") for name in MODULES]


def register() -> None:
    try:
        for mod in _modules():
            for cls in getattr(mod, "CLASSES", ()):
                bpy.utils.register_class(cls)
                _registered.append(cls)
            if hasattr(mod, "register_extra"):
                mod.register_extra()
                _extras.append(mod)
    except BaseException:
        unregister()
        raise


def unregister() -> None:
    while _extras:
        mod = _extras.pop()
        if hasattr(mod, "unregister_extra"):
            mod.unregister_extra()
    while _registered:
        bpy.utils.unregister_class(_registered.pop())
