"""Synthetic clips: the synthetic SMPL-X body moving, for tests of the tracker, the sequence file,
the exports and (end to end) the sequence job. Nothing here is a reconstruction.

    from pixie_backend.sequence.synthetic_clip import make_clip
    clip = make_clip(smplx, "crossing", num_frames=60)   # smplx: a PixieSMPLX (synthetic body)
    clip.persons[0].full_pose        # (F, 55, 3, 3) ground truth, PIXIE frame
    clip.keypoints_2d[0]             # (F, 145, 2) through the clip's perspective camera
    clip.detections(k)               # what a face-driven detector would see in frame k
    paths = clip.render_frames(out_dir)        # PNG frames (flat-shaded triangles of the body)
    clip.write_video(out_dir / "clip.avi")     # the same frames as an MJPG video (OpenCV)
    arrays = clip.person_arrays(k, [0, 1])     # perfect per-person results, v1 layout

Scenarios (``make_clip(scenario=...)``):

* ``walk``: one person walking left to right, arms and legs swinging, jaw, fingers and expression
  moving.
* ``crossing``: two people walking towards each other; the farther one passes behind the nearer
  one and is hidden (not detected) while they overlap.
* ``turn_away``: two people side by side; the second turns its back to the camera for
  ``hidden_frames`` frames (default 10, from frame 20): its face, and so the face-driven detector,
  loses it, while its body stays in view.

The camera is level, about 1 m above the ground, with the default focal length (image diagonal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .placement import PerspectiveCamera, default_camera, project

#: Height of the (level) camera above the ground, metres.
CAMERA_HEIGHT = 1.0


@dataclass(frozen=True)
class ClipPerson:
    """Ground truth for one person (F frames, PIXIE/camera frame)."""

    betas: np.ndarray  #: (200,)
    expression: np.ndarray  #: (F, 50)
    full_pose: np.ndarray  #: (F, 55, 3, 3) relative rotations, root includes the 180° X flip
    transl: np.ndarray  #: (F, 3) camera-frame translation of the posed body
    face_visible: np.ndarray  #: (F,) bool: facing the camera (a face detector can see it)


@dataclass
class SyntheticClip:
    width: int
    height: int
    fps: float
    camera: PerspectiveCamera
    persons: list[ClipPerson]
    pelvis_rest: list[np.ndarray]  #: (F, 3) per person: rest pelvis J0(betas, expression of the frame)
    keypoints_2d: list[np.ndarray]  #: (F, 145, 2) per person
    vertices: list[np.ndarray]  #: (F, V, 3) per person, camera frame
    faces: np.ndarray  #: (Ft, 3) triangles
    boxes: list[np.ndarray]  #: (F, 4) silhouette box per person
    occluded: list[np.ndarray]  #: (F,) bool: mostly hidden behind a nearer person
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return self.persons[0].full_pose.shape[0]

    @property
    def timestamps(self) -> np.ndarray:
        return np.arange(self.num_frames) / self.fps

    def detected(self, frame: int, person: int) -> bool:
        """Whether a face-driven detector finds ``person`` in ``frame``."""
        return bool(self.persons[person].face_visible[frame] and not self.occluded[person][frame])

    def detections(self, frame: int, jitter_px: float = 0.0) -> list[tuple[int, np.ndarray]]:
        """(person, box) of every detected person, boxes optionally jittered (deterministic per
        frame)."""
        rng = np.random.default_rng(self.seed * 100003 + frame)
        out = []
        for p in range(len(self.persons)):
            if self.detected(frame, p):
                box = self.boxes[p][frame] + (rng.normal(scale=jitter_px, size=4) if jitter_px else 0.0)
                out.append((p, box))
        return out

    def cam_image_px(self, frame: int, person: int) -> np.ndarray:
        """PIXIE's weak-perspective camera that agrees with the perspective view at the pelvis
        (the inverse of ``placement.perspective_translation``)."""
        t = self.persons[person].transl[frame]
        j0 = self.pelvis_rest[person][frame]
        a = self.camera.focal_px / (t[2] + j0[2])
        return np.array([a, self.camera.cx + a * t[0], self.camera.cy + a * t[1]])

    def person_arrays(self, frame: int, persons: list[int], keypoint_noise_px: float = 0.0) -> dict[str, np.ndarray]:
        """Perfect per-person results of ``frame`` in the v1 result layout (what the networks would
        ideally return): parameters, both cameras, box, 2-D keypoints, rest joints."""
        rng = np.random.default_rng(self.seed * 7919 + frame)
        out: dict[str, list] = {
            k: []
            for k in (
                "betas",
                "expression",
                "full_pose",
                "cam",
                "cam_image_px",
                "bbox",
                "keypoints_2d",
                "joints_rest",
                "moderator_weights",
            )
        }
        for p in persons:
            gt = self.persons[p]
            a, bx, by = self.cam_image_px(frame, p)
            box = self.boxes[p][frame]
            side = int(1.1 * max(box[2] - box[0], box[3] - box[1]))
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            kp = self.keypoints_2d[p][frame]
            if keypoint_noise_px:
                kp = kp + rng.normal(scale=keypoint_noise_px, size=kp.shape)
            jr = np.zeros((55, 3))
            jr[0] = self.pelvis_rest[p][frame]
            out["betas"].append(gt.betas)
            out["expression"].append(gt.expression[frame])
            out["full_pose"].append(gt.full_pose[frame])
            out["cam"].append([2 * a / side, (bx - cx) / a, (by - cy) / a])
            out["cam_image_px"].append([a, bx, by])
            out["bbox"].append(box)
            out["keypoints_2d"].append(kp)
            out["joints_rest"].append(jr)
            out["moderator_weights"].append([[0.4, 0.6], [0.3, 0.7], [0.5, 0.5]])
        return {k: np.asarray(v, np.float32) for k, v in out.items()}

    # ------------------------------------------------------------------ pictures
    def render(self, frame: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB: a gradient background and each body as flat-shaded triangles (dense
        barycentric point samples with a z-buffer), nearer people over farther ones."""
        H, W = self.height, self.width
        yy, xx = np.mgrid[0:H, 0:W]
        img = np.empty((H, W, 3), np.uint8)
        img[..., 0] = 70 + (xx * 60 // max(W, 1))
        img[..., 1] = 80 + (yy * 50 // max(H, 1))
        img[..., 2] = 110
        zbuf = np.full((H, W), np.inf)
        palette = np.array([[230, 180, 150], [150, 190, 230], [170, 230, 160], [230, 220, 140]], np.float64)
        for p in range(len(self.persons)):
            tri = self.vertices[p][frame][self.faces]  # (Ft, 3, 3) camera frame
            n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
            shade = 0.3 + 0.7 * np.abs(n[:, 2])
            tri2 = project(tri, self.camera)
            edge = np.percentile(np.linalg.norm(tri2 - np.roll(tri2, 1, axis=1), axis=-1), 95)
            k = int(np.clip(np.ceil(edge / 1.5), 1, 8))
            i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
            keep = i + j <= k
            bary = np.stack([i[keep], j[keep], k - i[keep] - j[keep]], -1) / k  # (S, 3)
            uv = np.round(np.einsum("sk,fkd->fsd", bary, tri2)).astype(np.int64).reshape(-1, 2)
            z = np.einsum("sk,fk->fs", bary, tri[..., 2]).reshape(-1)
            color = np.repeat((palette[p % len(palette)][None] * shade[:, None]).astype(np.uint8), len(bary), 0)
            ok = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H) & (z > 0)
            order = np.argsort(-z[ok], kind="stable")  # far first: the nearest sample is written last
            uu, vv, zz, cc = uv[ok, 0][order], uv[ok, 1][order], z[ok][order], color[ok][order]
            nearer = zz < zbuf[vv, uu]
            zbuf[vv[nearer], uu[nearer]] = zz[nearer]
            img[vv[nearer], uu[nearer]] = cc[nearer]
        return img

    def render_frames(self, out_dir: str | Path, pattern: str = "frame_{:05d}.png") -> list[Path]:
        """Write every frame as a PNG (1-based numbers, as image sequences usually are)."""
        import cv2

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for k in range(self.num_frames):
            path = out / pattern.format(k + 1)
            if not cv2.imwrite(str(path), self.render(k)[..., ::-1]):
                raise OSError(f"could not write {path}")
            paths.append(path)
        return paths

    def write_video(self, path: str | Path) -> Path:
        """Write the frames as an MJPG ``.avi`` (decodable by OpenCV and PyAV)."""
        import cv2

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), self.fps, (self.width, self.height))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write {path}")
        try:
            for k in range(self.num_frames):
                writer.write(np.ascontiguousarray(self.render(k)[..., ::-1]))
        finally:
            writer.release()
        return path


# ----------------------------------------------------------------------------------------------
# motion


def _rot(axis: str, angle: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations about a coordinate axis."""
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    if axis == "x":
        m = [o, z, z, z, c, -s, z, s, c]
    elif axis == "y":
        m = [c, z, s, z, o, z, -s, z, c]
    else:
        m = [c, -s, z, s, c, z, z, z, o]
    return np.stack(m, axis=-1).reshape(*a.shape, 3, 3)


def walking_pose(t: np.ndarray, yaw: np.ndarray, phase: float = 0.0, rng: np.random.Generator | None = None):
    """Relative rotations (F, 55, 3, 3) of a walk cycle at times ``t`` (s): legs and arms swing,
    arms hang, jaw and fingers move; ``yaw`` (F,) turns the body about its vertical axis (0 faces the
    camera). The root includes PIXIE's 180° flip about X."""
    rng = rng or np.random.default_rng(0)
    n = len(t)
    R = np.broadcast_to(np.eye(3), (n, 55, 3, 3)).copy()
    phi = 2 * math.pi * 0.9 * t + phase
    R[:, 0] = _rot("x", np.full(n, math.pi)) @ _rot("y", yaw) @ _rot("x", 0.05 * np.sin(2 * phi))
    R[:, 1] = _rot("x", 0.45 * np.sin(phi))  # left hip
    R[:, 2] = _rot("x", -0.45 * np.sin(phi))  # right hip
    R[:, 4] = _rot("x", 0.5 * np.clip(np.sin(phi - 1.2), 0, None))  # knees bend backwards
    R[:, 5] = _rot("x", 0.5 * np.clip(-np.sin(phi - 1.2), 0, None))
    R[:, 3] = _rot("y", 0.1 * np.sin(phi))  # spine twist
    R[:, 16] = _rot("z", np.full(n, -1.2)) @ _rot("y", 0.35 * np.sin(phi))  # arms hang and swing
    R[:, 17] = _rot("z", np.full(n, 1.2)) @ _rot("y", 0.35 * np.sin(phi))
    R[:, 18] = _rot("y", -0.3 - 0.2 * np.sin(phi))  # elbows
    R[:, 19] = _rot("y", 0.3 - 0.2 * np.sin(phi))
    R[:, 15] = _rot("x", 0.1 * np.sin(0.5 * phi))  # head nods
    R[:, 22] = _rot("x", 0.12 * (1 + np.sin(2 * math.pi * 0.7 * t + phase)))  # jaw opens
    curl = 0.25 * (1 + np.sin(2 * math.pi * 0.5 * t + phase))
    for first in (25, 40):  # fingers curl
        sign = -1.0 if first == 25 else 1.0
        for k in range(first, first + 15):
            R[:, k] = _rot("z", sign * curl * rng.uniform(0.6, 1.0))
    return R


def make_clip(
    smplx,
    scenario: str = "walk",
    num_frames: int = 60,
    fps: float = 30.0,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    hidden_start: int = 20,
    hidden_frames: int = 10,
    depths: tuple[float, float] = (4.0, 6.0),
) -> SyntheticClip:
    """A synthetic clip (see the module docstring for the scenarios).

    Args:
        smplx: :class:`pixie_backend.body.smplx_layer.PixieSMPLX` (a synthetic body), on the CPU.
        size: (width, height) in pixels.
        hidden_start, hidden_frames: ``turn_away``: when and how long the second person turns away.
        depths: ``crossing``: distances of the two people from the camera (m).
    """
    rng = np.random.default_rng(seed)
    W, H = size
    cam = default_camera(W, H)
    t = np.arange(num_frames) / fps
    s = np.linspace(0.0, 1.0, num_frames)
    zeros = np.zeros(num_frames)
    if scenario == "walk":
        paths = [dict(x=-1.2 + 2.4 * s, z=zeros + 4.5, yaw=zeros + 0.35, phase=0.0)]
    elif scenario == "crossing":
        paths = [
            dict(x=-1.6 + 3.2 * s, z=zeros + depths[0], yaw=zeros + 0.3, phase=0.0),
            dict(x=1.6 - 3.2 * s, z=zeros + depths[1], yaw=zeros - 0.3, phase=1.7),
        ]
    elif scenario == "turn_away":
        turned = np.zeros(num_frames)
        a, b = hidden_start, hidden_start + hidden_frames
        turned[a:b] = math.pi
        paths = [
            dict(x=-0.9 + 0.2 * s, z=zeros + 4.5, yaw=zeros + 0.2, phase=0.0),
            dict(x=0.8 + 0.4 * s, z=zeros + 5.0, yaw=turned, phase=2.1),
        ]
    else:
        raise ValueError(f"unknown scenario {scenario!r} (walk, crossing, turn_away)")

    persons, pelvis_rest = [], []
    kps2d, verts_cam, boxes = [], [], []
    faces = smplx.faces.cpu().numpy()
    for p in paths:
        betas = rng.normal(scale=0.6, size=200) * (np.arange(200) < 10)
        expr = 0.8 * np.sin(2 * math.pi * rng.uniform(0.2, 0.8, size=50)[None] * t[:, None] + rng.uniform(0, 6, 50))
        expr *= np.where(np.arange(50) < 10, 1.0, 0.3)
        pose = walking_pose(t, p["yaw"], p["phase"], rng)
        with torch.no_grad():
            b = torch.tensor(np.broadcast_to(betas, (num_frames, 200)), dtype=torch.float32)
            e = torch.tensor(expr, dtype=torch.float32)
            out = smplx(b, e, torch.tensor(pose, dtype=torch.float32))
            j0 = smplx.rest_joints(b, e)[:, 0].numpy().astype(np.float64)  # (F, 3)
        # the camera is level, ``CAMERA_HEIGHT`` above the ground (camera y points down): the pelvis
        # follows the path, and the feet touch y = CAMERA_HEIGHT on average over the clip
        lowest = out.vertices[..., 1].max(dim=1).values.numpy().astype(np.float64)
        transl = np.stack(
            [p["x"] - j0[:, 0], np.full(num_frames, CAMERA_HEIGHT - lowest.mean()), p["z"] - j0[:, 2]], -1
        )
        verts = out.vertices.numpy().astype(np.float64) + transl[:, None]
        kp3 = out.keypoints.numpy().astype(np.float64) + transl[:, None]
        persons.append(ClipPerson(betas, expr, pose, transl, np.cos(p["yaw"]) > 0.3))
        pelvis_rest.append(j0)
        kps2d.append(project(kp3, cam))
        v2 = project(verts, cam)
        verts_cam.append(verts.astype(np.float32))
        boxes.append(np.concatenate([v2.min(axis=1), v2.max(axis=1)], axis=-1))
    occluded = []
    for i in range(len(paths)):
        occ = np.zeros(num_frames, bool)
        for j in range(len(paths)):
            if i == j:
                continue
            nearer = persons[j].transl[:, 2] + pelvis_rest[j][:, 2] < persons[i].transl[:, 2] + pelvis_rest[i][:, 2]
            occ |= nearer & (_covered(boxes[i], boxes[j]) > 0.5)
        occluded.append(occ)
    return SyntheticClip(W, H, fps, cam, persons, pelvis_rest, kps2d, verts_cam, faces, boxes, occluded, seed)


def _covered(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fraction of each box of ``a`` (F, 4) covered by the box of ``b`` (F, 4)."""
    lo = np.maximum(a[:, :2], b[:, :2])
    hi = np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    return inter / np.maximum(np.prod(a[:, 2:] - a[:, :2], axis=1), 1e-9)
