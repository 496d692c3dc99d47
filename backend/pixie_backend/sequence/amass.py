"""AMASS-style SMPL-X animation files, one per track.

The keys the official SMPL-X Blender add-on reads (``OP_LoadAvatar``: ``poses`` (N, 165) axis-angle
in the 55-joint order, ``trans`` (N, 3), ``betas``, ``gender`` as a unicode string,
``mocap_frame_rate``), plus, for other tools, ``surface_model_type = "smplx"``, the split pose keys
(``root_orient``, ``pose_body``, ``pose_hand``, ``pose_jaw``, ``pose_eye``) and ``expression``.

Conventions (``docs/sequence-format.md``, *AMASS export*):

* ``smplx.SMPLX(..., use_pca=False, flat_hand_mean=True, num_betas=B, num_expression_coeffs=50)``
  with these parameters gives the body; poses are the actual relative rotations (flat hand mean).
* World frame as in AMASS, **z up**: x right, y forward (the camera's viewing direction), z up,
  the clip's camera at the origin, assumed level. So the official add-on's default "AMASS" format
  shows the body upright.
* One row per clip frame from the track's first to its last frame, at ``mocap_frame_rate``;
  frames where the person was missing are interpolated (slerp, linear) and flagged in ``present``.
* Smoothed with the zero-phase One-Euro filter of :mod:`.smoothing` (strength 0 writes the raw
  per-frame results).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..export.result_file import atomic_savez
from . import smoothing

#: Camera frame (x right, y down, z forward) → AMASS world (x right, y forward, z up).
WORLD_FROM_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _quat_wxyz(rotmats: np.ndarray) -> np.ndarray:
    shape = rotmats.shape[:-2]
    q = Rotation.from_matrix(rotmats.reshape(-1, 3, 3).astype(np.float64)).as_quat()  # xyzw
    return q[:, [3, 0, 1, 2]].reshape(*shape, 4)


def track_rows(arrays: Mapping[str, np.ndarray], track: int) -> dict[str, np.ndarray]:
    """The rows of track position ``track`` (0..T−1) of a sequence file's arrays, frame order."""
    sel = np.flatnonzero(np.asarray(arrays["row_track"]) == track)
    if len(sel) == 0:
        raise ValueError(f"track {track} has no rows")
    out = {k: np.asarray(arrays[k])[sel] for k in ("row_frame", "full_pose", "expression", "transl", "pelvis_rest")}
    out["frames"] = out.pop("row_frame").astype(np.int64)
    out["times"] = np.asarray(arrays["timestamps"], np.float64)[out["frames"]]
    out["betas"] = np.asarray(arrays["track_betas"])[track].astype(np.float64)
    return out


def track_to_amass(
    header: Mapping,
    arrays: Mapping[str, np.ndarray],
    track: int,
    joints_template: np.ndarray,
    joints_shapedirs: np.ndarray,
    joints_exprdirs: np.ndarray,
    strength: float = smoothing.DEFAULT_STRENGTH,
    gender: str = "neutral",
) -> dict[str, np.ndarray]:
    """The AMASS-style arrays of one track of a sequence file.

    Args:
        header, arrays: a sequence file (``sequence_file.read_sequence_arrays``).
        track: track position (0..T−1).
        joints_template, joints_shapedirs, joints_exprdirs: the model package's joint regressor
            ((55, 3), (55, 3, B), (55, 3, 50)), for the rest pelvis of the track's fixed shape
            (``trans`` is SMPL-X's translation, applied after the root turns about the pelvis).
        strength: smoothing strength in [0, 1]; 0 writes raw results.
    """
    rows = track_rows(arrays, track)
    frames, times = rows["frames"], rows["times"]
    betas = rows["betas"]
    jt, js, je = (np.asarray(a, np.float64) for a in (joints_template, joints_shapedirs, joints_exprdirs))
    # the camera-frame pelvis does not depend on the shape; rotations as continuous quaternions
    pelvis_cam = rows["pelvis_rest"].astype(np.float64) + rows["transl"].astype(np.float64)
    quats = smoothing.continuous_quaternions(_quat_wxyz(rows["full_pose"]))
    expr = rows["expression"].astype(np.float64)
    if strength > 0:
        quats = smoothing.smooth_quaternions(quats, times, strength)
        pelvis_cam = smoothing.smooth_vectors(pelvis_cam, times, strength, "translation")
        expr = smoothing.smooth_vectors(expr, times, strength, "expression")
    # every clip frame from the first to the last row, missing ones interpolated
    span = np.arange(frames[0], frames[-1] + 1)
    span_times = np.asarray(arrays["timestamps"], np.float64)[span]
    quats, pelvis_cam = smoothing.resample(times, span_times, quats, pelvis_cam)
    _, expr = smoothing.resample(times, span_times, None, expr)
    n = len(span)
    rot = Rotation.from_quat(quats.reshape(-1, 4)[:, [1, 2, 3, 0]]).as_matrix().reshape(n, 55, 3, 3)
    rot[:, 0] = WORLD_FROM_CAMERA @ rot[:, 0]
    aa = Rotation.from_matrix(rot.reshape(-1, 3, 3)).as_rotvec().reshape(n, 55, 3)
    pelvis_rest = jt[0] + js[0, :, : len(betas)] @ betas + expr @ je[0].T  # (n, 3)
    trans = pelvis_cam @ WORLD_FROM_CAMERA.T - pelvis_rest
    poses = aa.reshape(n, 165)
    cam = header["camera"]
    return {
        "poses": poses,
        "trans": trans,
        "betas": betas,
        "num_betas": np.array(len(betas)),
        "gender": np.array(gender),
        "mocap_frame_rate": np.array(float(header["fps"])),
        "mocap_time_length": np.array(n / float(header["fps"])),
        "surface_model_type": np.array("smplx"),
        "root_orient": poses[:, :3],
        "pose_body": poses[:, 3:66],
        "pose_jaw": poses[:, 66:69],
        "pose_eye": poses[:, 69:75],
        "pose_hand": poses[:, 75:165],
        "expression": expr,
        "num_expression": np.array(expr.shape[1]),
        "present": np.isin(span, frames),
        "frame_index": np.asarray(arrays["frame_index"])[span].astype(np.int32),
        "track_id": np.array(int(np.asarray(arrays["track_id"])[track])),
        "smoothing_strength": np.array(float(strength)),
        "camera_intrinsics": np.array(
            [
                [cam["focal_px"], 0, cam["principal_point"][0]],
                [0, cam["focal_px"], cam["principal_point"][1]],
                [0, 0, 1],
            ],
            dtype=np.float64,
        ),
        "world_from_camera": WORLD_FROM_CAMERA.copy(),
    }


def write_amass(path: str | os.PathLike, amass: Mapping[str, np.ndarray]) -> Path:
    """Write an AMASS-style ``.npz`` atomically (loads with ``allow_pickle=False``)."""
    path = Path(path)
    atomic_savez(path, dict(amass))
    return path


def export_sequence_amass(
    sequence_path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    package_path: str | os.PathLike | None = None,
    strength: float = smoothing.DEFAULT_STRENGTH,
) -> list[Path]:
    """Write ``<clip>_track<id>.amass.npz`` for every track of a sequence file.

    Args:
        package_path: the model package (default: the one the header names, next to the file).
        out_dir: default: next to the sequence file.
    """
    from .sequence_file import SEQUENCE_SUFFIX, read_sequence_arrays

    seq = Path(sequence_path)
    header, arrays = read_sequence_arrays(seq)
    pkg = Path(package_path) if package_path else seq.parent / header["model"]["package"]["file"]
    with np.load(pkg, allow_pickle=False) as z:
        joints = (z["joints_template"], z["joints_shapedirs"], z["joints_exprdirs"])
    out = Path(out_dir) if out_dir else seq.parent
    stem = seq.name[: -len(SEQUENCE_SUFFIX)] if seq.name.endswith(SEQUENCE_SUFFIX) else seq.stem
    paths = []
    for k, tid in enumerate(np.asarray(arrays["track_id"]).tolist()):
        amass = track_to_amass(header, arrays, k, *joints, strength=strength)
        paths.append(write_amass(out / f"{stem}_track{tid}.amass.npz", amass))
    return paths
