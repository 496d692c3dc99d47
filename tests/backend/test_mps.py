"""Apple's MPS: the whole pipeline runs on ``mps`` with its float64 geometry (the only thing MPS
cannot do) on the CPU, named in ``Engine.describe()``.

Here (no Mac): every op the GPU path dispatches is checked against torch's own kernel table
(``native_functions.yaml``, shipped with torch) for an MPS kernel. On a Mac with an MPS build of
torch the remaining tests run the pipeline on ``mps`` against the CPU; elsewhere they skip and say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

NO_MPS = "no MPS device here (needs Apple Silicon and an MPS build of torch); run these tests on a Mac"
mps_only = pytest.mark.skipif(not (torch.backends.mps.is_available()), reason=NO_MPS)


def _native_functions() -> dict[str, dict]:
    """``{name.overload: entry}`` of torch's ``native_functions.yaml`` (None if torch ships none)."""
    import torchgen
    import yaml

    path = Path(torchgen.__file__).parent / "packaged" / "ATen" / "native" / "native_functions.yaml"
    if not path.is_file():
        return {}
    entries = {}
    for e in yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        name = e["func"].split("(", 1)[0]
        entries[name] = e
    return entries


_COMPOSITE = ("CompositeImplicitAutograd", "CompositeExplicitAutograd", "CompositeExplicitAutogradNonFunctional")


def _runs_on_mps(op: str, table: dict[str, dict]) -> bool:
    """Whether ``aten.name.overload`` has an MPS kernel, or a composite one (for every backend),
    in its own dispatch table or in that of the structured kernel it delegates to."""
    name = op.removeprefix("aten.").removesuffix(".default")
    entry, keys, seen = table.get(name), set(), set()
    if entry is None:
        return False
    if "dispatch" not in entry and "structured_delegate" not in entry:
        return True  # no dispatch table: CompositeImplicitAutograd
    while entry is not None and name not in seen:
        seen.add(name)
        keys |= {k.strip() for key in entry.get("dispatch") or {} for k in key.split(",")}
        name = entry.get("structured_delegate")
        entry = table.get(name) if name else None
    return bool(keys & {"MPS", *_COMPOSITE})


def _gpu_path_ops(small_data_dir, astronaut, speed: str, precision: str) -> dict[str, set[str]]:
    """The ops (and their tensors' dtypes) of the GPU path: crops cut from the image on the
    device, the networks, SMPL-X. Run with autograd on, so composite ops show their parts."""
    from pixie_backend.config import PixieConfig
    from pixie_backend.geometry.camera import body_square
    from pixie_backend.preprocess.crop import crop_squares, square_taps
    from pixie_backend.runtime.engine import Engine
    from torch.utils._python_dispatch import TorchDispatchMode

    engine = Engine.from_data_dir(small_data_dir, PixieConfig(speed=speed, precision=precision))
    c, s = body_square(torch.tensor([129.0, 23.0, 392.0, 511.0], dtype=torch.float64))
    pixels = torch.from_numpy(astronaut)
    taps = [square_taps(c[None], s[None], n) for n in (224, 1024)]  # the CPU side, as on every device
    ops: dict[str, set[str]] = {}

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            flat = [*args, *(kwargs or {}).values(), *(out if isinstance(out, (tuple, list)) else [out])]
            ops.setdefault(str(func), set()).update(str(t.dtype) for t in flat if torch.is_tensor(t))
            return out

    with torch.no_grad(), Record():
        image = crop_squares(pixels, taps[0])
        image_hd = crop_squares(pixels, taps[1])
        engine.model(image, image_hd)
    return ops


@pytest.mark.parametrize(("speed", "precision"), [("fast", "fp32"), ("fast", "bf16"), ("exact", "fp32")])
def test_every_gpu_path_op_has_an_mps_kernel(small_data_dir, astronaut, speed, precision):
    """Ops on float64 tensors are the crop geometry that runs on the CPU for MPS
    (``MPS_FALLBACKS``); every other op must have an MPS kernel in torch's kernel table."""
    table = _native_functions()
    if not table:
        pytest.skip("this torch ships no native_functions.yaml")
    ops = _gpu_path_ops(small_data_dir, astronaut, speed, precision)
    assert "aten.convolution.default" in ops and "aten.grid_sampler_2d.default" in ops  # decomposed ops
    on_gpu = {op for op, dtypes in ops.items() if "torch.float64" not in dtypes}
    missing = sorted(op for op in on_gpu if not _runs_on_mps(op, table))
    assert not missing, f"no MPS kernel (name it in MPS_FALLBACKS and run it on the CPU): {missing}"


def test_the_mps_fallbacks_are_named(monkeypatch):
    """What runs on the CPU for MPS is listed, and the engine reports it."""
    from pixie_backend.preprocess.crop import MPS_FALLBACKS, float64_device

    assert float64_device(torch.device("mps")) == torch.device("cpu")
    assert float64_device(torch.device("cpu")) == torch.device("cpu")
    assert set(MPS_FALLBACKS) == {"part-crop sampling grids", "body-crop sampling tables"}


# ---------------------------------------------------------------------- on a Mac
@mps_only
def test_pipeline_on_mps_matches_the_cpu(small_data_dir, astronaut):
    from pixie_backend.config import PixieConfig
    from pixie_backend.pipeline import Pixie

    cpu = Pixie(small_data_dir, PixieConfig(device="cpu", speed="fast"), detector="none")
    mps = Pixie(small_data_dir, PixieConfig(device="mps", speed="fast", precision="fp32"), detector="none")
    assert mps.engine.accelerated and "fallbacks" in mps.engine.describe()
    box = [[129.0, 23.0, 392.0, 511.0]]
    want = cpu.predict([astronaut], boxes=[box])[0]
    got = mps.predict([astronaut], boxes=[box])[0]
    assert got.ok, got.message
    err = ((got.output.vertices - want.output.vertices).abs().max() / want.output.vertices.abs().max()).item()
    assert err < 1e-3, err
    assert got.output.crops.head is None  # the part crops stayed on the GPU


@mps_only
def test_device_crops_on_mps_equal_cpu_crops(astronaut):
    from pixie_backend.geometry.camera import body_square
    from pixie_backend.preprocess.crop import bilinear_square, crop_squares, square_taps

    c, s = body_square(torch.tensor([129.0, 23.0, 392.0, 511.0], dtype=torch.float64))
    pixels = torch.from_numpy(astronaut)
    for size in (224, 1024):
        got = crop_squares(pixels.to("mps"), square_taps(c[None], s[None], size)).cpu()
        want = bilinear_square(pixels, c, s, size)[None]
        assert (got - want).abs().max().item() <= 1e-6


@mps_only
def test_auto_precision_on_mps_runs(small_data_dir, astronaut):
    from pixie_backend.config import PixieConfig
    from pixie_backend.pipeline import Pixie

    p = Pixie(small_data_dir, PixieConfig(device="auto", precision="auto", speed="fast"), detector="none")
    assert p.device.type == "mps"
    r = p.predict([astronaut], boxes=[[[129.0, 23.0, 392.0, 511.0]]])[0]
    assert r.ok and torch.isfinite(r.output.vertices).all()
