"""Import Image Sequence from a video or a folder of frames, through the backend.

In this session: what the operator does with each kind of input, its failures before a backend
exists and the sidebar's entry (progress with Cancel, then the report); the modal step is in
``test_task_loop.py``. End to end, slow, in a fresh process: the extension zip installed
through Blender's extension system, Backend Python set to the main ``.venv``'s interpreter,
synthetic model files (``make-synthetic --body small --net tiny``) and a short synthetic clip
video; one operator run starts the real backend, computes the sequence while the test drives the
timer step and edits the scene between steps, and imports one animated rig per track with keys on
the clip's frames, the scene's fps and frame range, and the video behind the camera. Importing the
kept ``.pixie-seq.npz`` again computes nothing; a corrupt video is one message and leaves the
scene as it was. Runs on bpy 5.0.1 and (nested) 4.2.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.blender.test_ui import sidebar_log
from tests.support.blender_process import (
    BACKEND_PY,
    INSTALLED_ADDON,
    make_synthetic_data,
    run_backend,
    run_script,
    user_env,
)

CLIP_FRAMES = 10


@pytest.fixture
def clean_state(backend_prefs):
    from pixie_blender.operators import import_sequence as seq

    seq.STATE.__init__()
    yield seq
    seq.STATE.__init__()


def test_inputs_failures_and_the_sidebar_entry(bpy_mod, clean_state, tmp_path):
    seq = clean_state
    from pixie_blender.client.sequence import SequenceProgress
    from pixie_blender.operators import backend as backend_ops
    from pixie_blender.ui import panels

    frames = tmp_path / "take"
    frames.mkdir()
    (frames / "f1.png").write_bytes(b"\x89PNG")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    assert seq.source_kind(tmp_path / "clip.pixie-seq.npz") == "result"
    assert seq.source_kind(frames) == seq.source_kind(frames / "f1.png") == "frames"
    assert seq.source_kind(video) == seq.source_kind(tmp_path / "clip.MOV") == "video"

    prefs = backend_ops.addon_preferences(bpy_mod.context)
    prefs.backend_python, prefs.backend_folder, prefs.remote_enabled = "", str(tmp_path / "none"), False
    log = sidebar_log(bpy_mod)
    assert ("operator", "pixie.import_sequence") in log and ("operator", "pixie.import_result") in log
    ops = [e[1] for e in log if e[0] == "operator"]  # right under Reconstruct from Image, above the backend
    assert ops.index("pixie.reconstruct") + 1 == ops.index("pixie.import_sequence") < ops.index("pixie.backend_install")

    # a video or a folder needs the backend: one sentence, nothing changes
    before = len(bpy_mod.data.objects)
    for kw in ({"filepath": str(video)}, {"directory": str(frames)}, {"filepath": str(frames / "f1.png")}):
        with pytest.raises(RuntimeError, match="not installed: open Preferences > Add-ons > PIXIE and click Install"):
            bpy_mod.ops.pixie.import_sequence(**kw)
    with pytest.raises(RuntimeError, match="gone.mp4: no such file or folder"):
        bpy_mod.ops.pixie.import_sequence(filepath=str(tmp_path / "gone.mp4"))
    with pytest.raises(RuntimeError, match="No video, folder of frames or sequence file given"):
        bpy_mod.ops.pixie.import_sequence(filepath="")
    assert len(bpy_mod.data.objects) == before and seq.STATE.task is None
    assert seq.STATE.report == (
        "ERROR",
        "The backend is not installed: open Preferences > Add-ons > PIXIE and click Install Backend.",
    )

    # a running job: progress and Cancel, the backend busy; a finished one: its report
    class Running:
        progress = SequenceProgress(
            state="running",
            total=300,
            done=41,
            device="cpu",
            text="Frame 42 of 300: 2 persons, 3.1 frames/s, 1:25 left",
        )

    seq.STATE.task = Running()
    log = sidebar_log(bpy_mod)
    assert ("operator", "pixie.import_sequence_cancel") in log and panels.backend_status(bpy_mod.context)[0] == "busy"
    assert any(e[0] == "progress" for e in log)
    seq.STATE.task = None
    seq.STATE.report = ("ERROR", "No person was found in any frame of clip.mp4; nothing was imported.")
    assert any("No person was found in any frame" in e[1] for e in sidebar_log(bpy_mod) if e[0] == "label")


# --------------------------------------------------------------------------------------------------
# End to end


_CLIP = r"""
import sys
from pathlib import Path
from pixie_backend.body.smplx_layer import PixieSMPLX
from pixie_backend.sequence.synthetic_clip import make_clip
d, out, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
body = PixieSMPLX.from_files(d / "SMPLX_NEUTRAL_2020.npz", d / "smplx_extra_joints.yaml", d / "SMPLX_to_J14.pkl")
make_clip(body, "walk", num_frames=n, size=(320, 180), seed=2).write_video(out / "walk.avi")
(out / "broken.mp4").write_bytes(b"this is no video " * 64)
"""

_SCRIPT = INSTALLED_ADDON + r"""
video, broken = args
prefs.reconstruct_detector = "none"  # the synthetic body has no face a detector finds: one person per frame
seqop = importlib.import_module(name + ".operators.import_sequence")
animation = importlib.import_module(name + ".scene.animation")
io_sequence = importlib.import_module(name + ".io.sequence")

def rigs():
    return [o for o in bpy.data.objects if o.get("pixie_role") == "rig"]

def keyed_frames(arm):
    fcs = animation.action_fcurves(arm.animation_data.action)
    return sorted({round(kp.co[0]) for fc in fcs for kp in fc.keyframe_points})

out = {"install": sorted(res)}
out["op"] = sorted(bpy.ops.pixie.import_sequence(filepath=video, smoothing=0.0))
first = drive(seqop, busy_states=("running", "waiting", "uploading"))
out["first"] = first
out["edits_kept"] = all(n in bpy.data.objects for n in first["edits"])
results = os.path.join(work, "scene_pixie")
out["results"] = sorted(os.listdir(results))
seq = io_sequence.read_sequence(os.path.join(results, "walk.pixie-seq.npz"))
tracks = {t.id: [int(f) for f in t.frames] for t in seq.tracks}
out["tracks"] = {str(k): v for k, v in tracks.items()}
def exp_curves(arm):
    body = next(c for c in arm.children if c.type == "MESH")
    return len(animation.action_fcurves(body.data.shape_keys.animation_data.action))

out["rigs"] = [dict(name=a.name, track=int(a["pixie_track_id"]), frames=keyed_frames(a), exp=exp_curves(a))
               for a in rigs()]
joint_names = list(importlib.import_module(name + ".io.constants").JOINT_NAMES)
out["joint_names"] = joint_names
keyed = {}  # per rig: what the scene shows at each keyed frame (bone quaternions, Exp values)
for a in rigs():
    kbs = next(c for c in a.children if c.type == "MESH").data.shape_keys.key_blocks
    rows = []
    for f in keyed_frames(a):
        bpy.context.scene.frame_set(f)
        rows.append(dict(frame=f, quat=[list(a.pose.bones[j].rotation_quaternion) for j in joint_names],
                         exp=[kbs[f"Exp{i:03d}"].value for i in range(50)]))
    keyed[str(int(a["pixie_track_id"]))] = rows
out["keyed"] = keyed
scene = bpy.context.scene
out["scene"] = [scene.render.fps, scene.render.fps_base, scene.frame_start, scene.frame_end]
def backgrounds(cams):
    return [os.path.realpath(bpy.path.abspath(c.data.background_images[0].clip.filepath))
            for c in cams if len(c.data.background_images) and c.data.background_images[0].clip]

cams = {o.name for o in bpy.data.objects if o.type == "CAMERA"}
out["background"] = backgrounds(bpy.data.objects[n] for n in cams)
out["undo_steps"] = seqop.STATE.undo_steps

# the kept result imports again without computing
mtime = os.path.getmtime(os.path.join(results, "walk.pixie-seq.npz"))
n_rigs = len(rigs())
out["again"] = sorted(bpy.ops.pixie.import_sequence(filepath=os.path.join(results, "walk.pixie-seq.npz")))
out["again_task"] = seqop.STATE.task is None and os.path.getmtime(os.path.join(results, "walk.pixie-seq.npz")) == mtime
out["again_rigs"] = len(rigs()) - n_rigs
out["again_background"] = backgrounds(o for o in bpy.data.objects if o.type == "CAMERA" and o.name not in cams)

# a corrupt video: one sentence, the scene as it was
before = sorted(o.name for o in bpy.data.objects)
bpy.ops.pixie.import_sequence(filepath=broken)
bad = drive(seqop, busy_states=("running", "waiting", "uploading"))
out["bad"] = bad
out["unchanged"] = sorted(o.name for o in bpy.data.objects if o.name not in set(bad["edits"])) == before
import addon_utils
addon_utils.disable(name, default_set=True)
print("RESULT " + json.dumps(out))
"""


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z) → (..., 3, 3) rotation matrices."""
    q = np.asarray(q, np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def _assert_keys_are_the_files_poses(r: dict, path: Path) -> None:
    """What the scene shows at each keyed frame (Smoothing 0) equals the sequence file's raw rows,
    read here with numpy alone: bone rotations = ``full_pose`` (the root turned upright, 180° about
    X: the documented convention), the Exp keys = ``expression``; rows of track k land on scene
    frame ``row_frame + 1`` (Start Frame 1)."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["header"][()]))
        track_id, row_track, row_frame = z["track_id"], z["row_track"], z["row_frame"]
        full_pose, expression = z["full_pose"].astype(np.float64), z["expression"].astype(np.float64)
    order = [header["joint_names"].index(n) for n in r["joint_names"]]
    assert sorted(r["keyed"]) == sorted(str(int(t)) for t in track_id)
    for k, tid in enumerate(track_id):
        rows = np.flatnonzero(row_track == k)
        keyed = r["keyed"][str(int(tid))]
        assert [e["frame"] for e in keyed] == [int(f) + 1 for f in row_frame[rows]]
        for e, row in zip(keyed, rows, strict=True):
            expected = full_pose[row].copy()
            expected[0] = np.diag([1.0, -1.0, -1.0]) @ expected[0]
            np.testing.assert_allclose(_quat_to_matrix(e["quat"]), expected[order], atol=1e-5, err_msg=e["frame"])
            np.testing.assert_allclose(e["exp"], expression[row][:50], atol=1e-5, err_msg=e["frame"])
    assert len(row_track) > 0 and not np.allclose(full_pose[:, 1:], np.eye(3), atol=1e-3)  # a real pose


@pytest.mark.slow
@pytest.mark.skipif(not BACKEND_PY.exists(), reason="the main .venv (tests/support/bootstrap.py)")
def test_video_to_animated_rigs_through_the_installed_extension(tmp_path):
    from tools.build_extension import build

    zip_path = build(tmp_path / "dist", quiet=True)
    data = tmp_path / "data"
    env = user_env(tmp_path)
    make_synthetic_data(data, env)
    clips = tmp_path / "clips"
    clips.mkdir()
    run_backend(["-c", _CLIP, data, clips, CLIP_FRAMES], env)
    work = tmp_path / "work"
    work.mkdir()
    video = clips / "walk.avi"
    r = run_script(_SCRIPT, [zip_path, BACKEND_PY, data, work, video, clips / "broken.mp4"], env=env, timeout=1200)
    print(json.dumps({k: r[k] for k in ("first", "bad")}, indent=1))

    assert r["install"] == ["FINISHED"] and r["op"] == ["FINISHED"]
    first = r["first"]
    assert first["state"] == "done" and first["report"][0] in ("INFO", "WARNING"), first
    assert first["report"][1].startswith("Tracked ") and f"over {CLIP_FRAMES} frames of walk.avi" in first["report"][1]
    assert any(t.startswith("Frame ") and f" of {CLIP_FRAMES}: " in t for t in first["texts"]), first["texts"]
    # the main thread came back between steps while the backend worked, and the scene stayed editable
    assert first["busy"] >= 5 and first["longest"] < 0.5 and first["edits"] and r["edits_kept"]
    assert r["undo_steps"] == 1

    # one rig per track, keyed on the track's clip frames (Start Frame 1 = clip frame 0), 50 Exp curves
    tracks = {int(k): v for k, v in r["tracks"].items()}
    assert tracks and sorted(rig["track"] for rig in r["rigs"]) == sorted(tracks)
    for rig in r["rigs"]:
        assert rig["frames"] == [f + 1 for f in tracks[rig["track"]]], rig
        assert rig["exp"] == 50
    assert len(tracks) == len(r["rigs"]) == 1  # detector "none": the whole frame is one person, one track
    assert any(len(v) == CLIP_FRAMES for v in tracks.values())  # the walker, in every frame
    _assert_keys_are_the_files_poses(r, work / "scene_pixie" / "walk.pixie-seq.npz")
    assert r["scene"] == [30, 1.0, 1, CLIP_FRAMES]
    assert r["background"] == [os.path.realpath(video)]  # the local video, through the source record
    assert {"walk.pixie-seq.npz", "walk.pixie-seq-source.json"} <= set(r["results"])
    assert any(n.startswith("smplx_package_") for n in r["results"])

    # importing the kept file again: no job, the same rigs, the video found again
    assert r["again"] == ["FINISHED"] and r["again_task"] and r["again_rigs"] == len(tracks)
    assert r["again_background"] == [os.path.realpath(video)]

    bad = r["bad"]
    assert bad["state"] == "failed" and bad["code"] == "not_a_video" and bad["report"][0] == "ERROR", bad
    assert bad["report"][1].startswith("broken.mp4: OpenCV cannot open it as a video")
    assert r["unchanged"]
