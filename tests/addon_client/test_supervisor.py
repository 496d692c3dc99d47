"""The backend supervisor, without bpy, against stand-in children (tests/support/fake_backend.py):
a good handshake, garbage, a hang, a death, a version mismatch, a noisy stderr, a parent that dies
(the child follows through its stdin), and a backend left by a crashed Blender (found through its
pidfile and ended only if its command line is still ours)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pixie_blender.client import processes, supervisor
from pixie_blender.client.supervisor import (
    BackendExited,
    BackendProcess,
    HandshakeError,
    StartTimeout,
    Supervisor,
    VersionMismatch,
    parse_handshake,
    version_problem,
)

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "support" / "fake_backend.py"
POSIX = os.name == "posix"


def fake(mode: str, *extra: str) -> list[str]:
    return [sys.executable, str(FAKE), mode, *extra]


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not processes.process_alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def started():
    procs: list[BackendProcess] = []

    def start(mode: str, *extra: str, **kw) -> BackendProcess:
        p = BackendProcess(fake(mode, *extra), **kw)
        p.start()
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop(timeout=2.0)


# --------------------------------------------------------------------------------------------------
# Handshake parsing


GOOD = {
    "event": "ready",
    "protocol": 1,
    "port": 5000,
    "token": "ab" * 16,
    "device": "cuda:0",
    "versions": {"pixie_backend": "0.1.0", "torch": "2.13.0", "python": "3.11.7"},
}


def test_handshake_parsed_and_token_never_in_repr():
    hs = parse_handshake(json.dumps(GOOD))
    assert (hs.protocol, hs.port, hs.device, hs.backend_version) == (1, 5000, "cuda:0", "0.1.0")
    assert hs.token == "ab" * 16 and hs.token not in repr(hs)


@pytest.mark.parametrize(
    "line, words",
    [
        ("Starting server on port 8000", "not its start-up message"),
        (json.dumps({"event": "progress"}), "was not 'ready'"),
        (json.dumps([1, 2]), "was not 'ready'"),
        (json.dumps({**GOOD, "port": 0}), "no valid port"),
        (json.dumps({**GOOD, "port": "80"}), "no valid port"),
        (json.dumps({**GOOD, "token": "short"}), "no valid token"),
        (json.dumps({**GOOD, "token": "z" * 32}), "no valid token"),
        (json.dumps({**GOOD, "protocol": True}), "no protocol number"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "versions"}), "no backend version"),
    ],
)
def test_bad_handshakes_are_named(line, words):
    with pytest.raises(HandshakeError, match=words):
        parse_handshake(line)


def test_version_problem_sentences():
    hs = parse_handshake(json.dumps(GOOD))
    assert version_problem(hs, "0.1.0") is None
    msg = version_problem(hs, "0.2.0")
    assert "backend is version 0.1.0 but the add-on is version 0.2.0" in msg and "Install Backend" in msg
    other = parse_handshake(json.dumps({**GOOD, "protocol": 2}))
    assert "protocol 2" in version_problem(other, "0.1.0")


def test_backend_command_isolation_flag():
    assert supervisor.backend_command("py", "serve") == ["py", "-m", "pixie_backend", "serve"]
    assert supervisor.backend_command("py", "serve", isolated=True) == ["py", "-I", "-m", "pixie_backend", "serve"]


# --------------------------------------------------------------------------------------------------
# Child processes


def test_ready_child_handshake_lines_and_exit_on_stdin_eof(started):
    p = started("ready", addon_version="0.1.0")
    hs = p.wait_ready(timeout=30)
    assert hs.backend_version == "0.1.0" and p.state == "ready" and p.ready
    assert p.send("hello") and p.send("second")
    deadline = time.monotonic() + 10
    got: list[str] = []
    while len(got) < 2 and time.monotonic() < deadline:
        got += p.lines()
        time.sleep(0.02)
    assert [json.loads(x)["text"] for x in got] == ["hello", "second"]
    pid = p.pid
    p.request_stop()  # closes stdin: the child must exit by itself, without a signal
    deadline = time.monotonic() + 10
    while p.alive and time.monotonic() < deadline:
        p.poll()
        time.sleep(0.02)
    assert p.returncode == 0 and wait_gone(pid)
    assert "listening" in p.stderr_tail()


def test_garbage_first_line_is_refused_and_child_stopped(started):
    p = started("garbage")
    with pytest.raises(HandshakeError, match="Starting server on port 8000"):
        p.wait_ready(timeout=30)
    assert not p.alive and p.state == "failed"


def test_hanging_child_times_out_and_is_stopped(started):
    p = started("hang")
    t0 = time.monotonic()
    with pytest.raises(StartTimeout, match="did not report ready within 1 s: loading"):
        p.wait_ready(timeout=1.0)
    assert not p.alive and time.monotonic() - t0 < 15


def test_dying_child_reports_its_stderr(started):
    p = started("die")
    with pytest.raises(BackendExited, match=r"exited \(code 3\) before it was ready: .*model files are missing"):
        p.wait_ready(timeout=30)


def test_missing_module_gets_a_clear_sentence(started):
    p = BackendProcess([sys.executable, "-I", "-m", "pixie_backend_not_here"], handshake=True)
    p.start()
    with pytest.raises(BackendExited, match=r"exited \(code 1\).*No module named pixie_backend_not_here"):
        p.wait_ready(timeout=30)
    p2 = BackendProcess([sys.executable, "-c", "import sys; sys.exit('No module named pixie_backend')"])
    p2.start()
    with pytest.raises(BackendExited, match="pixie-backend is not installed in that Python environment"):
        p2.wait_ready(timeout=30)


def test_version_mismatch_is_refused_with_what_to_do(started):
    p = started("ready", "0.0.9", addon_version="0.1.0")
    with pytest.raises(VersionMismatch, match="backend is version 0.0.9 but the add-on is version 0.1.0.*Install"):
        p.wait_ready(timeout=30)
    assert not p.alive
    p = started("ready", "0.1.0", "2", addon_version="0.1.0")
    with pytest.raises(VersionMismatch, match="protocol 2"):
        p.wait_ready(timeout=30)


def test_stderr_is_a_bounded_tail(started):
    p = started("noisy", stderr_lines=50)
    p.wait_ready(timeout=30)
    deadline = time.monotonic() + 10
    while "listening" not in p.stderr_tail() and time.monotonic() < deadline:
        time.sleep(0.02)
    tail = p.stderr_tail()
    assert len(tail) == 50 and tail[-1] == "listening" and tail[0] == "log line 4951"


@pytest.mark.skipif(not POSIX, reason="SIGTERM can be ignored on POSIX only")
def test_stop_escalates_to_kill(started):
    p = started("stubborn")
    time.sleep(0.3)
    t0 = time.monotonic()
    code = p.stop(timeout=0.5)
    assert not p.alive and code == -9 and time.monotonic() - t0 < 5


def test_request_stop_escalates_without_blocking(started):
    p = started("hang")
    p.request_stop(grace=0.3)
    deadline = time.monotonic() + 10
    while p.alive and time.monotonic() < deadline:
        p.poll()  # terminate after the grace period, from the poll loop
        time.sleep(0.02)
    assert not p.alive


def test_cannot_start_a_missing_interpreter():
    p = BackendProcess(["/no/such/python", "-m", "pixie_backend"])
    with pytest.raises(supervisor.SupervisorError, match="Cannot run the backend Python /no/such/python"):
        p.start()


def test_lines_without_handshake_mode_for_one_shot_commands():
    """fetch-data style: a request on stdin, every stdout line an event, a "cancel" line that the
    child honours, then the loop a modal timer runs until ``done``."""
    code = (
        "import sys, json\n"
        "req = json.loads(sys.stdin.readline())\n"
        "print(json.dumps({'event': 'start', 'n': req['n']}), flush=True)\n"
        "for line in sys.stdin:\n"
        "    if line.strip() == 'cancel':\n"
        "        print(json.dumps({'event': 'error', 'kind': 'cancelled'}), flush=True)\n"
        "        sys.exit(1)\n"
    )
    p = BackendProcess([sys.executable, "-c", code], handshake=False)
    p.start()
    assert p.send(json.dumps({"n": 3}))
    events: list[dict] = []
    deadline = time.monotonic() + 10
    while not events and time.monotonic() < deadline:
        events += [json.loads(x) for x in p.lines()]
        time.sleep(0.02)
    assert events == [{"event": "start", "n": 3}] and not p.done
    p.request_stop("cancel", grace=5.0)
    while not p.done and time.monotonic() < deadline:
        p.poll()
        events += [json.loads(x) for x in p.lines()]
        time.sleep(0.02)
    assert p.done and p.returncode == 1 and events[-1] == {"event": "error", "kind": "cancelled"}


# --------------------------------------------------------------------------------------------------
# A Blender that dies


_FAKE_BLENDER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from pixie_blender.client.supervisor import Supervisor
    sup = Supervisor(Path(sys.argv[1]), "0.1.0")
    proc = sup.start([sys.executable, {fake!r}, sys.argv[2]])
    proc.wait_ready(30)
    print(json.dumps({{"pid": proc.pid}}), flush=True)
    os._exit(0)  # a crash: no atexit, no stop
    """
)


def _crash_blender(tmp_path: Path, mode: str) -> int:
    code = _FAKE_BLENDER.format(fake=str(FAKE))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), mode], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])["pid"]


def test_child_exits_when_its_blender_dies(tmp_path):
    pid = _crash_blender(tmp_path, "ready")
    assert wait_gone(pid), "the backend outlived its Blender"


@pytest.mark.skipif(not POSIX, reason="the orphan is ended through its command line (ps//proc)")
def test_stale_backend_from_a_crashed_blender_is_ended(tmp_path):
    pid = _crash_blender(tmp_path, "orphan")
    time.sleep(0.5)
    assert processes.process_alive(pid), "the orphan stand-in should survive its parent"
    records = list((tmp_path / "run").glob("backend-*.json"))
    assert len(records) == 1
    sup = Supervisor(tmp_path, "0.1.0")
    proc = sup.start(fake("ready"))
    try:
        proc.wait_ready(30)
        assert wait_gone(pid)
        assert any(f"process {pid}" in m and "earlier Blender session" in m for m in sup.messages)
        assert not records[0].exists() and sup.pidfile.exists()
        assert processes.read_json(sup.pidfile)["pid"] == proc.pid
    finally:
        sup.shutdown()
    assert not sup.pidfile.exists() and not proc.alive


@pytest.mark.skipif(not POSIX, reason="uses sleep(1)")
def test_reused_process_id_is_left_alone(tmp_path):
    other = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 10  # until the fork has become `sleep` (a loaded machine is slow)
        while "sleep" not in (processes.process_command_line(other.pid) or "") and time.monotonic() < deadline:
            time.sleep(0.01)
        run = tmp_path / "run"
        run.mkdir()
        record = {"pid": other.pid, "command": fake("orphan"), "owner_pid": 999999999, "owner_command": "blender"}
        (run / "backend-999999999.json").write_text(json.dumps(record))
        messages = supervisor.end_stale_backends(run)
        assert other.poll() is None, "an unrelated process was killed"
        assert messages == [f"Process {other.pid} from an old record is another program now; left alone."]
        assert not (run / "backend-999999999.json").exists()
    finally:
        other.kill()
        other.wait()


def test_live_owner_keeps_its_backend(tmp_path):
    """Another Blender that still runs keeps its backend (its pidfile names a live owner)."""
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    child = subprocess.Popen(fake("hang"), stdin=subprocess.DEVNULL)
    try:
        run = tmp_path / "run"
        run.mkdir()
        record = {
            "pid": child.pid,
            "command": fake("hang"),
            "owner_pid": owner.pid,
            "owner_command": processes.process_command_line(owner.pid),
        }
        (run / f"backend-{owner.pid}.json").write_text(json.dumps(record))
        assert supervisor.end_stale_backends(run) == []
        assert child.poll() is None and (run / f"backend-{owner.pid}.json").exists()
    finally:
        for p in (owner, child):
            p.kill()
            p.wait()


# --------------------------------------------------------------------------------------------------
# Supervisor: idle timeout, restart, shutdown


def test_idle_timeout_stops_and_touch_postpones(tmp_path):
    sup = Supervisor(tmp_path, "0.1.0", idle_timeout=60)
    proc = sup.start(fake("ready"))
    try:
        proc.wait_ready(30)
        now = time.monotonic()
        assert not sup.check_idle(now=now + 30)
        sup.touch()
        assert not sup.check_idle(now=sup.last_activity + 59)
        assert proc.alive
        assert sup.check_idle(now=sup.last_activity + 61)
        assert not proc.alive and sup.process is None and not sup.pidfile.exists()
    finally:
        sup.shutdown()


def test_restart_stops_the_previous_backend(tmp_path):
    sup = Supervisor(tmp_path, "0.1.0")
    try:
        first = sup.start(fake("ready"))
        first.wait_ready(30)
        second = sup.start(fake("ready"))
        second.wait_ready(30)
        assert not first.alive and second.alive and sup.process is second
    finally:
        sup.shutdown()
    assert not second.alive


def test_atexit_stops_the_backend_when_python_exits(tmp_path):
    """A normal quit (atexit) stops even a backend that ignores end-of-file."""
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from pixie_blender.client.supervisor import Supervisor
        sup = Supervisor(Path({str(tmp_path)!r}), "0.1.0")
        p = sup.start([sys.executable, {str(FAKE)!r}, "orphan"])
        p.wait_ready(30)
        print(p.pid, flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[-1])
    assert wait_gone(pid, 5.0)
    assert not list((tmp_path / "run").glob("*.json"))
