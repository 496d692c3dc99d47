"""Rotation conventions against independent computations (numpy, scipy)."""

import numpy as np
import pytest
import torch
from pixie_backend.geometry.rotations import (
    axis_angle_to_rotmat,
    euler_xyz_to_rotmat,
    flip_pose_lr,
    rot6d_grouped_to_rotmat,
    rot6d_interleaved_to_rotmat,
    rotmat_to_axis_angle,
    rotmat_to_euler_xyz,
    rotmat_to_quat,
)
from scipy.spatial.transform import Rotation

RNG = np.random.default_rng(1)


def gram_schmidt_columns(x6: np.ndarray) -> np.ndarray:
    """Independent float64 reference: columns a = x[0::2], b = x[1::2]."""
    a, b = x6[0::2], x6[1::2]
    c1 = a / np.linalg.norm(a)
    c2 = b - c1 * np.dot(c1, b)
    c2 /= np.linalg.norm(c2)
    return np.stack([c1, c2, np.cross(c1, c2)], axis=1)


def pytorch3d_layout(x6: np.ndarray) -> np.ndarray:
    """pytorch3d's rotation_6d_to_matrix: contiguous halves, Gram-Schmidt, stacked as ROWS."""
    a, b = x6[:3], x6[3:]
    r1 = a / np.linalg.norm(a)
    r2 = b - r1 * np.dot(r1, b)
    r2 /= np.linalg.norm(r2)
    return np.stack([r1, r2, np.cross(r1, r2)], axis=0)


def test_6d_interleaved_matches_gram_schmidt_on_columns():
    x = RNG.normal(size=(64, 6))
    got = rot6d_interleaved_to_rotmat(torch.tensor(x)).numpy()
    want = np.stack([gram_schmidt_columns(v) for v in x])
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(got @ got.transpose(0, 2, 1), np.broadcast_to(np.eye(3), got.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(got), 1.0, atol=1e-12)


def test_6d_is_not_pytorch3d_layout_but_related_by_transpose():
    x = RNG.normal(size=(16, 6))
    got = rot6d_interleaved_to_rotmat(torch.tensor(x)).numpy()
    p3d = np.stack([pytorch3d_layout(v) for v in x])
    assert np.abs(got - p3d).max() > 0.1  # a wrong layout loads fine and silently mis-poses
    regrouped = np.concatenate([x[:, 0::2], x[:, 1::2]], axis=1)
    np.testing.assert_allclose(got, np.stack([pytorch3d_layout(v).T for v in regrouped]), atol=1e-12)


def test_6d_grouped_splits_joints_in_blocks_of_six():
    x = RNG.normal(size=(3, 17 * 6))
    got = rot6d_grouped_to_rotmat(torch.tensor(x))
    assert got.shape == (3, 17, 3, 3)
    np.testing.assert_allclose(got[1, 5].numpy(), gram_schmidt_columns(x[1, 30:36]), atol=1e-12)
    with pytest.raises(ValueError):
        rot6d_grouped_to_rotmat(torch.zeros(2, 7))


def _rx(a):
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _ry(a):
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def _rz(a):
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_jaw_euler_order_is_x_then_y_then_z():
    angles = RNG.uniform(-1.2, 1.2, size=(32, 3))
    got = euler_xyz_to_rotmat(torch.tensor(angles)).numpy()
    want = np.stack([_rx(a) @ _ry(b) @ _rz(c) for a, b, c in angles])
    np.testing.assert_allclose(got, want, atol=1e-12)
    wrong = np.stack([_rz(c) @ _ry(b) @ _rx(a) for a, b, c in angles])
    assert np.abs(got - wrong).max() > 0.05
    # scipy: uppercase = intrinsic
    np.testing.assert_allclose(got, Rotation.from_euler("XYZ", angles).as_matrix(), atol=1e-12)


def test_matrix_to_euler_round_trip_and_scipy():
    angles = np.concatenate(
        [RNG.uniform(-3, 3, (64, 1)), RNG.uniform(-1.5, 1.5, (64, 1)), RNG.uniform(-3, 3, (64, 1))], 1)
    r = Rotation.from_euler("XYZ", angles).as_matrix()
    got = rotmat_to_euler_xyz(torch.tensor(r)).numpy()
    np.testing.assert_allclose(got, Rotation.from_matrix(r).as_euler("XYZ"), atol=1e-9)
    np.testing.assert_allclose(euler_xyz_to_rotmat(torch.tensor(got)).numpy(), r, atol=1e-12)
    # gimbal lock: third angle zero, rotation still reproduced
    locked = Rotation.from_euler("XYZ", [0.3, np.pi / 2, 0.2]).as_matrix()
    e = rotmat_to_euler_xyz(torch.tensor(locked)).numpy()
    assert e[2] == 0.0
    np.testing.assert_allclose(euler_xyz_to_rotmat(torch.tensor(e)).numpy(), locked, atol=1e-7)


def test_flip_pose_is_d_m_d_and_negates_upstream_elements():
    m = Rotation.random(20, random_state=3).as_matrix()
    d = np.diag([1.0, -1.0, -1.0])
    got = flip_pose_lr(torch.tensor(m)).numpy()
    np.testing.assert_allclose(got, d @ m @ d, atol=1e-15)
    flat = m.reshape(-1, 9).copy()
    flat[:, [1, 2, 3, 6]] *= -1  # upstream util.flip_pose on the row-major flattened matrix
    np.testing.assert_allclose(got.reshape(-1, 9), flat, atol=1e-15)
    # mirroring twice is the identity; the mirror of a rotation about X is itself
    np.testing.assert_allclose(flip_pose_lr(torch.tensor(got)).numpy(), m, atol=1e-15)
    rx = _rx(0.7)
    np.testing.assert_allclose(flip_pose_lr(torch.tensor(rx)).numpy(), rx, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_axis_angle_round_trips_including_0_and_pi(dtype):
    aa = Rotation.random(200, random_state=4).as_rotvec()
    aa = np.concatenate([aa, [[0, 0, 0], [1e-9, 0, 0], [np.pi, 0, 0], [0, -np.pi, 0],
                              np.array([1, 1, 1]) / np.sqrt(3) * (np.pi - 1e-6)]])
    r = Rotation.from_rotvec(aa).as_matrix()
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(axis_angle_to_rotmat(torch.tensor(aa, dtype=dtype)).numpy(), r, atol=tol)
    back = rotmat_to_axis_angle(torch.tensor(r, dtype=dtype)).numpy()
    # compare as rotations (axis-angle is ambiguous at pi)
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), r, atol=tol * 10)
    assert (np.linalg.norm(back, axis=1) <= np.pi + 1e-6).all()
    q = rotmat_to_quat(torch.tensor(r, dtype=dtype)).numpy()
    assert (q[:, 0] >= 0).all()
    dots = (q * Rotation.from_matrix(r).as_quat(scalar_first=True)).sum(1)
    np.testing.assert_allclose(np.abs(dots), 1, atol=tol * 10)


def test_axis_angle_gradients_are_finite():
    aa = torch.tensor(Rotation.random(8, random_state=5).as_rotvec(), requires_grad=True)
    axis_angle_to_rotmat(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()
