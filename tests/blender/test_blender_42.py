"""Run this folder's tests again on Blender 4.2 LTS (``.venv-bpy42``, bpy 4.2.x), so that the
single command ``.venv/bin/python -m pytest`` covers both ends of the supported range."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY42 = ROOT / ".venv-bpy42" / "bin" / "python"
NESTED = "PIXIE_NESTED_BPY_RUN"


@pytest.mark.skipif(not PY42.exists(), reason=".venv-bpy42 not set up (tests/support/bootstrap.py)")
@pytest.mark.skipif(bool(os.environ.get(NESTED)), reason="already the nested 4.2 run")
def test_addon_tests_pass_on_blender_42(bpy_mod):
    if bpy_mod.app.version < (5, 0, 0):
        pytest.skip("this process is the old Blender already")
    env = dict(os.environ, **{NESTED: "1"})
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [str(PY42), "-m", "pytest", "tests/blender", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:  # a hang at exit (timers, msgbus) must not hang CI
        pytest.fail(f"bpy 4.2 run timed out:\n{(exc.stdout or '')[-3000:]}")
    out = proc.stdout + proc.stderr
    summary = [ln for ln in out.splitlines() if " passed" in ln or " failed" in ln or " error" in ln]
    print(f"bpy 4.2 run: {summary[-1] if summary else out[-500:]}")
    if proc.returncode in (-11, 139) and summary and " failed" not in summary[-1]:
        pytest.fail(
            f"the bpy 4.2 tests passed ({summary[-1].strip()}) but the interpreter crashed at exit "
            "(segfault): some test or module left a bpy.app.timers function, a msgbus "
            "subscription or a thread behind (blender.md §3, exit-time crash)"
        )
    assert proc.returncode == 0, out[-6000:]
    assert (
        "4.2"
        in subprocess.run(
            [str(PY42), "-c", "import bpy; print(bpy.app.version_string)"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )
