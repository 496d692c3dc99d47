"""How far bf16 (and other modes) land from fp32, next to two yardsticks, on the same crops.

    .venv/bin/python bench/bench_precision.py                          # random weights (no licensed files)
    .venv/bin/python bench/bench_precision.py --data-dir ~/pixie-data  # the released weights, where you have them
    .venv/bin/python bench/bench_precision.py --device cuda

Rows: each mode against fp32 (fast) on the body path (relative, largest per crop) and on the final
outputs (vertices in mm, rotations in degrees), for the four astronaut crops of
``tests/support/precision.py``; then, in fp32, what the same network does when the input pixels
are re-quantised (uniform noise of ±0.5/255, what another JPEG decoder gives) and when the person
box moves by one pixel (what another detector run gives). With random weights the network is far
more sensitive than a trained one (it never learnt to ignore a one-pixel shift), so the absolute
figures say little about the released model; the ratios to the yardsticks are the point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT))

from bench_backend import MODES, build_engines, ensure_data  # noqa: E402

from tests.support.precision import (  # noqa: E402
    ASTRONAUT_BOXES,
    BODY_PATH,
    astronaut_crops,
    body_path_errors,
    output_errors,
)


def shifted_crops(dx: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The same crops with every person box moved ``dx`` pixels to the right."""
    from pixie_backend.geometry.camera import body_square
    from pixie_backend.preprocess.crop import bilinear_square
    from skimage import data

    img = data.astronaut()
    xs, xhs = [], []
    for i, box in enumerate(ASTRONAUT_BOXES):
        pix = torch.from_numpy(np.ascontiguousarray(img[:, ::-1] if i % 2 else img))
        b = torch.tensor(box, dtype=torch.float64) + torch.tensor([dx, 0, dx, 0], dtype=torch.float64)
        c, s = body_square(b)
        xs.append(bilinear_square(pix, c, s, 224))
        xhs.append(bilinear_square(pix, c, s, 1024))
    return torch.stack(xs), torch.stack(xhs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", nargs="+", default=["bf16", "exact-bf16", "exact"], choices=list(MODES))
    ap.add_argument("--data-dir", default=str(ROOT / "build" / "bench-data"))
    args = ap.parse_args(argv)
    data = Path(args.data_dir)
    if data == ROOT / "build" / "bench-data":
        ensure_data(data, face=False)
    engines = build_engines(data, args.device, ["fast", *args.modes])
    ref = engines["fast"]
    dev = ref.device
    x, xh = astronaut_crops()
    x, xh = x.to(dev), xh.to(dev)
    synthetic = ref.files.synthetic
    print(f"weights: {'random (synthetic assets)' if synthetic else 'the data folder ' + str(data)}; device {dev}; "
          f"{len(x)} crops; reference: fast fp32")
    with torch.inference_mode():
        ref_out = ref.model(x, xh)
    rows = {}
    for m in args.modes:
        e = engines[m]
        body = body_path_errors(ref.model, e.model, x)
        with torch.inference_mode():
            rows[f"{m} ({e.config.speed} {e.precision.precision})"] = (body, output_errors(ref_out, e.model(x, xh)))
    g = torch.Generator().manual_seed(1)
    noise = ((torch.rand(x.shape, generator=g) - 0.5) / 255).to(dev)
    noise_hd = ((torch.rand(xh.shape, generator=g) - 0.5) / 255).to(dev)
    xn, xhn = (x + noise).clamp(0, 1), (xh + noise_hd).clamp(0, 1)
    with torch.inference_mode():
        rows["fp32, pixels re-quantised (±0.5/255)"] = (
            body_path_errors(ref.model, ref.model, x, xn), output_errors(ref_out, ref.model(xn, xhn)))
        xs, xhs = (t.to(dev) for t in shifted_crops(1.0))
        rows["fp32, person box moved 1 px"] = (body_path_errors(ref.model, ref.model, x, xs), output_errors(ref_out,
                                                                                              ref.model(xs, xhs)))
    out_keys = list(next(iter(rows.values()))[1])
    print("\n### Body path: largest relative difference per crop (keypoints: absolute, crop units [-1, 1])\n")
    print("| | " + " | ".join(BODY_PATH) + " |")
    print("|---|" + "---|" * len(BODY_PATH))
    for k, (body, _) in rows.items():
        print(f"| {k} | " + " | ".join(f"{body[n]:.1e}" for n in BODY_PATH) + " |")
    print("\n### Final outputs\n")
    print("| | " + " | ".join(out_keys) + " |")
    print("|---|" + "---|" * len(out_keys))
    for k, (_, outs) in rows.items():
        print(f"| {k} | " + " | ".join(f"{outs[n]:.3g}" for n in out_keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
