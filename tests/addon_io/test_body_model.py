"""Build plans: template and per-person arrays."""

from __future__ import annotations

import numpy as np

from pixie_blender.io import body_model, convert, schema


def test_template_plan(fake):
    pkg = schema.read_package(fake.package_path)
    plan = body_model.template_plan(pkg, with_pose_keys=True)
    V = pkg.num_vertices
    assert plan.vertices.shape == (V, 3) and plan.vertices.dtype == np.float32
    np.testing.assert_allclose(plan.vertices, convert.smplx_to_blender(fake.package["v_template"]))
    assert plan.shape_offsets.shape == (200, V, 3)
    assert plan.expression_offsets.shape == (50, V, 3)
    assert plan.pose_offsets.shape == (486, V, 3)
    np.testing.assert_allclose(
        plan.shape_offsets[7], convert.smplx_to_blender(fake.package["shapedirs"][:, :, 7])
    )
    assert plan.loop_uvs.shape == (3 * pkg.num_faces, 2)
    W = np.zeros((V, 55), np.float32)
    W[plan.weight_rows, plan.weight_cols] = plan.weight_values
    np.testing.assert_array_equal(W, fake.package["weights"])
    lim = body_model.bone_lengths()
    assert lim.shape == (55,) and (lim > 0).all()


def test_person_plans(fake):
    r = schema.read_result(fake.result_path)
    pkg = schema.find_package(r)
    plans = body_model.person_plans(r, pkg)
    assert [p.name for p in plans] == ["photo_person1", "photo_person2"]
    for p, person in zip(plans, r.persons, strict=True):
        np.testing.assert_allclose(p.joints_smplx, person.joints_rest, atol=1e-5)
        np.testing.assert_allclose(p.bone_heads, convert.smplx_to_blender(p.joints_smplx))
        np.testing.assert_allclose(convert.quat_wxyz_to_rotmat(p.quaternions), p.rotations, atol=1e-6)
        # the pelvis turns upright: D·R0 is close to a small rotation
        assert np.trace(p.rotations[0]) > 1.0
        np.testing.assert_allclose(p.pose_correctives, convert.smplx_to_blender(person.pose_correctives))
        assert p.camera is not None and p.metadata["pixie_person_index"] == person.index
        assert p.metadata["pixie_moderator_head"] == [float(x) for x in person.moderator_weights[0]]
        assert p.metadata["pixie_package_sha256"] == pkg.content_sha256


def test_correctives_computed_when_absent(fake, tmp_path):
    from tests.support.fake_result import rewrite_result

    p = rewrite_result(fake.result_path, tmp_path / "photo.pixie.npz", drop=("pose_correctives",))
    import shutil

    shutil.copy(fake.package_path, tmp_path / fake.package_path.name)
    r = schema.read_result(p)
    plans = body_model.person_plans(r, schema.find_package(r))
    np.testing.assert_allclose(
        plans[0].pose_correctives, convert.smplx_to_blender(fake.params["pose_correctives"][0]), atol=1e-6
    )


def test_layout_side_by_side_on_the_ground(fake):
    r = schema.read_result(fake.result_path)
    plans = body_model.person_plans(r, schema.find_package(r))
    offs = body_model.layout_offsets(plans, gap=0.25)
    spans = sorted((o[0] + p.extent_x[0], o[0] + p.extent_x[1]) for o, p in zip(offs, plans, strict=True))
    assert spans[1][0] - spans[0][1] == np.float64(spans[1][0] - spans[0][1])
    np.testing.assert_allclose(spans[1][0] - spans[0][1], 0.25, atol=1e-9)
    for o, p in zip(offs, plans, strict=True):
        np.testing.assert_allclose(o[2] + p.min_z, 0.0, atol=1e-9)
