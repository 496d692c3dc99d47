"""Build and validate the installable extension zip, without a Blender binary.

    .venv/bin/python tests/support/build_extension.py            # -> dist/pixie_blender-<version>.zip

Stages ``pixie_blender/*`` next to the root ``blender_manifest.toml`` in ``build/extension/``
(an extension zip needs ``__init__.py`` beside the manifest), then runs ``blender_ext.py build``
and ``validate`` from the installed ``bpy`` wheel (``bpy/<ver>/scripts/addons_core/bl_pkg/cli``).
The zip installs through *Edit ▸ Preferences ▸ Get Extensions ▸ Install from Disk* (Blender 4.2+).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
VALID_TAGS = {"add-on": ["Animation", "Import-Export"], "theme": []}


def find_blender_ext() -> Path:
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the bpy module is not installed in this interpreter")
    for loc in spec.submodule_search_locations:
        hits = sorted(Path(loc).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    raise SystemExit("blender_ext.py not found in the bpy wheel")


def stage(dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(
        ROOT / "pixie_blender", dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    )
    shutil.copy2(ROOT / "blender_manifest.toml", dest / "blender_manifest.toml")
    return dest


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}")
    return out


def build(
    out_dir: Path = ROOT / "dist",
    staging: Path = ROOT / "build" / "extension",
    python: str = sys.executable,
    quiet: bool = False,
) -> Path:
    """Stage, validate, build and validate the zip; returns the zip's path."""
    tool = find_blender_ext()
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    stage(staging)
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    if zip_path.exists():
        zip_path.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        tags = Path(tmp) / "tags.json"
        tags.write_text(json.dumps(VALID_TAGS))
        logs = [
            _run([python, str(tool), "validate", str(staging), "--valid-tags", str(tags)]),
            _run(
                [
                    python,
                    str(tool),
                    "build",
                    "--source-dir",
                    str(staging),
                    "--output-dir",
                    str(out_dir),
                    "--valid-tags",
                    str(tags),
                ]
            ),
        ]
        if not zip_path.is_file():
            raise SystemExit(f"expected {zip_path}, build wrote: {sorted(p.name for p in out_dir.iterdir())}")
        logs.append(_run([python, str(tool), "validate", str(zip_path), "--valid-tags", str(tags)]))
    if not quiet:
        print("".join(logs).strip())
        print(f"built {zip_path}")
    return zip_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    args = ap.parse_args()
    build(args.out)


if __name__ == "__main__":
    main()
