"""Benchmark: what the face appearance adds to an import in headless Blender, and to a Cycles render.

    .venv/bin/python bench/bench_face_material.py            # bpy 5.0.1
    .venv-bpy42/bin/python bench/bench_face_material.py      # bpy 4.2

A full-size synthetic avatar (10,475 vertices) with result-sized maps (1024² albedo, 1024² float16
displacement on the face, 1024² normal map), imported with a warm template cache (a "later" import,
see bench_avatar_build.py) three ways: no appearance arrays, albedo only, albedo + detail
(material with the Cycles and EEVEE branches, three packed images, adaptive subdivision). Also the
two steps on their own, and a 256² Cycles render (16 samples) of the face with real displacement
("DISPLACE": adaptive subdivision) against "SHADING" (bump only).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _median(fn, repeats: int, setup=None) -> float:
    """Median wall-clock seconds of ``fn()`` (``setup()`` runs untimed before each call)."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(repeats: int = 5) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pixie-bench-face-"))
    os.environ["BLENDER_USER_RESOURCES"] = str(tmp / "blender-user")
    os.environ["XDG_CACHE_HOME"] = str(tmp / "xdg-cache")
    sys.path.insert(0, str(ROOT))
    import bpy  # noqa: I001 - bpy first: it puts addon_utils on the path
    import addon_utils

    from tests.support.fake_result import face_detail_maps, load_body_model, make_fixture, rewrite_result

    addon_utils.enable("pixie_blender", default_set=True)
    from pixie_blender.scene import detail, materials
    from pixie_blender.scene.avatar import ImportOptions, avatar_parts, build_many
    from tests.blender.cycles_render import head_camera, key_light, render_array, setup_cycles

    body = load_body_model("full")
    fx = make_fixture(tmp / "data", variant="full", num_persons=1, seed=3, stem="bench", pose_scale=0.2)
    disp, nrm = face_detail_maps(body, 1024)
    rng = np.random.default_rng(0)
    albedo = rng.integers(60, 200, (1, 1024, 1024, 3), dtype=np.uint8)
    extra = {"albedo_uv": albedo, "displacement_uv": disp[None].astype(np.float16), "normal_map_uv": nrm[None],
             "detail_gate": np.ones(1, np.uint8)}
    with_albedo = rewrite_result(fx.result_path, tmp / "data" / "albedo.pixie.npz",
                                 replace={"albedo_uv": albedo}, header_update={"version": 2})
    with_detail = rewrite_result(fx.result_path, tmp / "data" / "detail.pixie.npz", replace=extra,
                                 header_update={"version": 2})
    opts = ImportOptions(add_camera=False, cache_dir=str(tmp / "cache"))
    build_many(bpy.context, [fx.result_path], opts)  # the template, once

    def fresh():
        bpy.ops.wm.read_homefile(use_empty=True)

    rows = {
        "import, no appearance arrays": _median(lambda: build_many(bpy.context, [fx.result_path], opts), repeats,
                                                fresh),
        "import, albedo (1024²)": _median(lambda: build_many(bpy.context, [with_albedo], opts), repeats, fresh),
        "import, albedo + detail (3 x 1024² maps, subdivision)": _median(
            lambda: build_many(bpy.context, [with_detail], opts), repeats, fresh),
        "  create_material alone (3 maps, packed)": _median(
            lambda: materials.create_material("m", albedo[0], disp, image_prefix="m", normal_map_uv=nrm), repeats,
            fresh),
    }
    fresh()
    rep = build_many(bpy.context, [fx.result_path], opts)
    _, ob = avatar_parts(rep.rigs[0])

    def drop_modifier():
        if detail.MODIFIER in ob.modifiers:
            ob.modifiers.remove(ob.modifiers[detail.MODIFIER])

    rows["  adaptive subdivision alone"] = _median(
        lambda: detail.enable_adaptive_displacement(bpy.context.scene, ob), repeats, drop_modifier)

    renders = {}
    for mode in ("SHADING", "DISPLACE"):
        bpy.ops.wm.read_homefile(use_empty=True)
        rep = build_many(bpy.context, [with_detail], ImportOptions(add_camera=False, cache_dir=str(tmp / "cache"),
                                                                    detail=mode))
        scene = bpy.context.scene
        scene.camera = head_camera(rep.rigs[0])
        key_light()
        setup_cycles(scene, 256, 256, samples=16)
        render_array(scene)  # warm-up (kernel load)
        renders[mode] = _median(lambda s=scene: render_array(s), 3)

    print(f"bpy {bpy.app.version_string}")
    print("| step | seconds |")
    print("|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.3f} |")
    for k, v in renders.items():
        print(f"| Cycles render 256², 16 spp, detail = {k} | {v:.2f} |")
    addon_utils.disable("pixie_blender", default_set=True)


if __name__ == "__main__":
    main()
