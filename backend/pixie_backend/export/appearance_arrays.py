"""Face-appearance arrays and header entry of a result file (format v2, ``docs/result-format.md``).

Textures are in the SMPL-X UV layout of ``smplx_tex.obj``, row 0 at the top (v = 1):

* ``albedo_uv``, ``lit_uv``, ``photo_uv`` — (P, H, W, 3) uint8. The albedo model (fitted to
  photographs) and the photo are sRGB-encoded values, stored as such (``round(255·clip(x, 0, 1))``,
  as upstream writes its texture PNGs); a reader decodes sRGB to linear for a PBR base colour.
* ``displacement_uv`` — (P, H, W) float16, metres along the outward surface normal; zero outside the
  face mask and for persons whose detail was gated off.
* ``normal_map_uv`` — (P, H, W, 3) uint8, tangent-space unit normals encoded ``n·½ + ½`` (linear
  data, not sRGB; x along +u, y along +v, z out).
* ``head_confidence`` — (P,) float32, the head moderator's part weight; ``detail_gate`` — (P,) uint8,
  1 where the detail was computed (confidence > threshold).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..config import AppearanceConfig


def _u8(t: torch.Tensor) -> np.ndarray:
    """(P, 3, H, W) values in [0, 1] -> (P, H, W, 3) uint8."""
    a = t.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return np.ascontiguousarray(a.permute(0, 2, 3, 1).cpu().numpy())


def appearance_arrays(look) -> dict[str, np.ndarray]:
    """The result arrays of an :class:`~pixie_backend.appearance.model.AppearanceOutput` (CPU)."""
    out: dict[str, np.ndarray] = {}
    for field, name in (("albedo", "albedo_uv"), ("lit", "lit_uv"), ("photo", "photo_uv")):
        t = getattr(look, field)
        if t is not None:
            out[name] = _u8(t)
    if look.displacement is not None:
        out["displacement_uv"] = look.displacement.detach().cpu().numpy().astype(np.float16)
    if look.normal_map is not None:
        out["normal_map_uv"] = _u8(look.normal_map * 0.5 + 0.5)
    if look.head_confidence is not None:
        out["head_confidence"] = look.head_confidence.detach().cpu().numpy().astype(np.float32)
    if look.detail_gate is not None:
        out["detail_gate"] = look.detail_gate.detach().cpu().numpy().astype(np.uint8)
    return out


def appearance_header(arrays: dict[str, np.ndarray], cfg: AppearanceConfig | None,
                      notices: list[str]) -> dict[str, Any]:
    """The header's ``appearance`` object: what each appearance array is, and why a feature is off."""
    h: dict[str, Any] = {}
    uv = "smplx_tex"
    transfer = cfg.transfer if cfg is not None else None
    for name in ("albedo_uv", "lit_uv", "photo_uv"):
        if name in arrays:
            h[name] = {"colorspace": "sRGB", "uv": uv, "transfer": transfer}
    if "lit_uv" in h:
        h["lit_uv"]["lighting"] = "light (SH), PIXIE frame"
    if "displacement_uv" in arrays:
        h["displacement_uv"] = {"units": "m", "along": "outward normal", "uv": uv, "transfer": transfer,
                                "source": "DECA detail decoder + fixed displacement, x face mask",
                                "condition": cfg.detail_condition if cfg is not None else None}
    if "normal_map_uv" in arrays:
        h["normal_map_uv"] = {"space": "tangent", "encoding": "n*0.5+0.5", "colorspace": "Non-Color", "uv": uv}
    if "detail_gate" in arrays:
        h["detail_gate"] = {"threshold": cfg.detail_threshold if cfg is not None else None,
                            "confidence": "head_confidence (head moderator part weight)"}
    h["notices"] = list(notices)
    return h
