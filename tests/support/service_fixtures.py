"""Fixtures of a real ``pixie-backend serve`` (uvicorn on loopback) on small synthetic assets (a
small body and a width-reduced network: no licensed file), shared by the service tests and the
add-on client tests (registered in ``tests/conftest.py``; nothing starts unless a test asks)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.service import start_server, wait_ready

#: Limits small enough to test with small images.
LIMITS = (
    "--max-upload-mb",
    "3",
    "--max-megapixels",
    "1",
    "--max-images",
    "8",
    "--max-queued-jobs",
    "24",
    "--max-running-jobs",
    "8",
    "--max-wait",
    "0.5",
    "--max-video-mb",
    "6",
    "--max-frames",
    "40",
)


@pytest.fixture(scope="session")
def service_data(tmp_path_factory):
    from pixie_backend.synthetic_assets import write_synthetic_data

    d = tmp_path_factory.mktemp("service-data")
    write_synthetic_data(d, body="small", net="tiny", seed=0)
    return d


@pytest.fixture(scope="session")
def served(service_data, tmp_path_factory):
    """One server for the session (model loaded once)."""
    s = start_server(service_data, *LIMITS, stderr_path=tmp_path_factory.mktemp("served") / "stderr.txt")
    yield s
    s.stop()


@pytest.fixture
def http(served):
    import httpx

    with httpx.Client(base_url=served.url, headers=served.headers, timeout=120) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="session")
def photo():
    """scikit-image's astronaut (one person)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def photo_pair(photo):
    """Two people: the astronaut beside her mirror image."""
    return np.concatenate([photo, photo[:, ::-1]], axis=1)
