"""A headless Workbench render of imported synthetic avatars, written as a test artefact to
``artifacts/`` (ignored by git): front view, and one avatar over its photo through its camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixie_blender.scene.avatar import build_avatars
from tests.blender.render_avatar import _read_png, render_front, render_overlay

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def test_render_artefacts(bpy_mod, group, opts):
    rigs = build_avatars(bpy_mod.context, group.result_path, opts())
    ver = "{}{}".format(*bpy_mod.app.version[:2])
    front = render_front(rigs, ARTIFACTS / f"addon_render_front_bpy{ver}.png", size=(360, 200))
    rig = next(r for r in rigs if r["pixie_person_index"] == 0)
    overlay = render_overlay(rig, group.image_path, ARTIFACTS / f"addon_render_overlay_bpy{ver}.png")
    img = _read_png(front)
    assert img.shape[:2] == (200, 360)
    assert img[..., :3].std() > 0.02  # not a blank frame
    ov = _read_png(overlay)
    photo = _read_png(group.image_path)
    changed = np.abs(ov[..., :3] - photo[..., :3]).max(axis=2) > 0.05
    # the avatar is drawn where the result puts the person: around its 2-D joints
    ys, xs = np.nonzero(changed)
    kp = group.params["keypoints_2d"][0][:55]
    assert changed.mean() > 0.001
    assert kp[:, 0].min() - 20 < xs.mean() < kp[:, 0].max() + 20
    assert kp[:, 1].min() - 20 < ys.mean() < kp[:, 1].max() + 20
