"""The GPU pipeline's pieces, run on the CPU: body crops cut by the device path equal the CPU crops
(float64, 1e-6), images handed to the engine give the same bodies as CPU crops, a pool of
preparers keeps the input order, pipelined batches route results and errors, and the batch size
follows the memory."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pixie_backend.geometry.camera import body_square
from pixie_backend.preprocess.crop import bilinear_square, crop_squares, square_taps

RNG = np.random.default_rng(12)


def _squares(boxes):
    sq = [body_square(torch.tensor(b, dtype=torch.float64)) for b in boxes]
    return torch.stack([c for c, _ in sq]), torch.stack([s for _, s in sq])


BOXES = [(40.3, 12.0, 150.7, 170.2), (-30, -20, 90, 260), (100, 50, 101, 52.5), (150, 250, 400, 420),
         (-500, -400, -100, -10), (0, 0, 216, 299)]


@pytest.mark.parametrize("size", [224, 1024])
def test_device_crops_equal_cpu_crops_in_float64(size):
    """The device path (a 2-D gather, no data-dependent branches) against ``bilinear_square`` (the
    CPU path, itself tested against scikit-image): boxes inside, across the border, outside, tiny."""
    img = torch.from_numpy(RNG.integers(0, 256, size=(300, 217, 3), dtype=np.uint8))
    centers, sides = _squares(BOXES)
    got = crop_squares(img, square_taps(centers, sides, size), torch.float64)
    want = torch.stack([bilinear_square(img, c, s, size, torch.float64) for c, s in zip(centers, sides, strict=True)])
    assert got.shape == (len(BOXES), 3, size, size) and got.is_contiguous()
    assert (got - want).abs().max().item() <= 1e-6
    # float input (16-bit sources) and float32 arithmetic
    f = img.to(torch.float32) / 255
    got = crop_squares(f, square_taps(centers, sides, size), torch.float32)
    want = torch.stack([bilinear_square(f, c, s, size, torch.float32) for c, s in zip(centers, sides, strict=True)])
    assert (got - want).abs().max().item() <= 1e-6


def test_device_crops_far_from_the_origin_and_into_a_batch_slice():
    """A wide image (positions in the thousands), written into a slice of a larger batch tensor."""
    img = torch.from_numpy(RNG.integers(0, 256, size=(120, 6000, 3), dtype=np.uint8))
    centers, sides = _squares([(5801.37, 3.3, 5950.9, 118.6), (2999.5, -10, 3100.25, 200)])
    out = torch.zeros(4, 3, 224, 224, dtype=torch.float64)
    crop_squares(img, square_taps(centers, sides, 224), torch.float64, out=out[1:3])
    want = torch.stack([bilinear_square(img, c, s, 224, torch.float64) for c, s in zip(centers, sides, strict=True)])
    assert (out[1:3] - want).abs().max().item() <= 1e-6
    assert out[0].abs().max() == 0 and out[3].abs().max() == 0


@pytest.fixture(scope="module")
def engine64(small_data_dir):
    from pixie_backend.config import PixieConfig
    from pixie_backend.runtime.engine import Engine

    return Engine.from_data_dir(small_data_dir, PixieConfig(dtype="float64"))


def test_engine_cuts_uploaded_images_like_cpu_crops(engine64, astronaut, two_people):
    """Mixed parts (an uploaded image with two persons, CPU crops of another) in one batch give the
    bodies of the CPU path, in order (float64)."""
    from pixie_backend.runtime.transfer import DeviceImage

    crop = engine64.config.crop
    boxes_two = [(60.0, 20.0, 460.0, 510.0), (570.0, 15.0, 980.0, 505.0)]
    c2, s2 = _squares(boxes_two)
    c1, s1 = _squares([(100.0, 30.0, 420.0, 500.0)])
    pix2, pix1 = torch.from_numpy(two_people), torch.from_numpy(astronaut)
    def cut(p, cc, ss, size):
        return torch.stack([bilinear_square(p, c, s, size, torch.float64) for c, s in zip(cc, ss, strict=True)])

    cpu = [(cut(p, cc, ss, crop.image_size), cut(p, cc, ss, crop.hd_size))
           for p, cc, ss in ((pix2, c2, s2), (pix1, c1, s1))]
    want = engine64.infer(torch.cat([cpu[0][0], cpu[1][0]]), torch.cat([cpu[0][1], cpu[1][1]]))
    up = engine64.upload(pix2, c2, s2)
    assert isinstance(up, DeviceImage) and up.persons == 2
    got = engine64.infer_batch([up, cpu[1]])
    for name in ("vertices", "keypoints2d"):
        a, b = getattr(got, name), getattr(want, name)
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-10, name
    torch.testing.assert_close(got.crops.head, want.crops.head, atol=1e-10, rtol=0)


def _sources(astronaut, two_people, tmp_path):
    from PIL import Image
    from pixie_backend.jobs.sources import ImageSource

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    return [
        ImageSource.from_path(tmp_path / "a.png", boxes=[[100.0, 30.0, 420.0, 500.0]]),
        ImageSource.from_array("two", two_people, [[60.0, 20.0, 460.0, 510.0], [570.0, 15.0, 980.0, 505.0]]),
        ImageSource.from_path(tmp_path / "bad.jpg"),
        ImageSource.from_array("whole", astronaut[:300, :200]),
        ImageSource.from_array("degenerate", astronaut, [[5.0, 5.0, 5.5, 5.5]]),
    ]


def test_device_crops_pool_and_pipelined_batches_equal_the_cpu_path(engine64, astronaut, two_people, tmp_path):
    """The whole image loop with crops cut by the engine, three preparers and pipelined batches
    gives, image by image and in order, what the CPU path gives (float64); the head and hand crop
    images stay behind, their centres and sides come back."""
    from pixie_backend.jobs.images import iter_image_results
    from pixie_backend.jobs.prepare import Preparer, PreparerPool
    from pixie_backend.runtime.batcher import Batcher

    sources = _sources(astronaut, two_people, tmp_path)
    crop, dtype = engine64.config.crop, engine64.config.torch_dtype
    ref_batcher = Batcher(engine64, batch_size=2)
    ref = list(iter_image_results(Preparer(crop, "none", dtype), ref_batcher, sources))
    ref_batcher.close()
    pool = PreparerPool(crop, "none", dtype, crop_on="device", workers=3)
    batcher = Batcher(engine64, batch_size=2, pipelined=True, part_crop_images=False)
    got = list(iter_image_results(pool, batcher, sources))
    batcher.close()
    pool.close()
    assert [r.source for r in got] == [r.source for r in ref]
    assert [(r.status, r.code) for r in got] == [(r.status, r.code) for r in ref]
    assert [r.code for r in got] == ["", "", "unreadable", "", "bad_boxes"]
    for a, b in zip(got, ref, strict=True):
        if not b.ok:
            continue
        assert len(a.persons) == len(b.persons)
        assert ((a.output.vertices - b.output.vertices).abs().max() / b.output.vertices.abs().max()) < 1e-10
        assert a.output.crops.head is None and b.output.crops.head is not None
        torch.testing.assert_close(a.output.crops.centers, b.output.crops.centers, atol=1e-9, rtol=0)
        assert a.timings["model"] > 0


def test_pool_keeps_input_order_and_stops(monkeypatch):
    """Workers finish out of order (random delays); the pool yields in input order and stops early."""
    from pixie_backend.config import CropConfig
    from pixie_backend.jobs.prepare import Prepared, Preparer, PreparerPool
    from pixie_backend.jobs.sources import ImageSource

    busy, most = [0], [0]
    lock = threading.Lock()

    def slow_prepare(self, source, index=0, max_pixels=0):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(float(RNG.uniform(0.0, 0.02)))
        with lock:
            busy[0] -= 1
        from pixie_backend.jobs.prepare import ImageResult

        return Prepared(ImageResult(source.label, index))

    monkeypatch.setattr(Preparer, "prepare", slow_prepare)
    pool = PreparerPool(CropConfig(), "none", workers=4)
    sources = [ImageSource.from_array(f"s{i}", np.zeros((20, 20, 3), np.uint8)) for i in range(40)]
    assert [p.result.index for p in pool.map(sources)] == list(range(40))
    assert most[0] > 1  # they really ran at the same time
    stop = threading.Event()
    seen = []
    for p in pool.map(sources, stop=stop):
        seen.append(p.result.index)
        if len(seen) == 5:
            stop.set()
    assert seen == list(range(5))


def test_pipelined_batcher_reports_device_errors_on_the_batch_only(engine64):
    """A failure that surfaces when a batch's results are read (as a CUDA error does) fails that
    batch's images; the batches before and after it are delivered."""
    from pixie_backend.runtime.batcher import Batcher
    from pixie_backend.runtime.transfer import PendingOutput

    class Broken(PendingOutput):
        def result(self):
            raise RuntimeError("device-side assert")

    real = engine64.to_host
    calls = [0]

    def to_host(out, part_crop_images=None):
        calls[0] += 1
        return Broken(out) if calls[0] == 2 else real(out, part_crop_images)

    x = torch.rand(1, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    xh = torch.nn.functional.interpolate(x, size=1024, mode="bilinear")
    batcher = Batcher(engine64, batch_size=1, pipelined=True)
    batcher.engine = SimpleNamespace(accelerated=False, infer_batch=engine64.infer_batch, to_host=to_host,
                                     upload=engine64.upload)
    with batcher.stream("s") as s:
        futures = [s.submit(x, xh) for _ in range(3)]
    assert futures[0].result(timeout=120)[0].vertices.shape[0] == 1
    with pytest.raises(RuntimeError, match="device-side assert"):
        futures[1].result(timeout=120)
    assert futures[2].result(timeout=120)[0].vertices.shape[0] == 1
    batcher.close()


def test_batch_size_follows_memory(small_pixie):
    from pixie_backend.runtime.engine import batch_size_for

    gib = 1 << 30
    assert batch_size_for(80 * gib, 60_000_000, 6_000_000) == 512  # an H100 with 1080p frames: the cap
    assert batch_size_for(80 * gib, 60_000_000, 6_000_000, max_batch=256) == 256
    assert batch_size_for(8 * gib, 60_000_000, 24_000_000) == 32  # a laptop GPU with 8 MP photos
    assert batch_size_for(1 << 20, 60_000_000, 24_000_000) == 1  # never below one
    b = batch_size_for(24 * gib, 80_000_000, 24_000_000)
    assert b * (80_000_000 + 2 * 24_000_000) <= 0.7 * 24 * gib < 2 * b * (80_000_000 + 2 * 24_000_000)
    assert small_pixie.engine.suggest_batch_size() == 8  # the CPU's measured best


def test_results_without_part_images_are_written(small_pixie, astronaut, tmp_path):
    """What a GPU hands back (no head/hand crop images) writes the same result file."""
    import json

    from pixie_backend.export.writer import ResultWriter

    r = small_pixie.predict([astronaut])[0]
    r.output = r.output.without_part_images()
    assert r.output.crops.head is None and r.output.crops.sides.shape == (1, 3)
    (path, *_) = ResultWriter(small_pixie, tmp_path).write(r, "a")
    with np.load(path, allow_pickle=False) as z:
        assert json.loads(str(z["header"]))["num_persons"] == 1


def test_rigid_transform_equals_smplx_bit_for_bit():
    """The kinematic chain walked over Python ints gives smplx's numbers exactly."""
    from pixie_backend.body.smplx_layer import _rigid_transform
    from pixie_backend.geometry.rotations import rot6d_grouped_to_rotmat
    from smplx.lbs import batch_rigid_transform

    g = torch.Generator().manual_seed(5)
    parents = torch.tensor([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 8])
    for dtype in (torch.float32, torch.float64):
        rot = rot6d_grouped_to_rotmat(torch.randn(3, 13 * 6, generator=g, dtype=dtype))
        joints = torch.randn(3, 13, 3, generator=g, dtype=dtype)
        want = batch_rigid_transform(rot, joints, parents, dtype=dtype)
        got = _rigid_transform(rot, joints, parents, parents.tolist())
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


#: ops that make a GPU wait for the device (a value read on the host, or an error check)
SYNCING = ("aten.item", "aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.equal",
           "aten.linalg_inv.", "aten.masked_select", "aten.unique")


@pytest.mark.parametrize(("speed", "precision"), [("fast", "fp32"), ("fast", "bf16"), ("exact", "fp32")])
def test_device_path_never_waits_for_the_device(small_data_dir, astronaut, speed, precision):
    """Every op the GPU path dispatches (crops cut from an uploaded image, the networks, SMPL-X) is
    recorded: none reads a value back or checks an error, so a batch is queued on a GPU without
    waiting, and the next one can be queued behind it. (On a GPU, ``tests/backend/test_gpu.py``
    checks the same with ``torch.cuda.set_sync_debug_mode('error')``.) The face-appearance stage
    that follows is left out: its detail gate selects persons with ``nonzero``, one wait per batch."""
    from pixie_backend.config import PixieConfig
    from pixie_backend.runtime.engine import Engine
    from torch.utils._python_dispatch import TorchDispatchMode

    engine = Engine.from_data_dir(small_data_dir, PixieConfig(speed=speed, precision=precision))
    centers, sides = _squares([(129.0, 23.0, 392.0, 511.0), (10.0, 10.0, 200.0, 300.0)])
    up = engine.upload(torch.from_numpy(astronaut), centers, sides)
    seen = set()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.add(str(func))
            return func(*args, **(kwargs or {}))

    with Record():
        out = engine.infer_batch([up], appearance=False)
    assert out.vertices.shape[0] == 2 and out.appearance is None
    assert {"aten.conv2d.default", "aten.grid_sampler.default", "aten.index.Tensor"} <= seen  # nets, crops
    waits = sorted(op for op in seen if op.startswith(SYNCING))
    assert not waits, f"these ops wait for the device: {waits}"
