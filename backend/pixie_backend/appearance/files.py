"""Readers for the face-appearance data files, in their official formats (numpy and Pillow only).

* ``FLAME_albedo_from_BFM.npz`` (BFM_to_FLAME's ``col_to_tex.py``): ``MU`` (3·R²,) and ``PC``
  (3·R², 199), float64, an R x R x 3 image flattened row by row, **BGR**, row 0 at the top (v = 1);
  R = 512. The file is ~1.25 GB, written uncompressed by ``np.savez``, so ``PC`` is memory-mapped
  and only the columns used are read into memory.
* ``flame2smplx_tex_1024.npy`` (PIXIE ``utilities.zip``): ``np.save`` of a pickled dict with
  ``x_coords``, ``y_coords`` (pixel coordinates of a grid), ``target_pixel_ids`` (the grid points
  inside the head in the SMPL-X UV map), ``source_uv_points`` ((N, 2) FLAME UV of each) and
  ``target_resolution``. It is unpickled with an allow-list (numpy arrays and plain containers), so
  reading it cannot run code.
* ``uv_face_mask.png``, ``uv_face_eye_mask.png`` (PIXIE repository ``data/``): 256² RGBA, channel
  0 / 255 is the mask in FLAME UV.
* ``smplx_tex.png`` (PIXIE repository ``data/``): the 1024² RGB body texture.
* ``fixed_displacement_256.npy`` (DECA repository ``data/``): (256, 256) float64, metres, added to
  every DECA displacement map.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..body.smplx_layer import ModelFileError, _NumpyOnlyUnpickler

#: Albedo coefficients PIXIE regresses (``Regressor_head`` ``tex``).
NUM_ALBEDO_COEFFS = 50


class AppearanceFileError(ModelFileError):
    """An appearance data file exists but does not have the expected content."""


@dataclass(frozen=True)
class AlbedoSpace:
    """The FLAME albedo model, in the file's layout."""

    mean: np.ndarray  #: (3·R²,) HWC flattened, BGR, row 0 = top
    basis: np.ndarray  #: (3·R², K) the first K principal components, same layout
    resolution: int  #: R


@dataclass(frozen=True)
class FlameToSmplxMap:
    """The cached FLAME-UV → SMPL-X-UV texel map."""

    rows: np.ndarray  #: (N,) int64 target texel row in the SMPL-X texture (0 = top)
    cols: np.ndarray  #: (N,) int64 target texel column
    source_uv: np.ndarray  #: (N, 2) FLAME UV (u right, v up) of each target texel, the file's float dtype
    resolution: int  #: side of the SMPL-X texture the map was made for

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def _npz_member_memmap(path: Path, name: str) -> np.ndarray | None:
    """Memory-map array ``name`` of an uncompressed ``.npz`` (None if compressed or not mappable)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                return None
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
    if dtype.hasobject:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def load_albedo_space(path: str | os.PathLike, num_coeffs: int = NUM_ALBEDO_COEFFS,
                      dtype=np.float32) -> AlbedoSpace:
    """Read ``MU`` and the first ``num_coeffs`` columns of ``PC``.

    Raises:
        AppearanceFileError: not an npz with ``MU``/``PC`` of matching, square-image sizes.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "MU" not in z.files or "PC" not in z.files:
                raise AppearanceFileError(f"{path} lacks MU/PC (found {sorted(z.files)}); is it "
                                          "FLAME_albedo_from_BFM.npz?")
            mean = np.asarray(z["MU"], dtype=np.float64).reshape(-1)
        pc = _npz_member_memmap(path, "PC")
        if pc is None:
            with np.load(path, allow_pickle=False) as z:
                pc = z["PC"]
    except AppearanceFileError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt zip, pickled arrays, truncated file, ...
        raise AppearanceFileError(f"{path} is not a readable albedo model (.npz with MU and PC): {e}") from None
    n = mean.shape[0]
    res = int(round(np.sqrt(n / 3)))
    if n == 0 or 3 * res * res != n:
        raise AppearanceFileError(f"{path}: MU has {n} values, not a square RGB image (3·R²)")
    if pc.size % n != 0:
        raise AppearanceFileError(f"{path}: PC has {pc.size} values, not a multiple of MU's {n}")
    pc = pc.reshape(n, -1)
    if pc.shape[1] < num_coeffs:
        raise AppearanceFileError(f"{path}: PC has {pc.shape[1]} components, PIXIE uses {num_coeffs}")
    basis = np.ascontiguousarray(pc[:, :num_coeffs], dtype=dtype)
    return AlbedoSpace(mean=mean.astype(dtype), basis=basis, resolution=res)


def _read_npy_object(path: Path):
    """The object stored by ``np.save`` of a pickled object (0-d object array), unpickled safely."""
    data = path.read_bytes()
    fh = io.BytesIO(data)
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    if not dtype.hasobject:
        raise AppearanceFileError(f"{path} holds a plain {dtype} array {shape}, expected a pickled dict")
    obj = _NumpyOnlyUnpickler(fh, encoding="latin1").load()
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        obj = obj.item()
    return obj


def load_flame2smplx_map(path: str | os.PathLike) -> FlameToSmplxMap:
    """Read ``flame2smplx_tex_1024.npy``; target texels as upstream indexes them
    (``y_coords[ids].astype(int)``, ``x_coords[ids].astype(int)``).

    A target texel listed twice keeps its last entry (what NumPy's fancy assignment does).
    """
    path = Path(path)
    try:
        data = _read_npy_object(path)
    except AppearanceFileError:
        raise
    except Exception as e:  # noqa: BLE001
        raise AppearanceFileError(f"{path} is not a readable FLAME→SMPL-X texture map: {e}") from None
    keys = ("x_coords", "y_coords", "target_pixel_ids", "source_uv_points", "target_resolution")
    if not isinstance(data, dict) or any(k not in data for k in keys):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise AppearanceFileError(f"{path}: expected a dict with {keys}, found {found}")
    try:
        ids = np.asarray(data["target_pixel_ids"]).reshape(-1).astype(np.int64)
        xs = np.asarray(data["x_coords"]).reshape(-1)
        ys = np.asarray(data["y_coords"]).reshape(-1)
        uv = np.asarray(data["source_uv_points"]).reshape(-1, 2)
        if uv.dtype.kind != "f":
            uv = uv.astype(np.float64)
        res = int(np.asarray(data["target_resolution"]).reshape(()))
    except (TypeError, ValueError) as e:
        raise AppearanceFileError(f"{path}: malformed map arrays ({e})") from None
    if ids.size and (ids.min() < 0 or ids.max() >= min(xs.size, ys.size)):
        raise AppearanceFileError(f"{path}: target_pixel_ids point outside x_coords/y_coords")
    if uv.shape[0] != ids.size:
        raise AppearanceFileError(f"{path}: {uv.shape[0]} source points for {ids.size} target pixels")
    rows = ys[ids].astype(np.int64)
    cols = xs[ids].astype(np.int64)
    if rows.size and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= res):
        raise AppearanceFileError(f"{path}: target texels outside the {res}² texture")
    # keep the last entry of a repeated target texel
    flat = rows * res + cols
    _, last_rev = np.unique(flat[::-1], return_index=True)
    keep = np.sort(flat.size - 1 - last_rev)
    return FlameToSmplxMap(rows=rows[keep], cols=cols[keep], source_uv=uv[keep], resolution=res)


def load_rgb_png(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8, row 0 = top (alpha dropped, grey expanded)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            a = np.array(im.convert("RGB"))
    except Exception as e:  # noqa: BLE001
        raise AppearanceFileError(f"{path} is not a readable image: {e}") from None
    return np.ascontiguousarray(a, dtype=np.uint8)


def load_uv_mask(path: str | os.PathLike) -> np.ndarray:
    """A FLAME-UV mask PNG as upstream reads it: channel 0 / 255, (H, W) float32 in [0, 1]."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            a = np.asarray(im)
    except Exception as e:  # noqa: BLE001
        raise AppearanceFileError(f"{path} is not a readable mask image: {e}") from None
    if a.ndim == 3:
        a = a[..., 0]
    if a.dtype == np.uint16:
        return (a.astype(np.float32) / 65535.0).astype(np.float32)
    return a.astype(np.float32) / 255.0


def load_fixed_displacement(path: str | os.PathLike) -> np.ndarray:
    """DECA's ``fixed_displacement_256.npy``: (256, 256) float64 metres."""
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise AppearanceFileError(f"{path} is not a readable .npy array: {e}") from None
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.dtype.kind != "f":
        raise AppearanceFileError(f"{path}: expected a square float array, found {a.dtype} {a.shape}")
    return np.asarray(a, dtype=np.float64)
