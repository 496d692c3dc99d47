"""Import a sequence result: one animated rig per track, one camera over the clip's frames.

    job = SequenceImport(bpy.context, "clip.pixie-seq.npz", SequenceImportOptions(smoothing=0.5))
    report = job.run()                    # blocking (scripts, tests, headless)
    # or, from a modal operator: for fraction, text in job.steps(): ...   (one step per timer tick)

Everything that can be wrong with the files is checked (numpy only) in the first step, before any
datablock exists; a failure or a cancel later removes every datablock the import created.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ..io import sequence_plan as planning
from ..io.smoothing import DEFAULT_STRENGTH
from . import animation, armature, camera, materials, shape_keys, template_cache
from .avatar import _import_collection, resolve_cache_dir, rollback_ids, snapshot_ids

SEQUENCE_CORRECTIVES = ("NONE", "LIVE")


@dataclass
class SequenceImportOptions:
    smoothing: float = DEFAULT_STRENGTH  #: 0 keys the raw per-frame results
    placement: str = "PHOTO"  #: "PHOTO": root translation keyed, one camera; "IN_PLACE": no translation
    add_camera: bool = True  #: "PHOTO": the clip's camera, the scene camera if there is none
    background: bool = True  #: the clip's frames (image sequence or movie) behind the camera
    place_on_ground: bool = True
    gap: float = 0.6  #: "IN_PLACE": metres between rigs
    location: tuple[float, float, float] | None = None  #: None: the 3D cursor
    frame_start: int = 1  #: Blender frame of the clip's first frame
    set_scene: bool = True  #: scene fps and frame range from the clip
    pose_correctives: str = "NONE"  #: "NONE" or "LIVE" (486 driven keys: exact, slower playback)
    use_cache: bool = True
    cache_dir: str | None = None
    num_shape_keys: int | None = None
    tracks: tuple[int, ...] | None = None  #: track ids to import (None: all)


@dataclass
class SequenceReport:
    rigs: list = field(default_factory=list)
    camera: object = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    keyed_frames: int = 0


class SequenceImport:
    """The import as a sequence of short steps (see the module docstring)."""

    def __init__(self, context, path: str | os.PathLike, options: SequenceImportOptions | None = None):
        self.context = context
        self.path = Path(path)
        self.options = options or SequenceImportOptions()
        self.report = SequenceReport()
        self._snap = None
        self._done = False

    def steps(self) -> Iterator[tuple[float, str]]:
        """Yield ``(fraction done, what is next)`` between steps; raises PixieFormatError for bad
        files before creating anything, and rolls back on any other failure."""
        t0 = time.perf_counter()
        opts = self.options
        if opts.pose_correctives not in SEQUENCE_CORRECTIVES:
            raise ValueError(f"pose_correctives must be one of {SEQUENCE_CORRECTIVES}")
        if not 0.0 <= opts.smoothing <= 1.0:
            raise ValueError("smoothing strength must be in [0, 1]")
        from ..io.sequence import find_sequence_package, read_sequence

        seq = read_sequence(self.path)
        cache_dir = resolve_cache_dir(opts)
        package = find_sequence_package(seq, [cache_dir] if cache_dir else [])
        small = package.load("v_template")
        origin = opts.location if opts.location is not None else tuple(self.context.scene.cursor.location)
        plan = planning.sequence_plan(
            seq,
            package,
            strength=opts.smoothing,
            placement_mode=opts.placement,
            origin=origin,
            ground=opts.place_on_ground,
            gap=opts.gap,
            frame_start=opts.frame_start,
            num_shape_keys=opts.num_shape_keys,
            tracks=opts.tracks,
            rest_foot_gap=planning.rest_foot_gap(small["v_template"], package.joints_template),
        )
        self.report.warnings += plan.warnings
        n = len(plan.tracks)
        yield 0.05, f"building {n} rig{'s' if n != 1 else ''}"

        self._snap = snapshot_ids()
        try:
            yield from self._build(plan, package, cache_dir)
        except BaseException:
            self.rollback()
            raise
        if cache_dir is not None:
            try:
                template_cache.store_package(package, cache_dir)
            except (OSError, ValueError) as exc:
                self.report.warnings.append(f"model package not cached: {exc}")
        self._done = True
        self.report.seconds = time.perf_counter() - t0
        yield 1.0, "done"

    def _build(self, plan: planning.SequencePlan, package, cache_dir) -> Iterator[tuple[float, str]]:
        ctx = self.context
        opts = self.options
        num_shape = package.num_betas if opts.num_shape_keys is None else min(opts.num_shape_keys, package.num_betas)
        armature.ensure_object_mode(ctx)
        coll = _import_collection(ctx, plan.sequence.source_name)
        src = template_cache.TemplateSource(
            ctx, package, num_shape=num_shape, live_correctives=opts.pose_correctives == "LIVE", cache_dir=cache_dir
        )
        pairs = src.instances(len(plan.tracks), coll)
        from ..io.body_model import bone_lengths

        for tp, (arm_ob, body) in zip(plan.tracks, pairs, strict=True):
            arm_ob.name = tp.name
            arm_ob.data.name = f"{tp.name}_rig"
            body.name = body.data.name = f"{tp.name}_body"
            body.data.shape_keys.name = f"{tp.name}_keys"
        armature.set_rest_joints(
            ctx, [(arm_ob, tp.bone_heads, bone_lengths()) for tp, (arm_ob, _b) in zip(plan.tracks, pairs, strict=True)]
        )
        yield 0.2, "keying"
        exp_names = shape_keys.expression_key_names()
        shape_names = shape_keys.shape_key_names(num_shape)
        for i, (tp, (arm_ob, body)) in enumerate(zip(plan.tracks, pairs, strict=True)):
            shape_keys.set_values(body.data, dict(zip(shape_names, tp.betas[:num_shape].tolist(), strict=True)))
            shape_keys.set_values(body.data, dict.fromkeys(exp_names, 0.0))
            animation.key_pose(arm_ob, tp.frames, tp.quaternions, tp.pelvis_location, name=f"{tp.name}_motion")
            animation.key_shape_values(
                body.data.shape_keys, tp.frames, exp_names, tp.expression, name=f"{tp.name}_expression"
            )
            arm_ob.location = tuple(tp.rig_location)
            # the rest joints follow the shape with a neutral expression (the expression is animated)
            arm_ob["_pixie_joint_state"] = np.concatenate([tp.betas[:num_shape], np.zeros(len(exp_names))]).astype(
                np.float32
            )
            arm_ob["pixie_animated_expression"] = True
            for k, v in tp.metadata.items():
                arm_ob[k] = v
            arm_ob["pixie_pose_correctives"] = opts.pose_correctives
            body["pixie_role"] = "body"
            for k in ("pixie_source_name", "pixie_package_sha256", "pixie_synthetic", "pixie_track_id"):
                body[k] = tp.metadata[k]
            mat = materials.create_material(f"{tp.name}_skin", None, None, image_prefix=tp.name)
            body.data.materials.clear()
            body.data.materials.append(mat)
            self.report.rigs.append(arm_ob)
            self.report.keyed_frames += len(tp.frames)
            yield 0.2 + 0.7 * (i + 1) / len(plan.tracks), f"keyed {tp.name}"

        if plan.camera is not None and opts.add_camera:
            bg = self._background(plan) if opts.background else None
            cam_ob = camera.create_perspective_camera(f"{plan.sequence.source_name}_camera", plan.camera, coll, bg)
            if bg is not None and plan.background["kind"] == "SEQUENCE":
                iu = cam_ob.data.background_images[0].image_user
                iu.frame_start = plan.frame_start
                iu.frame_duration = plan.background["count"]
                iu.frame_offset = plan.background["offset"]
                iu.use_auto_refresh = True
            self.report.camera = cam_ob
            for arm_ob in self.report.rigs:
                arm_ob["pixie_camera"] = cam_ob
            if ctx.scene.camera is None:
                camera.use_camera(ctx.scene, cam_ob)
        if opts.set_scene:
            scene = ctx.scene
            scene.render.fps = plan.fps
            scene.render.fps_base = plan.fps_base
            scene.frame_start = plan.frame_start
            scene.frame_end = max(plan.frame_end, plan.frame_start)
            scene.frame_set(plan.frame_start)
        view_layer = ctx.view_layer
        for o in view_layer.objects:
            if o.select_get(view_layer=view_layer):
                o.select_set(False, view_layer=view_layer)
        for arm_ob in self.report.rigs:
            arm_ob.select_set(True, view_layer=view_layer)
        view_layer.objects.active = self.report.rigs[0]

    def _background(self, plan: planning.SequencePlan):
        bg = plan.background
        if bg is None:
            return None
        try:
            if bg["kind"] == "MOVIE":
                clip = bpy.data.movieclips.load(bg["path"], check_existing=True)
                clip.frame_start = plan.frame_start - bg["offset"]
                return clip
            img = bpy.data.images.load(bg["path"], check_existing=True)
            img.source = "SEQUENCE"
            return img
        except RuntimeError as exc:  # a file Blender cannot read: import without the background
            self.report.warnings.append(f"background not loaded: {exc}")
            return None

    def rollback(self) -> None:
        """Remove everything this import created (failure or cancel)."""
        if self._snap is not None and not self._done:
            rollback_ids(self._snap)
            self.report.rigs.clear()
            self.report.camera = None

    def run(self) -> SequenceReport:
        for _ in self.steps():
            pass
        return self.report


def import_sequence(context, path, options: SequenceImportOptions | None = None) -> SequenceReport:
    """Blocking import of a sequence result; returns the report (``report.rigs``: the armatures)."""
    return SequenceImport(context, path, options).run()
