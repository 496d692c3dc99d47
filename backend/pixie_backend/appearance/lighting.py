"""Spherical-harmonics shading (PIXIE/DECA ``add_SHlight``) and vertex normals. Pure functions.

PIXIE's ``light`` (B, 27) is read as (B, 9, 3): nine coefficients, RGB per coefficient. The
shading of a unit normal ``n = (x, y, z)`` (PIXIE frame: x right, y down, z away from the camera)
is ``Σ_k light[k] · f_k · Y_k(n)`` with the basis ``Y = [1, x, y, z, xy, xz, yz, x² − y², 3z² − 1]``
and the factors ``f`` below, which fold the Lambertian kernel into bands 1 and 2
(``2π/3``, ``π/4``) but not into band 0 (``1/√(4π)`` only; DECA's convention). The shaded
("lit") texture is albedo x shading.
"""

from __future__ import annotations

import math

import torch

SH_FACTORS: tuple[float, ...] = (
    1.0 / math.sqrt(4 * math.pi),
    (2 * math.pi / 3) * math.sqrt(3 / (4 * math.pi)),
    (2 * math.pi / 3) * math.sqrt(3 / (4 * math.pi)),
    (2 * math.pi / 3) * math.sqrt(3 / (4 * math.pi)),
    (math.pi / 4) * 3 * math.sqrt(5 / (12 * math.pi)),
    (math.pi / 4) * 3 * math.sqrt(5 / (12 * math.pi)),
    (math.pi / 4) * 3 * math.sqrt(5 / (12 * math.pi)),
    (math.pi / 4) * (3 / 2) * math.sqrt(5 / (12 * math.pi)),
    (math.pi / 4) * (1 / 2) * math.sqrt(5 / (4 * math.pi)),
)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The nine scaled basis functions ``f_k Y_k(n)``: (..., 3) -> (..., 9). ``n`` is used as
    given (upstream does not renormalise interpolated normals)."""
    x, y, z = normals.unbind(-1)
    one = torch.ones_like(x)
    basis = torch.stack([one, x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1], dim=-1)
    return basis * torch.tensor(SH_FACTORS, dtype=normals.dtype, device=normals.device)


def sh_shading(normals: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """RGB shading of normal maps.

    Args:
        normals: (B, 3, H, W) normals.
        light: (B, 9, 3) SH coefficients.

    Returns:
        (B, 3, H, W).
    """
    basis = sh_basis(normals.permute(0, 2, 3, 1))  # (B, H, W, 9)
    return torch.einsum("bhwk,bkc->bchw", basis, light.to(normals.dtype))


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (upstream ``util.vertex_normals``): outward for
    counter-clockwise triangles.

    Args:
        vertices: (B, V, 3); faces: (F, 3) long.

    Returns:
        (B, V, 3).
    """
    tri = vertices[:, faces]  # (B, F, 3, 3)
    n = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)  # (B, F, 3)
    out = torch.zeros_like(vertices)
    for k in range(3):
        out.index_add_(1, faces[:, k], n)
    return torch.nn.functional.normalize(out, eps=1e-6, dim=-1)
