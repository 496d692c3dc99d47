"""Crop maths: body crop against scikit-image (what upstream uses), part-crop pixel conventions
against independent formulas, and the camera/crop round trips."""

import numpy as np
import pytest
import torch
from pixie_backend.geometry.camera import (
    body_square,
    crop_to_image_points,
    image_ortho_camera,
    normalized_to_crop_pixels,
    square_to_crop_tform,
    weak_perspective,
)
from pixie_backend.preprocess.crop import bilinear_square, crop_parts, part_square
from skimage.transform import estimate_transform, warp

RNG = np.random.default_rng(7)


def upstream_body_crop(image01: np.ndarray, box, size: int) -> np.ndarray:
    """The upstream TestData recipe with scikit-image (independent implementation)."""
    left, top, right, bottom = box
    old = max(right - left, bottom - top)
    center = np.array([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0])
    s = int(old * 1.1)
    src = np.array([[center[0] - s / 2, center[1] - s / 2], [center[0] - s / 2, center[1] + s / 2],
                    [center[0] + s / 2, center[1] - s / 2]])
    dst = np.array([[0, 0], [0, size - 1], [size - 1, 0]])
    tform = estimate_transform("similarity", src, dst)
    return warp(image01, tform.inverse, output_shape=(size, size)).transpose(2, 0, 1), tform.params


@pytest.mark.parametrize("box", [(40.3, 12.0, 150.7, 170.2), (-30, -20, 90, 260), (100, 50, 101, 52)])
def test_body_crop_matches_skimage_warp(box):
    img = RNG.integers(0, 256, size=(200, 160, 3), dtype=np.uint8)
    center, side = body_square(torch.tensor(box, dtype=torch.float64))
    for size in (224, 64):
        want, params = upstream_body_crop(img / 255.0, box, size)
        got = bilinear_square(torch.from_numpy(img), center, side, size).numpy()
        np.testing.assert_allclose(got, want, atol=2e-6)
        np.testing.assert_allclose(square_to_crop_tform(center, side, size).numpy(), params, atol=1e-9)
    # float input gives the same crop as uint8 input
    as_float = bilinear_square(torch.from_numpy(img.astype(np.float32) / 255), center, side, 64)
    np.testing.assert_allclose(as_float.numpy(), bilinear_square(torch.from_numpy(img), center, side, 64).numpy(),
                               atol=1e-6)


def test_body_square_truncates_like_upstream():
    c, s = body_square(torch.tensor([10.0, 20.0, 110.9, 60.0]))
    assert s.item() == int(100.9 * 1.1)  # 110.99 -> 110
    np.testing.assert_allclose(c.numpy(), [60.45, 40.0])


def test_crop_and_image_points_round_trip():
    center, side = torch.tensor([[300.5, 210.25]]), torch.tensor([457.0])
    t = square_to_crop_tform(center[0], side[0], 224).numpy()
    pts = RNG.uniform(0, 600, size=(1, 10, 2))
    uv = (t @ np.c_[pts[0], np.ones(10)].T).T[:, :2]
    back = crop_to_image_points(torch.tensor(uv[None]), center, side, 224)[0].numpy()
    np.testing.assert_allclose(back, pts[0], atol=1e-3)
    corner = t @ np.array([center[0, 0] - side[0] / 2, center[0, 1] - side[0] / 2, 1.0])
    np.testing.assert_allclose(corner[:2], [0, 0], atol=1e-5)


def test_image_ortho_camera_composes_projection_and_crop():
    cam = torch.tensor([[1.1, 0.05, 0.2], [0.8, -0.3, 0.1]])
    center, side = torch.tensor([[200.0, 180.0], [640.0, 300.0]]), torch.tensor([380.0, 250.0])
    x = torch.tensor(RNG.normal(size=(2, 7, 3)), dtype=torch.float32)
    crop_px = normalized_to_crop_pixels(weak_perspective(x, cam)[..., :2], 224)
    via_crop = crop_to_image_points(crop_px, center, side, 224)
    a, bx, by = image_ortho_camera(cam, center, side, 224).unbind(-1)
    direct = torch.stack([a[:, None] * x[..., 0] + bx[:, None], a[:, None] * x[..., 1] + by[:, None]], -1)
    np.testing.assert_allclose(direct.numpy(), via_crop.numpy(), atol=1e-3)


def test_part_square_from_keypoints():
    pts = torch.tensor([[[-0.5, -0.2], [0.1, 0.3], [-0.1, 0.0]]])
    c, s = part_square(pts, 1024, 2.0)
    px = (pts[0].numpy() * 0.5 + 0.5) * 1024
    np.testing.assert_allclose(c[0].numpy(), (px.min(0) + px.max(0)) / 2, atol=1e-4)
    np.testing.assert_allclose(s[0].item(), (px.max(0) - px.min(0)).max() * 2.0, atol=1e-3)


def _ramp(h, w):
    """Image whose channel 0 is the x pixel coordinate and channel 1 the y coordinate."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return torch.tensor(np.stack([xx, yy, np.zeros_like(xx)])[None])


def test_part_crop_kornia09_samples_exactly_m_inverse_dst():
    hd = 64
    img = _ramp(hd, hd)
    center, side = torch.tensor([[[30.3, 25.7]]], dtype=torch.float64), torch.tensor([[21.0]], dtype=torch.float64)
    out = crop_parts(img, center, side, 16, "kornia09")[0, 0].numpy()
    j = np.arange(16)
    want = j * 21.0 / 15 + (30.3 - 10.5)
    np.testing.assert_allclose(out[0, 3], want, atol=1e-9)  # x along a row
    np.testing.assert_allclose(out[1][:, 3], j * 21.0 / 15 + (25.7 - 10.5), atol=1e-9)
    # the box corners land on (0, 0) and (S-1, S-1)
    assert abs(out[0, 0, 0] - (30.3 - 10.5)) < 1e-9 and abs(out[0, 0, 15] - (30.3 + 10.5)) < 1e-9


def test_part_crop_legacy_convention_shift():
    """kornia <= 0.8: homography normalised with 2/(size-1), grid sampled with align_corners=False."""
    hd, s_out, side, cx = 64, 16, 21.0, 30.3
    img = _ramp(hd, hd)
    center = torch.tensor([[[cx, 25.7]]], dtype=torch.float64)
    out = crop_parts(img, center, torch.tensor([[side]], dtype=torch.float64), s_out, "kornia_legacy")[0, 0].numpy()
    j = np.arange(s_out)
    xn = (2 * j + 1) / s_out - 1  # affine_grid(align_corners=False) output coordinates
    dst_pix = (xn + 1) * (s_out - 1) / 2  # corner-aligned inverse normalisation of the destination
    src_pix = dst_pix * side / (s_out - 1) + (cx - side / 2)
    src_n = src_pix * 2 / (hd - 1) - 1  # corner-aligned normalisation of the source
    sample = ((src_n + 1) * hd - 1) / 2  # grid_sample(align_corners=False)
    np.testing.assert_allclose(out[0, 5], sample, atol=1e-9)
    kornia09 = j * side / (s_out - 1) + (cx - side / 2)
    shift = np.abs(sample - kornia09)
    assert shift.max() > 0.2 and shift.max() < 1.0  # sub-pixel, largest at the border


def test_part_crops_batch_and_unknown_convention():
    img = torch.rand(2, 3, 128, 128)
    centers = torch.tensor([[[60.0, 60.0], [30.0, 90.0], [90.0, 30.0]], [[64.0, 64.0], [10.0, 10.0], [120, 120]]])
    sides = torch.tensor([[40.0, 30.0, 50.0], [64.0, 20.0, 30.0]])
    out = crop_parts(img, centers, sides, 32)
    assert out.shape == (2, 3, 3, 32, 32)
    single = crop_parts(img[1:2], centers[1:2, 2:3], sides[1:2, 2:3], 32)
    torch.testing.assert_close(out[1, 2], single[0, 0])
    with pytest.raises(ValueError, match="convention"):
        crop_parts(img, centers, sides, 32, "nearest")


def test_body_crop_in_float64_matches_skimage_to_rounding():
    """The float64 crop (``PixieConfig(dtype="float64")``) is scikit-image's warp to float64 rounding."""
    img = RNG.integers(0, 256, size=(200, 160, 3), dtype=np.uint8)
    box = (40.3, 12.0, 150.7, 170.2)
    center, side = body_square(torch.tensor(box, dtype=torch.float64))
    want, _ = upstream_body_crop(img / 255.0, box, 224)
    got = bilinear_square(torch.from_numpy(img), center, side, 224, torch.float64)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, atol=1e-13)
