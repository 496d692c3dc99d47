"""The FLAME albedo model (BFM converted to FLAME UV) as a torch module.

Conventions: images are (B, 3, R, R), **RGB**, row 0 at the top of the UV square (v = 1), values
in the model's own scale (about [0, 1]; not clamped here). The file stores BGR; both outputs below
reverse the channels, as upstream does.

* :meth:`FlameAlbedo.forward` — the full-resolution albedo (R = 512 for the real model).
* :meth:`FlameAlbedo.official` — upstream ``FLAMETex.forward`` exactly: the same image resized to
  256² with ``F.interpolate``'s default mode (nearest, i.e. every second texel starting at 0),
  channels reversed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .files import AlbedoSpace

#: Side of upstream's albedo image (``F.interpolate(texture, [256, 256])``).
OFFICIAL_SIZE = 256


class FlameAlbedo(nn.Module):
    """``MU + PC[:, :K] · tex`` reshaped to an image. Buffers follow ``.to(device, dtype)``."""

    def __init__(self, space: AlbedoSpace):
        super().__init__()
        self.resolution = space.resolution
        self.register_buffer("mean", torch.as_tensor(space.mean))  # (3·R²,)
        self.register_buffer("basis", torch.as_tensor(space.basis))  # (3·R², K)
        # texels where the model has data (BFM covers the face; the rest is zero unless inpainted)
        valid = (self.mean.reshape(space.resolution, space.resolution, 3) != 0).any(dim=-1)
        self.register_buffer("valid", valid.to(self.mean.dtype)[None, None])  # (1, 1, R, R)

    @property
    def num_coeffs(self) -> int:
        return int(self.basis.shape[1])

    def _image_bgr(self, tex: torch.Tensor) -> torch.Tensor:
        """(B, K) -> (B, 3, R, R) in the file's BGR channel order."""
        if tex.ndim != 2 or tex.shape[1] != self.num_coeffs:
            raise ValueError(f"tex must be (B, {self.num_coeffs}), got {tuple(tex.shape)}")
        flat = self.mean + tex.to(self.basis.dtype) @ self.basis.T  # (B, 3·R²)
        r = self.resolution
        return flat.reshape(-1, r, r, 3).permute(0, 3, 1, 2)

    def forward(self, tex: torch.Tensor) -> torch.Tensor:
        """Full-resolution RGB albedo (B, 3, R, R)."""
        return self._image_bgr(tex).flip(1)

    def official(self, tex: torch.Tensor) -> torch.Tensor:
        """Upstream ``FLAMETex``: nearest resize to 256², then channels reversed: (B, 3, 256, 256)."""
        img = F.interpolate(self._image_bgr(tex), [OFFICIAL_SIZE, OFFICIAL_SIZE])
        return img[:, [2, 1, 0]]
