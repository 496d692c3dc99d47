"""Face appearance in Blender: the material graph, real displaced geometry in Cycles that stays on the
face and follows the rig, the EEVEE normal-map branch, the SH world and texture storage.

The avatar comes from a synthetic result whose displacement map lies on the face only (as the
backend writes it): "wrinkles" of ±2 mm inside the synthetic face mask, in the mannequin's UVs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixie_blender.scene import detail, materials
from pixie_blender.scene.avatar import avatar_parts, build_avatars
from tests.blender._helpers import armature_space_vertices, expected_vertices


@pytest.fixture(scope="module")
def face_fx(data_dir):
    from tests.support.fake_result import make_fixture

    return make_fixture(
        data_dir / "face",
        variant="small",
        num_persons=1,
        seed=31,
        with_albedo=True,
        with_displacement="face",
        stem="carol",
        pose_scale=0.2,
    )


def _build(bpy, fx, opts, **kw):
    rigs = build_avatars(bpy.context, fx.result_path, opts(add_camera=False, **kw))
    return avatar_parts(rigs[0])


def _links_into(node, socket: str):
    return [lk.from_node for lk in node.inputs[socket].links]


def test_material_graph_is_wired(bpy_mod):
    rng = np.random.default_rng(0)
    albedo = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
    disp = rng.normal(scale=1e-3, size=(8, 16)).astype(np.float32)
    normal = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
    mat = materials.create_material("m", albedo, disp, image_prefix="p", normal_map_uv=normal)
    nodes = mat.node_tree.nodes
    out_c, out_e = nodes[materials.CYCLES_OUTPUT], nodes[materials.EEVEE_OUTPUT]
    assert out_c.target == "CYCLES" and out_e.target == "EEVEE"
    bsdf_c, bsdf_e = nodes[materials.CYCLES_BSDF], nodes[materials.EEVEE_BSDF]
    assert _links_into(out_c, "Surface") == [bsdf_c] and _links_into(out_e, "Surface") == [bsdf_e]
    tex = nodes[materials.ALBEDO_NODE]
    assert _links_into(bsdf_c, "Base Color") == [tex] and _links_into(bsdf_e, "Base Color") == [tex]
    assert tex.image.name == "p_albedo" and tex.image.colorspace_settings.name == "sRGB" and tex.image.packed_file
    # Cycles: true displacement, metres, midlevel 0
    disp_node = _links_into(out_c, "Displacement")[0]
    assert disp_node.type == "DISPLACEMENT" and disp_node.inputs["Midlevel"].default_value == 0.0
    assert disp_node.inputs["Scale"].default_value == 1.0 and disp_node.space == "OBJECT"
    dimg = _links_into(disp_node, "Height")[0].image
    assert dimg.name == "p_displacement" and dimg.is_float and dimg.colorspace_settings.name == "Non-Color"
    px = np.empty(16 * 8 * 4, np.float32)
    dimg.pixels.foreach_get(px)
    np.testing.assert_allclose(px.reshape(8, 16, 4)[::-1, :, 0], disp, atol=1e-7)  # negative values kept
    assert mat.displacement_method == "BOTH" and not out_e.inputs["Displacement"].is_linked
    # EEVEE: the tangent-space normal map, no displacement (the detail once per engine)
    nmap = _links_into(bsdf_e, "Normal")[0]
    assert nmap.type == "NORMAL_MAP" and nmap.space == "TANGENT" and nmap.uv_map == "UVMap"
    nimg = _links_into(nmap, "Color")[0].image
    assert nimg.name == "p_normal" and nimg.colorspace_settings.name == "Non-Color" and not nimg.is_float
    assert not bsdf_c.inputs["Normal"].is_linked
    uv_users = [n for n in nodes if n.type == "TEX_IMAGE"]
    assert all(_links_into(n, "Vector")[0].uv_map == "UVMap" for n in uv_users)
    # without a normal map, EEVEE bumps with the displacement map (heights in metres)
    mat2 = materials.create_material("m2", albedo, disp)
    bump = _links_into(mat2.node_tree.nodes[materials.EEVEE_BSDF], "Normal")[0]
    assert bump.type == "BUMP" and bump.inputs["Distance"].default_value == 1.0
    assert _links_into(bump, "Height")[0].name == materials.DISPLACEMENT_NODE


def test_import_with_detail_keeps_the_rig_shape_keys_and_correctives(bpy_mod, face_fx, opts):
    arm, body = _build(bpy_mod, face_fx, opts)
    kinds = [m.type for m in body.modifiers]
    assert kinds[-1] == "SUBSURF" and "ARMATURE" in kinds[:-1]  # the detail after the rig
    mod = body.modifiers[detail.MODIFIER]
    assert mod.subdivision_type == "SIMPLE" and mod.levels == 0 and detail.adaptive_enabled(body)
    if bpy_mod.app.version < (5, 0, 0):
        assert bpy_mod.context.scene.cycles.feature_set == "EXPERIMENTAL"
    mat = body.data.materials[0]
    assert mat.node_tree.nodes[materials.CYCLES_OUTPUT].inputs["Displacement"].is_linked
    # the posed coarse mesh is still exactly the result's
    err = np.abs(armature_space_vertices(body) - expected_vertices(face_fx.result_path)).max()
    assert err < 1e-5
    keys = body.data.shape_keys.key_blocks
    assert "PoseCorrectives" in keys and keys["PoseCorrectives"].value == 1.0
    before = armature_space_vertices(body)
    keys["Shape000"].value += 1.0
    assert np.abs(armature_space_vertices(body) - before).max() > 1e-3  # shape keys still act
    keys["Shape000"].value -= 1.0


def test_detail_modes_and_no_detail_person(bpy_mod, face_fx, group, opts):
    _, body = _build(bpy_mod, face_fx, opts, detail="SHADING")
    assert detail.MODIFIER not in body.modifiers and body.data.materials[0].displacement_method == "BUMP"
    _, body = _build(bpy_mod, face_fx, opts, detail="NONE")
    nodes = body.data.materials[0].node_tree.nodes
    assert materials.DISPLACEMENT_NODE not in nodes and detail.MODIFIER not in body.modifiers
    rigs = build_avatars(bpy_mod.context, group.result_path, opts(add_camera=False))  # no displacement arrays
    assert all(detail.MODIFIER not in avatar_parts(r)[1].modifiers for r in rigs)
    with pytest.raises(ValueError, match="detail must be one of"):
        build_avatars(bpy_mod.context, face_fx.result_path, opts(detail="MAYBE"))


def test_sh_world_lighting(bpy_mod, face_fx, opts):
    from pixie_blender.io import schema
    from pixie_blender.io.lighting import sh_environment
    from pixie_blender.scene.world import ENV_NODE

    _build(bpy_mod, face_fx, opts, world_lighting=True)
    world = bpy_mod.context.scene.world
    assert world is not None and world.name == "carol_light"
    env = world.node_tree.nodes[ENV_NODE]
    bg = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
    assert bg.inputs["Color"].links[0].from_node == env
    w, h = env.image.size
    px = np.empty(w * h * 4, np.float32)
    env.image.pixels.foreach_get(px)
    light = schema.read_result(face_fx.result_path).persons[0].light
    np.testing.assert_allclose(px.reshape(h, w, 4)[::-1, :, :3], sh_environment(light, w, h), atol=1e-6)


def test_textures_saved_next_to_the_blend(bpy_mod, face_fx, opts, tmp_path):
    blend = tmp_path / "scene.blend"
    bpy_mod.ops.wm.save_as_mainfile(filepath=str(blend))
    try:
        _, body = _build(bpy_mod, face_fx, opts, image_storage="FILES")
        nodes = body.data.materials[0].node_tree.nodes
        albedo = nodes[materials.ALBEDO_NODE].image
        disp = nodes[materials.DISPLACEMENT_NODE].image
        assert albedo.packed_file is None and albedo.filepath.startswith("//scene_textures")
        assert (tmp_path / "scene_textures" / "carol_albedo.png").is_file()
        assert (tmp_path / "scene_textures" / "carol_displacement.exr").is_file() and disp.is_float
        px = np.empty(disp.size[0] * disp.size[1] * 4, np.float32)
        disp.pixels.foreach_get(px)
        assert np.abs(px).max() > 1e-3  # reloaded from the file with its values
    finally:
        bpy_mod.ops.wm.read_homefile(use_empty=True)


# ------------------------------------------------------------------ Cycles renders
def _support_material(bpy, fx, name="support"):
    """Emission 1 where the displacement map is not zero (dilated by two texels), else 0."""
    from pixie_blender.io import schema

    d = schema.read_result(fx.result_path).persons[0].displacement_uv
    m = _dilate(np.abs(d) > 0, 2)
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    nt = mat.node_tree
    out = next(n for n in nt.nodes if n.type == "OUTPUT_MATERIAL")
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = materials.make_image("support", m.astype(np.float32), is_data=True)
    tex.interpolation = "Closest"
    uv = nt.nodes.new("ShaderNodeUVMap")
    uv.uv_map = "UVMap"
    em = nt.nodes.new("ShaderNodeEmission")
    nt.links.new(uv.outputs["UV"], tex.inputs["Vector"])
    nt.links.new(tex.outputs["Color"], em.inputs["Color"])
    nt.links.new(em.outputs["Emission"], out.inputs["Surface"])
    return mat


def _dilate(m: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        m = m | np.roll(m, 1, 0) | np.roll(m, -1, 0) | np.roll(m, 1, 1) | np.roll(m, -1, 1)
    return m


def _true_normal_shading(mat):
    """Replace the Cycles surface by an emission of the geometric ("true") normal, so the renders
    show geometry only: no lights, no shadows, no bump (the displacement output stays)."""
    nt = mat.node_tree
    out = nt.nodes[materials.CYCLES_OUTPUT]
    old = out.inputs["Surface"].links[0].from_socket
    geo = nt.nodes.new("ShaderNodeNewGeometry")
    dot = nt.nodes.new("ShaderNodeVectorMath")
    dot.operation = "DOT_PRODUCT"
    dot.inputs[1].default_value = (0.45, -0.75, 0.48)  # towards the camera (−Y), up and to the side
    em = nt.nodes.new("ShaderNodeEmission")
    nt.links.new(geo.outputs["True Normal"], dot.inputs[0])
    nt.links.new(dot.outputs["Value"], em.inputs["Strength"])
    nt.links.new(em.outputs["Emission"], out.inputs["Surface"])
    return lambda: (nt.links.new(old, out.inputs["Surface"]), [nt.nodes.remove(n) for n in (geo, dot, em)])


def _detail_difference(bpy, scene, body, support_mat):
    """(pixels changed by the displacement, pixels showing displaced texels) for the current pose.

    The renders show the geometric normal only (no lights or shadows). The support is dilated by
    three pixels: the ±2 mm relief (0.6 px here) moves silhouettes and changes what shows through
    the eye openings and the mouth slit, which the mask leaves out."""
    from tests.blender.cycles_render import render_array

    mat = body.data.materials[0]
    scale = mat.node_tree.nodes[materials.CYCLES_OUTPUT].inputs["Displacement"].links[0].from_node.inputs["Scale"]
    restore = _true_normal_shading(mat)
    try:
        with_detail = render_array(scene)
        scale.default_value = 0.0  # the same mesh, not displaced
        without = render_array(scene)
    finally:
        scale.default_value = 1.0
        restore()
    body.data.materials[0] = support_mat
    support = _dilate(render_array(scene)[..., 0] > 0.5, 3)
    body.data.materials[0] = mat
    changed = np.abs(with_detail[..., :3] - without[..., :3]).max(axis=-1) > 0.02
    return changed, support


def _assert_on_face(changed: np.ndarray, support: np.ndarray) -> None:
    assert (changed & ~support).sum() == 0, "the displacement changed pixels off the face"


@pytest.mark.slow
def test_cycles_displacement_is_real_geometry_on_the_face_and_follows_the_rig(bpy_mod, face_fx, opts):
    from mathutils import Quaternion

    from tests.blender.cycles_render import head_camera, key_light, setup_cycles

    arm, body = _build(bpy_mod, face_fx, opts)
    scene = bpy_mod.context.scene
    scene.camera = head_camera(arm)
    key_light()
    setup_cycles(scene, 96, 96)
    support_mat = _support_material(bpy_mod, face_fx)
    changed, support = _detail_difference(bpy_mod, scene, body, support_mat)
    assert changed.sum() > 40, "the displacement changed nothing: no real geometry"
    assert support.sum() > 200
    _assert_on_face(changed, support)
    # turn the head: the displaced region turns with it
    bone = arm.pose.bones["head"]
    bone.rotation_mode = "QUATERNION"
    bone.rotation_quaternion = Quaternion((0, 1, 0), math.radians(35)) @ bone.rotation_quaternion  # yaw (bone y = up)
    bpy_mod.context.view_layer.update()
    changed2, support2 = _detail_difference(bpy_mod, scene, body, support_mat)
    assert changed2.sum() > 40
    _assert_on_face(changed2, support2)
    cols = np.nonzero(support)[1].mean(), np.nonzero(support2)[1].mean()
    assert abs(cols[1] - cols[0]) > 3  # the face moved in the image, and the detail with it
    assert abs(np.nonzero(changed2)[1].mean() - cols[1]) < abs(np.nonzero(changed2)[1].mean() - cols[0])


def test_result_v2_maps_gate_and_notices(bpy_mod, face_fx, opts, tmp_path):
    from pixie_blender.scene.avatar import build_many
    from tests.support.fake_result import rewrite_result

    _, body = _build(bpy_mod, face_fx, opts)
    nodes = body.data.materials[0].node_tree.nodes
    assert nodes[materials.NORMAL_NODE].image.name == "carol_normal"  # the result's normal map, for EEVEE
    assert body.parent["pixie_detail_gate"] is True and 0 <= body.parent["pixie_head_confidence"] <= 1
    # a person whose detail was gated off (zeros) and a backend notice about a missing file
    note = "facial detail (displacement) off: missing deca_model.tar"
    gated = rewrite_result(
        face_fx.result_path,
        tmp_path / "gated.pixie.npz",
        header_update={"appearance": {"notices": [note]}},
        replace={
            "detail_gate": np.zeros(1, np.uint8),
            "head_confidence": np.array([0.41], np.float32),
            "displacement_uv": np.zeros((1, 8, 8), np.float16),
        },
    )
    rep = build_many(bpy_mod.context, [gated], opts(add_camera=False))
    _, body = avatar_parts(rep.rigs[0])
    assert detail.MODIFIER not in body.modifiers
    assert materials.DISPLACEMENT_NODE not in body.data.materials[0].node_tree.nodes
    assert sum(note in w for w in rep.warnings) == 1
    assert any("not confident enough (head confidence 0.41)" in w for w in rep.warnings)


def test_operator_options(bpy_mod, face_fx):
    res = bpy_mod.ops.pixie.import_result(
        filepath=str(face_fx.result_path), add_camera=False, detail="SHADING", world_lighting=True, texture="LIT"
    )
    assert res == {"FINISHED"}
    body = next(o for o in bpy_mod.data.objects if o.get("pixie_role") == "body")
    assert detail.MODIFIER not in body.modifiers and bpy_mod.context.scene.world.name == "carol_light"
