"""Animation plans: a sequence file → per-track arrays ready for bulk keying (numpy only).

A :class:`TrackPlan` holds one rig's fixed shape and rest joints and its keys: Blender frame
numbers, the 55 bone quaternions (WXYZ, sign-continuous, upright root), the ``pelvis`` bone
location (root translation) and the 50 expression values, only for the frames where the person was
reconstructed (missing frames are not keyed). Smoothing (``io/smoothing.py``) is applied here, at
import, so the file keeps the raw results and a re-import with another strength needs no
recomputation. Placement follows ``io/placement.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import convert, placement, smoothing
from .constants import JOINT_NAMES
from .schema import PackageData, PixieFormatError
from .sequence import SequenceData, TrackData

PLACEMENTS = ("PHOTO", "IN_PLACE")
_FEET = tuple(JOINT_NAMES.index(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot"))


@dataclass
class TrackPlan:
    name: str
    track: TrackData
    betas: np.ndarray  #: (K,) shape-key values
    joints_smplx: np.ndarray  #: (55, 3) rest joints of the fixed shape (zero expression), y-up
    bone_heads: np.ndarray  #: (55, 3) the same in Blender's frame
    frames: np.ndarray  #: (N,) Blender frame numbers of the keys
    quaternions: np.ndarray  #: (N, 55, 4) WXYZ, upright root, continuous
    pelvis_location: np.ndarray | None  #: (N, 3) ``pelvis`` pose-bone location, or None (in place)
    expression: np.ndarray  #: (N, 50)
    rig_location: np.ndarray  #: (3,) armature object location
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SequencePlan:
    sequence: SequenceData
    tracks: list[TrackPlan]
    frame_start: int
    frame_end: int
    fps: int
    fps_base: float
    camera: placement.PerspectiveCameraPlan | None
    background: dict[str, Any] | None  #: {"kind": "SEQUENCE"|"MOVIE", "path", "offset"} or None
    warnings: list[str] = field(default_factory=list)


def scene_fps(fps: float) -> tuple[int, float]:
    """Blender's ``(render.fps, render.fps_base)`` for a frame rate: 29.97 → (30, 1.001)."""
    n = max(1, round(fps))
    return n, n / fps


def posed_joints(rest: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Forward kinematics (N, 55, 3) of rest joints (55, 3) with relative rotations
    (N, 55, 3, 3), root about ``rest[0]``, no translation."""
    from .constants import PARENTS

    n = len(rotations)
    G = np.zeros((n, 55, 3, 3))
    P = np.zeros((n, 55, 3))
    for k in range(55):
        p = PARENTS[k]
        if p < 0:
            G[:, k], P[:, k] = rotations[:, k], rest[k]
        else:
            G[:, k] = G[:, p] @ rotations[:, k]
            P[:, k] = P[:, p] + G[:, p] @ (rest[k] - rest[p])
    return P


def _background(seq: SequenceData) -> tuple[dict | None, str | None]:
    """How to show the clip's frames behind the camera: an image sequence (consecutively numbered
    files) or a movie clip; or why not."""
    video = seq.find_video()
    if video is not None:
        step = np.diff(seq.frame_index)
        if len(step) and (step != 1).any():
            return None, "the sequence skips video frames; the movie is not shown as background"
        return {"kind": "MOVIE", "path": str(video), "offset": int(seq.frame_index[0])}, None
    if seq.source.get("kind") == "video":
        return None, f"video {seq.source.get('path')!r} not found; no background"
    frames = seq.find_frames()
    if frames is None:
        return (None, "the clip's frames were not found; no background") if seq.frame_paths else (None, None)
    parsed = [re.match(r"^(.*?)(\d+)$", p.stem) for p in frames]
    if (
        any(m is None for m in parsed)
        or len({(m.group(1), p.suffix, p.parent) for m, p in zip(parsed, frames, strict=True)}) != 1
    ):
        return None, "the frame files are not one numbered image sequence; no background"
    numbers = np.array([int(m.group(2)) for m in parsed])
    if (np.diff(numbers) != 1).any():
        return None, "the frame files are not consecutively numbered; no background"
    return {"kind": "SEQUENCE", "path": str(frames[0]), "offset": int(numbers[0]) - 1, "count": len(frames)}, None


def sequence_plan(
    seq: SequenceData,
    package: PackageData,
    *,
    strength: float = smoothing.DEFAULT_STRENGTH,
    placement_mode: str = "PHOTO",
    origin=(0.0, 0.0, 0.0),
    ground: bool = True,
    gap: float = 0.6,
    frame_start: int = 1,
    num_shape_keys: int | None = None,
    tracks: tuple[int, ...] | None = None,
    rest_foot_gap: float = 0.0,
) -> SequencePlan:
    """Plan the rigs of ``seq`` (all tracks, or the ``tracks`` ids).

    Args:
        strength: smoothing strength in [0, 1]; 0 keys the raw per-frame results.
        placement_mode: "PHOTO" (translations keyed on the pelvis, one camera over the frames) or
            "IN_PLACE" (no translation, rigs side by side ``gap`` apart).
        origin: where the group stands (the 3D cursor).
        ground: the feet stand on the origin's height.
        frame_start: the Blender frame of the clip's first frame.
        rest_foot_gap: height of the sole below the lowest foot joint in the rest pose (metres).
    """
    if placement_mode not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}")
    chosen = [t for t in seq.tracks if tracks is None or t.id in set(tracks)]
    if not chosen:
        raise PixieFormatError(f"{seq.path.name}: none of the tracks {tracks} is in the file")
    K = package.num_betas if num_shape_keys is None else min(num_shape_keys, package.num_betas)
    cam = seq.camera
    warnings: list[str] = []
    plans: list[TrackPlan] = []
    pelvis_world, lowest = [], []
    multi = len(seq.tracks) > 1
    for track in chosen:
        nb = track.betas.shape[0]
        if nb > package.num_betas:
            raise PixieFormatError(f"{seq.path.name}: {nb} betas but the model package has {package.num_betas}")
        betas = np.zeros(K)
        betas[: min(nb, K)] = track.betas[:K]
        J = convert.shaped_joints(
            package.joints_template, package.joints_shapedirs, package.joints_exprdirs, track.betas, np.zeros(50)
        )
        times = track.times
        rots = np.asarray(track.full_pose, dtype=np.float64).copy()
        rots[:, 0] = convert.UPRIGHT_FIX @ rots[:, 0]
        quats = smoothing.continuous_quaternions(convert.rotmat_to_quat_wxyz(rots))
        expr = np.asarray(track.expression, dtype=np.float64)
        pelvis_cam = track.pelvis_camera()
        if strength > 0 and len(times) > 1:
            quats = smoothing.smooth_quaternions(quats, times, strength)
            expr = smoothing.smooth_vectors(expr, times, strength, "expression")
            pelvis_cam = smoothing.smooth_vectors(pelvis_cam, times, strength, "translation")
        transl = pelvis_cam - J[0]  # the rig's own (fixed-shape, neutral-expression) pelvis
        name = f"{seq.source_name}_track{track.id}" if multi else seq.source_name
        md = {
            "pixie_role": "rig",
            "pixie_sequence_file": str(seq.path.resolve()),
            "pixie_track_id": int(track.id),
            "pixie_source_name": seq.source_name,
            "pixie_package_sha256": package.content_sha256,
            "pixie_synthetic": bool(seq.synthetic or package.synthetic),
            "pixie_smoothing": float(strength),
            "pixie_placement": placement_mode,
            "pixie_format_version": str(seq.header.get("version")),
            "pixie_num_keyed_frames": int(len(times)),
            "pixie_missing_frames": [int(f) + frame_start for f in track.missing_frames()],
        }
        plans.append(
            TrackPlan(
                name=name,
                track=track,
                betas=betas,
                joints_smplx=J,
                bone_heads=convert.smplx_to_blender(J),
                frames=np.asarray(track.frames, dtype=np.int64) + frame_start,
                quaternions=quats,
                pelvis_location=placement.pelvis_bone_location(transl) if placement_mode == "PHOTO" else None,
                expression=expr,
                rig_location=np.zeros(3),
                metadata=md,
            )
        )
        if placement_mode == "PHOTO":
            pelvis_world.append(placement.camera_to_world(pelvis_cam))
            # world z of the lowest foot joint per frame, relative to the camera
            feet = posed_joints(J, convert.quat_wxyz_to_rotmat(quats))[:, list(_FEET)]  # upright, about J0
            feet_world_z = (feet[..., 1] - J[0, 1])[:, :] + placement.camera_to_world(pelvis_cam)[:, None, 2]
            lowest.append(np.percentile(feet_world_z.min(axis=1), 5) - rest_foot_gap)

    camera_plan = None
    if placement_mode == "PHOTO":
        allp = np.concatenate(pelvis_world)
        cam_loc = placement.group_camera_location(allp, min(lowest), origin, ground)
        far = float(np.max(allp[:, 1])) * 2.0 + 10.0
        camera_plan = placement.perspective_camera_plan(
            cam.focal_px, cam.cx, cam.cy, cam.width, cam.height, cam_loc, far
        )
        for p in plans:
            p.rig_location = cam_loc + placement.rest_offset(p.joints_smplx[0])
    else:
        o = np.asarray(origin, dtype=np.float64)
        x = 0.0
        for p in plans:
            p.rig_location = o + np.array([x - p.bone_heads[0, 0], 0.0, 0.0])
            if ground:
                feet = posed_joints(p.joints_smplx, convert.quat_wxyz_to_rotmat(p.quaternions))[:, list(_FEET)]
                p.rig_location[2] = o[2] - (np.percentile(feet[..., 1].min(axis=1), 5) - rest_foot_gap)
            x += gap
    for p in plans:
        big = np.abs(p.expression).max(initial=0.0)
        if big > 10.0:
            warnings.append(f"{p.name}: expression values up to {big:.1f} exceed Blender's ±10 shape-key limit")
    background, why = _background(seq)
    if why:
        warnings.append(why)
    fps, fps_base = scene_fps(seq.fps)
    return SequencePlan(
        sequence=seq,
        tracks=plans,
        frame_start=frame_start,
        frame_end=frame_start + seq.num_frames - 1,
        fps=fps,
        fps_base=fps_base,
        camera=camera_plan,
        background=background,
        warnings=warnings,
    )


def rest_foot_gap(v_template: np.ndarray, joints_template: np.ndarray) -> float:
    """How far the template's soles are below its lowest foot joint (y-up), metres."""
    v = np.asarray(v_template, dtype=np.float64)
    j = np.asarray(joints_template, dtype=np.float64)
    return float(j[list(_FEET), 1].min() - v[:, 1].min())
