"""Add-on tests that need a Blender of their own: a fresh bpy process (the interpreter running the
tests) with its own user folders, running a script that prints one ``RESULT <json>`` line; and the
end-to-end set-up of the add-on as a user has it (the extension zip installed through Blender's
extension system, the main ``.venv`` as its Backend Python, synthetic model files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the main environment's interpreter (``tests/support/bootstrap.py``): the end-to-end tests' backend
BACKEND_PY = ROOT / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment with Blender's user folders (and the XDG cache) in ``tmp_path``."""
    return dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"), XDG_CACHE_HOME=str(tmp_path / "xdg"),
                **extra)


def run_script(code: str, args=(), *, env: dict[str, str], cwd: Path = ROOT, timeout: float = 180) -> dict:
    """Run ``code`` in a fresh bpy process and return its last ``RESULT`` line's JSON (the process
    must exit 0 and print one; otherwise the assertion shows the ends of its output)."""
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def run_backend(args, env: dict[str, str], timeout: float = 600) -> None:
    """Run the backend's interpreter (``BACKEND_PY``) with this repository's backend first on its path."""
    backend_env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "backend"), env.get("PYTHONPATH")])))
    run = subprocess.run([str(BACKEND_PY), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                         env=backend_env)
    assert run.returncode == 0, run.stderr[-2000:]


def make_synthetic_data(data: Path, env: dict[str, str]) -> None:
    """Small synthetic model files (``make-synthetic --body small --net tiny``) in ``data``."""
    run_backend(["-m", "pixie_backend", "make-synthetic", "--out", data, "--body", "small", "--net", "tiny"], env)


#: The start of an end-to-end script, run as ``run_script(INSTALLED_ADDON + rest, [zip_path,
#: BACKEND_PY, data_dir, work, *args])``: installs the extension zip through Blender's extension
#: system (``res``), points its preferences (``prefs``) at the backend and the data folder on the CPU,
#: saves ``work/scene.blend`` (results go next to it), and defines ``drive``.
INSTALLED_ADDON = r'''
import importlib, json, os, sys, time
import bpy
zip_path, backend_py, data_dir, work = sys.argv[1:5]
args = sys.argv[5:]
res = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
name = "bl_ext.user_default.pixie_blender"
prefs = bpy.context.preferences.addons[name].preferences
prefs.backend_python, prefs.data_dir, prefs.backend_device = backend_py, data_dir, "CPU"
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(work, "scene.blend"))

def drive(mod, busy_states=("running", "waiting"), on_step=None, timeout=600):
    """Pump ``mod``'s task (an operator module: ``pump()``, ``STATE``) to its end, as its modal
    operator would, timing each step and editing the scene every 20 busy steps; ``on_step(progress)``
    after each unfinished step."""
    steps = busy = 0
    longest = 0.0
    edits, texts = [], []
    deadline = time.monotonic() + timeout
    while True:
        t0 = time.perf_counter()
        done = mod.pump()
        dt = time.perf_counter() - t0
        steps += 1
        if done:
            last = mod.STATE.last
            return dict(steps=steps, busy=busy, longest=longest, edits=edits, texts=texts, report=mod.STATE.report,
                        state=last.state if last else None, code=last.error_code if last else None)
        longest = max(longest, dt)
        p = mod.STATE.task.progress
        if not texts or texts[-1] != p.text:
            texts.append(p.text)
        if p.state in busy_states:
            busy += 1
            if busy % 20 == 1:  # the scene stays editable between steps
                ob = bpy.data.objects.new(f"edit_{busy}", None)
                bpy.context.scene.collection.objects.link(ob)
                edits.append(ob.name)
        if on_step is not None:
            on_step(p)
        assert time.monotonic() < deadline, p
        time.sleep(0.02)
'''
