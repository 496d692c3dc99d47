"""Body and part crops.

Body crop (upstream ``TestData``): a square of side ``int(1.1·max(w, h))`` around the person box
is resampled bilinearly to 224² and to 1024² (zeros outside the image), exactly like
``skimage.transform.warp(order=1)`` with the similarity through the square's corners: output
pixel ``p`` samples the source at ``p·side/(S−1) + corner``, pixel centres on integer
coordinates. Implemented as a gather from the source array, so a huge photo is never converted
to float as a whole.

Part crops (upstream ``PIXIE.part_from_body``): squares around the coarse keypoints of the head and
hands, cut from the 1024² crop to 224² with ``grid_sample``. Which source positions are sampled
depends on the kornia version the reference outputs were made with; see
:data:`pixie_backend.config.PartCropConvention`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import PartCropConvention

#: What runs on the CPU when the model runs on Apple's MPS, which has no float64 (named in
#: ``Engine.describe()["fallbacks"]``); everything else runs on the GPU.
MPS_FALLBACKS = {
    "part-crop sampling grids": "computed in float64 on the CPU (B x 3 x 224 x 224 x 2 numbers), then "
                                "uploaded; the sampling itself runs on the GPU",
    "body-crop sampling tables": "the 1-D source rows, columns and weights of each body crop are computed in "
                                 "float64 on the CPU (as on every device); the gather runs on the GPU",
}


def float64_device(device: torch.device) -> torch.device:
    """Where float64 geometry runs for tensors on ``device``: there, or the CPU for MPS (no float64)."""
    return torch.device("cpu") if device.type == "mps" else device


def bilinear_square(
    image: torch.Tensor, center: torch.Tensor, side: torch.Tensor, out_size: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Resample a square region of one image.

    Bilinear interpolation of an axis-aligned scaling is separable, so it runs as two passes, in the
    order scikit-image uses (along x within the two source rows, then along y): first along x for
    the source rows the output needs, then along y.

    Args:
        image: (H, W, C) uint8 (scaled by 1/255) or float in [0, 1], any device.
        center: (2,) square centre, image pixels (x, y).
        side: () square side, image pixels.
        out_size: output side S.
        dtype: output (and arithmetic) dtype, float32 or float64.

    Returns:
        (C, S, S) ``dtype`` in [0, 1]; zeros where the square leaves the image.
    """
    h, w = image.shape[:2]
    dev = image.device
    step = (side / (out_size - 1)).to(torch.float64)
    corner = (center - side / 2.0).to(torch.float64)
    grid = torch.arange(out_size, device=dev, dtype=torch.float64) * step
    xs = grid + corner[0]  # float64 positions, so the fractions are exact even far from the origin
    ys = grid + corner[1]
    x0 = torch.floor(xs)
    y0 = torch.floor(ys)
    wx = (xs - x0).to(dtype)[:, None]  # (S, 1)
    wy = (ys - y0).to(dtype)[:, None]  # (S, 1)
    x0 = x0.long()
    y0 = y0.long()

    # pass 1, along x, for the source rows needed (a contiguous band, or just 2 per output row)
    lo, hi = int(y0.min()), int(y0.max()) + 1
    band = torch.arange(lo, hi + 1, device=dev) if hi - lo + 1 <= 2 * out_size else None
    rows = band if band is not None else torch.cat([y0, y0 + 1])
    src = image[rows.clamp(0, h - 1)]  # (R, W, C)

    def tap(xi: torch.Tensor) -> torch.Tensor:
        t = src[:, xi.clamp(0, w - 1)].to(dtype)
        bad = (xi < 0) | (xi >= w)
        if bool(bad.any()):
            t[:, bad] = 0.0
        return t

    across = tap(x0).mul_(1 - wx).addcmul_(tap(x0 + 1), wx)  # (R, S, C)
    bad_rows = (rows < 0) | (rows >= h)
    if bool(bad_rows.any()):
        across[bad_rows] = 0.0
    if image.dtype == torch.uint8:
        across.mul_(1.0 / 255.0)
    across = across.permute(2, 0, 1).contiguous()  # (C, R, S)
    # pass 2, along y
    i_top, i_bottom = (y0 - lo, y0 + 1 - lo) if band is not None else (
        torch.arange(out_size, device=dev), torch.arange(out_size, 2 * out_size, device=dev))
    return across[:, i_top].mul_(1 - wy).addcmul_(across[:, i_bottom], wy)


@dataclass(frozen=True)
class SquareTaps:
    """Where a batch of square body crops samples its source image: for output column ``j`` of
    person ``p``, the source columns ``x0[p, j]`` and ``x0[p, j] + 1`` weighted ``1 − wx`` and
    ``wx``; rows likewise. Computed in float64 exactly as :func:`bilinear_square` computes them."""

    x0: torch.Tensor  #: (P, S) int64
    y0: torch.Tensor  #: (P, S) int64
    wx: torch.Tensor  #: (P, S) float64 in [0, 1)
    wy: torch.Tensor  #: (P, S) float64 in [0, 1)

    @property
    def size(self) -> int:
        return self.x0.shape[1]


def square_taps(centers: torch.Tensor, sides: torch.Tensor, out_size: int) -> SquareTaps:
    """The 1-D sampling tables of :func:`crop_squares` (tiny: 4 x P x S numbers), on the CPU.

    Args:
        centers: (P, 2) square centres, image pixels (x, y).
        sides: (P,) square sides, image pixels.
        out_size: output side S.
    """
    centers = centers.detach().to("cpu", torch.float64).reshape(-1, 2)
    sides = sides.detach().to("cpu", torch.float64).reshape(-1)
    step = sides / (out_size - 1)  # the same float64 operations as bilinear_square
    corner = centers - sides[:, None] / 2.0
    grid = torch.arange(out_size, dtype=torch.float64)[None, :] * step[:, None]
    xs = grid + corner[:, 0:1]
    ys = grid + corner[:, 1:2]
    x0, y0 = torch.floor(xs), torch.floor(ys)
    return SquareTaps(x0.long(), y0.long(), xs - x0, ys - y0)


def crop_squares(image: torch.Tensor, taps: SquareTaps, dtype: torch.dtype = torch.float32,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """Resample P squares of one image where the image is (the device path of the body crops).

    The same bilinear sampling as :func:`bilinear_square` (zeros outside the image; uint8 scaled
    by 1/255), done as a 2-D gather of the four taps with no data-dependent control flow, so it
    runs on a GPU without synchronising. The CPU path keeps :func:`bilinear_square` (separable,
    cheaper there); both agree to rounding (tested in float64 within 1e-6).

    Args:
        image: (H, W, C) uint8, or float in [0, 1], on any device.
        taps: from :func:`square_taps`.
        dtype: arithmetic and output dtype, float32 or float64 (float32 on MPS).
        out: optional (P, C, S, S) tensor to write into (e.g. a slice of a batch).

    Returns:
        (P, C, S, S) ``dtype`` in [0, 1], contiguous (``out`` if given).
    """
    h, w = image.shape[:2]
    dev = image.device
    x0, y0 = taps.x0.to(dev, non_blocking=True), taps.y0.to(dev, non_blocking=True)
    # dtype first, on the CPU: a float64 tensor must never reach MPS
    wx = taps.wx.to(dtype).to(dev, non_blocking=True)[:, None, :, None]  # (P, 1, S, 1)
    wy = taps.wy.to(dtype).to(dev, non_blocking=True)[:, :, None, None]  # (P, S, 1, 1)
    x1, y1 = x0 + 1, y0 + 1

    def inside(i: torch.Tensor, n: int) -> torch.Tensor:
        return ((i >= 0) & (i < n)).to(dtype)

    cols = [(x.clamp(0, w - 1)[:, None, :], inside(x, w)[:, None, :, None]) for x in (x0, x1)]

    def across(y: torch.Tensor) -> torch.Tensor:
        """Pass 1 (along x) for source rows ``y``: (P, S, S, C)."""
        rows = y.clamp(0, h - 1)[:, :, None]
        (c0, ok0), (c1, ok1) = cols
        t0 = image[rows, c0].to(dtype) * ok0
        t1 = image[rows, c1].to(dtype) * ok1
        a = t0 * (1 - wx) + t1 * wx
        a = a * inside(y, h)[:, :, None, None]
        return a * (1.0 / 255.0) if image.dtype == torch.uint8 else a

    res = across(y0) * (1 - wy) + across(y1) * wy  # pass 2, along y
    res = res.permute(0, 3, 1, 2)
    if out is None:
        return res.contiguous()
    out.copy_(res)
    return out


def part_square(
    points_norm: torch.Tensor, hd_size: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Square around keypoints (upstream ``points2bbox`` + ``augment_bbox`` without jitter).

    Args:
        points_norm: (B, N, 2) keypoints in normalised body-crop coordinates.
        hd_size: side of the HD crop the part is cut from.
        scale: enlargement of the keypoints' extent (2.0 head, 2.4 hands).

    Returns:
        center (B, 2) and side (B,) in HD-crop pixels.
    """
    px = (points_norm * 0.5 + 0.5) * hd_size
    lo = px.min(dim=1).values
    hi = px.max(dim=1).values
    center = (lo + hi) * 0.5
    side = (hi - lo).max(dim=1).values * scale
    return center, side


def _legacy_grid(center: torch.Tensor, side: torch.Tensor, in_hw: tuple[int, int], out_size: int) -> torch.Tensor:
    """kornia <= 0.8 ``warp_affine(align_corners=False)``: corner-aligned normalisation of the
    pixel homography, grid sampled with ``align_corners=False``."""
    b = center.shape[0]
    h, w = in_hw
    dt = center.dtype
    k = (out_size - 1) / side  # dst = (src - corner) * k
    corner = center - side[:, None] / 2.0
    m = torch.zeros(b, 3, 3, dtype=dt, device=center.device)
    m[:, 0, 0] = k
    m[:, 1, 1] = k
    m[:, :2, 2] = -corner * k[:, None]
    m[:, 2, 2] = 1.0

    def norm(hh: int, ww: int) -> torch.Tensor:
        n = torch.eye(3, dtype=dt, device=center.device)
        n[0, 0], n[1, 1] = 2.0 / (ww - 1), 2.0 / (hh - 1)
        n[0, 2] = n[1, 2] = -1.0
        return n

    # inv_ex: the same inverse without the error check, which would wait for a GPU (the matrices
    # are similarities with a positive scale, always invertible)
    dst_norm_from_src_norm = norm(out_size, out_size) @ m @ torch.linalg.inv_ex(norm(h, w)).inverse
    theta = torch.linalg.inv_ex(dst_norm_from_src_norm).inverse[:, :2, :]
    return F.affine_grid(theta, [b, 1, out_size, out_size], align_corners=False)


def _kornia09_grid(center: torch.Tensor, side: torch.Tensor, in_hw: tuple[int, int], out_size: int) -> torch.Tensor:
    """kornia >= 0.9 ``warp_affine(align_corners=False)``: the source is sampled exactly at
    ``M⁻¹·dst`` with pixel centres on integer coordinates."""
    h, w = in_hw
    step = side / (out_size - 1)
    corner = center - side[:, None] / 2.0
    base = torch.arange(out_size, dtype=center.dtype, device=center.device)
    xs = base[None, :] * step[:, None] + corner[:, 0:1]  # (B, S)
    ys = base[None, :] * step[:, None] + corner[:, 1:2]
    gx = (2.0 * xs + 1.0) / w - 1.0
    gy = (2.0 * ys + 1.0) / h - 1.0
    s = out_size
    return torch.stack([gx[:, None, :].expand(-1, s, s), gy[:, :, None].expand(-1, s, s)], dim=-1)


def crop_parts(
    image_hd: torch.Tensor,
    center: torch.Tensor,
    side: torch.Tensor,
    out_size: int = 224,
    convention: PartCropConvention = "kornia_legacy",
) -> torch.Tensor:
    """Cut K squares out of each HD body crop, in one ``grid_sample`` call (no copies of the image).

    Args:
        image_hd: (B, C, H, W).
        center: (B, K, 2) and side (B, K) in HD pixels.
        out_size: output side S.
        convention: pixel convention, see :data:`~pixie_backend.config.PartCropConvention`.

    Returns:
        (B, K, C, S, S), bilinear, zeros outside.
    """
    b, k = side.shape
    in_hw = (image_hd.shape[-2], image_hd.shape[-1])
    geo = float64_device(center.device)  # the sampling grid is computed in float64
    c64, s64 = center.reshape(b * k, 2).to(geo, torch.float64), side.reshape(b * k).to(geo, torch.float64)
    if convention == "kornia09":
        grid = _kornia09_grid(c64, s64, in_hw, out_size)
    elif convention == "kornia_legacy":
        grid = _legacy_grid(c64, s64, in_hw, out_size)
    else:
        raise ValueError(f"unknown part-crop convention {convention!r}; use 'kornia09' or 'kornia_legacy'")
    grid = grid.reshape(b, k * out_size, out_size, 2).to(image_hd.dtype).to(image_hd.device)
    out = F.grid_sample(image_hd, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(b, -1, k, out_size, out_size).transpose(1, 2)
