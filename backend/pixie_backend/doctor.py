"""The data-folder report shared by ``pixie-backend doctor`` and ``fetch-data``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .assets import ASSETS, ENV_DATA_DIR, AssetSpec, DataFolder, Need


@dataclass(frozen=True)
class AssetStatus:
    spec: AssetSpec
    path: Path
    present: bool
    size: int | None


def check_assets(data_dir: str | os.PathLike | None = None) -> tuple[DataFolder, list[AssetStatus]]:
    """Presence of every registered asset in the resolved data folder."""
    folder = DataFolder(data_dir)
    rows = []
    for spec in ASSETS:
        p = folder.root / spec.filename
        present = p.is_file()
        rows.append(AssetStatus(spec, p, present, p.stat().st_size if present else None))
    return folder, rows


def is_complete(rows: list[AssetStatus], level: Need = Need.REQUIRED) -> bool:
    """True if every asset needed at ``level`` (REQUIRED, or REQUIRED+TEXTURE) is present."""
    needed = {Need.REQUIRED} if level is Need.REQUIRED else {Need.REQUIRED, Need.TEXTURE}
    return all(r.present for r in rows if r.spec.need in needed)


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def format_report(folder: DataFolder, rows: list[AssetStatus]) -> str:
    """Human-readable report: one block per file, then a verdict."""
    lines = [f"Data folder: {folder.root}"]
    env = os.environ.get(ENV_DATA_DIR)
    lines.append(f"  ({ENV_DATA_DIR}={env})" if env else f"  ({ENV_DATA_DIR} not set)")
    if folder.is_synthetic:
        lines.append("  NOTE: this folder holds SYNTHETIC assets (random weights, mannequin body);")
        lines.append("        results from it are not reconstructions.")
    for r in rows:
        mark = "present" if r.present else "MISSING"
        lines.append(f"[{mark:>7}] {r.spec.filename}  ({r.spec.need.value}) {_size(r.size)}".rstrip())
        lines.append(f"          for: {r.spec.purpose}")
        lines.append(f"          licence: {r.spec.licence} - {r.spec.licence_url}")
        if not r.present:
            if r.spec.download is not None:
                src = f" (inside {r.spec.archive})" if r.spec.archive else ""
                lines.append(f"          get it: register at {r.spec.register_url}{src}, "
                             "then `pixie-backend fetch-data`")
            else:
                lines.append(f"          get it: {r.spec.instructions}")
            if r.spec.missing_effect:
                lines.append(f"          missing means: {r.spec.missing_effect}")
    if is_complete(rows, Need.REQUIRED):
        tex = "complete" if is_complete(rows, Need.TEXTURE) else "incomplete"
        lines.append(f"Ready: all required files are present (texture files {tex}).")
    else:
        missing = [r.spec.filename for r in rows if r.spec.need is Need.REQUIRED and not r.present]
        lines.append("NOT READY: missing required files: " + ", ".join(missing))
    return "\n".join(lines)


#: Version of the ``doctor --json`` document; bump it when a field changes meaning or disappears.
REPORT_SCHEMA = 1


def report_dict(folder: DataFolder, rows: list[AssetStatus]) -> dict[str, Any]:
    """Machine-readable form of :func:`format_report` (``pixie-backend doctor --json``).

    The Blender add-on reads this instead of looking at file names itself, so that the backend's
    registry stays the single source of truth.
    """
    from .fetch_data import manual_steps

    return {
        "schema": REPORT_SCHEMA,
        "data_dir": str(folder.root),
        "data_dir_env": os.environ.get(ENV_DATA_DIR) or None,
        "synthetic": folder.is_synthetic,
        "complete": is_complete(rows, Need.REQUIRED),
        "texture_complete": is_complete(rows, Need.TEXTURE),
        "assets": [
            {
                "key": r.spec.key,
                "filename": r.spec.filename,
                "need": r.spec.need.value,
                "present": r.present,
                "size": r.size,
                "purpose": r.spec.purpose,
                "licence": r.spec.licence,
                "licence_url": r.spec.licence_url,
                "register_url": r.spec.register_url,
                "download": (
                    {"domain": r.spec.download[0], "sfile": r.spec.download[1]}
                    if r.spec.download is not None
                    else None
                ),
                "archive": r.spec.archive,
                "missing_effect": r.spec.missing_effect,
                "instructions": r.spec.instructions,
                "url": r.spec.url,
                # copyable commands (for this platform) for a file that is not downloaded here
                "commands": manual_steps(r.spec, folder.root) if r.spec.download is None else [],
            }
            for r in rows
        ],
        "text": format_report(folder, rows),
    }
