"""``pixie-backend serve``: the HTTP service (``docs/service.md``).

Local mode (default, what the Blender add-on starts): binds 127.0.0.1 on a free port, prints one
handshake line on stdout ``{"event": "ready", "protocol": 1, "port": ..., "token": ..., "device":
..., "versions": {...}}`` (a new random token each start) and exits when its stdin closes.

Remote mode (``--remote``): any address, with the token you set in ``PIXIE_SERVICE_TOKEN`` or a
``--token-file`` (never on the command line, where other users could read it); it runs until
SIGTERM or Ctrl-C. Reach it over an SSH tunnel: ``ssh -L 8765:127.0.0.1:8765 gpu-box``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .model_options import add_model_options, check_model_args

EXIT_USAGE = 2
TOKEN_ENV = "PIXIE_SERVICE_TOKEN"
DEFAULT_REMOTE_PORT = 8765


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="run the HTTP service (the Blender add-on's backend)",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; others need --remote)")
    p.add_argument("--port", type=int, default=None,
                   help=f"port (default: 0 = a free one in local mode, {DEFAULT_REMOTE_PORT} in remote mode)")
    p.add_argument("--remote", action="store_true",
                   help=f"serve other machines: no handshake, no exit on stdin EOF, the token from ${TOKEN_ENV} or "
                        "--token-file")
    p.add_argument("--token-file", help="file whose first line is the token (remote mode)")
    p.add_argument("--data-dir", help="model data folder (default: $PIXIE_DATA_DIR, then the user folder)")
    add_model_options(p, batch_help="persons per network batch, across jobs", workers=False,
                      speed_help="see reconstruct --help (default: fast)")
    p.add_argument("--max-wait", type=float, default=0.05,
                   help="seconds a partial batch waits for other jobs' persons (default: 0.05)")
    p.add_argument("--max-upload-mb", type=float, default=100.0, help="largest request body (default: 100)")
    p.add_argument("--max-megapixels", type=float, default=50.0, help="largest image (default: 50)")
    p.add_argument("--max-images", type=int, default=64, help="images per job (default: 64)")
    p.add_argument("--max-video-mb", type=float, default=1024.0,
                   help="largest sequence upload: a video, or all the frames of one job (default: 1024)")
    p.add_argument("--max-frames", type=int, default=18_000,
                   help="frames per sequence job (default: 18000, 10 minutes at 30 fps)")
    p.add_argument("--max-queued-jobs", type=int, default=32, help="jobs queued or running (default: 32)")
    p.add_argument("--max-running-jobs", type=int, default=8,
                   help="jobs that run at once, sharing the batches (default: 8)")
    p.add_argument("--work-dir", help="folder for job outputs (default: a temporary folder, removed at exit)")
    p.add_argument("--keep-minutes", type=float, default=30.0,
                   help="keep a finished job's files this long for fetching (default: 30)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of pixie_model.tar if the safe loader refuses it")
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=None,
                   help="log each request line on stderr (default: on in remote mode)")
    p.set_defaults(func=run)
    return p


def _remote_token(args) -> str:
    if args.token_file:
        try:
            return Path(args.token_file).expanduser().read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError) as e:
            raise ValueError(f"--token-file: cannot read a token from {args.token_file} ({e})") from None
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ValueError(f"remote mode needs a token you set: export {TOKEN_ENV}=<a long random string> "
                         "(e.g. python -c \"import secrets; print(secrets.token_hex(32))\") or use --token-file")
    return token


def build_config(args):
    from ..config import PixieConfig
    from ..service.auth import new_token
    from ..service.config import Limits, ServiceConfig

    token = _remote_token(args) if args.remote else new_token()
    port = args.port if args.port is not None else (DEFAULT_REMOTE_PORT if args.remote else 0)
    check_model_args(args)
    if not args.max_upload_mb > 0 or not args.max_megapixels > 0 or not args.max_video_mb > 0:
        raise ValueError("--max-upload-mb, --max-video-mb and --max-megapixels must be more than 0")
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=int(args.max_megapixels * 1e6),
                    max_images=args.max_images, max_queued_jobs=args.max_queued_jobs,
                    max_running_jobs=args.max_running_jobs, max_video_bytes=int(args.max_video_mb * 1024 * 1024),
                    max_frames=args.max_frames)
    config = ServiceConfig(
        host=args.host, port=port, remote=args.remote, token=token,
        data_dir=Path(args.data_dir).expanduser() if args.data_dir else None,
        model=PixieConfig(device=args.device, precision=args.precision, speed=args.speed, compile=args.compile),
        trust_checkpoint=args.trust_checkpoint, batch_size=args.batch_size, max_wait=args.max_wait, limits=limits,
        work_dir=Path(args.work_dir).expanduser() if args.work_dir else None, keep_seconds=args.keep_minutes * 60,
        exit_on_stdin_eof=not args.remote,
        access_log=args.remote if args.access_log is None else args.access_log,
    )
    config.check()
    return config


def run(args: argparse.Namespace) -> int:
    from ..service.server import protect_stdout, serve

    handshake = None if args.remote else protect_stdout()
    try:
        config = build_config(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return serve(config, handshake)
