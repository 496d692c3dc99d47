"""The face appearance in the job layer: built once per engine (missing files: one notice each),
run by the batcher right after the networks on the engine's device and dtype (so every job gets
it), reported as ``message`` events, and part of the resume key (settings and file contents)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image


def _crops(seed: int, persons: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(persons, 3, 224, 224, generator=g)
    return x, torch.nn.functional.interpolate(x, size=1024, mode="bilinear", align_corners=False)


def test_batched_appearance_equals_each_image_alone(small_pixie):
    """Persons of two images share one batch; each image gets its own persons' appearance, equal
    to running the stage on that image alone."""
    from pixie_backend.runtime.batcher import Batcher

    engine = small_pixie.engine
    assert engine.appearance is not None and engine.appearance_notices == []
    assert engine.describe()["appearance"] == ["albedo", "detail", "normal_map"]
    batcher = Batcher(engine, batch_size=3, max_wait=None)
    with batcher.stream("two images") as s:
        futures = [s.submit(*_crops(seed, n)) for seed, n in ((1, 2), (2, 1))]
    outs = [f.result(timeout=300)[0] for f in futures]
    batcher.close()
    assert batcher.batch_sizes == [3]
    for (seed, n), out in zip(((1, 2), (2, 1)), outs, strict=True):
        look = out.appearance
        assert look is not None and look.albedo.shape[0] == n and look.albedo.device.type == "cpu"
        x, xh = _crops(seed, n)
        alone = engine.infer(x, xh).appearance
        torch.testing.assert_close(look.albedo, alone.albedo, atol=1e-5, rtol=0)
        torch.testing.assert_close(look.head_confidence, alone.head_confidence, atol=1e-5, rtol=0)
        assert torch.equal(look.detail_gate, alone.detail_gate)
    # the thin wrappers: networks only, then the stage on its own
    x, xh = _crops(1, 2)
    net = small_pixie.predict_crops(x, xh)
    assert net.appearance is None
    look = small_pixie.predict_appearance(net, xh)
    torch.testing.assert_close(look.albedo, outs[0].appearance.albedo, atol=1e-5, rtol=0)


def test_float64_engine_runs_the_stage_in_float64(small_data_dir):
    from pixie_backend.config import PixieConfig
    from pixie_backend.runtime.engine import Engine

    engine = Engine.from_data_dir(small_data_dir, PixieConfig(dtype="float64"))
    assert engine.appearance.base_texture.dtype == torch.float64
    out = engine.infer(*_crops(3, 1))
    assert out.vertices.dtype == torch.float64
    assert out.appearance.albedo.dtype == out.appearance.displacement.dtype == torch.float64


def _events(engine, photo, out, **kw):
    from pixie_backend.jobs.reconstruct import ReconstructJob, ReconstructOptions
    from pixie_backend.jobs.sources import ImageSource

    job = ReconstructJob(engine, [ImageSource.from_path(photo)], ReconstructOptions(out, detector="none", **kw))
    return [e.to_dict() for e in job.run()]


@pytest.fixture(scope="module")
def photo(tmp_path_factory, astronaut):
    d = tmp_path_factory.mktemp("face-jobs")
    Image.fromarray(astronaut[:256, 128:384]).save(d / "face.png")
    return d / "face.png"


def test_resume_key_holds_the_appearance_settings_and_files(small_data_dir, photo, tmp_path):
    """Unchanged: skipped. Another appearance setting, or another content of an optional face
    file: recomputed. A feature turned off for want of a file: one notice event, and recomputed."""
    from dataclasses import replace

    from pixie_backend.config import AppearanceConfig, PixieConfig
    from pixie_backend.runtime.engine import Engine

    from tests.support.protocol import validate_events

    data = tmp_path / "data"
    shutil.copytree(small_data_dir, data)
    out = tmp_path / "out"

    def run(config=None):
        events = _events(Engine.from_data_dir(data, config or PixieConfig()), photo, out)
        validate_events(events)
        done = [e for e in events if e["event"] == "item_done"]
        assert len(done) == 1
        notes = [e["text"] for e in events if e["event"] == "message" and e["details"].get("notice")]
        return done[0]["resumed"], notes

    assert run() == (False, [])
    assert run() == (True, [])
    lit = PixieConfig(appearance=AppearanceConfig(lit_texture=True))
    assert run(lit) == (False, [])
    assert run(lit) == (True, [])
    assert run(replace(lit, appearance=replace(lit.appearance, detail_threshold=0.3))) == (False, [])
    assert run() == (False, [])
    # another fixed displacement (same size, new content): the image is redone
    disp = data / "fixed_displacement_256.npy"
    np.save(disp, np.load(disp) * 0.5)
    assert run() == (False, [])
    assert run() == (True, [])
    (data / "deca_model.tar").unlink()
    resumed, notes = run()
    assert not resumed and len(notes) == 1 and "facial detail (displacement) off: missing deca_model.tar" in notes[0]
