"""Face-appearance benchmark: the added cost per person of the albedo, DECA's detail encoder and
decoder, the UV transfers, the detail normal map and the optional lit and photo textures, next to
PIXIE's own networks, measured in one run.

    .venv/bin/python bench/bench_appearance.py [--device cpu|cuda] [--batches 1 8]

Full-size everything, no licensed files: the full-size synthetic body, random full-size PIXIE and
DECA weights, the 512² synthetic albedo model and the 1024² texture map (written once to
build/bench-data, shared with bench_backend.py); scikit-image's astronaut as the photo.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_backend import ensure_data, timeit  # noqa: E402
from pixie_backend.appearance.lighting import sh_shading, vertex_normals  # noqa: E402
from pixie_backend.appearance.normal_map import tangent_normals  # noqa: E402
from pixie_backend.appearance.photo import photo_texture  # noqa: E402
from pixie_backend.config import AppearanceConfig, PixieConfig  # noqa: E402
from pixie_backend.pipeline import Pixie  # noqa: E402


def stages(pixie: Pixie, image, batch: int) -> dict[str, float]:
    """Seconds per batch of each stage."""
    dev = pixie.device
    look, smplx = pixie.appearance, pixie.model.smplx
    prep = pixie.prepare(image, boxes=[[140, 20, 460, 511]])
    x = prep.image.repeat(batch, 1, 1, 1).to(dev)
    xh = prep.image_hd.repeat(batch, 1, 1, 1).to(dev)
    t: dict[str, float] = {}
    with torch.inference_mode():
        t["PIXIE networks + SMPL-X (for scale)"] = timeit(lambda: pixie.predict_crops(x, xh), dev)
        out = pixie.predict_crops(x, xh)
        tex = out.params.tex
        cfg = look.cfg
        look.cfg = replace(cfg, transfer="official")
        t["albedo, official (256² nearest) + transfer"] = timeit(lambda: look.albedo(tex), dev)
        look.cfg = replace(cfg, transfer="clean")
        t["albedo, clean (512²) + bilinear transfer"] = timeit(lambda: look.albedo(tex), dev)
        m = look.albedo_model
        t["  of which the albedo model (MU + PC·tex)"] = timeit(lambda: m(tex), dev)
        crops = look.deca_crops(out, xh)
        t["DECA face crop (from the 1024² crop)"] = timeit(lambda: look.deca_crops(out, xh), dev)
        deca = look.deca
        t["DECA detail encoder E_detail (ResNet-50)"] = timeit(lambda: deca.E_detail(crops), dev)
        t["DECA coarse encoder E_flame (ResNet-50; condition 'deca')"] = timeit(lambda: deca.flame_code(crops), dev)
        code = deca.E_detail(crops)
        flame = deca.flame_code(crops)
        t["DECA detail decoder D_detail"] = timeit(
            lambda: deca.displacement(code, flame["exp"], flame["pose"][:, 3:6]), dev)
        disp_flame = look.flame_displacement(out, crops)
        t["displacement FLAME → SMPL-X UV (bilinear) x face mask"] = timeit(
            lambda: look.to_smplx_uv(disp_flame[:, None])[:, 0] * look.face_mask, dev)
        disp = look.to_smplx_uv(disp_flame[:, None])[:, 0] * look.face_mask
        fr = look.face_raster

        def normal_map():
            rest = look.rest_vertices(out, smplx)
            pos = fr.interpolate(rest)
            nrm = fr.interpolate(vertex_normals(rest, look.faces))
            d = disp.reshape(batch, -1)[:, fr.pixel]
            return tangent_normals(pos, nrm, d, look.face_neighbours, look.resolution)

        t["detail normal map (tangent space, face texels)"] = timeit(normal_map, dev)
        albedo = look.albedo(tex)
        t["lit texture (normals → UV, SH shading; optional)"] = timeit(
            lambda: albedo * sh_shading(look.raster.world2uv(vertex_normals(out.vertices, look.faces)),
                                        out.params.light), dev)
        t["photo texture (projection, depth test; optional)"] = timeit(
            lambda: photo_texture(look.raster, look.faces, out.vertices, out.transformed_vertices, xh,
                                  look.face_eye_mask, albedo), dev, repeat=2)
        look.cfg = replace(cfg, lit_texture=False, photo_texture=False)
        t["whole stage, default (albedo + detail + normal map)"] = timeit(lambda: look(out, xh, smplx), dev)
        look.cfg = replace(cfg, detail_condition="pixie", lit_texture=False, photo_texture=False)
        t["whole stage, detail condition 'pixie' (no E_flame)"] = timeit(lambda: look(out, xh, smplx), dev)
        look.cfg = cfg
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--data", default=str(ROOT / "build" / "bench-data"))
    args = ap.parse_args()
    from skimage import data

    data_dir = ensure_data(Path(args.data))
    cfg = PixieConfig(device=args.device, speed="fast",
                      appearance=AppearanceConfig(lit_texture=True, photo_texture=True, detail_threshold=0.0))
    pixie = Pixie(data_dir, cfg, detector="none")
    assert pixie.appearance is not None, pixie.appearance_notices
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
          f"texture {pixie.appearance.resolution}², albedo {pixie.appearance.albedo_model.resolution}²")
    image = data.astronaut()
    cols = {b: stages(pixie, image, b) for b in args.batches}
    names = list(cols[args.batches[0]])
    head = "| stage, ms per person | " + " | ".join(f"B={b}" for b in args.batches) + " |"
    print(head)
    print("|" + "---|" * (len(args.batches) + 1))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{cols[b][n] / b * 1e3:.0f}" for b in args.batches) + " |")


if __name__ == "__main__":
    main()
