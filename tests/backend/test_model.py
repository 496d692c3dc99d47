"""PIXIE encode/decode semantics on the small synthetic body and a width-reduced network."""

import numpy as np
import pytest
import smplx
import torch
import yaml
from pixie_backend import constants as C
from pixie_backend.body.smplx_layer import load_pickled_array
from pixie_backend.geometry.rotations import flip_pose_lr
from pixie_backend.nets.pixie_net import split_outputs
from scipy.spatial.transform import Rotation


@pytest.fixture(scope="module")
def model(small_pixie):
    return small_pixie.model


@pytest.fixture(scope="module")
def crops():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 224, 224, generator=g)
    xh = torch.nn.functional.interpolate(x, size=1024, mode="bilinear", align_corners=False)
    return x, xh


def _rand_pose(b, seed):
    r = Rotation.from_rotvec(np.random.default_rng(seed).normal(scale=0.3, size=(b * 55, 3))).as_matrix()
    return torch.tensor(r, dtype=torch.float32).reshape(b, 55, 3, 3)


def test_smplx_layer_equals_smplx_package(small_data_dir, model):
    layer = smplx.SMPLXLayer(str(small_data_dir / "SMPLX_NEUTRAL_2020.npz"), num_betas=200,
                             num_expression_coeffs=50, use_pca=False, flat_hand_mean=True)
    # smplx appends extra joints at the real model's vertex ids; point them at vertex 0 on the small body
    layer.vertex_joint_selector.extra_joints_idxs.zero_()
    b = 2
    g = torch.Generator().manual_seed(1)
    betas, expr = torch.randn(b, 200, generator=g), torch.randn(b, 50, generator=g)
    pose = _rand_pose(b, 2)
    ref = layer(betas=betas, expression=expr, global_orient=pose[:, :1], body_pose=pose[:, 1:22],
                jaw_pose=pose[:, 22:23], leye_pose=pose[:, 23:24], reye_pose=pose[:, 24:25],
                left_hand_pose=pose[:, 25:40], right_hand_pose=pose[:, 40:55])
    ours = model.smplx(betas, expr, pose)
    torch.testing.assert_close(ours.vertices, ref.vertices, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.joints, ref.joints[:, :55], atol=1e-5, rtol=1e-5)


def test_145_keypoints_against_independent_computation(small_data_dir, model):
    """Static + dynamic landmarks (head-inclusive yaw chain, LUT row rule), extra joints, J14."""
    z = np.load(small_data_dir / "SMPLX_NEUTRAL_2020.npz")
    extra = yaml.safe_load((small_data_dir / "smplx_extra_joints.yaml").read_text())
    j14 = load_pickled_array(small_data_dir / "SMPLX_to_J14.pkl")
    b = 4
    pose = _rand_pose(b, 3)
    yaws = [0.0, 25.0, -30.0, -60.0]  # head turned: exercises both LUT halves and the clamp row 78
    for i, yaw in enumerate(yaws):
        pose[i, 15] = torch.tensor(Rotation.from_euler("y", yaw, degrees=True).as_matrix(), dtype=torch.float32)
    out = model.smplx(torch.zeros(b, 200), torch.zeros(b, 50), pose)
    v = out.vertices.numpy().astype(np.float64)
    f = z["f"].astype(np.int64)
    p = pose.numpy().astype(np.float64)
    for i in range(b):
        head = p[i, 0] @ p[i, 3] @ p[i, 6] @ p[i, 9] @ p[i, 12] @ p[i, 15]
        yaw = np.arctan2(-head[2, 0], np.sqrt(head[0, 0] ** 2 + head[1, 0] ** 2))
        a = int(np.round(min(-np.degrees(yaw), 39)))
        row = a if a >= 0 else (78 if a < -39 else 39 - a)
        idx = np.concatenate([z["lmk_faces_idx"], z["dynamic_lmk_faces_idx"][row]]).astype(np.int64)
        bary = np.concatenate([z["lmk_bary_coords"], z["dynamic_lmk_bary_coords"][row]])
        lmk = np.einsum("lk,lkd->ld", bary, v[i][f[idx]])
        ext = np.array([np.einsum("k,kd->d", e["bc"], v[i][f[e["face"]]]) for e in extra.values()])
        kp = np.concatenate([out.joints[i].numpy(), lmk, ext])
        kp[list(C.J14_TARGET_ROWS)] = j14 @ v[i]
        np.testing.assert_allclose(out.keypoints[i].numpy(), kp, atol=2e-5)
        np.testing.assert_allclose(out.landmarks[i].numpy(), lmk, atol=2e-5)
    assert list(extra) == list(C.EXTRA_JOINT_NAMES)


def test_batched_equals_one_by_one(model, crops):
    x, xh = crops
    full = model(x, xh)
    for i in range(3):
        one = model(x[i:i + 1], xh[i:i + 1])
        torch.testing.assert_close(one.vertices[0], full.vertices[i], atol=1e-4, rtol=0)
        torch.testing.assert_close(one.moderator_weights[0], full.moderator_weights[i], atol=5e-4, rtol=0)


class _Recorder(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.inputs, self.outputs = inner, [], []

    def forward(self, x):
        y = self.inner(x)
        self.inputs.append(x.detach().clone())
        self.outputs.append(y.detach().clone())
        return y


def test_encode_semantics(model, crops):
    """Left crop mirrored before the hand expert; coarse body kept; keep_local; fusion rules."""
    x, xh = crops
    net = model.net
    originals = dict(model._encoders)
    rec_hand, rec_head, rec_body = (_Recorder(originals[k]) for k in ("Encoder_hand", "Encoder_head", "Encoder_body"))
    try:
        model._encoders.update(Encoder_hand=rec_hand, Encoder_head=rec_head, Encoder_body=rec_body)
        raw, weights, parts = model.encode(x, xh)
    finally:
        model._encoders.update(originals)
    b = x.shape[0]
    hands_in = rec_hand.inputs[0]
    torch.testing.assert_close(hands_in[:b], parts.left_hand.flip(-1))  # left mirrored, right as cut
    torch.testing.assert_close(hands_in[b:], parts.right_hand)
    f_body, f_head, f_hands = rec_body.outputs[0], rec_head.outputs[0], rec_hand.outputs[0]
    with torch.no_grad():
        body = split_outputs(net.Regressor_body(f_body), C.BODY_OUTPUTS)
        torch.testing.assert_close(raw.body_cam, body["body_cam"])  # coarse body parameters are final
        torch.testing.assert_close(raw.partbody_pose, body["partbody_pose"])
        local_head = split_outputs(net.Regressor_head_share(f_head), C.HEAD_SHARE_OUTPUTS)
        torch.testing.assert_close(raw.exp, local_head["exp"])  # keep_local: expression from the head crop
        local_hand = split_outputs(net.Regressor_hand_share(f_hands), C.HAND_SHARE_OUTPUTS)
        torch.testing.assert_close(raw.left_hand_pose, local_hand["right_hand_pose"][:b])
        torch.testing.assert_close(raw.right_hand_pose, local_hand["right_hand_pose"][b:])
        head_part = split_outputs(net.Regressor_head(f_head), C.HEAD_OUTPUTS)
        torch.testing.assert_close(raw.tex, head_part["tex"])
        # head fusion: moderator output w0*ext + w1*part, never thresholded
        f_ext = net.Extractor_head_share(f_body)
        w = weights[:, 0]
        fused = w[:, :1] * f_ext + w[:, 1:] * f_head
        want_shape = split_outputs(net.Regressor_head_share(fused), C.HEAD_SHARE_OUTPUTS)["shape"]
        torch.testing.assert_close(raw.shape, want_shape, atol=1e-5, rtol=1e-4)
        # hand fusion: (1 - w') * ext + w' * part, w' = 1 where the part weight > 0.7
        f_ext_r = net.Extractor_right_hand_share(f_body)
        w1 = weights[:, 2, 1:]
        w1p = torch.where(w1 > 0.7, torch.ones_like(w1), w1)
        fused_r = f_ext_r * (1 - w1p) + f_hands[b:] * w1p
        want = split_outputs(net.Regressor_hand_share(fused_r), C.HAND_SHARE_OUTPUTS)["right_wrist_pose"]
        torch.testing.assert_close(raw.right_wrist_pose, want, atol=1e-5, rtol=1e-4)


def test_hand_threshold_rule(model):
    f_ext, f_part = torch.randn(4, 8), torch.randn(4, 8)

    class FixedModerator(torch.nn.Module):
        def forward(self, x, y):
            w = torch.tensor([[0.2, 0.8], [0.3, 0.7], [0.9, 0.1], [0.29, 0.71]])
            return w[:, :1] * x + w[:, 1:] * y, w

    orig = model.net.Moderator_hand_share
    try:
        model.net.Moderator_hand_share = FixedModerator()
        fused, _ = model._fuse_hand(f_ext, f_part)
    finally:
        model.net.Moderator_hand_share = orig
    torch.testing.assert_close(fused[0], f_part[0])  # 0.8 > 0.7: the part crop alone
    torch.testing.assert_close(fused[1], 0.3 * f_ext[1] + 0.7 * f_part[1])  # exactly 0.7: blended
    torch.testing.assert_close(fused[2], 0.9 * f_ext[2] + 0.1 * f_part[2])
    torch.testing.assert_close(fused[3], f_part[3])


def test_fast_mode_folds_batchnorm_and_matches_exact(model, crops):
    x, xh = crops
    exact = model(x, xh)
    try:
        model.use_speed("fast")
        enc = model.encoder("Encoder_body")
        assert enc is not model.net.Encoder_body
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules())
        fast = model(x, xh)
    finally:
        model.use_speed("exact")
    # the checkpoint modules are untouched; outputs agree to float rounding
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.net.Encoder_body.modules())
    torch.testing.assert_close(fast.params.cam, exact.params.cam, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast.vertices, exact.vertices, atol=2e-3, rtol=0)


def test_decode_flips_left_side_and_does_not_mutate(model, crops):
    x, xh = crops
    raw, _, _ = model.encode(x, xh)
    before = {k: v.clone() for k, v in raw.__dict__.items() if torch.is_tensor(v)}
    params = model.decode_params(raw)
    for k, v in before.items():
        assert torch.equal(v, getattr(raw, k)), f"decode mutated {k}"
    from pixie_backend.geometry.rotations import rot6d_grouped_to_rotmat

    torch.testing.assert_close(params.left_hand_pose, flip_pose_lr(rot6d_grouped_to_rotmat(raw.left_hand_pose)))
    torch.testing.assert_close(params.abs_left_wrist_pose, rot6d_grouped_to_rotmat(raw.left_wrist_pose))  # un-flipped
    full = params.full_pose()
    assert torch.equal(full[:, 23], torch.eye(3).expand(3, 3, 3))  # eyes identity
