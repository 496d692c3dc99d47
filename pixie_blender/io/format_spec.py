"""The result format as the add-on reads it: every array of a result file and of a model package,
in one table per file kind (numpy-free data; ``schema.py`` checks files against it).

``tests/contract/test_format_tables.py`` keeps this table equal to the backend writer's own
(``pixie_backend/export/format_spec.py``, never imported here) and to ``docs/result-format.md``.
To add an array: a row here, a row there, a row in the document.

Shapes: integers are exact; ``P`` persons (the header's ``num_persons``), ``V`` vertices, ``F``
triangles, ``T`` UV coordinates, ``B`` shape coefficients (at most 300), ``H``/``W`` texture size,
``None`` any size. ``kind``: ``f`` float, ``i`` integer, ``u8`` uint8. ``need``: ``required``;
``pose`` (required unless ``full_pose`` is there); ``optional`` (read when present); ``ignored``
(written by the backend, not needed by the add-on).
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import NUM_EXPRESSION, NUM_JOINTS, NUM_POSE_BASIS


@dataclass(frozen=True)
class ArraySpec:
    name: str
    shape: tuple
    kind: str = "f"
    need: str = "required"


def _r(name, shape, kind="f", need="required"):
    return ArraySpec(name, tuple(shape), kind, need)


J, E = NUM_JOINTS, NUM_EXPRESSION

RESULT_ARRAYS: tuple[ArraySpec, ...] = (
    _r("betas", ("P", "B")),
    _r("expression", ("P", E)),
    _r("global_orient", ("P", 1, 3, 3), need="pose"),
    _r("body_pose", ("P", 21, 3, 3), need="pose"),
    _r("jaw_pose", ("P", 1, 3, 3), need="pose"),
    _r("leye_pose", ("P", 1, 3, 3), need="pose"),
    _r("reye_pose", ("P", 1, 3, 3), need="pose"),
    _r("left_hand_pose", ("P", 15, 3, 3), need="pose"),
    _r("right_hand_pose", ("P", 15, 3, 3), need="pose"),
    _r("full_pose", ("P", J, 3, 3), need="optional"),
    _r("global_orient_aa", ("P", 3), need="ignored"),
    _r("body_pose_aa", ("P", 63), need="ignored"),
    _r("jaw_pose_aa", ("P", 3), need="ignored"),
    _r("leye_pose_aa", ("P", 3), need="ignored"),
    _r("reye_pose_aa", ("P", 3), need="ignored"),
    _r("left_hand_pose_aa", ("P", 45), need="ignored"),
    _r("right_hand_pose_aa", ("P", 45), need="ignored"),
    _r("transl", ("P", 3), need="ignored"),
    _r("cam", ("P", 3), need="optional"),
    _r("cam_image_px", ("P", 3)),
    _r("bbox", ("P", 4), need="optional"),
    _r("crop_center", ("P", 2), need="ignored"),
    _r("crop_size", ("P",), need="ignored"),
    _r("crop_tform", ("P", 3, 3), need="ignored"),
    _r("moderator_weights", ("P", 3, 2), need="optional"),
    _r("tex", ("P", None), need="optional"),
    _r("light", ("P", 9, 3), need="optional"),
    _r("vertices", ("P", "V", 3)),
    _r("joints", ("P", None, 3), need="ignored"),
    _r("keypoints_2d", ("P", None, 2), need="optional"),
    _r("joints_rest", ("P", J, 3), need="optional"),
    _r("pose_correctives", ("P", "V", 3), need="optional"),
    # face appearance (v2; v1 files have none of it), SMPL-X UV layout, row 0 = top; the colour
    # textures share one size, the detail maps are read at any size (they get images of their own)
    _r("albedo_uv", ("P", "H", "W", 3), kind="u8", need="optional"),
    _r("lit_uv", ("P", "H", "W", 3), kind="u8", need="optional"),
    _r("photo_uv", ("P", "H", "W", 3), kind="u8", need="optional"),
    _r("displacement_uv", ("P", None, None), need="optional"),
    _r("normal_map_uv", ("P", None, None, 3), kind="u8", need="optional"),
    _r("head_confidence", ("P",), need="optional"),
    _r("detail_gate", ("P",), kind="u8", need="optional"),
)

#: In content-hash order (``package_content_sha256``).
PACKAGE_ARRAYS: tuple[ArraySpec, ...] = (
    _r("v_template", ("V", 3)),
    _r("faces", ("F", 3), kind="i"),
    _r("uv_coords", ("T", 2), need="optional"),
    _r("uv_faces", ("F", 3), kind="i", need="optional"),
    _r("weights", ("V", J)),
    _r("parents", (J,), kind="i"),
    _r("shapedirs", ("V", 3, "B")),
    _r("exprdirs", ("V", 3, E)),
    _r("posedirs", ("V", 3, NUM_POSE_BASIS)),
    _r("joints_template", (J, 3)),
    _r("joints_shapedirs", (J, 3, "B")),
    _r("joints_exprdirs", (J, 3, E)),
)

PACKAGE_HASH_ORDER: tuple[str, ...] = tuple(a.name for a in PACKAGE_ARRAYS)
