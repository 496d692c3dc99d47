"""Fixtures for the bpy-free add-on tests: synthetic result files written by tests/support/fake_result.py."""

from __future__ import annotations

import pytest

from tests.support.fake_result import make_fixture


@pytest.fixture(scope="session")
def fake(tmp_path_factory):
    """One small body, two persons, with albedo and displacement."""
    return make_fixture(
        tmp_path_factory.mktemp("io-fake"),
        variant="small",
        num_persons=2,
        seed=5,
        with_albedo=True,
        with_displacement=True,
    )
