"""The add-on keeps its own copy of the SMPL-X joint table; it must equal the backend's."""

from __future__ import annotations

import pytest

from pixie_blender.io import constants


def test_joint_table_equals_backend():
    backend = pytest.importorskip("pixie_backend.constants")
    assert constants.JOINT_NAMES == tuple(backend.SMPLX_JOINT_NAMES)
    assert constants.PARENTS == tuple(backend.SMPLX_PARENTS)
    assert constants.NUM_POSE_BASIS == backend.NUM_POSE_BASIS
    assert constants.NUM_BETAS == backend.NUM_BETAS
    assert constants.NUM_EXPRESSION == backend.NUM_EXPRESSION


def test_fake_generator_uses_the_same_table():
    from tests.support import fake_result

    assert tuple(fake_result.JOINT_NAMES) == constants.JOINT_NAMES
    assert tuple(int(p) for p in fake_result.PARENTS) == constants.PARENTS


def test_parents_precede_children():
    for k, p in enumerate(constants.PARENTS):
        assert p < k
