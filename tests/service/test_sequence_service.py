"""Sequence jobs through ``pixie-backend serve`` (the real uvicorn process): a synthetic clip's video
gives the same sequence file as ``reconstruct-video`` on the same clip; frames uploaded as images
keep their upload order; cancel; every bad upload gets its stable code; the sequence route has its
own upload limit; the OpenAPI schema documents the form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.support.protocol import validate_events
from tests.support.service import ROOT, error_code, events, png_bytes
from tests.support.service_fixtures import CLIP_FRAMES

FRAMES = CLIP_FRAMES


def submit(http, video=None, frames=None, **form):
    files = []
    if video is not None:
        files.append(("video", (video[0], video[1], "application/octet-stream")))
    for name, data in frames or ():
        files.append(("frames", (name, data, "application/octet-stream")))
    data = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in form.items()}
    return http.post("/v1/jobs/sequence", files=files, data=data)


def tiny_video(path: Path, frames: int, size: tuple[int, int]) -> bytes:
    import cv2

    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    for k in range(frames):
        writer.write(np.full((h, w, 3), 8 * k % 256, np.uint8))
    writer.release()
    return path.read_bytes()


def test_video_job_equals_the_cli(http, service_data, crossing_clip, tmp_path, capsys):
    """The video through the service: one item_done per frame in order, progress with frames/s and
    ETA, no server path; the fetched sequence file equals the CLI's for the same clip, the AMASS
    files are fetchable, and the model package (by hash) lets the add-on's reader load it."""
    from pixie_backend.cli import main
    from pixie_backend.sequence.sequence_file import read_sequence_arrays

    clip, video, _frames, boxes, boxes_file = crossing_clip
    r = submit(http, video=("crossing.avi", video.read_bytes()), boxes=json.dumps(boxes), amass=True)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "sequence" and job["clip"] == "crossing" and job["total"] == FRAMES
    evs = events(http, job["id"])
    validate_events(evs)
    assert evs[0]["event"] == "started" and evs[0]["job_kind"] == "sequence" and evs[0]["total"] == FRAMES
    assert [e["index"] for e in evs if e["event"] == "item_done"] == list(range(FRAMES))
    progress = [e for e in evs if e["event"] == "progress" and e["stage"] == "frames"]
    assert progress[-1]["done"] == FRAMES and progress[-1]["details"]["frames_per_s"] > 0
    assert all(p["details"]["eta_s"] >= 0 for p in progress[1:])
    fin = evs[-1]
    assert fin["status"] == "ok" and fin["counts"]["ok"] == FRAMES, fin
    files = fin["details"]["files"]
    assert files[0] == "crossing.pixie-seq.npz" and len(files) == 1 + fin["details"]["tracks"]
    assert all(f.startswith("crossing_track") and f.endswith(".amass.npz") for f in files[1:])
    text = json.dumps(evs)
    assert str(ROOT) not in text and "/tmp" not in text and "pixie-service-" not in text  # no server paths

    status = http.get(f"/v1/jobs/{job['id']}").json()
    assert status["status"] == "ok" and [f["name"] for f in status["files"]] == files
    got = tmp_path / "got"
    got.mkdir()
    for name in files:
        r = http.get(f"/v1/jobs/{job['id']}/files/{name}")
        assert r.status_code == 200
        (got / name).write_bytes(r.content)
    for bad in ("crossing.avi", "crossing.pixie-frames/status.jsonl", "smplx_package_x.npz"):
        assert http.get(f"/v1/jobs/{job['id']}/files/{bad}").status_code == 404
    [pkg] = status["packages"]
    (got / f"smplx_package_{pkg['sha256'][:12]}.npz").write_bytes(http.get(f"/v1/packages/{pkg['sha256']}").content)

    # the same clip through the CLI
    cli_out = tmp_path / "cli"
    code = main(
        [
            "reconstruct-video",
            str(video),
            "-o",
            str(cli_out),
            "--data-dir",
            str(service_data),
            "--device",
            "cpu",
            "--precision",
            "fp32",  # as the served fixture runs
            "--boxes",
            str(boxes_file),
            "--amass",
            "--batch-size",
            "8",
            "--json",
        ]
    )
    capsys.readouterr()
    assert code == 0
    (hs, xs), (hc, xc) = (read_sequence_arrays(got / files[0]), read_sequence_arrays(cli_out / files[0]))
    assert hs["source"].pop("path") == "crossing.avi"  # next to the sequence file: no server path
    assert Path(hc["source"].pop("path")) == video.resolve()
    hs.pop("created"), hc.pop("created")
    assert hs == hc
    assert sorted(xs) == sorted(xc)
    # a person's batch neighbours differ (the service's batches span jobs and wait for each other):
    # float32 sums in another order, within 1e-4 of each array's scale
    for k, ref in xc.items():
        if np.issubdtype(ref.dtype, np.floating):
            scale = float(np.abs(ref).max()) or 1.0
            np.testing.assert_allclose(xs[k], ref, rtol=1e-3, atol=1e-4 * scale, err_msg=k)
        else:
            np.testing.assert_array_equal(xs[k], ref, err_msg=k)
    for name in files[1:]:
        with np.load(got / name) as a, np.load(cli_out / name) as b:
            assert sorted(a.files) == sorted(b.files)
            np.testing.assert_allclose(a["poses"], b["poses"], atol=1e-3)

    # the add-on reads the fetched file and finds its package beside it
    from pixie_blender.io.sequence import find_sequence_package, read_sequence

    seq = read_sequence(got / files[0])
    assert len(seq.tracks) == hs["num_tracks"] and find_sequence_package(seq).content_sha256 == pkg["sha256"]
    assert http.delete(f"/v1/jobs/{job['id']}").status_code == 204


def test_frames_keep_the_upload_order(http, crossing_clip, tmp_path):
    """Frames as images, uploaded in clip order under names whose natural order is another: the
    service keeps the upload order, takes fps from the form and boxes keyed by file name."""
    from pixie_backend.sequence.sequence_file import read_sequence_arrays

    clip, _video, frames, boxes, _ = crossing_clip
    names = [f"shot_{(5 * k) % FRAMES:02d}.png" for k in range(FRAMES)]  # 00, 05, 10, 15, 04, ...
    uploads = [(n, p.read_bytes()) for n, p in zip(names, frames, strict=True)]
    by_name = {n: boxes[k] for k, n in enumerate(names)}
    r = submit(http, frames=uploads, fps=24, name="take 2", boxes=json.dumps(by_name))
    assert r.status_code == 202, r.text
    evs = events(http, r.json()["id"])
    validate_events(evs)
    assert evs[-1]["status"] == "ok", evs[-1]
    assert evs[0]["details"]["clip"]["kind"] == "frames" and evs[0]["details"]["clip"]["fps"] == 24.0
    name = evs[-1]["details"]["files"][0]
    assert name == "take_2.pixie-seq.npz"
    data = http.get(f"/v1/jobs/{r.json()['id']}/files/{name}").content
    (tmp_path / name).write_bytes(data)
    header, arrays = read_sequence_arrays(tmp_path / name)
    assert list(arrays["frame_paths"]) == [f"take_2/{n}" for n in names]  # relative: no server path
    np.testing.assert_allclose(arrays["timestamps"], np.arange(FRAMES) / 24.0)
    assert header["settings"]["detector"] == "given" and (arrays["box_source"] == 2).any()
    for row in np.flatnonzero(arrays["box_source"] == 2):  # frame k got the boxes given for its file name
        k = arrays["row_frame"][row]
        assert min(np.abs(arrays["bbox"][row] - b).max() for b in np.asarray(boxes[k])) < 1e-3


def test_cancel_a_sequence_job(http, crossing_clip):
    _clip, video, *_ = crossing_clip
    r = submit(http, video=("crossing.avi", video.read_bytes()), detector="none")
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    seen = []
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as s:
        for line in s.iter_lines():
            if line.strip():
                seen.append(json.loads(line))
                if seen[-1]["event"] == "item_done" and seen[-1]["index"] == 0:
                    assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    fin = seen[-1]
    assert fin["status"] == "cancelled" and fin["error"]["code"] == "cancelled" and fin["counts"]["ok"] < FRAMES
    assert http.get(f"/v1/jobs/{job_id}").json()["files"] == []  # no sequence file


def test_bad_uploads_get_their_codes(http, crossing_clip, tmp_path):
    _clip, video, frames, _boxes, _ = crossing_clip
    avi = ("crossing.avi", video.read_bytes())
    png = frames[0].read_bytes()
    cases = [
        (dict(video=("clip.mp4", b"this is not a video")), 415, "not_a_video", "clip.mp4"),
        (dict(video=("clip.mp4", b"")), 415, "not_a_video", "empty"),
        (dict(frames=[("a.png", png), ("notes.png", b"text")]), 415, "not_an_image", "notes.png"),
        (
            dict(frames=[(f"f{i}.png", png_bytes(np.zeros((4, 4, 3), np.uint8))) for i in range(41)]),
            413,
            "too_many_frames",
            "at most 40",
        ),
        (dict(video=("long.avi", tiny_video(tmp_path / "long.avi", 45, (32, 32)))), 413, "too_many_frames", "45"),
        (dict(video=("big.avi", tiny_video(tmp_path / "big.avi", 2, (1200, 1000)))), 413, "too_many_pixels", "1.2 MP"),
        (dict(frames=[("big.png", png_bytes(np.zeros((1100, 1000, 3), np.uint8)))]), 413, "too_many_pixels", "big"),
        (dict(), 422, "invalid_request", "'video' part"),
        (dict(video=avi, frames=[("a.png", png)]), 422, "invalid_request", "not both"),
        (dict(video=avi, fps="fast"), 422, "invalid_request", "fps"),
        (dict(video=avi, smoothing=2), 422, "invalid_request", "smoothing"),
        (dict(video=avi, detector="yolo"), 422, "invalid_request", "detector"),
        (dict(video=avi, boxes="{"), 422, "bad_option", "not valid JSON"),
        (dict(video=avi, boxes='{"99": [[0, 0, 1, 1]]}'), 422, "bad_option", "beyond the clip's 16 frames"),
        (dict(frames=[("a.png", png)], boxes='{"b.png": [[0, 0, 1, 1]]}'), 422, "bad_option", "b.png"),
        (dict(frames=[("a.png", png)], boxes='{"a.png": [[5, 0, 1, 1]]}'), 422, "bad_option", "x1 < x2"),
    ]
    before = len(http.get("/v1/jobs").json()["jobs"])
    for kw, status, code, words in cases:
        r = submit(http, **kw)
        assert r.status_code == status and error_code(r) == code, (kw.keys(), r.status_code, r.text)
        assert words in r.json()["error"]["message"], r.text
        assert "/tmp" not in r.text and "pixie-service-" not in r.text
    assert len(http.get("/v1/jobs").json()["jobs"]) == before  # no job left behind by a refusal
    r = http.post("/v1/jobs/sequence", data={"fps": "24"})
    assert r.status_code == 422 and error_code(r) == "invalid_request"


def test_the_sequence_route_has_its_own_upload_limit(http):
    """A 4 MB body passes the sequence route's 6 MB limit (and is then no video), while the
    reconstruct route refuses it at 3 MB; 7 MB is too large for the sequence route too."""
    blob = np.random.default_rng(0).bytes(4 * 1024 * 1024)
    r = submit(http, video=("clip.mp4", blob))
    assert r.status_code == 415 and error_code(r) == "not_a_video"
    r = http.post("/v1/jobs/reconstruct", files=[("images", ("a.png", blob, "application/octet-stream"))])
    assert r.status_code == 413 and error_code(r) == "upload_too_large"
    r = submit(http, video=("clip.mp4", blob + blob[: 3 * 1024 * 1024]))
    assert r.status_code == 413 and error_code(r) == "upload_too_large" and "6.3 MB" in r.json()["error"]["message"]


def test_openapi_documents_the_sequence_form(http):
    schema = http.get("/openapi.json").json()
    op = schema["paths"]["/v1/jobs/sequence"]["post"]
    form = op["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"video", "frames", "fps", "detector", "proposals", "amass", "smoothing", "boxes", "name"} <= set(form)
    assert form["detector"]["enum"] == ["auto", "mediapipe", "opencv", "none"]
    assert {"202", "413", "415", "422", "429", "503"} <= set(op["responses"])
    assert "`too_many_frames`" in op["responses"]["413"]["description"]
