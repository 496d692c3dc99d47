"""The test generator itself: its numpy LBS against smplx, and the files against the format doc."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support import fake_result


def test_numpy_lbs_matches_smplx():
    torch = pytest.importorskip("torch")
    lbs_mod = pytest.importorskip("smplx.lbs")
    body = fake_result.load_body_model("small")
    pkg = fake_result.package_arrays(body)
    rng = np.random.default_rng(0)
    betas, expr = rng.normal(size=200), rng.normal(size=50)
    R = fake_result.random_pose(rng)
    v_shaped = (
        pkg["v_template"]
        + pkg["shapedirs"].astype(np.float64) @ betas
        + pkg["exprdirs"].astype(np.float64) @ expr
    )
    J = (
        np.asarray(body.J_regressor, dtype=np.float64) @ v_shaped
    )  # as smplx does (the package's J is float32)
    J_pkg = (
        pkg["joints_template"]
        + pkg["joints_shapedirs"].astype(np.float64) @ betas
        + pkg["joints_exprdirs"].astype(np.float64) @ expr
    )
    np.testing.assert_allclose(J_pkg, J, atol=1e-6)
    ours, joints, _ = fake_result.lbs(v_shaped, J, R, pkg["parents"], pkg["weights"], pkg["posedirs"])

    V = pkg["v_template"].shape[0]
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    shapedirs = np.concatenate([pkg["shapedirs"], pkg["exprdirs"]], axis=2)
    verts, jt = lbs_mod.lbs(
        betas=t(np.concatenate([betas, expr]))[None],
        pose=t(R)[None],
        v_template=t(pkg["v_template"]),
        shapedirs=t(shapedirs),
        posedirs=t(pkg["posedirs"].reshape(V * 3, 486).T),
        J_regressor=t(body.J_regressor),
        parents=torch.as_tensor(pkg["parents"].astype(np.int64)),
        lbs_weights=t(pkg["weights"]),
        pose2rot=False,
    )
    np.testing.assert_allclose(ours, verts[0].numpy(), atol=1e-9)
    np.testing.assert_allclose(joints, jt[0].numpy(), atol=1e-9)


def test_files_follow_the_format_doc(fake):
    """Every array of the doc's tables is present with its documented shape and dtype."""
    P = 2
    with np.load(fake.result_path, allow_pickle=False) as z:
        h = json.loads(str(z["header"][()]))
        V = z["vertices"].shape[1]
        shapes = {
            "betas": (P, 200),
            "expression": (P, 50),
            "global_orient": (P, 1, 3, 3),
            "body_pose": (P, 21, 3, 3),
            "jaw_pose": (P, 1, 3, 3),
            "leye_pose": (P, 1, 3, 3),
            "reye_pose": (P, 1, 3, 3),
            "left_hand_pose": (P, 15, 3, 3),
            "right_hand_pose": (P, 15, 3, 3),
            "full_pose": (P, 55, 3, 3),
            "global_orient_aa": (P, 3),
            "jaw_pose_aa": (P, 3),
            "leye_pose_aa": (P, 3),
            "reye_pose_aa": (P, 3),
            "body_pose_aa": (P, 63),
            "left_hand_pose_aa": (P, 45),
            "right_hand_pose_aa": (P, 45),
            "transl": (P, 3),
            "cam": (P, 3),
            "cam_image_px": (P, 3),
            "bbox": (P, 4),
            "crop_center": (P, 2),
            "crop_size": (P,),
            "crop_tform": (P, 3, 3),
            "moderator_weights": (P, 3, 2),
            "tex": (P, 50),
            "light": (P, 9, 3),
            "vertices": (P, V, 3),
            "joints": (P, 145, 3),
            "keypoints_2d": (P, 145, 2),
            "joints_rest": (P, 55, 3),
            "pose_correctives": (P, V, 3),
        }
        for name, shape in shapes.items():
            assert z[name].shape == shape, name
            assert z[name].dtype in (np.float32, np.int32), name
        assert z["albedo_uv"].dtype == np.uint8 and z["displacement_uv"].dtype == np.float32
        # keypoints_2d are joints projected with cam_image_px
        a, bx, by = z["cam_image_px"][0]
        np.testing.assert_allclose(
            z["keypoints_2d"][0],
            np.stack([a * z["joints"][0, :, 0] + bx, a * z["joints"][0, :, 1] + by], -1),
            rtol=1e-5,
        )
        # cam and cam_image_px agree through the crop: u = cx + s·L/2·(x + tx)
        s, tx, _ty = z["cam"][0]
        L = z["crop_size"][0]
        np.testing.assert_allclose(a, s * L / 2, rtol=1e-5)
    for key in (
        "format",
        "version",
        "created",
        "producer",
        "synthetic",
        "source",
        "frame",
        "num_persons",
        "status",
        "model",
        "joint_names",
        "conventions",
        "settings",
        "appearance",
    ):
        assert key in h, key
    assert h["num_persons"] == P and h["model"]["package"]["file"] == fake.package_path.name
    with np.load(fake.package_path, allow_pickle=False) as z:
        ph = json.loads(str(z["header"][()]))
        assert ph["content_sha256"] == h["model"]["package"]["sha256"]
        assert fake.package_path.name == f"smplx_package_{ph['content_sha256'][:12]}.npz"
