"""Placement in 3-D through one perspective camera ("Place as in photo"), numpy only.

PIXIE's weak-perspective camera ``u = a·x + bx, v = a·y + by`` (``cam_image_px``) becomes a
translation ``t`` in the frame of one pinhole camera (focal ``f`` pixels, principal point
``(cx, cy)``) by matching the two at the depth of the pelvis joint ``J0``:

    tz = f / a − J0z,   tx = (bx − cx) / a,   ty = (by − cy) / a

Unless known, ``f`` is the image diagonal ``√(W² + H²)`` and the principal point the image centre
``((W−1)/2, (H−1)/2)`` (``docs/sequence-format.md``, *Placement*). The backend has its own
implementation (``pixie_backend/sequence/placement.py``); a contract test keeps them equal.

Blender frames. The camera frame (PIXIE frame: x right, y down, z forward) maps to Blender's world
by :data:`CAMERA_TO_WORLD` = ``(x, y, z) → (x, z, −y)``: the camera looks along +Y with +Z up
(``rotation_euler = (90°, 0, 0)``), the people face it. With the rig's rest pose and bone frames
(``docs/addon.md``), a body whose camera-frame translation is ``t`` stands where the camera at
world location ``C`` sees it when

* the armature object is at ``C + W·t + M·(D − I)·J0`` (still images: the pose is on the bones), or
* the armature object is at ``C + M·(D − I)·J0`` and the ``pelvis`` pose bone's location is
  ``D·t`` (animation: the translation is keyed on the pelvis),

with ``W`` = :data:`CAMERA_TO_WORLD`, ``M`` the SMPL-X → Blender axis map and ``D = diag(1, −1, −1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .convert import SMPLX_TO_BLENDER, UPRIGHT_FIX

#: Camera frame (x right, y down, z forward) → Blender world (x right, y forward, z up).
CAMERA_TO_WORLD = SMPLX_TO_BLENDER @ UPRIGHT_FIX
#: Blender's default sensor width (mm); with ``sensor_fit = 'AUTO'`` it spans the longer image side.
SENSOR_MM = 36.0


def default_focal(width: int, height: int) -> float:
    """The assumed focal length in pixels: the image diagonal."""
    return math.hypot(width, height)


def perspective_translation(
    cam_image_px: np.ndarray, pelvis: np.ndarray, focal_px: float, cx: float, cy: float
) -> np.ndarray:
    """Camera-frame translation (..., 3) from ``cam_image_px`` (..., 3) and the rest pelvis
    ``J0`` (..., 3) of the same body."""
    c = np.asarray(cam_image_px, dtype=np.float64)
    j0 = np.asarray(pelvis, dtype=np.float64)
    a = c[..., 0]
    if (a <= 0).any():
        raise ValueError("cam_image_px scale must be positive")
    tx = (c[..., 1] - cx) / a
    ty = (c[..., 2] - cy) / a
    tz = focal_px / a - j0[..., 2]
    return np.stack([tx, ty, tz], axis=-1)


def rest_offset(pelvis: np.ndarray) -> np.ndarray:
    """``M·(D − I)·J0`` (..., 3): where the armature object stands relative to the camera-frame
    origin's image in the world, for a rest pelvis ``J0``."""
    j0 = np.asarray(pelvis, dtype=np.float64)
    return np.stack([np.zeros(j0.shape[:-1]), 2.0 * j0[..., 2], -2.0 * j0[..., 1]], axis=-1)


def camera_to_world(points: np.ndarray) -> np.ndarray:
    """Camera-frame points or vectors (..., 3) in Blender world axes (no camera location)."""
    p = np.asarray(points, dtype=np.float64)
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def still_rig_location(camera_location: np.ndarray, transl: np.ndarray, pelvis: np.ndarray) -> np.ndarray:
    """Armature object location (3,) of a posed still-image avatar seen through the camera at
    ``camera_location``."""
    return np.asarray(camera_location, dtype=np.float64) + camera_to_world(transl) + rest_offset(pelvis)


def pelvis_bone_location(transl: np.ndarray) -> np.ndarray:
    """``pelvis`` pose-bone location (..., 3) (bone-local, SMPL-X axes) for a camera-frame
    translation: ``D·t``."""
    t = np.asarray(transl, dtype=np.float64)
    return t * np.array([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class PerspectiveCameraPlan:
    """A Blender perspective camera reproducing a pinhole camera of ``resolution`` pixels."""

    lens_mm: float
    sensor_mm: float
    shift: tuple[float, float]
    resolution: tuple[int, int]
    location: tuple[float, float, float]
    rotation_euler: tuple[float, float, float]
    clip_end: float
    focal_px: float


def perspective_camera_plan(
    focal_px: float, cx: float, cy: float, width: int, height: int, location, far: float = 100.0
) -> PerspectiveCameraPlan:
    """The camera at world ``location`` looking along +Y (+Z up) with focal ``focal_px`` and
    principal point ``(cx, cy)`` (pixel centres): ``lens / sensor = f / max(W, H)`` with the sensor
    fitted to the longer side; an off-centre principal point becomes a lens shift."""
    side = float(max(width, height))
    shift_x = ((width - 1) / 2.0 - cx) / side
    shift_y = (cy - (height - 1) / 2.0) / side
    return PerspectiveCameraPlan(
        lens_mm=SENSOR_MM * focal_px / side,
        sensor_mm=SENSOR_MM,
        shift=(shift_x, shift_y),
        resolution=(int(width), int(height)),
        location=tuple(float(v) for v in location),
        rotation_euler=(math.pi / 2.0, 0.0, 0.0),
        clip_end=float(far),
        focal_px=float(focal_px),
    )


def group_camera_location(
    pelvis_offsets: np.ndarray, lowest_z: np.ndarray | float, origin, ground: bool = True
) -> np.ndarray:
    """Where to put the camera so that the group stands at ``origin`` (the 3D cursor).

    Args:
        pelvis_offsets: (N, 3) world offsets of the people's pelvises from the camera.
        lowest_z: world z offset of the group's lowest point from the camera.
        ground: the lowest point stands at the origin's height; else the pelvises' mean does.

    Returns:
        (3,): the people's mean pelvis is above ``origin`` (x, y), their feet on its height.
    """
    off = np.asarray(pelvis_offsets, dtype=np.float64).reshape(-1, 3)
    o = np.asarray(origin, dtype=np.float64)
    z = o[2] - (float(lowest_z) if ground else off[:, 2].mean())
    return np.array([o[0] - off[:, 0].mean(), o[1] - off[:, 1].mean(), z])


@dataclass(frozen=True)
class PhotoLayout:
    """Still image, "Place as in photo": one camera, every person where the photo shows them."""

    camera: PerspectiveCameraPlan
    rig_locations: np.ndarray  #: (P, 3) armature object locations
    transl: np.ndarray  #: (P, 3) camera-frame translations


def photo_layout(
    cam_image_px: np.ndarray,
    pelvis: np.ndarray,
    lowest_z: np.ndarray,
    width: int,
    height: int,
    origin,
    *,
    focal_px: float | None = None,
    ground: bool = True,
) -> PhotoLayout:
    """Place the P people of one image.

    Args:
        cam_image_px: (P, 3) each person's weak-perspective camera.
        pelvis: (P, 3) each person's rest pelvis ``J0`` (y-up SMPL-X frame).
        lowest_z: (P,) the lowest posed vertex of each avatar, armature-space z.
        width, height: the image size in pixels.
        origin: (3,) where the group stands (the 3D cursor).
        focal_px: the camera's focal length in pixels (default: the image diagonal).
    """
    f = default_focal(width, height) if focal_px is None else float(focal_px)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    t = perspective_translation(cam_image_px, pelvis, f, cx, cy)
    rel = camera_to_world(t) + rest_offset(pelvis)  # rig locations relative to the camera
    lowest = float(np.min(rel[:, 2] + np.asarray(lowest_z, dtype=np.float64)))
    cam_loc = group_camera_location(camera_to_world(t + np.asarray(pelvis)), lowest, origin, ground)
    far = float(np.max(t[:, 2])) * 2.0 + 10.0
    return PhotoLayout(perspective_camera_plan(f, cx, cy, width, height, cam_loc, far), cam_loc + rel, t)
