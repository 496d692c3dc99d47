"""The panel picture (tools/panel_picture.py): the recorder captures what the sidebar's real
``draw()`` lays out, in order and in its tree, in each staged state; every operator it shows exists
with the label the picture prints; the staged states are put back; the painter writes a PNG."""

from __future__ import annotations

import pytest

from tests.support.ui_recorder import LayoutRecorder
from tools import panel_picture as pp


def _ops(layout) -> list[tuple[str, str]]:
    return [(e.name, e.text) for e in layout.elements("operator")]


def _labels(layout) -> list[str]:
    return [e.text for e in layout.elements("label")]


@pytest.fixture(scope="module")
def states(bpy_mod, addon, tmp_path_factory):
    """key -> recorded panels of each staged state (recorded once: plain data, no Blender objects)."""
    recorded = pp.record_states(bpy_mod, tmp_path_factory.mktemp("panel-states"))
    return dict(zip([k for k, _ in pp.STATES], [panels for _, panels in recorded], strict=True))


def test_first_start(states):
    (main,) = states["first_run"]  # no avatar: the child panels do not poll
    assert (main.idname, main.label, main.closed) == ("PIXIE_PT_main", "PIXIE", False)
    assert _ops(main.layout) == [
        ("pixie.reconstruct", "Reconstruct from Image"),
        ("pixie.import_sequence", "Import Image Sequence"),
        ("pixie.backend_install", "Install Backend"),
        ("pixie.open_setup", "Set-up"),
        ("pixie.open_setup", "Set up model files"),
        ("pixie.import_result", "Import Result"),
    ]
    labels = _labels(main.layout)
    assert labels[0] == "Backend: Not installed" and labels[-1] == "Select a PIXIE avatar"
    missing = " ".join(labels[1:-1])
    assert "Missing model files:" in missing and "SMPLX_NEUTRAL_2020.npz" in missing and "pixie_model.tar" in missing
    alert = {e.text: a for e, _en, _ac, a in main.layout.walk() if e.kind == "label"}
    assert alert[labels[1]] and not alert["Backend: Not installed"]

    # the tree: one box holds Reconstruct, Import Image Sequence, the status and the options;
    # Import Result and the hint follow it at the top level
    top = main.layout.children
    assert [type(c).__name__ if not isinstance(c, LayoutRecorder) else c.kind for c in top] == [
        "box",
        "Element",
        "Element",
    ]
    box = top[0]
    assert [n for n, _ in _ops(box)][:3] == ["pixie.reconstruct", "pixie.import_sequence", "pixie.backend_install"]
    first_row = box.children[0]
    assert first_row.kind == "row" and first_row.align and first_row.scale_y == pytest.approx(1.4)


def test_options_show_their_names_and_current_values(bpy_mod, states):
    from pixie_blender.preferences import get_preferences

    prefs = get_preferences(bpy_mod.context)
    (main,) = states["first_run"]
    props = main.layout.elements("prop")
    assert [p.name for p in props] == ["reconstruct_detector", "backend_device", "backend_precision"]
    for p in props:
        rna = prefs.bl_rna.properties[p.name]
        assert p.text == rna.name and p.prop_type == "ENUM" and p.property_split
        assert p.value == rna.enum_items[getattr(prefs, p.name)].name


def test_a_running_job(states):
    (main,) = states["running"]
    assert [n for n, _ in _ops(main.layout)] == [
        "pixie.reconstruct",
        "pixie.reconstruct_cancel",
        "pixie.import_sequence",
        "pixie.backend_check",
        "pixie.open_setup",
        "pixie.import_result",
    ]
    flags = {e.name: enabled for e, enabled, _a, _al in main.layout.walk() if e.kind == "operator"}
    assert not flags["pixie.reconstruct"] and flags["pixie.reconstruct_cancel"] and flags["pixie.import_sequence"]
    (bar,) = main.layout.elements("progress")
    assert bar.value == pytest.approx(1 / 3) and bar.text.startswith("Image 2 of 3")
    cancel = next(e for e in main.layout.elements("operator") if e.name == "pixie.reconstruct_cancel")
    assert (cancel.text, cancel.icon) == ("", "CANCEL")
    assert "Backend: Busy on CPU" in _labels(main.layout) and "Model files: ready" in _labels(main.layout)


def test_an_avatar_selected(bpy_mod, states):
    main, rig, shape = states["avatar"]
    assert [(p.label, p.closed, p.child) for p in (main, rig, shape)] == [
        ("PIXIE", False, False),
        ("Rig", False, True),
        ("Shape and Expression", True, True),
    ]
    ops = [n for n, _ in _ops(main.layout)]
    assert ops.index("pixie.reconstruct") < ops.index("pixie.import_sequence") < ops.index("pixie.import_result")
    assert ops[-1] == "pixie.export_fbx"
    assert "Backend: Ready on CPU" in _labels(main.layout) and "Select a PIXIE avatar" not in _labels(main.layout)
    assert _ops(rig.layout) == [
        ("pixie.update_joints", "Update Joints"),
        ("pixie.bake_pose_correctives", "Bake Pose Correctives"),
        ("pixie.use_photo_camera", "Use Photo Camera"),
    ]
    (toggle,) = rig.layout.elements("prop")
    assert (toggle.name, toggle.text, toggle.icon, toggle.prop_type) == ("auto_update_joints", "", "AUTO", "BOOLEAN")
    # buttons drawn without text= show their operator's bl_label
    for e in rig.layout.elements("operator") + main.layout.elements("operator")[-1:]:
        mod, fn = e.name.split(".")
        assert e.text == getattr(getattr(bpy_mod.ops, mod), fn).get_rna_type().name
    assert main.layout.elements("operator")[-1].text == "Export Avatar FBX"


def test_staging_is_put_back(bpy_mod, tmp_path):
    from pixie_blender.operators import backend as backend_ops
    from pixie_blender.operators import reconstruct as rec

    prefs = backend_ops.addon_preferences(bpy_mod.context)
    before = {k: getattr(prefs, k) for k in ("backend_python", "backend_folder", "remote_enabled")}
    rec.STATE.report = ("WARNING", "from before")
    try:
        pp.record_states(bpy_mod, tmp_path, ["first_run", "running"])
        assert rec.STATE.report == ("WARNING", "from before") and rec.STATE.task is None
        assert backend_ops.STATE.supervisor is None
        assert {k: getattr(prefs, k) for k in before} == before
    finally:
        rec.STATE.report = None


def test_the_recorder_refuses_what_blender_would_not_draw(bpy_mod):
    from pixie_blender.preferences import get_preferences

    layout = LayoutRecorder()
    with pytest.raises(KeyError):
        layout.operator("pixie.no_such_operator")
    with pytest.raises(AssertionError, match="no property"):
        layout.prop(get_preferences(bpy_mod.context), "no_such_property")
    with pytest.raises(AssertionError, match="unknown icon"):
        layout.label(text="x", icon="NO_SUCH_ICON")


def test_the_picture_is_written(states, tmp_path):
    from PIL import Image

    columns = list(zip([c for _, c in pp.STATES], states.values(), strict=True))
    out = pp.render(columns, tmp_path / "panel.png", note=pp.NOTE_TEXT)
    assert out.stat().st_size > 10_000
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width == pp.MARGIN + 3 * (pp.PANEL_W + pp.MARGIN)
        assert 400 < img.height < 1600
        colours = {c for _n, c in img.convert("RGB").getcolors(1 << 20)}
    assert {pp.CANVAS, pp.PANEL, pp.BUTTON, pp.BLUE} <= colours  # background, panel, buttons, progress bar
