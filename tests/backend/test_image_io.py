"""Bad and unusual image files: every one gets a clear ImageLoadError or is read correctly."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from pixie_backend.preprocess.image_io import ImageLoadError, from_array, load_image


def _png_with_header_size(path, w, h):
    """A valid PNG signature + IHDR claiming w x h, with a tiny IDAT (never decoded)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


def test_rgb_png_round_trip(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.pixels.dtype == np.uint8 and np.array_equal(img.pixels, a)
    assert (img.width, img.height) == (30, 40)


def test_grayscale_rgba_palette_become_rgb(tmp_path):
    g = np.tile(np.arange(64, dtype=np.uint8), (32, 1))
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.pixels.shape == (32, 64, 3) and np.array_equal(img.pixels[..., 1], g)
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red: alpha is dropped, not composited
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert np.array_equal(load_image(tmp_path / "t.png").pixels[0, 0], [200, 0, 0])
    Image.fromarray(g, "L").convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").pixels.shape == (32, 64, 3)


def test_16bit_is_scaled_by_full_range(tmp_path):
    a = np.full((20, 20), 65535, np.uint16)
    a[0, 0] = 32768
    Image.fromarray(a).save(tmp_path / "d.png")
    img = load_image(tmp_path / "d.png")
    assert img.pixels.dtype == np.float32
    assert img.pixels.max() == pytest.approx(1.0) and img.pixels[0, 0, 0] == pytest.approx(0.5, abs=1e-4)


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :10] = 255  # white left band in the stored pixels
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    img = load_image(tmp_path / "r.jpg")
    assert (img.width, img.height) == (20, 40) and img.exif_transposed
    assert img.pixels[:8].mean() > 200 and img.pixels[-8:].mean() < 50  # the band is now on top


def test_bad_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "notes.png").write_text("this is not an image")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(tmp_path / "notes.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageLoadError, match="corrupt|truncated"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    _png_with_header_size(tmp_path / "huge.png", 60000, 60000)
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(tmp_path / "huge.png")
    Image.fromarray(np.zeros((4, 300, 3), np.uint8)).save(tmp_path / "thin.png")
    with pytest.raises(ImageLoadError, match="too small"):
        load_image(tmp_path / "thin.png")


def test_arrays():
    assert from_array(np.zeros((20, 20), np.uint8)).pixels.shape == (20, 20, 3)
    assert from_array(np.zeros((20, 20, 4), np.float64)).pixels.dtype == np.float32
    assert from_array(np.full((20, 20, 3), 65535, np.uint16)).pixels.max() == pytest.approx(1.0)
    with pytest.raises(ImageLoadError, match="NaN"):
        from_array(np.full((20, 20, 3), np.nan))
    with pytest.raises(ImageLoadError, match="shape"):
        from_array(np.zeros((20, 20, 2), np.uint8))
