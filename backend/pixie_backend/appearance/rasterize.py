"""Triangle rasterisation on the CPU (NumPy, vectorised), for UV maps and depth tests.

Pixel convention: pixel ``(row, col)`` has its centre at ``(col + ½, row + ½)`` in the continuous
image plane (x right, y down, both in pixels). A pixel belongs to a triangle when its centre lies
inside or on the triangle (barycentrics ≥ −1e-9); a pixel covered by several triangles takes the
nearest (smallest ``depth``) or, without depth, the first in face order.

UV maps: a UV point ``(u, v)`` lies at ``x = u·R``, ``y = (1 − v)·R`` in an R x R texture whose row
0 is the top (v = 1), so texel ``(row, col)`` samples ``u = (col + ½)/R``, ``v = 1 − (row + ½)/R``;
the same convention as upstream's texel look-ups (``int(R·u)``, ``int(R·(1 − v))``).

NumPy only (the synthetic-asset generator uses it too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-9


@dataclass(frozen=True)
class Raster:
    """Which triangle covers each covered pixel."""

    pixel: np.ndarray  #: (M,) int64 flat pixel index ``row·W + col``
    face: np.ndarray  #: (M,) int64 triangle index
    bary: np.ndarray  #: (M, 3) float64 barycentric weights of the triangle's corners
    height: int
    width: int


def rasterize(points: np.ndarray, faces: np.ndarray, height: int, width: int,
              depth: np.ndarray | None = None, chunk: int = 4_000_000) -> Raster:
    """Rasterise triangles given in pixel coordinates.

    Args:
        points: (P, 2) x, y in pixels (continuous; pixel centres at +½).
        faces: (F, 3) indices into ``points``.
        height, width: image size.
        depth: optional (P,) per-point depth; the smallest interpolated depth wins.
        chunk: candidate (triangle, pixel) pairs processed at a time.

    Returns:
        :class:`Raster`.
    """
    pts = np.asarray(points, np.float64)
    f = np.asarray(faces, np.int64)
    tri = pts[f]  # (F, 3, 2)
    lo = np.ceil(tri.min(axis=1) - 0.5).astype(np.int64)  # first pixel whose centre is >= the minimum
    hi = np.floor(tri.max(axis=1) - 0.5).astype(np.int64)  # last pixel whose centre is <= the maximum
    lo = np.maximum(lo, 0)
    hi[:, 0] = np.minimum(hi[:, 0], width - 1)
    hi[:, 1] = np.minimum(hi[:, 1], height - 1)
    nx = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    ny = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    counts = nx * ny
    # barycentric set-up per triangle
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    ok = (np.abs(den) > 1e-18) & (counts > 0)
    tri_ids = np.nonzero(ok)[0]
    pix_out, face_out, bary_out, z_out = [], [], [], []
    starts = np.concatenate([[0], np.cumsum(counts[tri_ids])])
    i = 0
    while i < len(tri_ids):
        j = int(np.searchsorted(starts, starts[i] + chunk, side="right")) - 1
        j = max(j, i + 1)
        ids = tri_ids[i:j]
        cnt = counts[ids]
        t = np.repeat(ids, cnt)
        local = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        col = lo[t, 0] + local % nx[t]
        row = lo[t, 1] + local // nx[t]
        px, py = col + 0.5, row + 0.5
        w0 = ((b[t, 1] - c[t, 1]) * (px - c[t, 0]) + (c[t, 0] - b[t, 0]) * (py - c[t, 1])) / den[t]
        w1 = ((c[t, 1] - a[t, 1]) * (px - c[t, 0]) + (a[t, 0] - c[t, 0]) * (py - c[t, 1])) / den[t]
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -_EPS) & (w1 >= -_EPS) & (w2 >= -_EPS)
        t, row, col = t[inside], row[inside], col[inside]
        w = np.stack([w0[inside], w1[inside], w2[inside]], axis=1)
        pix_out.append(row * width + col)
        face_out.append(t)
        bary_out.append(w)
        if depth is not None:
            z_out.append((np.asarray(depth, np.float64)[f[t]] * w).sum(axis=1))
        i = j
    if not pix_out:
        return Raster(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), height, width)
    pix = np.concatenate(pix_out)
    face = np.concatenate(face_out)
    bary = np.concatenate(bary_out)
    if depth is not None:
        order = np.lexsort((np.concatenate(z_out), pix))  # by pixel, then nearest first
    else:
        order = np.lexsort((face, pix))  # by pixel, then first triangle
    pix, face, bary = pix[order], face[order], bary[order]
    first = np.ones(len(pix), dtype=bool)
    first[1:] = pix[1:] != pix[:-1]
    return Raster(pix[first], face[first], bary[first], height, width)


def uv_to_pixels(uv: np.ndarray, resolution: int) -> np.ndarray:
    """UV (T, 2) -> continuous pixel coordinates (T, 2) of an R x R texture, row 0 = top."""
    uv = np.asarray(uv, np.float64)
    return np.stack([uv[:, 0] * resolution, (1.0 - uv[:, 1]) * resolution], axis=1)
