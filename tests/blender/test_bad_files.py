"""Every bad file is reported and leaves the file untouched: no datablock more or less."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pixie_blender.io.schema import PixieFormatError
from tests.blender._helpers import id_counts
from tests.support import fake_result
from tests.support.fake_result import rewrite_result


@pytest.fixture(scope="module")
def bad(small, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-files")
    shutil.copy(small.package_path, d / small.package_path.name)
    src = small.result_path
    cases = {
        "wrong_version": (rewrite_result(src, d / "v9.pixie.npz", header_update={"version": 9}), "version 9"),
        "missing_arrays": (
            rewrite_result(src, d / "nobetas.pixie.npz", drop=("betas",)),
            "'betas' is missing",
        ),
        "not_a_result": (small.package_path, "is a model package"),
        "no_person": (
            rewrite_result(src, d / "empty.pixie.npz", header_update={"num_persons": 0}),
            "no person was found",
        ),
    }
    data = src.read_bytes()
    (d / "corrupt.pixie.npz").write_bytes(data[: len(data) // 3])
    cases["corrupt_zip"] = (d / "corrupt.pixie.npz", "corrupt")
    flipped = bytearray(data)
    mid = len(flipped) // 2
    flipped[mid : mid + 64] = bytes(64)
    (d / "crc.pixie.npz").write_bytes(bytes(flipped))
    cases["damaged_data"] = (d / "crc.pixie.npz", "")
    (d / "text.pixie.npz").write_text("not a result")
    cases["text_file"] = (d / "text.pixie.npz", "not an .npz archive")
    np.savez(d / "amass.npz", poses=np.zeros((5, 156)), trans=np.zeros((5, 3)))
    cases["other_npz"] = (d / "amass.npz", "no header")
    lonely = d / "lonely"
    lonely.mkdir()
    cases["missing_package"] = (shutil.copy(src, lonely / "alice.pixie.npz"), "not found next to the result")
    other = fake_result.package_arrays(fake_result.toy_body_model(seed=99))
    wrong = d / "wrongpkg"
    wrong.mkdir()
    pkg_path = fake_result.write_package(other, wrong)
    res = rewrite_result(src, wrong / "alice.pixie.npz")
    hdr = json.loads(str(np.load(res)["header"][()]))
    shutil.move(pkg_path, wrong / hdr["model"]["package"]["file"])
    cases["package_hash_mismatch"] = (res, "found only other packages")
    return cases


CASES = [
    "wrong_version",
    "missing_arrays",
    "not_a_result",
    "no_person",
    "corrupt_zip",
    "damaged_data",
    "text_file",
    "other_npz",
    "missing_package",
    "package_hash_mismatch",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_file_operator_cancels_and_builds_nothing(bpy_mod, bad, case, tmp_path, monkeypatch):
    from pixie_blender.scene import template_cache
    from pixie_blender.scene.avatar import ImportOptions, build_avatars

    # the operator uses the add-on's cache: an empty one, so the package must be found beside
    monkeypatch.setattr(template_cache, "default_cache_dir", lambda: tmp_path / "cache")

    path, needle = bad[case]
    bpy_mod.ops.mesh.primitive_cube_add()  # something in the scene
    before = id_counts()
    with pytest.raises(PixieFormatError) as err:
        build_avatars(bpy_mod.context, path, ImportOptions(cache_dir=str(tmp_path / "cache")))
    assert needle in str(err.value)
    assert id_counts() == before
    # the operator reports it with self.report({'ERROR'}); headless bpy raises that as RuntimeError
    with pytest.raises(RuntimeError) as rep:
        bpy_mod.ops.pixie.import_result(filepath=str(path))
    assert str(rep.value).startswith("Error: ") and needle in str(rep.value)
    assert id_counts() == before


def test_one_bad_file_among_several_builds_nothing(bpy_mod, small, bad):
    before = id_counts()
    with pytest.raises(RuntimeError, match="version 9"):
        bpy_mod.ops.pixie.import_result(
            directory="/", files=[{"name": str(small.result_path)}, {"name": str(bad["wrong_version"][0])}]
        )
    assert id_counts() == before


def test_failure_while_building_rolls_back(bpy_mod, small, group, monkeypatch, tmp_path):
    """A failure after Blender data exists (here: the material step of the second file) removes
    everything the import created, the first file's avatars included."""
    from pixie_blender.scene import avatar, materials
    from pixie_blender.scene.avatar import ImportOptions, build_many

    calls = {"n": 0}
    real = materials.create_material

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated failure")
        return real(*a, **kw)

    monkeypatch.setattr(avatar.materials, "create_material", flaky)
    before = id_counts()
    with pytest.raises(RuntimeError, match="simulated"):
        build_many(
            bpy_mod.context,
            [small.result_path, group.result_path],
            ImportOptions(cache_dir=str(tmp_path / "cache")),
        )
    assert calls["n"] == 3
    assert id_counts() == before
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="nothing was imported"):
        bpy_mod.ops.pixie.import_result(filepath=str(group.result_path))
    assert id_counts() == before
