"""The job layer under the CLI and the service: the batcher routes every person back to its own
image across jobs, cancellation, in-memory image bytes, and the model's plain-module contract."""

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.protocol import validate_events


@pytest.fixture(scope="module")
def engine(small_pixie):
    return small_pixie.engine


def _crops(seed: int, persons: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(persons, 3, 224, 224, generator=g)
    return x, torch.nn.functional.interpolate(x, size=1024, mode="bilinear", align_corners=False)


def test_batcher_routes_results_across_concurrent_jobs(engine):
    """Three jobs submit from their own threads into one batcher; every image gets exactly its own
    persons back (equal to running that image alone), and batches mix jobs."""
    from pixie_backend.runtime.batcher import Batcher

    batcher = Batcher(engine, batch_size=5, max_wait=0.5)
    jobs = {j: [(100 * j + k, 1 + (j + k) % 3) for k in range(4)] for j in range(3)}
    got: dict = {}

    def job(j):
        with batcher.stream(f"job{j}") as s:
            futures = [(seed, s.submit(*_crops(seed, n))) for seed, n in jobs[j]]
        got[j] = [(seed, f.result(timeout=120)[0]) for seed, f in futures]

    threads = [threading.Thread(target=job, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    batcher.close()
    assert max(batcher.batch_sizes) > 3  # persons of several images (and jobs) shared batches
    for j, results in got.items():
        for seed, out in results:
            x, xh = _crops(seed, dict(jobs[j])[seed])
            alone = engine.infer(x, xh)
            torch.testing.assert_close(out.vertices, alone.vertices, atol=1e-4, rtol=0)


def test_cancelled_stream_drops_its_waiting_work(engine):
    from concurrent.futures import CancelledError

    from pixie_backend.runtime.batcher import Batcher

    batcher = Batcher(engine, batch_size=64, max_wait=None)
    keep, drop = batcher.stream("keep"), batcher.stream("drop")
    dropped = [drop.submit(*_crops(k, 1)) for k in range(3)]
    kept = keep.submit(*_crops(9, 1))
    drop.cancel()
    keep.close()  # no stream open: the batch runs with what is left
    assert kept.result(timeout=120)[0].vertices.shape[0] == 1
    for f in dropped:
        with pytest.raises(CancelledError):
            f.result(timeout=10)
    batcher.close()


def test_urgent_work_runs_at_once_ahead_of_waiting_work(engine):
    """The sequence job's proposals: an urgent image does not wait for a full batch (the stream
    that would fill it stays open), and goes ahead of the images already waiting."""
    from pixie_backend.runtime.batcher import Batcher

    batcher = Batcher(engine, batch_size=64, max_wait=None)
    waiting = batcher.stream("frames")  # stays open: without urgency nothing would run
    queued = [waiting.submit(*_crops(k, 1)) for k in range(2)]
    now = batcher.stream("proposal")
    fut = now.submit(*_crops(7, 1), urgent=True)
    now.close()
    out, _ = fut.result(timeout=120)
    assert out.vertices.shape[0] == 1
    assert batcher.batch_sizes == [3]  # one batch at once: the urgent image first, filled with the waiting ones
    x, xh = _crops(7, 1)
    torch.testing.assert_close(out.vertices, engine.infer(x, xh).vertices, atol=1e-4, rtol=0)
    for k, f in enumerate(queued):
        torch.testing.assert_close(f.result(timeout=10)[0].vertices, engine.infer(*_crops(k, 1)).vertices,
                                   atol=1e-4, rtol=0)
    waiting.close()
    batcher.close()


def test_job_from_image_bytes_and_cancel(engine, astronaut, tmp_path):
    """The service's case: encoded uploads, no paths; a job cancelled after its first image keeps
    that image committed and stops."""
    import io

    from PIL import Image
    from pixie_backend.jobs.reconstruct import ReconstructJob, ReconstructOptions
    from pixie_backend.jobs.sources import ImageSource

    def encoded(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    sources = [ImageSource.from_bytes(f"upload {k}/../x.png", encoded(np.roll(astronaut, 30 * k, 1)))
               for k in range(4)]
    assert len({s.name for s in sources}) == 1  # names are made safe...
    sources = [ImageSource.from_bytes(f"upload{k}", s.data) for k, s in enumerate(sources)]  # ...and unique
    job = ReconstructJob(engine, sources, ReconstructOptions(tmp_path / "out", batch_size=1, detector="none"))
    events = []
    for ev in job.run():
        events.append(ev)
        if ev.kind == "item_done":
            job.cancel()
    validate_events([e.to_dict() for e in events])
    assert job.finished.status == "cancelled" and job.finished.exit_code == 130
    done = [e.item for e in events if e.kind == "item_done"]
    assert done[0] == "upload0" and (tmp_path / "out" / "upload0.pixie.npz").is_file()
    assert len(done) < 4 and not list((tmp_path / "out").glob("upload3*"))


def test_writer_uses_the_models_own_outputs(small_pixie, astronaut, tmp_path, monkeypatch):
    """No second SMPL-X evaluation and no copy of the layer: the writer works with SMPL-X disabled,
    and its rest joints / correctives are the model's."""
    import copy

    from pixie_backend.body.smplx_layer import PixieSMPLX
    from pixie_backend.export.writer import ResultWriter

    res = small_pixie.predict([astronaut], boxes=[[[150, 20, 450, 511]]])
    writer = ResultWriter(small_pixie, tmp_path)

    def forbidden(*a, **k):
        raise AssertionError("the writer evaluated or copied SMPL-X")

    monkeypatch.setattr(PixieSMPLX, "forward", forbidden)
    monkeypatch.setattr(copy, "deepcopy", forbidden)
    path = writer.write(res[0], "one")[0]
    with np.load(path) as z:
        np.testing.assert_array_equal(z["joints_rest"], res[0].output.joints_rest.numpy())
        np.testing.assert_array_equal(z["pose_correctives"], res[0].output.pose_correctives.numpy())


def test_lbs_step_by_step_equals_smplx(small_pixie):
    """The layer's LBS (which also returns rest joints and correctives) is smplx.lbs.lbs exactly."""
    from pixie_backend.body.smplx_layer import _lbs
    from smplx.lbs import lbs

    s = small_pixie.model.smplx
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(3, 250, generator=g) * 0.5
    a = torch.randn(3, 55, 3, 3, generator=g) * 0.2
    rot = torch.linalg.matrix_exp(a - a.transpose(-1, -2))  # exp of a skew matrix: a rotation
    ref_v, ref_j = lbs(coeffs, rot, s.v_template, s.shapedirs, s.posedirs, s.J_regressor, s.parents,
                       s.lbs_weights, pose2rot=False)
    v, j, rest, corr = _lbs(coeffs, rot, s.v_template, s.shapedirs, s.posedirs, s.J_regressor, s.parents,
                            s.lbs_weights)
    assert torch.equal(v, ref_v) and torch.equal(j, ref_j)
    v_shaped = s.v_template + torch.einsum("bl,vkl->bvk", coeffs, s.shapedirs)
    torch.testing.assert_close(rest, torch.einsum("jv,bvk->bjk", s.J_regressor, v_shaped))
    feature = (rot[:, 1:] - torch.eye(3)).reshape(3, -1)
    torch.testing.assert_close(corr, (feature @ s.posedirs).reshape(3, -1, 3))


def test_model_is_a_plain_module(small_pixie):
    """No baked-in inference mode, no _apply override: gradients reach the weights, .to() is torch's."""
    from pixie_backend.model import PixieModel
    from torch import nn

    model = small_pixie.model
    assert PixieModel._apply is nn.Module._apply
    x, xh = _crops(0, 2)
    model.use_speed("exact")
    try:
        out = model(x, xh)
        out.vertices.sum().backward()
        grads = [p.grad for p in model.net.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)
    finally:
        model.zero_grad(set_to_none=True)
        model.use_speed(model.cfg.speed)


def test_cuda_flags_are_set_only_in_the_engine():
    root = Path(__file__).resolve().parents[2] / "backend" / "pixie_backend"
    texts = {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8") for p in root.rglob("*.py")}
    setters = [name for name, text in texts.items() if "allow_tf32 =" in text or "cudnn.benchmark =" in text]
    assert setters == ["runtime/engine.py"]
