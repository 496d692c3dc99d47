"""The pipeline on CUDA against the CPU (marked ``gpu``; skipped where torch sees no CUDA GPU, as in
CI). ``bench/gpu_check.py`` runs this module first on a machine with a GPU.

* float64 on the GPU equals float64 on the CPU (1e-9): crops cut on the device, part crops kept
  there, pinned uploads on a copy stream, pipelined batches, a pool of preparers;
* float32 with TF32 off within 1e-4 of the CPU; bf16 on the body path within the CPU's bound;
* the GPU path never waits for the device (``torch.cuda.set_sync_debug_mode('error')``).
"""

from __future__ import annotations

import pytest
import torch

from tests.support.precision import BODY_PATH

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")]

BOXES = {"a": [[129.0, 23.0, 392.0, 511.0]], "two": [[60.0, 20.0, 460.0, 510.0], [570.0, 15.0, 980.0, 505.0]]}


def _sources(astronaut, two_people, n: int = 12):
    from pixie_backend.jobs.sources import ImageSource

    out = []
    for i in range(n):
        if i % 3 == 2:
            out.append(ImageSource.from_array(f"two{i}", two_people, BOXES["two"]))
        else:
            img = astronaut if i % 2 == 0 else astronaut[:, ::-1].copy()
            out.append(ImageSource.from_array(f"a{i}", img, BOXES["a"]))
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.fixture(scope="module")
def pixies64(small_data_dir):
    from pixie_backend.config import PixieConfig
    from pixie_backend.pipeline import Pixie

    cfg = PixieConfig(dtype="float64", speed="fast")
    return (Pixie(small_data_dir, cfg.with_(device="cpu"), detector="none"),
            Pixie(small_data_dir, cfg.with_(device="cuda"), detector="none", prepare_workers=3))


def test_cuda_float64_pipeline_equals_cpu(pixies64, astronaut, two_people):
    cpu, gpu = pixies64
    assert gpu.engine.accelerated and gpu.prepare_workers == 3
    sources = _sources(astronaut, two_people)
    want = cpu.predict(sources, batch_size=4)
    got = gpu.predict(sources, batch_size=4)
    assert [r.source for r in got] == [r.source for r in want] and all(r.ok for r in got)
    for a, b in zip(got, want, strict=True):
        assert a.output.vertices.device.type == "cpu"
        for name in ("vertices", "keypoints2d", "transformed_vertices"):
            assert _rel(getattr(a.output, name), getattr(b.output, name)) < 1e-9, (a.source, name)
        assert a.output.crops.head is None  # the part crop images stayed on the GPU
        assert _rel(a.output.crops.centers, b.output.crops.centers) < 1e-9


def test_device_crops_on_cuda_equal_cpu_crops(astronaut):
    from pixie_backend.geometry.camera import body_square
    from pixie_backend.preprocess.crop import bilinear_square, crop_squares, square_taps

    c, s = body_square(torch.tensor([-40.0, 23.0, 392.0, 560.0], dtype=torch.float64))
    pixels = torch.from_numpy(astronaut)
    for size in (224, 1024):
        got = crop_squares(pixels.cuda(), square_taps(c[None], s[None], size), torch.float64).cpu()
        want = bilinear_square(pixels, c, s, size, torch.float64)[None]
        assert (got - want).abs().max().item() <= 1e-6


def test_cuda_float32_matches_cpu(small_data_dir, astronaut):
    from pixie_backend.config import PixieConfig
    from pixie_backend.pipeline import Pixie

    cfg = PixieConfig(speed="fast", precision="fp32")
    cpu = Pixie(small_data_dir, cfg.with_(device="cpu"), detector="none")
    gpu = Pixie(small_data_dir, cfg.with_(device="cuda"), detector="none")
    want = cpu.predict([astronaut], boxes=[BOXES["a"]])[0].output
    got = gpu.predict([astronaut], boxes=[BOXES["a"]])[0].output
    assert _rel(got.vertices, want.vertices) < 1e-4


def test_gpu_path_never_waits_for_the_device(small_data_dir, astronaut):
    from pixie_backend.config import PixieConfig
    from pixie_backend.geometry.camera import body_square
    from pixie_backend.runtime.engine import Engine

    engine = Engine.from_data_dir(small_data_dir, PixieConfig(device="cuda", speed="fast", precision="fp32"))
    c, s = body_square(torch.tensor(BOXES["a"][0], dtype=torch.float64))
    pixels = torch.from_numpy(astronaut).pin_memory()
    engine.to_host(engine.infer_batch([engine.upload(pixels, c[None], s[None])])).result()  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        up = engine.upload(pixels, c[None], s[None])
        # PIXIE's path (the face-appearance stage reads its detail gate back once per batch)
        pending = engine.to_host(engine.infer_batch([up], appearance=False))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert pending.result().vertices.shape[0] == 1


def test_bf16_on_cuda_body_path_within_the_cpu_bound(small_data_dir):
    from pixie_backend.body.smplx_layer import PixieSMPLX
    from pixie_backend.config import NetConfig, PixieConfig
    from pixie_backend.model import PixieModel
    from pixie_backend.nets.random_init import random_pixie_net

    from tests.support.precision import BF16_RAN, BOUNDS, astronaut_crops, body_path_errors

    d = small_data_dir
    smplx = PixieSMPLX.from_files(d / "SMPLX_NEUTRAL_2020.npz", d / "smplx_extra_joints.yaml", d / "SMPLX_to_J14.pkl")
    net = random_pixie_net(NetConfig(), seed=0).cuda()
    smplx = smplx.cuda()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    ref = PixieModel(net, smplx, PixieConfig(speed="fast")).eval()
    bf16 = PixieModel(net, smplx, PixieConfig(speed="fast", precision="auto")).eval()
    if bf16.precision.precision != "bf16":
        pytest.skip(f"no bf16 on this GPU: {bf16.precision.reason}")
    errs = body_path_errors(ref, bf16, astronaut_crops()[0].cuda())
    print("\nbf16 - fp32 on the body path (CUDA): " + ", ".join(f"{k} {errs[k]:.2e}" for k in BODY_PATH))
    assert errs["body feature"] > BF16_RAN
    assert all(errs[k] <= BOUNDS[k] for k in BODY_PATH), errs


def test_batch_size_from_device_memory(small_data_dir):
    from pixie_backend.config import PixieConfig
    from pixie_backend.runtime.engine import Engine

    engine = Engine.from_data_dir(small_data_dir, PixieConfig(device="cuda", speed="fast"))
    b = engine.suggest_batch_size()
    assert 1 <= b <= 512 and b & (b - 1) == 0
    assert engine._measured_bytes_per_person() > 0


@pytest.mark.slow
def test_compiled_encoders_match_eager(small_data_dir, astronaut):
    """``--compile default`` (needs Triton): the same bodies as the eager encoders."""
    pytest.importorskip("triton")
    from pixie_backend.config import PixieConfig
    from pixie_backend.pipeline import Pixie

    cfg = PixieConfig(device="cuda", speed="fast", precision="fp32")
    eager = Pixie(small_data_dir, cfg, detector="none")
    compiled = Pixie(small_data_dir, cfg.with_(compile="default"), detector="none")
    want = eager.predict([astronaut], boxes=[BOXES["a"]])[0].output
    got = compiled.predict([astronaut], boxes=[BOXES["a"]])[0].output
    assert _rel(got.vertices, want.vertices) < 1e-3
