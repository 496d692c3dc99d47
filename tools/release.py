"""Build the release zips for the platform this runs on: the small zip and a "full" zip.

    python3.11 -m tools.release --torch cpu            # -> dist/pixie_blender-<v>.zip
                                                       #    dist/pixie_blender-<v>-linux_x64-cpu-py311-full.zip
    python3.11 -m tools.release --torch cu130 --skip-small

* **small**: the extension with the backend wheel (``tools/build_extension.py``); "Install Backend"
  downloads torch and the dependencies (online access must be allowed).
* **full**: the same plus ``backend_dist/wheelhouse/``: the torch build and every dependency as
  wheels, and ``wheelhouse.json`` describing them; "Install Backend" then runs with ``--no-index
  --find-links`` and needs no network. Its manifest names the platform (Blender refuses the zip
  elsewhere) and the Blender versions whose Python matches the wheels (cp311: 4.2 to 5.0; cp313: 5.1+).

Wheels depend on the platform *and* the Python version, and pip evaluates dependency markers
(``colorama; platform_system == "Windows"``...) for the machine it runs on, so each full zip is
built **on its own platform** with a Python of Blender's minor version (``--python``). Run it once
per platform (a CI matrix). The wheelhouse is filled with ``pip download``: torch from the PyTorch
index of the chosen build, the rest from the default index under a constraints file that pins the
exact torch build.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools import build_extension as ext

PYTORCH_INDEX = "https://download.pytorch.org/whl"
TORCH_VERSION = "2.13.0"
TORCH_VERSION_MACOS_X86 = "2.2.2"
MEDIAPIPE = "mediapipe==0.10.21"
EXTRA = "detector"
#: Blender releases per Python minor version: (blender_version_min, blender_version_max or None).
BLENDER_FOR_PYTHON = {(3, 11): ("4.2.0", "5.1.0"), (3, 13): ("5.1.0", None)}


def blender_platform(system: str | None = None, machine: str | None = None) -> str:
    """Blender's platform name for this machine (``linux-x64``, ``windows-x64``, ``macos-arm64``...)."""
    system = (system or platform.system()).lower()
    machine = (machine or platform.machine()).lower()
    os_name = {"linux": "linux", "windows": "windows", "darwin": "macos"}.get(system)
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if os_name is None or arch is None:
        raise ext.BuildError(f"no Blender platform for {system}/{machine}")
    return f"{os_name}-{arch}"


def torch_source(variant: str, plat: str) -> tuple[str, str | None, str]:
    """(requirement, index URL or None for the default index, device) of a torch build."""
    if plat.startswith("macos"):
        if variant not in ("cpu", "mps"):
            raise ext.BuildError("macOS has no CUDA builds: use --torch mps (Apple Silicon) or cpu (Intel)")
        version = TORCH_VERSION_MACOS_X86 if plat == "macos-x64" else TORCH_VERSION
        return f"torch=={version}", None, "mps" if plat == "macos-arm64" else "cpu"
    if variant == "mps":
        raise ext.BuildError("mps exists on macOS only")
    return f"torch=={TORCH_VERSION}", f"{PYTORCH_INDEX}/{variant}", "cpu" if variant == "cpu" else "cuda"


def _pip(python: str, *args: str) -> str:
    cmd = [python, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:", *args]
    print("+ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ext.BuildError(f"pip download failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.stdout


def _python_version(python: str) -> tuple[int, int]:
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


def build_wheelhouse(
    dest: Path,
    backend_wheel: Path,
    *,
    torch_requirement: str,
    torch_index: str | None,
    variant: str,
    device: str,
    python: str = sys.executable,
    mediapipe: bool = True,
) -> dict:
    """Fills ``dest`` with torch, the backend's dependencies (with the ``[detector]`` extra),
    mediapipe (no dependencies) and pip, for this platform and ``python``'s version. Writes and
    returns ``wheelhouse.json``. ``torch_index=None``: pip's own configuration decides."""
    dest.mkdir(parents=True, exist_ok=True)
    _pip(python, "-d", str(dest), torch_requirement, *(["--index-url", torch_index] if torch_index else []))
    torch_wheels = sorted(dest.glob("torch-*.whl"))
    if len(torch_wheels) != 1:
        raise ext.BuildError(f"expected one torch wheel, found {[w.name for w in torch_wheels]}")
    torch_version = torch_wheels[0].name.split("-")[1].replace("%2B", "+")
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(f"torch=={torch_version}\n")
        _pip(python, "-d", str(dest), "--find-links", str(dest), "-c", str(constraints), f"{backend_wheel}[{EXTRA}]")
    if mediapipe:
        _pip(python, "-d", str(dest), "--no-deps", MEDIAPIPE)
    _pip(python, "-d", str(dest), "--no-deps", "pip")
    for copy in dest.glob(backend_wheel.name):  # it travels in backend_dist/, not twice
        copy.unlink()
    major, minor = _python_version(python)
    meta = {
        "schema": 1,
        "platform": blender_platform(),
        "python": f"{major}.{minor}",
        "torch": torch_version,
        "variant": variant,
        "device": device,
        "mediapipe": mediapipe,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (dest / "wheelhouse.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def full_zip_name(version: str, meta: dict) -> str:
    py = meta["python"].replace(".", "")
    return f"pixie_blender-{version}-{meta['platform'].replace('-', '_')}-{meta['variant']}-py{py}-full.zip"


def build_full(
    out_dir: Path,
    wheelhouse: Path,
    meta: dict,
    backend_wheel: Path,
    *,
    quiet: bool = False,
) -> Path:
    """The full zip from a filled wheelhouse (platform and Blender range in its manifest)."""
    version = ext.check_versions()
    py = tuple(int(x) for x in meta["python"].split("."))
    if py not in BLENDER_FOR_PYTHON:
        raise ext.BuildError(f"no Blender release ships Python {meta['python']} (known: {list(BLENDER_FOR_PYTHON)})")
    bmin, bmax = BLENDER_FOR_PYTHON[py]
    fields: dict = {"platforms": [meta["platform"]], "blender_version_min": bmin}
    if bmax:
        fields["blender_version_max"] = bmax
    return ext.build(
        out_dir,
        wheelhouse=wheelhouse,
        manifest_fields=fields,
        zip_name=full_zip_name(version, meta),
        backend_wheel=backend_wheel,
        quiet=quiet,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch", default="cpu", help="torch build of the full zip: cpu, cu126, cu130 or mps")
    ap.add_argument("--python", default=sys.executable, help="a Python of Blender's minor version (default: this)")
    ap.add_argument("--out", type=Path, default=ext.ROOT / "dist")
    ap.add_argument("--skip-small", action="store_true", help="only the full zip")
    ap.add_argument("--no-mediapipe", action="store_true", help="leave mediapipe out of the wheelhouse")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"cpu|mps|cu\d+", args.torch):
        ap.error("--torch must be cpu, mps or cuNNN")
    try:
        plat = blender_platform()
        requirement, index, device = torch_source(args.torch, plat)
        with tempfile.TemporaryDirectory(prefix="pixie-release-") as tmp:
            wheel = ext.build_backend_wheel(Path(tmp) / "wheel")
            if not args.skip_small:
                ext.build(args.out, backend_wheel=wheel)
            house = Path(tmp) / "wheelhouse"
            meta = build_wheelhouse(
                house,
                wheel,
                torch_requirement=requirement,
                torch_index=index,
                variant=args.torch,
                device=device,
                python=args.python,
                mediapipe=not args.no_mediapipe,
            )
            build_full(args.out, house, meta, wheel)
    except ext.BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
