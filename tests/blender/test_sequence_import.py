"""Import Image Sequence: one animated rig per track; the keyed rig at frame k equals per-frame
result k (bone rotations and expression values), raw or smoothed; missing frames are not keyed;
root translation, camera, background, scene fps and range; cancel and bad files leave nothing."""

from __future__ import annotations

import numpy as np
import pytest

from pixie_blender.io import convert, smoothing
from pixie_blender.io.constants import JOINT_NAMES
from pixie_blender.scene import animation
from pixie_blender.scene.sequence import SequenceImport, SequenceImportOptions, import_sequence
from tests.blender._helpers import id_counts

MISSING = tuple(range(8, 12))


@pytest.fixture(scope="module")
def seq(data_dir):
    from tests.support.fake_sequence import make_sequence

    return make_sequence(data_dir / "seq", num_tracks=2, num_frames=24, missing={1: MISSING}, stem="clip")


@pytest.fixture
def sopts(session_cache):
    def make(**kw):
        kw.setdefault("cache_dir", str(session_cache))
        return SequenceImportOptions(**kw)

    return make


def _pose_at(bpy_mod, arm, frame):
    bpy_mod.context.scene.frame_set(frame)
    q = np.array([arm.pose.bones[n].rotation_quaternion[:] for n in JOINT_NAMES])
    return convert.quat_wxyz_to_rotmat(q)


def _expression_at(body):
    kbs = body.data.shape_keys.key_blocks
    return np.array([kbs[f"Exp{i:03d}"].value for i in range(50)])


def _expected_rotations(full_pose):
    return np.stack([convert.blender_pose_rotations(r) for r in full_pose])


def test_keyed_rig_equals_per_frame_results(bpy_mod, seq, sopts):
    rep = import_sequence(bpy_mod.context, seq.path, sopts(smoothing=0.0))
    assert [r.name for r in rep.rigs] == ["clip_track2", "clip_track5"]
    for arm, rows in zip(rep.rigs, seq.rows, strict=True):
        body = next(c for c in arm.children if c.type == "MESH")
        expected = _expected_rotations(rows["full_pose"])
        for i, k in enumerate(rows["frames"]):
            np.testing.assert_allclose(_pose_at(bpy_mod, arm, int(k) + 1), expected[i], atol=2e-6, err_msg=f"{k}")
            np.testing.assert_allclose(_expression_at(body), rows["expression"][i], atol=2e-6)
        # shape: the track's fixed betas on the Shape keys, not animated
        kbs = body.data.shape_keys.key_blocks
        np.testing.assert_allclose([kbs[f"Shape{i:03d}"].value for i in range(10)], rows["track_betas"][:10], atol=1e-6)


def test_missing_frames_are_not_keyed_and_both_action_apis(bpy_mod, seq, sopts):
    rep = import_sequence(bpy_mod.context, seq.path, sopts(smoothing=0.0))
    arm = rep.rigs[1]
    action = arm.animation_data.action
    slotted = bpy_mod.app.version >= (4, 4, 0)
    assert animation.is_slotted(action) == slotted
    assert hasattr(action, "fcurves") == (bpy_mod.app.version < (5, 0, 0))
    fcs = animation.action_fcurves(action)
    assert len(fcs) == 55 * 4 + 3
    keyed = [kp.co[0] for kp in fcs[0].keyframe_points]
    assert keyed == [float(f + 1) for f in range(24) if f not in MISSING]
    # linear between keys, also across the gap (frames 9–12 have no key)
    v = {kp.co[0]: kp.co[1] for kp in fcs[0].keyframe_points}
    assert fcs[0].evaluate(1.5) == pytest.approx((v[1.0] + v[2.0]) / 2, abs=1e-6)
    assert fcs[0].evaluate(10.0) == pytest.approx(v[8.0] + (v[13.0] - v[8.0]) * 2 / 5, abs=1e-6)
    body = next(c for c in arm.children if c.type == "MESH")
    exp_fcs = animation.action_fcurves(body.data.shape_keys.animation_data.action)
    assert len(exp_fcs) == 50 and all(len(fc.keyframe_points) == 20 for fc in exp_fcs)
    assert list(arm["pixie_missing_frames"]) == [f + 1 for f in MISSING]
    if slotted:
        assert arm.animation_data.action_slot is not None


def test_smoothed_keys_equal_the_io_smoothing(bpy_mod, seq, sopts):
    rep = import_sequence(bpy_mod.context, seq.path, sopts(smoothing=0.7))
    arm = rep.rigs[1]
    rows = seq.rows[1]
    times = rows["frames"] / 30.0
    rots = _expected_rotations(rows["full_pose"])
    q = smoothing.smooth_quaternions(convert.rotmat_to_quat_wxyz(rots), times, 0.7)
    expr = smoothing.smooth_vectors(rows["expression"].astype(np.float32), times, 0.7, "expression")
    body = next(c for c in arm.children if c.type == "MESH")
    moved = 0.0
    for i in (0, 7, 8, 12, 19):
        k = int(rows["frames"][i]) + 1
        got = _pose_at(bpy_mod, arm, k)
        np.testing.assert_allclose(got, convert.quat_wxyz_to_rotmat(q[i]), atol=2e-6)
        np.testing.assert_allclose(_expression_at(body), expr[i], atol=2e-6)
        moved = max(moved, np.abs(got - rots[i]).max())
    assert moved > 1e-3  # smoothing changed the pose
    assert arm["pixie_smoothing"] == pytest.approx(0.7)


def test_root_translation_camera_and_scene(bpy_mod, seq, sopts):
    from bpy_extras.object_utils import world_to_camera_view

    scene = bpy_mod.context.scene
    scene.camera = None
    rep = import_sequence(bpy_mod.context, seq.path, sopts(smoothing=0.0))
    cam = rep.camera
    assert cam is not None and scene.camera == cam and cam.data.type == "PERSP"
    assert (scene.render.fps, scene.render.fps_base, scene.frame_start, scene.frame_end) == (30, 1.0, 1, 24)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (320, 240)
    bg = cam.data.background_images[0]
    assert bg.image.source == "SEQUENCE" and bg.image_user.frame_duration == 24
    assert bg.image_user.frame_start == 1 and bg.image_user.frame_offset == 0
    assert bg.image.filepath.endswith("frame_00001.png")
    for arm, rows in zip(rep.rigs, seq.rows, strict=True):
        assert arm["pixie_camera"] == cam
        for i in (0, 5, len(rows["frames"]) - 1):
            scene.frame_set(int(rows["frames"][i]) + 1)
            bpy_mod.context.view_layer.update()
            ndc = world_to_camera_view(scene, cam, arm.matrix_world @ arm.pose.bones["pelvis"].head)
            uv = (ndc.x * 320 - 0.5, (1 - ndc.y) * 240 - 0.5)
            # the pelvis is where the weak-perspective camera saw it (exact at the pelvis)
            np.testing.assert_allclose(uv, rows["keypoints_2d"][i, 0], atol=0.02)


def test_in_place_keys_no_translation(bpy_mod, seq, sopts):
    rep = import_sequence(bpy_mod.context, seq.path, sopts(smoothing=0.0, placement="IN_PLACE"))
    assert rep.camera is None and len(bpy_mod.data.cameras) == 0
    fcs = animation.action_fcurves(rep.rigs[0].animation_data.action)
    assert len(fcs) == 55 * 4 and not any(fc.data_path.endswith(".location") for fc in fcs)
    assert rep.rigs[1].location.x - rep.rigs[0].location.x == pytest.approx(0.6, abs=0.2)


def test_joints_are_not_stale_while_the_expression_plays(bpy_mod, seq, sopts):
    from pixie_blender.scene import joint_follow

    rep = import_sequence(bpy_mod.context, seq.path, sopts(smoothing=0.0))
    for f in (1, 9, 17):
        bpy_mod.context.scene.frame_set(f)
        assert not joint_follow.is_stale(rep.rigs[0])


def test_cancel_midway_leaves_nothing(bpy_mod, seq, sopts):
    before = id_counts()
    job = SequenceImport(bpy_mod.context, seq.path, sopts())
    steps = job.steps()
    fractions = [next(steps)[0] for _ in range(3)]  # planned, rigs built, first track keyed
    assert fractions[0] < fractions[1] < fractions[2] < 1.0
    assert len(bpy_mod.data.actions) > 0
    steps.close()  # what Esc does in the modal operator
    job.rollback()
    assert id_counts() == before


def test_operator_and_bad_files(bpy_mod, seq, tmp_path):
    from tests.support.fake_sequence import rewrite_sequence

    res = bpy_mod.ops.pixie.import_sequence(filepath=str(seq.path), smoothing=0.3)
    assert res == {"FINISHED"}
    assert len([o for o in bpy_mod.data.objects if o.get("pixie_role") == "rig"]) == 2
    before = id_counts()
    bad = rewrite_sequence(seq.path, seq.path.parent / "bad.pixie-seq.npz", header_update={"version": 7})
    with pytest.raises(RuntimeError, match="version 7"):
        bpy_mod.ops.pixie.import_sequence(filepath=str(bad))
    with pytest.raises(RuntimeError, match="use Import PIXIE Result"):
        from tests.support.fake_result import make_fixture

        still = make_fixture(tmp_path / "still", variant="small")
        bpy_mod.ops.pixie.import_sequence(filepath=str(still.result_path))
    assert id_counts() == before
    assert "PIXIE_OT_import_sequence" in dir(bpy_mod.types)


def test_video_source_becomes_a_movie_clip_background(bpy_mod, seq, sopts, tmp_path):
    cv2 = pytest.importorskip("cv2")
    from tests.support.fake_sequence import rewrite_sequence

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    for k in range(24):
        writer.write(np.full((240, 320, 3), 10 * k, np.uint8))
    writer.release()
    header = dict(seq.header["source"], kind="video", path=str(video))
    path = rewrite_sequence(seq.path, tmp_path / "clip.pixie-seq.npz", header_update={"source": header},
                            drop=("frame_paths",))
    import shutil

    shutil.copy(seq.package_path, tmp_path / seq.package_path.name)
    rep = import_sequence(bpy_mod.context, path, sopts(smoothing=0.0))
    bg = rep.camera.data.background_images[0]
    assert bg.source == "MOVIE_CLIP" and bg.clip.filepath == str(video)
    assert bg.clip.frame_start == 1 and bg.clip.frame_duration == 24
