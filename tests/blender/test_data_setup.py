"""The add-on's model-file set-up, headless: the bpy-free client, the operators driven through
their job loop (there is no event loop in the ``bpy`` module), the preferences section drawn into
a recording layout, and the promise that passwords never reach a ``.blend`` or the preferences.

The backend runs for real (``sys.executable -m pixie_backend``) against the loopback stand-in of
the MPI server (tests/support/fake_mpi_server.py); nothing touches the real site.
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from types import SimpleNamespace

import pytest

from pixie_blender.client import data_setup as client
from pixie_blender.operators import data_setup as ops
from pixie_blender.ui import data_setup as ui
from tests.support.fake_mpi_server import (
    PIXIE_PASSWORD,
    PIXIE_USER,
    SMPLX_PASSWORD,
    SMPLX_USER,
    UTILITIES_MEMBERS,
    standard_server,
)


def _backend_python() -> str:
    """This interpreter if it runs pixie_backend, else the main venv's (e.g. under .venv-bpy42, where
    the project is installed without its dependencies)."""
    import importlib.util
    from pathlib import Path

    if all(importlib.util.find_spec(m) is not None for m in ("pixie_backend", "torch", "yaml")):
        return sys.executable
    sub, exe = ("Scripts", "python.exe") if sys.platform == "win32" else ("bin", "python")
    main = Path(__file__).resolve().parents[2] / ".venv" / sub / exe
    if not main.is_file():
        pytest.skip("no interpreter with pixie_backend", allow_module_level=True)
    return str(main)


BACKEND = _backend_python()
SECRETS = (SMPLX_PASSWORD, PIXIE_PASSWORD)


def secret_forms(secret: str) -> list[bytes]:
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    out = []
    for f in forms:
        out += [f.encode("utf-8"), f.encode("utf-16-le")]
    return out


def assert_no_secret_bytes(blob: bytes, extra: tuple[str, ...] = ()) -> None:
    for secret in SECRETS + extra:
        for form in secret_forms(secret):
            assert form not in blob, "a password reached a saved file"


@pytest.fixture
def server():
    with standard_server() as s:
        yield s


@pytest.fixture
def setup(bpy_mod, server, tmp_path, monkeypatch):
    """The set-up section pointed at the test backend, the fake server and an empty folder."""
    monkeypatch.setenv("PIXIE_DOWNLOAD_ENDPOINT", server.url)
    wm = bpy_mod.context.window_manager
    own = wm.pixie_data_setup
    prefs = ops.addon_preferences(bpy_mod.context)  # backend Python and data folder live in the preferences
    prefs.backend_python = BACKEND
    prefs.data_dir = str(tmp_path / "data")
    own.licences_accepted = False
    system = bpy_mod.context.preferences.system
    online = system.use_online_access
    system.use_online_access = True  # what the user allows in Preferences > System > Network
    ops.STATE.__init__()
    yield SimpleNamespace(bpy=bpy_mod, wm=wm, own=own, prefs=prefs, data=tmp_path / "data", server=server)
    prefs.backend_python = prefs.data_dir = ""
    system.use_online_access = online
    if ops.STATE.job is not None:
        ops.STATE.job.cancel()
        ops.STATE.job.close()
    ops.STATE.__init__()


def drive(timeout: float = 60.0) -> client.FetchProgress:
    """What the modal monitor does on its TIMER events, in a blocking loop."""
    deadline = time.monotonic() + timeout
    while not ops.pump():
        assert time.monotonic() < deadline, "download did not finish"
        time.sleep(0.02)
    return ops.STATE.last


def download(bpy, **props) -> set:
    kw = dict(
        smplx_username=SMPLX_USER,
        smplx_password=SMPLX_PASSWORD,
        pixie_username=PIXIE_USER,
        pixie_password=PIXIE_PASSWORD,
    )
    kw.update(props)
    return bpy.ops.pixie.data_download("EXEC_DEFAULT", **kw)


# --------------------------------------------------------------------------------------------------
# bpy-free client


def test_client_reads_the_doctor_report(tmp_path):
    status = client.run_doctor(BACKEND, tmp_path)
    assert status.data_dir == str(tmp_path) and not status.complete
    assert status.accounts_needed() == ["smplx", "pixie"]
    assert {a.filename for a in status.missing_manual()} == {
        "smplx_tex.png",
        "uv_face_mask.png",
        "uv_face_eye_mask.png",
        "FLAME_albedo_from_BFM.npz",
        "deca_model.tar",
        "fixed_displacement_256.npy",
    }
    png = next(a for a in status.assets if a.key == "smplx_tex_png")
    assert png.commands and str(tmp_path / "smplx_tex.png") in png.commands[0]
    assert [lab for lab, _, _ in status.licences()] == ["SMPL-X", "PIXIE"]


def test_client_explains_a_wrong_interpreter(tmp_path):
    with pytest.raises(client.BackendError, match="Set the backend Python"):
        client.run_doctor("", tmp_path)
    with pytest.raises(client.BackendError, match="does not exist"):
        client.run_doctor(tmp_path / "nope" / "python", tmp_path)
    plain = "/usr/bin/python3"
    import os

    if os.path.exists(plain):
        with pytest.raises(client.BackendError, match="not installed"):
            client.run_doctor(plain, tmp_path)


def test_client_job_direct(server, tmp_path):
    job = client.FetchJob(BACKEND, tmp_path, env={"PIXIE_DOWNLOAD_ENDPOINT": server.url})
    job.start({"smplx": (SMPLX_USER, SMPLX_PASSWORD), "pixie": (PIXIE_USER, PIXIE_PASSWORD)})
    progress = job.wait(timeout=60)
    job.close()
    assert progress.state == "done", progress.error_message
    assert progress.status is not None and progress.status.complete
    assert progress.fraction == 1.0 and not progress.official_endpoint
    assert "TEST ENDPOINT" in progress.endpoint_label
    assert any(line.startswith("Downloading pixie_model.tar") for line in progress.log)
    text = "\n".join(progress.log) + progress.text + repr(progress)
    for s in SECRETS:
        assert s not in text


def test_client_reports_a_backend_that_dies(tmp_path):
    """An interpreter without pixie_backend: the job fails with the reason, not "done"."""
    import os

    plain = "/usr/bin/python3"
    if not os.path.exists(plain):
        pytest.skip("no system python")
    job = client.FetchJob(plain, tmp_path)
    job.start({"smplx": ("a", "b")})
    progress = job.wait(timeout=30)
    job.close()
    assert progress.state == "failed" and "not installed" in progress.error_message


# --------------------------------------------------------------------------------------------------
# Operators


def test_licence_checkbox_is_required(setup):
    with pytest.raises(RuntimeError, match="licences"):
        download(setup.bpy)
    assert ops.STATE.job is None and setup.server.downloads() == []


def test_online_access_is_respected(setup):
    setup.own.licences_accepted = True
    setup.bpy.context.preferences.system.use_online_access = False
    with pytest.raises(RuntimeError, match="online access is off"):
        download(setup.bpy)
    assert ops.STATE.job is None and setup.server.downloads() == []
    log = draw(setup.bpy)
    assert ("prop", "use_online_access") in [e[:2] for e in log]
    assert download_button_enabled(log) is False
    setup.bpy.context.preferences.system.use_online_access = True
    assert download_button_enabled(draw_settled(setup.bpy)) is True


def test_download_end_to_end_and_no_password_is_saved(setup, tmp_path):
    bpy = setup.bpy
    assert bpy.ops.pixie.data_check() == {"FINISHED"}
    assert ops.STATE.status.accounts_needed() == ["smplx", "pixie"]
    setup.own.licences_accepted = True
    assert download(bpy) == {"FINISHED"}
    assert ops.STATE.job is not None  # runs in the background; the UI would show progress
    final = drive()
    assert final.state == "done", final.error_message
    assert ops.STATE.status.complete and ops.STATE.job is None
    for name in ("SMPLX_NEUTRAL_2020.npz", "pixie_model.tar", *UTILITIES_MEMBERS):
        assert (setup.data / name).is_file()
    assert [r.sfile for r in setup.server.downloads()] == [
        "SMPLX_NEUTRAL_2020.npz",
        "pixie_model.tar",
        "utilities.zip",
    ]

    # the operator keeps no password as a "last used" value ...
    last = bpy.context.window_manager.operator_properties_last("pixie.data_download")
    assert last.smplx_password == "" and last.pixie_password == ""
    # ... and neither a .blend nor the preferences contain one. Control first: a string that is
    # stored in a .blend is found by this byte search.
    control = tmp_path / "control.blend"
    bpy.context.scene["control"] = PIXIE_PASSWORD
    bpy.ops.wm.save_as_mainfile(filepath=str(control), compress=False, copy=True)
    del bpy.context.scene["control"]
    with pytest.raises(AssertionError, match="reached a saved file"):
        assert_no_secret_bytes(control.read_bytes())
    blend = tmp_path / "scene.blend"
    assert bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=False) == {"FINISHED"}
    assert_no_secret_bytes(blend.read_bytes())
    bpy.ops.wm.save_userpref()
    userpref = bpy.utils.user_resource("CONFIG", path="userpref.blend")
    with open(userpref, "rb") as f:
        assert_no_secret_bytes(f.read())
    # the data folder has only the model files
    for p in setup.data.rglob("*"):
        if p.is_file():
            assert_no_secret_bytes(p.read_bytes())


def test_download_asks_only_for_the_missing_account(setup):
    bpy = setup.bpy
    setup.data.mkdir()
    (setup.data / "SMPLX_NEUTRAL_2020.npz").write_bytes(b"already here")
    bpy.ops.pixie.data_check()
    assert ops.STATE.status.accounts_needed() == ["pixie"]
    setup.own.licences_accepted = True
    # no SMPL-X credentials given: fine, only the PIXIE account is needed
    assert download(setup.bpy, smplx_username="", smplx_password="") == {"FINISHED"}
    assert drive().state == "done"
    assert {r.domain for r in setup.server.downloads()} == {"pixie"}


def test_missing_password_is_refused(setup):
    setup.bpy.ops.pixie.data_check()
    setup.own.licences_accepted = True
    with pytest.raises(RuntimeError, match="Enter the PIXIE username and password"):
        download(setup.bpy, pixie_password="")
    assert ops.STATE.job is None


def test_wrong_password_is_shown_without_the_password(setup):
    setup.server.wrong_login = "html"
    setup.server.echo_password = True
    setup.bpy.ops.pixie.data_check()
    setup.own.licences_accepted = True
    wrong = "this-is-the-wrong-one"
    assert download(setup.bpy, smplx_password=wrong) == {"FINISHED"}
    final = drive()
    assert final.state == "failed" and final.error_kind == "credentials"
    assert "SMPL-X" in final.error_message
    shown = final.text + final.error_message + "\n".join(final.log)
    assert wrong not in shown and SMPLX_PASSWORD not in shown
    # the PIXIE files came anyway; the status shows what is still missing
    assert not ops.STATE.status.complete
    assert ops.STATE.status.accounts_needed() == ["smplx"]


def test_cancel_keeps_the_partial_download(setup):
    setup.server.delay_per_block = 0.05
    setup.bpy.ops.pixie.data_check()
    setup.own.licences_accepted = True
    assert download(setup.bpy) == {"FINISHED"}
    deadline = time.monotonic() + 30
    while ops.STATE.job.progress.done == 0:
        ops.pump()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert setup.bpy.ops.pixie.data_cancel() == {"FINISHED"}
    final = drive(timeout=30)
    assert final.state == "cancelled"
    assert (setup.data / "SMPLX_NEUTRAL_2020.npz.part").is_file()
    assert not (setup.data / "SMPLX_NEUTRAL_2020.npz").exists()


def test_copy_command_to_clipboard(setup):
    assert setup.bpy.ops.pixie.data_copy(text="curl -L -o x y") == {"FINISHED"}


# --------------------------------------------------------------------------------------------------
# The preferences section


class Recorder:
    """A stand-in for ``UILayout`` that records what is drawn and checks icon names."""

    def __init__(self, log, icons):
        self._log, self._icons = log, icons
        self.enabled = self.alert = True
        self.scale_y = 1.0

    def _child(self, *a, **k):
        return Recorder(self._log, self._icons)

    row = column = box = split = _child

    def _icon(self, icon):
        assert icon in self._icons, f"unknown icon {icon}"

    def label(self, text="", icon="NONE", **k):
        self._icon(icon)
        self._log.append(("label", text))

    def prop(self, data, name, text=None, **k):
        self._log.append(("prop", name, text))

    def operator(self, idname, text="", icon="NONE", **k):
        self._icon(icon)
        props = SimpleNamespace()
        self._log.append(("operator", idname, text, props, self.enabled))
        return props

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0
        self._log.append(("progress", factor, text))

    def separator(self, **k):
        pass


def draw(bpy):
    icons = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())
    log: list = []
    ui.draw_preferences(Recorder(log, icons), bpy.context)
    return log


def draw_settled(bpy):
    """Draw once the background status check has finished."""
    draw(bpy)
    if ops.STATE.probe is not None:
        assert ops.STATE.probe.wait(30)
    return draw(bpy)


def download_button_enabled(log) -> bool:
    (button,) = [e for e in log if e[0] == "operator" and e[1] == "pixie.data_download"]
    return button[4]


def labels(log):
    return "\n".join(e[1] for e in log if e[0] == "label")


def test_section_before_and_after_download(setup):
    bpy = setup.bpy
    first = draw(bpy)  # starts the background check; never blocks
    assert ops.STATE.probe is not None or ops.STATE.status is not None
    assert ops.STATE.probe is None or ops.STATE.probe.wait(30)
    log = draw(bpy)
    text = labels(log)
    assert "SMPLX_NEUTRAL_2020.npz" in text and "Not ready" in text
    assert ("prop", "licences_accepted") in [e[:2] for e in log]
    urls = {e[3].url for e in log if e[0] == "operator" and e[1] == "wm.url_open"}
    assert {
        "https://smpl-x.is.tue.mpg.de/modellicense.html",
        "https://pixie.is.tue.mpg.de/license.html",
        "https://smpl-x.is.tue.mpg.de",
        "https://pixie.is.tue.mpg.de",
    } <= urls
    copies = [e[3].text for e in log if e[0] == "operator" and e[1] == "pixie.data_copy"]
    assert any("smplx_tex.png" in c for c in copies)
    assert download_button_enabled(log) is False  # the licence box is not ticked yet
    assert first is not None

    setup.own.licences_accepted = True
    assert download_button_enabled(draw(bpy)) is True
    download(bpy)
    running = draw(bpy)
    assert download_button_enabled(running) is False  # one download at a time
    assert any(e[0] == "operator" and e[1] == "pixie.data_cancel" for e in running)
    assert any(e[0] == "progress" for e in running)
    drive()
    done = draw(bpy)
    assert "Ready: all required files are present" in labels(done)
    everything = repr(first) + repr(log) + repr(running) + repr(done)
    for s in SECRETS:
        assert s not in everything


def test_section_without_backend_says_what_to_set(setup):
    setup.prefs.backend_python = ""
    log = draw(setup.bpy)
    assert "Set the backend Python" in labels(log).replace("\n", " ")
