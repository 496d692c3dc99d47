"""Placing people in 3-D: PIXIE's weak-perspective camera → one perspective camera per image or clip.

PIXIE predicts an orthographic camera per person: ``u = a·x + bx``, ``v = a·y + by`` for a
model-frame point (``cam_image_px``, image pixels). Seen through a pinhole camera with focal length
``f`` (pixels) and principal point ``(cx, cy)``, a body translated by ``t`` projects to
``u = f·(x + tx)/(z + tz) + cx``. Matching the two at the depth of the pelvis joint ``J0`` (the
point the root rotates about) gives

    tz = f / a − J0z,   tx = (bx − cx) / a,   ty = (by − cy) / a

so the scale gives the depth, and all people of an image share one camera. The focal length is not
observable from one weak-perspective prediction; unless the caller knows it, it is assumed to be the
image diagonal, ``f = √(W² + H²)`` (a ≈ 53° diagonal field of view, the assumption of CLIFF,
Li et al., ECCV 2022), with the principal point at the image centre ``((W−1)/2, (H−1)/2)`` (pixel
centres). Frame: the PIXIE frame is the camera frame (x right, y down, z forward, OpenCV).

Pure numpy; the add-on has its own implementation (``pixie_blender/io/placement.py``), kept equal
by ``tests/contract/test_sequence_contract.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PerspectiveCamera:
    """A pinhole camera in image pixels (origin at the centre of the top-left pixel)."""

    focal_px: float
    cx: float
    cy: float
    width: int
    height: int
    focal_source: str = "diagonal"  #: "diagonal" (the default assumption) or "given"

    def to_header(self) -> dict:
        return {
            "model": "pinhole",
            "focal_px": float(self.focal_px),
            "principal_point": [float(self.cx), float(self.cy)],
            "width": int(self.width),
            "height": int(self.height),
            "focal_source": self.focal_source,
        }

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) intrinsics ``K``."""
        return np.array([[self.focal_px, 0.0, self.cx], [0.0, self.focal_px, self.cy], [0.0, 0.0, 1.0]])


def default_camera(width: int, height: int, focal_px: float | None = None) -> PerspectiveCamera:
    """The clip's camera: ``focal_px`` if known, else the image diagonal; principal point at the
    image centre."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if focal_px is not None and not focal_px > 0:
        raise ValueError(f"focal length must be positive, got {focal_px}")
    f = float(focal_px) if focal_px is not None else math.hypot(width, height)
    return PerspectiveCamera(
        f,
        (width - 1) / 2.0,
        (height - 1) / 2.0,
        int(width),
        int(height),
        "given" if focal_px is not None else "diagonal",
    )


def perspective_translation(cam_image_px: np.ndarray, pelvis: np.ndarray, camera: PerspectiveCamera) -> np.ndarray:
    """Translation (..., 3) in the camera frame for each person.

    Args:
        cam_image_px: (..., 3) ``[a, bx, by]``.
        pelvis: (..., 3) rest pelvis joint ``J0`` of the same body (``joints_rest[..., 0, :]``).
        camera: the shared perspective camera.
    """
    c = np.asarray(cam_image_px, dtype=np.float64)
    j0 = np.asarray(pelvis, dtype=np.float64)
    a = c[..., 0]
    if (a <= 0).any():
        raise ValueError("cam_image_px scale must be positive")
    return np.stack(
        [(c[..., 1] - camera.cx) / a, (c[..., 2] - camera.cy) / a, camera.focal_px / a - j0[..., 2]], axis=-1
    )


def project(points: np.ndarray, camera: PerspectiveCamera) -> np.ndarray:
    """Pinhole projection (..., 2) of camera-frame points (..., 3)."""
    p = np.asarray(points, dtype=np.float64)
    return camera.focal_px * p[..., :2] / p[..., 2:3] + np.array([camera.cx, camera.cy])
