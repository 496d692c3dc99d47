"""Still images, "Place as in photo": the people of one image stand where the photo shows them,
seen through one perspective camera."""

from __future__ import annotations

import numpy as np
import pytest

from pixie_blender.io import convert, schema
from pixie_blender.io.constants import JOINT_NAMES
from pixie_blender.scene.avatar import avatar_parts, build_avatars, build_many


@pytest.fixture(scope="module")
def pair(data_dir):
    from tests.support.fake_result import make_fixture

    return make_fixture(data_dir / "pair", variant="small", num_persons=2, seed=21, stem="pair")


def _project(scene, cam, world_points):
    from bpy_extras.object_utils import world_to_camera_view

    W, H = scene.render.resolution_x, scene.render.resolution_y
    out = []
    for p in world_points:
        ndc = world_to_camera_view(scene, cam, p)
        out.append((ndc.x * W - 0.5, (1.0 - ndc.y) * H - 0.5))
    return np.array(out)


def _posed_joints_world(arm):
    return [arm.matrix_world @ arm.pose.bones[n].head for n in JOINT_NAMES]


def test_two_people_reproject_onto_their_keypoints_through_one_camera(bpy_mod, pair, opts):
    scene = bpy_mod.context.scene
    scene.cursor.location = (1.0, -2.0, 0.5)
    rigs = build_avatars(bpy_mod.context, pair.result_path, opts(placement="PHOTO"))
    cams = [o for o in bpy_mod.data.objects if o.type == "CAMERA"]
    assert len(cams) == 1 and cams[0].data.type == "PERSP" and cams[0].parent is None
    cam = cams[0]
    assert scene.camera == cam and (scene.render.resolution_x, scene.render.resolution_y) == (640, 480)
    assert cam.data.background_images[0].image.filepath.endswith("pair.png")
    bpy_mod.context.view_layer.update()
    result = schema.read_result(pair.result_path)
    f = np.hypot(640, 480)
    for arm, person in zip(sorted(rigs, key=lambda r: r["pixie_person_index"]), result.persons, strict=True):
        uv = _project(scene, cam, _posed_joints_world(arm))
        kp = pair.params["keypoints_2d"][person.index][:55]
        # the pelvis, where weak and full perspective agree by construction, lands exactly
        np.testing.assert_allclose(uv[0], kp[0], atol=0.05)
        # every joint is where an independent pinhole projection of the PIXIE-frame joints puts it
        t = np.array(arm["pixie_transl"])
        j = pair.params["joints"][person.index][:55].astype(np.float64) + t
        pinhole = f * j[:, :2] / j[:, 2:] + np.array([319.5, 239.5])
        np.testing.assert_allclose(uv, pinhole, atol=0.05)
        # so they land on the photo's keypoints, exactly at the pelvis and elsewhere up to the
        # perspective term of their depth r_z relative to the pelvis at distance Z = f/a:
        # u − u_weak = −(u_weak − cx)·r_z / (Z + r_z)  (the same for v)
        a = pair.params["cam_image_px"][person.index][0]
        r_z = pair.params["joints"][person.index][:55, 2].astype(np.float64) - person.joints_rest[0, 2]
        expected = kp - (kp - np.array([319.5, 239.5])) * (r_z / (f / a + r_z))[:, None]
        np.testing.assert_allclose(uv, expected, atol=0.05)
        err = np.linalg.norm(uv - kp, axis=1)
        assert err.max() < 0.06 * np.ptp(kp[:, 1])  # measured: ≤ 2.3 % / 5.8 % of the two heights
    # they stand at different places, not side by side at the cursor
    locs = np.array([r.location[:] for r in rigs])
    assert np.ptp(locs[:, 1]) > 0.05 or np.ptp(locs[:, 0]) > 0.3


def test_the_group_stands_at_the_cursor(bpy_mod, pair, opts):
    from tests.blender._helpers import armature_space_vertices

    scene = bpy_mod.context.scene
    scene.cursor.location = (2.0, 3.0, 0.25)
    rigs = build_avatars(bpy_mod.context, pair.result_path, opts(placement="PHOTO", add_camera=False))
    bpy_mod.context.view_layer.update()
    lowest = min((armature_space_vertices(avatar_parts(r)[1]) + np.array(r.location[:]))[:, 2].min() for r in rigs)
    assert lowest == pytest.approx(0.25, abs=1e-4)
    pelvis = np.array([(r.matrix_world @ r.pose.bones["pelvis"].head)[:] for r in rigs])
    np.testing.assert_allclose(pelvis[:, :2].mean(axis=0), [2.0, 3.0], atol=1e-4)
    assert len(bpy_mod.data.cameras) == 0


def test_operator_default_is_as_in_photo_and_in_place_stays(bpy_mod, pair, small):
    res = bpy_mod.ops.pixie.import_result(filepath=str(pair.result_path))
    assert res == {"FINISHED"}
    cams = [o for o in bpy_mod.data.objects if o.type == "CAMERA"]
    assert [c.data.type for c in cams] == ["PERSP"] and cams[0].name == "pair_camera"
    rigs = [o for o in bpy_mod.data.objects if o.get("pixie_role") == "rig"]
    assert {r["pixie_placement"] for r in rigs} == {"PHOTO"}
    res = bpy_mod.ops.pixie.import_result(filepath=str(small.result_path), placement="IN_PLACE")
    assert res == {"FINISHED"}
    alice = bpy_mod.data.objects["alice"]
    assert alice["pixie_placement"] == "IN_PLACE"
    assert [c.data.type for c in alice.children if c.type == "CAMERA"] == ["ORTHO"]


def test_focal_length_sets_depth_and_perspective_is_the_only_error(bpy_mod, pair, opts):
    """A longer lens puts the same image farther away (depth scales with the focal length), and the
    re-projection error, which is perspective only, shrinks with it."""
    scene = bpy_mod.context.scene
    errors = []
    for f in (800.0, 8000.0):
        from tests.blender.conftest import clear_file

        clear_file(bpy_mod)
        rigs = build_avatars(bpy_mod.context, pair.result_path, opts(placement="PHOTO", focal_px=f))
        cam = next(o for o in bpy_mod.data.objects if o.type == "CAMERA")
        assert cam.data.lens == pytest.approx(36.0 * f / 640.0)
        r0 = min(rigs, key=lambda r: r["pixie_person_index"])
        a = pair.params["cam_image_px"][0][0]
        j0 = pair.params["joints_rest"][0][0]
        assert r0["pixie_transl"][2] == pytest.approx(f / a - j0[2], rel=1e-5)
        bpy_mod.context.view_layer.update()
        uv = _project(scene, cam, _posed_joints_world(r0))
        errors.append(np.abs(uv - pair.params["keypoints_2d"][0][:55]).max())
    assert errors[1] < 0.15 * errors[0], errors


def test_several_files_as_in_photo_do_not_overlap(bpy_mod, pair, group, opts):
    rep = build_many(bpy_mod.context, [pair.result_path, group.result_path], opts(placement="PHOTO"))
    assert len(rep.rigs) == 5 and len([o for o in bpy_mod.data.objects if o.type == "CAMERA"]) == 2
    from tests.blender._helpers import armature_space_vertices

    bpy_mod.context.view_layer.update()
    span = {}
    for r in rep.rigs:
        x = armature_space_vertices(avatar_parts(r)[1])[:, 0] + r.location.x
        key = r["pixie_source_name"]
        lo, hi = span.get(key, (np.inf, -np.inf))
        span[key] = (min(lo, x.min()), max(hi, x.max()))
    assert span["pair"][1] < span["team"][0]  # the second photo's group starts right of the first


def test_photo_frame_mapping_is_the_rig_convention():
    """CAMERA_TO_WORLD is the upright fix followed by the SMPL-X → Blender map, a rotation."""
    from pixie_blender.io import placement

    np.testing.assert_allclose(placement.CAMERA_TO_WORLD, convert.SMPLX_TO_BLENDER @ convert.UPRIGHT_FIX)
    assert np.linalg.det(placement.CAMERA_TO_WORLD) == pytest.approx(1.0)
