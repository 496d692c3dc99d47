"""Benchmark: keying an animated rig in headless Blender, bulk ``foreach_set`` against a per-call
``keyframe_insert`` loop, side by side in one run.

    .venv/bin/python bench/bench_keying.py                 # bpy 5.0.1 (slotted actions)
    .venv-bpy42/bin/python bench/bench_keying.py           # bpy 4.2 (direct F-curves)
    .venv/bin/python bench/bench_keying.py --frames 300 --repeats 3

The work: N frames (default 1,000) × the 55 bone rotations (quaternions, 220 F-curves) + the pelvis
location (3) on the armature, and the 50 ``Exp`` values on the body's shape keys: what one track of
a sequence needs. The rig is a full-size synthetic avatar (10,475 vertices, 250 shape keys) built by
the add-on. "bulk" is ``scene.animation.key_pose`` + ``key_shape_values`` (``keyframe_points.add``
and ``foreach_set``, one action per datablock); "keyframe_insert" sets each value and calls
``keyframe_insert`` per bone, per property and per frame, as other SMPL-X add-ons do. Both key the
same values, checked at a few frames. Also timed: the whole import of a one-track sequence file of
N frames (read, validate, smooth, plan, build the rig from the cached template, key).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _setup_env(tmp: Path) -> None:
    os.environ["BLENDER_USER_RESOURCES"] = str(tmp / "blender-user")
    os.environ["XDG_CACHE_HOME"] = str(tmp / "xdg-cache")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _clear_animation(bpy, arm, body) -> None:
    for idb in (arm, body.data.shape_keys):
        if idb.animation_data is not None:
            idb.animation_data_clear()
    for a in list(bpy.data.actions):
        bpy.data.actions.remove(a)


def _keyframe_insert_loop(arm, body, frames, quats, loc, expr) -> None:
    pbs = arm.pose.bones
    from pixie_blender.io.constants import JOINT_NAMES

    bones = [pbs[n] for n in JOINT_NAMES]
    kbs = body.data.shape_keys.key_blocks
    keys = [kbs[f"Exp{i:03d}"] for i in range(50)]
    for kb in keys:
        kb.slider_min, kb.slider_max = -10.0, 10.0
    for i, f in enumerate(frames.tolist()):
        for k, pb in enumerate(bones):
            pb.rotation_quaternion = quats[i, k]
            pb.keyframe_insert("rotation_quaternion", frame=f)
        pbs["pelvis"].location = loc[i]
        pbs["pelvis"].keyframe_insert("location", frame=f)
        for j, kb in enumerate(keys):
            kb.value = expr[i, j]
            kb.keyframe_insert("value", frame=f)


def run(frames: int = 1000, repeats: int = 5, variant: str = "full", verbose: bool = True) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="pixie-bench-keying-"))
    _setup_env(tmp)
    import bpy  # noqa: I001 - bpy first: it puts addon_utils on the path
    import addon_utils

    addon_utils.enable("pixie_blender", default_set=True)
    from pixie_blender.io import convert
    from pixie_blender.scene import animation
    from pixie_blender.scene.avatar import ImportOptions, avatar_parts, build_avatars
    from pixie_blender.scene.sequence import SequenceImportOptions, import_sequence
    from tests.support.fake_result import make_fixture
    from tests.support.fake_sequence import make_sequence, motion

    fx = make_fixture(tmp / "still", variant=variant, with_image=False)
    cache = str(tmp / "cache")
    arm, body = avatar_parts(
        build_avatars(bpy.context, fx.result_path, ImportOptions(cache_dir=cache, add_camera=False))[0]
    )
    rng = np.random.default_rng(0)
    f = np.arange(1, frames + 1)
    quats = convert.rotmat_to_quat_wxyz(motion(frames, 30.0, rng))
    loc = rng.normal(scale=0.1, size=(frames, 3))
    expr = rng.normal(size=(frames, 50))
    names = [f"Exp{i:03d}" for i in range(50)]

    bulk = []
    for _ in range(repeats):
        _clear_animation(bpy, arm, body)
        t = time.perf_counter()
        animation.key_pose(arm, f, quats, loc)
        animation.key_shape_values(body.data.shape_keys, f, names, expr)
        bulk.append(time.perf_counter() - t)

    def sample(frame):
        bpy.context.scene.frame_set(frame)
        q = np.array([pb.rotation_quaternion[:] for pb in arm.pose.bones if pb.name != "root"])
        e = np.array([body.data.shape_keys.key_blocks[n].value for n in names])
        return q, e

    check = [sample(k) for k in (1, frames // 2, frames)]
    _clear_animation(bpy, arm, body)
    t = time.perf_counter()
    _keyframe_insert_loop(arm, body, f, quats, loc, expr)
    per_call = time.perf_counter() - t
    for k, (q0, e0) in zip((1, frames // 2, frames), check, strict=True):
        q1, e1 = sample(k)
        assert np.abs(np.abs((q0 * q1).sum(-1)) - 1).max() < 1e-5 and np.abs(e0 - e1).max() < 1e-5, k
    # the whole import of a one-track sequence of the same length
    seq = make_sequence(tmp / "seq", variant=variant, num_tracks=1, num_frames=frames, with_frames=False)
    imports = []
    for _ in range(max(1, repeats // 2)):
        bpy.ops.wm.read_homefile(use_empty=True)
        t = time.perf_counter()
        import_sequence(bpy.context, seq.path, SequenceImportOptions(cache_dir=cache))
        imports.append(time.perf_counter() - t)
    out = {
        "bpy": bpy.app.version_string,
        "slotted": bool(animation.is_slotted(bpy.data.actions[0])),
        "frames": frames,
        "vertices": int(fx.package["v_template"].shape[0]),
        "bulk_median_s": statistics.median(bulk),
        "bulk_all_s": bulk,
        "keyframe_insert_s": per_call,
        "import_median_s": statistics.median(imports),
    }
    if verbose:
        fcs = 55 * 4 + 3 + 50
        print(
            f"bpy {out['bpy']} ({'slotted actions' if out['slotted'] else 'direct F-curves'}); "
            f"rig with {out['vertices']} vertices; {frames} frames × ({fcs} F-curves: 55 quaternions, "
            f"pelvis location, 50 Exp keys); {os.cpu_count()} CPU(s)"
        )
        print(
            f"  bulk foreach_set:     {out['bulk_median_s']:.3f} s (median of {repeats}: "
            f"{', '.join(f'{x:.3f}' for x in bulk)})"
        )
        print(f"  keyframe_insert loop: {per_call:.3f} s  ({per_call / out['bulk_median_s']:.0f}× slower)")
        print(f"  whole sequence import (read, smooth 0.5, plan, build rig, key): {out['import_median_s']:.3f} s")
    addon_utils.disable("pixie_blender", default_set=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--variant", default="full", choices=["full", "small"])
    args = ap.parse_args()
    run(args.frames, args.repeats, args.variant)


if __name__ == "__main__":
    main()
