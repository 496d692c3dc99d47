"""``FaceAppearance``: albedo, lighting, photo texture and DECA detail for a batch of PIXIE outputs.

Built from the data folder by :meth:`FaceAppearance.from_data`, which turns every feature whose
optional files are missing off and says so in one notice per feature; it never raises for a
missing file. :meth:`FaceAppearance.forward` runs on the device of the module, batched over
persons, and returns an :class:`AppearanceOutput` in the SMPL-X UV layout of ``smplx_tex.obj``
(R x R, row 0 at the top, v = 1).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..assets import ASSET_BY_KEY, DataFolder
from ..config import AppearanceConfig
from ..geometry.rotations import rotmat_to_axis_angle
from ..preprocess.crop import crop_parts
from ..types import AppearanceOutput, PixieOutput
from . import deca as D
from .albedo import FlameAlbedo
from .files import (
    load_albedo_space,
    load_fixed_displacement,
    load_flame2smplx_map,
    load_rgb_png,
    load_uv_mask,
)
from .lighting import sh_shading, vertex_normals
from .normal_map import neighbours, tangent_normals
from .photo import photo_texture
from .uv_raster import UvRasterizer
from .uv_transfer import UvTransfer

log = logging.getLogger(__name__)

#: Files each feature needs (asset keys of :mod:`pixie_backend.assets`).
FEATURE_FILES: dict[str, tuple[str, ...]] = {
    "albedo": ("flame_albedo", "flame2smplx_map", "smplx_tex_png"),
    "lit_texture": ("flame_albedo", "flame2smplx_map", "smplx_tex_png", "smplx_tex_obj"),
    "photo_texture": ("flame_albedo", "flame2smplx_map", "smplx_tex_png", "smplx_tex_obj", "uv_face_eye_mask"),
    "detail": ("deca_model", "deca_fixed_displacement", "flame2smplx_map", "uv_face_mask"),
    "normal_map": ("deca_model", "deca_fixed_displacement", "flame2smplx_map", "uv_face_mask", "smplx_tex_obj"),
}
FEATURE_NAMES = {
    "albedo": "face albedo texture", "lit_texture": "lit texture", "photo_texture": "photo face texture",
    "detail": "facial detail (displacement)", "normal_map": "detail normal map",
}


def _missing(data: DataFolder, keys: tuple[str, ...]) -> list[str]:
    return [ASSET_BY_KEY[k].filename for k in keys if not data.has(k)]


class FaceAppearance(nn.Module):
    """The appearance stage. Construct with :meth:`from_data` (or directly for tests)."""

    def __init__(self, cfg: AppearanceConfig, faces: np.ndarray, *, albedo: FlameAlbedo | None = None,
                 transfer: UvTransfer | None = None, base_texture: np.ndarray | None = None,
                 uv: tuple[np.ndarray, np.ndarray] | None = None, face_mask: np.ndarray | None = None,
                 face_eye_mask: np.ndarray | None = None, deca: D.DecaNet | None = None,
                 fixed_displacement: np.ndarray | None = None, notices: list[str] | None = None,
                 files: dict[str, Path] | None = None):
        super().__init__()
        self.cfg = cfg
        self.notices = list(notices or [])
        #: the data files the enabled features were built from (asset key -> path)
        self.files: dict[str, Path] = dict(files or {})
        self.register_buffer("faces", torch.as_tensor(np.asarray(faces, np.int64)))
        self.albedo_model = albedo
        self.transfer = transfer
        r = transfer.resolution if transfer is not None else None
        self.resolution = r
        if base_texture is not None:
            if base_texture.shape[:2] != (r, r):
                raise ValueError(f"base texture {base_texture.shape[:2]} does not match the map's {r}²")
            base = torch.from_numpy(base_texture.astype(np.float32) / 255.0).permute(2, 0, 1)
            self.register_buffer("base_texture", base)  # (3, R, R)
        else:
            self.base_texture = None
        # SMPL-X UV masks, pasted from FLAME UV like upstream (nearest, into zeros)
        for name, m in (("face_mask", face_mask), ("face_eye_mask", face_eye_mask)):
            if m is not None and transfer is not None:
                uv_m = transfer.paste_nearest(torch.from_numpy(np.asarray(m, np.float32))[None, None])[0, 0]
                self.register_buffer(name, uv_m)
            else:
                setattr(self, name, None)
        self.raster = None
        self.face_raster = None
        if uv is not None and r is not None:
            vt, ft = uv
            if cfg.lit_texture or cfg.photo_texture:
                self.raster = UvRasterizer(vt, ft, faces, r)
            if deca is not None and cfg.normal_map and self.face_mask is not None:
                region = torch.nn.functional.max_pool2d(
                    (self.face_mask > 0).float()[None, None], 5, stride=1, padding=2)[0, 0] > 0
                self.face_raster = UvRasterizer(vt, ft, faces, r, texels=region.numpy())
                self.register_buffer("face_neighbours", neighbours(self.face_raster.pixel, r))
        self.deca = deca
        if fixed_displacement is not None:
            self.register_buffer("fixed_displacement", torch.from_numpy(np.asarray(fixed_displacement, np.float32)))
        else:
            self.fixed_displacement = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_data(cls, data: DataFolder, cfg: AppearanceConfig, faces: np.ndarray,
                  trust_checkpoint: bool = False) -> tuple[FaceAppearance | None, list[str]]:
        """Load what the enabled features need. A wanted feature whose files are missing or
        unusable is off, with one notice naming the reason; a feature that depends on one that
        is off (lit and photo textures on the albedo, the normal map on the detail) is silently
        off with it.

        Returns:
            the stage (None when no feature is on) and the notices.
        """
        notices: list[str] = []
        parent = {"lit_texture": "albedo", "photo_texture": "albedo", "normal_map": "detail"}
        on = {"albedo": cfg.albedo, "lit_texture": cfg.lit_texture, "photo_texture": cfg.photo_texture,
              "detail": cfg.detail, "normal_map": cfg.normal_map}
        for feat in on:  # parents come first in this order
            if not on[feat] or (feat in parent and not on[parent[feat]]):
                on[feat] = False
                continue
            missing = _missing(data, FEATURE_FILES[feat])
            if missing:
                on[feat] = False
                notices.append(f"{FEATURE_NAMES[feat]} off: missing {', '.join(missing)} "
                               "(`pixie-backend doctor` says where to get it)")
        kw: dict = {}

        def load(feats: tuple[str, ...], fn) -> None:
            """Run ``fn`` for the features ``feats`` that are on; on failure turn them off."""
            live = [f for f in feats if on[f]]
            if not live:
                return
            try:
                fn()
            except (ValueError, OSError, RuntimeError) as e:  # AppearanceFileError, CheckpointError, ...
                notices.append(f"{FEATURE_NAMES[live[0]]} off: {e}")
                for f in live:
                    on[f] = False
                for child, par in parent.items():
                    if par in live:
                        on[child] = False

        def load_map():
            kw["transfer"] = UvTransfer(load_flame2smplx_map(data.path("flame2smplx_map")))

        def load_albedo():
            base = load_rgb_png(data.path("smplx_tex_png"))
            r = kw["transfer"].resolution
            if base.shape[:2] != (r, r):
                raise ValueError(f"smplx_tex.png is {base.shape[1]}x{base.shape[0]}, the texture map "
                                 f"targets {r}x{r}")
            kw.update(albedo=FlameAlbedo(load_albedo_space(data.path("flame_albedo"))), base_texture=base)

        def load_uv():
            from ..body.obj_io import read_obj_uvs

            vt, ft = read_obj_uvs(data.path("smplx_tex_obj"))
            if ft.shape != tuple(np.asarray(faces).shape):
                raise ValueError(f"smplx_tex.obj has {len(ft)} UV triangles, the model {len(faces)}")
            kw["uv"] = (vt, ft)

        def load_detail():
            tiny = data.synthetic_info().get("net") == "tiny"
            dcfg = D.DecaConfig.tiny() if tiny else D.DecaConfig()
            kw.update(deca=D.load_deca_net(data.path("deca_model"), dcfg, trust_pickle=trust_checkpoint),
                      fixed_displacement=load_fixed_displacement(data.path("deca_fixed_displacement")),
                      face_mask=load_uv_mask(data.path("uv_face_mask")))

        load(("albedo", "detail"), load_map)
        load(("albedo",), load_albedo)
        load(("lit_texture", "photo_texture", "normal_map"), load_uv)
        load(("photo_texture",), lambda: kw.update(face_eye_mask=load_uv_mask(data.path("uv_face_eye_mask"))))
        load(("detail",), load_detail)
        if not any(on.values()):
            return None, notices
        if not on["albedo"]:
            for k in ("albedo", "base_texture", "face_eye_mask"):
                kw.pop(k, None)
        if not on["detail"]:
            for k in ("deca", "fixed_displacement", "face_mask"):
                kw.pop(k, None)
        if not (on["lit_texture"] or on["photo_texture"] or on["normal_map"]):
            kw.pop("uv", None)
        eff = replace(cfg, **on)
        files = {k: data.path(k) for feat, live in on.items() if live for k in FEATURE_FILES[feat]}
        return cls(eff, faces, notices=notices, files=files, **kw), notices

    @property
    def features(self) -> list[str]:
        """The features that are on (``albedo``, ``lit_texture``, ``photo_texture``, ``detail``, ``normal_map``)."""
        return [f for f in FEATURE_NAMES if getattr(self.cfg, f)]

    # ------------------------------------------------------------------ running
    def detail_gate(self, out: PixieOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Head moderator part weight (B,) and the gate ``weight > threshold`` (B,) bool."""
        b = out.vertices.shape[0]
        if out.moderator_weights is None:
            conf = out.vertices.new_full((b,), float("nan"))
        else:
            conf = out.moderator_weights[:, 0, 1].to(out.vertices.dtype)
        return conf, conf > self.cfg.detail_threshold  # NaN compares False

    def deca_crops(self, out: PixieOutput, image_hd: torch.Tensor) -> torch.Tensor:
        """DECA's face crops (B, 3, 224, 224) from the HD body crops, around PIXIE's 68 landmarks with
        DECA's ``TestData`` recipe for landmark boxes: centre of the landmarks' box, side
        ``int(1.1·scale·(w + h)/2)``, the square's corners mapped to pixels 0 and 223 (bilinear)."""
        hd = image_hd.shape[-1]
        px = (out.face_keypoints2d.to(torch.float64) * 0.5 + 0.5) * hd
        lo, hi = px.min(dim=1).values, px.max(dim=1).values
        center = (lo + hi) * 0.5
        old = ((hi - lo).sum(dim=1) / 2.0) * 1.1
        side = torch.trunc(old * self.cfg.detail_crop_scale)
        return crop_parts(image_hd, center[:, None], side[:, None], D.INPUT_SIZE, "kornia09")[:, 0]

    def flame_displacement(self, out: PixieOutput, crops: torch.Tensor) -> torch.Tensor:
        """DECA displacement in FLAME UV, incl. the fixed displacement: (B, 256, 256) metres."""
        deca = self.deca
        code = deca.E_detail(crops)
        if self.cfg.detail_condition == "deca":
            flame = deca.flame_code(crops)
            exp, jaw = flame["exp"], flame["pose"][:, 3:6]
        elif self.cfg.detail_condition == "pixie":
            exp = out.params.expression.to(crops.dtype)
            jaw = rotmat_to_axis_angle(out.params.jaw_pose[:, 0]).to(crops.dtype)
        else:
            raise ValueError(f"detail_condition must be 'deca' or 'pixie', not {self.cfg.detail_condition!r}")
        return deca.displacement(code, exp, jaw)[:, 0] + self.fixed_displacement.to(crops.dtype)

    def to_smplx_uv(self, flame: torch.Tensor, base: torch.Tensor | None = None,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
        """A FLAME-UV image (B, C, S, S) into the SMPL-X UV map with the configured transfer."""
        if self.cfg.transfer == "official":
            return self.transfer.paste_nearest(flame, base)
        if self.cfg.transfer == "clean":
            return self.transfer.sample_bilinear(flame, base, weight)
        raise ValueError(f"transfer must be 'clean' or 'official', not {self.cfg.transfer!r}")

    def albedo(self, tex: torch.Tensor) -> torch.Tensor:
        """(B, 50) albedo coefficients -> (B, 3, R, R) SMPL-X UV texture over the body texture."""
        m = self.albedo_model
        base = self.base_texture.to(tex.dtype)
        if self.cfg.transfer == "official":
            return self.transfer.paste_nearest(m.official(tex), base)
        return self.to_smplx_uv(m(tex), base, weight=m.valid)

    def rest_vertices(self, out: PixieOutput, smplx) -> torch.Tensor:
        """Shaped rest vertices (B, V, 3), y-up SMPL-X frame (template + shape + expression)."""
        p = out.params
        coeffs = torch.cat([p.betas, p.expression], dim=1).to(smplx.shapedirs.dtype)
        return smplx.v_template + torch.einsum("bl,vkl->bvk", coeffs, smplx.shapedirs)

    @torch.inference_mode()
    def forward(self, out: PixieOutput, image_hd: torch.Tensor | None = None, smplx=None) -> AppearanceOutput:
        """Appearance of a batch.

        Args:
            out: decoded PIXIE outputs (B persons), on this module's device.
            image_hd: (B, 3, H, H) HD body crops in [0, 1] (detail crops and photo texture).
            smplx: the SMPL-X layer (shaped rest vertices for the detail normal map).
        """
        cfg = self.cfg
        p = out.params
        res: dict[str, torch.Tensor] = {}
        if cfg.albedo and p.tex is not None:
            tex = p.tex.to(self.albedo_model.mean.dtype)
            res["albedo"] = self.albedo(tex)
            dtype = res["albedo"].dtype
            if cfg.lit_texture and p.light is not None:
                normals = vertex_normals(out.vertices.to(dtype), self.faces)
                res["lit"] = res["albedo"] * sh_shading(self.raster.world2uv(normals), p.light.to(dtype))
            if cfg.photo_texture and image_hd is not None:
                res["photo"], _ = photo_texture(self.raster, self.faces, out.vertices, out.transformed_vertices,
                                                image_hd, self.face_eye_mask, res["albedo"])
        conf, gate = self.detail_gate(out)
        res["head_confidence"] = conf
        res["detail_gate"] = gate
        if cfg.detail:
            r = self.resolution
            dtype = self.fixed_displacement.dtype
            disp = out.vertices.new_zeros(out.vertices.shape[0], r, r).to(dtype)
            idx = gate.nonzero()[:, 0]
            if idx.numel() and image_hd is not None:
                sub = out.index(idx)
                crops = self.deca_crops(sub, image_hd[idx].to(dtype))
                flame = self.flame_displacement(sub, crops)
                uv = self.to_smplx_uv(flame[:, None])[:, 0] * self.face_mask.to(dtype)
                disp[idx] = uv
            elif idx.numel():
                gate = torch.zeros_like(gate)
                res["detail_gate"] = gate
            res["displacement"] = disp
            if cfg.normal_map and self.face_raster is not None and smplx is not None:
                nm = disp.new_zeros(disp.shape[0], 3, r, r)
                nm[:, 2] = 1.0
                if idx.numel() and gate.any():
                    fr = self.face_raster
                    rest = self.rest_vertices(out.index(idx), smplx).to(dtype)
                    pos = fr.interpolate(rest)  # (b, M, 3)
                    nrm = fr.interpolate(vertex_normals(rest, self.faces))
                    d = disp[idx].reshape(idx.numel(), -1)[:, fr.pixel]
                    sub = nm[idx].reshape(idx.numel(), 3, -1)
                    sub[:, :, fr.pixel] = tangent_normals(pos, nrm, d, self.face_neighbours, r).transpose(1, 2)
                    nm[idx] = sub.reshape(idx.numel(), 3, r, r)
                res["normal_map"] = nm
        return AppearanceOutput(**res)
