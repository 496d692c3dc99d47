"""Fixtures of a real ``pixie-backend serve`` (uvicorn on loopback) on small synthetic assets (a
small body and a width-reduced network: no licensed file), shared by the service tests and the
add-on client tests (registered in ``tests/conftest.py``; nothing starts unless a test asks)."""

from __future__ import annotations

import json

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
    # the parity reference: the tests compare the service with direct fp32 results within float32
    # rounding (``auto`` would pick bf16 on a CPU with bf16 instructions, which rounds per batch)
    "--precision",
    "fp32",
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


#: Frames of the synthetic clip of the sequence tests.
CLIP_FRAMES = 16


@pytest.fixture(scope="session")
def crossing_clip(service_data, tmp_path_factory):
    """Two synthetic people crossing, 16 frames (``sequence.synthetic_clip``): the MJPG video, its
    PNG frames, and per frame the boxes a face-driven detector would find (the synthetic body has
    no face a real detector sees), as a dict and as a ``--boxes`` file."""
    from pixie_backend.body.smplx_layer import PixieSMPLX
    from pixie_backend.sequence.synthetic_clip import make_clip

    d = service_data
    body = PixieSMPLX.from_files(d / "SMPLX_NEUTRAL_2020.npz", d / "smplx_extra_joints.yaml", d / "SMPLX_to_J14.pkl")
    clip = make_clip(body, "crossing", num_frames=CLIP_FRAMES, seed=1)
    out = tmp_path_factory.mktemp("crossing")
    video = clip.write_video(out / "crossing.avi")
    frames = clip.render_frames(out / "frames")
    boxes = {k: [b.tolist() for _, b in clip.detections(k)] for k in range(CLIP_FRAMES)}
    (out / "boxes.json").write_text(json.dumps({str(k): v for k, v in boxes.items()}))
    return clip, video, frames, boxes, out / "boxes.json"
