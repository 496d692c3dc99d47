"""Armature: ``root`` + the 55 SMPL-X bones, head at the joint, tail along +Z, roll 0 (the official
SMPL-X add-on's convention), so SMPL-X relative rotations go 1:1 into the pose bones."""

from __future__ import annotations

from contextlib import contextmanager

import bpy
import numpy as np

from ..io.constants import JOINT_NAMES, PARENTS, ROOT_BONE


def _mode_set(mode: str) -> None:
    """``bpy.ops.object.mode_set`` without the Python wrapper's two full view-layer evaluations
    (before and after the call), which cost ~0.1–0.9 s each in a scene full of avatars. The
    wrapper's own entry point (``_bpy.ops.call``) is used when present (4.2–5.0)."""
    try:
        from _bpy import ops as _ops  # the module bpy.ops itself is built on
    except ImportError:  # pragma: no cover - future Blender
        _ops = None
    if _ops is not None and hasattr(_ops, "call"):
        _ops.call("object.mode_set", {"mode": mode})
    else:  # pragma: no cover
        bpy.ops.object.mode_set(mode=mode)


def _ops_override(context) -> dict:
    """Context members ``bpy.ops`` needs, also from timers (no window there)."""
    ctx = {}
    if getattr(context, "window", None) is None:
        wm = bpy.context.window_manager
        if wm is not None and wm.windows:
            win = wm.windows[0]
            ctx["window"] = win
            ctx["screen"] = win.screen
    return ctx


def ensure_object_mode(context) -> None:
    """Leave any edit/pose/paint mode (flushing its edits), as importers do."""
    if context.mode == "OBJECT":
        return
    active = context.view_layer.objects.active
    if active is None:
        return
    with context.temp_override(**_ops_override(context), active_object=active, object=active):
        _mode_set("OBJECT")


@contextmanager
def armatures_edit_mode(context, objects: list[bpy.types.Object]):
    """Enter edit mode on ``objects`` (multi-object), yield, return to object mode, and restore
    the view layer's selection, active object and the previous mode."""
    view_layer = context.view_layer
    prev_active = view_layer.objects.active
    prev_mode = context.mode
    prev_selected = [o for o in view_layer.objects if o.select_get(view_layer=view_layer)]
    override = _ops_override(context)
    if prev_mode != "OBJECT" and prev_active is not None:
        with context.temp_override(**override, active_object=prev_active, object=prev_active):
            _mode_set("OBJECT")
    for o in prev_selected:
        o.select_set(False, view_layer=view_layer)
    for o in objects:
        o.select_set(True, view_layer=view_layer)
    view_layer.objects.active = objects[0]
    try:
        with context.temp_override(
            **override,
            active_object=objects[0],
            object=objects[0],
            selected_objects=list(objects),
            selected_editable_objects=list(objects),
        ):
            _mode_set("EDIT")
        yield
    finally:
        with context.temp_override(**override, active_object=objects[0], object=objects[0]):
            if objects[0].mode != "OBJECT":
                _mode_set("OBJECT")
        for o in objects:
            o.select_set(False, view_layer=view_layer)
        for o in prev_selected:
            if o.name in view_layer.objects:
                o.select_set(True, view_layer=view_layer)
        view_layer.objects.active = prev_active
        if prev_mode == "POSE" and prev_active is not None and prev_active.type == "ARMATURE":
            with context.temp_override(**override, active_object=prev_active, object=prev_active):
                _mode_set("POSE")


def write_edit_bones(
    arm: bpy.types.Armature, heads: np.ndarray, lengths: np.ndarray, create: bool = False
) -> None:
    """Set (or create) ``root`` and the 55 bones: head at ``heads[k]``, tail +Z, roll 0.
    Must be called in edit mode."""
    ebs = arm.edit_bones
    if create:
        root = ebs.new(ROOT_BONE)
        root.head = (0.0, 0.0, 0.0)
        root.tail = (0.0, 0.0, 0.1)
        root.roll = 0.0
        root.use_deform = False
        for name in JOINT_NAMES:
            ebs.new(name)
        for k, name in enumerate(JOINT_NAMES):
            p = PARENTS[k]
            ebs[name].parent = ebs[ROOT_BONE] if p < 0 else ebs[JOINT_NAMES[p]]
            ebs[name].use_connect = False
    for k, name in enumerate(JOINT_NAMES):
        eb = ebs[name]
        h = heads[k]
        eb.head = (float(h[0]), float(h[1]), float(h[2]))
        eb.tail = (float(h[0]), float(h[1]), float(h[2] + lengths[k]))
        eb.roll = 0.0


def create_armature(
    context, name: str, collection: bpy.types.Collection, heads: np.ndarray, lengths: np.ndarray
) -> bpy.types.Object:
    arm = bpy.data.armatures.new(name)
    arm.display_type = "OCTAHEDRAL"
    ob = bpy.data.objects.new(name, arm)
    ob.show_in_front = True
    collection.objects.link(ob)
    with armatures_edit_mode(context, [ob]):
        write_edit_bones(arm, heads, lengths, create=True)
    for pb in ob.pose.bones:
        pb.rotation_mode = "QUATERNION"
    return ob


def set_rest_joints(context, items: list[tuple[bpy.types.Object, np.ndarray, np.ndarray]]) -> None:
    """Move the rest bones of several armatures in one edit-mode pass: (object, heads, lengths)."""
    if not items:
        return
    with armatures_edit_mode(context, [ob for ob, _, _ in items]):
        for ob, heads, lengths in items:
            write_edit_bones(ob.data, heads, lengths)


def set_pose(ob: bpy.types.Object, quaternions: np.ndarray) -> None:
    """Write the 55 WXYZ quaternions to the pose bones (root stays identity), one bulk call."""
    pbs = ob.pose.bones
    q = np.zeros((len(pbs), 4), dtype=np.float32)
    q[:, 0] = 1.0
    index = {name: k for k, name in enumerate(JOINT_NAMES)}
    for i, pb in enumerate(pbs):
        k = index.get(pb.name)
        if k is not None:
            q[i] = quaternions[k]
    for pb in pbs:
        if pb.rotation_mode != "QUATERNION":
            pb.rotation_mode = "QUATERNION"
    pbs.foreach_set("rotation_quaternion", q.ravel())
    zero = np.zeros(len(pbs) * 3, dtype=np.float32)
    pbs.foreach_set("location", zero)
    pbs.foreach_set("scale", np.ones(len(pbs) * 3, dtype=np.float32))


def bone_heads(ob: bpy.types.Object) -> np.ndarray:
    """(55, 3) rest heads in armature space, SMPL-X joint order."""
    bones = ob.data.bones
    return np.array([bones[n].head_local[:] for n in JOINT_NAMES])


def posed_heads(ob: bpy.types.Object) -> np.ndarray:
    """(55, 3) posed heads in armature space, SMPL-X joint order."""
    pbs = ob.pose.bones
    return np.array([pbs[n].head[:] for n in JOINT_NAMES])
