"""Reconstruct from Image without bpy: :class:`ReconstructTask` against the real service, through
the remote connector (URL + token) and the local one (the supervisor starts ``pixie-backend
serve``, keeps it warm, and restarts it after it was killed mid-job). Every failure ends the task
with one sentence and a stable code."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pixie_blender.client import supervisor
from pixie_blender.client.reconstruct import (
    LocalConnector,
    ReconstructRequest,
    ReconstructTask,
    RemoteConnector,
    allocate_names,
    file_sha256,
    package_cache_path,
)
from tests.support.service import child_env, jpeg_bytes, png_bytes


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory, photo, photo_pair):
    d = tmp_path_factory.mktemp("photos")
    grey = np.full((256, 256, 3), 128, np.uint8)
    return {
        "solo": write(d / "solo.jpg", jpeg_bytes(photo)),
        "pair": write(d / "pair.png", png_bytes(photo_pair)),
        "empty": write(d / "wall.png", png_bytes(grey)),
        "cut": write(d / "cut.jpg", jpeg_bytes(photo)[:3000]),
        "other_solo": write(d / "other" / "solo.jpg", jpeg_bytes(np.ascontiguousarray(photo[:, ::-1]))),
    }


def pair_jpeg(photos) -> bytes:
    from PIL import Image

    return jpeg_bytes(np.asarray(Image.open(photos["pair"]).convert("RGB")))


def request(tmp_path, *images, **kw) -> ReconstructRequest:
    kw.setdefault("addon_version", "0.1.0")
    return ReconstructRequest(tuple(images), tmp_path / "results", tmp_path / "cache", **kw)


def run(task: ReconstructTask, timeout: float = 180.0) -> tuple:
    """Drive the task as the operator's timer does; returns (progress, longest step in s, steps)."""
    longest, steps = 0.0, 0
    deadline = time.monotonic() + timeout
    while True:
        t0 = time.perf_counter()
        finished = task.step()
        longest = max(longest, time.perf_counter() - t0)
        steps += 1
        if finished:
            return task.progress, longest, steps
        assert time.monotonic() < deadline, task.progress
        time.sleep(0.01)


def test_remote_two_photos_three_people(served, photos, tmp_path):
    task = ReconstructTask(RemoteConnector(served.url, served.token), request(tmp_path, photos["solo"], photos["pair"]))
    p, longest, steps = run(task)
    assert p.state == "done", p.message
    assert p.message == "Reconstructed 3 persons from 2 images" and p.persons == 3 and p.done == 2
    assert [(r.name, r.persons, r.image) for r in p.results] == [
        ("solo", 1, photos["solo"]),
        ("pair", 2, photos["pair"]),
    ]
    results = tmp_path / "results"
    for r in p.results:
        assert r.path == results / f"{r.name}.pixie.npz" and r.path.is_file()
        record = json.loads((results / f"{r.name}.pixie-source.json").read_text())
        assert record["image"] == str(r.image.resolve()) and record["sha256"] == file_sha256(r.image)
    [cached] = (tmp_path / "cache" / "packages").iterdir()
    local = results / f"smplx_package_{cached.stem[:12]}.npz"
    assert local.is_file() and local.stat().st_size == cached.stat().st_size
    assert steps > 3 and longest < 1.0  # the main thread is never held while the backend works
    assert p.job_id and p.job_id not in ServiceJobs(served).ids()  # the job's files were deleted on the server

    # the folder re-imports on its own: the result finds its package and its photo
    from pixie_blender.io.schema import find_package, read_result

    res = read_result(results / "pair.pixie.npz")
    assert find_package(res).content_sha256 == cached.stem
    # the same photo again reuses its name; another photo called solo.jpg gets solo_2
    shas = [file_sha256(photos[k]) for k in ("solo", "other_solo")]
    assert allocate_names([photos["solo"], photos["other_solo"]], shas, results) == ["solo", "solo_2"]

    # a second run fetches no package again (the cache has it)
    t0 = cached.stat().st_mtime_ns
    task = ReconstructTask(RemoteConnector(served.url, served.token), request(tmp_path, photos["other_solo"]))
    p, _, _ = run(task)
    assert p.state == "done" and [r.name for r in p.results] == ["solo_2"] and cached.stat().st_mtime_ns == t0


class ServiceJobs:
    def __init__(self, served):
        from pixie_blender.client.service_client import ServiceClient

        self.client = ServiceClient(served.url, served.token)

    def ids(self) -> list[str]:
        return [j["id"] for j in self.client.request_json("GET", "/v1/jobs")["jobs"]]


@pytest.mark.parametrize(
    "images, code, words",
    [
        (("empty",), "no_person", "No person found in wall.png; nothing was imported."),
        (("cut",), "unreadable", "cut.jpg: the image is corrupt or truncated"),
        (("empty", "cut"), "no_person", "2 images failed: wall.png: no person found"),
    ],
)
def test_failures_of_the_images(served, photos, tmp_path, images, code, words):
    task = ReconstructTask(
        RemoteConnector(served.url, served.token), request(tmp_path, *(photos[k] for k in images), detector="auto")
    )
    p, _, _ = run(task)
    assert p.state == "failed" and p.error_code == code and words in p.message, p.message
    assert "<" not in p.message  # the backend's "<name>" labels are replaced by the file names


def test_one_bad_photo_among_good_ones_is_a_warning(served, photos, tmp_path):
    task = ReconstructTask(
        RemoteConnector(served.url, served.token), request(tmp_path, photos["solo"], photos["empty"])
    )
    p, _, _ = run(task)
    assert p.state == "done" and p.message == "Reconstructed 1 person from 1 image; 1 failed"
    assert p.errors == [("wall.png", "no_person", "wall.png: no person found (detector 'mediapipe')")]


def test_failures_of_the_connection(served, photos, tmp_path):
    cases = [
        (RemoteConnector(served.url, "0" * 64), {}, "unauthorized", "refused the token"),
        (RemoteConnector(served.url, ""), {}, "unauthorized", "Set the token"),
        (RemoteConnector(f"http://127.0.0.1:{_free_port()}", "t" * 32), {}, "unreachable", "Nothing answers"),
        (
            RemoteConnector(served.url, served.token),
            {"addon_version": "9.9.9"},
            "version_mismatch",
            "backend is version 0.1.0 but the add-on is version 9.9.9",
        ),
        (RemoteConnector(served.url, served.token), {}, "input_missing", "no such file"),
    ]
    for connector, kw, code, words in cases:
        image = photos["solo"] if code != "input_missing" else photos["solo"].with_name("gone.jpg")
        p, _, _ = run(ReconstructTask(connector, request(tmp_path, image, **kw)))
        assert p.state == "failed" and p.error_code == code and words in p.message, (code, p.message)
    assert not (tmp_path / "results" / "solo.pixie.npz").exists()


def test_cancel(served, photos, tmp_path):
    task = ReconstructTask(RemoteConnector(served.url, served.token), request(tmp_path, photos["pair"]))
    task.cancel()
    p, _, _ = run(task)
    assert p.state == "cancelled" and p.message.startswith("Cancelled")
    many = [write(tmp_path / "many" / f"p{i}.jpg", pair_jpeg(photos)) for i in range(6)]
    task = ReconstructTask(RemoteConnector(served.url, served.token), request(tmp_path, *many))
    while task.progress.state not in ("running",) and not task.step():
        time.sleep(0.01)
    task.cancel()
    p, _, _ = run(task)
    assert p.state == "cancelled" and len(p.results) < 6


@pytest.mark.slow
def test_missing_model_files_are_named(tmp_path, photos):
    from tests.support.service import start_server

    s = start_server(tmp_path / "no-data", stderr_path=tmp_path / "err.txt")
    try:
        time.sleep(1.0)
        p, _, _ = run(ReconstructTask(RemoteConnector(s.url, s.token), request(tmp_path, photos["solo"])))
        assert p.state == "failed" and p.error_code == "model_files"
        assert "SMPLX_NEUTRAL_2020.npz" in p.message and "Set up model files" in p.message
    finally:
        s.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# The local backend through the supervisor


@pytest.mark.slow
def test_local_backend_started_kept_warm_killed_and_restarted(service_data, photos, tmp_path):
    sup = supervisor.Supervisor(tmp_path / "state", "0.1.0", idle_timeout=600)
    command = supervisor.backend_command(sys.executable, "serve", "--data-dir", str(service_data))
    env = child_env()
    try:
        task = ReconstructTask(LocalConnector(sup, command, env), request(tmp_path, photos["solo"]))
        p, longest, _ = run(task)
        assert p.state == "done", p.message
        first = sup.process.pid
        assert task.connector.started_here and longest < 1.0

        # warm: the next click reuses the running backend
        task = ReconstructTask(LocalConnector(sup, command, env), request(tmp_path, photos["pair"]))
        p, _, _ = run(task)
        assert p.state == "done" and sup.process.pid == first and not task.connector.started_here

        # killed in the middle of a job: said so, nothing imported
        many = [write(tmp_path / "many" / f"p{i}.jpg", pair_jpeg(photos)) for i in range(6)]
        task = ReconstructTask(LocalConnector(sup, command, env), request(tmp_path, *many))
        while task.progress.state != "running" and not task.step():
            time.sleep(0.01)
        os.kill(first, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        p, _, _ = run(task)
        assert p.state == "failed" and p.error_code == "backend_died", (p.error_code, p.message)
        assert "The backend stopped during the job" in p.message and "click Reconstruct from Image again" in p.message

        # the next click starts a new backend and succeeds
        task = ReconstructTask(LocalConnector(sup, command, env), request(tmp_path, photos["solo"]))
        p, _, _ = run(task)
        assert p.state == "done" and task.connector.started_here and sup.process.pid != first
    finally:
        sup.shutdown()


def test_local_backend_version_mismatch_and_missing_backend(tmp_path, photos):
    from tests.support.fake_backend import __file__ as fake

    sup = supervisor.Supervisor(tmp_path / "state", "0.1.0")
    try:
        task = ReconstructTask(
            LocalConnector(sup, [sys.executable, fake, "ready", "0.0.9"]), request(tmp_path, photos["solo"])
        )
        p, _, _ = run(task, timeout=60)
        assert p.state == "failed" and p.error_code == "version_mismatch" and "Install Backend" in p.message
        task = ReconstructTask(
            LocalConnector(sup, [str(tmp_path / "no-python"), "-m", "pixie_backend", "serve"]),
            request(tmp_path, photos["solo"]),
        )
        p, _, _ = run(task, timeout=60)
        assert p.state == "failed" and "Cannot run the backend Python" in p.message
    finally:
        sup.shutdown()


def test_package_cache_layout_matches_the_importer(tmp_path):
    from pixie_blender.io.schema import package_cache_path as importer_path

    assert package_cache_path(tmp_path, "a" * 64) == importer_path(tmp_path, "a" * 64)
