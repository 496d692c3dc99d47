"""The backend section of the add-on, headless: the preferences draw in every state (not installed,
installing, installed, failed, own environment, remote), the operators exist, Install Backend runs
through its operator and job loop on stand-in wheels (tests/support/fake_wheels.py; the real
backend is installed in test_backend_install.py), Check Backend reports versions, Remove Backend
removes, and disabling the add-on stops the backend process it supervises."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from pixie_blender.client import install_plan, installer
from pixie_blender.operators import backend as ops
from pixie_blender.ui import backend as ui
from tests.blender.test_ui import RecordingLayout, _PrefsProxy
from tests.support.blender_process import run_script, user_env

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "support" / "fake_backend.py"


@pytest.fixture
def prefs(bpy_mod, tmp_path):
    p = ops.addon_preferences(bpy_mod.context)
    saved = {k: getattr(p, k) for k in ("backend_folder", "backend_python", "remote_enabled", "install_python")}
    p.backend_folder = str(tmp_path / "backend")
    p.backend_python = ""
    p.remote_enabled = False
    ops.STATE.__init__()
    yield p
    if ops.STATE.job is not None:
        ops.STATE.job.cancel()
        ops.STATE.job.wait(60)
    ops.STATE.__init__()
    for k, v in saved.items():
        setattr(p, k, v)


def draw(bpy_mod, prefs) -> list:
    log: list = []
    type(prefs).draw(_PrefsProxy(prefs, RecordingLayout(log)), bpy_mod.context)
    return log


def labels(log) -> list[str]:
    return [e[1] for e in log if e[0] == "label"]


def drive(timeout: float = 300.0) -> installer.InstallProgress:
    """What the modal monitor does on its TIMER events, in a blocking loop."""
    deadline = time.monotonic() + timeout
    while not ops.pump():
        assert time.monotonic() < deadline, "install did not finish"
        time.sleep(0.05)
    return ops.STATE.last


def test_operators_exist(bpy_mod):
    for name in ("backend_install", "backend_monitor", "backend_cancel", "backend_check", "backend_remove"):
        getattr(bpy_mod.ops.pixie, name).get_rna_type()


def test_preferences_draw_not_installed(bpy_mod, prefs):
    log = draw(bpy_mod, prefs)
    ops_drawn = {e[1] for e in log if e[0] == "operator"}
    assert {"pixie.backend_install", "pixie.backend_check", "pixie.clear_cache", "pixie.data_check"} <= ops_drawn
    props = {e[1] for e in log if e[0] == "prop"}
    assert {
        "backend_folder",
        "install_python",
        "torch_build",
        "idle_minutes",
        "backend_python",
        "remote_enabled",
        "remote_url",
        "remote_token",
        "data_dir",
    } <= props
    assert "Not installed: click Install Backend" in labels(log)
    assert ui.status(bpy_mod.context)[0] == "missing"


def test_preferences_draw_other_states(bpy_mod, prefs, tmp_path):
    # installed: a complete environment (marker) in the install folder
    env = Path(prefs.backend_folder) / "env"
    py = install_plan.env_python(env)
    py.parent.mkdir(parents=True)
    py.write_text("")
    (env / install_plan.MARKER).write_text(
        json.dumps({"schema": 1, "backend_version": "0.1.0", "torch": "2.13.0+cpu", "device": "cpu", "python": "3.11"})
    )
    log = draw(bpy_mod, prefs)
    assert "Installed: pixie-backend 0.1.0, torch 2.13.0+cpu (CPU), Python 3.11" in labels(log)
    assert ("operator", "pixie.backend_remove") in log
    assert ops.effective_backend(bpy_mod.context) == (str(py), True, "installed")

    # failed: the error and the last log lines
    failed = installer.InstallProgress(state="failed", error="pip exited with code 1: ERROR: no torch", fraction=0.3)
    failed.log.extend(["Processing torch", "ERROR: No matching distribution found for torch==2.13.0"])
    ops.STATE.last = failed
    install_plan.remove_installed(Path(prefs.backend_folder))
    text = " ".join(labels(draw(bpy_mod, prefs)))
    assert "The last install failed" in text and "ERROR: No matching distribution found" in text
    assert "Last lines of the install log:" in text

    # a version mismatch found by Check Backend
    ops.STATE.info = install_plan.BackendInfo("3.11.7", "0.0.9", "2.13.0+cpu", "cpu", None, {"mediapipe": None})
    text = " ".join(labels(draw(bpy_mod, prefs)))
    assert "backend is version 0.0.9 but the add-on is 0.1.0" in text and "OpenCV (mediapipe not installed)" in text

    # own environment, then remote
    prefs.backend_python = sys.executable
    assert ui.status(bpy_mod.context)[:2] == ("own", f"Your own environment: {sys.executable}")
    assert ops.effective_backend(bpy_mod.context) == (sys.executable, False, "own")
    prefs.remote_enabled = True
    assert ui.status(bpy_mod.context)[0] == "remote"


def test_install_refuses_without_a_backend_wheel_or_network(bpy_mod, prefs, tmp_path):
    with pytest.raises(RuntimeError, match="carries no backend wheel"):
        bpy_mod.ops.pixie.backend_install("EXEC_DEFAULT", backend_wheel=str(tmp_path / "none.whl"))
    wheel = tmp_path / "pixie_blender-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert not bpy_mod.app.online_access  # headless bpy: online access is off
    with pytest.raises(RuntimeError, match="online access is off"):
        bpy_mod.ops.pixie.backend_install("EXEC_DEFAULT", backend_wheel=str(wheel))
    assert ops.STATE.job is None


@pytest.mark.slow
def test_install_check_remove_through_the_operators(bpy_mod, prefs, tmp_path):
    from tests.support.fake_wheels import fake_wheelhouse

    house, wheel = fake_wheelhouse(tmp_path / "house")
    assert bpy_mod.ops.pixie.backend_install("EXEC_DEFAULT", wheelhouse=str(house), backend_wheel=str(wheel)) == {
        "FINISHED"
    }
    assert ops.STATE.job is not None and ui.status(bpy_mod.context)[0] == "installing"
    log = draw(bpy_mod, prefs)
    assert ("operator", "pixie.backend_cancel") in log and any(e[0] == "progress" for e in log)
    final = drive()
    assert final.state == "done", (final.error, final.last_lines(20))
    found = ops.installed(bpy_mod.context)
    assert found is not None and found.root == Path(prefs.backend_folder)
    assert ui.status(bpy_mod.context)[0] == "installed"

    ops.STATE.info = None
    assert bpy_mod.ops.pixie.backend_check("EXEC_DEFAULT", wait=True) == {"FINISHED"}
    assert ops.STATE.info.backend_version == "0.1.0" and ops.STATE.info.torch_version == "2.13.0+cpu"
    assert any("Checked: pixie-backend 0.1.0, torch 2.13.0+cpu on CPU" in t for t in labels(draw(bpy_mod, prefs)))

    assert bpy_mod.ops.pixie.backend_remove("EXEC_DEFAULT") == {"FINISHED"}
    assert ops.installed(bpy_mod.context) is None and ui.status(bpy_mod.context)[0] == "missing"


def test_disabling_the_addon_stops_the_supervised_backend(tmp_path):
    """In a fresh process: the add-on starts a backend (a stand-in) through its supervisor, the
    add-on is disabled, the backend is gone and nothing of it stays registered."""
    code = f"""
import json, sys, bpy, addon_utils
addon_utils.enable("pixie_blender", default_set=True)
from pixie_blender.operators import backend as ops
proc = ops.start_service(command=[sys.executable, {str(FAKE)!r}, "orphan"])
hs = proc.wait_ready(30)
timer = bpy.app.timers.is_registered(ops._idle_timer)
pidfile = str(ops.STATE.supervisor.pidfile)
import os
exists = os.path.exists(pidfile)
addon_utils.disable("pixie_blender", default_set=True)
print("RESULT " + json.dumps(dict(pid=proc.pid, port=hs.port, timer=timer, pidfile=pidfile, exists=exists,
      alive=proc.alive, timer_after=bpy.app.timers.is_registered(ops._idle_timer), sup=ops.STATE.supervisor is None)))
"""
    r = run_script(code, env=user_env(tmp_path), timeout=120)
    assert r["port"] > 0 and r["timer"] and r["exists"]
    assert not r["alive"] and not r["timer_after"] and r["sup"] and not os.path.exists(r["pidfile"])
    from pixie_blender.client.processes import process_alive

    assert not process_alive(r["pid"])


def test_starting_the_service_without_a_backend_says_what_to_do(bpy_mod, prefs):
    from pixie_blender.client.supervisor import SupervisorError

    with pytest.raises(SupervisorError, match="not installed: click Install Backend"):
        ops.start_service(bpy_mod.context)
    assert ops.STATE.supervisor is None or ops.STATE.supervisor.process is None
