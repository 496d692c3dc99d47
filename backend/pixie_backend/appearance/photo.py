"""The face texture taken from the photo (upstream ``Visualizer.extract_texture``, ``--extractTex``),
with a visibility test upstream lacks.

Each SMPL-X texel is mapped through the posed mesh and PIXIE's weak-perspective camera into the
1024² body crop and sampled there bilinearly (``grid_sample(align_corners=False)``, as upstream).
It is used where it is (a) inside the face+eye mask, (b) facing the camera (normal z < −0.05 in
the PIXIE frame, whose camera looks along +z; upstream's ``pos_mask`` threshold) and (c) not
hidden by another part of the body (a depth test against the rasterised mesh; upstream has no
such test, so a hand in front of the face would be pasted onto it). Elsewhere the base texture
(the albedo) stays.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .lighting import vertex_normals
from .rasterize import rasterize
from .uv_raster import UvRasterizer

#: Normal z below which a surface faces the camera (upstream ``pos_mask``).
FACING_Z = -0.05
#: Depth tolerance of the occlusion test, normalised crop units (about 1 cm at full-body framing).
DEPTH_TOLERANCE = 0.01
#: Side of the depth buffer of the occlusion test.
DEPTH_SIZE = 256


def depth_buffer(points: np.ndarray, faces: np.ndarray, size: int = DEPTH_SIZE) -> np.ndarray:
    """Nearest depth per pixel of a mesh in normalised crop coordinates: (size, size), +inf where empty.

    Args:
        points: (V, 3) x, y in [−1, 1] (crop), z depth (larger is farther).
        faces: (F, 3).
    """
    xy = (np.asarray(points[:, :2], np.float64) * 0.5 + 0.5) * size
    ras = rasterize(xy, faces, size, size, depth=points[:, 2])
    z = (np.asarray(points[:, 2], np.float64)[np.asarray(faces)[ras.face]] * ras.bary).sum(axis=1)
    buf = np.full(size * size, np.inf)
    buf[ras.pixel] = z
    return buf.reshape(size, size)


def photo_texture(raster: UvRasterizer, faces: torch.Tensor, vertices: torch.Tensor,
                  transformed: torch.Tensor, image_hd: torch.Tensor, mask: torch.Tensor,
                  base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend the photo's visible face texels over ``base``.

    Args:
        raster: the UV rasteriser of the SMPL-X texture.
        faces: (F, 3) triangles.
        vertices: (B, V, 3) posed vertices, PIXIE frame (for normals).
        transformed: (B, V, 3) the same after the weak-perspective camera (normalised crop coords).
        image_hd: (B, 3, H, H) the body crops in [0, 1].
        mask: (R, R) face+eye mask in the SMPL-X UV map.
        base: (B, 3, R, R) texture used where the photo is not.

    Returns:
        texture (B, 3, R, R) and the photo's weight (B, 1, R, R).
    """
    dtype = base.dtype
    uv_pts = raster.world2uv(transformed.to(dtype))  # (B, 3, R, R): x, y, z per texel
    uv_n = raster.world2uv(vertex_normals(vertices.to(dtype), faces))
    grid = uv_pts[:, :2].permute(0, 2, 3, 1)
    photo = F.grid_sample(image_hd.to(dtype), grid, mode="bilinear", align_corners=False)
    facing = (uv_n[:, 2:3] < FACING_Z).to(dtype)
    visible = torch.zeros_like(facing)
    f_np = faces.cpu().numpy()
    for i in range(transformed.shape[0]):
        zbuf = torch.from_numpy(depth_buffer(transformed[i].detach().cpu().double().numpy(), f_np)).to(
            device=base.device, dtype=dtype)
        px = ((uv_pts[i, :2] * 0.5 + 0.5) * DEPTH_SIZE).floor().long()  # (2, R, R) col, row
        inside = (px >= 0).all(0) & (px < DEPTH_SIZE).all(0)
        col, row = px[0].clamp(0, DEPTH_SIZE - 1), px[1].clamp(0, DEPTH_SIZE - 1)
        visible[i, 0] = (inside & (uv_pts[i, 2] <= zbuf[row, col] + DEPTH_TOLERANCE)).to(dtype)
    covered = raster.covered().to(dtype)[None, None]
    weight = mask.to(dtype)[None, None] * facing * visible * covered
    return photo * weight + base * (1.0 - weight), weight
