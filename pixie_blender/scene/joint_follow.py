"""Joints follow the body shape.

Each rig stores its package's joint regressor (``J = joints_template + joints_shapedirs·betas +
joints_exprdirs·expression``, ≈170 KB) as hidden custom properties on the armature data, so the
rig updates itself in any .blend, without the package or the add-on's cache.

* :func:`update_joints` recomputes the rest joints of avatars from their current ``Shape###`` /
  ``Exp###`` values and moves all their rest bones in one edit-mode pass (button
  ``pixie.update_joints``).
* Automatic: a ``bpy.msgbus`` subscription on ``ShapeKey.value`` marks a change; a 0.2 s timer
  (debounce, so dragging a slider updates once it settles) then updates every avatar whose values
  differ from those its bones were built for (``_pixie_joint_state``). A ``load_post`` handler
  re-subscribes after a file is opened. Headless there is no event loop, so tests call
  :func:`flush` directly.
"""

from __future__ import annotations

import bpy
import numpy as np
from bpy.app.handlers import persistent

from ..io import body_model, convert
from ..io.constants import NUM_EXPRESSION, NUM_JOINTS
from . import armature, shape_keys

DEBOUNCE_S = 0.2


class _Owner:
    """msgbus owner token (an instance, so clear_by_owner only clears ours)."""


_OWNER = _Owner()
_enabled = {"auto": True}


def auto_enabled() -> bool:
    """The module switch (tests) and the preference (users) both allow automatic updates."""
    if not _enabled["auto"]:
        return False
    from ..preferences import get_preferences

    prefs = get_preferences()
    return prefs is None or bool(prefs.auto_update_joints)


def is_avatar_rig(ob) -> bool:
    return (
        ob is not None
        and ob.type == "ARMATURE"
        and ob.get("pixie_role") == "rig"
        and "_pixie_joints_template" in ob.data
    )


def rig_body(arm: bpy.types.Object):
    return next(
        (
            c
            for c in arm.children
            if c.type == "MESH" and c.get("pixie_role") == "body" and c.data.shape_keys is not None
        ),
        None,
    )


def current_state(arm: bpy.types.Object, body: bpy.types.Object) -> np.ndarray:
    K = int(arm.data["_pixie_num_shape"])
    names = shape_keys.shape_key_names(K) + shape_keys.expression_key_names()
    values = shape_keys.read_values(body.data, names)
    if arm.get("pixie_animated_expression"):  # sequence rigs: joints for a neutral expression
        values[K:] = 0.0
    return values


def shaped_joints(arm: bpy.types.Object, state: np.ndarray) -> np.ndarray:
    """(55, 3) rest joints in armature space for key values ``state`` (betas then expression)."""
    K = int(arm.data["_pixie_num_shape"])
    Jt = np.asarray(arm.data["_pixie_joints_template"], dtype=np.float64).reshape(NUM_JOINTS, 3)
    Js = np.asarray(arm.data["_pixie_joints_shapedirs"], dtype=np.float64).reshape(NUM_JOINTS, 3, K)
    Je = np.asarray(arm.data["_pixie_joints_exprdirs"], dtype=np.float64).reshape(
        NUM_JOINTS, 3, NUM_EXPRESSION
    )
    J = convert.shaped_joints(Jt, Js, Je, state[:K], state[K:])
    return convert.smplx_to_blender(J)


def is_stale(arm: bpy.types.Object, body: bpy.types.Object | None = None, tol: float = 1e-6) -> bool:
    body = body or rig_body(arm)
    if body is None:
        return False
    state = current_state(arm, body)
    old = arm.get("_pixie_joint_state")
    if old is None or len(old) != len(state):
        return True
    return bool(np.abs(np.asarray(old, dtype=np.float64) - state).max(initial=0.0) > tol)


def update_joints(context, rigs) -> int:
    """Move the rest bones of ``rigs`` to the joints of their current shape; returns how many."""
    items, states = [], []
    for arm in rigs:
        body = rig_body(arm)
        # edit mode needs the armature in this view layer and visible
        if body is None or arm.name not in context.view_layer.objects or not arm.visible_get():
            continue
        state = current_state(arm, body)
        items.append((arm, shaped_joints(arm, state), body_model.bone_lengths()))
        states.append(state)
    if not items:
        return 0
    armature.set_rest_joints(context, items)
    for (arm, _h, _l), state in zip(items, states, strict=True):
        arm["_pixie_joint_state"] = state.astype(np.float32)
    return len(items)


def stale_rigs(context) -> list:
    return [o for o in context.view_layer.objects if is_avatar_rig(o) and o.visible_get() and is_stale(o)]


def flush():
    """Timer body: update every stale avatar; retried later while an edit mode is active."""
    context = bpy.context
    if not auto_enabled() or context.view_layer is None:
        return None
    if context.mode not in ("OBJECT", "POSE"):
        return 1.0  # the user is editing; try again in a second
    rigs = stale_rigs(context)
    if rigs:
        update_joints(context, rigs)
    return None


def _on_shape_key_value():
    if auto_enabled() and not bpy.app.timers.is_registered(flush):
        bpy.app.timers.register(flush, first_interval=DEBOUNCE_S, persistent=True)


def subscribe() -> None:
    bpy.msgbus.clear_by_owner(_OWNER)
    bpy.msgbus.subscribe_rna(
        key=(bpy.types.ShapeKey, "value"),
        owner=_OWNER,
        args=(),
        notify=_on_shape_key_value,
        options={"PERSISTENT"},
    )


@persistent
def _load_post(*_args):
    subscribe()


def set_auto(enabled: bool) -> None:
    _enabled["auto"] = bool(enabled)


def register() -> None:
    subscribe()
    if _load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_load_post)


def unregister() -> None:
    bpy.msgbus.clear_by_owner(_OWNER)
    if _load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_load_post)
    if bpy.app.timers.is_registered(flush):
        bpy.app.timers.unregister(flush)
