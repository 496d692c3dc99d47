"""The sequence job end to end, on synthetic clips (``sequence.synthetic_clip``: the small synthetic
body moving, drawn into PNG frames and an MJPG video) and the tiny random network.

The clips' face-driven detector is simulated by per-frame given boxes (``clip.detections``: a
person who turns away or is hidden has no box). Identity tests run on :class:`SilhouetteEngine`
(``tests/support/silhouette_engine.py``): the tiny network whose keypoints sit on the crop's body,
because random weights put them anywhere; everything else is the job's own."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pixie_backend.cli import main

from tests.support.protocol import validate_events

ROOT = Path(__file__).resolve().parents[2]
TURN_FRAMES, HIDDEN = 40, range(20, 30)  # turn_away: the second person turns its back in frames 20-29


# --------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def body(small_data_dir):
    from pixie_backend.body.smplx_layer import PixieSMPLX

    d = small_data_dir
    return PixieSMPLX.from_files(d / "SMPLX_NEUTRAL_2020.npz", d / "smplx_extra_joints.yaml", d / "SMPLX_to_J14.pkl")


def _given(clip) -> dict[int, list[list[float]]]:
    """What the face-driven detector finds in every frame."""
    return {k: [b.tolist() for _, b in clip.detections(k)] for k in range(clip.num_frames)}


@pytest.fixture(scope="module")
def crossing(body, tmp_path_factory):
    from pixie_backend.sequence.synthetic_clip import make_clip

    clip = make_clip(body, "crossing", num_frames=60, seed=1)
    d = tmp_path_factory.mktemp("crossing")
    video = clip.write_video(d / "crossing.avi")
    boxes = d / "boxes.json"
    boxes.write_text(json.dumps({str(k): v for k, v in _given(clip).items()}))
    return clip, video, boxes


@pytest.fixture(scope="module")
def turn_away(body, tmp_path_factory):
    from pixie_backend.sequence.synthetic_clip import make_clip

    clip = make_clip(body, "turn_away", num_frames=TURN_FRAMES, seed=1)
    d = tmp_path_factory.mktemp("turn_away")
    clip.render_frames(d / "frames")
    boxes = d / "boxes.json"
    boxes.write_text(json.dumps({str(k): v for k, v in _given(clip).items()}))
    return clip, d / "frames", boxes


@pytest.fixture(scope="module")
def engine(small_data_dir):
    from pixie_backend.config import PixieConfig
    from pixie_backend.runtime.engine import Engine

    return Engine.from_data_dir(small_data_dir, PixieConfig(device="cpu"))


@pytest.fixture(scope="module")
def oracle(engine):
    from tests.support.silhouette_engine import SilhouetteEngine

    return SilhouetteEngine(engine)


def run_job(engine, clip, out, **options):
    from pixie_backend.jobs.sequence import SequenceJob, SequenceOptions

    job = SequenceJob(engine, clip, SequenceOptions(out, **options))
    events = [e.to_dict() for e in job.run()]
    validate_events(json.loads(json.dumps(events)))
    return job, events


def run_cli(capsys, *args) -> tuple[int, list[dict], str]:
    code = main(["reconstruct-video", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    events = [json.loads(x) for x in out.splitlines()]
    validate_events(events)
    assert "Traceback" not in err
    return code, events, err


def read_sequence(path):
    from pixie_backend.sequence.sequence_file import read_sequence_arrays

    return read_sequence_arrays(path)


def ledger(work: Path) -> list[dict]:
    return [json.loads(x) for x in (work / "status.jsonl").read_text().splitlines()]


def recomputed(events) -> set[str]:
    return {e["item"] for e in events if e["event"] == "item_done" and not e["resumed"]}


def resumed(events) -> set[str]:
    return {e["item"] for e in events if e["event"] == "item_done" and e["resumed"]}


def person_of_rows(clip, arrays) -> np.ndarray:
    """(R,) the true person each row's box overlaps most, and (R,) that overlap (IoU)."""
    from pixie_backend.sequence.tracker import box_iou

    iou = np.array([[box_iou(arrays["bbox"][r], clip.boxes[p][arrays["row_frame"][r]])[0, 0]
                     for p in range(len(clip.persons))] for r in range(len(arrays["row_frame"]))])
    return iou.argmax(axis=1), iou.max(axis=1)


def assert_same_sequence(a: Path, b: Path) -> None:
    """Two sequence files hold the same values (the header's creation time aside)."""
    (ha, xa), (hb, xb) = read_sequence(a), read_sequence(b)
    ha.pop("created")
    hb.pop("created")
    assert ha == hb
    assert sorted(xa) == sorted(xb)
    for k in xa:
        np.testing.assert_array_equal(xa[k], xb[k], err_msg=k)


# --------------------------------------------------------------------------------------------------
# end to end


def test_video_through_the_cli(small_data_dir, crossing, tmp_path, capsys):
    """An MJPG video: decoded with its frame times, every frame committed and reported, the
    sequence file and one AMASS file per track written, the event stream valid."""
    from pixie_backend.assets import sha256_file

    clip, video, boxes = crossing
    out = tmp_path / "out"
    code, events, _ = run_cli(capsys, video, "-o", out, "--data-dir", small_data_dir, "--device", "cpu",
                              "--boxes", boxes, "--amass", "--batch-size", "4")
    assert code == 0
    started, fin = events[0], events[-1]
    assert started["job_kind"] == "sequence" and started["total"] == 60
    assert started["details"]["clip"]["kind"] == "video" and started["details"]["clip"]["fps"] == 30.0
    assert fin["status"] == "ok" and fin["counts"] == {"ok": 60, "no_person": 0, "failed": 0, "skipped": 0}
    assert [e["index"] for e in events if e["event"] == "item_done"] == list(range(60))  # frame order
    progress = [e for e in events if e["event"] == "progress" and e["stage"] == "frames"]
    assert progress[-1]["done"] == 60 and progress[-1]["details"]["frames_per_s"] > 0
    assert all(p["details"]["eta_s"] >= 0 for p in progress[1:])

    seq = out / "crossing.pixie-seq.npz"
    assert fin["details"]["sequence"] == str(seq)
    header, arrays = read_sequence(seq)
    assert header["source"]["kind"] == "video" and header["source"]["sha256"] == sha256_file(video)
    assert header["num_frames"] == 60 and header["fps"] == 30.0
    np.testing.assert_array_equal(arrays["frame_index"], np.arange(60))
    np.testing.assert_allclose(arrays["timestamps"], clip.timestamps, atol=1e-6)  # the video's own frame times
    assert (arrays["frame_status"] == 0).all()
    assert header["settings"]["detector"] == "given" and header["synthetic"] is True
    assert header["camera"]["width"] == 640 and header["camera"]["height"] == 360
    given = arrays["box_source"] == 2  # rows from the given boxes carry exactly those boxes
    for r in np.flatnonzero(given):
        k = arrays["row_frame"][r]
        assert min(np.abs(arrays["bbox"][r] - b).max() for _, b in clip.detections(k)) < 1e-3
    assert set(np.unique(arrays["box_source"])) <= {1, 2}
    assert (out / header["model"]["package"]["file"]).is_file()
    amass = sorted(out.glob("crossing_track*.amass.npz"))
    assert [Path(p).name for p in fin["details"]["amass"]] == [p.name for p in amass]
    assert len(amass) == header["num_tracks"]
    with np.load(amass[0], allow_pickle=False) as z:
        assert z["poses"].shape[1] == 165 and float(z["mocap_frame_rate"]) == 30.0
    records = ledger(out / "crossing.pixie-frames")
    assert sorted(r["item"] for r in records) == [f"frame_{k:06d}" for k in range(60)]
    assert all(r["status"] == "ok" for r in records)


@pytest.mark.parametrize("scenario", ["crossing", "turn_away"])
def test_identities_through_the_job(oracle, crossing, turn_away, tmp_path, scenario):
    """Two people crossing (the farther one hidden while they overlap) keep their ids; a person
    whose face disappears for 10 frames keeps the id, followed through the crops its previous
    keypoints proposed."""
    clip, path, _ = crossing if scenario == "crossing" else turn_away
    job, events = run_job(oracle, path, tmp_path / "out", boxes=_given(clip))
    assert events[-1]["exit_code"] == 0
    _, arrays = read_sequence(job.sequence_path)
    assert len(arrays["track_id"]) == 2
    person, iou = person_of_rows(clip, arrays)
    for t in range(2):  # each track follows one person, and each person has one track
        assert len(set(person[arrays["row_track"] == t])) == 1
    assert set(person[arrays["row_track"] == 0]) != set(person[arrays["row_track"] == 1])
    if scenario == "turn_away":
        second = arrays["row_track"] == int(np.flatnonzero([set(person[arrays["row_track"] == t]) == {1}
                                                             for t in range(2)])[0])
        frames = arrays["row_frame"][second]
        assert set(HIDDEN) <= set(frames.tolist())  # followed while turned away...
        hidden = second & np.isin(arrays["row_frame"], list(HIDDEN))
        assert (arrays["box_source"][hidden] == 1).all()  # ...by proposals...
        assert (iou[hidden] > 0.5).all()  # ...that stayed on the person
        assert frames.max() == TURN_FRAMES - 1  # and the detection takes the same track back
    else:
        far = [t for t in range(2) if set(person[arrays["row_track"] == t]) == {1}][0]
        frames = arrays["row_frame"][arrays["row_track"] == far]
        assert frames.min() == 0 and frames.max() == 59  # the same id before and after the crossing
        assert not clip.detected(29, 1) and 29 not in frames  # hidden: missing, not made up


def test_memory_alone_keeps_the_id(oracle, turn_away, tmp_path):
    """Without proposals the turned-away person is missing for 10 frames and keeps the id (the
    tracker's memory)."""
    clip, frames_dir, _ = turn_away
    job, events = run_job(oracle, frames_dir, tmp_path / "out", boxes=_given(clip), proposals=False)
    _, arrays = read_sequence(job.sequence_path)
    assert len(arrays["track_id"]) == 2
    person, _ = person_of_rows(clip, arrays)
    second = [t for t in range(2) if set(person[arrays["row_track"] == t]) == {1}][0]
    frames = set(arrays["row_frame"][arrays["row_track"] == second].tolist())
    assert frames == set(range(TURN_FRAMES)) - set(HIDDEN)
    assert all(e["details"]["proposals"] == 0 for e in events if e["event"] == "item_done")


# --------------------------------------------------------------------------------------------------
# kill and resume


@pytest.fixture(scope="module")
def uninterrupted(small_data_dir, turn_away, tmp_path_factory):
    """The reference: the same command, never interrupted."""
    _, frames_dir, boxes = turn_away
    out = tmp_path_factory.mktemp("reference")
    args = kill_args(small_data_dir, frames_dir, boxes, out)
    proc = subprocess.run([sys.executable, "-m", "pixie_backend", *args], capture_output=True, text=True,
                          timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr
    return out / "frames.pixie-seq.npz"


def kill_args(data_dir, frames_dir, boxes, out):
    # batch size 1: a frame's persons always run as one batch, so reruns give bit-identical numbers
    return ["reconstruct-video", str(frames_dir), "-o", str(out), "--data-dir", str(data_dir), "--device", "cpu",
            "--boxes", str(boxes), "--batch-size", "1", "--json"]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "backend"), str(ROOT)])}


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("point,committed", [("after_frame", False), ("during_status", False),
                                             ("after_status", True)])
def test_kill_and_resume(small_data_dir, turn_away, uninterrupted, tmp_path, point, committed):
    """A real process is SIGKILLed while committing frame 22 (the second person is followed by
    proposals then); the rerun computes only the frames not committed, each frame has exactly one
    record, and the sequence file equals the uninterrupted run's."""
    _, frames_dir, boxes = turn_away
    out = tmp_path / "out"
    args = kill_args(small_data_dir, frames_dir, boxes, out)
    proc = subprocess.run([sys.executable, str(ROOT / "tests/support/kill_at.py"), point, "frame_000022", *args],
                          capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == -9, proc.stderr  # really killed
    before = [json.loads(x) for x in proc.stdout.splitlines()]
    first = recomputed(before)
    assert first == {f"frame_{k:06d}" for k in range(22)}
    assert not (out / "frames.pixie-seq.npz").exists()

    rerun = subprocess.run([sys.executable, "-m", "pixie_backend", *args], capture_output=True, text=True,
                           timeout=600, env=_env())  # a process like the reference's (same threads)
    events = [json.loads(x) for x in rerun.stdout.splitlines()]
    validate_events(events)
    assert rerun.returncode == 0, rerun.stderr
    done = 23 if committed else 22
    assert resumed(events) == {f"frame_{k:06d}" for k in range(done)}  # nothing committed is recomputed
    assert recomputed(events) == {f"frame_{k:06d}" for k in range(done, TURN_FRAMES)}
    records = ledger(out / "frames.pixie-frames")
    assert sorted(r["item"] for r in records) == [f"frame_{k:06d}" for k in range(TURN_FRAMES)]  # one each
    assert not list((out / "frames.pixie-frames" / ".pixie-staging").iterdir())
    assert_same_sequence(out / "frames.pixie-seq.npz", uninterrupted)  # nothing is lost


def test_resume_recomputes_only_what_changed(engine, turn_away, tmp_path):
    """A frame whose file changed is computed again; the frames after it are reused where the
    tracker, replayed, proposes the crops they were computed with, and run only the new proposals
    where it does not. The result equals a fresh run on the changed clip."""
    clip, frames_dir, _ = turn_away
    frames = tmp_path / "frames"
    shutil.copytree(frames_dir, frames)
    opts = {"boxes": _given(clip), "batch_size": 1}
    job, first = run_job(engine, frames, tmp_path / "out", **opts)
    assert len(recomputed(first)) == TURN_FRAMES
    again_job, again = run_job(engine, frames, tmp_path / "out", **opts)
    assert recomputed(again) == set() and len(resumed(again)) == TURN_FRAMES

    changed = 21  # the second person is followed by proposals here
    shutil.copy(frames / f"frame_{changed + 2:05d}.png", frames / f"frame_{changed + 1:05d}.png")
    job, events = run_job(engine, frames, tmp_path / "out", **opts)
    done = {e["index"]: e for e in events if e["event"] == "item_done"}
    assert all(done[k]["resumed"] for k in range(changed))
    assert not done[changed]["resumed"] and "model" in done[changed]["details"]["timings"]
    later = [done[k] for k in range(changed + 1, TURN_FRAMES)]
    reused = [e for e in later if e["resumed"]]
    rerun = [e for e in later if not e["resumed"]]
    assert reused  # not everything after the change is recomputed...
    # ...and what is runs at most its new proposals: its detections' results are reused. (Which later
    # frames change, and whether a change adds a proposal or drops one, depends on float32 rounding:
    # with the AVX2 kernels forced a replayed track drops a proposal, and that frame is committed
    # again without any network run.)
    for e in rerun:
        assert "model" not in e["details"]["timings"], e
    fresh, _ = run_job(engine, frames, tmp_path / "fresh", **opts)
    assert_same_sequence(job.sequence_path, fresh.sequence_path)

    # proposals off: no network runs again at all (frames that had proposals drop them)
    job, events = run_job(engine, frames, tmp_path / "out", **opts, proposals=False)
    done = [e for e in events if e["event"] == "item_done"]
    assert len(done) == TURN_FRAMES and not any("model" in e["details"]["timings"] for e in done)
    assert any(not e["resumed"] for e in done)  # those that had proposals
    fresh, _ = run_job(engine, frames, tmp_path / "fresh-off", **opts, proposals=False)
    assert_same_sequence(job.sequence_path, fresh.sequence_path)


def test_cancel_keeps_committed_frames(engine, turn_away, tmp_path):
    from pixie_backend.jobs.sequence import SequenceJob, SequenceOptions

    clip, frames_dir, _ = turn_away
    job = SequenceJob(engine, frames_dir, SequenceOptions(tmp_path / "out", boxes=_given(clip)))
    events = []
    for e in job.run():
        events.append(e.to_dict())
        if e.kind == "item_done" and e.index == 4:
            job.cancel()
    validate_events(events)
    assert events[-1]["status"] == "cancelled" and events[-1]["exit_code"] == 130
    assert len(recomputed(events)) == 5 and job.sequence_path is None
    _, again = run_job(engine, frames_dir, tmp_path / "out", boxes=_given(clip))
    assert len(resumed(again)) == 5 and len(recomputed(again)) == TURN_FRAMES - 5


def test_frame_limit_and_relative_source(engine, turn_away, tmp_path):
    """``max_frames`` reads the first frames only (said so in a warning); ``relative_source``
    records frames inside the output folder by their relative paths, and the file's other content
    is unchanged (the rest of the frames' paths aside)."""
    from pixie_backend.sequence.sequence_file import read_sequence_arrays

    clip, frames_dir, _ = turn_away
    out = tmp_path / "out"
    shutil.copytree(frames_dir, out / "frames")
    job, events = run_job(engine, out / "frames", out, boxes=_given(clip), max_frames=6, relative_source=True)
    assert events[0]["total"] == 6 and events[-1]["status"] == "ok" and events[-1]["counts"]["ok"] == 6
    assert [e["index"] for e in events if e["event"] == "item_done"] == list(range(6))
    assert any(e["event"] == "message" and "only the first 6 frames" in e["text"] for e in events)
    assert events[-1]["details"]["files"] == ["frames.pixie-seq.npz"]
    header, arrays = read_sequence_arrays(job.sequence_path)
    assert header["num_frames"] == 6 and header["source"]["path"] == "frames"
    assert list(arrays["frame_paths"]) == [f"frames/frame_{k:05d}.png" for k in range(1, 7)]
    plain, _ = run_job(engine, out / "frames", tmp_path / "plain", boxes=_given(clip), max_frames=6)
    ha, xa = read_sequence_arrays(plain.sequence_path)
    assert Path(ha["source"]["path"]) == (out / "frames").resolve()
    for k in xa:
        if k != "frame_paths":
            np.testing.assert_array_equal(arrays[k], xa[k], err_msg=k)


def test_prefetch_and_workers_do_not_change_the_result(engine, turn_away, tmp_path):
    """Frames prepared one at a time in the job's thread, or ahead of it by two threads at once
    (finishing out of order), give the same file."""
    clip, frames_dir, _ = turn_away
    opts = {"boxes": _given(clip), "batch_size": 1}
    paths = []
    for name, extra in (("serial", {"prefetch": False}), ("two", {"workers": 2})):
        job, events = run_job(engine, frames_dir, tmp_path / name, **opts, **extra)
        assert events[-1]["exit_code"] == 0
        assert [e["index"] for e in events if e["event"] == "item_done"] == list(range(TURN_FRAMES))
        paths.append(job.sequence_path)
    assert_same_sequence(paths[0], paths[1])


def test_gpu_path_gives_the_cpu_result(small_data_dir, turn_away, tmp_path, monkeypatch):
    """The sequence job as it runs for a GPU (frames handed to the engine, which cuts the body crops
    from the uploaded image, for detections and proposals alike; a pool of preparers; pipelined
    batches; part crops left behind), run on the CPU, gives the CPU path's file (float64)."""
    from pixie_backend.config import PixieConfig
    from pixie_backend.runtime.engine import Engine

    class GpuLike(Engine):
        uploads = 0

        @property
        def accelerated(self) -> bool:
            return True

        def upload(self, pixels, centers, sides):
            GpuLike.uploads += 1
            return super().upload(pixels, centers, sides)

    cpu = Engine.from_data_dir(small_data_dir, PixieConfig(device="cpu", dtype="float64"))
    gpu = GpuLike(cpu.model, cpu.files, cpu.appearance, cpu.appearance_notices)
    clip, frames_dir, _ = turn_away
    first, n = HIDDEN.start - 4, 8  # frames 16-23: the second person turns away at 20 (proposals follow it)
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(n):
        shutil.copy(frames_dir / f"frame_{first + k + 1:05d}.png", frames / f"frame_{k + 1:05d}.png")
    given = _given(clip)
    opts = {"boxes": {k: given[first + k] for k in range(n)}, "batch_size": 3}
    frames_dir = frames
    ref, _ = run_job(cpu, frames_dir, tmp_path / "cpu", **opts)

    def no_host_crops(*args, **kwargs):
        raise AssertionError("a body crop was cut on the host")

    monkeypatch.setattr("pixie_backend.jobs.prepare.bilinear_square", no_host_crops)
    got, events = run_job(gpu, frames_dir, tmp_path / "gpu", **opts)
    assert events[-1]["exit_code"] == 0
    (_, xa), (_, xb) = read_sequence(got.sequence_path), read_sequence(ref.sequence_path)
    proposal_frames = len(set(xa["row_frame"][xa["box_source"] == 1]))
    assert proposal_frames > 0  # the tracker proposed crops, and they ran on the device path too
    # every frame went up whole, and the frames with proposals once more (a proposal the tracker
    # then rejects leaves no row, so there may be more)
    assert GpuLike.uploads >= n + proposal_frames
    assert sorted(xa) == sorted(xb)
    for k in xa:
        if np.issubdtype(xa[k].dtype, np.floating):
            np.testing.assert_allclose(xa[k], xb[k], rtol=0, atol=1e-9 * max(1.0, float(np.abs(xb[k]).max())),
                                       err_msg=k)
        else:
            np.testing.assert_array_equal(xa[k], xb[k], err_msg=k)


# --------------------------------------------------------------------------------------------------
# bad frames and bad input


def test_corrupt_frame_gets_an_error_and_the_run_goes_on(small_data_dir, turn_away, tmp_path, capsys):
    clip, frames_dir, boxes = turn_away
    frames = tmp_path / "frames"
    shutil.copytree(frames_dir, frames)
    good = (frames / "frame_00006.png").read_bytes()
    (frames / "frame_00006.png").write_bytes(good[: len(good) // 3])  # truncated
    (frames / "frame_00010.png").write_text("not an image")
    (frames / "frame_00099.heic").write_bytes(b"\0\0\0\x18ftypheic")  # a frame we cannot read: reported
    (frames / "readme.txt").write_text("not a frame")  # left out
    out = tmp_path / "out"
    code, events, _ = run_cli(capsys, frames, "-o", out, "--data-dir", small_data_dir, "--device", "cpu",
                              "--boxes", boxes)
    assert code == 3  # some frames failed, the others were written
    errors = {e["index"]: e for e in events if e["event"] == "item_error"}
    assert sorted(errors) == [5, 9, TURN_FRAMES]
    assert "corrupt or truncated" in errors[5]["message"] and "frame_00006.png" in errors[5]["message"]
    assert errors[TURN_FRAMES]["code"] == "unsupported_format"
    assert any("left out 1 file" in e["text"] for e in events if e["event"] == "message")
    fin = events[-1]
    assert fin["status"] == "partial" and fin["counts"]["failed"] == 3 and fin["counts"]["ok"] == TURN_FRAMES - 2
    header, arrays = read_sequence(out / "frames.pixie-seq.npz")
    assert header["num_frames"] == TURN_FRAMES + 1
    assert np.flatnonzero(arrays["frame_status"] == 2).tolist() == [5, 9, TURN_FRAMES]
    assert "truncated" in header["frame_messages"]["5"]
    assert 5 not in arrays["row_frame"] and 6 in arrays["row_frame"] and TURN_FRAMES - 1 in arrays["row_frame"]
    # a rerun retries the failed frames only
    code, again, _ = run_cli(capsys, frames, "-o", out, "--data-dir", small_data_dir, "--device", "cpu",
                             "--boxes", boxes)
    assert code == 3 and recomputed(again) == set() and {e["index"] for e in again if e["event"] == "item_error"} \
        == {5, 9, TURN_FRAMES}


def test_frames_in_natural_order(tmp_path):
    from pixie_backend.jobs.frames import frame_files, natural_key

    names = ["f10.png", "f2.png", "F1.png", "f100.png", "notes.txt", "f9.jpg"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    clip = frame_files(str(tmp_path))
    assert [p.name for p in clip.frame_paths] == ["F1.png", "f2.png", "f9.jpg", "f10.png", "f100.png"]
    assert clip.notes == ("left out 1 file(s) that are not images",)
    pattern = frame_files(str(tmp_path / "f*.png"), fps=24)
    assert [p.name for p in pattern.frame_paths] == ["f2.png", "f10.png", "f100.png"] and pattern.fps == 24
    assert sorted(["a-2", "a-10", "a-1"], key=natural_key) == ["a-1", "a-2", "a-10"]


def test_video_frames_and_times(crossing):
    from pixie_backend.jobs.frames import open_clip

    clip, video, _ = crossing
    source = open_clip(video)
    assert source.kind == "video" and source.fps == 30.0 and source.expected_frames == 60
    frames = list(source.frames())
    assert [f.frame_index for f in frames] == list(range(60))
    np.testing.assert_allclose([f.timestamp for f in frames], clip.timestamps, atol=1e-6)
    assert frames[7].pixels.shape == (360, 640, 3) and frames[7].pixels.dtype == np.uint8
    rendered = clip.render(7).astype(float)  # RGB order, close to what was drawn (MJPG is lossy)
    assert np.abs(frames[7].pixels.astype(float) - rendered).mean() < 4.0


def _bad_inputs(tmp_path, crossing, turn_away):
    _, video, _ = crossing
    _, frames_dir, _ = turn_away
    (tmp_path / "garbage.mp4").write_bytes(b"\0" * 4096)
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"frame_99999.png": [[0, 0, 10, 10]]}))
    return {
        "missing": ([tmp_path / "nope.mp4"], 1, "no such file"),
        "image": ([frames_dir / "frame_00001.png"], 2, "single image"),
        "garbage": ([tmp_path / "garbage.mp4"], 1, "convert it"),
        "empty folder": ([tmp_path / "empty"], 1, "no image files"),
        "text folder": ([tmp_path / "texts"], 1, "no image files"),
        "no match": ([str(tmp_path / "x*.png")], 1, "matched no files"),
        "fps": ([frames_dir, "--fps", "0"], 2, "--fps"),
        "smoothing": ([video, "--smoothing", "2"], 2, "--smoothing"),
        "boxes": ([frames_dir, "--boxes", unknown], 2, "neither a frame number"),
        "out file": ([video, "-o", video], 2, "is a file"),
    }


@pytest.mark.parametrize("case", ["missing", "image", "garbage", "empty folder", "text folder", "no match", "fps",
                                  "smoothing", "boxes", "out file"])
def test_bad_input_is_one_sentence(small_data_dir, crossing, turn_away, tmp_path, capsys, case):
    args, code, words = _bad_inputs(tmp_path, crossing, turn_away)[case]
    if "-o" not in args:
        args = [*args, "-o", tmp_path / "out"]
    got = main(["reconstruct-video", *map(str, args), "--data-dir", str(small_data_dir), "--device", "cpu"])
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert got == code, err
    assert len(lines) == 1 and words in lines[0], err
    assert "Traceback" not in out + err


def test_bad_input_in_a_real_process(small_data_dir, crossing, turn_away, tmp_path):
    """As a user sees it: the whole stderr is one line, and --json gives one ``finished`` record."""
    args, code, words = _bad_inputs(tmp_path, crossing, turn_away)["garbage"]
    proc = subprocess.run([sys.executable, "-m", "pixie_backend", "reconstruct-video", *map(str, args), "-o",
                           str(tmp_path / "o"), "--data-dir", str(small_data_dir), "--json"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=_env())
    assert proc.returncode == code
    assert proc.stderr.strip().count("\n") == 0 and words in proc.stderr and "Traceback" not in proc.stderr
    (record,) = [json.loads(x) for x in proc.stdout.splitlines()]
    validate_events([record])
    assert record["error"]["code"] == "not_a_video"


def test_busy_clip_is_refused_after_the_lock_timeout(small_data_dir, turn_away, tmp_path, capsys):
    """Another run holds the clip's work folder: wait, then give up with exit code 4."""
    import threading

    from pixie_backend.jobs.output import LOCK
    from pixie_backend.locking import folder_lock

    _, frames_dir, boxes = turn_away
    work = tmp_path / "out" / "frames.pixie-frames"
    work.mkdir(parents=True)
    held, release = threading.Event(), threading.Event()

    def hold():
        with folder_lock(work / LOCK):
            held.set()
            release.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        code, events, _ = run_cli(capsys, frames_dir, "-o", tmp_path / "out", "--data-dir", small_data_dir,
                                  "--device", "cpu", "--boxes", boxes, "--lock-timeout", "0.2")
    finally:
        release.set()
        t.join()
    assert code == 4 and events[-1]["error"]["code"] == "busy"
    assert any("waiting" in e.get("text", "") for e in events)
