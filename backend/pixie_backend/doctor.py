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
    problem: str | None = None  #: why a present file is unusable (truncated, damaged, wrong size)

    @property
    def usable(self) -> bool:
        return self.present and self.problem is None


def _check_npy(path: Path, size: int) -> str | None:
    """The ``.npy`` header, and that the data is all there (nothing is unpickled)."""
    import numpy as np

    fmt = np.lib.format
    with open(path, "rb") as f:
        major, _ = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, _, dtype = read(f)
        start = f.tell()
        if dtype.hasobject:  # a pickle: it ends with the STOP opcode
            f.seek(-1, 2)
            if size <= start or f.read(1) != b".":
                return "truncated: the pickled data does not end where a complete file ends"
            return None
    expected = start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        return f"truncated or damaged: {size} bytes, the header describes {expected}"
    return None


def check_file(spec: AssetSpec, path: Path) -> str | None:
    """A cheap integrity check of a present file: reads headers and archive directories, never the
    whole of a big file. Returns what is wrong, or None.

    * any file: not empty, and the registry's size where it is known;
    * zip containers (``.npz``, the zip-format ``pixie_model.tar``, ``.zip``): the central directory
      must be there (a truncated download loses it) and every member must end inside the file;
    * ``.tar`` that is not a zip: a tar archive whose members end inside the file, or a legacy
      PyTorch pickle (first byte 0x80);
    * ``.npy``: the header and the data length (a pickled object array, as
      ``flame2smplx_tex_1024.npy``: the pickle's final STOP opcode); ``.yaml``: parses; ``.png``:
      Pillow's verify.
    """
    import zipfile

    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    if spec.size is not None and size != spec.size:
        return f"{size} bytes, expected {spec.size}"
    suffix = path.suffix.lower()
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if info.header_offset + info.compress_size > size:
                        return f"damaged: member {info.filename} runs past the end of the file"
            return None
        if suffix in (".npz", ".zip"):
            return "truncated or damaged: not a complete zip archive"
        if suffix == ".tar":
            import tarfile

            with open(path, "rb") as f:
                head = f.read(1)
            if head == b"\x80":
                return None  # a legacy (pre-zip) PyTorch pickle: no cheap check
            if not tarfile.is_tarfile(path):
                return "truncated or damaged: neither a zip-format PyTorch checkpoint nor a tar archive"
            with tarfile.open(path) as tf:
                for m in tf:
                    if m.offset_data + m.size > size:
                        return f"truncated: member {m.name} runs past the end of the file"
            return None
        if suffix == ".npy":
            return _check_npy(path, size)
        elif suffix == ".yaml":
            import yaml

            yaml.safe_load(path.read_text(encoding="utf-8"))
        elif suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:
                im.verify()
    except Exception as e:  # noqa: BLE001 - any failure to read the structure is the finding
        return f"damaged or truncated ({type(e).__name__}: {e})"
    return None


def check_assets(data_dir: str | os.PathLike | None = None) -> tuple[DataFolder, list[AssetStatus]]:
    """Presence and a cheap integrity check (:func:`check_file`) of every registered asset."""
    folder = DataFolder(data_dir)
    rows = []
    for spec in ASSETS:
        p = folder.root / spec.filename
        present = p.is_file()
        problem = check_file(spec, p) if present else None
        rows.append(AssetStatus(spec, p, present, p.stat().st_size if present else None, problem))
    return folder, rows


def is_complete(rows: list[AssetStatus], level: Need = Need.REQUIRED) -> bool:
    """True if every asset needed at ``level`` (REQUIRED, or REQUIRED+TEXTURE) is present and intact."""
    needed = {Need.REQUIRED} if level is Need.REQUIRED else {Need.REQUIRED, Need.TEXTURE}
    return all(r.usable for r in rows if r.spec.need in needed)


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
    lines.append(f"  ({folder.origin})")
    if folder.is_synthetic:
        lines.append("  NOTE: this folder holds SYNTHETIC assets (random weights, mannequin body);")
        lines.append("        results from it are not reconstructions.")
    for r in rows:
        mark = "MISSING" if not r.present else ("DAMAGED" if r.problem else "present")
        lines.append(f"[{mark:>7}] {r.spec.filename}  ({r.spec.need.value}) {_size(r.size)}".rstrip())
        if r.problem:
            lines.append(f"          problem: {r.problem}; delete it and get it again")
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
        damaged = [r.spec.filename for r in rows if r.spec.need is Need.REQUIRED and r.present and r.problem]
        why = ([f"missing required files: {', '.join(missing)}"] if missing else []) + (
            [f"damaged required files: {', '.join(damaged)}"] if damaged else [])
        lines.append("NOT READY: " + "; ".join(why))
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
        "data_dir_origin": folder.origin,
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
                "problem": r.problem,
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
