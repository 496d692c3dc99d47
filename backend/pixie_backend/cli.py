"""Command-line entry point: ``pixie-backend <command> ...``.

Each command lives in ``pixie_backend/commands/<name>.py`` and exposes
``register(subparsers) -> argparse.ArgumentParser`` (which sets ``func`` via ``set_defaults``);
``func(args) -> int`` is the exit code. Command modules import heavy packages (torch) inside
``func`` so that ``--help`` and ``doctor`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "reconstruct",
    "reconstruct_video",
    "doctor",
    "fetch_data",
    "selftest",
    "make_synthetic",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixie-backend",
        description="PIXIE whole-body reconstruction: images in, SMPL-X results out.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``pixie-backend doctor | head``): stop quietly; send what is still
        # buffered for stdout to the null device so that the exit flush does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
