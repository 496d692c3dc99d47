"""One-click FBX export of an animated avatar, checked by importing the file back: the bones move
the same way and the expression keys carry the same animation."""

from __future__ import annotations

import numpy as np
import pytest

from pixie_blender.io.constants import JOINT_NAMES
from pixie_blender.scene import animation
from pixie_blender.scene.sequence import SequenceImportOptions, import_sequence
from tests.blender.conftest import clear_file

FRAMES = (1, 4, 7, 10)


@pytest.fixture(scope="module")
def short_seq(data_dir):
    from tests.support.fake_sequence import make_sequence

    return make_sequence(data_dir / "fbxseq", num_tracks=1, num_frames=10, with_frames=False, stem="dance", seed=4)


def _heads(bpy_mod, arm, frames):
    out = []
    for f in frames:
        bpy_mod.context.scene.frame_set(f)
        bpy_mod.context.view_layer.update()
        out.append([(arm.matrix_world @ arm.pose.bones[n].head)[:] for n in JOINT_NAMES])
    return np.array(out)


def _expression_curves(body, frames):
    action = body.data.shape_keys.animation_data.action
    by_name = {fc.data_path: fc for fc in animation.action_fcurves(action)}
    return np.array([[by_name[f'key_blocks["Exp{i:03d}"].value'].evaluate(f) for i in range(50)] for f in frames])


def test_fbx_round_trip_keeps_the_animation(bpy_mod, short_seq, session_cache, tmp_path):
    rep = import_sequence(
        bpy_mod.context, short_seq.path, SequenceImportOptions(smoothing=0.0, cache_dir=str(session_cache))
    )
    arm = rep.rigs[0]
    body = next(c for c in arm.children if c.type == "MESH")
    heads = _heads(bpy_mod, arm, FRAMES)
    expr = _expression_curves(body, FRAMES)
    np.testing.assert_allclose(expr, short_seq.rows[0]["expression"][[f - 1 for f in FRAMES]], atol=1e-6)
    bpy_mod.context.view_layer.objects.active = arm
    path = tmp_path / "dance.fbx"
    assert bpy_mod.ops.pixie.export_fbx(filepath=str(path)) == {"FINISHED"}
    assert path.stat().st_size > 10_000

    clear_file(bpy_mod)
    # FBX stores frame f at time f / fps; Blender's importer adds one frame by default (anim_offset)
    assert bpy_mod.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0) == {"FINISHED"}
    arms = [o for o in bpy_mod.data.objects if o.type == "ARMATURE"]
    meshes = [o for o in bpy_mod.data.objects if o.type == "MESH"]
    assert len(arms) == 1 and len(meshes) == 1
    arm2, body2 = arms[0], meshes[0]
    assert set(JOINT_NAMES) <= {b.name for b in arm2.data.bones}
    assert arm2.animation_data is not None and arm2.animation_data.action is not None
    np.testing.assert_allclose(_heads(bpy_mod, arm2, FRAMES), heads, atol=1e-4)
    names = [kb.name for kb in body2.data.shape_keys.key_blocks]
    assert {f"Exp{i:03d}" for i in range(50)} <= set(names) and "Shape000" in names
    np.testing.assert_allclose(_expression_curves(body2, FRAMES), expr, atol=1e-4)


def test_export_needs_an_avatar(bpy_mod):
    bpy_mod.ops.mesh.primitive_cube_add()
    assert not bpy_mod.ops.pixie.export_fbx.poll()
