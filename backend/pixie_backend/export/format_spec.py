"""The result format as data: every array of a result file and of a model package, with its shape
and dtype, in one table per file kind (``docs/result-format.md`` documents the same rows).

This is the writer's single place for the format: :func:`check_arrays` holds what is written to the
table, and ``tests/contract/test_format_tables.py`` keeps this table, the add-on reader's own table
(``pixie_blender/io/format_spec.py``) and the document equal. To add an array: add a row here, a
row in the add-on's table and in the document, and produce it in the writer.

Shape symbols: ``P`` persons, ``V`` vertices, ``F`` triangles, ``T`` UV coordinates, ``H``/``W``
texture height/width; integers are exact sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import constants as C


@dataclass(frozen=True)
class ArraySpec:
    name: str
    shape: tuple[int | str | None, ...]  #: None: any size
    dtype: str  #: numpy dtype name: float32, float16, int32 or uint8
    always: bool  #: written in every file (False: only when available)
    doc: str = ""


def _a(name, shape, doc="", dtype="float32", always=True) -> ArraySpec:
    return ArraySpec(name, tuple(shape), dtype, always, doc)


J, NB, NE, NK = C.NUM_JOINTS, C.NUM_BETAS, C.NUM_EXPRESSION, 145

#: Per-person arrays of ``<stem>.pixie.npz`` (besides the JSON ``header``).
RESULT_ARRAYS: tuple[ArraySpec, ...] = (
    _a("betas", ("P", NB), "body shape"),
    _a("expression", ("P", NE), "FLAME-2020 expression coefficients"),
    _a("global_orient", ("P", 1, 3, 3), "pelvis rotation, PIXIE frame"),
    _a("body_pose", ("P", 21, 3, 3), "joints 1-21, relative"),
    _a("jaw_pose", ("P", 1, 3, 3)),
    _a("leye_pose", ("P", 1, 3, 3), "identity"),
    _a("reye_pose", ("P", 1, 3, 3), "identity"),
    _a("left_hand_pose", ("P", 15, 3, 3), "flat hand mean"),
    _a("right_hand_pose", ("P", 15, 3, 3), "flat hand mean"),
    _a("full_pose", ("P", J, 3, 3), "all of the above in SMPL-X joint order"),
    _a("global_orient_aa", ("P", 3)),
    _a("body_pose_aa", ("P", 63)),
    _a("jaw_pose_aa", ("P", 3)),
    _a("leye_pose_aa", ("P", 3)),
    _a("reye_pose_aa", ("P", 3)),
    _a("left_hand_pose_aa", ("P", 45)),
    _a("right_hand_pose_aa", ("P", 45)),
    _a("transl", ("P", 3), "zeros"),
    _a("cam", ("P", 3), "weak perspective [s, tx, ty], normalised crop coordinates"),
    _a("cam_image_px", ("P", 3), "[a, bx, by], orthographic camera in image pixels"),
    _a("bbox", ("P", 4), "person box x1, y1, x2, y2"),
    _a("crop_center", ("P", 2)),
    _a("crop_size", ("P",)),
    _a("crop_tform", ("P", 3, 3), "image pixels -> 224 crop pixels"),
    _a("moderator_weights", ("P", 3, 2), "[head, left, right] x [body, part]; NaN when absent"),
    _a("tex", ("P", 50), "albedo coefficients", always=False),
    _a("light", ("P", 9, 3), "SH lighting", always=False),
    _a("vertices", ("P", "V", 3), "posed vertices, PIXIE frame"),
    _a("joints", ("P", NK, 3), "PIXIE's 145 keypoints"),
    _a("keypoints_2d", ("P", NK, 2), "joints projected into the image, pixels"),
    _a("joints_rest", ("P", J, 3), "rest-pose joints J(betas, expression)"),
    _a("pose_correctives", ("P", "V", 3), "posedirs . (R - I), rest frame"),
    # face appearance (format v2; ``export/appearance_arrays.py``), SMPL-X UV layout, row 0 = top
    _a("albedo_uv", ("P", "H", "W", 3), "unlit albedo, sRGB", dtype="uint8", always=False),
    _a("lit_uv", ("P", "H", "W", 3), "albedo x SH shading, sRGB", dtype="uint8", always=False),
    _a("photo_uv", ("P", "H", "W", 3), "photo texels over the albedo, sRGB", dtype="uint8", always=False),
    _a("displacement_uv", ("P", "H", "W"), "metres along the outward normal", dtype="float16", always=False),
    _a("normal_map_uv", ("P", "H", "W", 3), "tangent-space detail normals n/2 + 1/2", dtype="uint8", always=False),
    _a("head_confidence", ("P",), "head moderator part weight", always=False),
    _a("detail_gate", ("P",), "1: detail computed", dtype="uint8", always=False),
)

#: Arrays of ``smplx_package_<hash12>.npz`` in **content-hash order**.
PACKAGE_ARRAYS: tuple[ArraySpec, ...] = (
    _a("v_template", ("V", 3)),
    _a("faces", ("F", 3), dtype="int32"),
    _a("uv_coords", ("T", 2), always=False),
    _a("uv_faces", ("F", 3), dtype="int32", always=False),
    _a("weights", ("V", J)),
    _a("parents", (J,), dtype="int32"),
    _a("shapedirs", ("V", 3, NB)),
    _a("exprdirs", ("V", 3, NE)),
    _a("posedirs", ("V", 3, C.NUM_POSE_BASIS)),
    _a("joints_template", (J, 3)),
    _a("joints_shapedirs", (J, 3, NB)),
    _a("joints_exprdirs", (J, 3, NE)),
)

PACKAGE_HASH_ORDER: tuple[str, ...] = tuple(a.name for a in PACKAGE_ARRAYS)


class FormatMismatch(ValueError):
    """The writer produced arrays that disagree with the table (a bug, caught before writing)."""


def check_arrays(arrays: Mapping[str, np.ndarray], table: tuple[ArraySpec, ...]) -> None:
    """Raise :class:`FormatMismatch` unless ``arrays`` has every ``always`` row, nothing outside the
    table, and shapes/dtypes as the table says (symbols must be used consistently)."""
    rows = {a.name: a for a in table}
    unknown = sorted(set(arrays) - set(rows) - {"header"})
    missing = [a.name for a in table if a.always and a.name not in arrays]
    if unknown or missing:
        raise FormatMismatch(f"arrays not in the format table: {unknown}; missing arrays: {missing}")
    dims: dict[str, int] = {}
    for name, arr in arrays.items():
        if name == "header":
            continue
        spec = rows[name]
        if np.dtype(arr.dtype) != np.dtype(spec.dtype):
            raise FormatMismatch(f"{name}: dtype {arr.dtype}, the format says {spec.dtype}")
        if arr.ndim != len(spec.shape):
            raise FormatMismatch(f"{name}: shape {arr.shape}, the format says {spec.shape}")
        for want, got in zip(spec.shape, arr.shape, strict=True):
            if want is None:
                ok = True
            elif isinstance(want, int):
                ok = want == got
            else:
                ok = dims.setdefault(want, got) == got
            if not ok:
                raise FormatMismatch(f"{name}: shape {arr.shape}, the format says {spec.shape} ({dims})")
