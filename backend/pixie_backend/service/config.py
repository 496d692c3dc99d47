"""The service's settings: one frozen dataclass, filled by ``pixie-backend serve``'s arguments."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import PixieConfig

#: Hosts that count as this machine: the service may bind them without ``--remote``.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: A token a user sets for remote mode must be at least this long.
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Limits:
    """What one request and the queue may hold; larger requests get a JSON error with a stable code."""

    max_upload_bytes: int = 100 * 1024 * 1024  #: a whole request body (``upload_too_large``, 413)
    max_pixels: int = 50_000_000  #: one image, from its header (``too_many_pixels``, 413)
    max_images: int = 64  #: images in one job (``too_many_images``, 413)
    max_queued_jobs: int = 32  #: jobs queued or running (``queue_full``, 429)
    max_running_jobs: int = 8  #: jobs that run at once (their persons share the batches)
    #: the request body of a sequence job: a video, or its frames (``upload_too_large``, 413)
    max_video_bytes: int = 1024 * 1024 * 1024
    #: frames of one sequence job (``too_many_frames``, 413): 10 minutes at 30 fps
    max_frames: int = 18_000

    def as_dict(self) -> dict[str, int]:
        """Every limit by name (what ``/v1/health`` reports as ``limits``)."""
        return asdict(self)

    def check(self) -> None:
        for name, value in self.as_dict().items():
            if value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1")


@dataclass(frozen=True)
class ServiceConfig:
    """Everything ``serve`` needs.

    ``local`` mode (the add-on's): a loopback address, port 0, a random token printed in the
    handshake line, exit when stdin closes. ``remote`` mode: any address, the token the user set.
    """

    host: str = "127.0.0.1"
    port: int = 0
    remote: bool = False
    token: str = field(default="", repr=False)  #: never printed except in the local handshake
    data_dir: Path | None = None
    model: PixieConfig = field(default_factory=PixieConfig)
    trust_checkpoint: bool = False
    batch_size: int | str = 8  #: persons per network batch, across jobs (``auto``: from the device)
    max_wait: float = 0.05  #: seconds a partial batch waits for other jobs' persons
    limits: Limits = field(default_factory=Limits)
    work_dir: Path | None = None  #: job folders go here (None: a temporary folder removed at exit)
    keep_seconds: float = 1800.0  #: a finished job's files are kept this long (or until DELETE)
    keepalive: float = 10.0  #: seconds between keep-alive lines on an idle event stream
    exit_on_stdin_eof: bool = True  #: local mode: the parent closed our stdin (or died)
    access_log: bool = False

    def check(self) -> None:
        """Raise ``ValueError`` (one sentence) for settings that cannot work."""
        self.limits.check()
        if not 0 <= self.port < 65536:
            raise ValueError("--port must be between 0 and 65535")
        if self.batch_size != "auto" and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError("--batch-size must be at least 1")
        if self.max_wait < 0:
            raise ValueError("--max-wait must be 0 or more")
        if not is_loopback(self.host) and not self.remote:
            raise ValueError(f"--host {self.host} is reachable from other machines: add --remote (and set a token) "
                             "to serve there")
        if len(self.token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the token must have at least {MIN_TOKEN_LENGTH} characters")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
