"""``pixie-backend doctor``: report the data folder, file by file."""

from __future__ import annotations

import argparse

from ..assets import Need


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("doctor", help="list the model files: present or missing, licence, source")
    p.add_argument("--data-dir", help="data folder (default: $PIXIE_DATA_DIR, then the user folder)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the report as one JSON document (for the Blender add-on); same exit code",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..doctor import check_assets, format_report, is_complete, report_dict

    folder, rows = check_assets(args.data_dir)
    if getattr(args, "json", False):
        import json

        print(json.dumps(report_dict(folder, rows)))
    else:
        print(format_report(folder, rows))
    return 0 if is_complete(rows, Need.REQUIRED) else 1
