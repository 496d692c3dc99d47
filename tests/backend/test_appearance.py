"""Face appearance: data files, UV transfer, rasteriser, lighting, normal maps, DECA loading, the
detail gate and missing optional files (synthetic assets, small textures and tiny networks)."""

from __future__ import annotations

import io
import math
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch
from pixie_backend.appearance import files as AF
from pixie_backend.appearance.rasterize import rasterize, uv_to_pixels
from pixie_backend.appearance.uv_transfer import UvTransfer


@pytest.fixture(scope="module")
def body():
    from pixie_backend.synthetic import build_body_model

    return build_body_model("small", 0)


@pytest.fixture(scope="module")
def face_dir(tmp_path_factory, body):
    from pixie_backend.synthetic.face_assets import write_face_assets

    d = tmp_path_factory.mktemp("face-assets")
    write_face_assets(d, model=body, albedo_resolution=32, texture_size=256)
    return d


# ------------------------------------------------------------------ files in the official formats
def test_synthetic_face_assets_have_the_official_formats(face_dir):
    from PIL import Image

    with zipfile.ZipFile(face_dir / "FLAME_albedo_from_BFM.npz") as zf:  # np.savez layout, uncompressed
        assert sorted(zf.namelist()) == ["MU.npy", "PC.npy"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    with np.load(face_dir / "FLAME_albedo_from_BFM.npz") as z:
        mu, pc = z["MU"], z["PC"]
    assert mu.shape == (3 * 32 * 32,) and pc.shape == (3 * 32 * 32, 199)
    assert np.all(pc[:, 50:] == 0) and np.abs(pc[:, :50]).max() > 0
    img = mu.reshape(32, 32, 3)
    face = img[img.sum(-1) > 0]
    assert len(face) and (face[:, 2] > face[:, 0]).mean() > 0.9  # BGR: red (last) > blue for skin
    assert (img.sum(-1) == 0).any()  # no data outside the "scan", as BFM
    # the texel map loads the way upstream loads it
    cached = np.load(face_dir / "flame2smplx_tex_1024.npy", allow_pickle=True, encoding="latin1").item()
    assert set(cached) == {"x_coords", "y_coords", "target_pixel_ids", "source_uv_points", "target_resolution"}
    assert cached["target_resolution"] == 256 and cached["x_coords"].shape == (256 * 256,)
    ids = cached["target_pixel_ids"]
    assert len(np.unique(ids)) == len(ids) and cached["source_uv_points"].shape == (len(ids), 2)
    assert (cached["source_uv_points"] >= 0).all() and (cached["source_uv_points"] <= 1).all()
    for name in ("uv_face_mask.png", "uv_face_eye_mask.png"):
        with Image.open(face_dir / name) as im:
            assert im.mode == "RGBA" and im.size == (256, 256)
    fm, fem = AF.load_uv_mask(face_dir / "uv_face_mask.png"), AF.load_uv_mask(face_dir / "uv_face_eye_mask.png")
    assert (fm <= fem + 1e-6).all() and fem.sum() > fm.sum() > 0  # the eyes are in one mask only
    fixed = np.load(face_dir / "fixed_displacement_256.npy")
    assert fixed.dtype == np.float64 and fixed.shape == (256, 256) and 5e-4 < np.abs(fixed).max() < 5e-3
    with Image.open(face_dir / "smplx_tex.png") as im:
        assert im.mode == "RGB" and im.size == (256, 256)


def test_albedo_loader_maps_the_basis_and_keeps_the_used_columns(face_dir, tmp_path):
    space = AF.load_albedo_space(face_dir / "FLAME_albedo_from_BFM.npz")
    assert space.resolution == 32 and space.basis.shape == (3 * 32 * 32, 50)
    assert isinstance(AF._npz_member_memmap(face_dir / "FLAME_albedo_from_BFM.npz", "PC"), np.memmap)
    with np.load(face_dir / "FLAME_albedo_from_BFM.npz") as z:
        np.testing.assert_array_equal(space.basis, z["PC"][:, :50])
        compressed = tmp_path / "c.npz"
        np.savez_compressed(compressed, MU=z["MU"], PC=z["PC"])
    assert AF._npz_member_memmap(compressed, "PC") is None  # falls back to reading it
    np.testing.assert_array_equal(AF.load_albedo_space(compressed).basis, space.basis)
    bad = tmp_path / "bad.npz"
    np.savez(bad, MU=np.zeros(10), PC=np.zeros((10, 199)))
    with pytest.raises(AF.AppearanceFileError, match="not a square RGB image"):
        AF.load_albedo_space(bad)
    np.savez(bad, mean=np.zeros(12))
    with pytest.raises(AF.AppearanceFileError, match="lacks MU/PC"):
        AF.load_albedo_space(bad)


class _Evil:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-pixie-test",))


def test_texel_map_is_read_without_running_code(tmp_path, face_dir):
    path = tmp_path / "flame2smplx_tex_1024.npy"
    arr = np.empty((), dtype=object)
    arr[()] = {"x_coords": _Evil()}
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(AF.AppearanceFileError, match="refusing to unpickle shutil.rmtree"):
        AF.load_flame2smplx_map(path)
    np.save(path, np.zeros(4))
    with pytest.raises(AF.AppearanceFileError, match="expected a pickled dict"):
        AF.load_flame2smplx_map(path)
    m = AF.load_flame2smplx_map(face_dir / "flame2smplx_tex_1024.npy")
    assert m.resolution == 256 and len(m) > 100


# ------------------------------------------------------------------ FLAME UV -> SMPL-X UV
def _hand_map(rows, cols, uv, res=8):
    return AF.FlameToSmplxMap(np.asarray(rows), np.asarray(cols), np.asarray(uv, np.float64), res)


def test_nearest_transfer_reads_the_texel_upstream_reads():
    s = 4
    flame = torch.arange(3 * s * s, dtype=torch.float64).reshape(1, 3, s, s)
    uv = [[0.0, 0.0], [0.99, 0.99], [0.5, 0.5], [0.3, 0.8], [1.0, 1.0], [0.0, 1.0]]
    m = _hand_map([0, 1, 2, 3, 4, 5], [7, 6, 5, 4, 3, 2], uv)
    t = UvTransfer(m)
    base = torch.full((3, 8, 8), -1.0, dtype=torch.float64)
    out = t.paste_nearest(flame, base)
    for (r, c), (u, v) in zip(zip(m.rows, m.cols, strict=True), uv, strict=True):
        # upstream: row = int(clip(S·(1−v), 0, S)), col = int(clip(S·u, 0, S)); S itself is clipped to S−1
        sr, sc = min(int(s * (1 - v)), s - 1), min(int(s * u), s - 1)
        assert torch.equal(out[0, :, r, c], flame[0, :, sr, sc])
    assert (out[0, :, 6:, :] == -1).all() and (base == -1).all()  # the rest keeps the base; base untouched
    two = t.paste_nearest(torch.cat([flame, -flame]))
    assert torch.equal(two[1], -two[0])  # every batch element (upstream: element 0 only)


def test_a_repeated_target_texel_keeps_its_last_entry(tmp_path):
    path = tmp_path / "m.npy"
    grid = np.arange(4, dtype=np.float64) + 0.5
    d = {"x_coords": np.repeat(grid, 4), "y_coords": np.tile(grid, 4), "target_pixel_ids": np.array([5, 6, 5]),
         "source_uv_points": np.array([[0.1, 0.1], [0.2, 0.2], [0.9, 0.9]]), "target_resolution": 4}
    np.save(path, d, allow_pickle=True)
    m = AF.load_flame2smplx_map(path)
    assert len(m) == 2 and m.source_uv[m.rows * 4 + m.cols == 1 * 4 + 1].tolist() == [[0.9, 0.9]]


def test_bilinear_transfer_reproduces_linear_images():
    s = 16
    c = (torch.arange(s, dtype=torch.float64) + 0.5) / s
    flame = torch.stack([c[None, :].expand(s, s), (1 - c)[:, None].expand(s, s)])[None]  # u and v per texel
    rng = np.random.default_rng(0)
    uv = rng.uniform(0.5 / s, 1 - 0.5 / s, size=(40, 2))
    m = _hand_map(np.arange(40) // 8, np.arange(40) % 8, uv)
    out = UvTransfer(m).sample_bilinear(flame)
    np.testing.assert_allclose(out[0, 0, m.rows, m.cols].numpy(), uv[:, 0], atol=1e-12)
    np.testing.assert_allclose(out[0, 1, m.rows, m.cols].numpy(), uv[:, 1], atol=1e-12)


def test_transfer_puts_a_pattern_at_the_expected_mannequin_texels(body):
    """A disk around the nose tip in FLAME UV lands on the SMPL-X texels whose surface points are
    near the nose tip, and only there (the texels' 3-D points from an independent rasterisation)."""
    from pixie_backend.synthetic.face_assets import flame_uv, landmarks_uv, texel_map

    res = 512
    cached = texel_map(body, res)
    ids = cached["target_pixel_ids"]
    m = _hand_map(cached["y_coords"][ids].astype(int), cached["x_coords"][ids].astype(int),
                  cached["source_uv_points"], res)
    nose = landmarks_uv(body)[13]  # iBUG 30, the nose tip
    s = 256
    cu = (np.arange(s) + 0.5) / s
    uu, vv = np.meshgrid(cu, 1 - cu)
    disk = (np.hypot(uu - nose[0], vv - nose[1]) < 0.03).astype(np.float64)
    out = UvTransfer(m).paste_nearest(torch.from_numpy(disk)[None, None])[0, 0].numpy()
    ras = rasterize(uv_to_pixels(body.vt, res), body.ft.astype(np.int64), res, res)
    pts = (body.v_template[body.f[ras.face].astype(np.int64)] * ras.bary[:, :, None]).sum(1)
    lit = out.reshape(-1)[ras.pixel] > 0.5
    tri = body.v_template[body.f[body.lmk_faces_idx[13]].astype(np.int64)]
    tip = (tri * body.lmk_bary_coords[13][:, None]).sum(0)
    dist = np.linalg.norm(pts - tip, axis=1)
    assert lit.sum() > 20
    radius_3d = 0.03 * 2 * np.pi * np.linalg.norm(tip[[0, 2]] - body.joints[15][[0, 2]])  # arc length of du
    assert dist[lit].max() < 2.0 * radius_3d  # lit texels lie around the nose tip ...
    near = dist < 0.4 * radius_3d
    assert lit[near].all()  # ... and every texel close to it is lit
    assert np.abs(flame_uv(body, tip[None])[0] - nose).max() < 1e-12


# ------------------------------------------------------------------ rasteriser, lighting, normals
def test_rasterize_covers_pixel_centres_and_keeps_the_nearest():
    pts = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    ras = rasterize(pts, faces, 4, 4)
    assert sorted(ras.pixel.tolist()) == list(range(16))  # a shared edge: every pixel exactly once
    rows, cols = ras.pixel // 4, ras.pixel % 4
    recon = (pts[faces[ras.face]] * ras.bary[:, :, None]).sum(1)
    np.testing.assert_allclose(recon, np.stack([cols + 0.5, rows + 0.5], 1), atol=1e-12)
    # two overlapping triangles: the one with the smaller depth wins
    pts2 = np.concatenate([pts[:3], pts[:3]])
    ras = rasterize(pts2, np.array([[0, 1, 2], [3, 4, 5]]), 4, 4, depth=np.array([2.0, 2, 2, 1, 1, 1]))
    assert (ras.face == 1).all()


def test_uv_rasterizer_world2uv_interpolates(body):
    from pixie_backend.appearance.uv_raster import UvRasterizer

    r = UvRasterizer(body.vt, body.ft.astype(np.int64), body.f.astype(np.int64), 128)
    v = torch.from_numpy(body.v_template)[None]
    uv = r.world2uv(v)
    cov = r.covered()
    assert uv.shape == (1, 3, 128, 128) and (uv[0, :, ~cov] == 0).all()
    assert 0.2 < cov.float().mean() < 0.9
    # the interpolated positions stay on their triangles
    tri = v[0, r.vertex_ids]  # (M, 3, 3)
    got = uv[0].reshape(3, -1)[:, r.pixel].T
    assert torch.all(got >= tri.min(1).values - 1e-9) and torch.all(got <= tri.max(1).values + 1e-9)


def test_sh_shading_values():
    from pixie_backend.appearance.lighting import SH_FACTORS, sh_shading

    n = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    normals = n.T.reshape(1, 3, 1, 3)
    light = torch.zeros(1, 9, 3, dtype=torch.float64)
    light[0, 0] = torch.tensor([1.0, 2.0, 3.0])
    s = sh_shading(normals, light)
    np.testing.assert_allclose(s[0, :, 0, :].numpy(), np.array([[1.0], [2.0], [3.0]]) / math.sqrt(4 * math.pi) *
                               np.ones(3))
    light.zero_()
    light[0, 3, 0] = 1.0  # z
    light[0, 8, 1] = 1.0  # 3z² − 1
    s = sh_shading(normals, light)[0, :, 0]
    a1 = (2 * math.pi / 3) * math.sqrt(3 / (4 * math.pi))
    np.testing.assert_allclose(s[0].numpy(), [a1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(s[1].numpy(), [2 * SH_FACTORS[8], -SH_FACTORS[8], -SH_FACTORS[8]], atol=1e-15)


def test_vertex_normals_point_outward(body):
    from pixie_backend.appearance.lighting import vertex_normals

    v = torch.from_numpy(body.v_template)[None]
    n = vertex_normals(v, torch.from_numpy(body.f.astype(np.int64)))[0]
    head = body.joints[15]
    on_head = (v[0, :, 1] > head[1] + 0.05).numpy()  # the crown
    out = ((v[0] - torch.from_numpy(head)) * n).sum(1).numpy()
    assert (out[on_head] > 0).mean() > 0.95


def _plane(res: int, mirrored: bool = False):
    """Texels of a unit plane z = 0 with u along +x (−x if mirrored) and v along +y."""
    c = (torch.arange(res, dtype=torch.float64) + 0.5) / res
    u, v = c[None, :].expand(res, res), (1 - c)[:, None].expand(res, res)
    x = -u if mirrored else u
    pos = torch.stack([x, v, torch.zeros_like(u)], -1).reshape(1, -1, 3)
    nrm = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(1, res * res, 3)
    return pos, nrm, torch.arange(res * res)


def test_tangent_normals_of_a_sloped_displacement():
    from pixie_backend.appearance.normal_map import neighbours, tangent_normals

    res = 32
    pos, nrm, pix = _plane(res)
    nbr = neighbours(pix, res)
    flat = tangent_normals(pos, nrm, torch.zeros(1, res * res, dtype=torch.float64), nbr, res)
    assert torch.equal(flat, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(flat))
    a, b = 0.2, -0.1
    d = a * pos[..., 0] + b * pos[..., 1]  # d = a·x + b·y
    n = tangent_normals(pos, nrm, d, nbr, res)
    want = torch.tensor([-a, -b, 1.0], dtype=torch.float64) / math.sqrt(1 + a * a + b * b)
    torch.testing.assert_close(n, want.expand_as(n), atol=1e-12, rtol=0)
    # mirrored UVs (u along −x): T = −x, B = −(N × T) = +y, so the map is the same
    pos_m, _, _ = _plane(res, mirrored=True)
    d_m = -a * pos_m[..., 0] + b * pos_m[..., 1]  # the same height field in u, v
    n_m = tangent_normals(pos_m, nrm, d_m, nbr, res)
    torch.testing.assert_close(n_m, n, atol=1e-12, rtol=0)


# ------------------------------------------------------------------ DECA
def test_deca_loads_strictly_and_names_keys(tmp_path):
    from pixie_backend.appearance.deca import CheckpointError, DecaConfig, DecaNet, load_deca_net, save_deca_checkpoint

    torch.manual_seed(0)
    net = DecaNet(DecaConfig.tiny()).eval()
    path = tmp_path / "deca_model.tar"
    save_deca_checkpoint(net, path)
    loaded = load_deca_net(path, DecaConfig.tiny())
    for k, v in net.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    eps = [m.eps for m in loaded.D_detail.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert eps == [1e-5] + [0.8] * 5  # DECA's BatchNorm2d(C, 0.8) quirk
    state = net.checkpoint_state()
    del state["D_detail"]["conv_blocks.3.running_var"]
    state["E_detail"]["layers.4.weight"] = torch.zeros(1)
    state["opt"] = {"state": {}}  # training leftovers are ignored
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        load_deca_net(path, DecaConfig.tiny())
    msg = str(e.value)
    assert "D_detail: missing conv_blocks.3.running_var" in msg and "E_detail: unexpected layers.4.weight" in msg
    assert "deca_model.tar" in msg
    torch.save({"E_flame": state["E_flame"]}, path)
    with pytest.raises(CheckpointError, match="lacks the module.*E_detail, D_detail"):
        load_deca_net(path, DecaConfig.tiny())
    with pytest.raises(CheckpointError, match="does not match"):  # a full-size file into tiny networks
        save_deca_checkpoint(net, path)
        load_deca_net(path, DecaConfig())


def test_deca_generator_output_range():
    from pixie_backend.appearance.deca import DetailGenerator

    g = DetailGenerator().eval()
    with torch.no_grad():
        out = g(torch.randn(2, 181) * 50)
    assert out.shape == (2, 1, 256, 256) and out.abs().max() <= 0.01 + 1e-7  # tanh x max_z


# ------------------------------------------------------------------ the stage
@pytest.fixture(scope="module")
def stage(small_data_dir):
    from pixie_backend.appearance.model import FaceAppearance
    from pixie_backend.assets import DataFolder
    from pixie_backend.body.smplx_layer import PixieSMPLX
    from pixie_backend.config import AppearanceConfig

    d = small_data_dir
    smplx = PixieSMPLX.from_files(d / "SMPLX_NEUTRAL_2020.npz", d / "smplx_extra_joints.yaml", d / "SMPLX_to_J14.pkl")
    cfg = AppearanceConfig(lit_texture=True, photo_texture=True)
    look, notices = FaceAppearance.from_data(DataFolder(d), cfg, smplx.faces.numpy())
    assert notices == [] and look is not None
    return look.eval(), smplx


@pytest.fixture(scope="module")
def small_output(small_pixie, astronaut):
    r = small_pixie.predict([astronaut], batch_size=1)[0]
    assert r.ok, r.message
    return r


def _with_head_weights(out, weights):
    from dataclasses import replace

    b = len(weights)
    out = out.index(torch.zeros(b, dtype=torch.long))
    mw = out.moderator_weights.clone()
    mw[:, 0, 1] = torch.tensor(weights)
    mw[:, 0, 0] = 1 - mw[:, 0, 1]
    return replace(out, moderator_weights=mw)


def test_detail_is_gated_by_the_head_moderator(stage, small_output):
    look, smplx = stage
    image_hd = torch.rand(1, 3, 1024, 1024).expand(3, -1, -1, -1)
    out = _with_head_weights(small_output.output, [0.59, 0.61, 0.6])
    res = look(out, image_hd, smplx)
    assert res.detail_gate.tolist() == [False, True, False]  # strictly above 0.6, as the demo
    np.testing.assert_allclose(res.head_confidence.numpy(), [0.59, 0.61, 0.6], atol=1e-6)
    assert (res.displacement[[0, 2]] == 0).all() and res.displacement[1].abs().max() > 1e-4
    flat = torch.tensor([0.0, 0.0, 1.0])[:, None, None]
    assert (res.normal_map[[0, 2]] == flat).all() and not (res.normal_map[1] == flat).all()
    assert (res.displacement[1][look.face_mask == 0] == 0).all()  # only inside the face mask
    # the rest of the appearance does not depend on the gate
    torch.testing.assert_close(res.albedo[0], res.albedo[1], atol=1e-6, rtol=0)


def test_stage_outputs_and_float64(stage, small_output):
    look, smplx = stage
    out = _with_head_weights(small_output.output, [0.9])
    image_hd = torch.rand(1, 3, 1024, 1024)
    res = look(out, image_hd, smplx)
    r = look.resolution
    assert res.albedo.shape == res.lit.shape == res.photo.shape == (1, 3, r, r)
    assert res.displacement.shape == (1, r, r) and res.normal_map.shape == (1, 3, r, r)
    torch.testing.assert_close(res.normal_map.norm(dim=1), torch.ones(1, r, r))
    unmapped = ~look.transfer.coverage()
    assert torch.equal(res.albedo[0][:, unmapped], look.base_texture[:, unmapped])  # the body keeps the stock texture
    res64 = look.double()(out.to(torch.float64), image_hd.double(), smplx.double())
    look.float()
    smplx.float()
    assert res64.albedo.dtype == torch.float64
    torch.testing.assert_close(res64.albedo.float(), res.albedo, atol=1e-5, rtol=0)
    torch.testing.assert_close(res64.displacement.float(), res.displacement, atol=1e-6, rtol=0)


def test_official_transfer_option(stage, small_output):
    from dataclasses import replace

    look, smplx = stage
    out = _with_head_weights(small_output.output, [0.9])
    tex = out.params.tex
    official = replace(look.cfg, transfer="official")
    look.cfg, saved = official, look.cfg
    try:
        res = look(out, torch.rand(1, 3, 1024, 1024), smplx)
    finally:
        look.cfg = saved
    want = look.transfer.paste_nearest(look.albedo_model.official(tex), look.base_texture)
    assert torch.equal(res.albedo, want)


def test_photo_texture_uses_only_visible_face_texels(stage, small_output):
    look, smplx = stage
    out = small_output.output
    image_hd = torch.zeros(1, 3, 1024, 1024)
    image_hd[:, 0] = 1.0  # a red photo
    from pixie_backend.appearance.photo import photo_texture

    tex, w = photo_texture(look.raster, look.faces, out.vertices, out.transformed_vertices, image_hd,
                           look.face_eye_mask, torch.zeros(1, 3, look.resolution, look.resolution))
    assert w.max() > 0.5 and (w[0, 0][look.face_eye_mask == 0] == 0).all()
    torch.testing.assert_close(tex[:, 0], w[:, 0])  # red where the photo is used, black elsewhere
    # the back of the head faces away: never taken from the photo
    from pixie_backend.appearance.lighting import vertex_normals

    n = look.raster.world2uv(vertex_normals(out.vertices, look.faces))
    assert (w[0, 0][n[0, 2] > 0] == 0).all()


def test_missing_optional_files_turn_features_off_with_one_notice(small_data_dir, tmp_path):
    from pixie_backend.appearance.model import FaceAppearance
    from pixie_backend.assets import DataFolder
    from pixie_backend.config import AppearanceConfig

    d = tmp_path / "data"
    shutil.copytree(small_data_dir, d)
    faces = np.zeros((0, 3), np.int64)
    (d / "deca_model.tar").unlink()
    look, notices = FaceAppearance.from_data(DataFolder(d), AppearanceConfig(), faces)
    assert len(notices) == 1 and "facial detail (displacement) off: missing deca_model.tar" in notices[0]
    assert look is not None and look.cfg.albedo and not look.cfg.detail and look.deca is None
    (d / "FLAME_albedo_from_BFM.npz").unlink()
    look, notices = FaceAppearance.from_data(DataFolder(d), AppearanceConfig(), faces)
    assert look is None and len(notices) == 2 and "FLAME_albedo_from_BFM.npz" in notices[0]
    # a corrupt file is a notice too, never an error
    (d / "FLAME_albedo_from_BFM.npz").write_bytes(b"not a zip")
    look, notices = FaceAppearance.from_data(DataFolder(d), AppearanceConfig(detail=False), faces)
    assert look is None and len(notices) == 1 and "not a readable albedo model" in notices[0]


def test_pixie_runs_and_reports_without_the_optional_files(small_data_dir, tmp_path, astronaut):
    from pixie_backend.config import PixieConfig
    from pixie_backend.pipeline import Pixie

    d = tmp_path / "data"
    shutil.copytree(small_data_dir, d)
    for name in ("deca_model.tar", "FLAME_albedo_from_BFM.npz"):
        (d / name).unlink()
    px = Pixie(d, PixieConfig(), detector="none")
    assert px.appearance is None and len(px.appearance_notices) == 2
    r = px.predict([astronaut])[0]
    assert r.ok and r.output is not None and r.appearance is None


def test_pickled_map_written_by_python2_style_pickles(tmp_path):
    """A protocol-2 pickle of the dict (as an older NumPy writes it) reads the same."""
    grid = np.arange(4, dtype=np.float64) + 0.5
    d = {"x_coords": np.repeat(grid, 4), "y_coords": np.tile(grid, 4), "target_pixel_ids": np.array([1, 2]),
         "source_uv_points": np.array([[0.1, 0.1], [0.2, 0.2]], np.float32), "target_resolution": np.int64(4)}
    arr = np.empty((), dtype=object)
    arr[()] = d
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    pickle.dump(arr, buf, protocol=2)
    path = tmp_path / "m.npy"
    path.write_bytes(buf.getvalue())
    m = AF.load_flame2smplx_map(path)
    assert m.source_uv.dtype == np.float32 and m.resolution == 4 and m.rows.tolist() == [1, 2]


def test_registry_and_doctor_list_every_appearance_file(tmp_path, capsys):
    from pixie_backend.appearance.model import FEATURE_FILES
    from pixie_backend.assets import ASSET_BY_KEY
    from pixie_backend.cli import main

    keys = {k for files in FEATURE_FILES.values() for k in files}
    for k in keys:
        spec = ASSET_BY_KEY[k]
        assert spec.purpose and spec.licence and (spec.download or spec.instructions)
        if spec.need.value == "optional":
            assert spec.missing_effect, k
    main(["doctor", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    for name in ("uv_face_mask.png", "uv_face_eye_mask.png", "fixed_displacement_256.npy", "deca_model.tar"):
        assert f"[MISSING] {name}" in out
    assert "missing means: no facial detail (displacement and normal map)" in out


def test_doctor_accepts_the_face_files_and_finds_truncated_ones(small_data_dir, tmp_path):
    """The texel map is a pickled dict (an object array): the doctor checks it without unpickling,
    and finds a cut-off copy of it or of a plain array."""
    from pixie_backend.assets import ASSET_BY_KEY
    from pixie_backend.doctor import check_file

    for key in ("flame2smplx_map", "deca_fixed_displacement", "uv_face_mask", "flame_albedo", "deca_model"):
        spec = ASSET_BY_KEY[key]
        assert check_file(spec, small_data_dir / spec.filename) is None, key
    for key in ("flame2smplx_map", "deca_fixed_displacement"):
        spec = ASSET_BY_KEY[key]
        cut = tmp_path / spec.filename
        cut.write_bytes((small_data_dir / spec.filename).read_bytes()[:-7])
        assert "truncated" in check_file(spec, cut), key
