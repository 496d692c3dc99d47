"""Device and precision choice: ``auto`` picks CUDA, then MPS, then the CPU, and bf16 only where
the device runs it natively; every case is mocked here (GPUs, Macs, CPUs with and without bf16),
and the real machine is checked against its own /proc/cpuinfo."""

from __future__ import annotations

import json

import pytest
import torch
from pixie_backend.runtime import device as D


@pytest.fixture
def machine(monkeypatch):
    """Set what the probes report: ``machine(cuda=..., mps=..., ...)``."""

    def set_(cuda=False, mps=False, mkldnn_bf16=True, mkldnn_fp16=False, arch="x86_64", isas=("AVX512-BF16",),
             capability=(8, 0), macos14=True, isa_cap=None):
        monkeypatch.setattr(D, "cuda_available", lambda: cuda)
        monkeypatch.setattr(D, "mps_available", lambda: mps)
        monkeypatch.setattr(D, "mkldnn_bf16_supported", lambda: mkldnn_bf16)
        monkeypatch.setattr(D, "mkldnn_fp16_supported", lambda: mkldnn_fp16)
        monkeypatch.setattr(D, "machine", lambda: arch)
        monkeypatch.setattr(D, "x86_bf16_instructions", lambda: list(isas))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: macos14)
        for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
            monkeypatch.delenv(var, raising=False)
        if isa_cap:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa_cap)

    return set_


# ---------------------------------------------------------------------- devices
@pytest.mark.parametrize(("cuda", "mps", "want"), [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"),
                                                   (False, False, "cpu")])
def test_auto_device_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, want):
    machine(cuda=cuda, mps=mps)
    assert D.resolve_device("auto") == torch.device(want)
    assert D.resolve_device(None) == torch.device(want)


def test_explicit_devices_and_their_errors(machine):
    machine(cuda=False, mps=False)
    assert D.resolve_device("cpu") == torch.device("cpu")
    assert D.resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(D.DeviceError, match="CUDA was requested"):
        D.resolve_device("cuda")
    with pytest.raises(D.DeviceError, match="MPS .* not available"):
        D.resolve_device("mps")
    with pytest.raises(D.DeviceError, match="unknown device 'tpu'"):
        D.resolve_device("tpu")
    machine(cuda=True)
    assert D.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(D.DeviceError, match="1 CUDA device"):
        D.resolve_device("cuda:3")


# ---------------------------------------------------------------------- precision
CPU = torch.device("cpu")


def test_cpu_with_avx512_bf16_gets_bf16(machine):
    machine(isas=("AVX512-BF16",))
    choice = D.resolve_precision("auto", CPU)
    assert choice.precision == "bf16" and "AVX512-BF16" in choice.reason
    machine(isas=("AMX",))
    assert D.resolve_precision("auto", CPU).precision == "bf16"


def test_cpu_without_bf16_gets_fp32_and_explicit_bf16_still_runs(machine):
    """An AVX2 CPU (oneDNN reports no bf16): auto is fp32; bf16 asked for runs, flagged NOT NATIVE."""
    machine(mkldnn_bf16=False, isas=())
    auto = D.resolve_precision("auto", CPU)
    assert auto.precision == "fp32" and "no bf16" in auto.reason
    forced = D.resolve_precision("bf16", CPU)
    assert forced.precision == "bf16" and forced.reason.startswith("NOT NATIVE")


def test_avx512_without_bf16_instructions_is_not_native(machine):
    """oneDNN 'supports' bf16 on any AVX-512 CPU by emulation; that is slower than fp32."""
    machine(mkldnn_bf16=True, isas=())
    choice = D.resolve_precision("auto", CPU)
    assert choice.precision == "fp32" and "emulate" in choice.reason


def test_onednn_isa_cap_below_bf16_is_not_native(machine):
    machine(isas=("AVX512-BF16",), isa_cap="avx512_core")
    assert D.resolve_precision("auto", CPU).precision == "fp32"
    machine(isas=("AVX512-BF16",), isa_cap="AVX512_CORE_BF16")
    assert D.resolve_precision("auto", CPU).precision == "bf16"


def test_arm_cpu_with_bf16(machine):
    machine(arch="aarch64", isas=(), mkldnn_bf16=True)
    assert D.resolve_precision("auto", CPU).precision == "bf16"
    machine(arch="aarch64", isas=(), mkldnn_bf16=False)
    assert D.resolve_precision("auto", CPU).precision == "fp32"


@pytest.mark.parametrize(("capability", "want"), [((9, 0), "bf16"), ((8, 0), "bf16"), ((8, 6), "bf16"),
                                                  ((7, 5), "fp32"), ((6, 1), "fp32")])
def test_cuda_bf16_from_compute_capability(machine, capability, want):
    machine(cuda=True, capability=capability)
    assert D.resolve_precision("auto", torch.device("cuda")).precision == want
    assert D.resolve_precision("fp16", torch.device("cuda")).precision == "fp16"
    if want == "fp32":
        with pytest.raises(D.PrecisionError, match="no bf16 arithmetic"):
            D.resolve_precision("bf16", torch.device("cuda"))


def test_mps_bf16_needs_macos_14(machine):
    mps = torch.device("mps")
    machine(mps=True, macos14=True)
    assert D.resolve_precision("auto", mps).precision == "bf16"
    machine(mps=True, macos14=False)
    assert D.resolve_precision("auto", mps).precision == "fp32"
    with pytest.raises(D.PrecisionError, match="macOS 14"):
        D.resolve_precision("bf16", mps)


def test_fp16_float64_and_bad_names(machine):
    machine(mkldnn_fp16=False)
    with pytest.raises(D.PrecisionError, match="fp16 is not supported on this CPU"):
        D.resolve_precision("fp16", CPU)
    machine(mkldnn_fp16=True)
    assert D.resolve_precision("fp16", CPU).precision == "fp16"
    assert D.resolve_precision("auto", CPU, dtype="float64").precision == "fp32"
    with pytest.raises(D.PrecisionError, match="float64"):
        D.resolve_precision("bf16", CPU, dtype="float64")
    with pytest.raises(D.PrecisionError, match="unknown precision"):
        D.resolve_precision("int8", CPU)
    assert D.resolve_precision("fp32", CPU).precision == "fp32"


def test_this_machine_agrees_with_its_cpuinfo():
    """No mocks: the probe agrees with the flags the kernel reports (Linux) and with oneDNN."""
    flags = D.cpuinfo_flags()
    if not flags or D.machine() not in ("x86_64", "amd64"):
        pytest.skip("no x86 /proc/cpuinfo here")
    hw = {"avx512_bf16", "amx_bf16"} & flags
    native = D.cpu_bf16_support().native
    if D.onednn_isa_cap() is None:
        assert native == (bool(hw) and D.mkldnn_bf16_supported())
    assert bool(D.x86_bf16_instructions()) == bool(hw)


# ---------------------------------------------------------------------- recorded where it runs
def test_engine_resolves_auto_and_records_it(small_data_dir, tmp_path, machine):
    from pixie_backend.config import PixieConfig
    from pixie_backend.export.writer import settings_dict
    from pixie_backend.runtime.engine import Engine

    for native, want in ((True, "bf16"), (False, "fp32")):
        machine(mkldnn_bf16=native, isas=("AVX512-BF16",) if native else ())
        engine = Engine.from_data_dir(small_data_dir, PixieConfig(device="auto", precision="auto", speed="fast"))
        assert engine.device == torch.device("cpu")
        assert engine.config.precision == want and engine.config.device == "cpu"
        assert engine.describe()["precision"] == want and engine.describe()["precision_reason"].startswith("auto")
        assert settings_dict(engine, "none")["precision"] == want  # the result header
        x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        out = engine.infer(x, torch.nn.functional.interpolate(x, size=1024, mode="bilinear"))
        assert out.vertices.dtype == torch.float32


def test_mps_refuses_float64(machine, small_data_dir):
    from pixie_backend.config import PixieConfig
    from pixie_backend.runtime.engine import Engine

    machine(mps=True)
    with pytest.raises(D.DeviceError, match="no float64"):
        Engine.from_data_dir(small_data_dir, PixieConfig(device="mps", dtype="float64"))


def test_cli_precision_errors_are_one_sentence(small_data_dir, tmp_path, capsys, machine, astronaut):
    from PIL import Image
    from pixie_backend.cli import main

    machine(mkldnn_fp16=False)
    img = tmp_path / "a.png"
    Image.fromarray(astronaut).save(img)
    code = main(["reconstruct", str(img), "-o", str(tmp_path / "o"), "--data-dir", str(small_data_dir),
                 "--detector", "none", "--precision", "fp16", "--device", "cpu"])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "--precision: fp16 is not supported on this CPU" in lines[0], err
    assert "Traceback" not in err


def test_cli_auto_precision_and_batch_size_reach_the_result(small_data_dir, tmp_path, machine, astronaut):
    import numpy as np
    from PIL import Image
    from pixie_backend.cli import main

    machine(mkldnn_bf16=True, isas=("AVX512-BF16",))
    img = tmp_path / "a.png"
    Image.fromarray(astronaut).save(img)
    assert main(["reconstruct", str(img), "-o", str(tmp_path / "o"), "--data-dir", str(small_data_dir),
                 "--detector", "none", "--device", "auto", "--precision", "auto", "--batch-size", "auto",
                 "--no-obj"]) == 0
    with np.load(tmp_path / "o" / "a.pixie.npz", allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
    assert header["settings"]["precision"] == "bf16" and header["settings"]["device"] == "cpu"


# ---------------------------------------------------------------------- the same choice in every command
@pytest.mark.parametrize("command", [["reconstruct", "a.png", "-o", "o"], ["reconstruct-video", "clip", "-o", "o"],
                                     ["serve"]])
def test_every_command_defaults_to_auto_device_and_precision(command):
    from pixie_backend.cli import build_parser

    args = build_parser().parse_args(command)
    assert (args.device, args.precision, args.batch_size, args.compile) == ("auto", "auto", "auto", "off")
    if command[0] != "serve":
        assert args.workers is None  # 1 on the CPU, a pool for a GPU
        assert build_parser().parse_args([*command, "--prepare-workers", "3"]).workers == 3


def test_float64_refuses_low_precision_in_one_sentence():
    from pixie_backend.config import PixieConfig

    assert PixieConfig(dtype="float64", precision="auto").precision == "auto"  # resolved to fp32 where it runs
    for p in ("bf16", "fp16"):
        with pytest.raises(ValueError, match=rf"precision '{p}' \(autocast\) cannot run in float64; use precision="):
            PixieConfig(dtype="float64", precision=p)


def test_float64_engine_resolves_auto_to_fp32(small_data_dir, machine):
    from pixie_backend.config import PixieConfig
    from pixie_backend.runtime.engine import Engine

    machine(mkldnn_bf16=True, isas=("AVX512-BF16",))
    engine = Engine.from_data_dir(small_data_dir, PixieConfig(device="cpu", precision="auto", dtype="float64"))
    assert engine.config.precision == "fp32" and engine.precision.reason == "float64 model"
    assert next(engine.model.parameters()).dtype == torch.float64


@pytest.mark.parametrize(("native", "want"), [(True, "bf16"), (False, "fp32")])
def test_reconstruct_video_records_what_ran(small_data_dir, tmp_path, capsys, machine, astronaut, native, want):
    """``reconstruct-video --device auto --precision auto``: the same choice as ``reconstruct``, in
    the sequence file's header and the started event."""
    from PIL import Image
    from pixie_backend.cli import main
    from pixie_backend.sequence.sequence_file import read_sequence_arrays

    machine(mkldnn_bf16=native, isas=("AVX512-BF16",) if native else ())
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(2):
        Image.fromarray(astronaut[::2, ::2]).save(frames / f"f{k}.png")
    code = main(["reconstruct-video", str(frames), "-o", str(tmp_path / "o"), "--data-dir", str(small_data_dir),
                 "--detector", "none", "--device", "auto", "--precision", "auto", "--batch-size", "auto",
                 "--no-proposals", "--json"])
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == 0, events[-1]
    assert events[0]["details"]["precision"] == want and events[0]["details"]["device"] == "cpu"
    header, _ = read_sequence_arrays(tmp_path / "o" / "frames.pixie-seq.npz")
    assert header["settings"]["precision"] == want and header["settings"]["device"] == "cpu"
    assert header["settings"]["batch_size"] == 8  # auto on the CPU


def test_serve_resolves_auto_and_reports_what_runs(small_data_dir, machine):
    """``serve`` takes the same options; its health report says the precision that runs, and why."""
    from pixie_backend.cli import build_parser
    from pixie_backend.commands.serve import build_config
    from pixie_backend.service.models import ModelHolder

    machine(mkldnn_bf16=True, isas=("AVX512-BF16",))
    config = build_config(build_parser().parse_args(["serve", "--data-dir", str(small_data_dir)]))
    assert (config.model.device, config.model.precision, config.batch_size) == ("cpu", "auto", "auto")
    holder = ModelHolder(config.model, config.data_dir, batch_size=config.batch_size)
    assert holder.describe()["precision"] == "auto"  # asked for, before the load
    holder.load()
    try:
        d = holder.describe()
        assert d["state"] == "ready" and d["precision"] == "bf16" and d["precision_reason"].startswith("auto: CPU")
        assert holder.batcher.batch_size == 8
    finally:
        holder.close()
    with pytest.raises(ValueError, match="--precision: fp16 is not supported on this CPU"):
        build_config(build_parser().parse_args(["serve", "--precision", "fp16", "--device", "cpu"]))


# ---------------------------------------------------------------------- --compile is wired
@pytest.mark.parametrize("command", ["reconstruct", "reconstruct-video"])
def test_compile_option_reaches_the_encoders(small_data_dir, tmp_path, capsys, monkeypatch, astronaut, command):
    """``--compile MODE`` wraps the three encoders in ``torch.compile(..., mode=MODE)`` and the
    batches run through the wrapped encoders (the compiler itself is stood in for: it needs Triton
    or a C++ toolchain and minutes; ``tests/backend/test_gpu.py`` compiles for real on CUDA)."""
    from PIL import Image
    from pixie_backend.cli import main

    compiled: list[tuple[str, str]] = []
    calls: list[str] = []

    class Compiled(torch.nn.Module):
        def __init__(self, module, mode):
            super().__init__()
            self.module = module
            compiled.append((type(module).__name__, mode))

        def forward(self, *args, **kwargs):
            calls.append(type(self.module).__name__)
            return self.module(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", lambda module, mode=None, **kw: Compiled(module, mode))
    frames = tmp_path / "in"
    frames.mkdir()
    Image.fromarray(astronaut[::2, ::2]).save(frames / "f1.png")
    target = [str(frames / "f1.png")] if command == "reconstruct" else [str(frames)]
    code = main([command, *target, "-o", str(tmp_path / "o"), "--data-dir", str(small_data_dir), "--detector", "none",
                 "--device", "cpu", "--precision", "fp32", "--compile", "reduce-overhead", "--json"])
    assert code == 0, capsys.readouterr().err
    assert len(compiled) == 3 and {m for _, m in compiled} == {"reduce-overhead"}
    assert len(calls) >= 3  # the body, head and hand encoders ran compiled (hands: two calls or one)
    started = json.loads(capsys.readouterr().out.splitlines()[0])
    assert started["details"]["compile"] == "reduce-overhead"
