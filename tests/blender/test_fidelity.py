"""Fidelity on the full-size body: Blender's evaluated avatar (depsgraph) against the result's
``vertices`` mapped through the documented upright fix and axis mapping.

Target: max error ≤ 0.1 mm with pose correctives (baked or live). Without them the error is the
size of the correctives themselves; it is measured and written, with the others, to
``artifacts/addon_fidelity_bpy<ver>.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pixie_blender.scene.avatar import avatar_parts, build_avatars
from tests.blender._helpers import armature_space_vertices, expected_vertices

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
_RESULTS: dict = {}


@pytest.mark.parametrize("mode", ["BAKED", "LIVE", "NONE"])
def test_posed_mesh_matches_backend_vertices(bpy_mod, full, opts, mode):
    rigs = build_avatars(bpy_mod.context, full.result_path, opts(pose_correctives=mode, add_camera=False))
    _, body = avatar_parts(rigs[0])
    V = len(body.data.vertices)
    err = np.linalg.norm(armature_space_vertices(body) - expected_vertices(full.result_path), axis=1)
    corr = np.linalg.norm(full.params["pose_correctives"][0], axis=1)
    _RESULTS[mode] = {
        "vertices": V,
        "max_mm": float(err.max() * 1e3),
        "mean_mm": float(err.mean() * 1e3),
        "correctives_max_mm": float(corr.max() * 1e3),
    }
    ver = "{}{}".format(*bpy_mod.app.version[:2])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"addon_fidelity_bpy{ver}.json").write_text(
        json.dumps({"bpy": bpy_mod.app.version_string, **_RESULTS}, indent=2)
    )
    if mode == "NONE":
        assert err.max() > 1e-4  # the correctives matter
    else:
        assert err.max() <= 1e-4, f"max error {err.max() * 1e3:.4f} mm"
