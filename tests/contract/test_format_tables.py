"""The result format is written down three times: the backend writer's table
(``pixie_backend/export/format_spec.py``), the add-on reader's table (``pixie_blender/io/format_spec.py``)
and ``docs/result-format.md``. They must name the same arrays, with compatible shapes and dtypes,
and the same package hash order; every array the reader requires is one the writer always writes."""

import re
from pathlib import Path

import numpy as np
from pixie_backend.export import format_spec as writer

from pixie_blender.io import format_spec as reader

DOC = Path(__file__).resolve().parents[2] / "docs" / "result-format.md"
KIND = {"float32": "f", "float16": "f", "int32": "i", "uint8": "u8"}


def _doc_arrays(section: str) -> list[str]:
    """Array names of the tables under a heading of the format document (first column, backticked)."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(section)
    end = text.find("\n#", start + len(section))
    names = []
    for line in text[start:end if end > 0 else None].splitlines():
        if line.startswith("| `"):
            names += re.findall(r"`([a-z_0-9]+)`", line.split("|")[1])
    return names


def _compatible(w_shape, r_shape, bound: dict) -> bool:
    if len(w_shape) != len(r_shape):
        return False
    for w, r in zip(w_shape, r_shape, strict=True):
        if r is None:
            continue
        if isinstance(r, int):
            if w != r:
                return False
        else:  # a symbol: the writer's entry must be used consistently for it
            if bound.setdefault(r, w) != w:
                return False
    return True


def test_result_tables_agree():
    w = {a.name: a for a in writer.RESULT_ARRAYS}
    r = {a.name: a for a in reader.RESULT_ARRAYS}
    assert list(w) == list(r)
    bound: dict = {}
    for name in w:
        assert KIND[w[name].dtype] == r[name].kind, name
        assert _compatible(w[name].shape, r[name].shape, bound), (name, w[name].shape, r[name].shape)
        if r[name].need == "required":
            assert w[name].always, f"the reader requires {name}, the writer may leave it out"
    pose = [n for n, a in r.items() if a.need == "pose"]
    assert all(w[n].always for n in pose) or w["full_pose"].always


def test_package_tables_agree_in_hash_order():
    assert writer.PACKAGE_HASH_ORDER == reader.PACKAGE_HASH_ORDER
    bound: dict = {}
    for wa, ra in zip(writer.PACKAGE_ARRAYS, reader.PACKAGE_ARRAYS, strict=True):
        assert KIND[wa.dtype] == ra.kind and wa.always == (ra.need == "required"), wa.name
        assert _compatible(wa.shape, ra.shape, bound), wa.name


def test_the_document_lists_the_same_arrays():
    per_person = _doc_arrays("### Per-person arrays") + _doc_arrays("### Optional appearance arrays")
    assert sorted(per_person) == sorted(a.name for a in writer.RESULT_ARRAYS)
    package = [n for n in _doc_arrays("## Model package") if n != "header"]
    assert package == list(writer.PACKAGE_HASH_ORDER)


def test_writer_refuses_arrays_off_the_table():
    import pytest

    arrays = {"betas": np.zeros((1, 200), np.float32)}
    with pytest.raises(writer.FormatMismatch, match="missing arrays"):
        writer.check_arrays(arrays, writer.RESULT_ARRAYS)
    with pytest.raises(writer.FormatMismatch, match="not in the format table"):
        writer.check_arrays({"surprise": np.zeros(1)}, writer.PACKAGE_ARRAYS)
