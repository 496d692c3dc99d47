"""Benchmark: time to build one avatar in headless Blender, first (empty cache) and later.

    .venv/bin/python bench/bench_avatar_build.py                  # full-size body, bpy 5.0.1
    .venv-bpy42/bin/python bench/bench_avatar_build.py            # the same on bpy 4.2
    .venv/bin/python bench/bench_avatar_build.py --variant small --repeats 3 --modes BAKED

"first" is an import with an empty add-on cache: read and validate the files, verify the model
package hash, build the template (mesh, UVs, 55 vertex groups through bmesh, 200 Shape + 50 Exp
keys), write it to the cache, copy the package into the cache, then make the person's avatar.
"later" imports the same kind of result again (the template is appended from the cached .blend;
the read/validate step is included). Timings are wall-clock seconds of ``build_many`` (the
operator's body); the depsgraph evaluation that follows (``view_layer.update()``, what the next
viewport redraw does; it re-evaluates the scene, so it grows with the avatars already there,
mostly with live correctives) is timed separately.

The synthetic full-size body (10,475 vertices) comes from ``pixie_backend.synthetic.mannequin``
when available; otherwise tests/support/fake_result.py falls back to its small toy body and this
script says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_env(tmp: Path) -> None:
    os.environ["BLENDER_USER_RESOURCES"] = str(tmp / "blender-user")
    os.environ["XDG_CACHE_HOME"] = str(tmp / "xdg-cache")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def run(
    variant: str = "full",
    persons: int = 1,
    repeats: int = 5,
    modes=("BAKED",),
    albedo: bool = False,
    verbose: bool = True,
) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="pixie-bench-"))
    _setup_env(tmp)
    import bpy  # noqa: I001 - bpy first: it puts addon_utils on the path
    import addon_utils

    from tests.support.fake_result import make_fixture

    addon_utils.enable("pixie_blender", default_set=True)
    from pixie_blender.scene.avatar import ImportOptions, build_many

    t = time.perf_counter()
    fx = make_fixture(
        tmp / "data",
        variant=variant,
        num_persons=persons,
        seed=1,
        with_albedo=albedo,
        with_displacement=False,
        with_image=False,
    )
    gen_s = time.perf_counter() - t
    V = fx.package["v_template"].shape[0]
    out = {
        "bpy": bpy.app.version_string,
        "variant": variant,
        "vertices": V,
        "faces": int(fx.package["faces"].shape[0]),
        "persons": persons,
        "generate_s": gen_s,
        "modes": {},
    }
    if verbose:
        print(
            f"bpy {bpy.app.version_string}; body '{variant}': {V} vertices, "
            f"{fx.package['faces'].shape[0]} triangles; {persons} person(s) per result; "
            f"{os.cpu_count()} CPU(s)"
        )
        if V != 10475 and variant == "full":
            print("NOTE: the full-size mannequin is not available; timings are for the toy body")
    for mode in modes:
        cache = tmp / f"cache-{mode}"
        opts = ImportOptions(cache_dir=str(cache), add_camera=False, pose_correctives=mode)
        times, evals = [], []
        for i in range(repeats + 1):
            t = time.perf_counter()
            rep = build_many(bpy.context, [fx.result_path], opts)
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
            bpy.context.view_layer.update()  # what the next redraw does: evaluate the new avatar
            evals.append(time.perf_counter() - t)
            assert rep.template_built == (i == 0), "first build must build the template, later ones load it"
        later = times[1:]
        res = {
            "first_s": times[0],
            "later_s": later,
            "later_median_s": statistics.median(later) if later else None,
            "later_min_s": min(later) if later else None,
            "eval_first_s": evals[0],
            "eval_later_median_s": statistics.median(evals[1:]) if later else None,
            "template_mb": sum(f.stat().st_size for f in (cache / "templates").glob("*.blend")) / 1e6,
        }
        out["modes"][mode] = res
        if verbose:
            print(
                f"{mode:6s} first avatar {times[0]:.3f} s; "
                f"later avatars: median {res['later_median_s']:.3f} s, "
                f"min {res['later_min_s']:.3f} s ({', '.join(f'{x:.3f}' for x in later)}); "
                f"then evaluating the scene: first {res['eval_first_s']:.3f} s, later median "
                f"{res['eval_later_median_s']:.3f} s; template {res['template_mb']:.0f} MB"
            )
        bpy.ops.wm.read_homefile(use_empty=True)
    addon_utils.disable("pixie_blender", default_set=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="full", choices=["full", "small"])
    ap.add_argument("--persons", type=int, default=1, help="persons per result file")
    ap.add_argument("--repeats", type=int, default=5, help="later builds to time")
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["BAKED", "LIVE"],
        choices=["BAKED", "LIVE", "NONE"],
        help="pose-corrective modes to time",
    )
    ap.add_argument("--albedo", action="store_true", help="include a 256² albedo texture")
    args = ap.parse_args()
    run(args.variant, args.persons, args.repeats, tuple(args.modes), args.albedo)


if __name__ == "__main__":
    main()
