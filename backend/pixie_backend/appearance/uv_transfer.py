"""FLAME UV → SMPL-X UV with the cached texel map (``flame2smplx_tex_1024.npy``), batched.

Every mapped SMPL-X texel (row ``r``, column ``c``, row 0 = top) takes the value of its FLAME-UV
point ``(u, v)``:

* ``paste_nearest`` — upstream ``FLAME.texture_flame2smplx``: the FLAME texel
  ``(int(S·(1 − v)), int(S·u))`` of an S x S source. Upstream clips to ``[0, S]`` and so indexes
  one past the end for v = 0 or u = 1 (bug #13); here the index is clipped to S − 1, identical for
  every other point. Upstream writes into its cached body texture (bug #11) and handles batch
  element 0 only; here the base is copied and every batch element is transferred.
* ``sample_bilinear`` — bilinear sampling at ``(u, v)`` with texel centres at ``(k + ½)/S``
  (``grid_sample(align_corners=False)``), for any source resolution.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .files import FlameToSmplxMap


class UvTransfer(nn.Module):
    """The map as buffers; methods take (B, C, S, S) FLAME-UV images."""

    def __init__(self, uv_map: FlameToSmplxMap):
        super().__init__()
        self.resolution = uv_map.resolution
        r = uv_map.resolution
        self.register_buffer("target", torch.as_tensor(uv_map.rows * r + uv_map.cols, dtype=torch.long))  # (N,)
        self.register_buffer("source_uv", torch.as_tensor(uv_map.source_uv, dtype=torch.float64))  # (N, 2)
        #: the file's own values (and dtype), for index arithmetic bit-identical to upstream's NumPy
        self._uv_file = uv_map.source_uv
        self._texels: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def official_source_texels(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """FLAME texel (row, col) that upstream reads for each target texel of an S x S source,
        computed like upstream (NumPy, the file's dtype), clipped to S − 1: (N,), (N,)."""
        key = (size, str(self.target.device))
        if key not in self._texels:
            uv = self._uv_file
            rows = np.clip(size * (1.0 - uv[:, 1]), 0.0, size - 1).astype(np.int64)
            cols = np.clip(size * uv[:, 0], 0.0, size - 1).astype(np.int64)
            self._texels[key] = (torch.from_numpy(rows).to(self.target.device),
                                 torch.from_numpy(cols).to(self.target.device))
        return self._texels[key]

    def _base(self, flame: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        b, c = flame.shape[:2]
        r = self.resolution
        if base is None:
            return flame.new_zeros(b, c, r * r)
        if base.shape[-2:] != (r, r) or base.shape[-3] != c:
            raise ValueError(f"base texture must be (.., {c}, {r}, {r}), got {tuple(base.shape)}")
        return base.to(flame.dtype).expand(b, c, r, r).reshape(b, c, r * r).clone()

    def paste_nearest(self, flame: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """Upstream's nearest copy.

        Args:
            flame: (B, C, S, S) FLAME-UV image.
            base: (C, R, R) or (B, C, R, R) texture to paste into (copied), or None for zeros.

        Returns:
            (B, C, R, R).
        """
        size = flame.shape[-1]
        rows, cols = self.official_source_texels(size)
        out = self._base(flame, base)
        out[:, :, self.target] = flame[:, :, rows, cols]
        r = self.resolution
        return out.reshape(flame.shape[0], flame.shape[1], r, r)

    def sample_bilinear(self, flame: torch.Tensor, base: torch.Tensor | None = None,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
        """Bilinear transfer; with ``weight`` (1 or B, 1, S, S) in [0, 1], the result is
        ``base·(1 − w) + flame·w`` at the mapped texels (w sampled like the image).

        Returns:
            (B, C, R, R).
        """
        b, c = flame.shape[:2]
        uv = self.source_uv.to(flame.dtype)
        grid = torch.stack([2.0 * uv[:, 0] - 1.0, 1.0 - 2.0 * uv[:, 1]], dim=-1)  # x right, y down
        grid = grid[None, None].expand(b, 1, -1, 2)
        vals = F.grid_sample(flame, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0]
        out = self._base(flame, base)
        if weight is not None:
            w = F.grid_sample(weight.to(flame.dtype).expand(b, 1, -1, -1), grid, mode="bilinear",
                              padding_mode="border", align_corners=False)[:, :, 0]
            vals = out[:, :, self.target] * (1.0 - w) + vals * w
        out[:, :, self.target] = vals
        r = self.resolution
        return out.reshape(b, c, r, r)

    def coverage(self) -> torch.Tensor:
        """(R, R) bool: the texels the map writes."""
        r = self.resolution
        m = torch.zeros(r * r, dtype=torch.bool, device=self.target.device)
        m[self.target] = True
        return m.reshape(r, r)
