"""Build plans: model package and result → plain arrays the ``scene`` layer turns into Blender data.

numpy only. A :class:`TemplatePlan` holds everything shared by all avatars of one model package
(mesh, UVs, skin weights, blend shapes in Blender's frame, template bones); a :class:`PersonPlan`
holds one person's values (shaped joints, bone rotations, key values, correctives, placement,
camera, metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import convert
from .constants import JOINT_NAMES, NUM_JOINTS
from .schema import PackageData, PersonData, PixieFormatError, ResultData

#: Bone length (metres) by joint; the direction (+Z) and roll (0) are what matter for rotations.
_SHORT_BONES = {"jaw": 0.04, "left_eye_smplhf": 0.015, "right_eye_smplhf": 0.015}


def bone_lengths() -> np.ndarray:
    """Display length of each of the 55 bones: 10 cm for the body, short ones for face and hands."""
    out = np.full(NUM_JOINTS, 0.1)
    for i, name in enumerate(JOINT_NAMES):
        if name in _SHORT_BONES:
            out[i] = _SHORT_BONES[name]
        elif i >= 25:  # fingers
            out[i] = 0.02
    return out


def slider_range(
    values: np.ndarray, default: float = 5.0, hard: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """Slider limits per key: ±default, widened to 1.5·|value| (Blender clamps limits to ±10)."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    lim = np.minimum(np.maximum(default, np.ceil(1.5 * v)), hard)
    return -lim, lim


@dataclass
class TemplatePlan:
    """The avatar template of one model package (Blender frame, float32)."""

    content_sha256: str
    vertices: np.ndarray  # (V, 3) rest mesh = v_template
    faces: np.ndarray  # (F, 3) int32
    loop_uvs: np.ndarray | None  # (3F, 2) per-corner UVs
    weight_rows: np.ndarray  # non-zero skin weights, sorted by vertex
    weight_cols: np.ndarray
    weight_values: np.ndarray
    shape_offsets: np.ndarray  # (K, V, 3) per Shape### key
    expression_offsets: np.ndarray  # (50, V, 3) per Exp### key
    pose_offsets: np.ndarray | None  # (486, V, 3) per Pose### key, only for live correctives
    bone_heads: np.ndarray  # (55, 3) template joints
    bone_lengths: np.ndarray  # (55,)
    joints_template: np.ndarray  # (55, 3) SMPL-X frame, for the joints-follow-shape regressor
    joints_shapedirs: np.ndarray  # (55, 3, K)
    joints_exprdirs: np.ndarray  # (55, 3, 50)

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])


def template_plan(
    package: PackageData, *, num_shape_keys: int | None = None, with_pose_keys: bool = False
) -> TemplatePlan:
    """Load the package's big arrays and convert them for Blender."""
    names = ["v_template", "faces", "weights", "shapedirs", "exprdirs"]
    if package.has_uv:
        names += ["uv_coords", "uv_faces"]
    if with_pose_keys:
        names.append("posedirs")
    a = package.load(*names)
    V = package.num_vertices
    K = package.num_betas if num_shape_keys is None else min(num_shape_keys, package.num_betas)

    faces = a["faces"].astype(np.int32)
    if faces.min() < 0 or faces.max() >= V:
        raise PixieFormatError(f"{package.path.name}: face indices out of range")
    loop_uvs = None
    if package.has_uv:
        uvf = a["uv_faces"].astype(np.int64)
        uvc = a["uv_coords"].astype(np.float32)
        if uvf.min() < 0 or uvf.max() >= len(uvc):
            raise PixieFormatError(f"{package.path.name}: UV face indices out of range")
        loop_uvs = uvc[uvf.reshape(-1)]

    w = a["weights"].astype(np.float32)
    rows, cols = np.nonzero(w)
    shape_off = convert.smplx_dirs_to_blender(a["shapedirs"][:, :, :K].astype(np.float32))
    expr_off = convert.smplx_dirs_to_blender(a["exprdirs"].astype(np.float32))
    pose_off = None
    if with_pose_keys:
        pose_off = np.ascontiguousarray(
            convert.smplx_dirs_to_blender(a["posedirs"].astype(np.float32)).transpose(2, 0, 1)
        )
    return TemplatePlan(
        content_sha256=package.content_sha256,
        vertices=convert.smplx_to_blender(a["v_template"]).astype(np.float32),
        faces=faces,
        loop_uvs=loop_uvs,
        weight_rows=rows.astype(np.int32),
        weight_cols=cols.astype(np.int32),
        weight_values=w[rows, cols],
        shape_offsets=np.ascontiguousarray(shape_off.transpose(2, 0, 1)),
        expression_offsets=np.ascontiguousarray(expr_off.transpose(2, 0, 1)),
        pose_offsets=pose_off,
        bone_heads=convert.smplx_to_blender(package.joints_template),
        bone_lengths=bone_lengths(),
        joints_template=package.joints_template.astype(np.float32),
        joints_shapedirs=package.joints_shapedirs[:, :, :K].astype(np.float32),
        joints_exprdirs=package.joints_exprdirs.astype(np.float32),
    )


@dataclass
class PersonPlan:
    """Everything person-specific about one avatar (Blender frame unless stated)."""

    name: str
    index: int
    betas: np.ndarray  # (K,) values of Shape000..
    expression: np.ndarray  # (50,)
    joints_smplx: np.ndarray  # (55, 3) shaped rest joints, y-up SMPL-X
    bone_heads: np.ndarray  # (55, 3) shaped rest joints, Blender
    rotations: np.ndarray  # (55, 3, 3) relative bone rotations (root upright)
    quaternions: np.ndarray  # (55, 4) WXYZ of ``rotations``
    pose_correctives: np.ndarray | None  # (V, 3) offsets of this pose, Blender frame
    posed_vertices: np.ndarray  # (V, 3) the result's vertices in armature space
    camera: convert.CameraPlan | None
    metadata: dict[str, Any] = field(default_factory=dict)
    albedo_uv: np.ndarray | None = None  # (H, W, 3) uint8 sRGB, SMPL-X UV, row 0 = top
    displacement_uv: np.ndarray | None = None  # (H, W) float metres along the normal
    normal_map_uv: np.ndarray | None = None  # (H, W, 3) uint8 tangent-space detail normals
    lit_uv: np.ndarray | None = None  # (H, W, 3) uint8 sRGB albedo x SH shading
    photo_uv: np.ndarray | None = None  # (H, W, 3) uint8 sRGB photo texels over the albedo
    light: np.ndarray | None = None  # (9, 3) SH lighting, PIXIE frame
    detail_gate: bool | None = None  # the backend computed the detail (head confidence > threshold)
    warnings: list[str] = field(default_factory=list)

    def texture(self, which: str) -> tuple[np.ndarray | None, str | None]:
        """The base-colour texture for ``which`` ("ALBEDO", "LIT", "PHOTO"), falling back to the
        albedo; returns (image or None, a warning or None)."""
        chosen = {"ALBEDO": self.albedo_uv, "LIT": self.lit_uv, "PHOTO": self.photo_uv}.get(which)
        if which != "ALBEDO" and chosen is None and self.albedo_uv is not None:
            return self.albedo_uv, f"the result has no {which.lower()} texture; using the albedo"
        return chosen, None

    @property
    def has_detail(self) -> bool:
        """A displacement map with some non-zero texel (a gated-off person's map is all zero)."""
        d = self.displacement_uv
        return d is not None and bool(np.any(d != 0))

    @property
    def extent_x(self) -> tuple[float, float]:
        x = self.posed_vertices[:, 0]
        return float(x.min()), float(x.max())

    @property
    def min_z(self) -> float:
        return float(self.posed_vertices[:, 2].min())


def avatar_names(result: ResultData) -> list[str]:
    """One name per person: the source's name, with ``_person<N>`` when the image has several
    (also when only some of them are imported)."""
    base = result.source_name
    total = result.header.get("num_persons", len(result.persons))
    if len(result.persons) == 1 and total == 1:
        return [base]
    return [f"{base}_person{p.index + 1}" for p in result.persons]


def _metadata(result: ResultData, package: PackageData, person: PersonData) -> dict[str, Any]:
    h = result.header
    src = result.source
    model = h.get("model") or {}
    md: dict[str, Any] = {
        "pixie_format_version": str(h.get("version")),
        "pixie_result_file": str(result.path.resolve()),
        "pixie_person_index": int(person.index),
        "pixie_num_persons": int(result.header.get("num_persons", len(result.persons))),
        "pixie_source_image": str(src.get("path", "")),
        "pixie_source_name": result.source_name,
        "pixie_package_sha256": package.content_sha256,
        "pixie_synthetic": bool(h.get("synthetic", False) or package.synthetic),
        "pixie_cam_image_px": [float(c) for c in person.cam_image_px],
    }
    found = result.find_source_image()
    if found is not None:
        md["pixie_source_image_resolved"] = str(found)
    if src.get("sha256"):
        md["pixie_source_sha256"] = str(src["sha256"])
    if src.get("width") and src.get("height"):
        md["pixie_source_size"] = [int(src["width"]), int(src["height"])]
    for key in ("smplx_sha256", "checkpoint_sha256"):
        if model.get(key):
            md[f"pixie_{key}"] = str(model[key])
    prod = h.get("producer") or {}
    if prod:
        md["pixie_producer"] = f"{prod.get('name', '?')} {prod.get('version', '')}".strip()
    if h.get("created"):
        md["pixie_created"] = str(h["created"])
    if h.get("frame") is not None:
        md["pixie_frame"] = int(h["frame"])
    if person.moderator_weights is not None:
        mw = np.asarray(person.moderator_weights, dtype=np.float64)
        for row, part in enumerate(("head", "left_hand", "right_hand")):
            md[f"pixie_moderator_{part}"] = [float(mw[row, 0]), float(mw[row, 1])]
    if person.bbox is not None:
        md["pixie_bbox"] = [float(c) for c in person.bbox]
    if person.light is not None:
        md["pixie_light_sh"] = [float(c) for c in np.asarray(person.light).reshape(-1)]
    if person.tex is not None:
        md["pixie_tex"] = [float(c) for c in np.asarray(person.tex).reshape(-1)]
    if person.head_confidence is not None:
        md["pixie_head_confidence"] = float(person.head_confidence)
    if person.detail_gate is not None:
        md["pixie_detail_gate"] = bool(person.detail_gate)
    return md


def person_plans(
    result: ResultData,
    package: PackageData,
    *,
    num_shape_keys: int | None = None,
    with_camera: bool = True,
    need_correctives: bool = True,
) -> list[PersonPlan]:
    """Plans for every person of ``result`` (validated against ``package``)."""
    V = package.num_vertices
    if result.num_vertices != V:
        raise PixieFormatError(
            f"{result.path.name}: vertices have {result.num_vertices} rows, the model package "
            f"{package.path.name} has {V} vertices"
        )
    K = package.num_betas if num_shape_keys is None else min(num_shape_keys, package.num_betas)
    posedirs = None
    plans = []
    src = result.source
    for person, name in zip(result.persons, avatar_names(result), strict=True):
        warnings: list[str] = []
        nb = person.betas.shape[0]
        if nb > package.num_betas:
            raise PixieFormatError(
                f"{result.path.name}: {nb} betas but the model package has {package.num_betas}"
            )
        betas = np.zeros(K)
        betas[: min(nb, K)] = person.betas[:K]
        if nb > K and np.abs(person.betas[K:]).max() > 0:
            warnings.append(f"betas beyond {K} are not represented as shape keys")
        J = convert.shaped_joints(
            package.joints_template,
            package.joints_shapedirs,
            package.joints_exprdirs,
            person.betas,
            person.expression,
        )
        rots = convert.blender_pose_rotations(person.full_pose)
        pc = None
        if need_correctives:
            if person.pose_correctives is not None:
                pc = convert.smplx_to_blender(person.pose_correctives).astype(np.float32)
            else:
                if posedirs is None:
                    posedirs = package.load("posedirs")["posedirs"].astype(np.float32)
                feat = convert.pose_feature(person.full_pose).astype(np.float32)
                pc = convert.smplx_to_blender(posedirs @ feat).astype(np.float32)
        cam = None
        if with_camera:
            w, h = src.get("width"), src.get("height")
            if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
                cam = convert.orthographic_camera(person.cam_image_px, w, h, J[0])
            else:
                warnings.append("the header has no image size; no camera")
        for label, vals in (("betas", person.betas), ("expression", person.expression)):
            if np.abs(vals).max(initial=0.0) > 10.0:
                warnings.append(f"some {label} exceed ±10, Blender's shape-key limit; clamped")
        plans.append(
            PersonPlan(
                name=name,
                index=person.index,
                betas=betas,
                expression=np.asarray(person.expression, dtype=np.float64),
                joints_smplx=J,
                bone_heads=convert.smplx_to_blender(J),
                rotations=rots,
                quaternions=convert.rotmat_to_quat_wxyz(rots),
                pose_correctives=pc,
                posed_vertices=convert.pixie_to_blender(person.vertices, J[0]),
                camera=cam,
                metadata=_metadata(result, package, person),
                albedo_uv=person.albedo_uv,
                displacement_uv=person.displacement_uv,
                normal_map_uv=person.normal_map_uv,
                lit_uv=person.lit_uv,
                photo_uv=person.photo_uv,
                light=None if person.light is None else np.asarray(person.light, dtype=np.float64),
                detail_gate=None if person.detail_gate is None else bool(person.detail_gate),
                warnings=warnings,
            )
        )
    return plans


def layout_offsets(
    plans: list[PersonPlan], gap: float = 0.3, ground: bool = True, order_by_image: bool = True
) -> list[np.ndarray]:
    """Object locations (relative to the placement origin) that stand the avatars side by side,
    left to right as in the photo, without overlap, feet on z = 0 when ``ground``."""
    n = len(plans)
    offsets = [np.zeros(3) for _ in range(n)]
    order = list(range(n))
    if order_by_image:

        def key(i):
            bbox = plans[i].metadata.get("pixie_bbox")
            return (bbox[0] + bbox[2]) / 2 if bbox else plans[i].metadata["pixie_cam_image_px"][1]

        order.sort(key=key)
    right = None
    for i in order:
        lo, hi = plans[i].extent_x
        if right is None:
            pelvis_x = plans[i].bone_heads[0, 0]
            offsets[i][0] = -pelvis_x
        else:
            offsets[i][0] = right + gap - lo
        right = offsets[i][0] + hi
        if ground:
            offsets[i][2] = -plans[i].min_z
    return offsets
