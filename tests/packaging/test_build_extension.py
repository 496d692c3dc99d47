"""The extension zip built with the standard library: same content as Blender's own builder makes
from the same files, the same verdicts as Blender's validator on bad manifests, one version for
the add-on and the backend, a build in a Python without bpy, and the release's full zip."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from tools import build_extension as ext
from tools import release

ROOT = Path(__file__).resolve().parents[2]
BLENDER_EXT = ext.find_blender_ext()
needs_blender_ext = pytest.mark.skipif(BLENDER_EXT is None, reason="bpy (Blender's extension tool) not installed")


@pytest.fixture(scope="module")
def backend_wheel(tmp_path_factory):
    return ext.build_backend_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def small_zip(tmp_path_factory, backend_wheel):
    return ext.build(tmp_path_factory.mktemp("dist"), backend_wheel=backend_wheel, quiet=True)


def test_versions_agree():
    versions = ext.read_versions()
    assert len(set(versions.values())) == 1, versions
    import pixie_backend

    from pixie_blender.version import ADDON_VERSION

    assert ADDON_VERSION == pixie_backend.__version__ == ext.check_versions()


def test_backend_wheel_holds_the_backend_only(backend_wheel):
    names = zipfile.ZipFile(backend_wheel).namelist()
    assert backend_wheel.name == "pixie_blender-0.1.0-py3-none-any.whl"
    assert "pixie_backend/__main__.py" in names and "pixie_backend/py.typed" in names
    assert all(n.startswith(("pixie_backend/", "pixie_blender-0.1.0.dist-info/")) for n in names)
    meta = zipfile.ZipFile(backend_wheel).read("pixie_blender-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: torch>=2.1" in meta and 'extra == "detector"' in meta


def test_zip_layout(small_zip):
    with zipfile.ZipFile(small_zip) as zf:
        names = zf.namelist()
        infos = {i.filename: i for i in zf.infolist()}
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    assert names[0] == "blender_manifest.toml" and "__init__.py" in names and "version.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert infos["backend_dist/pixie_blender-0.1.0-py3-none-any.whl"].compress_type == zipfile.ZIP_STORED
    assert infos["__init__.py"].compress_type == zipfile.ZIP_DEFLATED
    assert "wheels" not in manifest and "platforms" not in manifest
    assert not any(n.startswith("backend_dist/wheelhouse/") for n in names)


@needs_blender_ext
def test_same_content_as_blenders_own_builder(small_zip, tmp_path):
    """Unpack our zip, let Blender's builder pack that folder (applying the manifest's excludes):
    the two zips hold the same files with the same bytes and compression."""
    stage = tmp_path / "stage"
    zipfile.ZipFile(small_zip).extractall(stage)
    out = tmp_path / "blender"
    out.mkdir()
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps(ext.VALID_TAGS))
    proc = subprocess.run(
        [
            sys.executable,
            str(BLENDER_EXT),
            "build",
            "--source-dir",
            str(stage),
            "--output-dir",
            str(out),
            "--valid-tags",
            str(tags),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    theirs = zipfile.ZipFile(out / small_zip.name)
    ours = zipfile.ZipFile(small_zip)
    assert sorted(theirs.namelist()) == sorted(ours.namelist())
    for info in ours.infolist():
        assert theirs.read(info.filename) == ours.read(info.filename), info.filename
        assert theirs.getinfo(info.filename).compress_type == info.compress_type, info.filename


BAD_MANIFESTS = {
    "version": ('version = "0.1.0"', 'version = "abc"', '"version" must be a semantic version'),
    "tagline": (
        'tagline = "Rigged, expressive SMPL-X avatars from PIXIE results"',
        'tagline = "Rigged avatars."',
        "must not end with punctuation",
    ),
    "permission": (
        "[permissions]\n",
        '[permissions]\nsteal = "Take everything from the user"\n',
        'unknown permission "steal"',
    ),
    "reason": (
        'files = "Read result files and photos, write the avatar template cache"',
        'files = "' + "x" * 70 + '"',
        "at most 64 characters",
    ),
    "licence": ('license = ["SPDX:GPL-3.0-or-later"]', "license = []", '"license" must be'),
    "missing": (
        'maintainer = "pixie-blender developers <pixie-blender@users.noreply.github.com>"\n',
        "",
        'missing required field "maintainer"',
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifests_are_refused_like_blender_does(case, tmp_path):
    old, new, message = BAD_MANIFESTS[case]
    text = ext.MANIFEST.read_text()
    assert old in text
    bad = text.replace(old, new, 1)
    errors = ext.validate_manifest(tomllib.loads(bad))
    assert any(message in e for e in errors), errors
    if BLENDER_EXT is not None:
        pkg = tmp_path / "pkg"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        (pkg / "blender_manifest.toml").write_text(bad)
        with pytest.raises(ext.BuildError, match="rejected"):
            ext.validate_with_blender(pkg, BLENDER_EXT)


def test_the_real_manifest_is_valid():
    assert ext.validate_manifest(tomllib.loads(ext.MANIFEST.read_text())) == []
    assert ext.validate_manifest({**tomllib.loads(ext.MANIFEST.read_text()), "wheels": ["./x.whl"]}) == [
        '"wheels" must stay empty: the backend is installed into its own environment'
    ]


def test_exclude_patterns():
    pats = ["__pycache__/", "*.pyc", "/.git/", "*.zip"]
    assert ext._excluded("io/__pycache__", True, pats) and not ext._excluded("io/__pycache__", False, pats)
    assert ext._excluded("a/b/c.pyc", False, pats) and ext._excluded("x.zip", False, pats)
    assert ext._excluded(".git", True, pats) and not ext._excluded("sub/.git", True, pats)
    assert not ext._excluded("io/schema.py", False, pats)


def test_manifest_fields_replace_or_add():
    text = ext.manifest_text_with(
        ext.MANIFEST.read_text(), {"platforms": ["linux-x64"], "blender_version_min": "5.1.0"}
    )
    m = tomllib.loads(text)
    assert m["platforms"] == ["linux-x64"] and m["blender_version_min"] == "5.1.0"
    assert m["permissions"]["files"] and text.count("blender_version_min") == 1


def test_mismatched_versions_stop_the_build(monkeypatch, tmp_path):
    monkeypatch.setattr(ext, "read_versions", lambda: {"blender_manifest.toml": "0.1.0", "pyproject.toml": "0.2.0"})
    with pytest.raises(ext.BuildError, match="one version; found blender_manifest.toml: 0.1.0, pyproject.toml: 0.2.0"):
        ext.build(tmp_path, quiet=True)


def test_readme_build_command_works_in_a_python_without_bpy(tmp_path):
    """README's command, run by a plain interpreter that has no bpy (the base Python of the venv)."""
    base = getattr(sys, "_base_executable", sys.executable)
    if subprocess.run([base, "-I", "-c", "import bpy"], capture_output=True).returncode == 0:
        pytest.skip("the base interpreter has bpy")
    proc = subprocess.run(
        [base, "-I", "tools/build_extension.py", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Blender's own validator skipped" in proc.stdout
    names = zipfile.ZipFile(tmp_path / "pixie_blender-0.1.0.zip").namelist()
    assert "__init__.py" in names and "backend_dist/pixie_blender-0.1.0-py3-none-any.whl" in names


def test_full_zip_manifest_and_wheelhouse(tmp_path, backend_wheel):
    from tests.support.fake_wheels import fake_wheelhouse

    house, _ = fake_wheelhouse(tmp_path / "house")
    meta = {"platform": "linux-x64", "python": "3.11", "torch": "2.13.0+cpu", "variant": "cpu", "device": "cpu"}
    path = release.build_full(tmp_path / "dist", house, meta, backend_wheel, quiet=True)
    assert path.name == "pixie_blender-0.1.0-linux_x64-cpu-py311-full.zip"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    assert manifest["platforms"] == ["linux-x64"]
    assert (manifest["blender_version_min"], manifest["blender_version_max"]) == ("4.2.0", "5.1.0")
    assert "backend_dist/wheelhouse/torch-2.13.0+cpu-py3-none-any.whl" in names
    assert "backend_dist/wheelhouse/wheelhouse.json" in names
    if BLENDER_EXT is not None:
        ext.validate_with_blender(path, BLENDER_EXT)
    with pytest.raises(ext.BuildError, match="no Blender release ships Python 3.9"):
        release.build_full(tmp_path / "dist", house, {**meta, "python": "3.9"}, backend_wheel, quiet=True)


def test_release_platform_and_torch_source():
    assert release.blender_platform("Linux", "x86_64") == "linux-x64"
    assert release.blender_platform("Windows", "AMD64") == "windows-x64"
    assert release.blender_platform("Darwin", "arm64") == "macos-arm64"
    assert release.torch_source("cpu", "linux-x64") == ("torch==2.13.0", "https://download.pytorch.org/whl/cpu", "cpu")
    assert release.torch_source("cu130", "windows-x64")[1:] == ("https://download.pytorch.org/whl/cu130", "cuda")
    assert release.torch_source("mps", "macos-arm64") == ("torch==2.13.0", None, "mps")
    assert release.torch_source("cpu", "macos-x64") == ("torch==2.2.2", None, "cpu")
    with pytest.raises(ext.BuildError):
        release.torch_source("cu130", "macos-arm64")
