"""Reading images robustly: every failure is an :class:`ImageLoadError` with a message a user can act on.

* Any format Pillow reads; the size is checked from the header **before** decoding
  (``max_pixels``), so a decompression bomb is refused cheaply.
* EXIF orientation is applied, so the photo is upright as every viewer shows it. (Upstream PIXIE
  ignores EXIF orientation.)
* Greyscale, palette, CMYK and alpha images become RGB; alpha is dropped without compositing, as
  upstream's ``[:, :, :3]`` does.
* 16-bit images are scaled by their full range (upstream divides everything by 255, which makes
  16-bit images far too bright).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Default limit: 100 megapixels (e.g. 12,000 x 8,333).
DEFAULT_MAX_PIXELS = 100_000_000
# The size limit is ours (checked from the header before decoding, see load_image), so that the
# user's --max-megapixels applies instead of Pillow's fixed decompression-bomb threshold.
Image.MAX_IMAGE_PIXELS = None
MIN_SIDE = 16


class ImageLoadError(ValueError):
    """The file is not a usable image (corrupt, empty, not an image, too large or too small).

    ``code`` is a stable word for programs: ``missing``, ``empty``, ``unreadable``, ``too_large``,
    ``too_small`` or ``invalid``.
    """

    def __init__(self, message: str, code: str = "unreadable"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class LoadedImage:
    """An RGB image ready for cropping."""

    pixels: np.ndarray  #: (H, W, 3) uint8, or float32 in [0, 1] for high-bit-depth sources
    source: str  #: path or description
    original_size: tuple[int, int]  #: (width, height) as stored, before EXIF rotation
    exif_transposed: bool

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file as RGB.

    Raises:
        ImageLoadError: with the reason (missing, empty, unreadable, too large, too small).
    """
    p = Path(path)
    if not p.is_file():
        raise ImageLoadError(f"{p}: no such file", "missing")
    if p.stat().st_size == 0:
        raise ImageLoadError(f"{p}: the file is empty (0 bytes)", "empty")
    return _decode(p, str(p), max_pixels)


def load_image_bytes(data: bytes, source: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an encoded image (the bytes of a JPEG, PNG, ... file) as RGB; same rules as :func:`load_image`."""
    if not data:
        raise ImageLoadError(f"{source}: the image is empty (0 bytes)", "empty")
    return _decode(io.BytesIO(data), source, max_pixels)


def _decode(fp, source: str, max_pixels: int) -> LoadedImage:
    try:
        with Image.open(fp) as im:
            w, h = im.size
            _check_size(w, h, max_pixels, source)
            im.load()
            return _to_rgb(im, source, (w, h))
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{source}: not an image file, or a format that cannot be read") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{source}: refused, the image is too large ({e})", "too_large") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageLoadError(f"{source}: the image is corrupt or truncated ({e})") from None


def from_array(array: np.ndarray, source: str = "<array>", max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Wrap an in-memory image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); uint8, uint16 or float in [0, 1]."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ImageLoadError(f"{source}: expected an (H, W[, C]) image array, got shape {a.shape}", "invalid")
    _check_size(a.shape[1], a.shape[0], max_pixels, source)
    a = a[:, :, :3]
    if a.dtype == np.uint8:
        pixels = np.ascontiguousarray(a)
    elif a.dtype == np.uint16:
        pixels = (a.astype(np.float32) / 65535.0)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageLoadError(f"{source}: the image contains NaN or infinite values", "invalid")
        pixels = np.clip(a, 0.0, 1.0).astype(np.float32)
    else:
        raise ImageLoadError(f"{source}: unsupported pixel type {a.dtype}", "invalid")
    return LoadedImage(pixels, source, (a.shape[1], a.shape[0]), False)


def _check_size(w: int, h: int, max_pixels: int, source: str) -> None:
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageLoadError(f"{source}: the image is too small ({w}x{h}); at least {MIN_SIDE}x{MIN_SIDE} is needed",
                             "too_small")
    if w * h > max_pixels:
        raise ImageLoadError(
            f"{source}: the image is too large ({w}x{h} = {w * h / 1e6:.0f} MP, limit "
            f"{max_pixels / 1e6:.0f} MP); downscale it or raise --max-megapixels", "too_large"
        )


def _to_rgb(im: Image.Image, source: str, size: tuple[int, int]) -> LoadedImage:
    transposed = _exif_orientation(im) != 1
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / top, 0.0, 1.0).astype(np.float32)
        return LoadedImage(np.repeat(g[:, :, None], 3, axis=2), source, size, transposed)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        if not np.isfinite(a).all():
            raise ImageLoadError(f"{source}: the image contains NaN or infinite values")
        g = np.clip(a / max(float(a.max()), 1.0), 0.0, 1.0)
        return LoadedImage(np.repeat(g[:, :, None], 3, axis=2), source, size, transposed)
    if im.mode != "RGB":
        im = im.convert("RGB")  # greyscale/palette/CMYK -> RGB; alpha is dropped, not composited
    return LoadedImage(np.ascontiguousarray(np.asarray(im, dtype=np.uint8)), source, size, transposed)


def _exif_orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - broken EXIF is not worth failing the image for
        return 1
