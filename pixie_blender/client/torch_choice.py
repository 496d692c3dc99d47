"""Which PyTorch build to install, from the hardware (standard library only, no ``bpy``).

* NVIDIA GPU: the CUDA wheel index is chosen from ``nvidia-smi
  --query-gpu=compute_cap,driver_version,name,memory.total --format=csv,noheader,nounits``: the
  newest index whose wheels carry code for the GPU's compute capability *and* whose CUDA major
  release the driver runs; otherwise the next older index; otherwise the CPU build, with a sentence
  that says what to update.
* Apple Silicon: the standard macOS arm64 wheel from PyPI (MPS).
* Anything else: the CPU build (on Linux and Windows from PyTorch's CPU index, because PyPI's Linux
  wheel is the multi-GB CUDA build).

Sources of the tables (facts, checked 2026-12):

* Architectures per CUDA build of torch 2.12-2.14 and the stable CUDA versions of torch 2.13: the
  "Release Compatibility Matrix" and "PyTorch CUDA Support Matrix" in pytorch/pytorch ``RELEASE.md``.
  torch 2.13 ships CUDA 12.6 and 13.0 (no 12.8); 12.6 covers compute capability 5.0-9.0, 13.0 covers
  7.5-12.0 (12.0 with PTX on Linux only).
* Driver needed per CUDA major release (minor-version compatibility): CUDA 12.x >= 525, CUDA 13.x
  >= 580 (NVIDIA, "CUDA Compatibility", Table 1).
* A cubin built for ``X.y`` runs on every GPU ``X.z`` with ``z >= y`` (same major); PTX is
  compiled by the driver for newer GPUs.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The torch release the installer pins (the one the project's tests run).
TORCH_VERSION = "2.13.0"
#: macOS on Intel: the last torch release with x86_64 macOS wheels (PyPI).
TORCH_VERSION_MACOS_X86 = "2.2.2"
PYTORCH_INDEX = "https://download.pytorch.org/whl"

NVIDIA_SMI_ARGS = (
    "--query-gpu=compute_cap,driver_version,name,memory.total",
    "--format=csv,noheader,nounits",
)
#: Drivers too old for ``compute_cap`` (before about R510) reject the query; then ask for less.
NVIDIA_SMI_FALLBACK_ARGS = ("--query-gpu=driver_version,name", "--format=csv,noheader")

#: Free disk space an install needs, in GB (the environment plus pip's temporary copies).
DISK_GB = {"cuda": 5.0, "cpu": 2.0, "mps": 1.5}


@dataclass(frozen=True)
class CudaBuild:
    """One CUDA flavour of the pinned torch release."""

    tag: str  #: index name and local version label, e.g. "cu130"
    cuda: tuple[int, int]
    min_driver: int  #: lowest driver major release that runs this CUDA major release
    #: compute capabilities with native code, per platform key ("x86_64" = Linux x86-64 and Windows)
    sass: dict[str, tuple[tuple[int, int], ...]]
    #: PTX (driver-compiled) for capabilities from this one up, per platform key; None: none
    ptx: dict[str, tuple[int, int] | None] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"CUDA {self.cuda[0]}.{self.cuda[1]}"


#: Newest first: the chooser takes the first build that fits.
CUDA_BUILDS: tuple[CudaBuild, ...] = (
    CudaBuild(
        "cu130",
        (13, 0),
        580,
        sass={
            "x86_64": ((7, 5), (8, 0), (8, 6), (9, 0), (10, 0), (12, 0)),
            "aarch64": ((8, 0), (9, 0), (10, 0), (11, 0), (12, 0)),
        },
        ptx={"linux-x86_64": (12, 0), "linux-aarch64": (12, 0)},
    ),
    CudaBuild(
        "cu126",
        (12, 6),
        525,
        sass={
            "x86_64": ((5, 0), (6, 0), (7, 0), (7, 5), (8, 0), (8, 6), (9, 0)),
            "aarch64": ((8, 0), (9, 0)),
        },
    ),
)


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    compute_cap: tuple[int, int] | None  #: None when the driver cannot report it
    driver: str
    memory_mib: int | None = None

    @property
    def cc_text(self) -> str:
        return f"{self.compute_cap[0]}.{self.compute_cap[1]}" if self.compute_cap else "unknown"


@dataclass(frozen=True)
class GpuQuery:
    """What ``nvidia-smi`` said: the GPUs, or why there are none."""

    gpus: tuple[Gpu, ...] = ()
    error: str | None = None  #: None: the query ran (possibly with no GPU)
    found: bool = True  #: False: no nvidia-smi on this machine

    @property
    def driver(self) -> tuple[int, ...] | None:
        return parse_driver(self.gpus[0].driver) if self.gpus else None


@dataclass(frozen=True)
class TorchChoice:
    """The build to install and why."""

    variant: str  #: "cu130", "cu126", "cpu" or "mps"
    device: str  #: "cuda", "mps" or "cpu": what the backend will run on
    requirement: str  #: e.g. "torch==2.13.0"
    index_url: str | None  #: None: the default index (PyPI)
    reason: str  #: one sentence for the user
    warnings: tuple[str, ...] = ()
    gpus: tuple[Gpu, ...] = ()

    @property
    def disk_gb(self) -> float:
        return DISK_GB[self.device]

    @property
    def label(self) -> str:
        if self.device == "cuda":
            build = next(b for b in CUDA_BUILDS if b.tag == self.variant)
            return f"PyTorch {self.requirement.split('==')[1]} with {build.label}"
        return f"PyTorch {self.requirement.split('==')[1]} ({'Apple MPS' if self.device == 'mps' else 'CPU'})"


# --------------------------------------------------------------------------------------------------
# nvidia-smi


def parse_driver(text: str) -> tuple[int, ...] | None:
    parts = text.strip().split(".")
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        return None


def _int_or_none(text: str) -> int | None:
    try:
        return int(float(text.strip()))
    except ValueError:
        return None


def parse_nvidia_smi(stdout: str) -> tuple[Gpu, ...]:
    """GPUs from the CSV lines of :data:`NVIDIA_SMI_ARGS` (``compute_cap, driver, name, memory``)
    or :data:`NVIDIA_SMI_FALLBACK_ARGS` (``driver, name``). Raises ValueError on anything else."""
    gpus = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) >= 4:
            cc_text, driver, name, memory = cells[0], cells[1], ",".join(cells[2:-1]), cells[-1]
            major, dot, minor = cc_text.partition(".")
            if not (dot and major.isdigit() and minor.isdigit()):
                raise ValueError(f"unexpected compute capability {cc_text!r} in {line!r}")
            cc = (int(major), int(minor))
            mem = _int_or_none(memory)
        elif len(cells) >= 2:
            driver, name, cc, mem = cells[0], ",".join(cells[1:]), None, None
        else:
            raise ValueError(f"unexpected nvidia-smi line {line!r}")
        if parse_driver(driver) is None:
            raise ValueError(f"unexpected driver version {driver!r} in {line!r}")
        gpus.append(Gpu(len(gpus), name, cc, driver, mem))
    return tuple(gpus)


def find_nvidia_smi() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe:
        return exe
    if sys.platform == "win32":
        for candidate in (
            Path(r"C:\Windows\System32\nvidia-smi.exe"),
            Path(r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe"),
        ):
            if candidate.is_file():
                return str(candidate)
    return None


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    kw = {}
    if sys.platform == "win32":
        kw["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL, **kw)


def query_gpus(exe: str | None = None, run: Runner = _run) -> GpuQuery:
    """Asks ``nvidia-smi`` (never raises). ``exe``: its path (default: found on PATH)."""
    exe = exe or find_nvidia_smi()
    if exe is None:
        return GpuQuery(found=False)
    try:
        proc = run([exe, *NVIDIA_SMI_ARGS])
        if proc.returncode != 0 and "compute_cap" in (proc.stdout + proc.stderr):
            proc = run([exe, *NVIDIA_SMI_FALLBACK_ARGS])  # an old driver: ask without compute_cap
    except (OSError, subprocess.SubprocessError) as exc:
        return GpuQuery(error=f"nvidia-smi could not run: {exc}")
    if proc.returncode != 0:
        first = (proc.stdout + proc.stderr).strip().splitlines()
        return GpuQuery(error=f"nvidia-smi failed: {first[0] if first else f'exit code {proc.returncode}'}")
    try:
        return GpuQuery(gpus=parse_nvidia_smi(proc.stdout))
    except ValueError as exc:
        return GpuQuery(error=f"nvidia-smi gave an answer this add-on cannot read ({exc})")


# --------------------------------------------------------------------------------------------------
# The choice


def _arch_key(system: str, machine: str) -> str:
    return "aarch64" if machine.lower() in ("aarch64", "arm64") else "x86_64"


def build_runs_on(build: CudaBuild, cc: tuple[int, int], system: str, machine: str) -> bool:
    """True if the build carries code for compute capability ``cc`` on this platform."""
    arch = _arch_key(system, machine)
    if any(s[0] == cc[0] and s[1] <= cc[1] for s in build.sass.get(arch, ())):
        return True
    ptx = build.ptx.get(f"{system.lower()}-{arch}")
    return ptx is not None and cc >= ptx


def _cpu(system: str, machine: str, reason: str, warnings=(), gpus=(), torch_version=TORCH_VERSION) -> TorchChoice:
    if system == "Darwin":
        if machine.lower() in ("arm64", "aarch64"):
            return TorchChoice("mps", "mps", f"torch=={torch_version}", None, reason, tuple(warnings), tuple(gpus))
        return TorchChoice(
            "cpu", "cpu", f"torch=={TORCH_VERSION_MACOS_X86}", None, reason, tuple(warnings), tuple(gpus)
        )
    return TorchChoice(
        "cpu", "cpu", f"torch=={torch_version}", f"{PYTORCH_INDEX}/cpu", reason, tuple(warnings), tuple(gpus)
    )


def _cuda(build: CudaBuild, reason: str, warnings=(), gpus=(), torch_version=TORCH_VERSION) -> TorchChoice:
    return TorchChoice(
        build.tag,
        "cuda",
        f"torch=={torch_version}",
        f"{PYTORCH_INDEX}/{build.tag}",
        reason,
        tuple(warnings),
        tuple(gpus),
    )


def choose_torch(
    query: GpuQuery,
    system: str | None = None,
    machine: str | None = None,
    *,
    override: str = "AUTO",
    torch_version: str = TORCH_VERSION,
) -> TorchChoice:
    """The torch build for this machine.

    Args:
        query: what :func:`query_gpus` found.
        system, machine: ``platform.system()`` / ``platform.machine()`` (default: this machine).
        override: "AUTO", "CPU", or a CUDA tag ("cu126", "cu130") the user forces.
    """
    system = system or platform.system()
    machine = machine or platform.machine()
    if system == "Darwin":
        if machine.lower() in ("arm64", "aarch64"):
            return _cpu(system, machine, "Apple Silicon: the standard build, which runs on the GPU through MPS.")
        return _cpu(
            system,
            machine,
            f"Intel Mac: the CPU build of torch {TORCH_VERSION_MACOS_X86}, the last release for this platform.",
        )
    if override == "CPU":
        return _cpu(system, machine, "The CPU build, as chosen in the preferences.", torch_version=torch_version)
    if override not in ("AUTO", ""):
        build = next((b for b in CUDA_BUILDS if b.tag == override), None)
        if build is None:
            raise ValueError(f"unknown torch build {override!r} (AUTO, CPU, {', '.join(b.tag for b in CUDA_BUILDS)})")
        return _cuda(
            build, f"{build.label}, as chosen in the preferences.", gpus=query.gpus, torch_version=torch_version
        )

    if not query.found:
        return _cpu(system, machine, "No NVIDIA GPU found (no nvidia-smi): the CPU build.", torch_version=torch_version)
    if query.error:
        return _cpu(
            system,
            machine,
            "The NVIDIA driver did not answer: the CPU build.",
            [f"{query.error}. Reinstall or update the NVIDIA driver, then click Install Backend again to use the GPU."],
            torch_version=torch_version,
        )
    if not query.gpus:
        return _cpu(system, machine, "nvidia-smi lists no GPU: the CPU build.", torch_version=torch_version)

    driver = query.driver or (0,)
    gpus = query.gpus
    known = [g for g in gpus if g.compute_cap is not None]
    if not known:  # a driver too old to report compute capability
        return _cpu(
            system,
            machine,
            f"NVIDIA driver {gpus[0].driver} is too old for the CUDA builds of torch {torch_version}: the CPU build.",
            [
                f"Update the NVIDIA driver to {CUDA_BUILDS[-1].min_driver} or newer and click Install Backend again "
                "to use the GPU."
            ],
            gpus,
            torch_version,
        )

    # Per build: the GPUs it has code for, if the driver runs it.
    best: tuple[tuple[int, tuple[int, int]], CudaBuild, list[Gpu]] | None = None
    for build in CUDA_BUILDS:
        if driver[0] < build.min_driver:
            continue
        served = [g for g in known if build_runs_on(build, g.compute_cap, system, machine)]
        if not served:
            continue
        score = (len(served), max(g.compute_cap for g in served))
        if best is None or score > best[0]:
            best = (score, build, served)

    if best is None:
        return _cpu(system, machine, *_why_no_cuda(known, driver, system, machine, torch_version), gpus, torch_version)

    _, build, served = best
    warnings = []
    newest = CUDA_BUILDS[0]
    if build is not newest and driver[0] < newest.min_driver:
        warnings.append(
            f"NVIDIA driver {gpus[0].driver} is too old for {newest.label} (needs {newest.min_driver} or newer): "
            f"installing the {build.label} build instead."
        )
    for g in known:
        if g not in served:
            warnings.append(
                f"GPU {g.index} ({g.name}, compute capability {g.cc_text}) is not supported by the {build.label} "
                f"build and will not be used."
            )
    names = ", ".join(f"{g.name} ({g.cc_text})" for g in served)
    return _cuda(build, f"{build.label} for {names}.", warnings, gpus, torch_version)


def _why_no_cuda(known, driver, system, machine, torch_version) -> tuple[str, list[str]]:
    """(reason, warnings) when no CUDA build fits."""
    gpu = max(known, key=lambda g: g.compute_cap)
    fits = [b for b in CUDA_BUILDS if build_runs_on(b, gpu.compute_cap, system, machine)]
    if not fits:
        return (
            f"{gpu.name} (compute capability {gpu.cc_text}) is not supported by any CUDA build of torch "
            f"{torch_version}: the CPU build.",
            [],
        )
    need = min(b.min_driver for b in fits)
    build = next(b for b in fits if b.min_driver == need)
    return (
        f"NVIDIA driver {'.'.join(map(str, driver))} is too old for {gpu.name} (compute capability "
        f"{gpu.cc_text} needs the {build.label} build, driver {need} or newer): the CPU build.",
        [f"Update the NVIDIA driver to {need} or newer and click Install Backend again to use the GPU."],
    )


def detect(override: str = "AUTO", *, run: Runner = _run) -> TorchChoice:
    """:func:`choose_torch` for this machine (runs nvidia-smi on Linux and Windows)."""
    system = platform.system()
    query = GpuQuery(found=False) if system == "Darwin" else query_gpus(run=run)
    return choose_torch(query, system, platform.machine(), override=override)
