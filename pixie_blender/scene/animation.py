"""Bulk keyframes on both action APIs.

Blender 4.4 introduced slotted (layered) actions (action → slots; layers → strips → channelbags →
F-curves) and 5.0 removed ``Action.fcurves``; 4.2 and 4.3 only have the direct F-curves. The
factory below creates F-curves either way, and keys are written with ``keyframe_points.add`` plus
``foreach_set`` (one call per F-curve for all its keys), 30–100× faster than ``keyframe_insert``.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..io.constants import JOINT_NAMES

_INTERPOLATION: dict[str, int] = {}


def _interpolation_value(name: str) -> int:
    if name not in _INTERPOLATION:
        _INTERPOLATION[name] = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items[name].value
    return _INTERPOLATION[name]


def is_slotted(action: bpy.types.Action) -> bool:
    """True on Blender 4.4+ (layered actions with slots)."""
    return hasattr(action, "layers") and hasattr(action, "slots")


def fcurve_factory(action: bpy.types.Action, id_type: str, slot_name: str):
    """``(new_fcurve(data_path, index, group), slot or None)`` for an empty action: a slot of
    ``id_type`` ('OBJECT', 'KEY') in one layer and keyframe strip on 4.4+, direct F-curves before."""
    if is_slotted(action):
        slot = action.slots.new(id_type=id_type, name=slot_name)
        layer = action.layers[0] if action.layers else action.layers.new("Layer")
        strip = layer.strips[0] if layer.strips else layer.strips.new(type="KEYFRAME")
        bag = strip.channelbag(slot, ensure=True)

        def new_fcurve(data_path: str, index: int = 0, group: str = ""):
            fc = bag.fcurves.new(data_path, index=index)
            if group:
                fc.group = bag.groups.get(group) or bag.groups.new(group)
            return fc

        return new_fcurve, slot

    def new_fcurve_legacy(data_path: str, index: int = 0, group: str = ""):
        return action.fcurves.new(data_path, index=index, action_group=group)

    return new_fcurve_legacy, None


def assign_action(id_block, action: bpy.types.Action, slot) -> None:
    ad = id_block.animation_data or id_block.animation_data_create()
    ad.action = action
    if slot is not None:
        ad.action_slot = slot


def action_fcurves(action: bpy.types.Action, slot=None) -> list:
    """Every F-curve of ``action`` (of ``slot`` on 4.4+)."""
    if not is_slotted(action) or not action.layers:
        return list(action.fcurves) if hasattr(action, "fcurves") else []
    out = []
    for layer in action.layers:
        for strip in layer.strips:
            for bag in strip.channelbags:
                if slot is None or bag.slot == slot:
                    out.extend(bag.fcurves)
    return out


def write_keys(fc, frames: np.ndarray, values: np.ndarray, interpolation: str = "LINEAR") -> None:
    """Append keys to an empty F-curve: ``add``, two ``foreach_set`` (co, interpolation) and one
    ``update`` (sorts and sets the handles)."""
    n = len(frames)
    co = np.empty(2 * n, dtype=np.float32)
    co[0::2] = frames
    co[1::2] = values
    kp = fc.keyframe_points
    kp.add(n)
    kp.foreach_set("co", co)
    # int32: the enum's C type, so foreach_set copies the buffer instead of converting item by item
    kp.foreach_set("interpolation", np.full(n, _interpolation_value(interpolation), dtype=np.int32))
    fc.update()


def key_pose(
    arm_ob: bpy.types.Object,
    frames: np.ndarray,
    quaternions: np.ndarray,
    pelvis_location: np.ndarray | None = None,
    name: str | None = None,
) -> bpy.types.Action:
    """Key the 55 bones' rotations (N, 55, 4 WXYZ) and, optionally, the ``pelvis`` location
    (N, 3) at ``frames`` (N,) in a new action assigned to ``arm_ob``."""
    frames = np.asarray(frames, dtype=np.float64)
    q = np.asarray(quaternions, dtype=np.float64)
    action = bpy.data.actions.new(name or f"{arm_ob.name}_motion")
    new_fc, slot = fcurve_factory(action, "OBJECT", arm_ob.name)
    for pb in arm_ob.pose.bones:
        pb.rotation_mode = "QUATERNION"
    for k, bone in enumerate(JOINT_NAMES):
        path = f'pose.bones["{bone}"].rotation_quaternion'
        for c in range(4):
            write_keys(new_fc(path, c, bone), frames, q[:, k, c])
    if pelvis_location is not None:
        loc = np.asarray(pelvis_location, dtype=np.float64)
        for c in range(3):
            write_keys(new_fc('pose.bones["pelvis"].location', c, "pelvis"), frames, loc[:, c])
    assign_action(arm_ob, action, slot)
    return action


def key_shape_values(
    key: bpy.types.Key, frames: np.ndarray, names: list[str], values: np.ndarray, name: str | None = None
) -> bpy.types.Action:
    """Key shape-key values (N, K) of ``names`` at ``frames`` in a new action assigned to the mesh's
    ``Key``. Slider ranges are widened first where needed (values are clamped to them)."""
    frames = np.asarray(frames, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    blocks = key.key_blocks
    for j, n in enumerate(names):
        kb = blocks[n]
        lo, hi = float(v[:, j].min(initial=0.0)), float(v[:, j].max(initial=0.0))
        kb.slider_min = max(-10.0, min(kb.slider_min, np.floor(lo * 1.5)))
        kb.slider_max = min(10.0, max(kb.slider_max, np.ceil(hi * 1.5)))
    action = bpy.data.actions.new(name or f"{key.name}_motion")
    new_fc, slot = fcurve_factory(action, "KEY", key.name)
    for j, n in enumerate(names):
        write_keys(new_fc(f'key_blocks["{n}"].value', 0, "Expression"), frames, v[:, j])
    assign_action(key, action, slot)
    return action
