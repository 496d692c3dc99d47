"""``pixie-backend make-synthetic``: write synthetic assets in the official file names and formats."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "make-synthetic", help="write a synthetic data folder (mannequin body, random weights) for tests",
        description="Write SMPLX_NEUTRAL_2020.npz, smplx_extra_joints.yaml, SMPLX_to_J14.pkl, smplx_tex.obj and "
                    "pixie_model.tar in the official formats, generated deterministically from a seed. They hold "
                    "no licensed data and results from them are not reconstructions.")
    p.add_argument("--out", required=True, help="target folder (must not hold real model files)")
    p.add_argument("--body", choices=("full", "small"), default="full",
                   help="full: 10,475-vertex mannequin (real counts); small: fast tests (default: full)")
    p.add_argument("--net", choices=("full", "tiny"), default="full",
                   help="full: the released architecture (~770 MB); tiny: width-reduced (default: full)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="regenerate an existing synthetic folder")
    p.add_argument("--face", action=argparse.BooleanOptionalAction, default=True,
                   help="also the face-appearance files: albedo model, texture map, body texture, masks, DECA's "
                        "fixed displacement and random deca_model.tar (default: on)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..synthetic_assets import RefuseToOverwrite, write_synthetic_data

    t0 = time.perf_counter()
    try:
        paths = write_synthetic_data(args.out, args.body, args.net, args.seed, args.force, face=args.face)
    except RefuseToOverwrite as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for key, path in paths.items():
        print(f"{key:>16}: {path}")
    print(f"synthetic assets written in {time.perf_counter() - t0:.1f} s (NOT a real model)")
    return 0
