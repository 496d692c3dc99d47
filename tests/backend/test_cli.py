"""End to end through the CLI: a folder of good and bad images, per-image status, the event
protocol, resume keyed on content, settings and model, kills at every commit point, two runs on
one folder, and every bad argument answered with one sentence."""

import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pixie_backend.cli import main

from tests.support.protocol import validate_events

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, astronaut, two_people):
    d = tmp_path_factory.mktemp("images")
    Image.fromarray(astronaut).save(d / "astronaut.jpg", quality=95)
    Image.fromarray(two_people).save(d / "two_people.png")
    Image.fromarray(astronaut).convert("L").save(d / "grey.png")
    rgba = np.concatenate([astronaut, np.full((512, 512, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    Image.fromarray(astronaut[..., 1].astype(np.uint16) * 257).save(d / "sixteen.png")
    im = Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, 1)))  # stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and tagged "rotate 90° clockwise" to display upright
    im.save(d / "exif_rotated.jpg", exif=exif, quality=95)
    Image.fromarray(astronaut).save(d / "animated.gif")  # a GIF: read (first frame), not skipped
    (d / "corrupt.jpg").write_bytes((d / "astronaut.jpg").read_bytes()[:3000])
    (d / "notes.png").write_text("not an image")
    (d / "empty.jpg").write_bytes(b"")
    (d / "photo.heic").write_bytes(b"\0\0\0\x18ftypheic")  # an image format we do not read: reported
    (d / "readme.txt").write_text("not an image and not pretending: left out")
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(d / "nobody.png")

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 90000, 90000, 8, 2, 0, 0, 0))
    (d / "enormous.png").write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr
                                     + chunk(b"IDAT", zlib.compress(b"\0" * 8)) + chunk(b"IEND", b""))
    return d


GOOD = {"astronaut": 1, "two_people": 2, "grey": 1, "rgba": 1, "sixteen": 1, "exif_rotated": 1, "animated": 1}
BAD = {"corrupt": "corrupt", "notes": "not an image", "empty": "empty", "nobody": "no person",
       "enormous": "too large", "photo": "not supported", "missing": "no such file"}


def run_json(capsys, *args) -> tuple[int, list[dict], str]:
    code = main(["reconstruct", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    events = [json.loads(x) for x in out.splitlines()]
    validate_events(events)
    assert "Traceback" not in err
    return code, events, err


def ledger(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "status.jsonl").read_text().splitlines()]


def recomputed(events) -> set[str]:
    return {e["item"] for e in events if e["event"] == "item_done" and not e["resumed"]}


def resumed(events) -> set[str]:
    return {e["item"] for e in events if e["event"] == "item_done" and e["resumed"]}


def test_reconstruct_folder(small_data_dir, image_folder, tmp_path, capsys):
    pytest.importorskip("mediapipe")
    out = tmp_path / "out"
    code, events, err = run_json(capsys, image_folder, image_folder / "missing.jpg", "-o", out,
                                 "--data-dir", small_data_dir, "--device", "cpu", "--batch-size", "3")
    assert code == 3  # some images failed, the others were written
    done = {e["item"]: e for e in events if e["event"] == "item_done"}
    errors = {e["item"]: e for e in events if e["event"] == "item_error"}
    for name, persons in GOOD.items():
        assert done[name]["details"]["persons"] == persons, done[name]
        assert (out / f"{name}.pixie.npz").is_file() and (out / f"{name}_p0.obj").is_file()
    for name, words in BAD.items():
        assert words in errors[name]["message"], errors[name]
        assert not (out / f"{name}.pixie.npz").exists()
    assert errors["missing"]["code"] == "input_missing" and errors["photo"]["code"] == "unsupported_format"
    assert any("left out 1 file" in e["text"] for e in events if e["event"] == "message")
    fin = events[-1]
    assert fin["status"] == "partial" and fin["counts"] == {"ok": len(GOOD), "failed": len(BAD), "skipped": 0}
    # every input, the missing path included, has exactly one status record
    status = ledger(out)
    assert sorted(r["item"] for r in status) == sorted([*GOOD, *BAD])
    assert len(list(out.glob("smplx_package_*.npz"))) == 1
    with np.load(out / "exif_rotated.pixie.npz") as z:  # the EXIF-tagged photo was read upright
        header = json.loads(str(z["header"]))
        assert (header["source"]["width"], header["source"]["height"]) == (512, 512)
        assert header["synthetic"] is True
        assert header["settings"]["detector"] == "mediapipe"  # the detector that ran, not "auto"
    assert not (out / ".pixie-staging").exists() or not list((out / ".pixie-staging").iterdir())

    # a second run resumes: finished images are skipped, failed ones are retried
    code, again, _ = run_json(capsys, image_folder, "-o", out, "--data-dir", small_data_dir, "--device", "cpu")
    assert resumed(again) == set(GOOD) and recomputed(again) == set() and code == 3

    # a result cut short (a run killed while copying files around) is redone, not trusted
    done = out / "grey.pixie.npz"
    done.write_bytes(done.read_bytes()[:1000])
    code, third, _ = run_json(capsys, image_folder / "grey.png", "-o", out, "--data-dir", small_data_dir,
                              "--device", "cpu")
    assert code == 0 and recomputed(third) == {"grey"}
    with np.load(done) as z:
        assert z["vertices"].shape[0] == 1


def test_human_output_is_quiet_and_complete(small_data_dir, image_folder, tmp_path):
    """A real process with the mediapipe detector: the progress output has no native log lines
    (absl/TensorFlow Lite), and the last line still arrives."""
    pytest.importorskip("mediapipe")
    proc = subprocess.run([sys.executable, "-m", "pixie_backend", "reconstruct", str(image_folder / "astronaut.jpg"),
                           "-o", str(tmp_path / "out"), "--data-dir", str(small_data_dir), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    for noise in ("W0000", "Feedback manager", "XNNPACK", "absl::InitializeLog", "NORM_RECT"):
        assert noise not in proc.stderr, proc.stderr
    assert "ok     " in proc.stderr and proc.stderr.rstrip().splitlines()[-1].startswith("done: 1 ok")


# --------------------------------------------------------------------------------------------------
# Resume keyed on what the result depends on


@pytest.fixture(scope="module")
def three_images(tmp_path_factory, astronaut):
    d = tmp_path_factory.mktemp("three")
    for k, name in enumerate(("a", "b", "c")):
        Image.fromarray(np.roll(astronaut, 40 * k, axis=1)).save(d / f"{name}.png")
    return d


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_rerun_recomputes_exactly_what_changed(small_data_dir, three_images, tmp_path, tmp_path_factory,
                                               capsys, astronaut):
    from pixie_backend.synthetic_assets import write_synthetic_data

    images = _copy(three_images, tmp_path / "images")
    out = tmp_path / "out"
    base = ["-o", out, "--device", "cpu", "--detector", "none"]
    code, first, _ = run_json(capsys, images, "--data-dir", small_data_dir, *base)
    assert code == 0 and recomputed(first) == {"a", "b", "c"}

    # unchanged: nothing is recomputed, not even from an identical copy of the data folder
    same = _copy(small_data_dir, tmp_path / "same-data")
    code, ev, _ = run_json(capsys, images, "--data-dir", same, *base)
    assert recomputed(ev) == set() and resumed(ev) == {"a", "b", "c"}

    # new image content under the same name: that image only
    Image.fromarray(astronaut[:, ::-1]).save(images / "b.png")
    code, ev, _ = run_json(capsys, images, "--data-dir", small_data_dir, *base)
    assert recomputed(ev) == {"b"} and resumed(ev) == {"a", "c"}

    # boxes given for one image: it is detected differently, so that image only
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"c.png": [[100, 20, 400, 500]]}))
    code, ev, _ = run_json(capsys, images, "--data-dir", small_data_dir, "--boxes", boxes, *base)
    assert recomputed(ev) == {"c"}
    with np.load(out / "c.pixie.npz") as z:
        assert json.loads(str(z["header"]))["settings"]["detector"] == "given"

    # another detector for every image: everything
    code, ev, _ = run_json(capsys, images, "--data-dir", small_data_dir, "--boxes", boxes, "-o", out,
                           "--device", "cpu", "--detector", "opencv")
    assert recomputed(ev) == {"a", "b"}  # c keeps its boxes: unchanged

    # other model files (a different synthetic model; think: synthetic -> real): everything
    other = tmp_path_factory.mktemp("data-other")
    write_synthetic_data(other, body="small", net="tiny", seed=1)
    code, ev, _ = run_json(capsys, images, "--data-dir", other, "--boxes", boxes, "-o", out, "--device", "cpu",
                           "--detector", "opencv")
    assert recomputed(ev) == {"a", "b", "c"}
    # the files always match the latest record; each image has one record per computation
    for name in "abc":
        rec = [r for r in ledger(out) if r["item"] == name][-1]
        assert rec["status"] == "ok" and all((out / f["name"]).stat().st_size == f["size"] for f in rec["files"])


# --------------------------------------------------------------------------------------------------
# Kills at every commit point


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("point,committed", [("after_result", False), ("after_obj", False),
                                             ("during_status", False), ("after_status", True)])
def test_kill_at_every_commit_point(small_data_dir, three_images, tmp_path, capsys, point, committed):
    out = tmp_path / "out"
    args = ["reconstruct", str(three_images), "-o", str(out), "--data-dir", str(small_data_dir), "--device", "cpu",
            "--detector", "none", "--batch-size", "1", "--json"]
    proc = subprocess.run([sys.executable, str(ROOT / "tests/support/kill_at.py"), point, "b", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr  # really killed
    before = [json.loads(x) for x in proc.stdout.splitlines()]
    assert recomputed(before) == {"a"}  # b was being committed when the process died
    if not committed:  # nothing of b is in the output folder
        assert not list(out.glob("b.*")) and not list(out.glob("b_*"))

    code = main(args)
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    validate_events(events)
    assert code == 0
    # only what was not committed is computed again; a committed b was finished by the rerun
    assert recomputed(events) == ({"c"} if committed else {"b", "c"})
    records = ledger(out)
    assert sorted(r["item"] for r in records) == ["a", "b", "c"]  # exactly one record each
    for name in "abc":
        with np.load(out / f"{name}.pixie.npz") as z:
            assert z["vertices"].shape[0] == 1
        assert (out / f"{name}_p0.obj").stat().st_size > 0
    assert not list((out / ".pixie-staging").iterdir())
    assert not list(out.glob("*.tmp"))


# --------------------------------------------------------------------------------------------------
# Two runs on one folder


def test_two_concurrent_runs_never_do_an_image_twice(small_data_dir, three_images, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pixie_backend", "reconstruct", str(three_images), "-o", str(out),
           "--data-dir", str(small_data_dir), "--device", "cpu", "--detector", "none", "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    streams = [[json.loads(x) for x in o.splitlines()] for o, _ in outs]
    for s in streams:
        validate_events(s)
    computed = [recomputed(s) for s in streams]
    assert sorted(map(len, computed)) == [0, 3] and set().union(*computed) == {"a", "b", "c"}
    assert len(ledger(out)) == 3
    for name in "abc":
        with np.load(out / f"{name}.pixie.npz") as z:
            assert json.loads(str(z["header"]))["num_persons"] == 1


def test_busy_folder_refused_after_lock_timeout(small_data_dir, three_images, tmp_path, capsys):
    from pixie_backend.jobs.output import LOCK
    from pixie_backend.locking import folder_lock

    out = tmp_path / "out"
    out.mkdir()
    held, release = threading.Event(), threading.Event()

    def hold():
        with folder_lock(out / LOCK):
            held.set()
            release.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        code, events, err = run_json(capsys, three_images, "-o", out, "--data-dir", small_data_dir, "--device",
                                     "cpu", "--detector", "none", "--lock-timeout", "0.3")
    finally:
        release.set()
        t.join()
    assert code == 4 and events[-1]["error"]["code"] == "busy"
    assert "another run is writing" in events[-1]["error"]["message"]
    assert any("waiting" in e.get("text", "") for e in events)


# --------------------------------------------------------------------------------------------------
# Bad arguments: one sentence, exit code 2, no traceback


def _bad_args(tmp_path, image):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    not_number = tmp_path / "nan.json"
    not_number.write_text(json.dumps({"a.png": [[0, 0, "wide", 10]]}))
    locked = tmp_path / "locked"
    (locked / "status.jsonl").mkdir(parents=True)  # a status file that cannot be written
    return {
        "out is a file": (["-o", a_file], "is a file"),
        "out under a file": (["-o", a_file / "sub"], "cannot create the output folder"),
        "status file unwritable": (["-o", locked], "the status file"),
        "boxes not json": (["-o", tmp_path / "o", "--boxes", bad_json], "not valid JSON"),
        "boxes missing": (["-o", tmp_path / "o", "--boxes", tmp_path / "nope.json"], "no such file"),
        "boxes not a number": (["-o", tmp_path / "o", "--boxes", not_number], "number lists"),
        "device tpu": (["-o", tmp_path / "o", "--device", "tpu"], "unknown device 'tpu'"),
        "no megapixels": (["-o", tmp_path / "o", "--max-megapixels", "0"], "--max-megapixels"),
        "batch size": (["-o", tmp_path / "o", "--batch-size", "0"], "--batch-size"),
        "detail threshold": (["-o", tmp_path / "o", "--detail-threshold", "1.5"], "--detail-threshold"),
        "detail threshold nan": (["-o", tmp_path / "o", "--detail-threshold", "nan"], "--detail-threshold"),
    }


@pytest.mark.parametrize("case", ["out is a file", "out under a file", "status file unwritable", "boxes not json",
                                  "boxes missing", "boxes not a number", "device tpu", "no megapixels",
                                  "batch size", "detail threshold", "detail threshold nan"])
def test_bad_argument_is_one_sentence(small_data_dir, three_images, tmp_path, capsys, case):
    args, words = _bad_args(tmp_path, three_images / "a.png")[case]
    code = main(["reconstruct", str(three_images / "a.png"), *map(str, args), "--data-dir", str(small_data_dir),
                 "--detector", "none"])
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and words in lines[0], err
    assert "Traceback" not in out + err


def test_bad_arguments_in_a_real_process(small_data_dir, three_images, tmp_path):
    """The same, as a user sees it: the whole stderr is one line (stdin closed, no terminal)."""
    cases = _bad_args(tmp_path, None)
    for args, words in (cases[k] for k in ("boxes not json", "out is a file")):
        proc = subprocess.run([sys.executable, "-m", "pixie_backend", "reconstruct", str(three_images / "a.png"),
                               *map(str, args), "--data-dir", str(small_data_dir)],
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0 and words in proc.stderr and "Traceback" not in proc.stderr


def test_reconstruct_errors_are_clear(tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "nothing*.jpg"), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "matched no files" in err and "no input images" in err
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    assert main(["reconstruct", str(img), "-o", str(tmp_path / "o"), "--data-dir", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "Missing pixie_model.tar" in err and "fetch-data" in err


def test_every_image_failing_is_exit_code_1(small_data_dir, tmp_path, capsys):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8 nope")
    code, events, _ = run_json(capsys, tmp_path / "x.jpg", "-o", tmp_path / "o", "--data-dir", small_data_dir,
                               "--detector", "none")
    assert code == 1 and events[-1]["status"] == "failed"


def test_make_synthetic_refuses_real_data(tmp_path, capsys):
    (tmp_path / "pixie_model.tar").write_bytes(b"real weights")
    assert main(["make-synthetic", "--out", str(tmp_path), "--body", "small", "--net", "tiny"]) == 1
    assert "not synthetic" in capsys.readouterr().err
    assert (tmp_path / "pixie_model.tar").read_bytes() == b"real weights"


# --------------------------------------------------------------------------------------------------
# doctor


def test_doctor_finds_a_truncated_checkpoint(small_data_dir, tmp_path, capsys):
    data = _copy(small_data_dir, tmp_path / "data")
    assert main(["doctor", "--data-dir", str(data)]) == 0
    text = capsys.readouterr().out
    assert "Ready" in text and "(given with --data-dir)" in text and "not set" not in text
    ckpt = data / "pixie_model.tar"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert main(["doctor", "--data-dir", str(data)]) == 1
    text = capsys.readouterr().out
    assert "[DAMAGED] pixie_model.tar" in text and "NOT READY" in text and "Ready:" not in text
    smplx = data / "SMPLX_NEUTRAL_2020.npz"
    smplx.write_bytes(smplx.read_bytes()[:-100])
    assert main(["doctor", "--json", "--data-dir", str(data)]) == 1
    doc = json.loads(capsys.readouterr().out)
    problems = {a["filename"]: a["problem"] for a in doc["assets"] if a["problem"]}
    assert set(problems) == {"pixie_model.tar", "SMPLX_NEUTRAL_2020.npz"} and doc["complete"] is False


def test_a_closed_pipe_ends_quietly(small_data_dir):
    """``pixie-backend doctor | head -1``: the reader goes away, the command stops without a traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "pixie_backend", "doctor", "--data-dir", str(small_data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before the child writes anything: its first write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err
