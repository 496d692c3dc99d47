"""Rotation conversions used by PIXIE. Pure, batch-agnostic torch functions.

Conventions (fixed for the whole module):

* Rotation matrices act on **column vectors**: ``x' = R @ x``; shape ``(..., 3, 3)``.
* 6D is PIXIE/ExPose's **interleaved** layout: ``x`` (..., 6) reshaped to (..., 3, 2); the columns
  ``a = x[0::2]`` and ``b = x[1::2]`` are Gram-Schmidt-orthonormalised into the first two **columns**
  of ``R``. (Not pytorch3d's layout, which uses the contiguous halves as rows.)
* Euler angles are **intrinsic x-y-z**: ``R = Rx(a) @ Ry(b) @ Rz(c)``, radians.
* Quaternions are ``(w, x, y, z)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: D = diag(1, -1, -1): mirrors a right-hand rotation into the left-hand frame (and back).
_FLIP_SIGNS = (1.0, -1.0, -1.0)


def rot6d_interleaved_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """Decode PIXIE's interleaved 6D rotation.

    Args:
        x: (..., 6) network output.

    Returns:
        (..., 3, 3) rotation matrices with columns ``b1 = a/|a|``,
        ``b2 = normalize(b - (b1·b) b1)``, ``b3 = b1 × b2``.
    """
    if x.shape[-1] != 6:
        raise ValueError(f"expected (..., 6) 6D rotations, got shape {tuple(x.shape)}")
    m = x.reshape(*x.shape[:-1], 3, 2)
    a, b = m[..., 0], m[..., 1]
    b1 = F.normalize(a, dim=-1)
    b2 = F.normalize(b - (b1 * b).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def rot6d_grouped_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """Decode a flat (..., 6·J) 6D vector into (..., J, 3, 3); joint j is ``x[..., 6j:6j+6]``."""
    if x.shape[-1] % 6:
        raise ValueError(f"last dimension {x.shape[-1]} is not a multiple of 6")
    return rot6d_interleaved_to_rotmat(x.reshape(*x.shape[:-1], x.shape[-1] // 6, 6))


def euler_xyz_to_quat(angles: torch.Tensor) -> torch.Tensor:
    """Intrinsic x-y-z Euler angles (..., 3) to quaternions (..., 4) ``(w, x, y, z)``,
    the product ``q = qx(a) ⊗ qy(b) ⊗ qz(c)``."""
    half = angles * 0.5
    cx, cy, cz = torch.cos(half).unbind(-1)
    sx, sy, sz = torch.sin(half).unbind(-1)
    return torch.stack(
        [
            cx * cy * cz - sx * sy * sz,
            sx * cy * cz + cx * sy * sz,
            cx * sy * cz - sx * cy * sz,
            cx * cy * sz + sx * sy * cz,
        ],
        dim=-1,
    )


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Quaternions (..., 4) ``(w, x, y, z)``, normalised first, to rotation matrices (..., 3, 3)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    ww, xx, yy, zz = w * w, x * x, y * y, z * z
    wx, wy, wz, xy, xz, yz = w * x, w * y, w * z, x * y, x * z, y * z
    rows = [
        ww + xx - yy - zz, 2 * xy - 2 * wz, 2 * wy + 2 * xz,
        2 * wz + 2 * xy, ww - xx + yy - zz, 2 * yz - 2 * wx,
        2 * xz - 2 * wy, 2 * wx + 2 * yz, ww - xx - yy + zz,
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def euler_xyz_to_rotmat(angles: torch.Tensor) -> torch.Tensor:
    """Intrinsic x-y-z Euler angles (..., 3), radians, to ``Rx(a) @ Ry(b) @ Rz(c)`` (..., 3, 3).

    Computed through the quaternion, as upstream PIXIE does (the jaw and ``check_pose``).
    """
    return quat_to_rotmat(euler_xyz_to_quat(angles))


def rotmat_to_euler_xyz(rotmat: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`euler_xyz_to_rotmat` for non-degenerate rotations.

    Args:
        rotmat: (..., 3, 3).

    Returns:
        (..., 3) angles ``(a, b, c)`` with ``b`` in [-pi/2, pi/2]. At gimbal lock (``|b| = pi/2``)
        the third angle is set to 0, as scipy and upstream do.
    """
    r02 = rotmat[..., 0, 2].clamp(-1.0, 1.0)
    b = torch.asin(r02)
    locked = (1.0 - r02.abs()) < 1e-7
    a = torch.atan2(-rotmat[..., 1, 2], rotmat[..., 2, 2])
    c = torch.atan2(-rotmat[..., 0, 1], rotmat[..., 0, 0])
    # gimbal lock: only a ± c is defined; put everything into a
    a_locked = torch.atan2(rotmat[..., 2, 1], rotmat[..., 1, 1])
    a = torch.where(locked, a_locked, a)
    c = torch.where(locked, torch.zeros_like(c), c)
    return torch.stack([a, b, c], dim=-1)


def flip_pose_lr(rotmat: torch.Tensor) -> torch.Tensor:
    """Mirror rotations between the right- and left-hand frames: ``D @ R @ D``, D = diag(1,-1,-1).

    PIXIE's hand regressor only knows right hands; the left crop is flipped before encoding and
    its rotations are flipped back with this. (..., 3, 3) -> (..., 3, 3).
    """
    d = rotmat.new_tensor(_FLIP_SIGNS)
    return rotmat * d[:, None] * d[None, :]


def axis_angle_to_rotmat(aa: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula. (..., 3) axis-angle to (..., 3, 3)."""
    angle = aa.norm(dim=-1, keepdim=True)
    small = angle < 1e-8
    axis = aa / torch.where(small, torch.ones_like(angle), angle)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*aa.shape[:-1], 3, 3)
    s = torch.sin(angle)[..., None]
    c = torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    r = eye + s * k + (1 - c) * (k @ k)
    return torch.where(small[..., None], eye + _skew(aa), r)


def _skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)


def rotmat_to_quat(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) to unit quaternions (..., 4) ``(w, x, y, z)`` with ``w >= 0``.

    Uses the largest of the four candidate denominators (Shepperd), so it is stable for every
    rotation, 180° included.
    """
    m = rotmat
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4 * (w², x², y², z²)
    cand = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    ).clamp_min(0.0)
    r = torch.sqrt(cand)  # 2|w|, 2|x|, 2|y|, 2|z|
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s21, s02, s10 = m[..., 2, 1] + m[..., 1, 2], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1]
    # each row: the quaternion computed from one candidate (times 2*r)
    q_w = torch.stack([r[..., 0] ** 2, d21, d02, d10], dim=-1)
    q_x = torch.stack([d21, r[..., 1] ** 2, s10, s02], dim=-1)
    q_y = torch.stack([d02, s10, r[..., 2] ** 2, s21], dim=-1)
    q_z = torch.stack([d10, s02, s21, r[..., 3] ** 2], dim=-1)
    options = torch.stack([q_w, q_x, q_y, q_z], dim=-2)  # (..., 4 candidates, 4)
    best = cand.argmax(dim=-1)
    q = torch.gather(options, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def rotmat_to_axis_angle(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) to axis-angle vectors (..., 3), angle in [0, pi]."""
    q = rotmat_to_quat(rotmat)
    xyz = q[..., 1:]
    s = xyz.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(s, q[..., :1])
    # angle / sin(angle/2), with the small-angle limit 2
    scale = torch.where(s > 1e-8, angle / s.clamp_min(1e-12), torch.full_like(s, 2.0))
    return xyz * scale
