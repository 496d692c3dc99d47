"""Build avatars from a result file: the entry point the import operator wraps.

    from pixie_blender.scene.avatar import ImportOptions, build_avatars
    rigs = build_avatars(bpy.context, "photo.pixie.npz", ImportOptions(add_camera=False))

Everything that can be wrong with the files is checked (numpy only) before the first datablock is
created; if building still fails, every datablock created so far is removed again, so a failed
import leaves the file as it was.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import bpy
import numpy as np

from ..io import body_model
from ..io.constants import BAKED_CORRECTIVE_KEY
from ..io.schema import PackageData, ResultData, find_package, read_result
from . import armature, camera, detail, materials, shape_keys, template_cache, world

CORRECTIVE_MODES = ("BAKED", "LIVE", "NONE")
PLACEMENTS = ("IN_PLACE", "PHOTO")
TEXTURE_MODES = ("ALBEDO", "LIT", "PHOTO")
DETAIL_MODES = ("DISPLACE", "SHADING", "NONE")


@dataclass
class ImportOptions:
    #: "BAKED": one ``PoseCorrectives`` key with the result's correctives for the imported pose;
    #: "LIVE": 486 ``Pose###`` keys driven by the bone rotations; "NONE": no correctives.
    pose_correctives: str = "BAKED"
    add_camera: bool = True
    #: "IN_PLACE": side by side, an orthographic photo camera per person (exact overlay);
    #: "PHOTO": every person where the photo shows them, seen through one perspective camera
    #: (``io/placement.py``)
    placement: str = "IN_PLACE"
    focal_px: float | None = None  # "PHOTO": the camera's focal length in pixels (None: image diagonal)
    #: make the first new camera the scene camera (with the photo's resolution) if there is none
    set_scene_camera: bool = True
    place_on_ground: bool = True
    gap: float = 0.3  # metres between avatars standing side by side
    location: tuple[float, float, float] | None = None  # None: the 3D cursor
    use_cache: bool = True
    cache_dir: str | None = None  # None: the add-on's user cache
    num_shape_keys: int | None = None  # None: all of the package's (200)
    persons: tuple[int, ...] | None = None  # None: every person of the result
    #: base colour: "ALBEDO" (unlit, for any lighting), "LIT" (PIXIE's SH shading baked in) or
    #: "PHOTO" (the photo's face texels over the albedo); falls back to the albedo
    texture: str = "ALBEDO"
    #: facial detail: "DISPLACE" (real displaced geometry in Cycles via adaptive subdivision, the
    #: detail normal map in EEVEE), "SHADING" (normal/bump map only, no subdivision) or "NONE"
    detail: str = "DISPLACE"
    #: set the scene's world to PIXIE's SH estimate of the photo's lighting (first avatar)
    world_lighting: bool = False
    #: "PACK" the textures into the .blend, or save them as "FILES" next to it
    image_storage: str = "PACK"


@dataclass
class BuildReport:
    """What one :func:`build_avatars` call did (for the operator's report and the benchmark)."""

    rigs: list = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    template_built: bool = False
    seconds: float = 0.0
    right_edge: float = 0.0  # largest x (world) of the avatars built, for placing the next file


_ID_COLLECTIONS = (
    "objects",
    "meshes",
    "armatures",
    "materials",
    "images",
    "cameras",
    "collections",
    "libraries",
    "actions",
    "shape_keys",
    "node_groups",
    "textures",
    "movieclips",
    "worlds",
)


def snapshot_ids() -> dict[str, set[int]]:
    return {a: {i.as_pointer() for i in getattr(bpy.data, a)} for a in _ID_COLLECTIONS}


def rollback_ids(snap: dict[str, set[int]]) -> None:
    new = []
    for a in _ID_COLLECTIONS:
        for i in getattr(bpy.data, a):
            if i.as_pointer() not in snap[a]:
                new.append(i)
    # objects first; shape keys are freed with their meshes
    for o in [i for i in new if isinstance(i, bpy.types.Object)]:
        bpy.data.objects.remove(o)
    rest = [i for i in new if not isinstance(i, (bpy.types.Object, bpy.types.Key))]
    if rest:
        bpy.data.batch_remove(rest)
    for a in ("shape_keys",):  # orphaned keys, if any
        left = [i for i in getattr(bpy.data, a) if i.as_pointer() not in snap[a]]
        if left:
            bpy.data.batch_remove(left)


def resolve_cache_dir(options: ImportOptions) -> Path | None:
    if not options.use_cache:
        return None
    if options.cache_dir:
        p = Path(options.cache_dir)
        p.mkdir(parents=True, exist_ok=True)
        return p
    return template_cache.default_cache_dir()


@dataclass
class PreparedImport:
    """A result validated and planned (no Blender data yet)."""

    result: ResultData
    package: PackageData
    plans: list[body_model.PersonPlan]
    cache_dir: Path | None


def prepare(result_path: str | os.PathLike, options: ImportOptions) -> PreparedImport:
    """Read and validate everything (numpy only); raises :class:`PixieFormatError`."""
    for label, value, allowed in (("pose_correctives", options.pose_correctives, CORRECTIVE_MODES),
                                  ("placement", options.placement, PLACEMENTS),
                                  ("texture", options.texture, TEXTURE_MODES),
                                  ("detail", options.detail, DETAIL_MODES),
                                  ("image_storage", options.image_storage, ("PACK", "FILES"))):
        if value not in allowed:
            raise ValueError(f"{label} must be one of {allowed}, not {value!r}")
    result = read_result(result_path)
    if options.persons is not None:
        keep = [p for p in result.persons if p.index in set(options.persons)]
        result.persons = keep
    cache_dir = resolve_cache_dir(options)
    package = find_package(result, [cache_dir] if cache_dir else [])
    plans = body_model.person_plans(
        result,
        package,
        num_shape_keys=options.num_shape_keys,
        with_camera=options.add_camera and options.placement == "IN_PLACE",
        need_correctives=options.pose_correctives == "BAKED",
    )
    return PreparedImport(result, package, plans, cache_dir)


def _import_collection(context, name: str) -> bpy.types.Collection:
    coll = bpy.data.collections.new(name)
    # under the active collection, unless it is excluded or hidden in the view layer
    target = context.view_layer.active_layer_collection
    if target is None or target.exclude or target.hide_viewport or target.collection.hide_viewport:
        parent = context.scene.collection
    else:
        parent = target.collection
    parent.children.link(coll)
    return coll


def _set_metadata(ob: bpy.types.Object, md: dict) -> None:
    for k, v in md.items():
        ob[k] = v


def build_from_prepared(
    context, prep: PreparedImport, options: ImportOptions, right_of: float | None = None
) -> BuildReport:
    """Build the avatars of one prepared result. The first avatar's pelvis stands at
    ``options.location`` (default: the 3D cursor), or, with ``right_of``, the group starts
    ``options.gap`` to the right of that x."""
    t0 = time.perf_counter()
    report = BuildReport()
    plans = prep.plans
    for p in plans:
        report.warnings += [f"{p.name}: {w}" for w in p.warnings]
    # features the backend could not compute (optional data files missing): one line each
    report.warnings += [f"{prep.result.source_name}: {n}" for n in prep.result.appearance_notices]
    origin = np.array(
        options.location if options.location is not None else tuple(context.scene.cursor.location),
        dtype=np.float64,
    )
    photo = _photo_layout(prep, options, origin, report) if options.placement == "PHOTO" else None
    if photo is not None:
        locations = [np.array(loc) for loc in photo.rig_locations]
    else:
        offsets = body_model.layout_offsets(plans, gap=options.gap, ground=options.place_on_ground)
        locations = [origin + off for off in offsets]
    left = min(loc[0] + p.extent_x[0] for loc, p in zip(locations, plans, strict=True))
    right = max(loc[0] + p.extent_x[1] for loc, p in zip(locations, plans, strict=True))
    shift = np.zeros(3)
    if right_of is not None:  # several files: this one's group to the right of the previous
        shift[0] = right_of + options.gap - left
    report.right_edge = float(right + shift[0])
    image_path = prep.result.find_source_image() if options.add_camera else None
    if options.add_camera and image_path is None:
        report.warnings.append(
            f"source photo {prep.result.source.get('path')!r} not found; camera added without background"
        )
    num_shape = (
        prep.package.num_betas
        if options.num_shape_keys is None
        else min(options.num_shape_keys, prep.package.num_betas)
    )

    snap = snapshot_ids()
    try:
        armature.ensure_object_mode(context)
        coll = _import_collection(context, prep.result.source_name)
        src = template_cache.TemplateSource(
            context,
            prep.package,
            num_shape=num_shape,
            live_correctives=options.pose_correctives == "LIVE",
            cache_dir=prep.cache_dir,
        )
        pairs = src.instances(len(plans), coll)
        report.template_built = src.built

        for plan, (arm_ob, body) in zip(plans, pairs, strict=True):
            arm_ob.name = plan.name
            arm_ob.data.name = f"{plan.name}_rig"
            body.name = f"{plan.name}_body"
            body.data.name = f"{plan.name}_body"
            body.data.shape_keys.name = f"{plan.name}_keys"
        armature.set_rest_joints(
            context,
            [
                (arm_ob, plan.bone_heads, body_model.bone_lengths())
                for plan, (arm_ob, _b) in zip(plans, pairs, strict=True)
            ],
        )

        cams = []
        for i, (plan, (arm_ob, body), loc) in enumerate(zip(plans, pairs, locations, strict=True)):
            armature.set_pose(arm_ob, plan.quaternions)
            names = shape_keys.shape_key_names(num_shape) + shape_keys.expression_key_names()
            values = np.concatenate([plan.betas[:num_shape], plan.expression])
            shape_keys.set_values(body.data, dict(zip(names, values.tolist(), strict=True)))
            arm_ob["_pixie_joint_state"] = values.astype(np.float32)
            if options.pose_correctives == "BAKED" and plan.pose_correctives is not None:
                shape_keys.set_baked_correctives(body, plan.pose_correctives)
            arm_ob.location = tuple(loc + shift)
            _apply_appearance(context, plan, body, options, report)
            md = dict(plan.metadata)
            md["pixie_pose_correctives"] = options.pose_correctives
            md["pixie_placement"] = "PHOTO" if photo is not None else "IN_PLACE"
            if photo is not None:
                md["pixie_transl"] = [float(v) for v in photo.transl[i]]
            arm_ob["pixie_role"] = "rig"
            _set_metadata(arm_ob, md)
            body["pixie_role"] = "body"
            for k in (
                "pixie_source_name",
                "pixie_package_sha256",
                "pixie_person_index",
                "pixie_format_version",
                "pixie_synthetic",
            ):
                body[k] = md[k]
            if plan.camera is not None:
                cams.append(
                    camera.create_camera(f"{plan.name}_camera", plan.camera, arm_ob, coll, image_path)
                )
            report.rigs.append(arm_ob)

        if photo is not None and options.add_camera:
            plan_c = replace(photo.camera, location=tuple(np.asarray(photo.camera.location) + shift))
            img = bpy.data.images.load(str(image_path), check_existing=True) if image_path else None
            cams.append(camera.create_perspective_camera(f"{prep.result.source_name}_camera", plan_c, coll, img))
            for arm_ob in report.rigs:
                arm_ob["pixie_camera"] = cams[-1]

        if cams and options.set_scene_camera and context.scene.camera is None:
            camera.use_camera(context.scene, cams[0])
        if options.world_lighting:
            lit = next((p for p in plans if p.light is not None), None)
            if lit is None:
                report.warnings.append("the result has no SH lighting; the world is unchanged")
            else:
                context.scene.world = world.create_sh_world(f"{lit.name}_light", lit.light)

        view_layer = context.view_layer
        for o in view_layer.objects:
            if o.select_get(view_layer=view_layer):
                o.select_set(False, view_layer=view_layer)
        for arm_ob in report.rigs:
            arm_ob.select_set(True, view_layer=view_layer)
        view_layer.objects.active = report.rigs[0]
    except BaseException:
        rollback_ids(snap)
        raise

    if prep.cache_dir is not None:
        try:
            template_cache.store_package(prep.package, prep.cache_dir)
        except (OSError, ValueError) as exc:
            report.warnings.append(f"model package not cached: {exc}")
    report.seconds = time.perf_counter() - t0
    return report


def _photo_layout(prep: PreparedImport, options: ImportOptions, origin: np.ndarray, report: BuildReport):
    """The "Place as in photo" layout of one result, or None (with a warning) without an image size."""
    from ..io.placement import photo_layout

    src = prep.result.source
    w, h = src.get("width"), src.get("height")
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        report.warnings.append("the header has no image size; placed side by side instead of as in the photo")
        return None
    plans = prep.plans
    return photo_layout(
        np.array([p.metadata["pixie_cam_image_px"] for p in plans]),
        np.array([p.joints_smplx[0] for p in plans]),
        np.array([p.min_z for p in plans]),
        w,
        h,
        origin,
        focal_px=options.focal_px,
        ground=options.place_on_ground,
    )


def _apply_appearance(context, plan: body_model.PersonPlan, body, options: ImportOptions,
                      report: BuildReport) -> None:
    """The avatar's material (texture, detail maps) and, for displacement, its subdivision."""
    tex, note = plan.texture(options.texture)
    if note:
        report.warnings.append(f"{plan.name}: {note}")
    with_detail = options.detail != "NONE" and plan.has_detail
    if options.detail != "NONE" and plan.detail_gate is False:
        conf = plan.metadata.get("pixie_head_confidence")
        why = f" (head confidence {conf:.2f})" if isinstance(conf, float) else ""
        report.warnings.append(f"{plan.name}: no facial detail: the face expert was not confident enough{why}")
    mat = materials.create_material(
        f"{plan.name}_skin",
        tex,
        plan.displacement_uv if with_detail else None,
        image_prefix=plan.name,
        normal_map_uv=plan.normal_map_uv if with_detail else None,
        store=options.image_storage,
    )
    body.data.materials.clear()
    body.data.materials.append(mat)
    if with_detail and options.detail == "SHADING":
        mat.displacement_method = "BUMP"  # no subdivision: Cycles shades the detail, moves nothing
    if with_detail and options.detail == "DISPLACE":
        for w in detail.enable_adaptive_displacement(context.scene, body):
            if w not in report.warnings:
                report.warnings.append(w)


def build_many(context, result_paths, options: ImportOptions | None = None) -> BuildReport:
    """Import several result files side by side, all or nothing: every file is validated before
    anything is built, and a failure while building removes what the earlier files built."""
    options = options or ImportOptions()
    t0 = time.perf_counter()
    preps = [prepare(p, options) for p in result_paths]
    total = BuildReport()
    snap = snapshot_ids()
    try:
        right = None
        for prep in preps:
            rep = build_from_prepared(context, prep, options, right_of=right)
            right = rep.right_edge
            total.rigs += rep.rigs
            total.warnings += rep.warnings
            total.template_built |= rep.template_built
    except BaseException:
        rollback_ids(snap)
        raise
    view_layer = context.view_layer
    for arm_ob in total.rigs:
        arm_ob.select_set(True, view_layer=view_layer)
    if total.rigs:
        view_layer.objects.active = total.rigs[0]
    total.right_edge = right or 0.0
    total.seconds = time.perf_counter() - t0
    return total


def build_avatars(context, result_path: str | os.PathLike, options: ImportOptions | None = None) -> list:
    """Import every person of a result file; returns the new armature objects (each parents its
    ``<name>_body`` mesh). Raises :class:`pixie_blender.io.schema.PixieFormatError` for bad files,
    before anything is built."""
    options = options or ImportOptions()
    prep = prepare(result_path, options)
    return build_from_prepared(context, prep, options).rigs


def avatar_parts(ob: bpy.types.Object | None):
    """(armature, body mesh) of the PIXIE avatar ``ob`` belongs to, or None."""
    if ob is None:
        return None
    arm = ob
    if ob.get("pixie_role") in ("body", "camera") and ob.parent is not None:
        arm = ob.parent
    if arm.type != "ARMATURE" or arm.get("pixie_role") != "rig":
        return None
    body = next((c for c in arm.children if c.get("pixie_role") == "body" and c.type == "MESH"), None)
    if body is None or body.data.shape_keys is None:
        return None
    return arm, body


def avatar_camera(arm: bpy.types.Object):
    """The avatar's photo camera: its own (in place) or the one of its photo or clip (as in photo)."""
    own = next((c for c in arm.children if c.get("pixie_role") == "camera" and c.type == "CAMERA"), None)
    if own is not None:
        return own
    shared = arm.get("pixie_camera")
    return shared if isinstance(shared, bpy.types.Object) and shared.type == "CAMERA" else None


def corrective_key(body: bpy.types.Object):
    return body.data.shape_keys.key_blocks.get(BAKED_CORRECTIVE_KEY) if body.data.shape_keys else None
