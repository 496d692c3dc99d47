"""Measuring a precision mode against fp32: the body path (what the 224² body crop alone gives)
and the final outputs. Used by the bf16 tests and by ``bench/bench_precision.py``."""

from __future__ import annotations

import numpy as np
import torch

#: person boxes (x1, y1, x2, y2) in scikit-image's astronaut photo (512 x 512): the astronaut as a
#: detector frames her, then tighter, looser and shifted boxes, so the crops differ
ASTRONAUT_BOXES = [(129.0, 23.0, 392.0, 511.0), (150.0, 40.0, 370.0, 480.0), (100.0, 0.0, 420.0, 511.0),
                   (140.0, 60.0, 400.0, 505.0)]


def astronaut_crops(dtype: torch.dtype = torch.float32, hd_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 224, 224) and (N, 3, hd, hd) crops of the astronaut for :data:`ASTRONAUT_BOXES`, the
    odd ones from the mirrored photo."""
    from pixie_backend.geometry.camera import body_square
    from pixie_backend.preprocess.crop import bilinear_square
    from skimage import data

    img = data.astronaut()
    crops, crops_hd = [], []
    for i, box in enumerate(ASTRONAUT_BOXES):
        pix = torch.from_numpy(np.ascontiguousarray(img[:, ::-1] if i % 2 else img))
        center, side = body_square(torch.tensor(box, dtype=torch.float64))
        crops.append(bilinear_square(pix, center, side, 224, dtype))
        crops_hd.append(bilinear_square(pix, center, side, hd_size, dtype))
    return torch.stack(crops), torch.stack(crops_hd)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest per-sample relative difference ||a_i - b_i|| / ||b_i||."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    return ((a - b).norm(dim=1) / b.norm(dim=1)).max().item()


BODY_PATH = ("body feature", "body_cam", "global_pose", "partbody_pose", "neck_pose", "coarse keypoints")
#: Largest bf16-vs-fp32 differences measured on the body path (full-size network, random weights,
#: seed 0, the four astronaut crops; relative per sample, keypoints absolute in [-1, 1]), over the
#: native AVX512-BF16 kernels and the forced AVX2 kernels, times about 3:
#: measured 6.6e-3, 8.5e-3, 1.07e-2, 1.34e-2, 2.0e-2, 6.8e-2.
BOUNDS = {"body feature": 2e-2, "body_cam": 3e-2, "global_pose": 3e-2, "partbody_pose": 4e-2, "neck_pose": 6e-2,
          "coarse keypoints": 0.2}
#: bf16 really ran: its feature difference is far above fp32 rounding (fast vs exact fp32: 7e-7)
BF16_RAN = 1e-3


def body_path_errors(ref, test, image: torch.Tensor, test_image: torch.Tensor | None = None) -> dict[str, float]:
    """Differences of ``test`` from ``ref`` (two :class:`PixieModel`, or one model on two inputs:
    ``test_image``) on the body path: the largest per-sample relative difference of the body
    features and the body regressor's outputs, and the largest absolute difference of the coarse
    keypoints (normalised crop coordinates, [-1, 1])."""
    with torch.inference_mode():
        a, b = ref.coarse(image), test.coarse(image if test_image is None else test_image)
    out = {"body feature": _rel(b.f_body, a.f_body)}
    for k in ("body_cam", "global_pose", "partbody_pose", "neck_pose"):
        out[k] = _rel(b.body[k], a.body[k])
    out["coarse keypoints"] = (b.keypoints2d - a.keypoints2d).abs().max().item()
    return out


def _angles(ra: torch.Tensor, rb: torch.Tensor) -> torch.Tensor:
    """Rotation angles (degrees) between rotation matrices (..., 3, 3)."""
    c = ((ra.transpose(-1, -2) @ rb).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(c.clamp(-1, 1)))


def output_errors(ref_out, out) -> dict[str, float]:
    """Differences of final outputs: vertices (mm, max and mean), rotations (degrees, max)."""
    dv = (out.vertices - ref_out.vertices).double().norm(dim=-1) * 1000
    p, r = out.params, ref_out.params
    body_joints = _angles(p.body_pose[:, :19], r.body_pose[:, :19])  # pelvis children .. elbows
    return {
        "vertices max (mm)": dv.max().item(),
        "vertices mean (mm)": dv.mean().item(),
        "global orientation (deg)": _angles(p.global_orient, r.global_orient).max().item(),
        "body joints (deg)": body_joints.max().item(),
        "wrists (deg)": _angles(p.body_pose[:, 19:], r.body_pose[:, 19:]).max().item(),
        "fingers (deg)": max(_angles(p.left_hand_pose, r.left_hand_pose).max().item(),
                             _angles(p.right_hand_pose, r.right_hand_pose).max().item()),
        "jaw (deg)": _angles(p.jaw_pose, r.jaw_pose).max().item(),
        "shape (relative)": _rel(p.betas, r.betas),
        "expression (relative)": _rel(p.expression, r.expression),
    }


def measure_bf16_body_path(data_dir: str, net_seed: int = 0) -> dict:
    """bf16 (fast: encoders in bf16 after the stem) against fp32 (fast) on the body path of the
    full-size network with random weights (``net_seed``) and the body model of ``data_dir``, on
    :func:`astronaut_crops`; also what ``--precision auto`` picks on this CPU. Returns JSON-able
    numbers (the AVX2 test runs this in a child process)."""
    from pathlib import Path

    from pixie_backend.body.smplx_layer import PixieSMPLX
    from pixie_backend.config import NetConfig, PixieConfig
    from pixie_backend.model import PixieModel
    from pixie_backend.nets.random_init import random_pixie_net
    from pixie_backend.runtime.device import resolve_precision

    d = Path(data_dir)
    smplx = PixieSMPLX.from_files(d / "SMPLX_NEUTRAL_2020.npz", d / "smplx_extra_joints.yaml", d / "SMPLX_to_J14.pkl")
    net = random_pixie_net(NetConfig(), seed=net_seed)
    ref = PixieModel(net, smplx, PixieConfig(speed="fast")).eval()
    bf16 = PixieModel(net, smplx, PixieConfig(speed="fast", precision="bf16")).eval()
    x, _ = astronaut_crops()
    auto = resolve_precision("auto", "cpu")
    return {"errors": body_path_errors(ref, bf16, x), "bf16": bf16.precision.reason,
            "auto": [auto.precision, auto.reason], "kernels": torch.backends.cpu.get_cpu_capability()}


if __name__ == "__main__":  # python -m tests.support.precision DATA_DIR: the measurement as JSON
    import json
    import sys

    print(json.dumps(measure_bf16_body_path(sys.argv[1])))
