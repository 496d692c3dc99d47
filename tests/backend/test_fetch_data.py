"""``pixie-backend fetch-data`` against a loopback stand-in for the MPI download server.

Nothing here touches the real site: every run points ``PIXIE_DOWNLOAD_ENDPOINT`` (or
``endpoint=``) at ``tests/support/fake_mpi_server.py`` on 127.0.0.1, and the served files are
synthetic.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pixie_backend import cli
from pixie_backend import fetch_data as fd
from pixie_backend.assets import DownloadSpec
from pixie_backend.commands import fetch_data as cmd

from tests.support.fake_mpi_server import (
    PIXIE_PASSWORD,
    PIXIE_USER,
    SMPLX_PASSWORD,
    SMPLX_USER,
    UTILITIES_MEMBERS,
    WRONG_LOGIN_MODES,
    corrupt_zip,
    fake_utilities,
    member_bytes,
    standard_server,
    unsafe_zip,
)
from tests.support.protocol import validate_events

REQUIRED_AND_TEXTURE_FROM_SERVER = (
    "SMPLX_NEUTRAL_2020.npz",
    "pixie_model.tar",
    "smplx_extra_joints.yaml",
    "SMPLX_to_J14.pkl",
    "smplx_tex.obj",
    "flame2smplx_tex_1024.npy",
)
SECRETS = (SMPLX_PASSWORD, PIXIE_PASSWORD)


# --------------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def server():
    with standard_server() as s:
        yield s


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def env(monkeypatch, server):
    """Environment of a non-interactive run against the fake server."""
    monkeypatch.setenv(fd.ENV_ENDPOINT, server.url)
    monkeypatch.setenv("PIXIE_SMPLX_USERNAME", SMPLX_USER)
    monkeypatch.setenv("PIXIE_SMPLX_PASSWORD", SMPLX_PASSWORD)
    monkeypatch.setenv("PIXIE_PIXIE_USERNAME", PIXIE_USER)
    monkeypatch.setenv("PIXIE_PIXIE_PASSWORD", PIXIE_PASSWORD)
    monkeypatch.delenv("PIXIE_DATA_DIR", raising=False)
    return monkeypatch


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["fetch-data", *args])
    out, err = capsys.readouterr()
    return code, out, err


def non_interactive(data_dir: Path, *extra: str) -> list[str]:
    return ["--data-dir", str(data_dir), "--non-interactive", "--accept-licences", "--retries", "0", *extra]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            for form in fd.Credentials("u", secret).secrets():
                assert form not in text, "a password leaked"


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def assert_folder_has_no_secret(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            assert_no_secret(p.read_bytes().decode("latin-1"))


def planned(server, data_dir, **kw) -> list[fd.PlannedDownload]:
    return fd.plan_downloads(data_dir, **kw)


def make_fetcher(server, data_dir, events=None, **kw) -> fd.Fetcher:
    data_dir.mkdir(parents=True, exist_ok=True)
    kw.setdefault("retries", 0)
    kw.setdefault("sleep", lambda s: None)
    creds = {
        "smplx": fd.Credentials(SMPLX_USER, SMPLX_PASSWORD),
        "pixie": fd.Credentials(PIXIE_USER, PIXIE_PASSWORD),
    }
    return fd.Fetcher(
        data_dir,
        endpoint=fd.resolve_endpoint(server.url),
        credentials=kw.pop("credentials", creds),
        on_event=(events.append if events is not None else None),
        **kw,
    )


# --------------------------------------------------------------------------------------------------
# The happy path


def test_full_download_non_interactive(env, server, data_dir, capsys):
    code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 0, err
    for (_domain, sfile), data in server.files.items():
        if sfile != "utilities.zip":
            assert (data_dir / sfile).read_bytes() == data
    for name in UTILITIES_MEMBERS:
        assert (data_dir / name).read_bytes() == member_bytes(name)
    # the archive is removed after unpacking, no partial or temporary file is left
    leftovers = {n for n in files_in(data_dir) if n.endswith((".part", ".tmp")) or n == "utilities.zip"}
    assert not leftovers
    # the upstream protocol: POST, form body, domain/sfile/resume=1
    posts = server.downloads()
    assert [(r.domain, r.sfile) for r in posts] == [
        ("smplx", "SMPLX_NEUTRAL_2020.npz"),
        ("pixie", "pixie_model.tar"),
        ("pixie", "utilities.zip"),
    ]
    assert all(r.login_ok and r.resume == "1" and r.range is None for r in posts)
    assert all(r.content_type == "application/x-www-form-urlencoded" for r in posts)
    # ends with the doctor report
    assert out.rstrip().splitlines()[-1].startswith("Ready: all required files are present")
    assert "[present] SMPLX_NEUTRAL_2020.npz" in out
    # the test endpoint can't be mistaken for the MPI server
    assert "TEST ENDPOINT" in err and "NOT the MPI download server" in err
    assert "download.is.tue.mpg.de" not in err
    # manual instructions for the files that are not downloaded, with exact paths
    assert "https://github.com/yfeng95/PIXIE/raw/master/data/smplx_tex.png" in err
    assert str(data_dir / "smplx_tex.png") in err
    assert_no_secret(out, err)
    assert_folder_has_no_secret(data_dir)


def test_second_run_downloads_nothing(env, server, data_dir, capsys):
    assert run_cli(capsys, *non_interactive(data_dir))[0] == 0
    n = len(server.downloads())
    # no credentials needed when nothing is missing
    for var in ("PIXIE_SMPLX_PASSWORD", "PIXIE_PIXIE_PASSWORD"):
        env.delenv(var)
    code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 0
    assert len(server.downloads()) == n
    assert "Nothing to download" in err


def test_force_downloads_again_and_replaces(env, server, data_dir, capsys):
    assert run_cli(capsys, *non_interactive(data_dir))[0] == 0
    (data_dir / "pixie_model.tar").write_bytes(b"damaged by hand")
    (data_dir / "SMPLX_NEUTRAL_2020.npz.part").write_bytes(b"stale partial")
    code, out, err = run_cli(capsys, *non_interactive(data_dir, "--force"))
    assert code == 0, err
    assert len(server.downloads()) == 6
    assert all(r.range is None for r in server.downloads())  # no resume of the stale partial
    for (_domain, sfile), data in server.files.items():
        if sfile != "utilities.zip":
            assert (data_dir / sfile).read_bytes() == data
    assert "left as they were" not in err  # --force replaces the unpacked files too


def test_only_smplx_exit_code_1_and_report(env, server, data_dir, capsys):
    env.delenv("PIXIE_PIXIE_PASSWORD")  # not needed for --only smplx
    code, out, err = run_cli(capsys, *non_interactive(data_dir, "--only", "smplx"))
    assert code == 1  # ran fine, but required PIXIE files are still missing
    assert files_in(data_dir) >= {"SMPLX_NEUTRAL_2020.npz"}
    assert "pixie_model.tar" not in files_in(data_dir)
    assert "NOT READY" in out


def test_utilities_in_a_top_level_folder_and_extra_entries(env, server, data_dir, capsys):
    server.files[("pixie", "utilities.zip")] = fake_utilities(
        folder="utilities/", extra={"utilities/README.txt": b"x", "__MACOSX/._x": b"y"}
    )
    code, out, err = run_cli(capsys, *non_interactive(data_dir, "--keep-archive"))
    assert code == 0, err
    assert (data_dir / "SMPLX_to_J14.pkl").read_bytes() == member_bytes("SMPLX_to_J14.pkl")
    assert not (data_dir / "README.txt").exists() and not (data_dir / "utilities").exists()
    assert (data_dir / "utilities.zip").is_file()  # --keep-archive
    assert "ignored entries: utilities/README.txt, __MACOSX/._x" in err


def test_existing_files_are_never_overwritten(env, server, data_dir, capsys):
    data_dir.mkdir()
    (data_dir / "smplx_tex.obj").write_bytes(b"my own edited obj")
    (data_dir / "notes.txt").write_bytes(b"unrelated")
    code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 0
    assert (data_dir / "smplx_tex.obj").read_bytes() == b"my own edited obj"
    assert (data_dir / "notes.txt").read_bytes() == b"unrelated"
    assert "left as they were (already present): smplx_tex.obj" in err


def test_existing_archive_is_unpacked_without_login(env, server, data_dir, capsys):
    data_dir.mkdir()
    (data_dir / "utilities.zip").write_bytes(fake_utilities())
    env.delenv("PIXIE_SMPLX_PASSWORD")
    code, out, err = run_cli(capsys, *non_interactive(data_dir, "--only", "pixie"))
    assert (data_dir / "smplx_extra_joints.yaml").is_file()
    # only pixie_model.tar was downloaded; the user's own archive is kept
    assert [r.sfile for r in server.downloads()] == ["pixie_model.tar"]
    assert (data_dir / "utilities.zip").is_file()
    assert code == 1  # SMPL-X still missing


# --------------------------------------------------------------------------------------------------
# Wrong credentials


@pytest.mark.parametrize("mode", WRONG_LOGIN_MODES)
def test_wrong_password_is_detected(env, server, data_dir, capsys, mode):
    server.wrong_login = mode
    server.echo_password = True  # a sloppy server that repeats the password: must be redacted
    env.setenv("PIXIE_SMPLX_PASSWORD", SMPLX_PASSWORD + "-typo")
    code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 3, err
    assert "ERROR (credentials)" in err
    assert "SMPL-X" in err and "https://smpl-x.is.tue.mpg.de" in err
    # nothing under the SMPL-X name, not even a partial file
    assert not {"SMPLX_NEUTRAL_2020.npz", "SMPLX_NEUTRAL_2020.npz.part"} & files_in(data_dir)
    # the PIXIE account was right: its files were still fetched
    assert (data_dir / "pixie_model.tar").is_file()
    assert_no_secret(out, err)
    wrong = SMPLX_PASSWORD + "-typo"
    assert wrong not in out + err
    assert_folder_has_no_secret(data_dir)


def test_wrong_password_message_quotes_page_redacted(env, server, data_dir, capsys):
    server.wrong_login = "html"
    server.echo_password = True
    env.setenv("PIXIE_PIXIE_PASSWORD", "wrong-and-long-password")
    code, out, err = run_cli(capsys, *non_interactive(data_dir, "--only", "pixie"))
    assert code == 3
    assert "Username/Password Authentication Failed" in err
    assert "You typed the password ***" in err
    assert "wrong-and-long-password" not in out + err


@pytest.mark.parametrize("status,needle", [(401, "HTTP 401"), (403, "HTTP 403")])
def test_status_codes_name_the_cause(server, data_dir, status, needle):
    server.wrong_login = str(status)
    f = make_fetcher(
        server,
        data_dir,
        credentials={
            "smplx": fd.Credentials(SMPLX_USER, "nope-nope"),
            "pixie": fd.Credentials(PIXIE_USER, "nope"),
        },
    )
    with pytest.raises(fd.CredentialsError) as info:
        f.run(planned(server, data_dir, only=["smplx"]))
    assert needle in str(info.value)
    assert "nope-nope" not in str(info.value) and "nope-nope" not in repr(info.value)


def test_both_accounts_wrong_reports_both(server, data_dir):
    f = make_fetcher(
        server,
        data_dir,
        credentials={
            "smplx": fd.Credentials(SMPLX_USER, "bad-1"),
            "pixie": fd.Credentials(PIXIE_USER, "bad-2"),
        },
    )
    with pytest.raises(fd.CredentialsError) as info:
        f.run(planned(server, data_dir))
    assert "SMPL-X" in str(info.value) and "PIXIE" in str(info.value)
    # one refused request per account, the second PIXIE file was not even tried
    assert [r.sfile for r in server.downloads()] == ["SMPLX_NEUTRAL_2020.npz", "pixie_model.tar"]


# --------------------------------------------------------------------------------------------------
# Interrupted downloads and resume


def test_dropped_connection_then_resume_on_next_run(env, server, data_dir, capsys):
    payload = server.files[("pixie", "pixie_model.tar")]
    cut = 300_000
    server.cut_after["pixie_model.tar"] = cut
    code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 4, err
    assert "ERROR (network)" in err and "connection dropped" in err
    part = data_dir / "pixie_model.tar.part"
    assert part.is_file() and part.stat().st_size == cut
    assert not (data_dir / "pixie_model.tar").exists()  # never a half file under the final name
    assert (data_dir / "SMPLX_NEUTRAL_2020.npz").is_file()

    code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 0, err
    resumed = [r for r in server.downloads() if r.sfile == "pixie_model.tar"][-1]
    assert resumed.range == f"bytes={cut}-"
    assert "resuming at" in err
    assert (data_dir / "pixie_model.tar").read_bytes() == payload
    assert not part.exists()


def test_dropped_connection_is_retried_within_one_run(server, data_dir):
    payload = server.files[("smplx", "SMPLX_NEUTRAL_2020.npz")]
    server.cut_after["SMPLX_NEUTRAL_2020.npz"] = 100_000
    events: list[dict] = []
    sleeps: list[float] = []
    f = make_fetcher(server, data_dir, events, retries=2, sleep=sleeps.append)
    f.run(planned(server, data_dir, only=["smplx"]))
    assert (data_dir / "SMPLX_NEUTRAL_2020.npz").read_bytes() == payload
    retries = [e for e in events if e.kind == "message" and "retry" in e.details]
    assert len(retries) == 1 and sleeps == [1.0] and "Retrying in 1 s" in retries[0].text
    starts = [e for e in events if e.kind == "progress" and e.details.get("start")]
    assert [s.details["offset"] for s in starts] == [0, 100_000]


def test_server_without_range_support_restarts_cleanly(env, server, data_dir, capsys):
    payload = server.files[("pixie", "pixie_model.tar")]
    server.cut_after["pixie_model.tar"] = 200_000
    assert run_cli(capsys, *non_interactive(data_dir))[0] == 4
    server.support_range = False
    code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 0, err
    assert "cannot resume" in err
    assert (data_dir / "pixie_model.tar").read_bytes() == payload


def test_complete_part_file_answered_416(server, data_dir):
    payload = server.files[("pixie", "pixie_model.tar")]
    data_dir.mkdir()
    (data_dir / "pixie_model.tar.part").write_bytes(payload)
    f = make_fetcher(server, data_dir)
    plan = [p for p in planned(server, data_dir, only=["pixie"]) if p.file == "pixie_model.tar"]
    f.run(plan)
    assert (data_dir / "pixie_model.tar").read_bytes() == payload
    assert server.downloads()[-1].range == f"bytes={len(payload)}-"


def test_cancel_line_on_stdin_stops_and_keeps_part(server, data_dir, tmp_path):
    """The add-on's Cancel: a ``cancel`` line after the credentials, in a real child process."""
    server.delay_per_block = 0.05
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pixie_backend",
            "fetch-data",
            "--data-dir",
            str(data_dir),
            "--json-progress",
            "--credentials-stdin",
            "--accept-licences",
            "--only",
            "pixie",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, fd.ENV_ENDPOINT: server.url},
    )
    proc.stdin.write(json.dumps({"pixie": {"username": PIXIE_USER, "password": PIXIE_PASSWORD}}) + "\n")
    proc.stdin.flush()
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "progress" and events[-1]["stage"] == "download":
            proc.stdin.write("cancel\n")
            proc.stdin.flush()
            break
    rest, err = proc.communicate(timeout=30)
    events += [json.loads(x) for x in rest.splitlines()]
    assert proc.returncode == 130
    assert events[-1]["event"] == "finished" and events[-1]["exit_code"] == 130
    assert events[-1]["status"] == "cancelled" and events[-1]["error"]["code"] == "cancelled"
    assert (data_dir / "pixie_model.tar.part").is_file()
    assert not (data_dir / "pixie_model.tar").exists()
    assert_no_secret(rest, err)


# --------------------------------------------------------------------------------------------------
# Damaged and hostile files


def test_corrupt_archive_is_rejected_and_nothing_unpacked(env, server, data_dir, capsys):
    server.files[("pixie", "utilities.zip")] = corrupt_zip(fake_utilities())
    code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 6, err
    assert "ERROR (corrupt_archive)" in err and "utilities.zip is damaged" in err
    names = files_in(data_dir)
    assert not names & set(UTILITIES_MEMBERS)
    assert not {"utilities.zip", "utilities.zip.part"} & names
    assert not [n for n in names if n.endswith(".tmp")]


def test_not_a_zip_at_all(env, server, data_dir, capsys):
    server.files[("smplx", "SMPLX_NEUTRAL_2020.npz")] = bytes(range(256)) * 4000
    code, out, err = run_cli(capsys, *non_interactive(data_dir, "--only", "smplx"))
    assert code == 6
    assert "not a .npz file" in err
    assert not {"SMPLX_NEUTRAL_2020.npz", "SMPLX_NEUTRAL_2020.npz.part"} & files_in(data_dir)


@pytest.mark.parametrize(
    "entry,symlink,reason",
    [
        ("../evil.txt", False, "parent-folder"),
        ("sub/../../evil.txt", False, "parent-folder"),
        ("..\\evil.txt", False, "parent-folder"),
        ("/tmp/evil.txt", False, "absolute path"),
        ("C:/evil.txt", False, "drive letter"),
        ("smplx_tex.png", True, "symbolic link"),
    ],
)
def test_hostile_archive_is_refused_whole(env, server, data_dir, tmp_path, capsys, entry, symlink, reason):
    server.files[("pixie", "utilities.zip")] = unsafe_zip(entry, symlink=symlink)
    code, out, err = run_cli(capsys, *non_interactive(data_dir, "--only", "pixie"))
    assert code == 6, err
    assert "ERROR (unsafe_archive)" in err and reason in err
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    assert not set(UTILITIES_MEMBERS) & files_in(data_dir)  # nothing unpacked
    assert not (data_dir / "smplx_tex.png").exists()


def test_extract_archive_directly_refuses_traversal(tmp_path):
    archive = tmp_path / "utilities.zip"
    archive.write_bytes(unsafe_zip("../outside.txt"))
    target = tmp_path / "data"
    target.mkdir()
    with pytest.raises(fd.UnsafeArchiveError):
        fd.extract_archive(archive, target, {n: None for n in UTILITIES_MEMBERS})
    assert not (tmp_path / "outside.txt").exists()
    assert files_in(target) == set()


def test_checksum_and_size_from_registry_are_enforced(server, data_dir):
    data = server.files[("smplx", "SMPLX_NEUTRAL_2020.npz")]
    wrong_sha = [DownloadSpec("smplx", "SMPLX_NEUTRAL_2020.npz", sha256="0" * 64)]
    f = make_fetcher(server, data_dir)
    with pytest.raises(fd.VerificationError, match="SHA-256"):
        f.run(fd.plan_downloads(data_dir, files=wrong_sha))
    assert not files_in(data_dir) & {"SMPLX_NEUTRAL_2020.npz", "SMPLX_NEUTRAL_2020.npz.part"}

    wrong_size = [DownloadSpec("smplx", "SMPLX_NEUTRAL_2020.npz", size=len(data) + 1)]
    with pytest.raises(fd.VerificationError, match="registry expects"):
        f.run(fd.plan_downloads(data_dir, files=wrong_size))

    import hashlib

    right = [
        DownloadSpec(
            "smplx", "SMPLX_NEUTRAL_2020.npz", size=len(data), sha256=hashlib.sha256(data).hexdigest()
        )
    ]
    summary = f.run(fd.plan_downloads(data_dir, files=right))
    assert summary.checksums["SMPLX_NEUTRAL_2020.npz"] == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------
# Disk full, no network, server trouble


class _FillingFile(io.FileIO):
    """A file that hits ENOSPC once ``limit`` bytes have been written to it."""

    limit = 150_000

    def write(self, b):
        if self.tell() + len(b) > self.limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(b)


def test_disk_full_midway_keeps_part_and_resumes(env, server, data_dir, capsys, monkeypatch):
    monkeypatch.setattr(fd, "_open_binary", lambda path, mode: _FillingFile(path, mode.replace("b", "")))
    code, out, err = run_cli(capsys, *non_interactive(data_dir, "--only", "smplx"))
    assert code == 5, err
    assert "ERROR (disk_full)" in err and "is full" in err
    part = data_dir / "SMPLX_NEUTRAL_2020.npz.part"
    assert part.is_file() and not (data_dir / "SMPLX_NEUTRAL_2020.npz").exists()
    monkeypatch.undo()  # space freed
    env.setenv(fd.ENV_ENDPOINT, server.url)
    for k, v in (("PIXIE_SMPLX_USERNAME", SMPLX_USER), ("PIXIE_SMPLX_PASSWORD", SMPLX_PASSWORD)):
        env.setenv(k, v)
    code, out, err = run_cli(capsys, *non_interactive(data_dir, "--only", "smplx"))
    assert code == 1, err  # smplx done; PIXIE files not requested
    assert (data_dir / "SMPLX_NEUTRAL_2020.npz").read_bytes() == server.files[
        ("smplx", "SMPLX_NEUTRAL_2020.npz")
    ]


def test_disk_too_small_is_detected_before_writing(env, server, data_dir, capsys, monkeypatch):
    real = fd.shutil.disk_usage
    monkeypatch.setattr(fd.shutil, "disk_usage", lambda p: real(p)._replace(free=10_000))
    code, out, err = run_cli(capsys, *non_interactive(data_dir, "--only", "smplx"))
    assert code == 5
    assert "not enough free space" in err
    assert files_in(data_dir) <= {fd.LOCK_NAME}


def test_connection_refused(env, data_dir, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    env.setenv(fd.ENV_ENDPOINT, f"http://127.0.0.1:{port}/download.php")
    code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 4
    assert "ERROR (network)" in err and "refused" in err
    assert_no_secret(out, err)


def test_name_resolution_failure(env, data_dir, capsys, monkeypatch):
    def no_dns(*a, **k):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    env.setenv(fd.ENV_ENDPOINT, "https://download.invalid/download.php")
    code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 4
    assert "Cannot resolve download.invalid" in err


def test_timeout(env, server, data_dir, capsys):
    server.delay_before_answer = 1.0
    code, out, err = run_cli(capsys, *non_interactive(data_dir, "--timeout", "0.2", "--only", "smplx"))
    assert code == 4
    assert "timed out" in err


def test_server_error_is_retried_then_reported(server, data_dir):
    server.status_override["SMPLX_NEUTRAL_2020.npz"] = 503
    events: list[dict] = []
    f = make_fetcher(server, data_dir, events, retries=2)
    with pytest.raises(fd.ServerError, match="HTTP 503"):
        f.run(planned(server, data_dir, only=["smplx"]))
    assert len([e for e in events if e.kind == "message" and "retry" in e.details]) == 2


def test_missing_file_on_server(server, data_dir):
    del server.files[("smplx", "SMPLX_NEUTRAL_2020.npz")]
    with pytest.raises(fd.ServerError, match="HTTP 404"):
        make_fetcher(server, data_dir).run(planned(server, data_dir, only=["smplx"]))


def test_second_run_on_the_same_folder_is_refused(env, server, data_dir, capsys):
    data_dir.mkdir()
    with fd.FolderLock(data_dir):
        code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 8
    assert "another `pixie-backend fetch-data`" in err


def test_stale_temporary_files_are_removed(env, server, data_dir, capsys):
    data_dir.mkdir()
    (data_dir / ".pixie-fetch-smplx_tex.obj.abc.tmp").write_bytes(b"half")
    assert run_cli(capsys, *non_interactive(data_dir))[0] == 0
    assert not [n for n in files_in(data_dir) if n.endswith(".tmp")]


# --------------------------------------------------------------------------------------------------
# Credentials handling


def test_non_interactive_without_env_names_the_variables(monkeypatch, server, data_dir, capsys):
    monkeypatch.setenv(fd.ENV_ENDPOINT, server.url)
    for var in (
        "PIXIE_SMPLX_USERNAME",
        "PIXIE_SMPLX_PASSWORD",
        "PIXIE_PIXIE_USERNAME",
        "PIXIE_PIXIE_PASSWORD",
    ):
        monkeypatch.delenv(var, raising=False)
    code, out, err = run_cli(capsys, *non_interactive(data_dir))
    assert code == 2
    for var in (
        "PIXIE_SMPLX_USERNAME",
        "PIXIE_SMPLX_PASSWORD",
        "PIXIE_PIXIE_USERNAME",
        "PIXIE_PIXIE_PASSWORD",
    ):
        assert var in err
    assert server.downloads() == []


def test_licences_must_be_confirmed_without_prompt(env, server, data_dir, capsys):
    code, out, err = run_cli(capsys, "--data-dir", str(data_dir), "--non-interactive")
    assert code == 2
    assert "--accept-licences" in err and "https://pixie.is.tue.mpg.de/license.html" in err
    assert server.downloads() == []


def test_interactive_prompts(monkeypatch, server, data_dir, capsys, caplog):
    monkeypatch.setenv(fd.ENV_ENDPOINT, server.url)
    for var in (
        "PIXIE_SMPLX_USERNAME",
        "PIXIE_SMPLX_PASSWORD",
        "PIXIE_PIXIE_USERNAME",
        "PIXIE_PIXIE_PASSWORD",
    ):
        monkeypatch.delenv(var, raising=False)
    answers = iter(["yes", SMPLX_USER, PIXIE_USER])
    passwords = iter([SMPLX_PASSWORD, PIXIE_PASSWORD])
    prompts: list[str] = []
    monkeypatch.setattr(cmd, "_stdin_is_tty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda p="": prompts.append(p) or next(answers))
    monkeypatch.setattr(cmd.getpass, "getpass", lambda p="": prompts.append(p) or next(passwords))
    caplog.set_level(logging.DEBUG)
    code = cli.main(["-v", "fetch-data", "--data-dir", str(data_dir), "--retries", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert any("licences" in p for p in prompts)
    assert any("SMPL-X password (hidden)" in p for p in prompts)
    assert any("PIXIE password (hidden)" in p for p in prompts)
    assert_no_secret(out, err, caplog.text, *prompts)


def test_interactive_without_terminal_says_what_to_do(env, server, data_dir, capsys, monkeypatch):
    monkeypatch.setattr(cmd, "_stdin_is_tty", lambda: False)
    code, out, err = run_cli(capsys, "--data-dir", str(data_dir), "--accept-licences")
    assert code == 2
    assert "--non-interactive" in err and "--credentials-stdin" in err


def test_json_progress_with_credentials_on_stdin(server, data_dir):
    """The add-on's mode, in a real child process: every stdout line is a JSON event."""
    creds = {
        "smplx": {"username": SMPLX_USER, "password": SMPLX_PASSWORD},
        "pixie": {"username": PIXIE_USER, "password": PIXIE_PASSWORD},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXIE_")}
    env[fd.ENV_ENDPOINT] = server.url
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pixie_backend",
            "-v",
            "fetch-data",
            "--data-dir",
            str(data_dir),
            "--json-progress",
            "--credentials-stdin",
            "--accept-licences",
        ],
        input=json.dumps(creds) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    validate_events(events)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    start = events[0]["details"]
    assert start["official_endpoint"] is False and "TEST ENDPOINT" in start["endpoint_label"]
    done = [e for e in events if e["event"] == "item_done"]
    assert {e["item"] for e in done} == {"SMPLX_NEUTRAL_2020.npz", "pixie_model.tar", "utilities.zip"}
    assert all(len(e["details"]["sha256"]) == 64 for e in done)
    progress = [e for e in events if e["event"] == "progress" and e["stage"] == "download"]
    assert progress and all(e["done"] <= e["total"] and e["unit"] == "bytes" for e in progress)
    archive = next(e for e in done if e["item"] == "utilities.zip")
    assert set(archive["details"]["extracted"]["written"]) == set(UTILITIES_MEMBERS)
    finished = events[-1]
    assert finished["status"] == "ok" and finished["exit_code"] == 0 and finished["error"] is None
    report = finished["details"]["report"]
    assert report["complete"] is True and report["doctor"]["schema"] == 1
    manual = {e["details"]["key"]: e["details"] for e in events
              if e["event"] == "message" and e["details"].get("manual")}
    assert set(manual) == {
        "smplx_tex_png",
        "uv_face_mask",
        "uv_face_eye_mask",
        "flame_albedo",
        "deca_model",
        "deca_fixed_displacement",
    }
    # the files in public repositories come with a copyable download command
    for key in ("smplx_tex_png", "uv_face_mask", "uv_face_eye_mask", "deca_fixed_displacement"):
        cmd = manual[key]["commands"][0]
        assert cmd.startswith(("curl", "curl.exe")) and manual[key]["url"] in cmd and manual[key]["file"] in cmd
    assert_no_secret(proc.stdout, proc.stderr)


def test_bad_json_on_stdin_is_not_echoed(server, data_dir):
    env = {**os.environ, fd.ENV_ENDPOINT: server.url}
    line = '{"smplx": {"username": "a", "password": "' + SMPLX_PASSWORD + '"'  # truncated JSON
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pixie_backend",
            "fetch-data",
            "--data-dir",
            str(data_dir),
            "--json-progress",
            "--credentials-stdin",
            "--accept-licences",
        ],
        input=line + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    events = [json.loads(x) for x in proc.stdout.splitlines()]
    validate_events(events)
    error = events[-1]["error"]
    assert error["code"] == "usage" and "not valid JSON" in error["message"]
    assert_no_secret(proc.stdout, proc.stderr)


def test_credentials_object_hides_password():
    c = fd.Credentials("me@example.org", SMPLX_PASSWORD)
    assert SMPLX_PASSWORD not in repr(c) and SMPLX_PASSWORD not in str(c) and "hidden" in repr(c)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(c)
    # the form body is percent-encoded like upstream's urle (space as %20, & and = escaped)
    body = c.form_body().decode()
    assert body.startswith("username=me%40example.org&password=Smplx-Pa55%20w0rd%26%25%3D%2B%3F%23%21")


def test_redacting_log_filter(caplog):
    r = fd.Redactor([SMPLX_PASSWORD])
    logger = logging.getLogger("pixie_backend.test")
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(fd.RedactingFilter(r))
    logger.addHandler(handler)
    try:
        logger.warning("server said %s", SMPLX_PASSWORD)
    finally:
        logger.removeHandler(handler)
    assert SMPLX_PASSWORD not in handler.stream.getvalue()
    assert "server said ***" in handler.stream.getvalue()


# --------------------------------------------------------------------------------------------------
# Endpoint, detection heuristics, doctor --json


def test_endpoint_resolution_rules():
    official = fd.resolve_endpoint(None, environ={})
    assert official.official and official.url == "https://download.is.tue.mpg.de/download.php"
    assert "official MPI download server" in official.label
    test = fd.resolve_endpoint(None, environ={fd.ENV_ENDPOINT: "http://127.0.0.1:9/download.php"})
    assert not test.official and test.label.startswith("TEST ENDPOINT http://127.0.0.1:9/")
    assert f"${fd.ENV_ENDPOINT}" in test.label
    assert fd.resolve_endpoint("https://mirror.example.org/d.php", environ={}).origin == "--endpoint"
    with pytest.raises(fd.UsageError, match="plain http"):
        fd.resolve_endpoint("http://example.org/download.php", environ={})
    with pytest.raises(fd.UsageError):
        fd.resolve_endpoint("ftp://127.0.0.1/x", environ={})
    url = test.file_url("pixie", "utilities.zip")
    assert url.endswith("?domain=pixie&sfile=utilities.zip&resume=1")


@pytest.mark.parametrize(
    "head,ctype,length,expected",
    [
        (b"<!DOCTYPE html><html>", "application/octet-stream", 5000, True),
        (b"PK\x03\x04" + bytes(100), "text/html", 10**6, True),  # the content type decides
        (b"PK\x03\x04" + bytes(100), "application/zip", 10**6, False),
        (b"Error: wrong password", "application/octet-stream", 21, True),
        (b'{"error": "unauthorized"}', "application/json", 25, True),
        (bytes(range(256)) * 16, "application/octet-stream", 10**6, False),
        (b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8", "application/x-tar", 10**8, False),
    ],
)
def test_error_page_heuristics(head, ctype, length, expected):
    assert fd.looks_like_error_page(head, ctype, length) is expected


def test_doctor_json(tmp_path, capsys):
    code = cli.main(["doctor", "--json", "--data-dir", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["complete"] is False and doc["schema"] == 1
    by_name = {a["filename"]: a for a in doc["assets"]}
    assert by_name["SMPLX_NEUTRAL_2020.npz"]["download"] == {
        "domain": "smplx",
        "sfile": "SMPLX_NEUTRAL_2020.npz",
    }
    assert by_name["smplx_extra_joints.yaml"]["archive"] == "utilities.zip"
    assert by_name["smplx_tex.png"]["url"].startswith("https://github.com/yfeng95/PIXIE/raw/")
    assert "NOT READY" in doc["text"]
