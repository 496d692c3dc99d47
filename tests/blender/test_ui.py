"""The sidebar panels and the preferences draw without errors, and every property, operator and
icon they show exists (a recording layout, tests/support/ui_recorder.py, checks each call;
Blender itself only prints such errors)."""

from __future__ import annotations

import pytest

from pixie_blender.scene.avatar import build_avatars
from tests.support.ui_recorder import LayoutRecorder, PanelContext, draw_panel

RecordingLayout = LayoutRecorder  # RecordingLayout(log): the recorder's flat view goes to ``log``
Ctx = PanelContext


def _draw(cls, ctx, log):
    return draw_panel(cls, ctx, RecordingLayout(log))


def sidebar_log(bpy_mod) -> list:
    """What the main sidebar panel draws now, as the recorder's flat log."""
    from pixie_blender.ui import panels

    log: list = []
    assert _draw(panels.PIXIE_PT_main, Ctx(bpy_mod, None), log)
    return log


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
