"""End to end through the CLI: a folder of good and bad images, per-image status, resume."""

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pixie_backend.cli import main


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
    (d / "corrupt.jpg").write_bytes((d / "astronaut.jpg").read_bytes()[:3000])
    (d / "notes.png").write_text("not an image")
    (d / "empty.jpg").write_bytes(b"")
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(d / "nobody.png")

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 90000, 90000, 8, 2, 0, 0, 0))
    (d / "enormous.png").write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr
                                     + chunk(b"IDAT", zlib.compress(b"\0" * 8)) + chunk(b"IEND", b""))
    return d


GOOD = {"astronaut": 1, "two_people": 2, "grey": 1, "rgba": 1, "sixteen": 1, "exif_rotated": 1}
BAD = {"corrupt": "corrupt", "notes": "not an image", "empty": "empty", "nobody": "no person",
       "enormous": "too large"}


def test_reconstruct_folder(small_data_dir, image_folder, tmp_path, capsys):
    pytest.importorskip("mediapipe")
    out = tmp_path / "out"
    code = main(["reconstruct", str(image_folder), "-o", str(out), "--data-dir", str(small_data_dir),
                 "--device", "cpu", "--batch-size", "3", "--json-progress"])
    assert code == 3  # some images failed, the others were written
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    records = {Path(r["image"]).stem: r for r in lines if "image" in r}
    for name, persons in GOOD.items():
        assert records[name]["status"] == "ok", records[name]
        assert records[name]["persons"] == persons
        assert (out / f"{name}.pixie.npz").is_file() and (out / f"{name}_p0.obj").is_file()
    for name, words in BAD.items():
        assert records[name]["status"] == "error" and words in records[name]["message"], records[name]
        assert not (out / f"{name}.pixie.npz").exists()
    assert lines[-1]["summary"] and lines[-1]["ok"] == len(GOOD) and lines[-1]["failed"] == len(BAD)
    status = [json.loads(x) for x in (out / "status.jsonl").read_text().splitlines()]
    assert len(status) == len(GOOD) + len(BAD)
    assert len(list(out.glob("smplx_package_*.npz"))) == 1
    # the EXIF-tagged photo was read upright: same size as the original
    with np.load(out / "exif_rotated.pixie.npz") as z:
        header = json.loads(str(z["header"]))
        assert (header["source"]["width"], header["source"]["height"]) == (512, 512)
        assert header["synthetic"] is True

    # a second run resumes: finished images are skipped, failed ones are retried
    code = main(["reconstruct", str(image_folder), "-o", str(out), "--data-dir", str(small_data_dir),
                 "--device", "cpu", "--json-progress"])
    again = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert again[-1]["skipped"] == len(GOOD) and again[-1]["ok"] == 0 and code == 3

    # a result cut short (a run killed while copying files around) is redone, not trusted
    done = out / "grey.pixie.npz"
    done.write_bytes(done.read_bytes()[:1000])
    main(["reconstruct", str(image_folder / "grey.png"), "-o", str(out), "--data-dir", str(small_data_dir),
          "--device", "cpu", "--json-progress"])
    third = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert third[-1]["ok"] == 1 and third[-1]["skipped"] == 0
    with np.load(done) as z:
        assert z["vertices"].shape[0] == 1


def test_reconstruct_errors_are_clear(tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "nothing*.jpg"), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "matched no files" in err and "no input images" in err
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    assert main(["reconstruct", str(img), "-o", str(tmp_path / "o"), "--data-dir", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "Missing pixie_model.tar" in err and "fetch-data" in err


def test_make_synthetic_refuses_real_data(tmp_path, capsys):
    (tmp_path / "pixie_model.tar").write_bytes(b"real weights")
    assert main(["make-synthetic", "--out", str(tmp_path), "--body", "small", "--net", "tiny"]) == 1
    assert "not synthetic" in capsys.readouterr().err
    assert (tmp_path / "pixie_model.tar").read_bytes() == b"real weights"
