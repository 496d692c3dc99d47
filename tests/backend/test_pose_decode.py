"""Body-pose assembly, absolute -> relative and check_pose, against independent forward kinematics."""


import numpy as np
import torch
from pixie_backend import constants as C
from pixie_backend.body.pose import absolute_to_relative, assemble_body_pose, check_head_pose, parent_rotation
from scipy.spatial.transform import Rotation


def _rand(n, seed):
    return torch.tensor(Rotation.random(n, random_state=seed).as_matrix(), dtype=torch.float64)


def test_slot_table_matches_upstream_concatenation():
    b = 2
    part, neck, head, lw, rw = _rand(b * 17, 1).reshape(b, 17, 3, 3), _rand(b, 2)[:, None], _rand(b, 3)[:, None], \
        _rand(b, 4)[:, None], _rand(b, 5)[:, None]
    got = assemble_body_pose(part, neck, head, lw, rw)
    # upstream: cat([part[:11], neck, part[11:13], head, part[13:17], left_wrist, right_wrist])
    want = torch.cat([part[:, :11], neck, part[:, 11:13], head, part[:, 13:17], lw, rw], dim=1)
    assert torch.equal(got, want)
    assert C.JOINT_INDEX["neck"] - 1 == C.BODY_SLOT_NECK and C.JOINT_INDEX["head"] - 1 == C.BODY_SLOT_HEAD
    assert C.JOINT_INDEX["left_wrist"] - 1 == C.BODY_SLOT_LEFT_WRIST


def _global_rotations(full: np.ndarray) -> np.ndarray:
    """Independent FK: world rotation of every joint from the parent table."""
    g = np.zeros_like(full)
    for j, p in enumerate(C.SMPLX_PARENTS[: full.shape[0]]):
        g[j] = full[j] if p < 0 else g[p] @ full[j]
    return g


def test_absolute_to_relative_reproduces_the_absolute_rotation():
    b = 3
    glob = _rand(b, 10)[:, None]
    body = _rand(b * 21, 11).reshape(b, 21, 3, 3)
    absolute = _rand(b, 12)
    for chain in (C.HEAD_CHAIN, C.LEFT_WRIST_CHAIN, C.RIGHT_WRIST_CHAIN):
        joint = chain[0]
        body_abs = body.clone()
        body_abs[:, joint - 1] = absolute
        rel = absolute_to_relative(glob, body_abs, chain)
        assert not torch.equal(rel, body_abs) and torch.equal(body_abs[:, joint - 1], absolute)  # no mutation
        for i in range(b):
            full = torch.cat([glob[i], rel[i]]).numpy()
            world = _global_rotations(full)
            np.testing.assert_allclose(world[joint], absolute[i].numpy(), atol=1e-12)
        # other slots untouched
        mask = torch.ones(21, dtype=torch.bool)
        mask[joint - 1] = False
        assert torch.equal(rel[:, mask], body_abs[:, mask])


def test_parent_rotation_is_root_first_product():
    glob = _rand(1, 20)[:, None]
    body = _rand(21, 21)[None]
    got = parent_rotation(glob, body, C.HEAD_CHAIN)[0].numpy()
    full = torch.cat([glob[0], body[0]]).numpy()
    np.testing.assert_allclose(got, full[0] @ full[3] @ full[6] @ full[9] @ full[12], atol=1e-12)


def _head(angles_deg):
    body = torch.eye(3, dtype=torch.float64).repeat(len(angles_deg), 21, 1, 1)
    body[:, C.BODY_SLOT_HEAD] = torch.tensor(Rotation.from_euler("XYZ", np.radians(angles_deg)).as_matrix())
    return body


def test_check_pose_zeroes_out_of_range_angles_not_clamps():
    body = _head([[25.0, 10.0, 5.0], [5.0, 75.0, -3.0], [-4.0, 30.0, 14.9], [19.0, -69.0, 9.5]])
    got = check_head_pose(body)
    e = np.degrees(Rotation.from_matrix(got[:, C.BODY_SLOT_HEAD].numpy()).as_euler("XYZ"))
    np.testing.assert_allclose(e[0], [0.0, 10.0, 5.0], atol=1e-9)  # pitch 25 > 20 -> 0 (not 20)
    np.testing.assert_allclose(e[1], [5.0, 0.0, -3.0], atol=1e-9)
    np.testing.assert_allclose(e[2], [-4.0, 30.0, 0.0], atol=1e-9)  # roll 14.9 > 10 -> 0
    np.testing.assert_allclose(e[3], [19.0, -69.0, 9.5], atol=1e-9)  # inside: unchanged
    others = [s for s in range(21) if s != C.BODY_SLOT_HEAD]
    assert torch.equal(got[:, others], body[:, others])


def test_check_pose_boundary():
    body = _head([[19.99, 0.0, 0.0], [20.01, 0.0, 0.0], [0.0, -69.99, 0.0], [0.0, 0.0, -10.01]])
    e = np.degrees(Rotation.from_matrix(check_head_pose(body)[:, C.BODY_SLOT_HEAD].numpy()).as_euler("XYZ"))
    np.testing.assert_allclose(e, [[19.99, 0, 0], [0, 0, 0], [0, -69.99, 0], [0, 0, 0]], atol=1e-9)
