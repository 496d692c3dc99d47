"""Shape keys: body shape (``Shape###``), expression (``Exp###``), pose correctives (``Pose###``
live through drivers, or one baked ``PoseCorrectives`` key).

Blender clamps a key's value to its slider range, and 5.0 creates keys at 1.0, so every range and
value is written explicitly, ranges first.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..io.body_model import TemplatePlan, slider_range
from ..io.constants import (
    BAKED_CORRECTIVE_KEY,
    EXPRESSION_KEY_FMT,
    JOINT_NAMES,
    NUM_EXPRESSION,
    NUM_JOINTS,
    POSE_KEY_FMT,
    SHAPE_KEY_FMT,
)

BASIS = "Basis"
DEFAULT_SLIDER = 5.0
POSE_SLIDER = 2.0  # entries of R − I lie in [−2, 2]

# R − I for a unit quaternion (w, x, y, z), row-major; simple expressions (no Python needed)
_R_MINUS_I = (
    ("-2*(y*y+z*z)", "yz"),
    ("2*(x*y-w*z)", "wxyz"),
    ("2*(x*z+w*y)", "wxyz"),
    ("2*(x*y+w*z)", "wxyz"),
    ("-2*(x*x+z*z)", "xz"),
    ("2*(y*z-w*x)", "wxyz"),
    ("2*(x*z-w*y)", "wxyz"),
    ("2*(y*z+w*x)", "wxyz"),
    ("-2*(x*x+y*y)", "xy"),
)
_ROT_CHANNEL = {"w": "ROT_W", "x": "ROT_X", "y": "ROT_Y", "z": "ROT_Z"}


def shape_key_names(num_shape: int) -> list[str]:
    return [SHAPE_KEY_FMT.format(i) for i in range(num_shape)]


def expression_key_names() -> list[str]:
    return [EXPRESSION_KEY_FMT.format(i) for i in range(NUM_EXPRESSION)]


def pose_key_names() -> list[str]:
    return [POSE_KEY_FMT.format(i) for i in range((NUM_JOINTS - 1) * 9)]


def add_blend_shape_keys(ob: bpy.types.Object, plan: TemplatePlan) -> None:
    """Basis + Shape### + Exp### (+ Pose### when the plan has pose offsets), all at value 0."""
    base = plan.vertices.astype(np.float32)
    basis = ob.shape_key_add(name=BASIS, from_mix=False)
    basis.points.foreach_set("co", base.ravel())
    groups = [
        (shape_key_names(plan.shape_offsets.shape[0]), plan.shape_offsets, DEFAULT_SLIDER),
        (expression_key_names(), plan.expression_offsets, DEFAULT_SLIDER),
    ]
    if plan.pose_offsets is not None:
        groups.append((pose_key_names(), plan.pose_offsets, POSE_SLIDER))
    limits = [0.0]
    for names, offsets, lim in groups:
        for name, off in zip(names, offsets, strict=True):
            kb = ob.shape_key_add(name=name, from_mix=False)
            kb.points.foreach_set("co", (base + off).ravel())
        limits += [lim] * len(names)
    kbs = ob.data.shape_keys.key_blocks
    lim = np.asarray(limits, dtype=np.float32)
    kbs.foreach_set("slider_min", -lim)
    kbs.foreach_set("slider_max", np.maximum(lim, 1.0))
    kbs.foreach_set("value", np.zeros(len(kbs), dtype=np.float32))
    ob.data.shape_keys.use_relative = True


def key_values(me: bpy.types.Mesh) -> dict[str, float]:
    kbs = me.shape_keys.key_blocks
    vals = np.empty(len(kbs), dtype=np.float32)
    kbs.foreach_get("value", vals)
    return {kb.name: float(v) for kb, v in zip(kbs, vals, strict=True)}


def read_values(me: bpy.types.Mesh, names: list[str]) -> np.ndarray:
    """Values of the named keys (0 for absent keys), float64."""
    kbs = me.shape_keys.key_blocks if me.shape_keys else None
    out = np.zeros(len(names))
    if kbs is None:
        return out
    vals = np.empty(len(kbs), dtype=np.float32)
    kbs.foreach_get("value", vals)
    index = {kb.name: i for i, kb in enumerate(kbs)}
    for j, n in enumerate(names):
        i = index.get(n)
        if i is not None:
            out[j] = vals[i]
    return out


def set_values(me: bpy.types.Mesh, values: dict[str, float], *, widen: bool = True) -> None:
    """Set key values by name in one pass; slider ranges are widened first where needed."""
    kbs = me.shape_keys.key_blocks
    n = len(kbs)
    vals = np.empty(n, dtype=np.float32)
    lo = np.empty(n, dtype=np.float32)
    hi = np.empty(n, dtype=np.float32)
    kbs.foreach_get("value", vals)
    kbs.foreach_get("slider_min", lo)
    kbs.foreach_get("slider_max", hi)
    for i, kb in enumerate(kbs):
        v = values.get(kb.name)
        if v is None:
            continue
        if widen:
            rmin, rmax = slider_range(np.array([v]), default=max(-float(lo[i]), float(hi[i])))
            lo[i] = min(lo[i], rmin[0])
            hi[i] = max(hi[i], rmax[0])
        vals[i] = v
    kbs.foreach_set("slider_min", lo)
    kbs.foreach_set("slider_max", hi)
    kbs.foreach_set("value", vals)


def set_baked_correctives(ob: bpy.types.Object, offsets: np.ndarray) -> bpy.types.ShapeKey:
    """The ``PoseCorrectives`` key: Basis + the pose's corrective offsets, value 1."""
    me = ob.data
    kb = me.shape_keys.key_blocks.get(BAKED_CORRECTIVE_KEY)
    if kb is None:
        kb = ob.shape_key_add(name=BAKED_CORRECTIVE_KEY, from_mix=False)
    basis = me.shape_keys.reference_key
    base = np.empty(len(me.vertices) * 3, dtype=np.float32)
    basis.points.foreach_get("co", base)
    kb.points.foreach_set("co", base + np.asarray(offsets, dtype=np.float32).ravel())
    kb.slider_min = 0.0
    kb.slider_max = 1.0
    kb.value = 1.0
    return kb


def add_corrective_drivers(mesh_ob: bpy.types.Object, arm_ob: bpy.types.Object) -> int:
    """Drive each ``Pose###`` key by the matching entry of ``R − I`` of its bone's local rotation
    (SMPL-X order: joint 1..54, row-major). Simple expressions: no Python auto-run needed.
    Returns the number of drivers."""
    key = mesh_ob.data.shape_keys
    kbs = key.key_blocks
    count = 0
    for j in range(1, NUM_JOINTS):
        bone = JOINT_NAMES[j]
        for e, (expr, chans) in enumerate(_R_MINUS_I):
            name = POSE_KEY_FMT.format((j - 1) * 9 + e)
            kb = kbs.get(name)
            if kb is None:
                continue
            fc = kb.driver_add("value")
            drv = fc.driver
            drv.type = "SCRIPTED"
            for v in list(drv.variables):
                drv.variables.remove(v)
            for ch in chans:
                var = drv.variables.new()
                var.name = ch
                var.type = "TRANSFORMS"
                tgt = var.targets[0]
                tgt.id = arm_ob
                tgt.bone_target = bone
                tgt.transform_type = _ROT_CHANNEL[ch]
                tgt.rotation_mode = "QUATERNION"
                tgt.transform_space = "LOCAL_SPACE"
            drv.expression = expr
            for mod in list(fc.modifiers):
                fc.modifiers.remove(mod)
            count += 1
    return count


def retarget_drivers(mesh_ob: bpy.types.Object, old_arm: bpy.types.Object, new_arm: bpy.types.Object) -> None:
    """Point the corrective drivers of a copied mesh at its own armature."""
    key = mesh_ob.data.shape_keys
    if key is None or key.animation_data is None:
        return
    for fc in key.animation_data.drivers:
        for var in fc.driver.variables:
            for tgt in var.targets:
                if tgt.id == old_arm:
                    tgt.id = new_arm
