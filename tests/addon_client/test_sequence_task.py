"""Import Image Sequence without bpy: :class:`SequenceTask` against the real service (remote
connector; the local connector's start/restart is the shared ``task.LocalConnector`` tested with
Reconstruct from Image). A video and a folder of frames become a sequence file in the results
folder with its source record and model package; progress reads frame k of n with frames/s; every
failure ends the task with one sentence and a stable code."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pixie_blender.client import supervisor
from pixie_blender.client.sequence import (
    SOURCE_RECORD_SUFFIX,
    VIDEO_EXTENSIONS,
    ClipInput,
    SequenceRequest,
    SequenceTask,
    allocate_name,
    clip_input,
    natural_key,
)
from pixie_blender.client.task import LocalConnector, RemoteConnector
from tests.support.service import child_env, png_bytes
from tests.support.service_fixtures import CLIP_FRAMES


def request(tmp_path, source, **kw) -> SequenceRequest:
    kw.setdefault("addon_version", "0.1.0")
    kw.setdefault("detector", "none")
    return SequenceRequest(Path(source), tmp_path / "results", tmp_path / "cache", **kw)


def run(task: SequenceTask, timeout: float = 240.0):
    """Drive the task as the operator's timer does; returns (progress, longest step, texts seen)."""
    longest, texts = 0.0, []
    deadline = time.monotonic() + timeout
    while True:
        t0 = time.perf_counter()
        finished = task.step()
        longest = max(longest, time.perf_counter() - t0)
        if not texts or texts[-1] != task.progress.text:
            texts.append(task.progress.text)
        if finished:
            return task.progress, longest, texts
        assert time.monotonic() < deadline, task.progress
        time.sleep(0.01)


def remote(served) -> RemoteConnector:
    return RemoteConnector(served.url, served.token)


def test_video_to_sequence_file(served, crossing_clip, tmp_path):
    from pixie_blender.io.sequence import find_sequence_package, read_sequence

    _clip, video, *_ = crossing_clip
    task = SequenceTask(remote(served), request(tmp_path, video))
    p, longest, texts = run(task)
    assert p.state == "done", p.message
    result = p.result
    assert result.name == "crossing" and result.path == tmp_path / "results" / "crossing.pixie-seq.npz"
    persons = f"{result.tracks} person{'s' if result.tracks != 1 else ''}"
    assert p.message == f"Tracked {persons} over 16 frames of crossing.avi"
    assert p.total == CLIP_FRAMES and p.done == CLIP_FRAMES and p.frames_per_s > 0 and p.upload == p.sent > 0
    assert any(re.fullmatch(r"Uploading crossing.avi: \d+ % of [\d.]+ (MB|kB)", t) for t in texts), texts
    frames_texts = [t for t in texts if t.startswith("Frame ") and f" of {CLIP_FRAMES}: " in t]
    assert frames_texts and any("frames/s" in t and " left" in t for t in frames_texts), texts
    assert longest < 1.0  # the main thread is never held while the backend works

    record = json.loads((tmp_path / "results" / f"crossing{SOURCE_RECORD_SUFFIX}").read_text())
    assert record["video"] == str(video.resolve()) and len(record["sha256"]) == 64
    seq = read_sequence(result.path)
    assert seq.find_video() == video.resolve()  # the local video, through the source record
    [cached] = (tmp_path / "cache" / "packages").iterdir()
    assert find_sequence_package(seq).content_sha256 == cached.stem
    assert (tmp_path / "results" / f"smplx_package_{cached.stem[:12]}.npz").is_file()
    jobs = task._client.request_json("GET", "/v1/jobs")["jobs"]
    assert p.job_id not in [j["id"] for j in jobs]  # the job's files were deleted on the server

    # the same clip again reuses its name; another clip of the same name gets crossing_2
    again = SequenceTask(remote(served), request(tmp_path, video))
    assert run(again)[0].result.name == "crossing"
    other = tmp_path / "other" / "crossing.avi"
    other.parent.mkdir()
    other.write_bytes(video.read_bytes()[:-1000])
    assert allocate_name(clip_input(other), "0" * 64, tmp_path / "results") == "crossing_2"


def test_folder_of_frames_in_natural_order(served, crossing_clip, tmp_path):
    from pixie_backend.sequence.sequence_file import read_sequence_arrays

    from pixie_blender.io.sequence import read_sequence

    _clip, _video, frames, *_ = crossing_clip
    folder = tmp_path / "take"
    folder.mkdir()
    for k, f in enumerate(frames):  # f1 ... f16: natural order differs from the names' sort order
        (folder / f"f{k + 1}.png").write_bytes(f.read_bytes())
    (folder / "notes.txt").write_text("not a frame")
    assert [p.name for p in clip_input(folder).files][:3] == ["f1.png", "f2.png", "f3.png"]
    assert clip_input(folder / "f7.png").files == clip_input(folder).files  # one frame picks its folder
    task = SequenceTask(remote(served), request(tmp_path, folder, fps=24.0))
    p, _, _ = run(task)
    assert p.state == "done", p.message
    assert p.message.endswith("over 16 frames of take/")
    header, arrays = read_sequence_arrays(p.result.path)
    assert header["fps"] == 24.0 and header["source"]["kind"] == "frames"
    assert [Path(x).name for x in arrays["frame_paths"]] == [f"f{k}.png" for k in range(1, 17)]
    seq = read_sequence(p.result.path)
    assert seq.find_frames() == [(folder / f"f{k}.png").resolve() for k in range(1, 17)]


def test_failures_are_one_sentence(served, tmp_path):
    def video(name, frames, size, value=0):
        import cv2

        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        w, h = size
        out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
        for _ in range(frames):
            out.write(np.full((h, w, 3), value, np.uint8))
        out.release()
        return path

    garbage = tmp_path / "in" / "clip.mp4"
    garbage.parent.mkdir(exist_ok=True)
    garbage.write_bytes(b"not a video at all" * 100)
    big = tmp_path / "in" / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(7 * 1024 * 1024))
    empty_dir = tmp_path / "in" / "empty"
    empty_dir.mkdir()
    (empty_dir / "readme.txt").write_text("x")
    many = tmp_path / "in" / "many"
    many.mkdir()
    for i in range(41):
        (many / f"{i}.png").write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    grey = video("grey.avi", 3, (96, 96), 128)
    long = video("long.avi", 41, (16, 16))
    cases = [
        (tmp_path / "in" / "gone.mp4", {}, "input_missing", "gone.mp4: no such file or folder."),
        (empty_dir, {}, "no_frames", "no frames to read"),
        (garbage, {}, "not_a_video", "clip.mp4: OpenCV cannot open it as a video"),
        (big, {}, "upload_too_large", "The video big.mp4 (7.3 MB) is more than the backend accepts (6.3 MB)"),
        (many, {}, "too_many_frames", "many/ holds 41 frames, more than the backend takes at once (40)"),
        (long, {}, "too_many_frames", "long.avi: 41 frames; the service takes at most 40 per job (cut the video)"),
        (grey, {"detector": "opencv"}, "no_person", "No person was found in any frame of grey.avi; nothing was"),
    ]
    for source, kw, code, words in cases:
        p, _, _ = run(SequenceTask(remote(served), request(tmp_path, source, **kw)))
        assert p.state == "failed" and p.error_code == code and words in p.message, (code, p.message)
    assert not list((tmp_path / "results").glob("*.pixie-seq.npz"))
    p, _, _ = run(SequenceTask(RemoteConnector(served.url, "0" * 64), request(tmp_path, grey)))
    assert p.error_code == "unauthorized" and "refused the token" in p.message


def test_cancel(served, crossing_clip, tmp_path):
    _clip, video, *_ = crossing_clip
    task = SequenceTask(remote(served), request(tmp_path, video))
    task.cancel()
    p, _, _ = run(task)
    assert p.state == "cancelled" and p.message == "Cancelled; nothing was imported."
    task = SequenceTask(remote(served), request(tmp_path, video))
    while task.progress.done < 1 and not task.step():
        time.sleep(0.01)
    task.cancel()
    p, _, _ = run(task)
    assert p.state == "cancelled" and p.result is None and p.done < CLIP_FRAMES
    assert not (tmp_path / "results" / "crossing.pixie-seq.npz").exists()


@pytest.mark.slow
def test_local_backend_killed_mid_job(service_data, crossing_clip, tmp_path):
    """The local backend (started through the supervisor) dies while it tracks the clip: one
    sentence that says so and which button restarts it; nothing is written to the results."""
    _clip, _video, frames, *_ = crossing_clip
    folder = tmp_path / "long"
    folder.mkdir()
    for k in range(3 * CLIP_FRAMES):  # long enough to be killed in the middle
        (folder / f"f{k:03d}.png").write_bytes(frames[k % CLIP_FRAMES].read_bytes())
    sup = supervisor.Supervisor(tmp_path / "state", "0.1.0", idle_timeout=600)
    command = supervisor.backend_command(sys.executable, "serve", "--data-dir", str(service_data))
    try:
        connector = LocalConnector(sup, command, child_env(), action="Import Image Sequence")
        task = SequenceTask(connector, request(tmp_path, folder))
        deadline = time.monotonic() + 300
        while task.progress.done < 1 and not task.step():
            assert time.monotonic() < deadline, task.progress
            time.sleep(0.01)
        assert task.progress.state == "running", task.progress
        os.kill(sup.process.pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        p, _, _ = run(task)
        assert p.state == "failed" and p.error_code == "backend_died", (p.error_code, p.message)
        assert p.message.startswith("The backend stopped during the job") and p.done < 3 * CLIP_FRAMES
        assert "Nothing was imported; click Import Image Sequence again to restart it." in p.message
        assert not list((tmp_path / "results").glob("*.pixie-seq*"))
    finally:
        sup.shutdown()


def test_streamed_body_equals_the_in_memory_one_and_stops_on_cancel(tmp_path):
    """The upload streamed from disk is byte for byte the in-memory multipart body (same boundary),
    its Content-Length is right, and a cancel during the upload stops it between chunks."""
    from pixie_blender.client.service_client import MultipartFiles, UploadCancelled, encode_multipart

    a, b = tmp_path / "f1.png", tmp_path / "ä b.png"
    a.write_bytes(np.random.default_rng(1).bytes(10_000))
    b.write_bytes(b"")
    fields = [("name", "take"), ("fps", "24.0")]
    body = MultipartFiles(fields, [("frames", "f1.png", a), ("frames", "ä b.png", b)], chunk=4096)
    seen: list[tuple[int, int]] = []
    streamed = b"".join(body.chunks(lambda sent, total: seen.append((sent, total))))
    expected, ctype = encode_multipart(fields, [("frames", "f1.png", a.read_bytes()), ("frames", "ä b.png", b"")])
    old = ctype.split("boundary=")[1]
    assert streamed == expected.replace(old.encode(), body.boundary.encode()) and len(streamed) == body.length
    assert seen[-1] == (body.length, body.length) and [s for s, _ in seen] == sorted({s for s, _ in seen})

    asked = []

    def cancelled() -> bool:  # the user cancels while the 4th of 9 chunks is due
        asked.append(1)
        return len(asked) == 4

    sent = []
    with pytest.raises(UploadCancelled):
        for chunk in body.chunks(cancelled=cancelled):
            sent.append(chunk)
    assert len(asked) == 4 and len(sent) == 3


def test_tables_match_the_backend():
    from pixie_backend.jobs import frames

    assert VIDEO_EXTENSIONS == frames.VIDEO_EXTENSIONS
    names = ["f10.png", "f2.png", "F1.png", "f1b.png"]
    assert sorted(names, key=natural_key) == sorted(names, key=frames.natural_key)
    assert ClipInput("frames", "x", (Path("a/b/c.png"),)).label == "b/"
