"""Face appearance in result files (format v2) through the CLI: the arrays, their encodings and
header entry, the detail gate, and one notice per feature whose optional files are missing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pixie_backend.cli import main


@pytest.fixture(scope="module")
def photo(tmp_path_factory, astronaut):
    d = tmp_path_factory.mktemp("face-photo")
    Image.fromarray(astronaut).save(d / "astronaut.png")
    return d / "astronaut.png"


def _read(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(str(arrays.pop("header"))), arrays


def test_result_holds_the_face_appearance(small_data_dir, photo, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["reconstruct", str(photo), "-o", str(out), "--data-dir", str(small_data_dir), "--device", "cpu",
                 "--detector", "none", "--lit-texture", "--photo-texture", "--detail-threshold", "0"])
    assert code == 0
    assert "NOTE: " not in capsys.readouterr().err.replace("NOTE: the data folder holds SYNTHETIC", "")
    header, a = _read(out / "astronaut.pixie.npz")
    assert header["version"] == 2
    r = 1024
    for name in ("albedo_uv", "lit_uv", "photo_uv", "normal_map_uv"):
        assert a[name].shape == (1, r, r, 3) and a[name].dtype == np.uint8, name
    assert a["displacement_uv"].shape == (1, r, r) and a["displacement_uv"].dtype == np.float16
    assert a["detail_gate"].tolist() == [1] and a["head_confidence"].dtype == np.float32
    np.testing.assert_allclose(a["head_confidence"], a["moderator_weights"][:, 0, 1])
    d = a["displacement_uv"][0].astype(np.float32)
    assert 1e-4 < np.abs(d).max() < 0.02  # metres: DECA's scale
    n = a["normal_map_uv"][0].astype(np.float32) / 255 * 2 - 1
    busy = d != 0
    for axis in (0, 1):
        busy = busy | np.roll(busy, 1, axis) | np.roll(busy, -1, axis)
    assert (np.abs(n[~busy] - [0, 0, 1]) <= 1.5 / 255 * 2).all()  # flat where nothing is displaced nearby
    assert (np.abs(n[busy][:, :2]) > 0.05).any()
    assert np.abs(np.linalg.norm(n, axis=-1) - 1).max() < 0.02
    look = header["appearance"]
    assert look["albedo_uv"] == {"colorspace": "sRGB", "uv": "smplx_tex", "transfer": "clean"}
    assert look["displacement_uv"]["units"] == "m" and look["displacement_uv"]["along"] == "outward normal"
    assert look["normal_map_uv"]["space"] == "tangent" and look["detail_gate"]["threshold"] == 0.0
    assert look["notices"] == []
    # the package stays at version 1
    pkg = next(out.glob("smplx_package_*.npz"))
    assert _read(pkg)[0]["version"] == 1


def test_gate_and_missing_files_in_the_result(small_data_dir, photo, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(small_data_dir, data)
    out = tmp_path / "gated"
    assert main(["reconstruct", str(photo), "-o", str(out), "--data-dir", str(data), "--device", "cpu",
                 "--detector", "none", "--detail-threshold", "0.999"]) == 0
    _, a = _read(out / "astronaut.pixie.npz")
    assert a["detail_gate"].tolist() == [0] and not a["displacement_uv"].any()
    capsys.readouterr()
    (data / "deca_model.tar").unlink()
    out2 = tmp_path / "no-deca"
    assert main(["reconstruct", str(photo), "-o", str(out2), "--data-dir", str(data), "--device", "cpu",
                 "--detector", "none"]) == 0
    err = capsys.readouterr().err
    notes = [ln for ln in err.splitlines() if ln.startswith("NOTE: ") and "SYNTHETIC" not in ln]
    assert len(notes) == 1 and "deca_model.tar" in notes[0]
    header, a = _read(out2 / "astronaut.pixie.npz")
    assert "albedo_uv" in a and "displacement_uv" not in a and "normal_map_uv" not in a
    assert len(header["appearance"]["notices"]) == 1 and "deca_model.tar" in header["appearance"]["notices"][0]
    assert "vertices" in a  # the rest of the result is there
