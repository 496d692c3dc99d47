"""Frame and rotation conversions between the PIXIE frame, SMPL-X and Blender (numpy only).

Frames (``docs/result-format.md``):

* **PIXIE frame**: x right, y down, z away from the camera. ``global_orient`` holds the ≈180°
  rotation about X that turns the y-up body upright in it; the root rotates about ``J[0]``.
* **Upright SMPL-X frame**: y up. The root rotation becomes ``D·global_orient`` with
  ``D = diag(1, −1, −1)``, so every PIXIE-frame point ``v`` maps to ``D·v + (I − D)·J[0]``.
* **Blender**: z up, the character faces −Y: ``(x, y, z) → (x, −z, y)``, i.e. the rotation
  :data:`SMPLX_TO_BLENDER` (+90° about X).

Bones follow the official SMPL-X add-on: head at the joint, tail along +Z, roll 0. Such a bone's
rest frame in armature space *is* :data:`SMPLX_TO_BLENDER`, so bone-local coordinates are SMPL-X
coordinates and a SMPL-X relative rotation goes unchanged into ``pose_bone.rotation_quaternion``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: SMPL-X (y up) → Blender (z up): (x, y, z) → (x, −z, y); also a tail-+Z, roll-0 bone's frame.
SMPLX_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
#: The upright fix: 180° about X.
UPRIGHT_FIX = np.diag([1.0, -1.0, -1.0])


def smplx_to_blender(points: np.ndarray) -> np.ndarray:
    """Map points or directions (..., 3) from the y-up SMPL-X frame to Blender's z-up frame."""
    p = np.asarray(points)
    out = np.empty(p.shape, dtype=np.result_type(p.dtype, np.float32))
    out[..., 0] = p[..., 0]
    out[..., 1] = -p[..., 2]
    out[..., 2] = p[..., 1]
    return out


def smplx_dirs_to_blender(dirs: np.ndarray) -> np.ndarray:
    """Map blend-shape directions (V, 3, K) (axis 1 = xyz) to Blender's frame."""
    d = np.asarray(dirs)
    out = np.empty(d.shape, dtype=d.dtype)
    out[:, 0] = d[:, 0]
    out[:, 1] = -d[:, 2]
    out[:, 2] = d[:, 1]
    return out


def blender_to_smplx(points: np.ndarray) -> np.ndarray:
    """Inverse of :func:`smplx_to_blender`."""
    p = np.asarray(points)
    out = np.empty(p.shape, dtype=np.result_type(p.dtype, np.float32))
    out[..., 0] = p[..., 0]
    out[..., 1] = p[..., 2]
    out[..., 2] = -p[..., 1]
    return out


def upright_global_orient(global_orient: np.ndarray) -> np.ndarray:
    """``D·R`` for a (…, 3, 3) root rotation: removes PIXIE's 180° X flip."""
    return UPRIGHT_FIX @ np.asarray(global_orient)


def pixie_to_upright(points: np.ndarray, pelvis: np.ndarray) -> np.ndarray:
    """PIXIE-frame points → upright SMPL-X frame: ``D·(v − J0) + J0``."""
    p = np.asarray(points, dtype=np.float64)
    j0 = np.asarray(pelvis, dtype=np.float64)
    return (p - j0) * np.array([1.0, -1.0, -1.0]) + j0


def pixie_to_blender(points: np.ndarray, pelvis: np.ndarray) -> np.ndarray:
    """PIXIE-frame points (e.g. a result's ``vertices``) → Blender armature space."""
    return smplx_to_blender(pixie_to_upright(points, pelvis))


def rotmat_to_quat_wxyz(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) → unit quaternions (..., 4) in Blender's WXYZ order, w ≥ 0.

    Shepperd's method (largest diagonal pivot), computed in float64."""
    R = np.asarray(rot, dtype=np.float64)
    shape = R.shape[:-2]
    R = R.reshape(-1, 3, 3)
    m00, m11, m22 = R[:, 0, 0], R[:, 1, 1], R[:, 2, 2]
    trace = m00 + m11 + m22
    cand = np.stack([trace, m00, m11, m22], axis=1)
    pivot = cand.argmax(axis=1)
    q = np.empty((R.shape[0], 4))
    # pivot 0: w largest
    s = np.sqrt(np.maximum(1.0 + trace, 1e-300)) * 2.0
    q0 = np.stack(
        [
            0.25 * s,
            (R[:, 2, 1] - R[:, 1, 2]) / s,
            (R[:, 0, 2] - R[:, 2, 0]) / s,
            (R[:, 1, 0] - R[:, 0, 1]) / s,
        ],
        axis=1,
    )
    s = np.sqrt(np.maximum(1.0 + m00 - m11 - m22, 1e-300)) * 2.0
    q1 = np.stack(
        [
            (R[:, 2, 1] - R[:, 1, 2]) / s,
            0.25 * s,
            (R[:, 0, 1] + R[:, 1, 0]) / s,
            (R[:, 0, 2] + R[:, 2, 0]) / s,
        ],
        axis=1,
    )
    s = np.sqrt(np.maximum(1.0 - m00 + m11 - m22, 1e-300)) * 2.0
    q2 = np.stack(
        [
            (R[:, 0, 2] - R[:, 2, 0]) / s,
            (R[:, 0, 1] + R[:, 1, 0]) / s,
            0.25 * s,
            (R[:, 1, 2] + R[:, 2, 1]) / s,
        ],
        axis=1,
    )
    s = np.sqrt(np.maximum(1.0 - m00 - m11 + m22, 1e-300)) * 2.0
    q3 = np.stack(
        [
            (R[:, 1, 0] - R[:, 0, 1]) / s,
            (R[:, 0, 2] + R[:, 2, 0]) / s,
            (R[:, 1, 2] + R[:, 2, 1]) / s,
            0.25 * s,
        ],
        axis=1,
    )
    for k, qk in enumerate((q0, q1, q2, q3)):
        sel = pivot == k
        q[sel] = qk[sel]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1.0
    return q.reshape(*shape, 4)


def quat_wxyz_to_rotmat(quat: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) WXYZ (normalised here) → rotation matrices (..., 3, 3)."""
    q = np.asarray(quat, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    R = np.empty(q.shape[:-1] + (3, 3))
    R[..., 0, 0] = 1 - 2 * (y * y + z * z)
    R[..., 0, 1] = 2 * (x * y - w * z)
    R[..., 0, 2] = 2 * (x * z + w * y)
    R[..., 1, 0] = 2 * (x * y + w * z)
    R[..., 1, 1] = 1 - 2 * (x * x + z * z)
    R[..., 1, 2] = 2 * (y * z - w * x)
    R[..., 2, 0] = 2 * (x * z - w * y)
    R[..., 2, 1] = 2 * (y * z + w * x)
    R[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return R


def make_quats_continuous(quats: np.ndarray) -> np.ndarray:
    """Hemisphere continuity along axis 0 of (T, ..., 4): negate q_t when q_t·q_{t−1} < 0."""
    q = np.array(quats, dtype=np.float64, copy=True)
    for t in range(1, q.shape[0]):
        flip = np.sum(q[t] * q[t - 1], axis=-1) < 0
        q[t][flip] *= -1.0
    return q


def blender_pose_rotations(full_pose: np.ndarray) -> np.ndarray:
    """The 55 relative rotations to put on the pose bones: ``full_pose`` with the upright root."""
    rots = np.array(full_pose, dtype=np.float64, copy=True)
    rots[0] = UPRIGHT_FIX @ rots[0]
    return rots


def pose_feature(rotations: np.ndarray) -> np.ndarray:
    """The 486 pose-corrective weights: flattened ``R − I`` of joints 1..54 (row-major)."""
    R = np.asarray(rotations, dtype=np.float64)
    return (R[1:] - np.eye(3)).reshape(-1)


def shaped_joints(
    joints_template: np.ndarray,
    joints_shapedirs: np.ndarray,
    joints_exprdirs: np.ndarray,
    betas: np.ndarray,
    expression: np.ndarray,
) -> np.ndarray:
    """Rest joints ``J = joints_template + joints_shapedirs·betas + joints_exprdirs·expression``
    (y-up SMPL-X frame). ``betas`` may be shorter than the package's shape space."""
    b = np.asarray(betas, dtype=np.float64)
    e = np.asarray(expression, dtype=np.float64)
    J = np.asarray(joints_template, dtype=np.float64).copy()
    J += np.asarray(joints_shapedirs, dtype=np.float64)[..., : b.shape[0]] @ b
    J += np.asarray(joints_exprdirs, dtype=np.float64)[..., : e.shape[0]] @ e
    return J


@dataclass(frozen=True)
class CameraPlan:
    """An orthographic Blender camera in the avatar's armature space that reproduces
    ``cam_image_px``: the avatar overlays the source photo in camera view."""

    ortho_scale: float
    location: tuple[float, float, float]
    rotation_euler: tuple[float, float, float]
    resolution: tuple[int, int]
    clip_end: float


def orthographic_camera(
    cam_image_px: np.ndarray, width: int, height: int, pelvis_smplx: np.ndarray, distance: float = 10.0
) -> CameraPlan:
    """Camera for ``u = a·x + bx, v = a·y + by`` (PIXIE frame, pixel centres, origin at the centre
    of the top-left pixel).

    With the upright fix about the pelvis ``J0`` and the Blender mapping, a point ``b`` of armature
    space has PIXIE ``x = b_x`` and ``y = 2·J0_y − b_z``; the view direction (PIXIE +z) is Blender
    +Y. So the camera looks along +Y with +Z up, one pixel is ``1/a`` metres, and the image centre
    ``((W−1)/2, (H−1)/2)`` sits at ``b_x = (u_c − bx)/a``, ``b_z = 2·J0_y − (v_c − by)/a``.
    """
    a, bx, by = (float(c) for c in np.asarray(cam_image_px, dtype=np.float64))
    if a <= 0:
        raise ValueError("cam_image_px scale must be positive")
    j0 = np.asarray(pelvis_smplx, dtype=np.float64)
    uc, vc = (width - 1) / 2.0, (height - 1) / 2.0
    cx = (uc - bx) / a
    cz = 2.0 * j0[1] - (vc - by) / a
    cy = -j0[2] - distance  # Blender y of the pelvis is -J0_z; stand `distance` in front
    return CameraPlan(
        ortho_scale=max(width, height) / a,
        location=(cx, cy, cz),
        rotation_euler=(np.pi / 2.0, 0.0, 0.0),
        resolution=(int(width), int(height)),
        clip_end=2.0 * distance + 10.0,
    )


def project_cam_image_px(points_pixie: np.ndarray, cam_image_px: np.ndarray) -> np.ndarray:
    """Project PIXIE-frame points to image pixels with ``cam_image_px``."""
    a, bx, by = np.asarray(cam_image_px, dtype=np.float64)
    p = np.asarray(points_pixie, dtype=np.float64)
    return np.stack([a * p[..., 0] + bx, a * p[..., 1] + by], axis=-1)
