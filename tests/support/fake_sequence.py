"""Synthetic sequence result files for the add-on tests (numpy only, no torch, no licensed data).

Writes ``<stem>.pixie-seq.npz`` exactly as ``docs/sequence-format.md`` (format v1) describes,
independently of the backend's writer, with the model package of ``tests/support/fake_result.py``
and, optionally, the clip's frames as PNG files (``<stem>/frame_00001.png`` …).

    from tests.support.fake_sequence import make_sequence
    fx = make_sequence(tmp_path, num_tracks=2, num_frames=30, missing={1: range(10, 15)})
    fx.path, fx.package_path, fx.frame_paths, fx.rows[track]["full_pose"]
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixie_blender.io.constants import JOINT_NAMES
from tests.support.fake_result import (
    PARENTS,
    axis_angle_to_matrix,
    content_sha256,
    load_body_model,
    package_arrays,
    write_package,
    write_png,
)


def posed_joints(J: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Forward kinematics of the 55 joints only: rest joints J (55, 3), relative rotations
    (N, 55, 3, 3) → (N, 55, 3), root about J[0], no translation."""
    n = len(R)
    G = np.zeros((n, 55, 3, 3))
    P = np.zeros((n, 55, 3))
    for k in range(55):
        p = int(PARENTS[k])
        if p < 0:
            G[:, k] = R[:, k]
            P[:, k] = J[k]
        else:
            G[:, k] = G[:, p] @ R[:, k]
            P[:, k] = P[:, p] + np.einsum("nij,j->ni", G[:, p], J[k] - J[p])
    return P


def motion(num_frames: int, fps: float, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Smooth relative rotations (N, 55, 3, 3): every joint swings sinusoidally about a random axis;
    the root carries PIXIE's 180° flip about X."""
    t = np.arange(num_frames) / fps
    amp = rng.uniform(0.05, 0.4, size=(55, 1)) * scale
    amp[0] = 0.2 * scale
    freq = rng.uniform(0.2, 1.2, size=(55, 1))
    phase = rng.uniform(0, 2 * math.pi, size=(55, 1))
    axis = rng.normal(size=(55, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = amp * np.sin(2 * math.pi * freq * t[None] + phase)  # (55, N)
    aa = angle.T[..., None] * axis[None]  # (N, 55, 3)
    R = axis_angle_to_matrix(aa)
    R[:, 0] = axis_angle_to_matrix(np.array([math.pi, 0.0, 0.0])) @ R[:, 0]
    return R


@dataclass
class FakeSequence:
    path: Path
    package_path: Path
    frame_paths: list[Path] | None
    header: dict[str, Any]
    arrays: dict[str, np.ndarray]
    package: dict[str, np.ndarray]
    rows: list[dict[str, np.ndarray]] = field(default_factory=list)  #: per track: frames + per-row arrays


def make_sequence(
    out_dir: Path,
    *,
    variant: str = "small",
    num_tracks: int = 2,
    num_frames: int = 30,
    fps: float = 30.0,
    missing: dict[int, Any] | None = None,
    image_size: tuple[int, int] = (320, 240),
    with_frames: bool = True,
    stem: str = "clip",
    seed: int = 0,
    body=None,
    depth: float = 4.0,
) -> FakeSequence:
    """Write ``<stem>.pixie-seq.npz`` (+ package, + frames) with ``num_tracks`` people moving over
    ``num_frames`` frames; ``missing`` maps a track to the frame positions where it has no row."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    body = body if body is not None else load_body_model(variant)
    pkg = package_arrays(body)
    package_path = write_package(pkg, out_dir)
    rng = np.random.default_rng(seed)
    W, H = image_size
    f = math.hypot(W, H)
    cx, cy = (W - 1) / 2, (H - 1) / 2
    missing = {k: set(int(i) for i in v) for k, v in (missing or {}).items()}
    J_t = pkg["joints_template"].astype(np.float64)
    J_s = pkg["joints_shapedirs"].astype(np.float64)
    J_e = pkg["joints_exprdirs"].astype(np.float64)

    rows = []
    for k in range(num_tracks):
        frames = np.array([i for i in range(num_frames) if i not in missing.get(k, set())])
        n = len(frames)
        shape = rng.normal(size=200) * np.where(np.arange(200) < 10, 0.8, 0.1)
        betas = shape[None] + rng.normal(scale=0.05, size=(n, 200))  # per-frame estimates scatter
        t = frames / fps
        expr = 1.2 * np.sin(2 * math.pi * rng.uniform(0.2, 1.0, 50)[None] * t[:, None] + rng.uniform(0, 6, 50))
        R = motion(num_frames, fps, rng)[frames]
        pelvis = np.array([J_t[0] + J_s[0] @ b + J_e[0] @ e for b, e in zip(betas, expr, strict=True)])
        # the pelvis walks sideways in front of the camera
        x = -0.8 + 1.6 * k / max(num_tracks - 1, 1) + 0.3 * np.sin(t)
        target = np.stack([x, 0.1 + 0.05 * np.cos(2 * t), depth + 0.5 * k + 0.2 * np.sin(t)], -1)
        transl = target - pelvis
        a = f / (transl[:, 2] + pelvis[:, 2])
        cam_px = np.stack([a, cx + a * transl[:, 0], cy + a * transl[:, 1]], -1)
        joints = np.stack(
            [posed_joints(J_t + J_s @ b + J_e @ e, r[None])[0] for b, e, r in zip(betas, expr, R, strict=True)]
        )
        kp = np.concatenate([joints, np.repeat(joints[:, :1], 90, axis=1)], axis=1)  # 145 rows
        kp2 = np.stack([a[:, None] * kp[..., 0] + cam_px[:, 1:2], a[:, None] * kp[..., 1] + cam_px[:, 2:3]], -1)
        lo, hi = kp2.min(axis=1), kp2.max(axis=1)
        side = 1.1 * (hi - lo).max(axis=1)
        ctr = (lo + hi) / 2
        rows.append(
            {
                "frames": frames,
                "betas": betas,
                "expression": expr,
                "full_pose": R,
                "cam": np.stack([2 * a / side, (cam_px[:, 1] - ctr[:, 0]) / a, (cam_px[:, 2] - ctr[:, 1]) / a], -1),
                "cam_image_px": cam_px,
                "transl": transl,
                "pelvis_rest": pelvis,
                "bbox": np.concatenate([lo, hi], axis=1),
                "box_source": np.where(rng.uniform(size=n) < 0.2, 1, 0),
                "keypoints_2d": kp2,
                "moderator_weights": np.tile([[0.4, 0.6], [0.3, 0.7], [0.5, 0.5]], (n, 1, 1)),
                "track_betas": np.median(betas, axis=0),
            }
        )

    f32 = np.float32
    arrays: dict[str, np.ndarray] = {
        "frame_index": np.arange(num_frames, dtype=np.int32),
        "timestamps": np.arange(num_frames) / fps,
        "row_track": np.concatenate([np.full(len(r["frames"]), k) for k, r in enumerate(rows)]).astype(np.int32),
        "row_frame": np.concatenate([r["frames"] for r in rows]).astype(np.int32),
        "track_id": (np.arange(num_tracks) * 3 + 2).astype(np.int32),  # ids need not be 0..T−1
        "track_betas": np.stack([r["track_betas"] for r in rows]).astype(f32),
    }
    for name in (
        "betas",
        "expression",
        "full_pose",
        "cam",
        "cam_image_px",
        "transl",
        "pelvis_rest",
        "bbox",
        "keypoints_2d",
        "moderator_weights",
    ):
        arrays[name] = np.concatenate([r[name] for r in rows]).astype(f32)
    arrays["box_source"] = np.concatenate([r["box_source"] for r in rows]).astype(np.int8)
    present = np.zeros(num_frames, bool)
    present[arrays["row_frame"]] = True
    arrays["frame_status"] = np.where(present, 0, 1).astype(np.int8)

    frame_paths = None
    if with_frames:
        folder = out_dir / stem
        folder.mkdir(exist_ok=True)
        frame_paths = []
        for i in range(num_frames):
            img = np.zeros((H, W, 3), np.uint8)
            img[..., 0] = 40 + 6 * i % 200
            img[..., 1] = np.linspace(30, 200, W, dtype=np.uint8)[None]
            img[..., 2] = 90
            for r in rows:
                sel = np.flatnonzero(r["frames"] == i)
                for u, v in np.round(r["keypoints_2d"][sel[0], :55]).astype(int) if len(sel) else []:
                    img[max(v - 1, 0) : v + 2, max(u - 1, 0) : u + 2] = (255, 230, 40)
            frame_paths.append(write_png(folder / f"frame_{i + 1:05d}.png", img))
        arrays["frame_paths"] = np.array([str(p) for p in frame_paths])

    header = {
        "format": "pixie-sequence",
        "version": 1,
        "created": "2026-01-01T00:00:00+00:00",
        "producer": {"name": "fake_sequence", "version": "0"},
        "synthetic": True,
        "source": {
            "kind": "frames",
            "path": str(out_dir / stem),
            "name": stem,
            "width": W,
            "height": H,
            "sha256": None,
        },
        "fps": fps,
        "num_frames": num_frames,
        "num_tracks": num_tracks,
        "num_rows": int(len(arrays["row_track"])),
        "camera": {
            "model": "pinhole",
            "focal_px": f,
            "principal_point": [cx, cy],
            "width": W,
            "height": H,
            "focal_source": "diagonal",
        },
        "model": {
            "checkpoint_sha256": hashlib.sha256(b"random-weights").hexdigest(),
            "smplx_sha256": hashlib.sha256(b"synthetic-smplx").hexdigest(),
            "package": {"file": package_path.name, "sha256": content_sha256(pkg)},
        },
        "joint_names": list(JOINT_NAMES),
        "conventions": {
            "frame": "pixie",
            "rotation": "matrix_column_vectors_relative",
            "units": "m",
            "hand_mean": "flat",
            "camera": "opencv",
        },
        "settings": {},
        "tracker": {},
        "frame_messages": {},
        "smoothing": {"filter": "one-euro-zero-phase", "default_strength": 0.5},
    }
    path = out_dir / f"{stem}.pixie-seq.npz"
    np.savez(path, header=np.array(json.dumps(header)), **arrays)
    return FakeSequence(path, package_path, frame_paths, header, arrays, pkg, rows)


def rewrite_sequence(
    src: Path, dst: Path, *, header_update: dict | None = None, drop: tuple[str, ...] = (), replace: dict | None = None
) -> Path:
    """Copy a sequence file with a modified header or arrays (bad-file tests)."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays.pop("header")[()]))
    header.update(header_update or {})
    for k in drop:
        arrays.pop(k, None)
    arrays.update(replace or {})
    np.savez(dst, header=np.array(json.dumps(header)), **arrays)
    return Path(dst)
