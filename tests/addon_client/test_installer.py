"""The installer, without bpy: its checks and pip commands, and its job run for real (venv, pip,
rename) on stand-in wheels (tests/support/fake_wheels.py): success, a failing step, a cancel, the
leftovers of a crashed try, another install holding the folder. The install of the real backend
from a real wheelhouse is tests/blender/test_backend_install.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pixie_blender.client import install_plan, installer, processes, torch_choice
from pixie_blender.client.install_plan import InstallOptions
from tests.support.fake_wheels import fake_wheelhouse

CPU = torch_choice.choose_torch(torch_choice.GpuQuery(found=False), "Linux", "x86_64")
CU130 = torch_choice.choose_torch(
    torch_choice.GpuQuery(gpus=(torch_choice.Gpu(0, "RTX 5090", (12, 0), "580.65.06"),)), "Linux", "x86_64"
)


def options(tmp_path: Path, **kw) -> InstallOptions:
    kw.setdefault("root", tmp_path / "root")
    kw.setdefault("base_python", Path(sys.executable))
    kw.setdefault("backend_wheel", tmp_path / "pixie_blender-0.1.0-py3-none-any.whl")
    kw.setdefault("torch", CPU)
    return InstallOptions(**kw)


def base(version=(3, 11, 7), venv=True, ensurepip=True) -> install_plan.BasePython:
    return install_plan.BasePython(Path(sys.executable), version, venv, ensurepip)


@pytest.fixture
def wheel(tmp_path):
    w = tmp_path / "pixie_blender-0.1.0-py3-none-any.whl"
    w.write_bytes(b"")
    return w


# --------------------------------------------------------------------------------------------------
# Pure parts


def test_online_commands_pin_torch_then_constrain_everything(tmp_path):
    opts = options(tmp_path, torch=CU130, online_allowed=True)
    env = tmp_path / "root" / "env.new"
    cmds = install_plan.step_commands(opts, env, raw_progress=True)
    py = str(install_plan.env_python(env))
    common = [py, "-I", "-m", "pip", "install", "--isolated", "--disable-pip-version-check", "--no-input"]
    assert cmds["torch"][: len(common)] == common
    assert cmds["torch"][-3:] == ["--index-url", "https://download.pytorch.org/whl/cu130", "torch==2.13.0"]
    assert "--only-binary=:all:" in cmds["torch"] and cmds["torch"][cmds["torch"].index("--progress-bar") + 1] == "raw"
    constraints = str(env / install_plan.CONSTRAINTS)
    assert cmds["backend"][-3:] == ["-c", constraints, f"{opts.backend_wheel}[detector]"]
    assert "--index-url" not in cmds["backend"]  # the rest from the default index
    assert cmds["mediapipe"][-4:] == ["-c", constraints, "--no-deps", "mediapipe==0.10.21"]
    # a Python that mediapipe 0.10.21 has no wheels for (3.13: Blender 5.1) gets the backend without the extra
    no_detector = install_plan.step_commands(opts, env, raw_progress=False, detector=False)
    assert no_detector["backend"][-1] == str(opts.backend_wheel)


def test_offline_commands_use_only_the_wheelhouse(tmp_path):
    house, _ = fake_wheelhouse(tmp_path / "house")
    opts = options(tmp_path, torch=CU130, wheelhouse=house)
    cmds = install_plan.step_commands(opts, tmp_path / "env.new", raw_progress=False)
    for cmd in cmds.values():
        at = cmd.index("--no-index")
        assert cmd[at : at + 3] == ["--no-index", "--find-links", str(house)] and "--index-url" not in cmd
    # the wheelhouse decides the build, and the user hears that the GPU will not be used
    assert cmds["torch"][-1] == "torch==2.13.0+cpu"
    torch = install_plan.effective_torch(opts)
    assert torch.device == "cpu" and any("CPU build" in w for w in torch.warnings)


def test_preflight_names_every_problem(tmp_path, wheel, monkeypatch):
    opts = options(tmp_path, backend_wheel=tmp_path / "nope.whl")
    problems = install_plan.preflight(opts, base((3, 9, 1), venv=False, ensurepip=False))
    text = "\n".join(problems)
    assert "carries no backend wheel" in text
    assert "online access is off" in text and "full (offline) zip" in text
    assert "Python 3.9.1; the backend needs Python 3.10 or newer" in text
    assert "no 'venv' module" in text and "no 'ensurepip'" in text
    assert install_plan.preflight(options(tmp_path, online_allowed=True), base()) == []


def test_preflight_disk_space(tmp_path, wheel, monkeypatch):
    monkeypatch.setattr(install_plan.shutil, "disk_usage", lambda p: _Usage(3e9))
    assert install_plan.preflight(options(tmp_path, online_allowed=True), base()) == []  # CPU: 2 GB
    problems = install_plan.preflight(options(tmp_path, online_allowed=True, torch=CU130), base())
    assert problems == [
        f"Not enough free disk space at {tmp_path / 'root'}: 3.0 GB free, the install needs about 5.0 GB. "
        "Free some space or choose another Install Folder."
    ]


class _Usage:
    def __init__(self, free):
        self.free = free


def test_wheelhouse_python_must_match(tmp_path, wheel):
    house, _ = fake_wheelhouse(tmp_path / "house")
    meta = json.loads((house / "wheelhouse.json").read_text())
    (house / "wheelhouse.json").write_text(json.dumps({**meta, "python": "3.13"}))
    problems = install_plan.preflight(options(tmp_path, wheelhouse=house), base((3, 11, 9)))
    assert problems == [
        f"The offline package is for Python 3.13 but {sys.executable} is Python 3.11.9. Use the small zip (online "
        "install), or name a Python 3.13 in 'Python for the Environment'."
    ]


def test_no_ensurepip_is_fine_with_a_bundled_pip_wheel(tmp_path, wheel):
    house, _ = fake_wheelhouse(tmp_path / "house")
    (house / "pip-26.0-py3-none-any.whl").write_bytes(b"")
    assert install_plan.preflight(options(tmp_path, wheelhouse=house), base(ensurepip=False)) == []


def test_windows_long_paths():
    short = Path("C:/pixie/env.new")
    long = Path("C:/Users/someone/AppData/Roaming/Blender Foundation/Blender/4.2/extensions/.user/x/env.new")
    assert install_plan.path_length_problem(short, windows=True, long_paths=False) is None
    assert "Choose a short Install Folder such as C:\\pixie" in install_plan.path_length_problem(
        long, windows=True, long_paths=False
    )
    assert install_plan.path_length_problem(long, windows=True, long_paths=True) is None
    assert install_plan.path_length_problem(long, windows=False) is None


def test_base_python_probe(tmp_path):
    b = install_plan.probe_base_python(Path(sys.executable))
    assert b.version[:2] == sys.version_info[:2] and b.has_venv
    with pytest.raises(install_plan.InstallError, match="does not exist"):
        install_plan.probe_base_python(tmp_path / "python")
    fake = tmp_path / "notpython"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    with pytest.raises(install_plan.InstallError, match="does not run as a Python interpreter"):
        install_plan.probe_base_python(fake)


def test_only_a_complete_environment_counts(tmp_path):
    root = tmp_path / "root"
    env = root / "env"
    py = install_plan.env_python(env)
    py.parent.mkdir(parents=True)
    py.write_text("")
    assert install_plan.find_installed(root) is None  # no marker: half-made
    (env / install_plan.MARKER).write_text("{not json")
    assert install_plan.find_installed(root) is None
    (env / install_plan.MARKER).write_text(
        json.dumps(
            {"schema": 1, "backend_version": "0.1.0", "torch": "2.13.0+cpu", "device": "cpu", "python": "3.11.7"}
        )
    )
    found = install_plan.find_installed(root)
    assert found.python == py and found.summary == "pixie-backend 0.1.0, torch 2.13.0+cpu (CPU), Python 3.11.7"
    install_plan.remove_installed(root)
    assert install_plan.find_installed(root) is None and not env.exists()


def test_bundle_lookup(tmp_path):
    assert install_plan.find_bundle(tmp_path / "none") == install_plan.Bundle(None, None, None)
    house, wheel = fake_wheelhouse(tmp_path / "backend_dist" / "wheelhouse")
    wheel.rename(tmp_path / "backend_dist" / wheel.name)
    b = install_plan.find_bundle(tmp_path / "backend_dist")
    assert b.backend_wheel.name == "pixie_blender-0.1.0-py3-none-any.whl" and b.wheelhouse == house and b.offline
    assert b.wheelhouse_info["torch"] == "2.13.0+cpu"


# --------------------------------------------------------------------------------------------------
# The job, for real, on stand-in wheels


@pytest.fixture
def house(tmp_path):
    return fake_wheelhouse(tmp_path / "house")


def run_job(opts, **kw) -> installer.InstallProgress:
    job = installer.InstallJob(opts, **kw)
    job.start()
    return job.wait(timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """One successful offline install on stand-in wheels (about 20 s: venv with pip, three pips)."""
    tmp = tmp_path_factory.mktemp("installed")
    wh, wheel = fake_wheelhouse(tmp / "house")
    committed = []
    p = run_job(options(tmp, wheelhouse=wh, backend_wheel=wheel), before_commit=lambda: committed.append(1))
    return tmp / "root", p, committed


@pytest.mark.slow
def test_offline_install_builds_env_and_marker(installed):
    root, p, committed = installed
    assert p.state == "done", (p.error, p.last_lines(20))
    assert sorted(x.name for x in root.iterdir()) == ["env", "install.log"]
    found = install_plan.find_installed(root)
    assert found.info["torch"] == "2.13.0+cpu" and found.info["offline"] and found.info["mediapipe"] == "0.10.21"
    assert (found.env / install_plan.CONSTRAINTS).read_text() == "torch==2.13.0+cpu\n"
    assert committed == [1] and p.fraction == 1.0 and p.step_index == p.step_count == 5
    assert p.info.backend_version == "0.1.0" and p.result.python == found.python
    log = (root / "install.log").read_text()
    assert "--no-index" in log and "doctor: data folder /nowhere" in log
    # the environment is isolated from the user's site-packages and runs after the rename
    out = subprocess.run(
        [str(found.python), "-I", "-c", "import sys, torch; print(sys.prefix, torch.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert Path(out[0]) == found.env and out[1] == "2.13.0+cpu"


@pytest.mark.slow
def test_failed_step_leaves_the_old_environment_and_nothing_half_made(tmp_path, installed):
    root = tmp_path / "root"
    shutil.copytree(installed[0], root, symlinks=True)
    before = install_plan.find_installed(root).info["created"]
    # a backend needing a package the wheelhouse lacks
    wh, broken = fake_wheelhouse(tmp_path / "house", backend_requires=["torch>=2.1", "notthere>=1"])
    p = run_job(options(tmp_path, wheelhouse=wh, backend_wheel=broken))
    assert p.state == "failed" and "notthere" in p.error and p.text.startswith("Failed:")
    assert any("notthere" in ln for ln in p.last_lines(10))
    assert sorted(x.name for x in root.iterdir()) == ["env", "install.log"]
    assert install_plan.find_installed(root).info["created"] == before


@pytest.mark.slow
def test_leftovers_of_a_crashed_try_are_cleaned_and_mediapipe_is_optional(tmp_path, house):
    wh, wheel = house
    next(wh.glob("mediapipe-*.whl")).unlink()
    root = tmp_path / "root"
    (root / "env.new" / "lib").mkdir(parents=True)
    (root / "env.old").mkdir()
    processes.write_json_atomic(root / install_plan.LOCK, {"pid": 999999999, "started": time.time(), "child": None})
    p = run_job(options(tmp_path, wheelhouse=wh, backend_wheel=wheel))
    assert p.state == "done", p.error
    assert sorted(x.name for x in root.iterdir()) == ["env", "install.log"]
    assert any("OpenCV's detector" in w for w in p.warnings)
    assert install_plan.find_installed(root).info["mediapipe"] is None


def test_cancel_removes_what_was_made(tmp_path, house):
    wh, wheel = house
    job = installer.InstallJob(options(tmp_path, wheelhouse=wh, backend_wheel=wheel))
    job.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / "root" / "env.new").exists() and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.02)
    job.cancel()
    p = job.wait(timeout=60)
    assert p.state == "cancelled" and p.text == "Cancelled; nothing was changed."
    root = tmp_path / "root"
    assert sorted(x.name for x in root.iterdir()) == ["install.log"]
    assert install_plan.find_installed(root) is None


def test_a_running_install_holds_the_folder(tmp_path, house):
    wh, wheel = house
    root = tmp_path / "root"
    root.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        processes.write_json_atomic(root / install_plan.LOCK, {"pid": other.pid, "started": time.time()})
        (root / "env.new").mkdir()  # the other install's work
        p = run_job(options(tmp_path, wheelhouse=wh, backend_wheel=wheel))
        assert p.state == "failed" and f"Another install into {root} is running (process {other.pid})" in p.error
        assert (root / "env.new").exists() and (root / install_plan.LOCK).exists()
    finally:
        other.kill()
        other.wait()


def test_failed_preflight_in_the_job(tmp_path, house):
    wh, wheel = house
    p = run_job(options(tmp_path, wheelhouse=wh, backend_wheel=wheel, base_python=tmp_path / "nopython"))
    assert p.state == "failed" and "does not exist" in p.error


def test_probe_backend_reports_a_missing_package():
    base_python = Path(getattr(sys, "_base_executable", sys.executable))
    if subprocess.run([str(base_python), "-I", "-c", "import pixie_backend"], capture_output=True).returncode == 0:
        pytest.skip("the base interpreter has pixie_backend")
    with pytest.raises(install_plan.InstallError, match="pixie-backend is not installed for"):
        install_plan.probe_backend(base_python, isolated=True)


def test_replace_keeps_options_frozen(tmp_path):
    opts = options(tmp_path)
    with pytest.raises(AttributeError):
        opts.root = tmp_path  # type: ignore[misc]
    assert replace(opts, online_allowed=True).online_allowed


def test_failure_sentences_from_pip_output():
    retry = (
        "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection "
        "broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object>: Failed to "
        "establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/torch/"
    )
    missing = [
        "Looking in links: /w",
        "ERROR: Could not find a version that satisfies the requirement notthere>=1 (from pixie-blender) (from "
        "versions: none)",
        "ERROR: No matching distribution found for notthere>=1",
    ]
    resolution = [
        "ERROR: Cannot install torch==2.13.0 because these package versions have conflicting dependencies.",
        "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/...",
    ]
    assert installer.explain_failure([retry, "ERROR: Could not find a version"], 1).startswith(
        "the download failed (NewConnectionError). Check the network connection and proxy settings"
    )
    assert installer.explain_failure(missing, 1).startswith("Could not find a version that satisfies the requirement")
    assert installer.explain_failure(resolution, 1).startswith("Cannot install torch==2.13.0 because")
    assert installer.explain_failure(["Traceback", "OSError: disk full"], 1) == "exit code 1: OSError: disk full"
    assert installer.explain_failure([], -9) == "exit code -9"


def test_child_environment_keeps_proxies_and_drops_blenders_python_variables(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    monkeypatch.setenv("PYTHONHOME", "/blender/5.0/python")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    env = processes.child_env({"TMPDIR": "/t"})
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128" and env["no_proxy"] == "localhost"
    assert "PYTHONHOME" not in env and "PYTHONPATH" not in env
    assert env["PYTHONIOENCODING"] == "utf-8" and env["TMPDIR"] == "/t"


class _RecordingProxy:
    """An HTTP proxy on loopback that records each request line and refuses it."""

    def __init__(self):
        import socketserver
        import threading

        self.requests: list[str] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline().decode("latin-1").strip()
                outer.requests.append(line)
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_online_install_goes_through_the_proxy_and_fails_cleanly(tmp_path, monkeypatch):
    """An online install with HTTPS_PROXY set asks that proxy for PyTorch's index; the refused
    connection ends the install with the reason and nothing left behind."""
    proxy = _RecordingProxy()
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    wheel = tmp_path / "pixie_blender-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    try:
        p = run_job(options(tmp_path, online_allowed=True, backend_wheel=wheel))
    finally:
        proxy.close()
    assert p.state == "failed"
    assert p.error.startswith("Installing PyTorch 2.13.0 (CPU) failed: the download failed (ProxyError)"), p.error
    assert any(r.startswith("CONNECT download.pytorch.org:443") for r in proxy.requests), proxy.requests
    assert sorted(x.name for x in (tmp_path / "root").iterdir()) == ["install.log"]
