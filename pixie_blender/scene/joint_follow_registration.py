"""Registration hook for :mod:`.joint_follow` (msgbus subscription and load handler)."""

from __future__ import annotations

from . import joint_follow

CLASSES = ()


def register_extra() -> None:
    joint_follow.register()


def unregister_extra() -> None:
    joint_follow.unregister()
