"""Tiny stand-in wheels for the installer's flow tests (failure, cancel, leftovers, commit).

They are real wheels (zip, ``METADATA``, ``WHEEL``, ``RECORD`` with hashes) that pip installs
offline in a second, so the tests exercise the installer's real steps, pip included, without the
192 MB torch wheel. The install of the *real* backend is tested separately
(tests/blender/test_backend_install.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

FAKE_TORCH = """__version__ = "2.13.0+cpu"


class cuda:
    @staticmethod
    def is_available():
        return False


class backends:
    mps = None
"""

FAKE_BACKEND_MAIN = """import json, sys
from . import __version__
if sys.argv[1:3] == ["doctor", "--json"]:
    print(json.dumps({"schema": 1, "data_dir": "/nowhere", "complete": False, "assets": []}))
    sys.exit(1)
sys.exit(2)
"""


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(
    dest: Path, dist: str, version: str, files: dict[str, str], requires: list[str] = (), extras: list[str] = ()
) -> Path:
    """Writes ``<dist>-<version>-py3-none-any.whl`` into ``dest``; returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    norm = dist.replace("-", "_")
    info = f"{norm}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {dist}", f"Version: {version}"]
    meta += [f"Provides-Extra: {e}" for e in extras]
    meta += [f"Requires-Dist: {r}" for r in requires]
    content = {name: text.encode() for name, text in files.items()}
    content[f"{info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    content[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: fake\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [_record_line(n, d) for n, d in content.items()] + [f"{info}/RECORD,,"]
    content[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = dest / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in content.items():
            zf.writestr(name, data)
    return path


def fake_wheelhouse(house: Path, *, backend_requires: list[str] = ("torch>=2.1",)) -> tuple[Path, Path]:
    """A wheelhouse with a stand-in torch 2.13.0+cpu and mediapipe, and a stand-in backend wheel
    (returned separately, as the extension carries it). Returns (wheelhouse, backend wheel)."""
    make_wheel(house, "torch", "2.13.0+cpu", {"torch/__init__.py": FAKE_TORCH})
    make_wheel(house, "mediapipe", "0.10.21", {"mediapipe/__init__.py": ""})
    make_wheel(house, "detector-dep", "1.0", {"detector_dep.py": ""})
    backend = make_wheel(
        house.parent / "backend_wheel",
        "pixie-blender",
        "0.1.0",
        {"pixie_backend/__init__.py": '__version__ = "0.1.0"\n', "pixie_backend/__main__.py": FAKE_BACKEND_MAIN},
        requires=[*backend_requires, 'detector-dep; extra == "detector"'],
        extras=["detector"],
    )
    (house / "wheelhouse.json").write_text(
        json.dumps(
            {"schema": 1, "platform": "any", "python": "", "torch": "2.13.0+cpu", "variant": "cpu", "device": "cpu"}
        )
    )
    return house, backend
