"""``pixie-backend fetch-data``: download the licensed model files with the user's own accounts.

Credentials (never stored, never logged, never printed):

* interactive (default): hidden prompts (``getpass``) for the SMPL-X and the PIXIE account; an
  account whose two environment variables are both set is taken from them instead;
* ``--non-interactive``: only the environment variables ``PIXIE_SMPLX_USERNAME``,
  ``PIXIE_SMPLX_PASSWORD``, ``PIXIE_PIXIE_USERNAME``, ``PIXIE_PIXIE_PASSWORD``;
* ``--credentials-stdin`` (the Blender add-on): one JSON line on stdin,
  ``{"smplx": {"username": "...", "password": "..."}, "pixie": {...}}``.

Only the accounts whose files are missing are asked for. Without prompts, ``--accept-licences``
must confirm that the user accepted the licences.

``--json`` (alias ``--json-progress``) prints only the event protocol of ``docs/protocol.md`` on
stdout, one JSON object per line: ``started`` (details: data_dir, endpoint, official_endpoint,
endpoint_label), ``progress`` with stage ``plan`` (details: downloads, accounts), ``download``
(bytes; the first record of a file has ``details.start``) and ``extract``; ``item_done`` per file
(details: size, sha256, reused, extracted); ``item_error`` per file that failed; ``message``
(retries, notes, and the manual steps with ``details.manual``); and last ``finished`` (status,
exit_code, error, details.report = the ``doctor --json`` document with complete/texture_complete/text).

Exit codes: 0 all required files present; 1 no error but required files still missing (e.g. with
``--only``); 2 usage (options, missing credentials or licence confirmation, unwritable folder);
3 credentials refused; 4 network; 5 disk full; 6 verification failed (size, checksum, corrupt or
unsafe archive); 7 server error; 8 another fetch-data is running on the folder; 130 cancelled.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ..assets import ASSETS, Need, resolve_data_dir
from ..fetch_data import (
    ACCOUNTS,
    ENV_ENDPOINT,
    Account,
    Credentials,
    CredentialsError,
    Fetcher,
    FetchError,
    FolderLock,
    PlannedDownload,
    RedactingFilter,
    Redactor,
    UsageError,
    accounts_needed,
    credentials_from_env,
    credentials_from_json,
    manual_steps,
    plan_downloads,
    remove_stale_temps,
    resolve_endpoint,
)

log = logging.getLogger(__name__)

EPILOG = f"""\
credentials:
  Interactive runs ask for the SMPL-X and PIXIE e-mail and password with hidden prompts.
  --non-interactive reads {ACCOUNTS["smplx"].env_username}, {ACCOUNTS["smplx"].env_password},
  {ACCOUNTS["pixie"].env_username} and {ACCOUNTS["pixie"].env_password}.
  Nothing is stored; passwords never appear in output or logs.

  Register (free, non-commercial licences) at {ACCOUNTS["smplx"].site} and {ACCOUNTS["pixie"].site}.

testing:
  {ENV_ENDPOINT} (or --endpoint) replaces the MPI download server, e.g. with a local test
  server; every message then says TEST ENDPOINT.

exit codes:
  0 ready, 1 required files still missing, 2 usage, 3 login refused, 4 network, 5 disk full,
  6 verification failed, 7 server error, 8 folder busy, 130 cancelled
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "fetch-data",
        help="download the licensed model files with your SMPL-X and PIXIE accounts",
        description=(
            "Download SMPLX_NEUTRAL_2020.npz (SMPL-X account), pixie_model.tar and utilities.zip "
            "(PIXIE account) into the data folder, resume interrupted downloads, verify and unpack "
            "them, and end with the `doctor` report."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", help="data folder (default: $PIXIE_DATA_DIR, then the user folder)")
    p.add_argument(
        "--only",
        action="append",
        choices=sorted(ACCOUNTS),
        help="only the files of this account (repeatable)",
    )
    p.add_argument(
        "--non-interactive",
        action="store_true",
        help="never prompt: credentials from the environment variables (see below)",
    )
    p.add_argument(
        "--credentials-stdin",
        action="store_true",
        help='read {"smplx": {"username": ..., "password": ...}, "pixie": {...}} as one JSON line '
        "from stdin (used by the Blender add-on)",
    )
    p.add_argument(
        "--json",
        "--json-progress",
        dest="json_progress",
        action="store_true",
        help="machine-readable output: JSON lines on stdout, nothing else (used by the Blender add-on)",
    )
    p.add_argument(
        "--accept-licences",
        action="store_true",
        help="confirm that you have read and accepted the SMPL-X and PIXIE licences (needed without prompts)",
    )
    p.add_argument("--keep-archive", action="store_true", help="keep utilities.zip after unpacking it")
    p.add_argument("--force", action="store_true", help="download again and overwrite files that are present")
    p.add_argument("--dry-run", action="store_true", help="only show what would be downloaded")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--retries", type=int, default=3, help="automatic retries (with resume) per file (default 3)"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    p.add_argument(
        "--endpoint",
        help=f"replace the download server (tests only; also ${ENV_ENDPOINT})",
    )
    p.set_defaults(func=run)
    return p


# --------------------------------------------------------------------------------------------------
# Output


class HumanUI:
    """Messages on stderr, tqdm bars on a terminal, the report on stdout."""

    def __init__(self, bars: bool):
        self.bars = bars
        self.bar = None
        self._manual_header = False

    def say(self, text: str = "") -> None:
        self._close()
        print(text, file=sys.stderr, flush=True)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, ev) -> None:
        kind, d = ev.kind, ev.details
        if kind == "started":
            self.say(f"Data folder: {d['data_dir']}")
            self.say(f"Source:      {d['endpoint_label']}")
            if not d["official_endpoint"]:
                self.say("!!! " + "=" * 70)
                self.say(f"!!! TEST ENDPOINT {d['endpoint']} is used instead of the MPI server.")
                self.say("!!! " + "=" * 70)
        elif kind == "progress" and ev.stage == "plan":
            if not d["downloads"]:
                self.say("Nothing to download: every file this command can fetch is present.")
                return
            self.say("To download:")
            for dl in d["downloads"]:
                acc = ACCOUNTS[dl["account"]].label
                how = "already here, unpack only" if dl["reuse_archive"] else f"{acc} account"
                provides = [n for n in dl["provides"] if n != dl["file"]]
                self.say(f"  {dl['file']:<24} {how}" + (f"  ({', '.join(provides)})" if provides else ""))
        elif kind == "progress" and ev.stage == "download":
            if d.get("start"):
                self.say(ev.text)
                self._open_bar(ev)
            elif self.bar is not None:
                self.bar.update(ev.done - self.bar.n)
        elif kind == "progress" and ev.stage == "extract":
            self.say(f"      {ev.text}")
            if d.get("kept"):
                self.say(f"      left as they were (already present): {', '.join(d['kept'])}")
            if d.get("ignored"):
                self.say(f"      ignored entries: {', '.join(d['ignored'])}")
        elif kind == "message":
            if d.get("manual"):
                if not self._manual_header:
                    self._manual_header = True
                    self.say()
                    self.say(
                        "Not downloaded by this command (a separate procedure; the steps are under "
                        '"get it" in the report below). Copyable commands:'
                    )
                self.say(f"  {d['file']} ({d['need']}):")
                for cmd in d["commands"] or ["(no command: follow the steps in the report)"]:
                    self.say(f"      {cmd}")
            else:
                self.say(("warning: " if ev.level == "warning" else "      ") + ev.text)
        elif kind == "item_error":
            self._close()
        elif kind == "finished":
            self._close()
            sys.stderr.flush()
            print(file=sys.stdout)
            print(d["report"]["text"], file=sys.stdout, flush=True)
            if ev.error is not None:
                print(f"\nERROR ({ev.error['code']}): {ev.error['message']}", file=sys.stderr, flush=True)

    def _open_bar(self, ev) -> None:
        if not self.bars:
            return
        from tqdm import tqdm

        try:  # some pseudo-terminals report a 0 x 0 size: tqdm would draw nothing
            size = os.get_terminal_size(sys.stderr.fileno())
            sized = size.columns > 0 and size.lines > 0
        except (OSError, ValueError):
            sized = False
        self.bar = tqdm(
            total=ev.total,
            initial=ev.done,
            desc=ev.item,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            dynamic_ncols=sized,
            ncols=None if sized else 100,
            nrows=None if sized else 40,
            disable=None,  # off when stderr is not a terminal
        )

    def ask(self, prompt: str) -> str:
        self._close()
        return input(prompt)


class JsonUI:
    """JSON lines on stdout; progress events rate-limited."""

    MIN_INTERVAL = 0.2

    def __init__(self):
        self._last: dict[str, float] = {}

    def __call__(self, ev) -> None:
        if ev.kind == "progress" and ev.stage == "download" and not ev.details.get("start"):
            now = time.monotonic()
            if ev.done != ev.total and now - self._last.get(ev.item, 0.0) < self.MIN_INTERVAL:
                return
            self._last[ev.item] = now
        sys.stdout.write(ev.to_json() + "\n")
        sys.stdout.flush()


# --------------------------------------------------------------------------------------------------
# Credentials


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _licence_lines(accounts: list[Account]) -> list[str]:
    return [f"  {a.label:<7} licence {a.licence_url}  (account: {a.site})" for a in accounts]


def _confirm_licences(args: argparse.Namespace, accounts: list[Account], ui: HumanUI | None) -> None:
    if args.accept_licences:
        return
    if ui is None or args.non_interactive or args.credentials_stdin or not _stdin_is_tty():
        raise UsageError(
            "confirm that you have read and accepted the licences with --accept-licences:\n"
            + "\n".join(_licence_lines(accounts))
        )
    ui.say("The files are licensed for non-commercial research, education and art only:")
    for line in _licence_lines(accounts):
        ui.say(line)
    answer = ui.ask("Have you read and accepted these licences? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("licences not accepted; nothing was downloaded")


def _ask_credentials(accounts: list[Account], ui: HumanUI) -> dict[str, Credentials]:
    creds: dict[str, Credentials] = {}
    for acc in accounts:
        user_env, pw_env = os.environ.get(acc.env_username, ""), os.environ.get(acc.env_password, "")
        if user_env and pw_env:
            ui.say(f"{acc.label}: using {acc.env_username} / {acc.env_password}")
            creds[acc.key] = Credentials(user_env.strip(), pw_env)
            continue
        ui.say(f"{acc.label} account (register at {acc.site}):")
        user = user_env.strip()
        for _ in range(3):
            if user:
                break
            user = ui.ask(f"  {acc.label} e-mail / username: ").strip()
        if not user:
            raise UsageError(f"no {acc.label} username given")
        if user_env:
            ui.say(f"  {acc.label} username from {acc.env_username}: {user}")
        password = pw_env
        for _ in range(3):
            if password:
                break
            password = getpass.getpass(f"  {acc.label} password (hidden): ")
        if not password:
            raise UsageError(f"no {acc.label} password given")
        creds[acc.key] = Credentials(user, password)
    return creds


def _read_stdin_credentials(accounts: list[Account]) -> dict[str, Credentials]:
    line = sys.stdin.readline(1 << 16) if sys.stdin is not None else ""
    if not line.strip():
        raise UsageError("--credentials-stdin: no credentials line on stdin")
    try:
        document = json.loads(line)
    except ValueError:
        # The line holds passwords: its content is never echoed.
        raise UsageError("--credentials-stdin: the line on stdin is not valid JSON") from None
    return credentials_from_json(document, accounts)


def get_credentials(
    args: argparse.Namespace, accounts: list[Account], ui: HumanUI | None
) -> dict[str, Credentials]:
    _confirm_licences(args, accounts, ui)
    if args.credentials_stdin:
        return _read_stdin_credentials(accounts)
    if args.non_interactive:
        return credentials_from_env(accounts)
    if ui is None or not _stdin_is_tty():
        raise UsageError(
            "no terminal to ask for the passwords: use --non-interactive with the environment "
            "variables "
            + ", ".join(f"{a.env_username}/{a.env_password}" for a in accounts)
            + ", or --credentials-stdin"
        )
    return _ask_credentials(accounts, ui)


# --------------------------------------------------------------------------------------------------
# The command


def _plan_details(plan: list[PlannedDownload]) -> dict[str, Any]:
    return {
        "downloads": [
            {
                "file": p.file,
                "domain": p.spec.domain,
                "account": p.account.key,
                "size": p.spec.size,
                "provides": [a.filename for a in p.provides],
                "reuse_archive": p.reuse_archive,
            }
            for p in plan
        ],
        "accounts": [a.key for a in accounts_needed(plan)],
    }


def _emit_manual(data_dir: Path, emit) -> None:
    from ..jobs.events import Message

    for spec in ASSETS:
        if spec.download is None and not (data_dir / spec.filename).is_file():
            emit(Message, level="info", item=spec.filename, text=spec.instructions,
                 details={"manual": True, "key": spec.key, "file": spec.filename, "need": spec.need.value,
                          "commands": manual_steps(spec, data_dir), "url": spec.url})


def _fetch(args: argparse.Namespace, emit, ui: HumanUI | None, redactor: Redactor, stop) -> Path:
    endpoint = resolve_endpoint(args.endpoint)
    data_dir = resolve_data_dir(args.data_dir)
    args._resolved_data_dir = data_dir
    from ..jobs.events import Progress, Started

    emit(
        Started,
        job_kind="fetch-data",
        total=None,
        details={
            "data_dir": str(data_dir),
            "endpoint": endpoint.url,
            "official_endpoint": endpoint.official,
            "endpoint_label": endpoint.label,
        },
    )
    if not endpoint.official and ui is None:  # JSON mode: also say it in the log (stderr)
        log.warning("using %s", endpoint.label)
    if data_dir.exists() and not data_dir.is_dir():
        raise UsageError(f"the data folder {data_dir} is a file, not a folder")
    plan = plan_downloads(data_dir, only=args.only, force=args.force)
    emit(Progress, stage="plan", done=0, total=len(plan), details=_plan_details(plan))
    if args.dry_run or not plan:
        _emit_manual(data_dir, emit)
        return data_dir
    accounts = accounts_needed(plan)
    creds = get_credentials(args, accounts, ui) if accounts else {}
    redactor.add_credentials(creds)
    if args.credentials_stdin:
        _watch_stdin_for_cancel(stop)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the data folder {data_dir}: {exc.strerror}") from None
    try:
        with FolderLock(data_dir):
            remove_stale_temps(data_dir)
            # Plan again under the lock: another run may have finished in the meantime.
            plan = plan_downloads(data_dir, only=args.only, force=args.force)
            fetcher = Fetcher(
                data_dir,
                endpoint=endpoint,
                credentials=creds,
                emitter=emit,
                retries=args.retries,
                timeout=args.timeout,
                keep_archive=args.keep_archive,
                force=args.force,
                redactor=redactor,
                should_stop=stop.is_set,
            )
            fetcher.run(plan)
    finally:
        creds.clear()
    _emit_manual(data_dir, emit)
    return data_dir


def _watch_stdin_for_cancel(stop: threading.Event) -> None:
    """After the credentials line, a line ``cancel`` on stdin stops the run cleanly (the add-on's
    Cancel on every platform; SIGTERM works too, except on Windows where it is a hard kill).
    End of input does not cancel, so that ``echo '{...}' | pixie-backend fetch-data
    --credentials-stdin`` works."""

    def watch() -> None:
        try:
            for line in sys.stdin:
                if line.strip().lower() == "cancel":
                    stop.set()
                    return
        except (OSError, ValueError):
            return

    threading.Thread(target=watch, name="fetch-data-stdin", daemon=True).start()


def _raise_interrupt(signum, frame):  # SIGTERM (Blender's Cancel) behaves like Ctrl+C
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from ..doctor import check_assets, is_complete, report_dict
    from ..jobs.events import Emitter, Finished, ItemError

    json_mode = bool(args.json_progress)
    ui = None if json_mode else HumanUI(bars=not args.no_progress)
    sink = JsonUI() if json_mode else ui
    counts = {"ok": 0, "failed": 0}

    def count_and_show(ev) -> None:
        if ev.kind in ("item_done", "item_error"):
            counts["ok" if ev.kind == "item_done" else "failed"] += 1
        sink(ev)

    emit = Emitter("fetch-data", count_and_show)
    redactor = Redactor()
    log_filter = RedactingFilter(redactor)
    handlers = logging.getLogger().handlers
    for h in handlers:
        h.addFilter(log_filter)
    stop = threading.Event()
    previous_term = None
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
        previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)

    error: tuple[str, str, str | None, int] | None = None
    try:
        _fetch(args, emit, ui, redactor, stop)
    except FetchError as exc:
        error = (exc.kind, redactor(str(exc)), exc.file, exc.exit_code)
    except KeyboardInterrupt:
        error = (
            "cancelled",
            "Cancelled. Partial downloads are kept as <file>.part and resumed by the next run; "
            "no incomplete file was put under a final name.",
            None,
            130,
        )
    except Exception as exc:  # a bug: report it without leaking anything
        error = ("internal", redactor(f"{type(exc).__name__}: {exc}"), None, 1)
        if args.verbose:
            print(redactor("".join(traceback.format_exc())), file=sys.stderr)
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        for h in handlers:
            h.removeFilter(log_filter)

    if error is not None and error[2] and error[0] != "credentials":  # refused logins were reported per file
        emit(ItemError, item=error[2], index=None, code=error[0], message=error[1])
    data_dir = getattr(args, "_resolved_data_dir", None) or args.data_dir
    folder, rows = check_assets(data_dir)
    doc = report_dict(folder, rows)
    report = {"complete": doc["complete"], "texture_complete": doc["texture_complete"], "text": doc["text"],
              "doctor": doc}
    if error is not None:
        code = error[3]
        status = "cancelled" if code == 130 else "failed"
    else:
        code = 0 if is_complete(rows, Need.REQUIRED) else 1
        status = "ok" if code == 0 else "partial"
    emit(Finished, status=status, exit_code=code, counts=dict(counts), seconds=round(time.monotonic() - emit.t0, 3),
         error={"code": error[0], "message": error[1]} if error is not None else None,
         details={"report": report})
    return code


__all__ = ["register", "run", "get_credentials", "CredentialsError"]
