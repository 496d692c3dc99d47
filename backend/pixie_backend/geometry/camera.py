"""Weak-perspective camera and body-crop coordinate maps. Pure functions.

Frames: the PIXIE model frame is x right, y down, z away from the camera. Normalised crop
coordinates run over about [-1, 1] across the 224 body crop; crop pixels are
``u = (x' * 0.5 + 0.5) * S``. Image pixels have their origin at the centre of the top-left pixel.
"""

from __future__ import annotations

import torch


def weak_perspective(points: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """PIXIE's ``batch_orth_proj``: ``x' = s (x + tx)``, ``y' = s (y + ty)``, ``z' = s z``.

    Args:
        points: (B, N, 3) model-frame points.
        cam: (B, 3) ``[s, tx, ty]``.

    Returns:
        (B, N, 3) points in normalised crop coordinates (z scaled by s).
    """
    s = cam[:, None, 0:1]
    xy = points[..., :2] + cam[:, None, 1:3]
    return s * torch.cat([xy, points[..., 2:]], dim=-1)


def body_square(box: torch.Tensor, scale: float = 1.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The square source region of the body crop (upstream ``TestData``).

    Args:
        box: (..., 4) ``x1, y1, x2, y2`` in image pixels.
        scale: enlargement of the longer box side.

    Returns:
        center (..., 2) and side (...,): ``side = int(scale * max(w, h))`` (truncated, as upstream).
    """
    x1, y1, x2, y2 = box.unbind(-1)
    center = torch.stack([x2 - (x2 - x1) / 2.0, y2 - (y2 - y1) / 2.0], dim=-1)
    side = torch.trunc(torch.maximum(x2 - x1, y2 - y1) * scale)
    return center, side


def square_to_crop_tform(center: torch.Tensor, side: torch.Tensor, out_size: int) -> torch.Tensor:
    """Similarity taking image pixels to crop pixels: the square's corner ``center - side/2`` goes
    to 0 and the opposite corner to ``out_size - 1``.

    Args:
        center: (..., 2); side: (...,).

    Returns:
        (..., 3, 3) matrix for column vectors ``[u, v, 1]ᵀ = T @ [x, y, 1]ᵀ``.
    """
    k = (out_size - 1) / side
    t = -(center - side[..., None] / 2.0) * k[..., None]
    zero, one = torch.zeros_like(k), torch.ones_like(k)
    rows = [k, zero, t[..., 0], zero, k, t[..., 1], zero, zero, one]
    return torch.stack(rows, dim=-1).reshape(*k.shape, 3, 3)


def crop_to_image_points(uv: torch.Tensor, center: torch.Tensor, side: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Crop pixels (B, N, 2) of a ``crop_size`` crop back to image pixels.

    ``x = cx - side/2 + u * side / (crop_size - 1)``.
    """
    k = side / (crop_size - 1)
    return (center - side[..., None] / 2.0)[:, None, :] + uv * k[:, None, None]


def normalized_to_crop_pixels(xy: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Normalised crop coordinates to crop pixels: ``u = (x * 0.5 + 0.5) * crop_size``."""
    return (xy * 0.5 + 0.5) * crop_size


def image_ortho_camera(cam: torch.Tensor, center: torch.Tensor, side: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Compose the weak-perspective camera with the body crop into image pixels.

    For a model-frame point ``(x, y)``: ``u = a x + bx``, ``v = a y + by``.

    Args:
        cam: (B, 3) ``[s, tx, ty]``; center: (B, 2); side: (B,).

    Returns:
        (B, 3) ``[a, bx, by]``.
    """
    k = side / (crop_size - 1)  # image pixels per crop pixel
    half = crop_size * 0.5  # normalised -> crop pixels: u = x' * half + half
    a = cam[:, 0] * half * k
    origin = center - side[:, None] / 2.0 + half * k[:, None]  # image position of x' = 0
    b = origin + a[:, None] * cam[:, 1:3]
    return torch.cat([a[:, None], b], dim=1)
