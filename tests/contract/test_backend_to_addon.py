"""Contract: files the backend writes are what the add-on's reader (implemented separately) expects,
and the documented posing equation reproduces the backend's vertices from package + result alone."""

import json

import numpy as np
import pytest

from pixie_blender.io import schema


@pytest.fixture(scope="module")
def written(small_pixie, astronaut, two_people, tmp_path_factory):
    from pixie_backend.export.writer import ResultWriter

    out = tmp_path_factory.mktemp("contract")
    res = small_pixie.predict([astronaut, two_people],
                              boxes=[[[150, 20, 450, 511]], [[140, 20, 460, 511], [560, 20, 880, 511]]])
    writer = ResultWriter(small_pixie, out)
    paths = [writer.write(r, name)[0] for r, name in zip(res, ("one", "two"), strict=True)]
    return paths, writer, res


def _lbs(pkg, person):
    """Independent numpy linear blend skinning per docs/result-format.md."""
    betas, expr = person.betas, person.expression
    v0 = pkg["v_template"] + pkg["shapedirs"][:, :, : len(betas)] @ betas + pkg["exprdirs"] @ expr
    j = pkg["joints_template"] + pkg["joints_shapedirs"][:, :, : len(betas)] @ betas + pkg["joints_exprdirs"] @ expr
    v = v0 + person.pose_correctives
    parents = pkg["parents"]
    rot = person.full_pose.astype(np.float64)
    world = np.zeros((55, 4, 4))
    for k in range(55):
        local = np.eye(4)
        local[:3, :3] = rot[k]
        local[:3, 3] = j[k] - (j[parents[k]] if parents[k] >= 0 else 0)
        world[k] = local if parents[k] < 0 else world[parents[k]] @ local
    skin = world.copy()
    skin[:, :3, 3] -= np.einsum("kab,kb->ka", world[:, :3, :3], j)
    t = np.einsum("vk,kab->vab", pkg["weights"].astype(np.float64), skin)
    return np.einsum("vab,vb->va", t[:, :3, :3], v) + t[:, :3, 3]


def test_reader_accepts_backend_results(written):
    paths, writer, res = written
    one = schema.read_result(paths[0])
    two = schema.read_result(paths[1])
    assert len(one.persons) == 1 and len(two.persons) == 2
    assert one.package_sha256 == writer.package.sha256 == two.package_sha256
    pkg = schema.read_package(writer.package.path)
    pkg.verify()  # the add-on recomputes the content hash independently
    assert one.source_name in ("astronaut", "array_0")  # arrays are named by position
    np.testing.assert_array_equal(two.persons[1].vertices, res[1].output.vertices[1].numpy())


def test_posing_equation_reproduces_vertices(written):
    paths, writer, _ = written
    pkg = schema.read_package(writer.package.path).load(
        "v_template", "shapedirs", "exprdirs", "joints_template", "joints_shapedirs", "joints_exprdirs",
        "weights", "parents")
    for path in paths:
        for person in schema.read_result(path).persons:
            got = _lbs(pkg, person)
            scale = np.abs(person.vertices).max()
            assert np.abs(got - person.vertices).max() < 1e-5 * max(scale, 1.0)


def test_header_and_axis_angle_consistency(written):
    from scipy.spatial.transform import Rotation

    paths, _, _ = written
    with np.load(paths[1], allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        assert header["format"] == "pixie-result" and header["version"] == 2 and header["num_persons"] == 2
        assert len(header["joint_names"]) == 55 and header["joint_names"][23] == "left_eye_smplhf"
        full = z["full_pose"]
        aa = np.concatenate([z["global_orient_aa"][:, None], z["body_pose_aa"].reshape(2, 21, 3),
                             z["jaw_pose_aa"][:, None], z["leye_pose_aa"][:, None], z["reye_pose_aa"][:, None],
                             z["left_hand_pose_aa"].reshape(2, 15, 3), z["right_hand_pose_aa"].reshape(2, 15, 3)], 1)
        np.testing.assert_allclose(Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix(), full.reshape(-1, 3, 3),
                                   atol=2e-5)
        np.testing.assert_array_equal(np.concatenate([z["global_orient"], z["body_pose"], z["jaw_pose"],
                                                      z["leye_pose"], z["reye_pose"], z["left_hand_pose"],
                                                      z["right_hand_pose"]], 1), full)
        # 2-D keypoints are the 3-D joints seen through the orthographic image camera
        a, bx, by = z["cam_image_px"].T
        joints = z["joints"]
        proj = np.stack([a[:, None] * joints[..., 0] + bx[:, None], a[:, None] * joints[..., 1] + by[:, None]], -1)
        np.testing.assert_allclose(proj, z["keypoints_2d"], atol=0.05)


def test_reader_reads_the_face_appearance(written):
    """Format v2: the add-on reads the backend's appearance arrays with their meaning."""
    paths, writer, res = written
    two = schema.read_result(paths[1])
    look = res[1].appearance
    assert two.appearance_notices == []
    for k, person in enumerate(two.persons):
        assert person.albedo_uv.shape == (1024, 1024, 3) and person.albedo_uv.dtype == np.uint8
        want = np.round(look.albedo[k].clamp(0, 1).permute(1, 2, 0).numpy() * 255)
        assert np.abs(person.albedo_uv.astype(np.float64) - want).max() <= 1
        gate = bool(look.detail_gate[k])
        assert bool(person.detail_gate) == gate == (float(person.head_confidence) > 0.6)
        np.testing.assert_allclose(person.displacement_uv.astype(np.float32), look.displacement[k].numpy(),
                                   atol=2e-6, rtol=1e-3)  # float16
        n = person.normal_map_uv.astype(np.float64) / 255 * 2 - 1
        np.testing.assert_allclose(n, look.normal_map[k].permute(1, 2, 0).numpy(), atol=1 / 255 + 1e-6)  # 8 bits
