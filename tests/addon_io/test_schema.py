"""Result/package reader: valid files, every bad-file case, content hash, package lookup."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pixie_blender.io import schema
from pixie_blender.io.constants import JOINT_NAMES
from tests.support import fake_result
from tests.support.fake_result import rewrite_result


def test_read_result(fake):
    r = schema.read_result(fake.result_path)
    assert len(r.persons) == 2
    assert r.version == 1
    assert r.source_name == "photo"
    assert r.package_sha256 == fake.header["model"]["package"]["sha256"]
    assert r.find_source_image() == fake.image_path.resolve()
    p = r.persons[1]
    np.testing.assert_array_equal(p.betas, fake.params["betas"][1])
    np.testing.assert_array_equal(p.full_pose, fake.params["full_pose"][1])
    assert p.albedo_uv.dtype == np.uint8 and p.albedo_uv.ndim == 3
    assert p.displacement_uv.ndim == 2
    assert p.moderator_weights.shape == (3, 2)


def test_read_package(fake):
    pkg = schema.read_package(fake.package_path)
    assert pkg.content_sha256 == fake_result.content_sha256(fake.package)
    assert pkg.num_vertices == fake.package["v_template"].shape[0]
    assert pkg.has_uv and pkg.num_betas == 200
    pkg.verify()
    assert pkg.verified
    big = pkg.load("shapedirs", "posedirs")
    assert big["posedirs"].shape[-1] == 486


def test_content_hash_matches_independent_implementation(fake):
    assert schema.package_content_sha256(fake.package) == fake_result.content_sha256(fake.package)
    # the hash covers names, dtypes, shapes and bytes
    changed = dict(fake.package, faces=fake.package["faces"].astype(np.int64))
    assert schema.package_content_sha256(changed) != schema.package_content_sha256(fake.package)


def test_full_pose_assembled_from_parts(fake, tmp_path):
    p = rewrite_result(fake.result_path, tmp_path / "parts.pixie.npz", drop=("full_pose",))
    r = schema.read_result(p)
    np.testing.assert_array_equal(r.persons[0].full_pose, fake.params["full_pose"][0])


def test_unknown_arrays_are_ignored(fake, tmp_path):
    p = rewrite_result(
        fake.result_path,
        tmp_path / "extra.pixie.npz",
        replace={"future_thing": np.ones(3)},
        header_update={"future_key": {"a": 1}, "version": "1.3"},
    )
    assert len(schema.read_result(p).persons) == 2


def test_nan_informational_arrays_are_dropped(fake, tmp_path):
    """The backend writes NaN moderator weights when the moderator did not run."""
    p = rewrite_result(
        fake.result_path,
        tmp_path / "nanmod.pixie.npz",
        replace={"moderator_weights": np.full((2, 3, 2), np.nan, np.float32)},
    )
    r = schema.read_result(p)
    assert r.persons[0].moderator_weights is None


def _bad_cases(fake, d: Path):
    """(file, substring of the error) for every way a result file can be bad."""
    cases = {}
    cases["wrong_version"] = (
        rewrite_result(fake.result_path, d / "v3.pixie.npz", header_update={"version": 3}),
        "version 3 is not supported",
    )
    cases["missing_betas"] = (
        rewrite_result(fake.result_path, d / "nob.pixie.npz", drop=("betas",)),
        "'betas' is missing",
    )
    cases["missing_vertices"] = (
        rewrite_result(fake.result_path, d / "nov.pixie.npz", drop=("vertices",)),
        "'vertices' is missing",
    )
    cases["missing_pose"] = (
        rewrite_result(fake.result_path, d / "nop.pixie.npz", drop=("full_pose", "body_pose")),
        "'body_pose' is missing",
    )
    cases["bad_shape"] = (
        rewrite_result(
            fake.result_path, d / "shape.pixie.npz", replace={"expression": np.zeros((2, 10), np.float32)}
        ),
        "'expression' has shape",
    )
    cases["nan"] = (
        rewrite_result(
            fake.result_path, d / "nan.pixie.npz", replace={"betas": np.full((2, 200), np.nan, np.float32)}
        ),
        "NaN",
    )
    fp = fake.params["full_pose"].copy()
    fp[0, 3] *= 2.0
    cases["not_rotations"] = (
        rewrite_result(fake.result_path, d / "rot.pixie.npz", replace={"full_pose": fp}),
        "rotation matrices",
    )
    cases["no_person"] = (
        rewrite_result(fake.result_path, d / "none.pixie.npz", header_update={"num_persons": 0}),
        "no person was found",
    )
    cases["joint_order"] = (
        rewrite_result(
            fake.result_path,
            d / "order.pixie.npz",
            header_update={"joint_names": list(reversed(JOINT_NAMES))},
        ),
        "joint order",
    )
    cases["convention"] = (
        rewrite_result(
            fake.result_path, d / "conv.pixie.npz", header_update={"conventions": {"frame": "opengl"}}
        ),
        "unsupported convention",
    )
    cases["no_package_ref"] = (
        rewrite_result(fake.result_path, d / "noref.pixie.npz", header_update={"model": {}}),
        "does not name its model package",
    )
    data = fake.result_path.read_bytes()
    (d / "truncated.pixie.npz").write_bytes(data[: len(data) // 2])
    cases["corrupt_zip"] = (d / "truncated.pixie.npz", "corrupt")
    (d / "text.pixie.npz").write_text("hello")
    cases["not_a_zip"] = (d / "text.pixie.npz", "not an .npz archive")
    np.savez(d / "other.npz", poses=np.zeros((3, 72)))
    cases["no_header"] = (d / "other.npz", "no header")
    np.savez(d / "json.npz", header=np.array("{not json"))
    cases["header_not_json"] = (d / "json.npz", "not valid JSON")
    np.savez(d / "foreign.npz", header=np.array(json.dumps({"format": "amass", "version": 1})))
    cases["foreign_format"] = (d / "foreign.npz", "format is 'amass'")
    cases["package_not_result"] = (fake.package_path, "it is a model package")
    cases["missing_file"] = (d / "nothere.pixie.npz", "not found")
    pickled = d / "pickle.pixie.npz"
    np.savez(pickled, header=np.array({"format": "pixie-result"}, dtype=object))
    cases["pickled_header"] = (pickled, "")
    return cases


BAD_CASES = [
    "wrong_version",
    "missing_betas",
    "missing_vertices",
    "missing_pose",
    "bad_shape",
    "nan",
    "not_rotations",
    "no_person",
    "joint_order",
    "convention",
    "no_package_ref",
    "corrupt_zip",
    "not_a_zip",
    "no_header",
    "header_not_json",
    "foreign_format",
    "package_not_result",
    "missing_file",
    "pickled_header",
]


@pytest.fixture(scope="module")
def bad_cases(fake, tmp_path_factory):
    return _bad_cases(fake, tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_result_files_raise(bad_cases, case):
    path, needle = bad_cases[case]
    with pytest.raises(schema.PixieFormatError) as err:
        schema.read_result(path)
    assert needle in str(err.value)


def test_missing_and_mismatched_package(fake, tmp_path):
    res = tmp_path / "photo.pixie.npz"
    shutil.copy(fake.result_path, res)
    r = schema.read_result(res)
    with pytest.raises(schema.PackageNotFoundError, match="not found next to the result"):
        schema.find_package(r)
    # a package with other content under the expected name is refused
    other = dict(fake.package, v_template=fake.package["v_template"] + 0.01)
    p = fake_result.write_package(other, tmp_path / "x")
    shutil.copy(p, tmp_path / r.package_file)
    with pytest.raises(schema.PackageNotFoundError, match="found only other packages"):
        schema.find_package(r)


def test_package_from_cache(fake, tmp_path):
    res = tmp_path / "photo.pixie.npz"
    shutil.copy(fake.result_path, res)
    r = schema.read_result(res)
    cache = tmp_path / "cache"
    dst = schema.package_cache_path(cache, r.package_sha256)
    dst.parent.mkdir(parents=True)
    shutil.copy(fake.package_path, dst)
    assert schema.find_package(r, [cache]).path == dst


def test_damaged_package_content_detected(fake, tmp_path):
    arrays = dict(fake.package)
    header_sha = fake_result.content_sha256(arrays)
    damaged = dict(arrays, weights=arrays["weights"] * 0.5)
    p = fake_result.write_package(damaged, tmp_path, header_overrides={"content_sha256": header_sha})
    pkg = schema.read_package(p)
    with pytest.raises(schema.PixieFormatError, match="does not match its hash"):
        pkg.verify()


@pytest.mark.parametrize(
    "mutation, needle",
    [
        ({"drop": "posedirs"}, "'posedirs' is missing"),
        ({"drop": "uv_faces"}, "'uv_faces' is missing"),
        ({"parents": True}, "kinematic tree"),
        ({"header": {"version": 7}}, "version 7"),
        ({"header": {"content_sha256": "xyz"}}, "content_sha256"),
        ({"weights_shape": True}, "'weights' has shape"),
    ],
)
def test_bad_packages(fake, tmp_path, mutation, needle):
    arrays = dict(fake.package)
    if "drop" in mutation:
        arrays.pop(mutation["drop"])
    if "parents" in mutation:
        arrays["parents"] = np.roll(arrays["parents"], 1)
    if "weights_shape" in mutation:
        arrays["weights"] = arrays["weights"][:, :50]
    p = fake_result.write_package(arrays, tmp_path, header_overrides=mutation.get("header"))
    with pytest.raises(schema.PixieFormatError, match=needle):
        schema.read_package(p)


def test_compressed_files_read(tmp_path):
    fx = fake_result.make_fixture(tmp_path, compress=True, with_image=False)
    r = schema.read_result(fx.result_path)
    assert schema.find_package(r).num_vertices == fx.package["v_template"].shape[0]


def test_io_imports_without_bpy_or_torch():
    code = (
        "import sys, pixie_blender, pixie_blender.io.schema, pixie_blender.io.body_model; "
        "assert 'bpy' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_addon_never_imports_torch_or_backend():
    root = Path(__file__).resolve().parents[2] / "pixie_blender"
    for f in root.rglob("*.py"):
        text = f.read_text()
        for bad in ("import torch", "from torch", "import pixie_backend", "from pixie_backend"):
            assert bad not in text, f"{f}: {bad}"
        if f.parent.name == "io":
            assert "import bpy" not in text and "from bpy" not in text, f
