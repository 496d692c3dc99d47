"""Per-texel (triangle, barycentrics) tables of a UV layout as a torch module: upstream
``SRenderY.world2uv`` without a GPU rasteriser (conventions in :mod:`.rasterize`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .rasterize import rasterize, uv_to_pixels


class UvRasterizer(nn.Module):
    """Per-texel (triangle, barycentrics) of a mesh's UV layout: interpolates per-vertex values
    into the UV texture (upstream ``SRenderY.world2uv`` without a GPU rasteriser).

    Args:
        vt: (T, 2) UV coordinates; ft: (F, 3) UV index per triangle corner.
        faces: (F, 3) vertex index per triangle corner (the same triangles).
        resolution: texture side R.
        texels: optional (R, R) bool: only rasterise these texels (e.g. the face region).
    """

    def __init__(self, vt: np.ndarray, ft: np.ndarray, faces: np.ndarray, resolution: int,
                 texels: np.ndarray | None = None):
        super().__init__()
        ras = rasterize(uv_to_pixels(vt, resolution), ft, resolution, resolution)
        pixel, face, bary = ras.pixel, ras.face, ras.bary
        if texels is not None:
            keep = np.asarray(texels, bool).reshape(-1)[pixel]
            pixel, face, bary = pixel[keep], face[keep], bary[keep]
        self.resolution = resolution
        self.register_buffer("pixel", torch.from_numpy(pixel))  # (M,)
        self.register_buffer("vertex_ids", torch.from_numpy(np.asarray(faces, np.int64)[face]))  # (M, 3)
        self.register_buffer("bary", torch.from_numpy(bary).float())  # (M, 3)
        self.register_buffer("face", torch.from_numpy(face))  # (M,)

    def covered(self) -> torch.Tensor:
        """(R, R) bool: texels inside some triangle."""
        r = self.resolution
        m = torch.zeros(r * r, dtype=torch.bool, device=self.pixel.device)
        m[self.pixel] = True
        return m.reshape(r, r)

    def interpolate(self, values: torch.Tensor) -> torch.Tensor:
        """Barycentric interpolation at the covered texels: (B, V, C) -> (B, M, C)."""
        gathered = values[:, self.vertex_ids]  # (B, M, 3, C)
        return torch.einsum("bmkc,mk->bmc", gathered, self.bary.to(values.dtype))

    def world2uv(self, values: torch.Tensor) -> torch.Tensor:
        """Per-vertex values into the texture, zeros where no triangle is: (B, V, C) -> (B, C, R, R)."""
        b, _, c = values.shape
        r = self.resolution
        out = values.new_zeros(b, c, r * r)
        for i in range(b):  # one person at a time keeps the (M, 3, C) gather small
            out[i, :, self.pixel] = self.interpolate(values[i:i + 1])[0].T
        return out.reshape(b, c, r, r)
