"""Build the installable Blender extension zip with the standard library only (no ``bpy``).

    python tools/build_extension.py                     # -> dist/pixie_blender-<version>.zip

The zip holds, at its root (an extension needs ``__init__.py`` next to ``blender_manifest.toml``):

* the add-on package ``pixie_blender/*`` and the repository's ``blender_manifest.toml``;
* ``backend_dist/pixie_blender-<version>-py3-none-any.whl``: this repository's backend as a wheel
  (``pip wheel --no-deps``), so that the add-on and the backend it installs have one version;
* in a "full" zip only (``tools/release.py``), ``backend_dist/wheelhouse/``: torch and every
  dependency, for an offline "Install Backend".

The backend wheel is deliberately **not** listed in the manifest's ``wheels = [...]``: Blender installs
those into its own Python (and the platform's policy wants them unmodified registry wheels), while
the backend must only ever be installed into the private environment that "Install Backend"
creates. Unlisted, the wheel is an ordinary file that Blender unpacks with the add-on.

The manifest is checked here against the rules of Blender's extension platform (required fields,
semantic version, tagline and permission reasons, licence list). When the ``bpy`` module is
importable, Blender's own validator (``blender_ext.py validate``, shipped in the ``bpy`` wheel) runs on
the finished zip as an extra check.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
ADDON_DIR = ROOT / "pixie_blender"
MANIFEST = ROOT / "blender_manifest.toml"
#: Folder inside the extension that carries the backend (never installed into Blender's Python).
BUNDLE_DIR = "backend_dist"
WHEELHOUSE_DIR = f"{BUNDLE_DIR}/wheelhouse"
VALID_TAGS = {"add-on": ["Animation", "Import-Export"], "theme": []}

REQUIRED_FIELDS = (
    "schema_version",
    "id",
    "version",
    "name",
    "tagline",
    "maintainer",
    "type",
    "blender_version_min",
    "license",
)
PERMISSIONS = ("files", "network", "clipboard", "camera", "microphone")
PLATFORMS = ("windows-x64", "windows-arm64", "macos-x64", "macos-arm64", "linux-x64", "linux-arm64")
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
BLENDER_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
#: Stored, not deflated (already compressed), as Blender's own builder does.
STORED_SUFFIXES = (".whl", ".zip", ".gz", ".bz2", ".xz", ".zst")


class BuildError(Exception):
    """The extension cannot be built; the message says why."""


# --------------------------------------------------------------------------------------------------
# Manifest


def _terse_error(text: object) -> str | None:
    """Blender's rule for taglines and permission reasons."""
    if not isinstance(text, str) or not text.strip():
        return "must be a non-empty string"
    if len(text) > 64:
        return f"must be at most 64 characters, found {len(text)}"
    if not (text[-1].isalnum() or text[-1] in ")]}"):
        return f"must not end with punctuation, found {text[-1]!r}"
    return None


def validate_manifest(manifest: Mapping, valid_tags: Mapping[str, list[str]] | None = None) -> list[str]:
    """Every rule the manifest breaks, as sentences (empty: valid)."""
    errors = [f'missing required field "{k}"' for k in REQUIRED_FIELDS if k not in manifest]
    if errors:
        return errors
    if manifest["schema_version"] != "1.0.0":
        errors.append(f'"schema_version" must be "1.0.0", found {manifest["schema_version"]!r}')
    ident = manifest["id"]
    if not isinstance(ident, str) or not ident.isidentifier() or ident.startswith("_"):
        errors.append(f'"id" must be a Python identifier, found {ident!r}')
    if not isinstance(manifest["version"], str) or not SEMVER.match(manifest["version"]):
        errors.append(f'"version" must be a semantic version, found {manifest["version"]!r}')
    if (err := _terse_error(manifest["tagline"])) is not None:
        errors.append(f'"tagline" {err}')
    if manifest["type"] not in ("add-on", "theme"):
        errors.append(f'"type" must be "add-on" or "theme", found {manifest["type"]!r}')
    for key in ("blender_version_min", "blender_version_max"):
        value = manifest.get(key)
        if value is not None and (not isinstance(value, str) or not BLENDER_VERSION.match(value)):
            errors.append(f'"{key}" must look like "4.2.0", found {value!r}')
    lic = manifest["license"]
    if not isinstance(lic, list) or not lic or not all(isinstance(x, str) and x.startswith("SPDX:") for x in lic):
        errors.append('"license" must be a non-empty list of "SPDX:..." strings')
    for key, reason in (manifest.get("permissions") or {}).items():
        if key not in PERMISSIONS:
            errors.append(f'unknown permission "{key}" (allowed: {", ".join(PERMISSIONS)})')
        elif (err := _terse_error(reason)) is not None:
            errors.append(f'permission "{key}": reason {err}')
    tags = manifest.get("tags")
    if tags is not None:
        allowed = set((valid_tags or VALID_TAGS).get(manifest["type"], ()))
        bad = [t for t in tags if t not in allowed]
        if bad:
            errors.append(f"unknown tags {bad} for type {manifest['type']!r}")
    platforms = manifest.get("platforms")
    if platforms is not None and (not platforms or any(p not in PLATFORMS for p in platforms)):
        errors.append(f'"platforms" must be a non-empty list from {PLATFORMS}, found {platforms!r}')
    if manifest.get("wheels"):
        errors.append('"wheels" must stay empty: the backend is installed into its own environment')
    build = manifest.get("build") or {}
    if "paths" in build:
        errors.append('[build] "paths" is not supported by this builder; use "paths_exclude_pattern"')
    return errors


def manifest_text_with(text: str, fields: Mapping[str, object]) -> str:
    """The manifest text with top-level fields set: an existing ``key = ...`` line is replaced, a
    new key goes before the first table header. Values are strings or lists of strings
    (``platforms``, ``blender_version_min``, ``blender_version_max``)."""

    def toml_value(v: object) -> str:
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(json.dumps(str(x)) for x in v) + "]"
        raise TypeError(f"unsupported manifest value {v!r}")

    lines = text.splitlines(keepends=True)
    first_table = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
    added = []
    for key, value in fields.items():
        line = f"{key} = {toml_value(value)}\n"
        pattern = re.compile(rf"^{re.escape(key)}\s*=")
        at = next((i for i in range(first_table) if pattern.match(lines[i])), None)
        if at is None:
            added.append(line)
        else:
            lines[at] = line
    out = "".join(lines[:first_table] + added + (["\n"] if added else []) + lines[first_table:])
    tomllib.loads(out)  # still valid TOML
    return out


# --------------------------------------------------------------------------------------------------
# Files


def _excluded(rel: str, is_dir: bool, patterns: Iterable[str]) -> bool:
    """Gitignore-style subset used by ``[build] paths_exclude_pattern``: ``name/`` matches folders,
    a leading ``/`` anchors at the root, a pattern with ``/`` matches the relative path, any other
    pattern matches a name at any depth."""
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        dir_only = pat.endswith("/")
        p = pat.rstrip("/")
        if dir_only and not is_dir:
            continue
        if p.startswith("/"):
            if fnmatch.fnmatchcase(rel, p[1:]):
                return True
        elif "/" in p:
            if fnmatch.fnmatchcase(rel, p):
                return True
        elif fnmatch.fnmatchcase(name, p):
            return True
    return False


def addon_files(source: Path, patterns: Iterable[str]) -> list[tuple[Path, str]]:
    """(path, archive name) of the add-on's files, sorted, exclusions applied."""
    patterns = list(patterns)
    out: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(source):
        base = Path(dirpath)
        rel_dir = base.relative_to(source).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not _excluded(rel_dir + d, True, patterns))
        for f in sorted(filenames):
            rel = rel_dir + f
            if not _excluded(rel, False, patterns):
                out.append((base / f, rel))
    return out


def read_versions() -> dict[str, str]:
    """The version in each place that carries one (all must agree)."""
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    init = (ROOT / "backend" / "pixie_backend" / "__init__.py").read_text(encoding="utf-8")
    addon = (ADDON_DIR / "version.py").read_text(encoding="utf-8")
    grab = re.compile(r'^(?:__version__|ADDON_VERSION)\s*=\s*"([^"]+)"', re.M)
    return {
        "blender_manifest.toml": manifest["version"],
        "pyproject.toml": project["project"]["version"],
        "backend/pixie_backend/__init__.py": (grab.search(init) or [None, "?"])[1],
        "pixie_blender/version.py": (grab.search(addon) or [None, "?"])[1],
    }


def check_versions() -> str:
    versions = read_versions()
    if len(set(versions.values())) != 1:
        listing = ", ".join(f"{k}: {v}" for k, v in versions.items())
        raise BuildError(f"the add-on and the backend must have one version; found {listing}")
    return next(iter(versions.values()))


def build_backend_wheel(dest: Path, python: str = sys.executable) -> Path:
    """``pip wheel --no-deps`` of this repository's backend, from a clean copy of its sources (no
    build folders or egg-info left in the work tree). Returns the wheel's path."""
    dest.mkdir(parents=True, exist_ok=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dist = project["name"].replace("-", "_")
    for old in dest.glob(f"{dist}-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="pixie-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(
            ROOT / "backend",
            src / "backend",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build"),
        )
        cmd = [python, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", str(dest)]
        if _setuptools_in_this_python(python):
            cmd.append("--no-build-isolation")  # no registry needed when setuptools is already here
        cmd.append(str(src))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"building the backend wheel failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    wheels = sorted(dest.glob(f"{dist}-*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one {dist} wheel in {dest}, found {[w.name for w in wheels]}")
    return wheels[0]


def _setuptools_in_this_python(python: str) -> bool:
    if python != sys.executable:
        return False
    if importlib.util.find_spec("setuptools") is None:
        return False
    from importlib import metadata

    major_minor = tuple(int(x) for x in metadata.version("setuptools").split(".")[:2])
    return major_minor >= (70, 1)  # bdist_wheel is part of setuptools from 70.1


# --------------------------------------------------------------------------------------------------
# The zip


def extension_files(
    backend_wheel: Path,
    wheelhouse: Path | None = None,
    source: Path = ADDON_DIR,
) -> list[tuple[Path, str]]:
    """Everything that goes into the zip except the manifest: (path, archive name)."""
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    patterns = (manifest.get("build") or {}).get("paths_exclude_pattern", [])
    files = addon_files(source, patterns)
    taken = {arc for _, arc in files}
    if any(arc.startswith(BUNDLE_DIR + "/") for arc in taken):
        raise BuildError(f"pixie_blender/{BUNDLE_DIR}/ is reserved for the bundled backend")
    files.append((backend_wheel, f"{BUNDLE_DIR}/{backend_wheel.name}"))
    if wheelhouse is not None:
        for p in sorted(wheelhouse.iterdir()):
            if p.is_file():
                files.append((p, f"{WHEELHOUSE_DIR}/{p.name}"))
    return files


def write_zip(path: Path, manifest_text: str, files: Iterable[tuple[Path, str]]) -> None:
    """Writes the zip next to its final name, then renames it (a crash leaves no half zip)."""
    tmp = path.with_name("." + path.name + ".part")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            zf.writestr("blender_manifest.toml", manifest_text)
            for src, arc in files:
                stored = arc.lower().endswith(STORED_SUFFIXES)
                zf.write(src, arc, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_zip(path: Path) -> None:
    """Structural checks on the finished zip: manifest and ``__init__.py`` at the root, no
    byte code, readable entries."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        bad = zf.testzip()
        if bad is not None:
            raise BuildError(f"{path.name}: corrupt entry {bad}")
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
    if "__init__.py" not in names:
        raise BuildError(f"{path.name}: no __init__.py next to the manifest")
    if any("__pycache__" in n or n.endswith(".pyc") for n in names):
        raise BuildError(f"{path.name}: contains byte code")
    if errors := validate_manifest(manifest):
        raise BuildError(f"{path.name}: " + "; ".join(errors))


def find_blender_ext() -> Path | None:
    """Blender's stdlib-only extension tool inside the installed ``bpy`` wheel, or None."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        hits = sorted(Path(loc).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    return None


def validate_with_blender(path: Path, tool: Path, python: str = sys.executable) -> str:
    """Blender's own ``validate`` on a zip or folder; its output, or :class:`BuildError`."""
    with tempfile.TemporaryDirectory() as tmp:
        tags = Path(tmp) / "tags.json"
        tags.write_text(json.dumps(VALID_TAGS))
        proc = subprocess.run(
            [python, str(tool), "validate", str(path), "--valid-tags", str(tags)], capture_output=True, text=True
        )
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise BuildError(f"Blender's validator rejected {path.name}:\n{out}")
    return out


def build(
    out_dir: Path = ROOT / "dist",
    *,
    wheelhouse: Path | None = None,
    manifest_fields: Mapping[str, object] | None = None,
    zip_name: str | None = None,
    backend_wheel: Path | None = None,
    blender_check: bool = True,
    quiet: bool = False,
) -> Path:
    """Builds and checks the extension zip; returns its path.

    Args:
        out_dir: output folder (created).
        wheelhouse: folder of wheels to carry for an offline install (the "full" zip), or None.
        manifest_fields: extra top-level manifest fields (``platforms``, ``blender_version_max``).
        zip_name: file name; default ``<id>-<version>.zip``.
        backend_wheel: a prebuilt backend wheel; default: built now.
        blender_check: also run Blender's validator when ``bpy`` is importable.
    """
    version = check_versions()
    text = MANIFEST.read_text(encoding="utf-8")
    if manifest_fields:
        text = manifest_text_with(text, manifest_fields)
    manifest = tomllib.loads(text)
    if errors := validate_manifest(manifest):
        raise BuildError("blender_manifest.toml: " + "; ".join(errors))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pixie-ext-") as tmp:
        wheel = backend_wheel or build_backend_wheel(Path(tmp))
        if f"-{version}-" not in wheel.name:
            raise BuildError(f"backend wheel {wheel.name} does not carry version {version}")
        path = out_dir / (zip_name or f"{manifest['id']}-{version}.zip")
        write_zip(path, text, extension_files(wheel, wheelhouse))
    check_zip(path)
    log = ""
    tool = find_blender_ext() if blender_check else None
    if tool is not None:
        log = validate_with_blender(path, tool)
    if not quiet:
        if log:
            print(log)
        elif blender_check:
            print("(bpy not installed here: Blender's own validator skipped)")
        print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    args = ap.parse_args(argv)
    try:
        build(args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
