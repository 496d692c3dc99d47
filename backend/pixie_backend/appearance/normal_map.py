"""Tangent-space detail normal maps from a displacement map. Pure functions.

The detail surface is ``Q = P + d·N`` (``P`` the smooth surface, ``N`` its unit normal, ``d`` the
displacement in metres). For small slopes its normal is ``N − ∇d`` with ``∇d`` the gradient of
``d`` in the tangent plane, i.e. ``(−∂d/∂t, −∂d/∂b, 1)`` (normalised) in the tangent frame
``T`` (along +u, orthogonal to ``N``), ``B = s·(N × T)`` (``s`` = +1 unless the UVs are mirrored),
``N`` — the frame of Blender's *Normal Map* node in tangent space (MikkTSpace's convention). Where
the displacement is flat the map is exactly (0, 0, 1).

Texels are given sparsely: a set of M texels of an R x R map (flat index ``row·R + col``, row 0 at
the top, v = 1), with per-texel values; derivatives use the four neighbours that are in the set
(central differences, one-sided at the border of the set, zero where neither neighbour is).
Upstream PIXIE makes a world-space normal map of the posed mesh instead (``displacement2normal``),
which is only valid for that one pose.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def neighbours(pixel: torch.Tensor, resolution: int) -> torch.Tensor:
    """Positions in ``pixel`` of each texel's neighbours: (M,) -> (M, 4) for [col+1, col−1,
    row−1 (up, +v), row+1 (down)], −1 where the neighbour is not in the set."""
    r = resolution
    lookup = torch.full((r * r,), -1, dtype=torch.long, device=pixel.device)
    lookup[pixel] = torch.arange(pixel.numel(), device=pixel.device)
    row, col = pixel // r, pixel % r
    out = []
    for dr, dc in ((0, 1), (0, -1), (-1, 0), (1, 0)):
        rr, cc = row + dr, col + dc
        ok = (rr >= 0) & (rr < r) & (cc >= 0) & (cc < r)
        out.append(torch.where(ok, lookup[(rr.clamp(0, r - 1)) * r + cc.clamp(0, r - 1)], -1))
    return torch.stack(out, dim=1)


def _derivative(x: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor, step: float) -> torch.Tensor:
    """d x / d s along one axis: x (B, M, C); plus/minus (M,) neighbour positions or −1."""
    hp, hm = plus >= 0, minus >= 0
    xp = x[:, plus.clamp_min(0)]
    xm = x[:, minus.clamp_min(0)]
    both = (hp & hm).to(x.dtype)[None, :, None]
    only_p = (hp & ~hm).to(x.dtype)[None, :, None]
    only_m = (hm & ~hp).to(x.dtype)[None, :, None]
    return both * (xp - xm) / (2 * step) + only_p * (xp - x) / step + only_m * (x - xm) / step


def tangent_normals(positions: torch.Tensor, normals: torch.Tensor, displacement: torch.Tensor,
                    nbr: torch.Tensor, resolution: int) -> torch.Tensor:
    """Tangent-space normals of the displaced surface at M texels.

    Args:
        positions: (B, M, 3) surface points P (e.g. metres).
        normals: (B, M, 3) surface normals N (normalised here).
        displacement: (B, M) displacement along N, same unit as ``positions``.
        nbr: (M, 4) from :func:`neighbours`.
        resolution: R (UV distance between texel centres is 1/R).

    Returns:
        (B, M, 3) unit vectors (x along T, y along B, z along N).
    """
    step = 1.0 / resolution
    n = F.normalize(normals, dim=-1, eps=1e-12)
    pu = _derivative(positions, nbr[:, 0], nbr[:, 1], step)
    pv = _derivative(positions, nbr[:, 2], nbr[:, 3], step)
    d = displacement[..., None]
    du = _derivative(d, nbr[:, 0], nbr[:, 1], step)[..., 0]
    dv = _derivative(d, nbr[:, 2], nbr[:, 3], step)[..., 0]
    t = F.normalize(pu - (pu * n).sum(-1, keepdim=True) * n, dim=-1, eps=1e-12)
    mirrored = (torch.linalg.cross(pu, pv, dim=-1) * n).sum(-1, keepdim=True) < 0
    b = torch.where(mirrored, -1.0, 1.0).to(n.dtype) * torch.linalg.cross(n, t, dim=-1)
    # [du, dv] = [[T·Pu, B·Pu], [T·Pv, B·Pv]] [g_t, g_b]
    a11, a12 = (t * pu).sum(-1), (b * pu).sum(-1)
    a21, a22 = (t * pv).sum(-1), (b * pv).sum(-1)
    det = a11 * a22 - a12 * a21
    scale = (a11 * a11 + a12 * a12 + a21 * a21 + a22 * a22).clamp_min(1e-30)
    ok = det.abs() > 1e-6 * scale
    safe = torch.where(ok, det, torch.ones_like(det))
    g_t = torch.where(ok, (a22 * du - a12 * dv) / safe, torch.zeros_like(det))
    g_b = torch.where(ok, (-a21 * du + a11 * dv) / safe, torch.zeros_like(det))
    return F.normalize(torch.stack([-g_t, -g_b, torch.ones_like(g_t)], dim=-1), dim=-1)
