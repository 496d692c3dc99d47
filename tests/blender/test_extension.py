"""The extension: build + validate the zip, install it through the extension system, enable, run
the operator; register/unregister leaves nothing behind. Each install runs in a fresh Python
process with its own BLENDER_USER_RESOURCES (the session's process has the add-on enabled from
the repository)."""

from __future__ import annotations

import os
import zipfile

import pytest

from tests.support.blender_process import run_script, user_env


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory):
    from tools.build_extension import build

    return build(tmp_path_factory.mktemp("ext") / "dist", quiet=True)


def test_zip_layout(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "io/schema.py" in names and "scene/avatar.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert extension_zip.name == "pixie_blender-0.1.0.zip"
    # the backend travels as a plain file, never as a manifest wheel (Blender would install it into its Python)
    assert "backend_dist/pixie_blender-0.1.0-py3-none-any.whl" in names
    manifest = zipfile.ZipFile(extension_zip).read("blender_manifest.toml").decode()
    assert "wheels" not in manifest


_STATE = r"""
import bpy
def state():
    import bpy
    handlers = {k: len(getattr(bpy.app.handlers, k)) for k in dir(bpy.app.handlers)
                if not k.startswith("_") and isinstance(getattr(bpy.app.handlers, k), list)}
    menu = [getattr(f, "__module__", "") + "." + getattr(f, "__name__", "")
            for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()]
    ops = sorted(n for n in dir(bpy.ops.pixie) if not n.startswith("_"))
    return {"types": sorted(n for n in dir(bpy.types) if "PIXIE" in n), "handlers": handlers, "menu": menu,
            "ops": ops, "wm": sorted(n for n in dir(bpy.types.WindowManager) if n.startswith("pixie")),
            "modules": sorted(m for m in __import__("sys").modules if "pixie" in m and "backend" not in m)}
"""


def test_install_enable_run_uninstall(extension_zip, small, tmp_path):
    code = (
        _STATE
        + rf"""
import json, os
before = state()
res = bpy.ops.extensions.package_install_files(filepath={str(extension_zip)!r}, repo="user_default",
                                               enable_on_install=True)
name = "bl_ext.user_default.pixie_blender"
enabled = name in bpy.context.preferences.addons
during = state()
out = bpy.ops.pixie.import_result(filepath={str(small.result_path)!r}, add_camera=True)
rig = bpy.data.objects.get("alice")
prefs = bpy.context.preferences.addons[name].preferences
import importlib
tc = importlib.import_module(name + ".scene.template_cache")
cache = str(tc.default_cache_dir())
cache_files = [f for sub in ("templates", "packages") for f in sorted(os.listdir(os.path.join(cache, sub)))]
import addon_utils
addon_utils.disable(name, default_set=True)
after = state()
print("RESULT " + json.dumps(dict(install=sorted(res), enabled=enabled, op=sorted(out),
      rig=rig is not None and rig.type, body=rig is not None and [c.name for c in rig.children],
      cam=[(o.name, o.data.type) for o in bpy.data.objects if o.type == "CAMERA"],
      prefs=type(prefs).__name__, cache=cache, cache_files=cache_files, before=before, during=during,
      after=after)))
"""
    )
    r = run_script(code, env=user_env(tmp_path))
    assert r["install"] == ["FINISHED"] and r["enabled"] and r["op"] == ["FINISHED"]
    assert r["rig"] == "ARMATURE" and r["body"] == ["alice_body"]
    assert ["alice_camera", "PERSP"] in r["cam"]  # the operator's default placement: as in the photo
    assert r["prefs"] == "PIXIE_AP_preferences"
    assert r["cache"].endswith(os.path.join("extensions", ".user", "user_default", "pixie_blender", "cache"))
    assert len(r["cache_files"]) == 2
    assert "PIXIE_OT_import_result" in r["during"]["types"] and "import_result" in r["during"]["ops"]
    assert any("menu_import" in m for m in r["during"]["menu"])
    for key in ("types", "handlers", "menu", "wm"):
        assert r["after"][key] == r["before"][key], key


def test_register_unregister_leaves_nothing(tmp_path):
    code = (
        _STATE
        + r"""
import json, addon_utils
before = state()
cycles = []
for _ in range(2):
    addon_utils.enable("pixie_blender", default_set=True)
    during = state()
    timers = bpy.app.timers.is_registered
    addon_utils.disable("pixie_blender", default_set=True)
    after = state()
    cycles.append(dict(during=during, after=after))
from pixie_blender.scene import joint_follow
print("RESULT " + json.dumps(dict(before=before, cycles=cycles,
      timer=bpy.app.timers.is_registered(joint_follow.flush))))
"""
    )
    r = run_script(code, env=user_env(tmp_path))
    before = r["before"]
    for cyc in r["cycles"]:
        d = cyc["during"]
        assert {
            "PIXIE_OT_import_result",
            "PIXIE_OT_update_joints",
            "PIXIE_PT_main",
            "PIXIE_FH_result",
            "PIXIE_OT_clear_cache",
        } <= set(d["types"])
        assert d["handlers"]["load_post"] == before["handlers"]["load_post"] + 1
        assert "pixie_show_all_keys" in d["wm"]
        for key in ("types", "handlers", "menu", "wm"):
            assert cyc["after"][key] == before[key], key
    assert not r["timer"]
