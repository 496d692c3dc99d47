"""Fixtures for the sequence modules: the small synthetic body as a PIXIE SMPL-X layer and
synthetic clips made from it (``pixie_backend.sequence.synthetic_clip``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def body_dir(tmp_path_factory):
    """The small synthetic mannequin in the official SMPL-X file formats (no network)."""
    from pixie_backend.synthetic.files import write_body_assets

    d = tmp_path_factory.mktemp("seq-body")
    write_body_assets(d, variant="small", seed=0)
    return d


@pytest.fixture(scope="session")
def smplx_layer(body_dir):
    from pixie_backend.body.smplx_layer import PixieSMPLX

    return PixieSMPLX.from_files(
        body_dir / "SMPLX_NEUTRAL_2020.npz", body_dir / "smplx_extra_joints.yaml", body_dir / "SMPLX_to_J14.pkl"
    )


@pytest.fixture(scope="session")
def clips(smplx_layer):
    """Synthetic clips by scenario, made once per session."""
    from pixie_backend.sequence.synthetic_clip import make_clip

    cache = {}

    def get(scenario: str, num_frames: int = 60, **kw):
        key = (scenario, num_frames, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = make_clip(smplx_layer, scenario, num_frames=num_frames, seed=1, **kw)
        return cache[key]

    return get
