"""The sidebar panels and the preferences draw without errors, and every property and operator
they show exists (a recording layout checks each call; Blender itself only prints such errors)."""

from __future__ import annotations

import pytest

from pixie_blender.scene.avatar import build_avatars


class RecordingLayout:
    """Stands in for bpy.types.UILayout; validates what is drawn."""

    def __init__(self, log):
        self.log = log
        self.use_property_split = False
        self.use_property_decorate = False

    def _sub(self, *a, **kw):
        return RecordingLayout(self.log)

    row = column = box = split = _sub

    def label(self, text="", icon="NONE", **kw):
        self.log.append(("label", text))

    def prop(self, data, name, **kw):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self.log.append(("prop", name))

    def __getattr__(self, name):  # separator(), progress(), template_*() ...: accept and record
        def call(*a, **kw):
            self.log.append((name,) + a)
            return RecordingLayout(self.log)

        return call

    def operator(self, idname, **kw):
        import bpy

        mod, fn = idname.split(".")
        getattr(getattr(bpy.ops, mod), fn).get_rna_type()  # raises KeyError if unknown
        self.log.append(("operator", idname))
        return type("Props", (), {})()


class Ctx:
    def __init__(self, bpy, active):
        self.active_object = active
        self.window_manager = bpy.context.window_manager
        self.preferences = bpy.context.preferences
        self.scene = bpy.context.scene
        self.view_layer = bpy.context.view_layer


def _draw(cls, ctx, log):
    panel = type("P", (), {"layout": RecordingLayout(log)})()
    if hasattr(cls, "poll") and not cls.poll(ctx):
        return False
    cls.draw(panel, ctx)
    return True


@pytest.mark.parametrize("show_all", [False, True])
def test_panels_draw(bpy_mod, small, opts, show_all):
    from pixie_blender.ui import panels

    log = []
    assert _draw(panels.PIXIE_PT_main, Ctx(bpy_mod, None), log)
    assert ("operator", "pixie.import_result") in log and ("label", "Select a PIXIE avatar") in log
    assert not _draw(panels.PIXIE_PT_rig, Ctx(bpy_mod, None), [])

    rig = build_avatars(bpy_mod.context, small.result_path, opts())[0]
    bpy_mod.context.window_manager.pixie_show_all_keys = show_all
    body = rig.children[0] if rig.children[0].type == "MESH" else rig.children[1]
    for active in (rig, body):
        log = []
        ctx = Ctx(bpy_mod, active)
        for cls in (panels.PIXIE_PT_main, panels.PIXIE_PT_rig, panels.PIXIE_PT_shape):
            assert _draw(cls, ctx, log)
        ops = {e[1] for e in log if e[0] == "operator"}
        assert {"pixie.update_joints", "pixie.bake_pose_correctives", "pixie.use_photo_camera"} <= ops
        assert ("label", "Synthetic: not a reconstruction") in log
        n_values = sum(1 for e in log if e == ("prop", "value"))
        assert n_values == (250 if show_all else 20)
    body.data.shape_keys.key_blocks["Shape000"].value += 1.0
    log = []
    _draw(panels.PIXIE_PT_rig, Ctx(bpy_mod, rig), log)
    assert ("label", "Joints do not match the shape keys") in log


def test_preferences_draw(bpy_mod):
    from pixie_blender.preferences import get_preferences

    prefs = get_preferences()
    log = []
    type(prefs).draw(_PrefsProxy(prefs, RecordingLayout(log)), bpy_mod.context)
    assert ("operator", "pixie.clear_cache") in log
    assert ("prop", "auto_update_joints") in log


class _PrefsProxy:
    """``self`` for AddonPreferences.draw: the real properties plus a recording layout."""

    def __init__(self, prefs, layout):
        self._prefs = prefs
        self.layout = layout
        self.bl_rna = prefs.bl_rna

    def __getattr__(self, name):
        return getattr(self._prefs, name)
