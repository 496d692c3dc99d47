"""Shared pytest set-up: keep every test run away from the user's Blender and cache folders.

``bpy`` writes its user configuration under ``BLENDER_USER_RESOURCES`` and renders write shader
caches under ``XDG_CACHE_HOME``; both point at a temporary folder of this test session *before*
any test module can import ``bpy``. Markers are declared in ``pyproject.toml``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

pytest_plugins = ["tests.support.service_fixtures"]

_SESSION_DIR = tempfile.mkdtemp(prefix="pixie-tests-")
for _var, _sub in (("BLENDER_USER_RESOURCES", "blender-user"), ("XDG_CACHE_HOME", "xdg-cache")):
    os.environ[_var] = os.path.join(_SESSION_DIR, _sub)
    os.makedirs(os.environ[_var], exist_ok=True)


def pytest_unconfigure(config):
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)
