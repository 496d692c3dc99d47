"""Download the licensed model files into the data folder (the library behind
``pixie-backend fetch-data``).

The files come from the MPI download server with the user's own accounts, the way upstream
PIXIE's ``fetch_model.sh`` gets them: for each file a ``POST`` of ``username=…&password=…``
(form-encoded) to ``<endpoint>?domain=<domain>&sfile=<file>&resume=1``. SMPL-X and PIXIE are
separate sites with separate accounts (``ACCOUNTS``).

Guarantees:

* **No partial file under a final name.** A download is written to ``<file>.part`` in the data
  folder and renamed (``os.replace``) onto ``<file>`` only after it is complete and verified. A run
  that is interrupted (dropped connection, Ctrl+C, full disk, killed) leaves the ``.part`` file,
  and the next run resumes it with an HTTP ``Range`` request. Members of ``utilities.zip`` are
  written to hidden temporary files (``.pixie-fetch-*.tmp``) in the same folder, then renamed.
* **Verification.** The byte count against ``Content-Length``/``Content-Range``; the size and
  SHA-256 from the registry where known (``assets.DOWNLOAD_FILES``, ``AssetSpec.sha256``); the
  file signature (``.npz``/``.zip`` must be zip files, ``.tar`` a zip, pickle or tar file); the CRC
  of every member of a zip-format download.
* **Safe unpacking of ``utilities.zip``.** An archive with an absolute path, a drive letter, a
  ``..`` component, a symbolic link, a special file, an encrypted or a huge member is refused
  as a whole, before anything is written. Only the expected member names are unpacked (at the
  archive root or inside one top-level folder), each into the data folder itself; other members
  are ignored and listed. An existing file is never overwritten unless ``force`` is set.
* **Credentials are never stored or logged.** They live in :class:`Credentials` objects whose
  ``repr`` hides the password, are sent only in the body of the POST (never in a URL), and any
  text that came from the server is passed through a :class:`Redactor` before it is shown. TLS
  verification is always on.
* **One run per folder.** A lock file (``.pixie-fetch.lock``) keeps a second run (terminal and
  Blender at once) from writing the same ``.part`` files.

How a wrong login is recognised (the server's answers are not documented; this is what it has
been seen to do, plus what a web application typically does):

* HTTP **401**: wrong username or password (the server answers ``401 Unauthorized`` /
  "Username/Password Authentication Failed", as seen in YuliangXiu/ECON#117);
* HTTP **403**: access denied: the licence was not accepted on the site for this file, or the
  server is limiting the rate (yufu-wang/PromptHMR#6 "access denied");
* a **web page instead of the file**, directly or after a redirect (vchoutas/smplx#95: a redirect
  to ``…/static_pages/no_permission``): a ``text/html``/``xhtml`` content type; a body that starts
  like HTML, XML or JSON; or a short body (under 64 KiB) of mostly printable text where a binary
  file is expected. The message quotes a redacted excerpt of the page.

A body that is binary but does not carry the expected file signature is reported as a damaged
download (:class:`VerificationError`), not as a login problem.

The endpoint can be replaced for tests (``PIXIE_DOWNLOAD_ENDPOINT`` or ``endpoint=``). A replaced
endpoint is labelled ``TEST ENDPOINT <url> (NOT the MPI download server…)`` in every message and
event, plain ``http`` is accepted only for loopback addresses, and proxies are bypassed for it.
"""

from __future__ import annotations

import errno
import hashlib
import html
import http.client
import ipaddress
import logging
import os
import re
import shutil
import socket
import ssl
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tenacity

from . import __version__
from .assets import (
    ASSETS,
    DOWNLOAD_ENDPOINT,
    DOWNLOAD_FILES,
    PIXIE_LICENCE,
    PIXIE_SITE,
    SMPLX_LICENCE,
    SMPLX_SITE,
    UTILITIES_OTHER_MEMBERS,
    AssetSpec,
    DownloadSpec,
    sha256_file,
)
from .atomic import atomic_write, remove_temps
from .locking import FolderBusy, folder_lock

log = logging.getLogger(__name__)

#: Environment variable that replaces the download endpoint (tests only).
ENV_ENDPOINT = "PIXIE_DOWNLOAD_ENDPOINT"

CHUNK = 256 * 1024
PART_SUFFIX = ".part"
TEMP_PREFIX = ".pixie-fetch-"
LOCK_NAME = ".pixie-fetch.lock"
#: At most this much of an error page is read (and a "short" text body is one below it).
ERROR_PAGE_LIMIT = 64 * 1024
#: Largest archive member we unpack (the real ones are a few MB); larger ones are refused.
MAX_MEMBER_SIZE = 4 << 30
#: Free space kept on the disk beyond what a download needs.
DISK_MARGIN = 1 << 20
USER_AGENT = f"pixie-backend/{__version__} (pixie-blender fetch-data; Python urllib)"

#: Receives the protocol's typed events (:mod:`pixie_backend.jobs.events`).
EventSink = Callable[[Any], None]


# --------------------------------------------------------------------------------------------------
# Errors


class FetchError(Exception):
    """A download problem with a message that says what to do. Never contains a password."""

    kind = "error"
    exit_code = 1

    def __init__(self, message: str, *, file: str | None = None, retryable: bool = False):
        super().__init__(message)
        self.file = file
        self.retryable = retryable


class UsageError(FetchError):
    """Bad options, missing credentials, unusable data folder."""

    kind = "usage"
    exit_code = 2


class CredentialsError(FetchError):
    """The server did not accept the username/password, or refused access to the file."""

    kind = "credentials"
    exit_code = 3


class NetworkError(FetchError):
    """No network, name resolution failed, connection refused/reset/timed out or dropped."""

    kind = "network"
    exit_code = 4


class DiskFullError(FetchError):
    """Not enough free space in the data folder (``ENOSPC``, or too little free before starting)."""

    kind = "disk_full"
    exit_code = 5


class VerificationError(FetchError):
    """A downloaded or unpacked file failed a size, checksum or signature check."""

    kind = "verification"
    exit_code = 6


class CorruptArchiveError(VerificationError):
    """``utilities.zip`` (or another zip-format file) is damaged."""

    kind = "corrupt_archive"


class UnsafeArchiveError(VerificationError):
    """The archive has an entry that could write outside the data folder (or is otherwise unsafe)."""

    kind = "unsafe_archive"


class ServerError(FetchError):
    """An HTTP answer we cannot use (404, 5xx, an unexpected status or resume offset)."""

    kind = "server"
    exit_code = 7


class BusyError(FetchError):
    """Another ``fetch-data`` holds the data folder's lock."""

    kind = "busy"
    exit_code = 8


class _Restart(Exception):
    """Internal: throw the partial download away and start again from byte 0."""


# --------------------------------------------------------------------------------------------------
# Accounts, credentials, redaction


@dataclass(frozen=True)
class Account:
    """One MPI site account. ``key`` equals the server's ``domain`` parameter."""

    key: str
    label: str
    site: str
    licence_url: str
    env_username: str
    env_password: str


ACCOUNTS: dict[str, Account] = {
    "smplx": Account(
        "smplx", "SMPL-X", SMPLX_SITE, SMPLX_LICENCE, "PIXIE_SMPLX_USERNAME", "PIXIE_SMPLX_PASSWORD"
    ),
    "pixie": Account(
        "pixie", "PIXIE", PIXIE_SITE, PIXIE_LICENCE, "PIXIE_PIXIE_USERNAME", "PIXIE_PIXIE_PASSWORD"
    ),
}


def account_for(domain: str) -> Account:
    try:
        return ACCOUNTS[domain]
    except KeyError:
        raise UsageError(f"no account is known for download domain {domain!r}") from None


class Credentials:
    """A username and password, held only in memory. ``repr``/``str`` never show the password."""

    __slots__ = ("username", "password")

    def __init__(self, username: str, password: str):
        self.username = username
        self.password = password

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"

    __str__ = __repr__

    def __reduce__(self):  # no pickling into caches or logs
        raise TypeError("Credentials cannot be pickled")

    def form_body(self) -> bytes:
        """``username=…&password=…``, percent-encoded like upstream's ``urle`` (space as %20)."""
        return urllib.parse.urlencode(
            {"username": self.username, "password": self.password}, quote_via=urllib.parse.quote
        ).encode("ascii")

    def secrets(self) -> list[str]:
        """The password in every form it could be echoed in."""
        p = self.password
        return [
            s for s in {p, urllib.parse.quote(p, safe=""), urllib.parse.quote_plus(p), html.escape(p)} if s
        ]


class Redactor:
    """Replaces known secrets in any text by ``***`` (server pages, error messages, log lines)."""

    #: Shorter secrets are not replaced (that would mangle every message); they are still never
    #: printed by this module.
    MIN_LENGTH = 3

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        self._secrets.update(s for s in secrets if s and len(s) >= self.MIN_LENGTH)

    def add_credentials(self, creds: Mapping[str, Credentials]) -> None:
        for c in creds.values():
            self.add(*c.secrets())

    def __call__(self, text: str) -> str:
        for s in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(s, "***")
        return text


class RedactingFilter(logging.Filter):
    """Logging filter that passes every record through a :class:`Redactor`."""

    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = self.redactor(msg)
        if clean != msg:
            record.msg, record.args = clean, ()
        return True


# --------------------------------------------------------------------------------------------------
# Endpoint


@dataclass(frozen=True)
class Endpoint:
    """Where files are downloaded from; ``official`` is False for a test replacement."""

    url: str
    official: bool
    origin: str

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or ""

    @property
    def loopback(self) -> bool:
        return _is_loopback(self.host)

    @property
    def label(self) -> str:
        if self.official:
            return f"{self.host} (the official MPI download server)"
        return f"TEST ENDPOINT {self.url} (NOT the MPI download server; set by {self.origin})"

    @property
    def short_label(self) -> str:
        return self.host if self.official else f"TEST ENDPOINT {self.url}"

    def file_url(self, domain: str, sfile: str) -> str:
        query = urllib.parse.urlencode({"domain": domain, "sfile": sfile, "resume": "1"})
        return f"{self.url}?{query}"


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_endpoint(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Endpoint:
    """The official endpoint, or a replacement from ``explicit`` / ``$PIXIE_DOWNLOAD_ENDPOINT``.

    A replacement must be ``https``, or ``http`` on a loopback address (credentials are sent in
    the request body, so they must not cross a network unencrypted).
    """
    environ = os.environ if environ is None else environ
    if explicit:
        url, origin = explicit, "--endpoint"
    elif environ.get(ENV_ENDPOINT):
        url, origin = environ[ENV_ENDPOINT], f"${ENV_ENDPOINT}"
    else:
        return Endpoint(DOWNLOAD_ENDPOINT, True, "built-in")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{origin}: {url!r} is not an http(s) URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise UsageError(f"{origin}: give the endpoint without query, fragment or user info")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(
            f"{origin}: plain http is only allowed for a loopback test server (127.0.0.1, ::1, "
            "localhost); anything else must use https"
        )
    return Endpoint(url, url == DOWNLOAD_ENDPOINT, origin)


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to plain http."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if req.full_url.startswith("https:") and not newurl.startswith("https:"):
            raise ServerError(f"the server redirected to an unencrypted address ({newurl}); refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def build_opener(endpoint: Endpoint) -> urllib.request.OpenerDirector:
    """urllib opener with certificate verification on (system store plus certifi's, if installed)."""
    ctx = ssl.create_default_context()
    try:
        import certifi  # optional: helps python.org builds on macOS that lack a CA store

        ctx.load_verify_locations(certifi.where())
    except (ImportError, OSError):
        pass
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.HTTPSHandler(context=ctx),
        _NoDowngradeRedirect(),
    ]
    if endpoint.loopback:
        handlers.append(urllib.request.ProxyHandler({}))  # a proxy must not see loopback traffic
    return urllib.request.build_opener(*handlers)


# --------------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class PlannedDownload:
    """One server file to get, the account it needs and the registry entries it provides."""

    spec: DownloadSpec
    account: Account
    provides: tuple[AssetSpec, ...]
    #: The archive is already in the data folder: unpack it, no download and no login needed.
    reuse_archive: bool = False

    @property
    def file(self) -> str:
        return self.spec.sfile

    @property
    def is_archive(self) -> bool:
        return any(a.archive == self.spec.sfile for a in self.provides)

    def archive_members(self) -> dict[str, AssetSpec | None]:
        """Member names to unpack: the registry's (with their spec) and the known extras."""
        members: dict[str, AssetSpec | None] = {a.filename: a for a in self.provides}
        for name in UTILITIES_OTHER_MEMBERS:
            members.setdefault(name, None)
        return members


def plan_downloads(
    data_dir: Path,
    *,
    only: Iterable[str] | None = None,
    force: bool = False,
    files: Iterable[DownloadSpec] = DOWNLOAD_FILES,
) -> list[PlannedDownload]:
    """The server files that provide a missing asset (all selected ones with ``force``).

    ``only`` restricts to account keys (``"smplx"``, ``"pixie"``).
    """
    only_set = set(only) if only else None
    if only_set:
        unknown = only_set - set(ACCOUNTS)
        if unknown:
            raise UsageError(f"unknown account(s) {sorted(unknown)}; choose from {sorted(ACCOUNTS)}")
    plan = []
    for spec in files:
        if only_set is not None and spec.domain not in only_set:
            continue
        provides = tuple(a for a in ASSETS if a.download == (spec.domain, spec.sfile))
        if not provides:
            continue
        if force or any(not (data_dir / a.filename).is_file() for a in provides):
            is_archive = any(a.archive == spec.sfile for a in provides)
            reuse = is_archive and not force and (data_dir / spec.sfile).is_file()
            plan.append(PlannedDownload(spec, account_for(spec.domain), provides, reuse))
    return plan


def accounts_needed(plan: Iterable[PlannedDownload]) -> list[Account]:
    seen: dict[str, Account] = {}
    for item in plan:
        if not item.reuse_archive:
            seen.setdefault(item.account.key, item.account)
    return list(seen.values())


def credentials_from_env(
    accounts: Iterable[Account], environ: Mapping[str, str] | None = None
) -> dict[str, Credentials]:
    """Credentials from ``PIXIE_<ACCOUNT>_USERNAME`` / ``PIXIE_<ACCOUNT>_PASSWORD``."""
    environ = os.environ if environ is None else environ
    creds, missing = {}, []
    for acc in accounts:
        user, pw = environ.get(acc.env_username, ""), environ.get(acc.env_password, "")
        if not user:
            missing.append(acc.env_username)
        if not pw:
            missing.append(acc.env_password)
        if user and pw:
            creds[acc.key] = Credentials(user.strip(), pw)
    if missing:
        raise UsageError("non-interactive mode needs these environment variables: " + ", ".join(missing))
    return creds


def credentials_from_json(document: Any, accounts: Iterable[Account]) -> dict[str, Credentials]:
    """Credentials from a decoded ``{"smplx": {"username": …, "password": …}, "pixie": {…}}``."""
    if not isinstance(document, dict):
        raise UsageError("the credentials line must be a JSON object")
    creds, missing = {}, []
    for acc in accounts:
        entry = document.get(acc.key)
        user = entry.get("username") if isinstance(entry, dict) else None
        pw = entry.get("password") if isinstance(entry, dict) else None
        if not isinstance(user, str) or not user.strip() or not isinstance(pw, str) or not pw:
            missing.append(acc.label)
            continue
        creds[acc.key] = Credentials(user.strip(), pw)
    if missing:
        raise UsageError("no username/password given for the " + " and ".join(missing) + " account")
    return creds


# --------------------------------------------------------------------------------------------------
# Helpers: sizes, disk, signatures, error pages


def human_size(n: int | None) -> str:
    if n is None:
        return "unknown size"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def is_disk_full(exc: BaseException) -> bool:
    """True for "no space left" and "quota exceeded" (also Windows' ERROR_DISK_FULL)."""
    if not isinstance(exc, OSError):
        return False
    codes = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
    return exc.errno in codes or getattr(exc, "winerror", None) in (39, 112)


def _disk_full_message(path: Path, need: int | None = None) -> str:
    try:
        free = shutil.disk_usage(path if path.is_dir() else path.parent).free
        free_txt = f"{human_size(free)} free"
    except OSError:
        free_txt = "free space unknown"
    need_txt = f" (needs {human_size(need)} more)" if need else ""
    return (
        f"the disk holding {path} is full{need_txt}, {free_txt}. Free some space (or choose "
        "another folder with --data-dir) and run again; the partial download is kept and resumed."
    )


def check_free_space(folder: Path, need: int, what: str) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if need + DISK_MARGIN > free:
        raise DiskFullError(
            f"not enough free space for {what}: it needs {human_size(need)}, and the disk holding "
            f"{folder} has {human_size(free)} free. Free some space or choose another folder with "
            "--data-dir, then run again.",
            file=what,
        )


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def signature_ok(filename: str, head: bytes) -> bool | None:
    """Whether ``head`` (the first bytes) fits the file type; None where we cannot tell."""
    suffix = Path(filename).suffix.lower()
    if suffix in (".zip", ".npz"):
        return head.startswith(ZIP_MAGIC)
    if suffix == ".tar":  # torch.save: zip (>= 1.6) or legacy pickle; or a real tar
        return head.startswith(ZIP_MAGIC) or head[:1] == b"\x80" or head[257:262] == b"ustar"
    return None


def _is_zip_format(filename: str, head: bytes) -> bool:
    return Path(filename).suffix.lower() in (".zip", ".npz") or head.startswith(ZIP_MAGIC)


_PAGE_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"<!--", b"{", b"[")
_PAGE_TYPES = ("text/html", "application/xhtml+xml")
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/problem+json")


def looks_like_error_page(head: bytes, content_type: str, body_length: int | None) -> bool:
    """True if the answer is a web page or a short text message rather than a binary file."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in _PAGE_TYPES:
        return True
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if start.startswith(ZIP_MAGIC[0].lower()):
        return False
    if start.startswith(_PAGE_STARTS[:5]) or b"<html" in start[:2048]:
        return True
    sample = head[:4096]
    if not sample:
        return body_length == 0
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample) / len(sample)
    short = body_length is not None and body_length < ERROR_PAGE_LIMIT
    if printable > 0.95 and (short or ctype.startswith(_TEXT_TYPES) or start.startswith(b"{")):
        return True
    return False


def page_excerpt(body: bytes, redact: Callable[[str], str], limit: int = 300) -> str:
    """Readable text of an error page: tags and scripts removed, whitespace collapsed, redacted."""
    text = body.decode("utf-8", errors="replace")
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?s)<[^>]*>", " ", text)
    text = html.unescape(text)
    text = re.sub(r"\s+", " ", text).strip()
    text = redact(text)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``bytes a-b/N`` → (a, b, N); ``bytes */N`` → (None, None, N); anything else → Nones."""
    if not value:
        return None, None, None
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value)
    if not m:
        return None, None, None
    a, b, n = m.groups()
    return (
        int(a) if a is not None else None,
        int(b) if b is not None else None,
        int(n) if n not in (None, "*") else None,
    )


def _int_header(headers, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _open_binary(path: Path, mode: str):
    """Opens a download/unpack target (a seam for tests that simulate a full disk)."""
    return open(path, mode)  # noqa: SIM115 - closed by the caller


def _fsync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def _read_head(path: Path, n: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


# --------------------------------------------------------------------------------------------------
# Archive safety and unpacking


def unsafe_member_reason(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry must not be unpacked, or None if it is harmless."""
    name = info.filename
    if "\x00" in name:
        return "NUL byte in the name"
    norm = name.replace("\\", "/")
    if norm.startswith("/"):
        return "absolute path"
    if re.match(r"^[A-Za-z]:", norm):
        return "drive letter"
    if ".." in norm.split("/"):
        return "parent-folder (..) component"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return "special file"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    if info.file_size > MAX_MEMBER_SIZE:
        return f"implausibly large ({human_size(info.file_size)})"
    return None


def check_archive_safe(zf: zipfile.ZipFile, archive_name: str) -> None:
    bad = [(i.filename, r) for i in zf.infolist() if (r := unsafe_member_reason(i))]
    if bad:
        shown = "; ".join(f"{n!r}: {r}" for n, r in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UnsafeArchiveError(
            f"{archive_name} has entries that could write outside the data folder or are unsafe "
            f"({shown}{more}). Nothing was unpacked. The official archive never contains such "
            "entries: the file is not the one from the PIXIE site.",
            file=archive_name,
        )


def _member_name(info: zipfile.ZipInfo) -> str | None:
    """Name an entry is unpacked under: at the root or inside one top-level folder."""
    if info.is_dir():
        return None
    parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2 and parts[0] != "__MACOSX":
        return parts[1]
    return None


@dataclass
class ExtractResult:
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  #: already present, left untouched
    ignored: list[str] = field(default_factory=list)  #: entries that are not expected members
    missing: list[str] = field(default_factory=list)  #: registry members not in the archive


def extract_archive(
    archive: Path,
    data_dir: Path,
    members: Mapping[str, AssetSpec | None],
    *,
    force: bool = False,
) -> ExtractResult:
    """Unpack the expected ``members`` of ``archive`` into ``data_dir`` (see module docstring)."""
    name = archive.name
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise CorruptArchiveError(f"{name} is not a readable zip archive ({exc}).", file=name) from None
    result = ExtractResult()
    with zf:
        check_archive_safe(zf, name)
        chosen: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            target = _member_name(info)
            if target is None:
                if not info.is_dir():
                    result.ignored.append(info.filename)
                continue
            if target not in members:
                result.ignored.append(info.filename)
                continue
            if target in chosen:
                raise CorruptArchiveError(f"{name} contains {target} twice; not unpacked.", file=name)
            chosen[target] = info
        result.missing = [m for m, spec in members.items() if spec is not None and m not in chosen]
        todo = [(t, i) for t, i in chosen.items() if force or not os.path.lexists(data_dir / t)]
        result.kept = [t for t in chosen if (t, chosen[t]) not in todo]
        check_free_space(data_dir, sum(i.file_size for _, i in todo), f"unpacking {name}")
        for target, info in todo:
            _extract_member(zf, info, data_dir / target, members.get(target), name)
            result.written.append(target)
    return result


def _extract_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, spec: AssetSpec | None, archive: str
) -> None:
    if dest.is_dir() and not dest.is_symlink():
        raise UsageError(f"cannot unpack {dest.name}: a folder of that name is in the way ({dest})")
    try:
        with atomic_write(dest, prefix=f"{TEMP_PREFIX}{dest.name}.") as out, zf.open(info) as src:
            h, n = hashlib.sha256(), 0
            while block := src.read(CHUNK):
                out.write(block)
                h.update(block)
                n += len(block)
            # checked before the rename: a bad member never appears under its final name
            if n != info.file_size:
                raise CorruptArchiveError(
                    f"{archive}: {info.filename} unpacked to {n} bytes instead of {info.file_size}.",
                    file=archive,
                )
            if spec is not None and spec.sha256 and h.hexdigest() != spec.sha256.lower():
                raise VerificationError(
                    f"{dest.name} from {archive} has SHA-256 {h.hexdigest()}, expected {spec.sha256}.",
                    file=dest.name,
                )
            if spec is not None and spec.size is not None and n != spec.size:
                raise VerificationError(
                    f"{dest.name} from {archive} has {n} bytes, expected {spec.size}.", file=dest.name
                )
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise CorruptArchiveError(f"{archive} is damaged ({info.filename}: {exc}).", file=archive) from None
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(_disk_full_message(dest.parent), file=dest.name) from None
        raise


def verify_zip(path: Path, display_name: str) -> None:
    """Open a zip-format file and check every member's CRC (and entry safety for archives)."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise CorruptArchiveError(f"{display_name} is damaged: {exc}.", file=display_name) from None
    if bad is not None:
        raise CorruptArchiveError(f"{display_name} is damaged (bad CRC in {bad}).", file=display_name)


# --------------------------------------------------------------------------------------------------
# Folder lock


class FolderLock:
    """Exclusive, non-blocking lock on ``<folder>/.pixie-fetch.lock`` (the ``filelock`` package; the
    OS releases it when the process ends, however it ends)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_NAME
        self._lock = None

    def __enter__(self) -> FolderLock:
        try:
            self._lock = folder_lock(self.path, timeout=0)
            self._lock.__enter__()
        except FolderBusy:
            raise BusyError(
                f"another `pixie-backend fetch-data` (terminal or Blender) is writing to "
                f"{self.path.parent}; wait until it has finished."
            ) from None
        except OSError as exc:
            raise UsageError(f"cannot write in the data folder {self.path.parent}: {exc.strerror}") from None
        return self

    def __exit__(self, *exc) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.__exit__(*exc)


def remove_stale_temps(folder: Path) -> list[str]:
    """Deletes leftover ``.pixie-fetch-*.tmp`` files of a killed run (call with the lock held)."""
    return remove_temps(folder, TEMP_PREFIX)


# --------------------------------------------------------------------------------------------------
# The downloader


@dataclass
class FetchSummary:
    downloaded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  #: archive already in the folder
    extracted: list[ExtractResult] = field(default_factory=list)
    checksums: dict[str, str] = field(default_factory=dict)


class Fetcher:
    """Downloads, verifies and unpacks planned files into ``data_dir``.

    Args:
        data_dir: the data folder (created if missing).
        endpoint: where to download from (:func:`resolve_endpoint`).
        credentials: per account key (``"smplx"``, ``"pixie"``).
        on_event: receives progress events (dicts with an ``"event"`` key; see the command).
        retries: automatic retries (with resume) after a network or 5xx error, per file.
        timeout: socket timeout in seconds (connect and each read).
        backoff: first retry delay in seconds (doubling, at most 30 s).
        keep_archive: keep ``utilities.zip`` after unpacking it.
        force: download again and overwrite present files.
        should_stop: polled between chunks; when it returns True the run stops with KeyboardInterrupt.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        endpoint: Endpoint,
        credentials: Mapping[str, Credentials],
        on_event: EventSink | None = None,
        retries: int = 3,
        timeout: float = 60.0,
        backoff: float = 1.0,
        keep_archive: bool = False,
        force: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        opener: urllib.request.OpenerDirector | None = None,
        redactor: Redactor | None = None,
        should_stop: Callable[[], bool] | None = None,
        emitter=None,
    ):
        from .jobs.events import Emitter

        self.data_dir = Path(data_dir)
        self.endpoint = endpoint
        self.credentials = dict(credentials)
        self.emit = emitter or Emitter("fetch-data", on_event or (lambda ev: None))
        self.retries = max(0, int(retries))
        self.timeout = timeout
        self.backoff = backoff
        self.keep_archive = keep_archive
        self.force = force
        self.sleep = sleep
        self.opener = opener or build_opener(endpoint)
        self.redact = redactor or Redactor()
        self.redact.add_credentials(self.credentials)
        self.should_stop = should_stop or (lambda: False)

    # -- events

    def _emit(self, kind: str, **fields: Any) -> None:
        from .jobs import events as E

        self.emit({"progress": E.Progress, "done": E.ItemDone, "error": E.ItemError, "message": E.Message}[kind],
                  **fields)

    # -- top level

    def run(self, plan: list[PlannedDownload]) -> FetchSummary:
        summary = FetchSummary()
        refused: dict[str, CredentialsError] = {}
        for index, item in enumerate(plan, 1):
            final = self.data_dir / item.file
            if item.account.key in refused:
                self._emit("error", item=item.file, index=index - 1, code="credentials",
                           message=f"{item.file}: skipped, the {item.account.label} login failed")
                continue
            try:
                self._get_one(item, final, index, len(plan), summary)
            except CredentialsError as exc:
                # The other account's files are still worth getting; the error is raised at the end.
                refused[item.account.key] = exc
                self._emit("error", item=item.file, index=index - 1, code="credentials",
                           message=self.redact(str(exc)))
                if any(later.account.key not in refused for later in plan[index:]):
                    self._emit(
                        "message",
                        level="warning",
                        item=item.file,
                        text=f"the {item.account.label} login failed for {item.file}; "
                        "continuing with the other account's files",
                    )
        if refused:
            first = next(iter(refused.values()))
            if len(refused) > 1:
                raise CredentialsError(
                    " ".join(self.redact(str(e)) for e in refused.values()), file=first.file
                )
            raise first
        return summary

    def _get_one(
        self, item: PlannedDownload, final: Path, index: int, count: int, summary: FetchSummary
    ) -> None:
        details: dict[str, Any] = {}
        if item.reuse_archive:
            self._emit("progress", stage="extract", item=item.file, total=None,
                       text=f"{item.file} is already in the data folder; unpacking it")
            summary.reused.append(item.file)
            self._verify_existing_archive(item, final)
            details["reused"] = True
        else:
            if item.account.key not in self.credentials:
                raise UsageError(f"no credentials for the {item.account.label} account ({item.file})")
            self._download(item, index, count, summary)
            details.update(size=final.stat().st_size, sha256=summary.checksums[item.file])
        if item.is_archive:
            result = self._unpack(item, final)
            summary.extracted.append(result)
            details["extracted"] = {"written": result.written, "kept": result.kept, "ignored": result.ignored,
                                    "missing": result.missing}
            # Only an archive this run downloaded is removed, and only if it held everything.
            if not item.reuse_archive and not self.keep_archive and not result.missing:
                final.unlink()
        self._emit("done", item=item.file, index=index - 1, details=details)

    def _verify_existing_archive(self, item: PlannedDownload, final: Path) -> None:
        try:
            verify_zip(final, item.file)
        except CorruptArchiveError as exc:
            raise CorruptArchiveError(
                f"{exc} It was already in the data folder ({final}); delete it and run again to "
                "download a fresh copy.",
                file=item.file,
            ) from None

    def _unpack(self, item: PlannedDownload, final: Path) -> ExtractResult:
        members = item.archive_members()
        result = extract_archive(final, self.data_dir, members, force=self.force)
        written = ", ".join(result.written) or "nothing new"
        self._emit("progress", stage="extract", item=item.file, total=None,
                   text=f"unpacked from {item.file}: {written}",
                   details={"written": result.written, "kept": result.kept, "ignored": result.ignored,
                            "missing": result.missing})
        if result.missing:
            self._emit(
                "message",
                level="warning",
                item=item.file,
                text=f"{item.file} does not contain {', '.join(result.missing)}; "
                "it was kept in the data folder.",
            )
        return result

    # -- one download with retries

    def _download(self, item: PlannedDownload, index: int, count: int, summary: FetchSummary) -> None:
        final = self.data_dir / item.file
        part = self.data_dir / (item.file + PART_SUFFIX)
        if self.force:  # a fresh copy, not the continuation of an old partial download
            part.unlink(missing_ok=True)
        restarted = [False]

        def attempt() -> None:
            while True:
                try:
                    self._download_once(item, part, index, count)
                    return
                except _Restart:
                    if restarted[0]:
                        raise ServerError(
                            f"the server did not resume {item.file} correctly twice; try again later.",
                            file=item.file,
                        ) from None
                    restarted[0] = True
                    part.unlink(missing_ok=True)

        def announce(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception()
            delay = state.next_action.sleep
            self._emit("message", level="warning", item=item.file,
                       text=f"{self.redact(str(exc))} Retrying in {delay:.0f} s "
                            f"(attempt {state.attempt_number} of {self.retries}).",
                       details={"retry": state.attempt_number, "retries": self.retries, "delay": delay})

        # retryable network and server errors: up to `retries` more tries, 1, 2, 4 ... s apart (at most 30 s)
        tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential(multiplier=self.backoff, max=30.0),
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, FetchError) and e.retryable),
            before_sleep=announce,
            sleep=self.sleep,
            reraise=True,
        )(attempt)
        digest = self._verify_part(item, part)
        os.replace(part, final)
        summary.downloaded.append(item.file)
        summary.checksums[item.file] = digest
        self._emit("message", level="info", item=item.file,
                   text=f"saved {item.file} ({human_size(final.stat().st_size)}), SHA-256 {digest}")

    def _verify_part(self, item: PlannedDownload, part: Path) -> str:
        """Size, checksum and format of a complete ``.part``; a failing one is deleted."""
        spec = item.spec
        try:
            digest, size = sha256_file(part), part.stat().st_size
            if spec.size is not None and size != spec.size:
                raise VerificationError(
                    f"{item.file} has {size} bytes, but the registry expects {spec.size}.",
                    file=item.file,
                )
            if spec.sha256 and digest != spec.sha256.lower():
                raise VerificationError(
                    f"{item.file} has SHA-256 {digest}, but the registry expects {spec.sha256}.",
                    file=item.file,
                )
            head = _read_head(part, 4096)
            if signature_ok(item.file, head) is False:
                raise VerificationError(
                    f"{item.file} does not look like a {Path(item.file).suffix} file (it starts "
                    f"with {head[:8]!r}).",
                    file=item.file,
                )
            if _is_zip_format(item.file, head):
                verify_zip(part, item.file)
                if item.is_archive:
                    with zipfile.ZipFile(part) as zf:
                        check_archive_safe(zf, item.file)
        except VerificationError as exc:
            part.unlink(missing_ok=True)
            raise type(exc)(
                f"{exc} The download was deleted; run again to download it afresh (if this "
                "repeats, the file on the server differs from the one this program expects).",
                file=item.file,
            ) from None
        return digest

    # -- one HTTP exchange

    def _download_once(self, item: PlannedDownload, part: Path, index: int, count: int) -> None:
        creds = self.credentials[item.account.key]
        url = self.endpoint.file_url(item.spec.domain, item.file)
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Accept": "*/*"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        log.debug("POST %s%s", url, f" (Range: bytes={offset}-)" if offset else "")
        request = urllib.request.Request(url, data=creds.form_body(), headers=headers, method="POST")
        try:
            response = self.opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                self._http_error(exc, item, part, offset)
            return  # 416 on a complete part
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise self._network_error(exc, item, offset) from None
        with response:
            self._receive(response, item, part, offset, index, count)

    def _http_error(
        self, exc: urllib.error.HTTPError, item: PlannedDownload, part: Path, offset: int
    ) -> None:
        code = exc.code
        acc = item.account
        if code == 416 and offset:
            _, _, total = _parse_content_range(exc.headers.get("Content-Range"))
            if total is not None and total == offset:
                self._emit("message", level="info", item=item.file,
                           text=f"{item.file}: the partial download was complete")
                return
            raise _Restart
        if code == 401:
            raise CredentialsError(
                f"The download server did not accept the {acc.label} username or password "
                f"(HTTP 401) for {item.file}. Use the e-mail address and password of your account at "
                f"{acc.site} (each MPI site has its own account: a password set on another MPI site "
                "only works if you chose the same one there). Check them by logging in on the site.",
                file=item.file,
            )
        if code == 403:
            raise CredentialsError(
                f"The download server refused access to {item.file} (HTTP 403). Log in at {acc.site}, "
                f"accept the licence ({acc.licence_url}) and open the site's Download page once; check "
                "your username and password. If you downloaded many times in a row, the server may be "
                "limiting the rate: try again later.",
                file=item.file,
            )
        if code == 404:
            raise ServerError(
                f"The download server does not offer {item.file} (HTTP 404) under domain "
                f"{item.spec.domain!r}; the file may have been renamed. Check the Download page of "
                f"{acc.site}, and tell the pixie-blender maintainers.",
                file=item.file,
            )
        if code == 429 or code >= 500:
            raise ServerError(
                f"The download server is busy or failing (HTTP {code}) for {item.file}; try again later.",
                file=item.file,
                retryable=True,
            )
        body = b""
        try:
            body = exc.read(ERROR_PAGE_LIMIT)
        except (OSError, http.client.HTTPException):
            pass
        excerpt = page_excerpt(body, self.redact) if body else ""
        raise ServerError(
            f"Unexpected answer from the download server for {item.file}: HTTP {code}"
            + (f" ({excerpt})" if excerpt else "")
            + ".",
            file=item.file,
        )

    def _network_error(self, exc: BaseException, item: PlannedDownload, offset: int) -> NetworkError:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        host = self.endpoint.host
        where = self.endpoint.label
        if isinstance(reason, ssl.SSLCertVerificationError):
            return NetworkError(
                f"The TLS certificate of {host} could not be verified ({reason.verify_message}). "
                "A proxy or antivirus that intercepts HTTPS, or a missing CA store, causes this; "
                "set SSL_CERT_FILE to your organisation's CA bundle. Verification is never turned off.",
                file=item.file,
            )
        if isinstance(reason, socket.gaierror):
            text = f"Cannot resolve {host}: no network connection, or DNS is not working."
            retry = False
        elif isinstance(reason, ConnectionRefusedError):
            text = f"Connection to {where} refused: the server is down or a firewall blocks it."
            retry = False
        elif isinstance(reason, (TimeoutError, socket.timeout)):
            text = f"Connection to {where} timed out after {self.timeout:.0f} s."
            retry = True
        elif isinstance(reason, (ConnectionError, http.client.HTTPException)):
            text = f"The connection to {where} was interrupted ({type(reason).__name__})."
            retry = True
        elif isinstance(reason, ssl.SSLError):
            text = f"TLS error talking to {where} ({reason.reason or reason})."
            retry = True
        elif isinstance(reason, OSError):
            text = f"Network error talking to {where}: {reason.strerror or reason}."
            retry = True
        else:
            text = f"Network error talking to {where}: {self.redact(str(reason))}."
            retry = True
        if offset:
            text += f" The partial download ({human_size(offset)}) is kept and will be resumed."
        return NetworkError(text + " Check your connection and run again.", file=item.file, retryable=retry)

    def _receive(
        self, response, item: PlannedDownload, part: Path, offset: int, index: int, count: int
    ) -> None:
        status = response.status
        ctype = response.headers.get("Content-Type") or ""
        length = _int_header(response.headers, "Content-Length")
        total: int | None
        if status == 206 and offset:
            start, _, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                if start == 0:
                    offset = 0
                else:
                    raise _Restart
            if total is None and length is not None:
                total = offset + length
        elif status in (200, 206):
            if offset:
                self._emit(
                    "message",
                    level="info",
                    text=f"{item.file}: the server cannot resume; downloading it from the start",
                )
                offset = 0
            total = length
            if status == 206:
                _, _, total = _parse_content_range(response.headers.get("Content-Range"))
        else:
            raise ServerError(f"Unexpected HTTP {status} for {item.file}.", file=item.file)
        expected_body = (total - offset) if total is not None else length

        try:
            head = response.read(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise self._network_error(exc, item, offset) from None
        if looks_like_error_page(head, ctype, expected_body):
            body = head
            try:
                body += response.read(max(0, ERROR_PAGE_LIMIT - len(head)))
            except (OSError, http.client.HTTPException):
                pass
            acc = item.account
            excerpt = page_excerpt(body, self.redact)
            final_url = response.geturl()
            redirected = final_url.split("?")[0] != self.endpoint.url
            raise CredentialsError(
                f"The download server answered with a web page or message instead of {item.file} "
                f"(HTTP {status}, "
                f"{ctype.split(';')[0] or 'no content type'}, {human_size(len(body))}"
                + (f", after a redirect to {final_url.split('?')[0]}" if redirected else "")
                + f"). Most likely the {acc.label} username or password is wrong, or the licence has "
                f"not been accepted at {acc.site} ({acc.licence_url})."
                + (f' The page says: "{excerpt}"' if excerpt else ""),
                file=item.file,
            )
        if offset == 0 and len(head) >= 8 and signature_ok(item.file, head) is False:
            raise VerificationError(
                f"The download server sent something that is not a {Path(item.file).suffix} file "
                f"for {item.file} (it starts with {head[:8]!r}); nothing was saved. Try again later.",
                file=item.file,
            )
        spec_size = item.spec.size
        if spec_size is not None and total is not None and total != spec_size:
            part.unlink(missing_ok=True)
            raise VerificationError(
                f"The server offers {item.file} with {total} bytes, but the registry expects "
                f"{spec_size}; nothing was kept.",
                file=item.file,
            )
        if expected_body:
            check_free_space(self.data_dir, expected_body, item.file)

        resume = f", resuming at {human_size(offset)}" if offset else ""
        self._emit("progress", stage="download", item=item.file, done=offset, total=total, unit="bytes",
                   text=f"[{index}/{count}] {item.file} ({human_size(total)}) from {self.endpoint.short_label}{resume}",
                   details={"start": True, "index": index, "count": count, "offset": offset,
                            "account": item.account.key, "source": self.endpoint.short_label})
        received = 0
        f = _open_binary(part, "ab" if offset else "wb")
        try:
            block = head
            while block:
                if self.should_stop():
                    raise KeyboardInterrupt
                try:
                    f.write(block)
                except OSError as exc:
                    if is_disk_full(exc):
                        raise DiskFullError(
                            _disk_full_message(part, (expected_body or 0) - received), file=item.file
                        ) from None
                    raise
                received += len(block)
                self._emit("progress", stage="download", item=item.file, done=offset + received, total=total,
                           unit="bytes", details={"index": index, "count": count})
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise self._network_error(exc, item, offset + received) from None
            try:
                _fsync(f)
            except OSError as exc:
                if is_disk_full(exc):
                    raise DiskFullError(_disk_full_message(part), file=item.file) from None
                raise
        finally:
            f.close()
        if expected_body is not None and received < expected_body:
            raise NetworkError(
                f"The connection dropped after {human_size(offset + received)} of "
                f"{human_size(total)} of {item.file}. The partial download is kept ({part.name}) "
                "and resumed when you run again.",
                file=item.file,
                retryable=True,
            )


# --------------------------------------------------------------------------------------------------
# Instructions for the files that are not downloaded here


def _quote_path(path: Path) -> str:
    s = str(path)
    if os.name == "nt":
        return f'"{s}"'
    import shlex

    return shlex.quote(s)


def manual_steps(spec: AssetSpec, data_dir: Path) -> list[str]:
    """Copyable commands (for this platform) that put a non-downloadable file in ``data_dir``."""
    dest = _quote_path(data_dir / spec.filename)
    curl = "curl.exe" if os.name == "nt" else "curl"
    copy = "copy" if os.name == "nt" else "cp"
    if spec.url and spec.url.startswith("https://github.com/"):  # a plain file in a public repository
        return [f"{curl} -L -o {dest} {spec.url}"]
    if spec.key == "deca_model":
        return ["pip install gdown", f"gdown 1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje -O {dest}"]
    if spec.key == "flame_albedo":
        # Between the clone and col_to_tex.py: model2017-1_bfm_nomouth.h5 into model/, and a
        # Python 3.8 environment (see the instructions text).
        src = Path("output", "FLAME_albedo_from_BFM.npz")
        return [
            "git clone https://github.com/TimoBolkart/BFM_to_FLAME",
            "cd BFM_to_FLAME",
            "pip install numpy==1.19.4 h5py==3.1.0 chumpy==0.70 opencv-python==4.4.0.46",
            "python col_to_tex.py",
            f"{copy} {_quote_path(src)} {dest}",
        ]
    return []
