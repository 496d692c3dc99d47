"""Re-bake the ``PoseCorrectives`` key for the rig's current pose (button ``pixie.bake_pose_correctives``)."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..io import convert
from ..io.constants import JOINT_NAMES, ROOT_BONE
from ..io.schema import PackageData, find_package_by_hash
from . import shape_keys


def local_rotations(arm: bpy.types.Object) -> np.ndarray:
    """(55, 3, 3) effective relative rotations of the posed bones (constraints included), in
    SMPL-X coordinates: all rest frames are equal, so ``R_k = W_parentᵀ·W_k`` with ``W`` the
    orthonormalised pose matrices in armature space."""
    pbs = arm.pose.bones

    def world(name):
        m = np.array(pbs[name].matrix.to_3x3())
        u, _s, vt = np.linalg.svd(m)
        return u @ vt

    W = {n: world(n) for n in (ROOT_BONE, *JOINT_NAMES)}
    out = np.empty((len(JOINT_NAMES), 3, 3))
    for k, name in enumerate(JOINT_NAMES):
        parent = pbs[name].parent.name if pbs[name].parent else ROOT_BONE
        out[k] = W[parent].T @ W[name]
    return out


def locate_package(arm: bpy.types.Object, cache_dirs) -> PackageData:
    sha = arm.get("pixie_package_sha256", "")
    result_file = arm.get("pixie_result_file", "")
    dirs = [Path(result_file).parent] if result_file else []
    return find_package_by_hash(sha, dirs, cache_dirs)


def bake(arm: bpy.types.Object, body: bpy.types.Object, package: PackageData) -> float:
    """Write ``posedirs·(R − I)`` of the current pose into ``PoseCorrectives``; returns the max
    offset (metres)."""
    posedirs = package.load("posedirs")["posedirs"].astype(np.float32)
    feat = convert.pose_feature(local_rotations(arm)).astype(np.float32)
    offsets = convert.smplx_to_blender(posedirs @ feat).astype(np.float32)
    shape_keys.set_baked_correctives(body, offsets)
    return float(np.abs(offsets).max(initial=0.0))
