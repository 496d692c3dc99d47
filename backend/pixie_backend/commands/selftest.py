"""``pixie-backend selftest``: check the environment, then run the whole pipeline on random
weights and a synthetic body (CPU, and CUDA when available). Its output is NOT a reconstruction."""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

DISCLAIMER = ("NOTE: the self-test uses random network weights and a synthetic mannequin body. "
              "Its output is NOT a reconstruction; it only proves that the software runs.")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("selftest", help="check the environment and run the pipeline on synthetic assets")
    p.add_argument("--full", action="store_true",
                   help="use the full-size networks and body (slower; default: width-reduced networks)")
    p.add_argument("--keep", help="keep the synthetic data and results in this folder")
    p.set_defaults(func=run)
    return p


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


class _Checks:
    def __init__(self):
        self.failed = 0

    def run(self, name: str, fn):
        t0 = time.perf_counter()
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - report every failure, continue with the rest
            self.failed += 1
            print(f"[FAIL] {name}: {e!r}")
            traceback.print_exc(limit=3, file=sys.stdout)
            return None
        print(f"[ ok ] {name} ({time.perf_counter() - t0:.2f} s){': ' + detail if isinstance(detail, str) else ''}")
        return detail


def _test_image():
    """A real photo if scikit-image is installed (its public-domain astronaut), else a synthetic one."""
    import numpy as np

    try:
        from skimage import data

        return data.astronaut(), "skimage astronaut"
    except ImportError:
        yy, xx = np.mgrid[0:512, 0:512]
        img = np.stack([(xx * 0.4) % 255, (yy * 0.4) % 255, ((xx + yy) * 0.2) % 255], -1).astype(np.uint8)
        return img, "synthetic gradient"


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .. import __version__

    print(f"pixie-backend {__version__} self-test")
    print(DISCLAIMER)
    print(f"python {platform.python_version()} on {platform.system()} {platform.machine()}")
    cuda = torch.cuda.is_available()
    gpu = f"available: {torch.cuda.get_device_name(0)}" if cuda else "not available"
    print(f"torch {torch.__version__}, CUDA {gpu}"
          f", {torch.get_num_threads()} CPU threads")
    for dist in ("numpy", "smplx", "opencv-python-headless", "pillow", "mediapipe", "tqdm", "platformdirs"):
        print(f"  {dist:24s} {_version(dist)}")
    from ..runtime.device import resolve_device, resolve_precision

    auto = resolve_device("auto")
    print(f"--device auto: {auto}; --precision auto: {resolve_precision('auto', auto).precision} "
          f"({resolve_precision('auto', auto).reason})")

    checks = _Checks()
    tmp_ctx = tempfile.TemporaryDirectory(prefix="pixie-selftest-") if not args.keep else None
    root = Path(args.keep) if args.keep else Path(tmp_ctx.name)
    root.mkdir(parents=True, exist_ok=True)
    try:
        from ..config import PixieConfig
        from ..jobs.reconstruct import ReconstructJob, ReconstructOptions
        from ..jobs.sources import ImageSource
        from ..pipeline import Pixie
        from ..preprocess.detector import make_detector
        from ..preprocess.image_io import from_array
        from ..synthetic_assets import write_synthetic_data

        data_dir = root / "data"
        body, net = ("full", "full") if args.full else ("small", "tiny")
        checks.run(f"write synthetic assets ({body} body, {net} network)",
                   lambda: write_synthetic_data(data_dir, body, net, seed=0, force=True) and str(data_dir))
        image, image_name = _test_image()

        def detector_check():
            det = make_detector("auto")
            try:
                found = det.detect(from_array(image))
            finally:
                det.close()
            return f"{det.name}: {len(found)} person(s) in the {image_name}"

        checks.run("person detector", detector_check)
        pix = checks.run("load checkpoint and body model (CPU)",
                         lambda: Pixie(data_dir, PixieConfig(), detector="none"))
        if pix is None:
            return 1

        def cpu_run():
            res = pix.predict([image], batch_size=2)
            if not res[0].ok:
                raise RuntimeError(res[0].message)
            out = res[0].output
            if not torch.isfinite(out.vertices).all():
                raise RuntimeError("non-finite vertices")
            look = res[0].appearance
            parts = [k for k in ("albedo", "displacement", "normal_map")
                     if look is not None and getattr(look, k) is not None]
            if look is not None and not all(torch.isfinite(getattr(look, k)).all() for k in parts):
                raise RuntimeError("non-finite face appearance")
            face = ", ".join(parts) if parts else "off (" + "; ".join(pix.appearance_notices) + ")"
            job = ReconstructJob(pix.engine, [ImageSource.from_array("selftest", image)],
                                 ReconstructOptions(root / "out", detector="none"))
            events = list(job.run())
            if job.finished.status != "ok":
                raise RuntimeError(f"the reconstruct job ended {job.finished.status}: {job.finished.error}")
            done = next(e for e in events if e.kind == "item_done")
            with np.load(done.details["result"], allow_pickle=False) as z:
                if z["vertices"].shape != tuple(out.vertices.shape):
                    raise RuntimeError("the written result does not read back")
                if look is not None and look.albedo is not None and "albedo_uv" not in z.files:
                    raise RuntimeError("the written result lacks the face albedo")
            return (f"{len(res[0].persons)} person(s), {out.vertices.shape[1]} vertices, face: {face} "
                    f"-> {done.details['result']}")

        checks.run("reconstruct on CPU and write the result", cpu_run)

        if cuda:
            def gpu_run(precision: str):
                gpu = Pixie(data_dir, PixieConfig(device="cuda", precision=precision), detector="none")
                x = torch.rand(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
                xh = torch.nn.functional.interpolate(x, size=1024, mode="bilinear", align_corners=False)
                ref = pix.predict_crops(x, xh).vertices
                t0 = time.perf_counter()
                got = gpu.predict_crops(x, xh).vertices.cpu()
                torch.cuda.synchronize()
                err = (got - ref).abs().max().item() / ref.abs().max().item()
                limit = 1e-3 if precision == "fp32" else 0.2
                if err > limit:
                    raise RuntimeError(f"GPU {precision} differs from CPU by {err:.2e} (relative)")
                return f"relative difference to CPU {err:.1e}, {time.perf_counter() - t0:.2f} s"

            checks.run("CUDA fp32 matches CPU", lambda: gpu_run("fp32"))
            checks.run("CUDA bf16 autocast runs", lambda: gpu_run("bf16"))
        else:
            print("[skip] CUDA checks: no GPU visible to torch")
        _ = np  # numpy imported above to fail early if it is broken
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()
    print(DISCLAIMER)
    if checks.failed:
        print(f"self-test FAILED: {checks.failed} check(s)")
        return 1
    print("self-test passed")
    return 0
