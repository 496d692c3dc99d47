"""Contract tests use the backend's synthetic-data fixtures."""

from tests.backend.conftest import astronaut, small_data_dir, small_pixie, two_people  # noqa: F401
