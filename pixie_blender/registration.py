"""Register the add-on from a list of modules that each expose ``CLASSES`` (registered in order,
unregistered in reverse) and optionally ``register_extra()`` / ``unregister_extra()``.

To add a feature module, append its name to :data:`MODULES` (or to :data:`OPTIONAL_MODULES` when
it may be absent, e.g. ``ui.data_setup`` of the model-file set-up).
"""

from __future__ import annotations

import importlib

import bpy

MODULES: tuple[str, ...] = (
    "preferences",
    "properties",
    "operators.import_result",
    "operators.body",
    "operators.cache",
    "ui.panels",
    "ui.menus",
    "scene.joint_follow_registration",
)
#: Modules registered when present (added by other features).
OPTIONAL_MODULES: tuple[str, ...] = (
    "operators.data_setup",
    "ui.data_setup",
)

_registered: list = []
_extras: list = []


def _modules() -> list:
    mods = []
    for name in MODULES + OPTIONAL_MODULES:
        full = f"{__package__}.{name}"
        try:
            mods.append(importlib.import_module(full))
        except ModuleNotFoundError as exc:
            if name in OPTIONAL_MODULES and exc.name == full:
                continue
            raise
    return mods


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
