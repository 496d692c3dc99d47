"""Synthetic stand-ins for the face-appearance data files, in their official formats (NumPy and the
standard library only; no licensed data).

A synthetic "FLAME UV" square is defined on the mannequin's head by a cylindrical projection about
the vertical axis through the head (``u = ½ + atan2(x, z)/2π``, the face at u = ½ looking along +z;
``v`` linear in height, from just below the neck joint to above the crown). Everything below is
drawn in that square, so that the texel map, the albedo and the masks agree with the mannequin:

* ``flame2smplx_tex_1024.npy`` — every texel of the mannequin's SMPL-X UV map (``smplx_tex.obj``)
  that lies on a head triangle, with the synthetic FLAME UV of its 3-D point; a pickled dict with
  ``x_coords``/``y_coords`` (texel centres of an x-major grid, as in BFM_to_FLAME's cached data),
  ``target_pixel_ids``, ``source_uv_points`` and ``target_resolution``;
* ``FLAME_albedo_from_BFM.npz`` — ``MU`` (3·R²,) and ``PC`` (3·R², 199), an R x R x 3 BGR image per
  column, row 0 at the top, written uncompressed like ``np.savez``. Like the BFM conversion, the
  model has data only on a frontal "scan" region (zero elsewhere). The mean is a face (skin,
  brows, eyes, lips placed at the mannequin's landmarks); components 0–49 are smooth colour
  variations, 50–198 zero (PIXIE reads 50);
* ``smplx_tex.png`` — a 1024² skin texture with a faint 32-texel grid;
* ``uv_face_mask.png``, ``uv_face_eye_mask.png`` — 256² RGBA, channel 0: the face without and with
  the eyes;
* ``fixed_displacement_256.npy`` — (256, 256) float64, smooth, about ±1.5 mm.

Like the body (:func:`~pixie_backend.synthetic.meshops.snap`), every float result of a
transcendental function (``arctan2``, ``cos``, ``exp``, ``hypot``: SIMD kernels differ in the last
bits between machines) is snapped before anything is decided or written from it, so the files are
the same bytes for a seed on every machine and thread count.

DECA's random ``deca_model.tar`` needs torch and is written by
:func:`pixie_backend.appearance.deca_random.write_random_deca`.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..appearance.rasterize import rasterize, uv_to_pixels
from ..constants import JOINT_INDEX
from .mannequin import BodyModel, build_body_model
from .meshops import snap

ALBEDO_FILE = "FLAME_albedo_from_BFM.npz"
MAP_FILE = "flame2smplx_tex_1024.npy"
BODY_TEXTURE_FILE = "smplx_tex.png"
FACE_MASK_FILE = "uv_face_mask.png"
FACE_EYE_MASK_FILE = "uv_face_eye_mask.png"
FIXED_DISPLACEMENT_FILE = "fixed_displacement_256.npy"

NUM_PC = 199  #: columns of the BFM albedo basis
NUM_USED_PC = 50  #: columns PIXIE reads
MASK_SIZE = 256
#: Height range of the synthetic FLAME UV's v axis, metres above the mannequin's neck joint.
_V_BELOW_NECK, _V_ABOVE_NECK = 0.012, 0.275
#: The frontal region where the synthetic albedo model has data (BFM's scan), in (u, v).
SCAN_HALF_WIDTH_U = 0.2
SCAN_V = (0.12, 0.86)
_SKIN_RGB = np.array([0.78, 0.58, 0.48])


# ------------------------------------------------------------------ the synthetic FLAME UV
def head_frame(model: BodyModel) -> tuple[np.ndarray, float, float]:
    """Axis point (x, z) of the cylinder and the v = 0 / v = 1 heights."""
    neck = model.joints[JOINT_INDEX["neck"]]
    head = model.joints[JOINT_INDEX["head"]]
    return np.array([head[0], head[2]]), neck[1] - _V_BELOW_NECK, neck[1] + _V_ABOVE_NECK


def flame_uv(model: BodyModel, points: np.ndarray) -> np.ndarray:
    """Synthetic FLAME UV (N, 2) of head points (N, 3) (rest pose, y up, face towards +z)."""
    axis, y0, y1 = head_frame(model)
    u = 0.5 + np.arctan2(points[:, 0] - axis[0], points[:, 2] - axis[1]) / (2 * np.pi)
    v = (points[:, 1] - y0) / (y1 - y0)
    return snap(np.stack([u, np.clip(v, 0.0, 1.0)], axis=1))


def landmarks_uv(model: BodyModel) -> np.ndarray:
    """The 51 static landmarks (iBUG 17–67) in synthetic FLAME UV: (51, 2)."""
    tri = model.v_template[model.f[model.lmk_faces_idx]]
    pts = (tri * model.lmk_bary_coords[:, :, None]).sum(axis=1)
    return flame_uv(model, pts)


def head_triangles(model: BodyModel) -> np.ndarray:
    """(F,) bool: triangles whose three corners lie above the cylinder's v = 0."""
    _, y0, _ = head_frame(model)
    return (model.v_template[model.f][:, :, 1] > y0).all(axis=1)


# ------------------------------------------------------------------ the texel map
def texel_map(model: BodyModel, resolution: int = 1024) -> dict:
    """The ``flame2smplx`` dict for the mannequin's UV layout at ``resolution``."""
    ras = rasterize(uv_to_pixels(model.vt, resolution), model.ft.astype(np.int64), resolution, resolution)
    head = head_triangles(model)[ras.face]
    pixel, face, bary = ras.pixel[head], ras.face[head], ras.bary[head]
    pts = (model.v_template[model.f[face].astype(np.int64)] * bary[:, :, None]).sum(axis=1)
    rows, cols = pixel // resolution, pixel % resolution
    grid = np.arange(resolution, dtype=np.float64) + 0.5
    return {
        "x_coords": np.repeat(grid, resolution),  # x-major grid: id = col·R + row
        "y_coords": np.tile(grid, resolution),
        "target_pixel_ids": (cols * resolution + rows).astype(np.int64),
        "source_uv_points": flame_uv(model, pts),
        "target_resolution": resolution,
    }


# ------------------------------------------------------------------ drawing helpers (UV square)
def _uv_grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    """Texel-centre (u, v) of an res x res image with row 0 at the top: (res, res) each."""
    c = (np.arange(res) + 0.5) / res
    return np.meshgrid(c, 1.0 - c)


def _polygon(u, v, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon for a grid; poly (K, 2)."""
    inside = np.zeros(u.shape, bool)
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        crosses = (y0 > v) != (y1 > v)
        xint = x0 + (v - y0) * (x1 - x0) / np.where(y1 == y0, 1e-12, y1 - y0)
        inside ^= crosses & (u < xint)
    return inside


def _segment_distance(u, v, pts: np.ndarray) -> np.ndarray:
    """Distance from grid points to a polyline (K, 2)."""
    d = np.full(u.shape, np.inf)
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        ab = b - a
        t = np.clip(((u - a[0]) * ab[0] + (v - a[1]) * ab[1]) / max(float(ab[0] ** 2 + ab[1] ** 2), 1e-12), 0.0, 1.0)
        d = np.minimum(d, np.hypot(u - a[0] - t * ab[0], v - a[1] - t * ab[1]))
    return snap(d)


def _ellipse(u, v, center, radii) -> np.ndarray:
    """Normalised radius: below 1 inside, above 1 outside."""
    return snap(np.hypot((u - center[0]) / radii[0], (v - center[1]) / radii[1]))


def _ramp(x: np.ndarray, edge: float, width: float) -> np.ndarray:
    """1 for x <= edge, falling linearly to 0 at edge + width."""
    return np.clip((edge + width - x) / width, 0.0, 1.0)


def _eye_regions(lmk: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(centre, radii) of the two eyes (landmark rows 19–24 and 25–30)."""
    out = []
    for rows in (slice(19, 25), slice(25, 31)):
        p = lmk[rows]
        out.append((p.mean(axis=0), np.maximum(np.ptp(p, axis=0) * 0.5, 1e-3) * np.array([1.15, 1.6])))
    return out


def _face_region(lmk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, radii) of an ellipse around brows, eyes, nose and mouth, with a margin."""
    lo, hi = lmk.min(axis=0), lmk.max(axis=0)
    return (lo + hi) / 2, (hi - lo) / 2 * np.array([1.45, 1.35])


# ------------------------------------------------------------------ albedo
def albedo_mean_rgb(model: BodyModel, res: int) -> np.ndarray:
    """The synthetic mean albedo, (res, res, 3) RGB in [0, 1], row 0 = top (before masking)."""
    u, v = _uv_grid(res)
    lmk = landmarks_uv(model)
    img = np.empty((res, res, 3))
    img[:] = _SKIN_RGB
    # cheeks a little redder, forehead a little lighter
    c, r = _face_region(lmk)
    e = _ellipse(u, v, c, r)
    img += snap(0.05 * np.exp(-((u - c[0]) ** 2 / 0.004 + (v - c[1] + 0.05) ** 2 / 0.003)))[..., None] * [1, -0.3, -0.3]
    img += (0.04 * (v > c[1] + r[1] * 0.4) * (e < 1.2))[..., None]
    brow_w = 0.012
    for rows in (slice(0, 5), slice(5, 10)):
        a = _ramp(_segment_distance(u, v, lmk[rows]), brow_w * 0.6, brow_w * 0.6)[..., None]
        img = img * (1 - a) + a * np.array([0.30, 0.20, 0.14])
    for center, radii in _eye_regions(lmk):
        d = _ellipse(u, v, center, radii)
        sclera = _ramp(d, 0.8, 0.25)[..., None]
        img = img * (1 - sclera) + sclera * np.array([0.92, 0.90, 0.88])
        iris = _ramp(_ellipse(u, v, center, radii * np.array([0.45, 0.75])), 0.8, 0.3)[..., None]
        img = img * (1 - iris) + iris * np.array([0.25, 0.35, 0.45])
    lips = _polygon(u, v, lmk[31:43]).astype(np.float64)[..., None]
    img = img * (1 - lips) + lips * np.array([0.70, 0.36, 0.36])
    return snap(np.clip(img, 0.0, 1.0))


def scan_region(res: int) -> np.ndarray:
    """(res, res) bool: where the synthetic albedo model has data."""
    u, v = _uv_grid(res)
    return (np.abs(u - 0.5) < SCAN_HALF_WIDTH_U) & (v > SCAN_V[0]) & (v < SCAN_V[1])


def albedo_components(res: int, count: int = NUM_USED_PC, seed: int = 0, rows: slice = slice(None)) -> np.ndarray:
    """RGB colour variations (smooth cosine patterns x colour directions) for image ``rows``:
    (len(rows), res, 3, count)."""
    rng = np.random.default_rng(seed)
    colours = rng.normal(size=(count, 3))
    colours[0] += np.array([1.0, 0.8, 0.6])
    colours /= np.linalg.norm(colours, axis=1, keepdims=True)
    u, v = _uv_grid(res)
    u, v = u[rows], v[rows]
    out = np.empty(u.shape + (3, count))
    for k in range(count):
        a, b = k % 5, k // 5
        pattern = snap(np.cos(np.pi * a * (u - 0.3) / 0.4)) * snap(np.cos(np.pi * b * (v - 0.12) / 0.74))
        out[..., k] = pattern[..., None] * colours[k] * (0.06 / np.sqrt(1 + k))
    return snap(out)


def write_albedo_space(model: BodyModel, path: Path, res: int = 512, seed: int = 0,
                       dtype=np.float32, image_rows_per_block: int = 32) -> Path:
    """Write ``FLAME_albedo_from_BFM.npz`` (uncompressed, like ``np.savez``); ``PC`` is generated
    and written a block of image rows at a time (the 512² file has 156 M values)."""
    scan = scan_region(res)
    mean = (albedo_mean_rgb(model, res) * scan[..., None])[..., ::-1]  # BGR
    n = res * res * 3
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("MU.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, np.ascontiguousarray(mean.reshape(-1), dtype=dtype))
        with zf.open("PC.npy", "w", force_zip64=True) as fh:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                      "shape": (n, NUM_PC)}
            np.lib.format.write_array_header_2_0(fh, header)
            for r0 in range(0, res, image_rows_per_block):
                rows = slice(r0, min(r0 + image_rows_per_block, res))
                comps = albedo_components(res, NUM_USED_PC, seed, rows) * scan[rows][..., None, None]
                block = np.zeros((comps.shape[0] * res * 3, NUM_PC), dtype=dtype)
                block[:, :NUM_USED_PC] = comps[:, :, ::-1].reshape(-1, NUM_USED_PC)  # BGR rows
                fh.write(block.tobytes())
    tmp.replace(path)
    return path


# ------------------------------------------------------------------ PNG
def png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB or RGBA PNG of an (H, W, 3|4) uint8 array (zlib only)."""
    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w, c = a.shape
    colour_type = {3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def body_texture(size: int = 1024) -> np.ndarray:
    """The stock body texture: skin with a faint grid, (size, size, 3) uint8."""
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.empty((size, size, 3))
    img[:] = _SKIN_RGB * 0.95
    img *= (1.0 - 0.06 * (yy / size))[..., None]
    grid = ((xx % 32) == 0) | ((yy % 32) == 0)
    img[grid] *= 0.9
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def face_masks(model: BodyModel, size: int = MASK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(face, face+eyes) masks in [0, 1], (size, size) each, row 0 = top."""
    u, v = _uv_grid(size)
    lmk = landmarks_uv(model)
    c, r = _face_region(lmk)
    edge = 3.0 / size / max(r.min(), 1e-3)
    face_eye = _ramp(_ellipse(u, v, c, r), 1.0 - edge, edge)
    eyes = np.zeros_like(face_eye)
    for center, radii in _eye_regions(lmk):
        eyes = np.maximum(eyes, _ramp(_ellipse(u, v, center, radii), 1.0, 0.3))
    return snap(face_eye * (1.0 - eyes)), snap(face_eye)


def mask_png(mask: np.ndarray) -> bytes:
    """A FLAME-UV mask as upstream's files: RGBA, grey in RGB, opaque."""
    g = np.round(np.clip(mask, 0, 1) * 255).astype(np.uint8)
    return png_bytes(np.stack([g, g, g, np.full_like(g, 255)], axis=-1))


def fixed_displacement(model: BodyModel, size: int = 256, seed: int = 0) -> np.ndarray:
    """A smooth (size, size) float64 map in metres, about ±1.5 mm, largest on the face."""
    rng = np.random.default_rng(seed + 101)
    u, v = _uv_grid(size)
    c, r = _face_region(landmarks_uv(model))
    out = np.zeros((size, size))
    for _ in range(12):
        p = c + rng.uniform(-1, 1, 2) * r
        s = rng.uniform(0.02, 0.06)
        out += rng.normal() * snap(np.exp(-((u - p[0]) ** 2 + (v - p[1]) ** 2) / (2 * s * s)))
    out *= 1.5e-3 / max(np.abs(out).max(), 1e-12)
    return snap(out)


# ------------------------------------------------------------------ everything
def write_face_assets(out_dir: str | Path, variant: str = "full", seed: int = 0, model: BodyModel | None = None,
                      albedo_resolution: int = 512, texture_size: int = 1024) -> dict[str, Path]:
    """Write the six data files above into ``out_dir``; returns ``{file name: path}``.

    Args:
        variant, seed, model: the mannequin (as ``write_body_assets``).
        albedo_resolution: side of the albedo image (the official model: 512).
        texture_size: side of the SMPL-X texture and the map's target (official: 1024).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = build_body_model(variant, seed)
    paths = {name: out / name for name in (ALBEDO_FILE, MAP_FILE, BODY_TEXTURE_FILE, FACE_MASK_FILE,
                                           FACE_EYE_MASK_FILE, FIXED_DISPLACEMENT_FILE)}
    write_albedo_space(model, paths[ALBEDO_FILE], albedo_resolution, seed)
    with open(paths[MAP_FILE], "wb") as fh:
        np.save(fh, texel_map(model, texture_size), allow_pickle=True)
    paths[BODY_TEXTURE_FILE].write_bytes(png_bytes(body_texture(texture_size)))
    face, face_eye = face_masks(model)
    paths[FACE_MASK_FILE].write_bytes(mask_png(face))
    paths[FACE_EYE_MASK_FILE].write_bytes(mask_png(face_eye))
    np.save(paths[FIXED_DISPLACEMENT_FILE], fixed_displacement(model, 256, seed))
    return paths
