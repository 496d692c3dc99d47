"""``pixie-backend serve`` against the real uvicorn process on loopback: the handshake, the token
(401 on every route, never logged), the limits and their codes, events, files, packages, cancel,
8 parallel clients whose results equal a direct ``Pixie`` call (and share batches), exit on stdin
EOF, graceful SIGTERM, missing model files, remote mode."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.protocol import validate_events
from tests.support.service import ROOT, child_env, error_code, events, jpeg_bytes, png_bytes, start_server, wait_ready

POSIX = os.name == "posix"


def submit(http, images, **form):
    files = [("images", (name, data, "application/octet-stream")) for name, data in images]
    return http.post(
        "/v1/jobs/reconstruct",
        files=files,
        data={k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()},
    )



# --------------------------------------------------------------------------------------------------
# Handshake, health, authentication


def test_handshake_and_health(served, http):
    hs = served.handshake
    assert set(hs) == {"event", "protocol", "port", "token", "device", "versions"}
    assert hs["event"] == "ready" and hs["protocol"] == 1 and hs["device"] == "cpu"
    assert len(hs["token"]) == 64 and int(hs["token"], 16) >= 0
    assert hs["versions"]["pixie_backend"] == "0.1.0" and hs["versions"]["torch"].startswith("2.")
    h = http.get("/v1/health").json()
    assert h["status"] == "ok" and h["version"] == "0.1.0" and h["mode"] == "local"
    m = h["model"]
    assert m["state"] == "ready" and m["device"] == "cpu" and m["gpu"] is None and m["missing"] == []
    assert m["precision"] == "fp32" and m["precision_reason"] == "requested"
    assert m["synthetic"] is True and m["missing_optional"] == []  # the synthetic folder has the face files
    assert h["job_kinds"] == ["reconstruct", "sequence"] and h["limits"]["max_images"] == 8
    assert h["limits"]["max_video_bytes"] == 6 * 1024 * 1024 and h["limits"]["max_frames"] == 40


def test_every_route_needs_the_token(served, http):
    schema = http.get("/openapi.json").json()
    routes = [
        (m.upper(), p.replace("{job_id}", "x").replace("{name}", "y").replace("{sha256}", "0" * 64))
        for p, ops in schema["paths"].items()
        for m in ops
    ]
    routes.append(("GET", "/openapi.json"))
    assert len(routes) >= 9
    for headers in (
        {},
        {"Authorization": "Bearer " + "0" * 64},
        {"Authorization": f"Basic {served.token}"},
        {"Authorization": f"Bearer {served.token[:-1]}"},
    ):
        for method, path in routes:
            r = httpx.request(method, served.url + path, headers=headers, timeout=30)
            assert r.status_code == 401, (method, path, r.status_code)
            assert error_code(r) == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_unknown_routes_and_methods_are_json(http):
    r = http.get("/v1/nothing")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = http.put("/v1/health")
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"
    r = http.get("/v1/jobs/nope")
    assert r.status_code == 404 and error_code(r) == "job_not_found"


# --------------------------------------------------------------------------------------------------
# Limits


def test_limits_and_their_codes(http, photo):
    r = submit(http, [("big.bin", os.urandom(3 * 1024 * 1024 + 10))])
    assert r.status_code == 413 and error_code(r) == "upload_too_large"
    big = np.zeros((1100, 1000, 3), np.uint8)  # 1.1 MP > 1 MP (a small file: the pixel limit, not the size)
    r = submit(http, [("big.png", png_bytes(big))])
    assert r.status_code == 413 and error_code(r) == "too_many_pixels" and "1.1 MP" in r.json()["error"]["message"]
    r = submit(http, [("notes.jpg", b"these are not pixels")])
    assert r.status_code == 415 and error_code(r) == "not_an_image" and "notes.jpg" in r.json()["error"]["message"]
    r = submit(http, [("empty.png", b"")])
    assert r.status_code in (415, 422)
    small = png_bytes(photo[::8, ::8])
    r = submit(http, [(f"a{i}.png", small) for i in range(9)])
    assert r.status_code == 413 and error_code(r) == "too_many_images"
    r = submit(http, [("a.png", small)], detector="yolo")
    assert r.status_code == 422 and error_code(r) == "invalid_request"
    r = submit(http, [("a.png", small)], boxes='{"other.png": [[0, 0, 1, 1]]}')
    assert r.status_code == 422 and error_code(r) == "bad_option"
    r = http.post("/v1/jobs/reconstruct", data={"detector": "auto"})
    assert r.status_code == 422 and error_code(r) == "invalid_request"


def test_a_chunked_upload_over_the_limit_is_refused(served):
    def body():  # one file part of 4 MB, sent without Content-Length
        yield b'--zz\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n'
        for _ in range(40):
            yield b"x" * 100_000

    r = httpx.post(
        served.url + "/v1/jobs/reconstruct",
        content=body(),
        timeout=60,
        headers={**served.headers, "Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert r.status_code == 413 and error_code(r) == "upload_too_large"


# --------------------------------------------------------------------------------------------------
# A job: events, files, packages


def test_job_events_files_and_package(http, photo, photo_pair, tmp_path):
    corrupt = jpeg_bytes(photo)[:3000]  # a valid header, then cut off
    r = submit(
        http,
        [("astro.jpg", jpeg_bytes(photo)), ("pair.png", png_bytes(photo_pair)), ("cut.jpg", corrupt)],
        detector="auto",
        write_objs=True,
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "reconstruct" and job["images"] == ["astro", "pair", "cut"] and job["total"] == 3
    evs = events(http, job["id"])
    validate_events(evs)
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "started" and kinds[-1] == "finished" and evs[-1]["status"] == "partial"
    done = {e["item"]: e for e in evs if e["event"] == "item_done"}
    errors = {e["item"]: e for e in evs if e["event"] == "item_error"}
    assert set(done) == {"astro", "pair"} and done["pair"]["details"]["persons"] == 2
    assert errors["cut"]["code"] == "unreadable"
    text = json.dumps(evs)
    assert str(ROOT) not in text and "/tmp" not in text and "pixie-service-" not in text  # no server paths
    assert done["astro"]["details"]["files"] == ["astro.pixie.npz", "astro_p0.obj"]

    # resume the stream part-way
    assert events(http, job["id"], after=len(evs) - 2) == evs[-2:]

    status = http.get(f"/v1/jobs/{job['id']}").json()
    assert status["state"] == "done" and status["status"] == "partial"
    names = [f["name"] for f in status["files"]]
    assert names == ["astro.pixie.npz", "astro_p0.obj", "pair.pixie.npz", "pair_p0.obj", "pair_p1.obj"]
    for name in names:
        r = http.get(f"/v1/jobs/{job['id']}/files/{name}")
        assert r.status_code == 200 and len(r.content) == next(f["size"] for f in status["files"] if f["name"] == name)
        (tmp_path / name).write_bytes(r.content)
    for bad in ("status.jsonl", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", ".pixie-lock", "smplx_package_x.npz"):
        r = http.get(f"/v1/jobs/{job['id']}/files/{bad}")
        assert r.status_code == 404 and error_code(r) in ("file_not_found", "not_found"), bad

    [pkg] = status["packages"]
    r = http.get(f"/v1/packages/{pkg['sha256']}")
    assert r.status_code == 200 and r.headers["x-content-sha256"] == pkg["sha256"] and len(r.content) == pkg["size"]
    header = json.loads(str(np.load(io.BytesIO(r.content))["header"]))
    assert header["content_sha256"] == pkg["sha256"]
    (tmp_path / f"smplx_package_{pkg['sha256'][:12]}.npz").write_bytes(r.content)
    r = http.get("/v1/packages/" + "f" * 64)
    assert r.status_code == 404 and error_code(r) == "package_not_found"

    from pixie_blender.io.schema import find_package, read_result

    res = read_result(tmp_path / "pair.pixie.npz")
    assert len(res.persons) == 2 and find_package(res).content_sha256 == pkg["sha256"]

    assert http.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert http.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert http.get(f"/v1/packages/{pkg['sha256']}").status_code == 200  # kept once per hash


def _direct_results(data_dir, images: dict[str, bytes], out: Path) -> dict[str, dict[str, np.ndarray]]:
    """What a direct Pixie call gives for each image, written by the same writer."""
    from pixie_backend.config import PixieConfig
    from pixie_backend.export.writer import ResultWriter
    from pixie_backend.pipeline import Pixie

    pixie = Pixie(data_dir, PixieConfig(speed="fast"), detector="none")
    writer = ResultWriter(pixie, out)
    refs = {}
    for name, data in images.items():
        [r] = pixie.predict([data])
        assert r.ok, r.message
        path = writer.write(r, name)[0]
        with np.load(path) as z:
            refs[name] = {k: z[k] for k in z.files if k != "header"}
    return refs


def test_eight_parallel_clients_get_direct_results_and_share_batches(served, http, service_data, photo, tmp_path):
    rng = np.random.default_rng(3)
    images = {}
    for i in range(8):  # different crops of the photo: every client's person differs
        y, x = rng.integers(0, 200, size=2)
        crop = photo[y : y + 300, x : x + 260][:, :: (1 if i % 2 else -1)]
        images[f"client{i}"] = png_bytes(np.ascontiguousarray(crop))
    before = http.get("/v1/health").json()["model"]["batches"]
    barrier = threading.Barrier(8)

    def client(name: str) -> dict[str, np.ndarray]:
        with httpx.Client(base_url=served.url, headers=served.headers, timeout=120) as c:
            barrier.wait()
            r = submit(c, [(f"{name}.png", images[name])], detector="none", write_objs=False)
            assert r.status_code == 202, r.text
            evs = events(c, r.json()["id"])
            assert evs[-1]["status"] == "ok", evs[-1]
            data = c.get(f"/v1/jobs/{r.json()['id']}/files/{name}.pixie.npz").content
        with np.load(io.BytesIO(data)) as z:
            return {k: z[k] for k in z.files if k != "header"}

    with ThreadPoolExecutor(8) as pool:
        got = dict(zip(images, pool.map(client, images), strict=True))
    after = http.get("/v1/health").json()["model"]["batches"]
    refs = _direct_results(service_data, images, tmp_path)
    # float32 rounding depends on the batch a person ran in (alone here, with others there): equal
    # within 1e-4 of each array's scale; and no client got another client's person
    for name in images:
        assert got[name].keys() == refs[name].keys()
        for key, ref in refs[name].items():
            if np.issubdtype(ref.dtype, np.floating):
                scale = float(np.abs(ref).max()) or 1.0
                np.testing.assert_allclose(got[name][key], ref, rtol=1e-3, atol=1e-4 * scale, err_msg=f"{name}: {key}")
            elif ref.dtype == np.uint8:  # 8-bit textures: that rounding may cross one quantisation step
                diff = np.abs(got[name][key].astype(np.int16) - ref.astype(np.int16))
                assert diff.max() <= 1 and np.count_nonzero(diff) <= 1e-4 * diff.size, f"{name}: {key}"
            else:
                np.testing.assert_array_equal(got[name][key], ref, err_msg=f"{name}: {key}")
        own = np.abs(got[name]["vertices"] - refs[name]["vertices"]).max()
        others = min(np.abs(got[name]["vertices"] - refs[o]["vertices"]).max() for o in images if o != name)
        assert others > 100 * own, (name, own, others)
    ran = after["run"] - before["run"]
    assert after["persons"] - before["persons"] == 8
    assert ran < 8, f"8 single-person jobs ran as {ran} batches: no micro-batching across clients"


def test_cancel_a_running_job(http, photo_pair):
    data = jpeg_bytes(photo_pair)
    r = submit(http, [(f"p{i}.jpg", data) for i in range(8)], detector="auto", write_objs=False)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    seen = []
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as s:
        for line in s.iter_lines():
            if not line.strip():
                continue
            ev = json.loads(line)
            seen.append(ev)
            if ev["event"] == "started":
                assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    last = seen[-1]
    assert last["event"] == "finished" and last["status"] == "cancelled" and last["error"]["code"] == "cancelled"
    assert last["counts"]["ok"] < 8
    assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    r = http.post("/v1/jobs/nope/cancel")
    assert r.status_code == 404 and error_code(r) == "job_not_found"


# --------------------------------------------------------------------------------------------------
# Lifetime


def _job_running(s, image) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=s.url, headers=s.headers, timeout=120)
    wait_ready(c)
    r = submit(c, [(f"p{i}.jpg", image) for i in range(8)], detector="auto", write_objs=False)
    assert r.status_code == 202
    return c, r.json()["id"]


@pytest.mark.slow
def test_server_exits_when_stdin_closes_and_cancels_its_jobs(service_data, photo_pair, tmp_path):
    s = start_server(service_data, stderr_path=tmp_path / "err.txt")
    c, job_id = _job_running(s, jpeg_bytes(photo_pair))
    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.extend(events(c, job_id)), daemon=True)
    reader.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    s.proc.stdin.close()
    assert s.proc.wait(60) == 0
    reader.join(10)
    assert time.monotonic() - t0 < 30
    assert got and got[-1]["event"] == "finished" and got[-1]["status"] == "cancelled"
    assert "stdin closed: shutting down" in s.stderr()
    assert s.proc.stdout.read() == ""  # nothing but the handshake ever went to stdout
    work = next(
        ln.split("job folders under ", 1)[1].strip() for ln in s.stderr().splitlines() if "job folders under " in ln
    )
    assert "pixie-service-" in work and not Path(work).exists()  # the service's temporary folder is gone
    c.close()


@pytest.mark.slow
@pytest.mark.skipif(not POSIX, reason="SIGTERM")
def test_sigterm_cancels_running_jobs_and_exits(service_data, photo_pair, tmp_path):
    s = start_server(service_data, stderr_path=tmp_path / "err.txt")
    c, job_id = _job_running(s, jpeg_bytes(photo_pair))
    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.extend(events(c, job_id)), daemon=True)
    reader.start()
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(60) == 0
    reader.join(10)
    assert got[-1]["status"] == "cancelled"
    c.close()


@pytest.mark.slow
def test_missing_model_files_are_named(tmp_path):
    s = start_server(tmp_path / "empty-data", stderr_path=tmp_path / "err.txt")
    try:
        with httpx.Client(base_url=s.url, headers=s.headers, timeout=60) as c:
            m = wait_ready(c)["model"]
            assert m["state"] == "missing" and m["error"]["code"] == "model_files"
            assert {"SMPLX_NEUTRAL_2020.npz", "pixie_model.tar"} <= set(m["missing"])
            r = submit(c, [("a.png", png_bytes(np.zeros((64, 64, 3), np.uint8)))])
            assert r.status_code == 503 and error_code(r) == "model_files"
            assert "SMPLX_NEUTRAL_2020.npz" in r.json()["error"]["message"]
    finally:
        assert s.stop() == 0


def _serve(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pixie_backend", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(env),
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )


def test_remote_mode_needs_the_flag_and_a_token():
    r = _serve("--host", "0.0.0.0")
    assert r.returncode == 2 and "add --remote" in r.stderr and r.stdout == ""
    r = _serve("--remote", env={"PIXIE_SERVICE_TOKEN": ""})
    assert r.returncode == 2 and "needs a token you set" in r.stderr
    r = _serve("--remote", env={"PIXIE_SERVICE_TOKEN": "short"})
    assert r.returncode == 2 and "at least 16 characters" in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(not POSIX, reason="SIGTERM")
def test_remote_mode_serves_with_the_users_token_and_never_logs_it(service_data, tmp_path):
    token = "remote-token-" + "9" * 20
    err = open(tmp_path / "err.txt", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pixie_backend",
            "serve",
            "--remote",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(service_data),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        cwd=ROOT,
        env=child_env({"PIXIE_SERVICE_TOKEN": token}),
    )
    try:
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            for line in (tmp_path / "err.txt").read_text().splitlines():
                if "listening on http://127.0.0.1:" in line:
                    port = int(line.rsplit(":", 1)[1].split()[0])
            time.sleep(0.1)
        assert port, (tmp_path / "err.txt").read_text()
        url = f"http://127.0.0.1:{port}"
        assert proc.poll() is None  # stdin is /dev/null (EOF at once): remote mode keeps running
        assert httpx.get(url + "/v1/health", headers={"Authorization": "Bearer " + token}).json()["mode"] == "remote"
        assert httpx.get(url + "/v1/health", headers={"Authorization": "Bearer " + token[:-1]}).status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "err.txt").read_text()
    assert '"GET /v1/health HTTP/1.1" 200' in log and '"GET /v1/health HTTP/1.1" 401' in log  # access log on
    assert token not in log and token[:-1] not in log and proc.stdout.read() == ""


def test_token_never_in_the_local_log(served, http):
    http.get("/v1/health")
    httpx.get(served.url + "/v1/health", headers={"Authorization": "Bearer " + served.token + "x"})
    log = served.stderr()
    assert served.token not in log and served.token[:16] not in log
