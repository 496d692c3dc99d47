"""Parity with the official PIXIE implementation (yfeng95/PIXIE @ 5c8879b).

The reference numbers in ``tests/data/parity/`` were produced by running the unmodified upstream
code (outside this repository; only its outputs are committed) on:

* the full-size synthetic body (``make-synthetic --body full``, seed 0) and the full-size random
  network (seed 7), i.e. the official architecture and file formats, no licensed data;
* body crops of scikit-image's astronaut photo (and variants) cut by upstream's ``TestData`` from
  the boxes listed in the file (scikit-image ``warp``), batch size 1,
  ``encode(threthold=True, keep_local=True)`` then ``decode(..., 'body')``, on the CPU in float32;
* once with kornia 0.9.0 (``kornia09``) and once with kornia 0.8.x (``kornia_legacy``, the
  pre-0.9 pixel convention of the part crops, which upstream's pinned kornia 0.4.0 shares).

Here the same inputs (the same crops, cut with the same scikit-image recipe) go through
:class:`~pixie_backend.model.PixieModel` (the crops entry of the API), batched, and every output must
agree within 1e-4 relative to the largest magnitude of that output. That our own cropping equals
``TestData``'s is tested in ``test_crops.py`` (3e-7).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parents[1] / "data" / "parity"
TOLERANCE = 1e-4

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_model(tmp_path_factory):
    from pixie_backend.body.smplx_layer import PixieSMPLX
    from pixie_backend.config import NetConfig
    from pixie_backend.nets.random_init import random_pixie_net
    from pixie_backend.synthetic.files import write_body_assets

    meta = json.loads(str(np.load(DATA / "official_kornia09.npz")["meta"]))
    d = tmp_path_factory.mktemp("parity-data")
    write_body_assets(d, variant=meta["body"], seed=meta["body_seed"])
    smplx = PixieSMPLX.from_files(d / "SMPLX_NEUTRAL_2020.npz", d / "smplx_extra_joints.yaml", d / "SMPLX_to_J14.pkl")
    net = random_pixie_net(NetConfig(), seed=meta["net_seed"])
    return net, smplx


def _image(spec: str, astronaut: np.ndarray) -> np.ndarray:
    if spec == "astronaut":
        return astronaut
    if spec == "astronaut_flip":
        return np.ascontiguousarray(astronaut[:, ::-1])
    if spec == "two":
        return np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    raise ValueError(spec)


@pytest.mark.parametrize("convention", ["kornia09", "kornia_legacy"])
def test_matches_official_outputs(convention, full_model, astronaut):
    from pixie_backend.config import CropConfig, PixieConfig
    from pixie_backend.model import PixieModel
    from test_crops import upstream_body_crop

    ref = dict(np.load(DATA / f"official_{convention}.npz"))
    meta = json.loads(str(ref["meta"]))
    net, smplx = full_model
    model = PixieModel(net, smplx, PixieConfig(crop=CropConfig(part_convention=convention))).eval()
    crops, crops_hd = [], []
    for i, s in enumerate(meta["samples"]):
        img = _image(s["image"], astronaut) / 255.0
        crops.append(torch.tensor(upstream_body_crop(img, s["box"], 224)[0]).float())
        crops_hd.append(torch.tensor(upstream_body_crop(img, s["box"], 1024)[0]).float())
        # the very inputs the official run saw
        np.testing.assert_allclose(crops[-1].double().sum().item(), ref["image_sum"][i], rtol=1e-9)
        np.testing.assert_allclose(crops_hd[-1].double().sum().item(), ref["image_hd_sum"][i], rtol=1e-9)
    out = model(torch.stack(crops), torch.stack(crops_hd))
    p = out.params
    ours = {
        "body_cam": p.cam, "shape": p.betas, "exp": p.expression, "global_pose": p.global_orient,
        "body_pose": p.body_pose, "jaw_pose": p.jaw_pose, "left_hand_pose": p.left_hand_pose,
        "right_hand_pose": p.right_hand_pose, "abs_head_pose": p.abs_head_pose,
        "abs_left_wrist_pose": p.abs_left_wrist_pose, "abs_right_wrist_pose": p.abs_right_wrist_pose,
        "tex": p.tex, "light": p.light.reshape(-1, 27), "vertices": out.vertices, "joints": out.keypoints3d,
        "smplx_kpt": out.keypoints2d, "face_kpt": out.face_keypoints2d,
        "moderator_weight": out.moderator_weights.reshape(-1, 6),
        "head_crop_mean": out.crops.head.mean(dim=(2, 3)),
        "left_hand_crop_mean": out.crops.left_hand.mean(dim=(2, 3)),
        "right_hand_crop_mean": out.crops.right_hand.mean(dim=(2, 3)),
    }
    report = {}
    for key, value in ours.items():
        want = ref[key].astype(np.float64)
        got = value.detach().double().numpy().reshape(want.shape)
        report[key] = np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)
    artifacts = Path(__file__).resolve().parents[2] / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / f"parity_{convention}.json").write_text(json.dumps(
        {"reference": meta, "relative_error": report, "tolerance": TOLERANCE}, indent=1, default=str))
    worst = max(report, key=report.get)
    assert report[worst] <= TOLERANCE, f"{worst}: relative error {report[worst]:.2e}\n" + "\n".join(
        f"{k:22s} {v:.2e}" for k, v in sorted(report.items(), key=lambda kv: -kv[1]))
