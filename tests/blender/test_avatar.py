"""The avatar an import builds: rig, mesh, keys, weights, pose, material, camera, metadata."""

from __future__ import annotations

import numpy as np
import pytest

from pixie_blender.io import convert, schema
from pixie_blender.io.constants import JOINT_NAMES, PARENTS
from pixie_blender.scene.avatar import avatar_camera, avatar_parts, build_avatars
from tests.blender._helpers import armature_space_vertices, expected_vertices


@pytest.fixture
def alice(bpy_mod, small, opts):
    rigs = build_avatars(bpy_mod.context, small.result_path, opts())
    assert len(rigs) == 1
    return avatar_parts(rigs[0])


def test_objects_and_names(bpy_mod, alice):
    arm, body = alice
    assert arm.name == "alice" and body.name == "alice_body"
    assert arm.data.name == "alice_rig" and body.data.name == "alice_body"
    assert body.parent == arm and body.parent_type == "OBJECT"
    assert np.allclose(np.array(body.matrix_parent_inverse), np.eye(4))
    coll = arm.users_collection[0]
    assert coll.name == "alice" and body.name in coll.objects
    assert bpy_mod.context.view_layer.objects.active == arm and arm.select_get()
    mods = [m for m in body.modifiers if m.type == "ARMATURE"]
    assert len(mods) == 1 and mods[0].object == arm and mods[0].use_vertex_groups
    assert not mods[0].use_bone_envelopes and not mods[0].use_deform_preserve_volume
    assert all(p.use_smooth for p in body.data.polygons)


def test_bone_names_and_hierarchy(alice):
    arm, _ = alice
    bones = arm.data.bones
    assert len(bones) == 56 and {b.name for b in bones} == {"root", *JOINT_NAMES}
    assert bones["root"].parent is None and not bones["root"].use_deform
    for k, name in enumerate(JOINT_NAMES):
        parent = bones[name].parent.name
        assert parent == ("root" if PARENTS[k] < 0 else JOINT_NAMES[PARENTS[k]])
        assert bones[name].use_deform


def test_bone_frames_follow_the_official_convention(alice, small):
    """Head at the person's shaped joint, tail along +Z, roll 0: every bone's rest frame is the
    SMPL-X→Blender rotation, so SMPL-X rotations apply 1:1."""
    arm, _ = alice
    r = schema.read_result(small.result_path)
    J = convert.smplx_to_blender(r.persons[0].joints_rest)
    for k, name in enumerate(JOINT_NAMES):
        b = arm.data.bones[name]
        np.testing.assert_allclose(b.head_local, J[k], atol=1e-6)
        d = np.array(b.tail_local) - np.array(b.head_local)
        assert d[0] == 0 and d[1] == 0 and d[2] > 0
        np.testing.assert_allclose(np.array(b.matrix_local.to_3x3()), convert.SMPLX_TO_BLENDER, atol=1e-6)
    np.testing.assert_allclose(arm.data.bones["root"].head_local, (0, 0, 0))


def test_pose_on_pose_bones(alice, small):
    arm, _ = alice
    R = convert.blender_pose_rotations(small.params["full_pose"][0])
    for k, name in enumerate(JOINT_NAMES):
        pb = arm.pose.bones[name]
        assert pb.rotation_mode == "QUATERNION"
        np.testing.assert_allclose(np.array(pb.rotation_quaternion.to_matrix()), R[k], atol=1e-5)
        np.testing.assert_allclose(pb.location, (0, 0, 0))
    assert tuple(arm.pose.bones["root"].rotation_quaternion) == (1, 0, 0, 0)


def test_shape_key_names_values_and_ranges(alice, small):
    _, body = alice
    kbs = body.data.shape_keys.key_blocks
    names = [kb.name for kb in kbs]
    expected = (
        ["Basis"]
        + [f"Shape{i:03d}" for i in range(200)]
        + [f"Exp{i:03d}" for i in range(50)]
        + ["PoseCorrectives"]
    )
    assert names == expected
    assert body.data.shape_keys.use_relative
    betas, expr = small.params["betas"][0], small.params["expression"][0]
    for i in range(200):
        kb = kbs[f"Shape{i:03d}"]
        assert kb.value == pytest.approx(betas[i], abs=1e-6)
        assert kb.slider_min <= -5 and kb.slider_max >= 5 and kb.relative_key.name == "Basis"
    for i in range(50):
        kb = kbs[f"Exp{i:03d}"]
        assert kb.value == pytest.approx(expr[i], abs=1e-6)
        assert kb.slider_min <= -5 and kb.slider_max >= 5
    assert kbs["Basis"].value == 0.0
    assert kbs["PoseCorrectives"].value == 1.0


def test_shape_key_geometry(alice, small):
    _, body = alice
    kbs = body.data.shape_keys.key_blocks
    V = len(body.data.vertices)

    def co(kb):
        a = np.empty(V * 3, np.float32)
        kb.points.foreach_get("co", a)
        return a.reshape(V, 3)

    basis = co(kbs["Basis"])
    np.testing.assert_allclose(basis, convert.smplx_to_blender(small.package["v_template"]), atol=1e-6)
    np.testing.assert_allclose(
        co(kbs["Shape003"]) - basis, convert.smplx_to_blender(small.package["shapedirs"][:, :, 3]), atol=1e-6
    )
    np.testing.assert_allclose(
        co(kbs["Exp010"]) - basis, convert.smplx_to_blender(small.package["exprdirs"][:, :, 10]), atol=1e-6
    )
    np.testing.assert_allclose(
        co(kbs["PoseCorrectives"]) - basis,
        convert.smplx_to_blender(small.params["pose_correctives"][0]),
        atol=1e-6,
    )


def test_skin_weights_equal_the_package(alice, small):
    from pixie_blender.scene.skinning import read_weights

    _, body = alice
    assert [vg.name for vg in body.vertex_groups] == list(JOINT_NAMES)
    W = read_weights(body, list(JOINT_NAMES))
    np.testing.assert_allclose(W, small.package["weights"], atol=1e-7)


def test_uvs_equal_the_package(alice, small):
    _, body = alice
    me = body.data
    assert me.uv_layers.active is not None and me.uv_layers.active.name == "UVMap"
    uv = np.empty(len(me.loops) * 2, np.float32)
    me.uv_layers.active.data.foreach_get("uv", uv)
    expected = small.package["uv_coords"][small.package["uv_faces"].reshape(-1)]
    np.testing.assert_allclose(uv.reshape(-1, 2), expected, atol=1e-7)
    faces = np.empty(len(me.loops), np.int32)
    me.loops.foreach_get("vertex_index", faces)
    np.testing.assert_array_equal(faces.reshape(-1, 3), small.package["faces"])


def test_posed_mesh_matches_the_result(alice, small):
    _, body = alice
    err = np.abs(armature_space_vertices(body) - expected_vertices(small.result_path)).max()
    assert err < 1e-5  # 0.01 mm (target 0.1 mm)


def test_material_wiring(alice):
    _, body = alice
    mat = body.data.materials[0]
    assert mat.name == "alice_skin"
    nodes = mat.node_tree.nodes
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    out = next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
    assert out.inputs["Surface"].links[0].from_node == bsdf
    albedo = bsdf.inputs["Base Color"].links[0].from_node
    assert albedo.type == "TEX_IMAGE" and albedo.image.name == "alice_albedo"
    assert albedo.image.packed_file is not None and albedo.image.colorspace_settings.name == "sRGB"
    assert albedo.inputs["Vector"].links[0].from_node.uv_map == "UVMap"
    disp = out.inputs["Displacement"].links[0].from_node
    assert disp.type == "DISPLACEMENT" and disp.inputs["Midlevel"].default_value == 0.0
    dimg = disp.inputs["Height"].links[0].from_node.image
    assert dimg.name == "alice_displacement" and dimg.colorspace_settings.name == "Non-Color"
    assert dimg.is_float and dimg.packed_file is not None
    assert mat.displacement_method == "BOTH"


def test_texture_rows_are_flipped_for_blender(alice, small):
    """Row 0 of albedo_uv is the top of the texture (v = 1); Blender stores the bottom row first."""
    _, body = alice
    img = body.data.materials[0].node_tree.nodes["Albedo"].image
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    px = px.reshape(h, w, 4)
    np.testing.assert_allclose(px[-1, :, :3] * 255, small.params["albedo_uv"][0][0], atol=0.51)
    np.testing.assert_allclose(px[0, :, :3] * 255, small.params["albedo_uv"][0][-1], atol=0.51)


def test_plain_material_without_appearance(bpy_mod, group, opts):
    rigs = build_avatars(bpy_mod.context, group.result_path, opts(add_camera=False))
    _, body = avatar_parts(rigs[0])
    mat = body.data.materials[0]
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert not bsdf.inputs["Base Color"].is_linked
    assert not any(n.type == "TEX_IMAGE" for n in mat.node_tree.nodes)
    assert len(bpy_mod.data.images) == 0 and len(bpy_mod.data.cameras) == 0


def test_metadata(alice, small):
    arm, body = alice
    h = small.header
    assert arm["pixie_source_image"] == "alice.png"
    assert arm["pixie_source_image_resolved"] == str(small.image_path.resolve())
    assert arm["pixie_source_sha256"] == h["source"]["sha256"]
    assert arm["pixie_package_sha256"] == h["model"]["package"]["sha256"]
    assert arm["pixie_smplx_sha256"] == h["model"]["smplx_sha256"]
    assert arm["pixie_checkpoint_sha256"] == h["model"]["checkpoint_sha256"]
    assert arm["pixie_format_version"] == "1"
    assert arm["pixie_synthetic"] is True or arm["pixie_synthetic"] == 1
    mw = small.params["moderator_weights"][0]
    for row, part in enumerate(("head", "left_hand", "right_hand")):
        np.testing.assert_allclose(list(arm[f"pixie_moderator_{part}"]), mw[row], atol=1e-6)
    assert len(arm["pixie_light_sh"]) == 27
    assert body["pixie_package_sha256"] == arm["pixie_package_sha256"]
    assert arm["pixie_pose_correctives"] == "BAKED"


def test_camera_overlays_the_photo(bpy_mod, alice, small):
    """Posed joints seen through the avatar's camera land on the result's keypoints_2d."""
    from bpy_extras.object_utils import world_to_camera_view

    arm, _ = alice
    scene = bpy_mod.context.scene
    cam = avatar_camera(arm)
    assert cam is not None and cam.data.type == "ORTHO" and cam.parent == arm
    assert scene.camera == cam  # the empty file had no camera
    W, H = small.header["source"]["width"], small.header["source"]["height"]
    assert (scene.render.resolution_x, scene.render.resolution_y) == (W, H)
    bg = cam.data.background_images[0]
    assert cam.data.show_background_images and bg.image.filepath.endswith("alice.png")
    bpy_mod.context.view_layer.update()
    uv = []
    for name in JOINT_NAMES:
        world = arm.matrix_world @ arm.pose.bones[name].head
        ndc = world_to_camera_view(scene, cam, world)
        uv.append((ndc.x * W - 0.5, (1.0 - ndc.y) * H - 0.5))
    np.testing.assert_allclose(np.array(uv), small.params["keypoints_2d"][0][:55], atol=0.05)


def test_group_photo_side_by_side(bpy_mod, group, opts):
    rigs = build_avatars(bpy_mod.context, group.result_path, opts())
    assert sorted(r.name for r in rigs) == ["team_person1", "team_person2", "team_person3"]
    spans = []
    for rig in rigs:
        _, body = avatar_parts(rig)
        assert body.name == f"{rig.name}_body"
        v = armature_space_vertices(body) + np.array(rig.location)
        spans.append((v[:, 0].min(), v[:, 0].max(), rig))
        assert v[:, 2].min() == pytest.approx(0.0, abs=1e-5)  # standing on the ground
    spans.sort(key=lambda s: s[0])
    for a, b in zip(spans, spans[1:], strict=False):
        assert b[0] - a[1] == pytest.approx(0.3, abs=1e-4)
    # left to right as in the photo
    bx = [s[2]["pixie_bbox"][0] for s in spans]
    assert bx == sorted(bx)
    assert len({c for r in rigs for c in r.children if c.type == "CAMERA"}) == 3


def test_live_correctives(bpy_mod, small, opts):
    rigs = build_avatars(bpy_mod.context, small.result_path, opts(pose_correctives="LIVE", add_camera=False))
    arm, body = avatar_parts(rigs[0])
    kbs = body.data.shape_keys.key_blocks
    assert "PoseCorrectives" not in kbs
    assert [kb.name for kb in kbs][-486:] == [f"Pose{i:03d}" for i in range(486)]
    drivers = body.data.shape_keys.animation_data.drivers
    assert len(drivers) == 486
    assert all(fc.driver.is_simple_expression for fc in drivers)  # no Python auto-run needed
    assert all(v.targets[0].id == arm for fc in drivers for v in fc.driver.variables)
    err = np.abs(armature_space_vertices(body) - expected_vertices(small.result_path)).max()
    assert err < 1e-5
    # the drivers follow a new pose
    pb = arm.pose.bones["left_elbow"]
    pb.rotation_quaternion = (0.9, 0.3, 0.2, 0.1)
    bpy_mod.context.view_layer.update()
    R = convert.quat_wxyz_to_rotmat(np.array(pb.rotation_quaternion))
    j = JOINT_NAMES.index("left_elbow")
    got = [kbs[f"Pose{(j - 1) * 9 + e:03d}"].value for e in range(9)]  # drivers write back
    np.testing.assert_allclose(got, (R - np.eye(3)).ravel(), atol=1e-5)


def test_no_correctives(bpy_mod, small, opts):
    rigs = build_avatars(bpy_mod.context, small.result_path, opts(pose_correctives="NONE", add_camera=False))
    _, body = avatar_parts(rigs[0])
    assert "PoseCorrectives" not in body.data.shape_keys.key_blocks
    err = np.abs(armature_space_vertices(body) - expected_vertices(small.result_path)).max()
    assert err > 1e-5  # the correctives matter


def test_from_any_mode_and_selection(bpy_mod, small, opts):
    ctx = bpy_mod.context
    bpy_mod.ops.mesh.primitive_cube_add()
    cube = ctx.active_object
    bpy_mod.ops.object.mode_set(mode="EDIT")
    assert ctx.mode == "EDIT_MESH"
    rigs = build_avatars(ctx, small.result_path, opts(add_camera=False))
    assert ctx.mode == "OBJECT" and ctx.view_layer.objects.active == rigs[0]
    assert not cube.select_get()
    # pose mode on an avatar, then import again
    ctx.view_layer.objects.active = rigs[0]
    bpy_mod.ops.object.mode_set(mode="POSE")
    rigs2 = build_avatars(ctx, small.result_path, opts(add_camera=False))
    assert ctx.mode == "OBJECT" and rigs2[0].name == "alice.001"


def test_operator(bpy_mod, small, group):
    res = bpy_mod.ops.pixie.import_result(filepath=str(small.result_path), add_camera=False)
    assert res == {"FINISHED"}
    assert "alice" in bpy_mod.data.objects
    # several files at once (as the file browser and drag and drop pass them): side by side
    res = bpy_mod.ops.pixie.import_result(
        directory=str(small.result_path.parent.parent),
        add_camera=False,
        files=[
            {"name": f"{small.result_path.parent.name}/{small.result_path.name}"},
            {"name": f"{group.result_path.parent.name}/{group.result_path.name}"},
        ],
    )
    assert res == {"FINISHED"}
    rigs = [o for o in bpy_mod.data.objects if o.get("pixie_role") == "rig"]
    assert len(rigs) == 5
    new = [r for r in rigs if r.name != "alice"]
    xs = sorted(r.location.x for r in new)
    assert len(set(np.round(xs, 3))) == 4


def test_menu_and_file_handler_registered(bpy_mod):
    assert hasattr(bpy_mod.types, "PIXIE_FH_result")
    assert bpy_mod.types.PIXIE_FH_result.bl_import_operator == "pixie.import_result"
    funcs = bpy_mod.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    assert any(getattr(f, "__name__", "") == "menu_import" for f in funcs)
    assert "UNDO" in bpy_mod.types.PIXIE_OT_import_result.bl_options


def test_import_some_persons(bpy_mod, group, opts):
    rigs = build_avatars(bpy_mod.context, group.result_path, opts(add_camera=False, persons=(1,)))
    assert [r.name for r in rigs] == ["team_person2"]
    assert rigs[0]["pixie_person_index"] == 1 and rigs[0]["pixie_num_persons"] == 3
