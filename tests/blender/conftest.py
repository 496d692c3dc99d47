"""Headless bpy fixtures for the add-on tests.

The add-on is enabled once per session from the repository (``addon_utils.enable("pixie_blender")``),
every test starts from an empty file, and synthetic results come from tests/support/fake_result.py
(the small body for most tests, the full-size one for fidelity). The whole folder is skipped when
``bpy`` is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HAVE_BPY = importlib.util.find_spec("bpy") is not None
if not HAVE_BPY:  # pragma: no cover - depends on the environment
    collect_ignore_glob = ["test_*.py"]

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.blender)


@pytest.fixture(scope="session")
def bpy_mod():
    import bpy

    return bpy


@pytest.fixture(scope="session", autouse=True)
def addon(bpy_mod):
    """The add-on, enabled from the repository for the whole session (disabled at the end, which
    also removes its msgbus subscription and timers: bpy 4.2 crashes at exit otherwise)."""
    import addon_utils

    mod = addon_utils.enable("pixie_blender", default_set=True, persistent=True)
    assert mod is not None
    yield mod
    addon_utils.disable("pixie_blender", default_set=True)


_CLEARED = (
    "objects",
    "meshes",
    "armatures",
    "materials",
    "images",
    "cameras",
    "collections",
    "actions",
    "node_groups",
    "textures",
    "lights",
    "worlds",
    "curves",
    "libraries",
)


def clear_file(bpy) -> None:
    """Empty the current file in place (object mode, no objects or data, default scene settings
    the tests touch). Cheaper than loading a file, and the window manager stays as it is:
    reloading it between tests made bpy 4.2 crash at exit together with the data set-up tests."""
    ctx = bpy.context
    if ctx.mode != "OBJECT" and ctx.view_layer.objects.active is not None:
        bpy.ops.object.mode_set(mode="OBJECT")
    scene = ctx.scene
    for child in list(scene.collection.children):
        scene.collection.children.unlink(child)
    ids = [i for attr in _CLEARED for i in getattr(bpy.data, attr)]
    if ids:
        bpy.data.batch_remove(ids)
    for extra in [s for s in bpy.data.scenes if s != scene]:
        bpy.data.scenes.remove(extra)
    scene.camera = None
    scene.world = None
    scene.cursor.location = (0.0, 0.0, 0.0)
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    scene.render.resolution_percentage = 100


@pytest.fixture(autouse=True)
def empty_file(bpy_mod):
    """Every test starts from an empty file in object mode."""
    clear_file(bpy_mod)
    yield


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("blender-data")


@pytest.fixture(scope="session")
def small(data_dir):
    """One person, small body, with albedo and displacement."""
    from tests.support.fake_result import make_fixture

    return make_fixture(
        data_dir / "small",
        variant="small",
        num_persons=1,
        seed=11,
        with_albedo=True,
        with_displacement=True,
        stem="alice",
    )


@pytest.fixture(scope="session")
def group(data_dir):
    """Three persons in one photo, small body."""
    from tests.support.fake_result import make_fixture

    return make_fixture(data_dir / "group", variant="small", num_persons=3, seed=12, stem="team")


@pytest.fixture(scope="session")
def full(data_dir):
    """One person, full-size body (10,475 vertices when the mannequin is available)."""
    from tests.support.fake_result import make_fixture

    return make_fixture(data_dir / "full", variant="full", num_persons=1, seed=13, stem="bob")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("addon-cache")


@pytest.fixture
def opts(session_cache):
    """ImportOptions factory using the session's template cache."""
    from pixie_blender.scene.avatar import ImportOptions

    def make(**kw):
        kw.setdefault("cache_dir", str(session_cache))
        return ImportOptions(**kw)

    return make


@pytest.fixture
def backend_prefs(bpy_mod):
    """The add-on's backend preferences; what a test sets there is put back afterwards."""
    from pixie_blender.operators import backend as backend_ops

    prefs = backend_ops.addon_preferences(bpy_mod.context)
    saved = {k: getattr(prefs, k) for k in ("backend_python", "backend_folder", "remote_enabled", "remote_url")}
    yield prefs
    for k, v in saved.items():
        setattr(prefs, k, v)
