"""Developer and CI set-up: build the virtual environments, then run the self-test.

    python3.11 tests/support/bootstrap.py

Creates, in the repository root:

* ``.venv``: the backend (editable), its test tools, the mediapipe detector and ``bpy`` 5.0.1;
* ``.venv-bpy42``: ``bpy`` 4.2 LTS with numpy < 2 and Pillow, for the add-on tests on the oldest
  supported Blender (the add-on needs no torch), and this project installed without its
  dependencies (the tests' synthetic mannequin is numpy only).

(the backend's dependencies, FastAPI and uvicorn for ``serve`` included, and the ``dev`` extra with
httpx and schemathesis for the service tests come from ``pyproject.toml``)
and finally runs ``pixie-backend selftest`` (the whole pipeline on random weights and synthetic
assets). Re-running it is cheap: pip skips what is already installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAIN_VENV = ROOT / ".venv"
BPY42_VENV = ROOT / ".venv-bpy42"

TORCH = "torch==2.13.0"  # the CPU wheel (it lies on disk on the project machines)
BPY_NEW = "bpy==5.0.1"
BPY_OLD = "bpy==4.2.23"
OPENCV = "opencv-python-headless==4.11.0.86"  # the newest OpenCV that accepts numpy < 2 (bpy)
MEDIAPIPE = "mediapipe==0.10.21"  # the last release that bundles its models


def venv_python(env: Path) -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    exe = "python.exe" if os.name == "nt" else "python"
    return env / sub / exe


def run(*cmd: object) -> None:
    printable = " ".join(str(c) for c in cmd)
    print(f"+ {printable}", flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def ensure_venv(env: Path) -> Path:
    py = venv_python(env)
    if not py.exists():
        venv.EnvBuilder(with_pip=True, clear=False).create(env)
    return py


def pip(py: Path, *args: str) -> None:
    run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", *args)


def main() -> int:
    if sys.version_info[:2] != (3, 11):
        print("bpy wheels exist for Python 3.11 only; run this with python3.11", file=sys.stderr)
        return 2
    py = ensure_venv(MAIN_VENV)
    pip(py, TORCH)
    pip(py, "-e", ".[dev,detector]", BPY_NEW, OPENCV)
    pip(py, "--no-deps", MEDIAPIPE)

    old = ensure_venv(BPY42_VENV)
    pip(old, BPY_OLD, "numpy<2", "pytest>=8", "pillow>=9.1")  # Pillow: the panel picture's test
    # the project without its dependencies (no torch): the add-on tests import the numpy-only
    # synthetic mannequin (pixie_backend.synthetic.mannequin) from here
    pip(old, "--no-deps", "-e", ".")

    run(py, "-m", "pixie_backend", "selftest")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
