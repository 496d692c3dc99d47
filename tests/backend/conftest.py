"""Backend fixtures: synthetic data folders (no licensed files) and small models."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory):
    """Small mannequin body + width-reduced random network, in the official file layout."""
    from pixie_backend.synthetic_assets import write_synthetic_data

    d = tmp_path_factory.mktemp("data-small")
    write_synthetic_data(d, body="small", net="tiny", seed=0)
    return d


@pytest.fixture(scope="session")
def small_pixie(small_data_dir):
    from pixie_backend.config import PixieConfig
    from pixie_backend.pipeline import Pixie

    return Pixie(small_data_dir, PixieConfig(), detector="none")


@pytest.fixture(scope="session")
def astronaut():
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def two_people(astronaut):
    """A real photo with two people: the astronaut beside her mirror image."""
    return np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
