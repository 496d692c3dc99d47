"""Frame and rotation conversions (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from pixie_blender.io import convert
from tests.support.fake_result import axis_angle_to_matrix


def _random_rotations(n, seed=0):
    rng = np.random.default_rng(seed)
    return axis_angle_to_matrix(rng.normal(size=(n, 3)) * 1.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quaternion_round_trip(dtype):
    R = _random_rotations(500).astype(dtype)
    # include the awkward cases: identity, 180° turns about each axis
    special = np.stack([np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])])
    R = np.concatenate([R, special.astype(dtype)])
    q = convert.rotmat_to_quat_wxyz(R)
    assert q.shape == (len(R), 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    assert (q[:, 0] >= 0).all()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(convert.quat_wxyz_to_rotmat(q), R, atol=tol)


def test_quaternion_matches_known_values():
    q = convert.rotmat_to_quat_wxyz(axis_angle_to_matrix(np.array([0.0, 0.0, np.pi / 2])))
    np.testing.assert_allclose(q, [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)], atol=1e-12)


def test_hemisphere_continuity():
    q = convert.rotmat_to_quat_wxyz(_random_rotations(50, seed=1))
    flipped = q.copy()
    flipped[1::2] *= -1
    cont = convert.make_quats_continuous(flipped)
    assert (np.sum(cont[1:] * cont[:-1], axis=1) >= 0).all()
    np.testing.assert_allclose(np.abs(np.sum(cont * q, axis=1)), 1.0, atol=1e-12)


def test_axis_mapping_is_the_bone_frame():
    p = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(convert.smplx_to_blender(p), [[1.0, -3.0, 2.0]])
    np.testing.assert_allclose(convert.smplx_to_blender(p), p @ convert.SMPLX_TO_BLENDER.T)
    np.testing.assert_allclose(convert.blender_to_smplx(convert.smplx_to_blender(p)), p)
    # the mapping is +90° about X, the frame of a bone with a +Z tail and roll 0
    np.testing.assert_allclose(
        convert.SMPLX_TO_BLENDER, axis_angle_to_matrix(np.array([np.pi / 2, 0, 0])), atol=1e-15
    )


def test_upright_fix_about_the_pelvis():
    rng = np.random.default_rng(2)
    j0 = rng.normal(size=3)
    R0 = axis_angle_to_matrix(np.array([np.pi, 0.0, 0.0])) @ _random_rotations(1, 3)[0]
    x = rng.normal(size=(20, 3))
    v = (x - j0) @ R0.T + j0  # the root turning about J0 (PIXIE frame)
    up = convert.pixie_to_upright(v, j0)
    expected = (x - j0) @ convert.upright_global_orient(R0).T + j0
    np.testing.assert_allclose(up, expected, atol=1e-12)
    np.testing.assert_allclose(
        convert.pixie_to_blender(v, j0), convert.smplx_to_blender(expected), atol=1e-12
    )


def test_pose_feature_layout():
    R = _random_rotations(55, 4)
    f = convert.pose_feature(R)
    assert f.shape == (486,)
    # joint 1, entry (0, 1) is feature 1; joint 2, entry (2, 2) is 9 + 8
    assert f[1] == pytest.approx(R[1, 0, 1])
    assert f[17] == pytest.approx(R[2, 2, 2] - 1.0)


def test_camera_reproduces_cam_image_px():
    """A point of armature space seen by the orthographic camera lands on u = a·x + bx, v = a·y + by."""
    rng = np.random.default_rng(5)
    a, bx, by = 250.0, 310.0, 200.0
    W, H = 640, 480
    j0 = np.array([0.01, -0.3, 0.02])
    cam = convert.orthographic_camera(np.array([a, bx, by]), W, H, j0)
    pix = rng.normal(size=(30, 3))  # PIXIE-frame points
    b = convert.pixie_to_blender(pix, j0)  # armature space
    # orthographic projection: camera looks along +Y, +X right, +Z up; ortho_scale spans max(W, H)
    cx, _cy, cz = cam.location
    px_per_m = max(W, H) / cam.ortho_scale
    u = (W - 1) / 2 + (b[:, 0] - cx) * px_per_m
    v = (H - 1) / 2 - (b[:, 2] - cz) * px_per_m
    expected = convert.project_cam_image_px(pix, [a, bx, by])
    np.testing.assert_allclose(np.stack([u, v], -1), expected, atol=1e-9)
    assert cam.resolution == (W, H)
    assert b[:, 1].min() > cam.location[1]  # everything in front of the camera


def test_shaped_joints_linear():
    rng = np.random.default_rng(6)
    Jt = rng.normal(size=(55, 3))
    Js = rng.normal(size=(55, 3, 200))
    Je = rng.normal(size=(55, 3, 50))
    b = rng.normal(size=10)  # fewer betas than the package has
    e = rng.normal(size=50)
    J = convert.shaped_joints(Jt, Js, Je, b, e)
    np.testing.assert_allclose(J, Jt + Js[..., :10] @ b + Je @ e, atol=1e-12)
