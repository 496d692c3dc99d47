"""Body-pose assembly, absolute-to-relative conversion and PIXIE's head-pose check. Pure functions
on rotation matrices (column vectors)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .. import constants as C
from ..geometry.rotations import euler_xyz_to_rotmat, rotmat_to_euler_xyz


def assemble_body_pose(
    partbody: torch.Tensor, neck: torch.Tensor, head: torch.Tensor, left_wrist: torch.Tensor,
    right_wrist: torch.Tensor,
) -> torch.Tensor:
    """Fill the 21 ``body_pose`` slots (SMPL-X joints 1..21).

    Args:
        partbody: (B, 17, 3, 3) joints of :data:`constants.PARTBODY_SLOTS`.
        neck, head, left_wrist, right_wrist: (B, 1, 3, 3).

    Returns:
        (B, 21, 3, 3).
    """
    b = partbody.shape[0]
    out = partbody.new_empty(b, 21, 3, 3)
    out[:, list(C.PARTBODY_SLOTS)] = partbody
    out[:, C.BODY_SLOT_NECK] = neck[:, 0]
    out[:, C.BODY_SLOT_HEAD] = head[:, 0]
    out[:, C.BODY_SLOT_LEFT_WRIST] = left_wrist[:, 0]
    out[:, C.BODY_SLOT_RIGHT_WRIST] = right_wrist[:, 0]
    return out


def parent_rotation(global_orient: torch.Tensor, body_pose: torch.Tensor, chain: Sequence[int]) -> torch.Tensor:
    """Absolute rotation of ``chain[1]`` (the parent of ``chain[0]``): the product of the relative
    rotations from the root down, ``R_root · ... · R_parent``.

    Args:
        global_orient: (B, 1, 3, 3); body_pose: (B, 21, 3, 3); chain: joint first, root last.

    Returns:
        (B, 3, 3).
    """
    full = torch.cat([global_orient, body_pose], dim=1)
    acc = torch.eye(3, dtype=full.dtype, device=full.device).expand(full.shape[0], 3, 3)
    for j in chain[1:]:
        acc = full[:, j] @ acc
    return acc


def absolute_to_relative(global_orient: torch.Tensor, body_pose: torch.Tensor, chain: Sequence[int]) -> torch.Tensor:
    """Replace the absolute rotation stored in the slot of ``chain[0]`` by its relative rotation
    ``R_parentᵀ · R_abs``. Returns a new (B, 21, 3, 3) tensor."""
    slot = chain[0] - 1
    rel = parent_rotation(global_orient, body_pose, chain).transpose(1, 2) @ body_pose[:, slot]
    out = body_pose.clone()
    out[:, slot] = rel
    return out


def check_head_pose(body_pose: torch.Tensor, limits_deg: Sequence[float] = C.HEAD_EULER_LIMITS_DEG) -> torch.Tensor:
    """PIXIE's ``check_pose``: decompose the relative head rotation into intrinsic x-y-z Euler
    angles, set each angle outside its limit (pitch 20°, yaw 70°, roll 10°) to **zero** (not to the
    limit), and rebuild the matrix — also when nothing changed, as upstream does.

    Args:
        body_pose: (B, 21, 3, 3).

    Returns:
        A new (B, 21, 3, 3) tensor.
    """
    slot = C.BODY_SLOT_HEAD
    euler = rotmat_to_euler_xyz(body_pose[:, slot])
    lim = torch.tensor([d * math.pi / 180.0 for d in limits_deg], dtype=euler.dtype, device=euler.device)
    inside = euler == torch.maximum(torch.minimum(euler, lim), -lim)
    euler = torch.where(inside, euler, torch.zeros_like(euler))
    out = body_pose.clone()
    out[:, slot] = euler_xyz_to_rotmat(euler)
    return out
