"""Joints follow the shape, re-baking correctives, the photo camera, and the template cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pixie_blender.io import convert, schema
from pixie_blender.io.constants import JOINT_NAMES
from pixie_blender.scene import joint_follow, template_cache
from pixie_blender.scene.avatar import (
    ImportOptions,
    avatar_parts,
    build_avatars,
    build_from_prepared,
    prepare,
)
from tests.blender._helpers import armature_space_vertices, expected_vertices
from tests.support.fake_result import lbs


def _expected_joints(small, betas, expr):
    pkg = small.package
    J = (
        pkg["joints_template"].astype(np.float64)
        + pkg["joints_shapedirs"].astype(np.float64) @ betas
        + pkg["joints_exprdirs"].astype(np.float64) @ expr
    )
    return convert.smplx_to_blender(J)


def _heads(arm):
    return np.array([arm.data.bones[n].head_local[:] for n in JOINT_NAMES])


def _posed_lbs(small, arm, body, betas, expr, correctives=True):
    """Numpy LBS of the avatar's current pose bones (armature space) for checking Blender."""
    pkg = small.package
    from pixie_blender.scene.correctives import local_rotations

    R = local_rotations(arm)
    v_shaped = (
        pkg["v_template"]
        + pkg["shapedirs"].astype(np.float64) @ betas
        + pkg["exprdirs"].astype(np.float64) @ expr
    )
    J = (
        pkg["joints_template"]
        + pkg["joints_shapedirs"].astype(np.float64) @ betas
        + pkg["joints_exprdirs"].astype(np.float64) @ expr
    )
    posedirs = pkg["posedirs"] if correctives else np.zeros_like(pkg["posedirs"])
    v, _, _ = lbs(v_shaped, J, R, pkg["parents"], pkg["weights"], posedirs)
    return convert.smplx_to_blender(v)


def test_joints_follow_shape_keys(bpy_mod, small, opts):
    arm, body = avatar_parts(build_avatars(bpy_mod.context, small.result_path, opts(add_camera=False))[0])
    kbs = body.data.shape_keys.key_blocks
    betas = small.params["betas"][0].astype(np.float64).copy()
    expr = small.params["expression"][0].astype(np.float64).copy()
    np.testing.assert_allclose(_heads(arm), _expected_joints(small, betas, expr), atol=1e-6)
    assert not joint_follow.is_stale(arm)

    kbs["Shape000"].value = 3.0
    kbs["Exp002"].value = -2.0
    betas[0], expr[2] = 3.0, -2.0
    assert joint_follow.is_stale(arm)
    # the msgbus notification + debounce timer end in flush(); headless there is no event loop
    joint_follow._on_shape_key_value()  # registers the debounce timer as the msgbus callback does
    assert bpy_mod.app.timers.is_registered(joint_follow.flush)
    bpy_mod.app.timers.unregister(joint_follow.flush)
    assert joint_follow.flush() is None
    assert not joint_follow.is_stale(arm)
    np.testing.assert_allclose(_heads(arm), _expected_joints(small, betas, expr), atol=1e-6)
    # the rest pose changed, the pose stayed: the mesh is the LBS of the new shape
    bpy_mod.context.view_layer.update()
    got = armature_space_vertices(body)
    # the baked correctives still hold the imported pose's offsets, which LBS reproduces
    np.testing.assert_allclose(got, _posed_lbs(small, arm, body, betas, expr), atol=1e-5)


def test_auto_update_can_be_switched_off(bpy_mod, small, opts):
    from pixie_blender.preferences import get_preferences

    arm, body = avatar_parts(build_avatars(bpy_mod.context, small.result_path, opts(add_camera=False))[0])
    prefs = get_preferences()
    prefs.auto_update_joints = False
    try:
        body.data.shape_keys.key_blocks["Shape001"].value = 2.5
        joint_follow.flush()
        assert joint_follow.is_stale(arm)
        # the button still works
        bpy_mod.context.view_layer.objects.active = body
        assert bpy_mod.ops.pixie.update_joints() == {"FINISHED"}
        assert not joint_follow.is_stale(arm)
    finally:
        prefs.auto_update_joints = True


def test_update_keeps_pose_mode(bpy_mod, small, opts):
    ctx = bpy_mod.context
    arm, body = avatar_parts(build_avatars(ctx, small.result_path, opts(add_camera=False))[0])
    ctx.view_layer.objects.active = arm
    bpy_mod.ops.object.mode_set(mode="POSE")
    body.data.shape_keys.key_blocks["Shape004"].value = -1.5
    joint_follow.flush()
    assert not joint_follow.is_stale(arm)
    assert ctx.mode == "POSE" and ctx.view_layer.objects.active == arm


def test_rebake_correctives_after_reposing(bpy_mod, small, opts, tmp_path):
    ctx = bpy_mod.context
    cache = tmp_path / "cache"
    arm, body = avatar_parts(
        build_avatars(ctx, small.result_path, opts(add_camera=False, cache_dir=str(cache)))[0]
    )
    betas = small.params["betas"][0].astype(np.float64)
    expr = small.params["expression"][0].astype(np.float64)
    arm.pose.bones["right_knee"].rotation_quaternion = (0.8, 0.6, 0.0, 0.0)
    arm.pose.bones["jaw"].rotation_quaternion = (0.98, 0.2, 0.0, 0.0)
    ctx.view_layer.update()
    stale = np.abs(armature_space_vertices(body) - _posed_lbs(small, arm, body, betas, expr)).max()
    assert stale > 1e-5
    ctx.view_layer.objects.active = arm
    from pixie_blender.scene import correctives

    # the package is found in the add-on cache when the result file's folder is gone
    result_file = arm["pixie_result_file"]
    arm["pixie_result_file"] = "/nonexistent/alice.pixie.npz"
    pkg = correctives.locate_package(arm, [cache])
    assert pkg.path.parent == cache / "packages"
    arm["pixie_result_file"] = result_file
    correctives.bake(arm, body, pkg)
    ctx.view_layer.update()
    err = np.abs(armature_space_vertices(body) - _posed_lbs(small, arm, body, betas, expr)).max()
    assert err < 1e-5
    assert bpy_mod.ops.pixie.bake_pose_correctives() == {"FINISHED"}  # next to the result file


def test_use_photo_camera(bpy_mod, small, opts):
    ctx = bpy_mod.context
    bpy_mod.ops.object.camera_add()
    other = ctx.active_object
    ctx.scene.camera = other
    arm, _ = avatar_parts(build_avatars(ctx, small.result_path, opts())[0])
    assert ctx.scene.camera == other  # an existing scene camera is kept
    ctx.view_layer.objects.active = arm
    assert bpy_mod.ops.pixie.use_photo_camera() == {"FINISHED"}
    assert ctx.scene.camera.parent == arm
    assert ctx.scene.render.resolution_x == small.header["source"]["width"]


def test_template_cache_first_and_later(bpy_mod, small, tmp_path):
    ctx = bpy_mod.context
    cache = tmp_path / "cache"
    opts = ImportOptions(cache_dir=str(cache), add_camera=False)
    rep1 = build_from_prepared(ctx, prepare(small.result_path, opts), opts)
    assert rep1.template_built
    templates = list((cache / "templates").glob("*.blend"))
    assert len(templates) == 1
    pkg_sha = small.header["model"]["package"]["sha256"]
    assert (cache / "packages" / f"{pkg_sha}.npz").is_file()
    rep2 = build_from_prepared(ctx, prepare(small.result_path, opts), opts)
    assert not rep2.template_built
    assert len(bpy_mod.data.libraries) == 0  # appending leaves no library behind
    _, b1 = avatar_parts(rep1.rigs[0])
    _, b2 = avatar_parts(rep2.rigs[0])
    np.testing.assert_allclose(armature_space_vertices(b1), armature_space_vertices(b2), atol=1e-7)
    # a damaged cache file is rebuilt
    templates[0].write_bytes(b"garbage")
    rep3 = build_from_prepared(ctx, prepare(small.result_path, opts), opts)
    assert rep3.template_built
    err = np.abs(
        armature_space_vertices(avatar_parts(rep3.rigs[0])[1]) - expected_vertices(small.result_path)
    ).max()
    assert err < 1e-5


def test_result_imports_without_package_once_cached(bpy_mod, small, tmp_path):
    cache = tmp_path / "cache"
    opts = ImportOptions(cache_dir=str(cache), add_camera=False)
    build_avatars(bpy_mod.context, small.result_path, opts)
    alone = tmp_path / "laptop"
    alone.mkdir()
    res = shutil.copy(small.result_path, alone / "alice.pixie.npz")
    rigs = build_avatars(bpy_mod.context, res, opts)
    assert len(rigs) == 1
    # and not without the cache
    with pytest.raises(schema.PackageNotFoundError):
        build_avatars(bpy_mod.context, res, ImportOptions(use_cache=False, add_camera=False))
    assert template_cache.clear_cache(cache) == 2
    with pytest.raises(schema.PackageNotFoundError):
        build_avatars(bpy_mod.context, res, opts)


def test_without_cache_several_persons(bpy_mod, group):
    opts = ImportOptions(use_cache=False, add_camera=False, pose_correctives="LIVE")
    rigs = build_avatars(bpy_mod.context, group.result_path, opts)
    assert len(rigs) == 3
    for i, rig in enumerate(sorted(rigs, key=lambda r: r["pixie_person_index"])):
        arm, body = avatar_parts(rig)
        for fc in body.data.shape_keys.animation_data.drivers:
            assert all(v.targets[0].id == arm for v in fc.driver.variables)
        err = np.abs(armature_space_vertices(body) - expected_vertices(group.result_path, i)).max()
        assert err < 1e-5
    assert len(bpy_mod.data.objects) == 6  # no template left over


def test_hidden_rig_is_left_alone(bpy_mod, small, opts):
    arm, body = avatar_parts(build_avatars(bpy_mod.context, small.result_path, opts(add_camera=False))[0])
    body.data.shape_keys.key_blocks["Shape002"].value = 1.0
    arm.hide_set(True)
    assert joint_follow.flush() is None  # no error from edit mode on a hidden object
    assert joint_follow.is_stale(arm)
    bpy_mod.context.view_layer.objects.active = body
    with pytest.raises(RuntimeError, match="must be visible"):
        bpy_mod.ops.pixie.update_joints()
    arm.hide_set(False)
    joint_follow.flush()
    assert not joint_follow.is_stale(arm)
