"""The torch build chosen from recorded ``nvidia-smi`` answers: several GPUs and driver versions,
no nvidia-smi, a driver that does not answer, an old driver without ``compute_cap``, garbage; Apple
Silicon and Intel Macs; the user's override."""

from __future__ import annotations

import subprocess

import pytest

from pixie_blender.client import torch_choice as tc

#: Recorded lines of ``nvidia-smi --query-gpu=compute_cap,driver_version,name,memory.total
#: --format=csv,noheader,nounits``.
RTX4090_560 = "8.9, 560.35.03, NVIDIA GeForce RTX 4090, 24564\n"
RTX5090_580 = "12.0, 580.65.06, NVIDIA GeForce RTX 5090, 32607\n"
RTX5090_570 = "12.0, 570.124.06, NVIDIA GeForce RTX 5090, 32607\n"
GTX1080_580 = "6.1, 580.82.07, NVIDIA GeForce GTX 1080, 8192\n"
MIXED_WIN = "6.1, 581.57, NVIDIA GeForce GTX 1080, 8192\n12.0, 581.57, NVIDIA GeForce RTX 5090, 32607\n"
A100X2_535 = "8.0, 535.183.01, NVIDIA A100-SXM4-80GB, 81920\n8.0, 535.183.01, NVIDIA A100-SXM4-80GB, 81920\n"
H100_580 = "9.0, 580.65.06, NVIDIA H100 80GB HBM3, 81559\n"
B200_580 = "10.0, 580.65.06, NVIDIA B200, 183359\n"
GB10_580 = "12.1, 580.95.05, NVIDIA GB10, [N/A]\n"
T4_418 = "7.5, 418.67, Tesla T4, 15109\n"
OLD_DRIVER_ERR = 'Field "compute_cap" is not a valid field to query.\n'
OLD_DRIVER_FALLBACK = "470.256.02, Tesla K80\n"
NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
    "latest NVIDIA driver is installed and running.\n"
)


def recorded(*answers: tuple[int, str]):
    """A runner that replays (returncode, stdout) answers and records the commands."""
    calls: list[list[str]] = []
    queue = list(answers)

    def run(cmd):
        calls.append(list(cmd))
        code, out = queue.pop(0)
        return subprocess.CompletedProcess(cmd, code, stdout=out, stderr="")

    run.calls = calls
    return run


def choose(stdout: str, system="Linux", machine="x86_64", **kw) -> tc.TorchChoice:
    query = tc.query_gpus(exe="nvidia-smi", run=recorded((0, stdout)))
    return tc.choose_torch(query, system, machine, **kw)


def test_query_uses_compute_cap_and_driver_fields():
    run = recorded((0, RTX4090_560))
    q = tc.query_gpus(exe="/usr/bin/nvidia-smi", run=run)
    assert run.calls == [
        [
            "/usr/bin/nvidia-smi",
            "--query-gpu=compute_cap,driver_version,name,memory.total",
            "--format=csv,noheader,nounits",
        ]
    ]
    assert q.gpus == (tc.Gpu(0, "NVIDIA GeForce RTX 4090", (8, 9), "560.35.03", 24564),)
    assert q.driver == (560, 35, 3)


def test_ada_on_a_560_driver_takes_cuda_126_and_says_why_not_13():
    c = choose(RTX4090_560)
    assert (c.variant, c.device, c.requirement) == ("cu126", "cuda", "torch==2.13.0")
    assert c.index_url == "https://download.pytorch.org/whl/cu126"
    assert "CUDA 12.6 for NVIDIA GeForce RTX 4090 (8.9)" in c.reason
    assert c.warnings == (
        "NVIDIA driver 560.35.03 is too old for CUDA 13.0 (needs 580 or newer): "
        "installing the CUDA 12.6 build instead.",
    )
    assert c.disk_gb == 5.0


def test_blackwell_needs_the_cuda_13_build():
    c = choose(RTX5090_580)
    assert c.variant == "cu130" and c.index_url.endswith("/cu130") and c.warnings == ()


def test_blackwell_on_an_old_driver_falls_back_to_cpu_and_says_what_to_update():
    c = choose(RTX5090_570)
    assert (c.variant, c.device) == ("cpu", "cpu") and c.index_url == "https://download.pytorch.org/whl/cpu"
    assert "compute capability 12.0 needs the CUDA 13.0 build, driver 580 or newer" in c.reason
    assert c.warnings == ("Update the NVIDIA driver to 580 or newer and click Install Backend again to use the GPU.",)


def test_pascal_is_served_by_cuda_126_even_on_a_new_driver():
    c = choose(GTX1080_580)
    assert c.variant == "cu126" and c.warnings == ()  # CUDA 13 dropped compute capability < 7.5


def test_mixed_gpus_prefer_the_build_for_the_newest_gpu_and_name_the_other():
    c = choose(MIXED_WIN, system="Windows", machine="AMD64")
    assert c.variant == "cu130"
    assert c.warnings == (
        "GPU 0 (NVIDIA GeForce GTX 1080, compute capability 6.1) is not supported by the CUDA 13.0 build and "
        "will not be used.",
    )


def test_two_a100_on_a_535_driver():
    c = choose(A100X2_535)
    assert c.variant == "cu126" and "NVIDIA A100-SXM4-80GB (8.0), NVIDIA A100-SXM4-80GB (8.0)" in c.reason
    assert len(c.gpus) == 2


@pytest.mark.parametrize("smi", [H100_580, B200_580])
def test_datacenter_gpus_on_580(smi):
    assert choose(smi).variant == "cu130"


def test_gb10_on_arm_linux_runs_the_12_0_code():
    c = choose(GB10_580, machine="aarch64")
    assert c.variant == "cu130" and c.gpus[0].memory_mib is None


def test_driver_older_than_every_build():
    c = choose(T4_418)
    assert c.variant == "cpu" and "driver 418.67 is too old" in c.reason
    assert "525 or newer" in c.warnings[0]


def test_future_gpu_uses_ptx_on_linux_only():
    future = "13.0, 600.10, NVIDIA Future, 65536\n"
    assert choose(future).variant == "cu130"
    c = choose(future, system="Windows", machine="AMD64")
    assert c.variant == "cpu" and "not supported by any CUDA build of torch 2.13.0" in c.reason


def test_old_driver_without_compute_cap_asks_again_and_chooses_cpu():
    run = recorded((2, OLD_DRIVER_ERR), (0, OLD_DRIVER_FALLBACK))
    q = tc.query_gpus(exe="nvidia-smi", run=run)
    assert run.calls[1][1:] == ["--query-gpu=driver_version,name", "--format=csv,noheader"]
    assert q.gpus == (tc.Gpu(0, "Tesla K80", None, "470.256.02", None),)
    c = tc.choose_torch(q, "Linux", "x86_64")
    assert c.variant == "cpu" and "470.256.02 is too old" in c.reason and "525 or newer" in c.warnings[0]


def test_no_nvidia_smi_means_cpu():
    c = tc.choose_torch(tc.GpuQuery(found=False), "Linux")
    assert c.variant == "cpu" and "no nvidia-smi" in c.reason and c.disk_gb == 2.0


def test_missing_executable_is_reported_as_not_found(monkeypatch):
    monkeypatch.setattr(tc, "find_nvidia_smi", lambda: None)
    assert tc.query_gpus() == tc.GpuQuery(found=False)


def test_a_driver_that_does_not_answer():
    q = tc.query_gpus(exe="nvidia-smi", run=recorded((9, NO_DRIVER)))
    c = tc.choose_torch(q, "Linux", "x86_64")
    assert c.variant == "cpu" and "did not answer" in c.reason
    assert "couldn't communicate with the NVIDIA driver" in c.warnings[0]


def test_no_devices_and_garbage():
    q = tc.query_gpus(exe="nvidia-smi", run=recorded((6, "No devices were found\n")))
    assert q.error == "nvidia-smi failed: No devices were found"
    q = tc.query_gpus(exe="nvidia-smi", run=recorded((0, "hello world\n")))
    assert "cannot read" in q.error and tc.choose_torch(q, "Linux").variant == "cpu"
    q = tc.query_gpus(exe="nvidia-smi", run=recorded((0, "\n")))
    assert q.gpus == () and "lists no GPU" in tc.choose_torch(q, "Linux").reason


def test_nvidia_smi_that_cannot_run():
    def boom(cmd):
        raise subprocess.TimeoutExpired(cmd, 20)

    q = tc.query_gpus(exe="nvidia-smi", run=boom)
    assert q.error.startswith("nvidia-smi could not run") and tc.choose_torch(q, "Linux").variant == "cpu"


def test_macs():
    arm = tc.choose_torch(tc.GpuQuery(found=False), "Darwin", "arm64")
    assert (arm.variant, arm.device, arm.index_url, arm.requirement) == ("mps", "mps", None, "torch==2.13.0")
    intel = tc.choose_torch(tc.GpuQuery(found=False), "Darwin", "x86_64")
    assert (intel.device, intel.index_url, intel.requirement) == ("cpu", None, "torch==2.2.2")


def test_overrides():
    q = tc.query_gpus(exe="nvidia-smi", run=recorded((0, RTX5090_580)))
    assert tc.choose_torch(q, "Linux", override="CPU").variant == "cpu"
    forced = tc.choose_torch(tc.GpuQuery(found=False), "Linux", override="cu126")
    assert forced.variant == "cu126" and forced.index_url.endswith("/cu126")
    with pytest.raises(ValueError, match="unknown torch build"):
        tc.choose_torch(q, "Linux", override="cu999")


def test_build_table_matches_the_binary_compatibility_rule():
    cu126, cu130 = (next(b for b in tc.CUDA_BUILDS if b.tag == t) for t in ("cu126", "cu130"))
    assert tc.build_runs_on(cu126, (8, 9), "Linux", "x86_64")  # 8.6 code runs on 8.9
    assert not tc.build_runs_on(cu126, (12, 0), "Linux", "x86_64")
    assert not tc.build_runs_on(cu130, (7, 0), "Linux", "x86_64")
    assert tc.build_runs_on(cu130, (7, 5), "Windows", "AMD64")
    assert tc.build_runs_on(cu126, (8, 7), "Linux", "aarch64")  # arm builds carry 8.0, which runs on 8.7
    assert not tc.build_runs_on(cu126, (7, 5), "Linux", "aarch64")
