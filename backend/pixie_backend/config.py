"""The one typed configuration tree (frozen dataclasses).

Defaults reproduce the official PIXIE release (upstream ``pixielib/utils/config.py`` and the
``demo_fit_body.py`` settings). Override with ``dataclasses.replace`` or :func:`PixieConfig.tiny`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

#: How part crops map output pixels to source pixels (``pixie-inference.md`` §6.2).
#:
#: * ``"kornia_legacy"`` (the default) — kornia <= 0.8.x: the homography is normalised with the
#:   corner-aligned ``2/(size-1)`` rule but the grid is sampled with ``align_corners=False``, which
#:   shifts samples by up to ~0.4 px at the crop border. Upstream pinned kornia 0.4.0 (with torch
#:   1.6) when the model was trained and released (Oct 2021; support for newer kornia came 14
#:   months later), and kornia 0.4.0 gives these crops to the bit (the float64 parity run), so the
#:   released weights saw this sampling in training.
#: * ``"kornia09"`` — kornia >= 0.9.0: ``warp_affine(..., align_corners=False)`` samples the source
#:   exactly at ``M^-1 · dst`` with pixel centres on integer coordinates: what upstream's code
#:   does today when installed with a current kornia.
PartCropConvention = Literal["kornia09", "kornia_legacy"]
#: Precision of the three CNN encoders (the heads, moderators and SMPL-X always run in ``dtype``).
#: ``auto`` is resolved where the model runs (:func:`pixie_backend.runtime.device.resolve_precision`):
#: bf16 where the device runs it natively (CUDA compute capability 8+, a CPU with AVX512-BF16/AMX
#: or Arm BF16, MPS on macOS 14+), else fp32. ``fp32`` is the parity reference.
Precision = Literal["auto", "fp32", "bf16", "fp16"]
#: ``exact``: the encoders run as loaded, in PyTorch's default memory layout — the closest float
#: order to upstream (the parity setting). ``fast``: batch norm folded into the convolutions and a
#: channels-last layout — 15-20 % faster encoders on the CPU, more on CUDA; outputs differ from
#: ``exact`` by float rounding only.
Speed = Literal["exact", "fast"]
#: Floating-point type of the whole computation (networks, crops, SMPL-X). ``float32`` is the
#: product. ``float64`` proves equivalence where float32 rounding cannot (the parity tests against
#: upstream, ``fast`` against ``exact``) and is there for users who want it: 5-10x slower on the
#: CPU, fp32 precision only.
Dtype = Literal["float32", "float64"]
#: ``torch.compile`` of the encoders: ``off`` (the default), or a ``torch.compile`` mode
#: (``default``; ``reduce-overhead`` adds CUDA graphs; ``max-autotune`` searches kernels for minutes).
#: It needs a C++ compiler on the CPU and Triton on CUDA. On a 2-core CPU it saves 5-11 % per person
#: after about a minute of compilation per batch shape (docs/devices.md); not measured on CUDA.
Compile = Literal["off", "default", "reduce-overhead", "max-autotune"]
#: How face textures move from FLAME UV into the SMPL-X UV map (``appearance/``).
#:
#: * ``"clean"`` — the albedo at its full resolution (512²), bilinear sampling at each SMPL-X texel's
#:   FLAME UV point, blended into the body texture where the albedo model has data; the
#:   displacement sampled bilinearly from DECA's 256² map. What a PBR base colour needs.
#: * ``"official"`` — upstream PIXIE exactly: the albedo resized to 256² with ``F.interpolate``'s
#:   default (nearest: every second texel), then every mapped texel copied from the nearest FLAME
#:   texel (``FLAME.texture_flame2smplx``); the same nearest copy for the displacement.
TextureTransfer = Literal["clean", "official"]
#: Where the DECA detail decoder takes its expression and jaw from: ``"deca"`` (DECA's own coarse
#: encoder ``E_flame`` on the same face crop, as the decoder was trained and as upstream's demo
#: runs it) or ``"pixie"`` (PIXIE's expression and jaw; saves one ResNet-50 per person).
DetailCondition = Literal["deca", "pixie"]


@dataclass(frozen=True)
class NetConfig:
    """Network widths. The defaults are the released architecture; tests shrink them."""

    hrnet_stem: int = 64  #: stem / layer1 planes (layer1 outputs 4x this)
    hrnet_widths: tuple[int, int, int, int] = (48, 96, 192, 384)  #: branch channels
    hrnet_modules: tuple[int, int, int] = (1, 4, 3)  #: modules in stage2, stage3, stage4
    hrnet_blocks: int = 4  #: blocks per branch (and in layer1)
    resnet_base: int = 64  #: ResNet-50 stem width (layer widths are 1, 2, 4, 8 x base)
    resnet_layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    feature_dim: int = 2048  #: encoder output = extractor width
    head_conv_layers: int = 5  #: Bottlenecks in the HRNet ExPose head
    mlp_hidden: int = 1024  #: hidden width of regressors and moderators

    @classmethod
    def tiny(cls) -> NetConfig:
        """A width-reduced network with the same module structure and key names (tests)."""
        return cls(
            hrnet_stem=4, hrnet_widths=(4, 8, 16, 32), hrnet_modules=(1, 1, 1), hrnet_blocks=1,
            resnet_base=2, resnet_layers=(1, 1, 1, 1), feature_dim=64, head_conv_layers=1,
            mlp_hidden=16,
        )

    @property
    def is_official(self) -> bool:
        return self == NetConfig()


@dataclass(frozen=True)
class CropConfig:
    """Body and part crops (upstream ``TestData`` and ``Cropper``)."""

    body_scale: float = 1.1  #: square side = int(body_scale * max(box w, box h))
    image_size: int = 224  #: network input
    hd_size: int = 1024  #: high-resolution body crop that part crops are cut from
    head_scale: float = 2.0  #: mean of the training range 1.8..2.2
    hand_scale: float = 2.4  #: mean of the training range 2.2..2.6
    part_convention: PartCropConvention = "kornia_legacy"


@dataclass(frozen=True)
class FusionConfig:
    """Moderator and decode options of ``PIXIE.encode``/``decode`` (demo defaults)."""

    hand_threshold: float | None = 0.7  #: part weight > threshold -> trust the hand crop fully
    keep_local: bool = True  #: expression and fingers from the part crops only
    copy_and_paste: bool = False  #: always trust part features (not the default)
    check_pose: bool = True  #: zero implausible relative head rotations


@dataclass(frozen=True)
class AppearanceConfig:
    """Face appearance (albedo, lighting, detail). Each feature also needs its optional data
    files; a feature whose files are missing is off, with one notice (never an error)."""

    albedo: bool = True  #: FLAME albedo in the SMPL-X UV texture
    transfer: TextureTransfer = "clean"
    lit_texture: bool = False  #: also the albedo times PIXIE's SH shading (upstream ``light_albedo``)
    photo_texture: bool = False  #: also the photo's visible face texels over the albedo (``extractTex``)
    detail: bool = True  #: DECA detail displacement (needs ``deca_model.tar``)
    #: the head moderator's part weight must be strictly above this for details (official demo: 0.6)
    detail_threshold: float = 0.6
    detail_condition: DetailCondition = "deca"
    #: DECA's face crop around PIXIE's 68 landmarks: side = int(scale x 1.1 x mean landmark extent)
    detail_crop_scale: float = 1.25
    normal_map: bool = True  #: tangent-space detail normal map (needs ``smplx_tex.obj``)

    def __post_init__(self) -> None:
        if self.transfer not in ("clean", "official"):
            raise ValueError(f"transfer must be 'clean' or 'official', not {self.transfer!r}")
        if self.detail_condition not in ("deca", "pixie"):
            raise ValueError(f"detail_condition must be 'deca' or 'pixie', not {self.detail_condition!r}")
        if not 0.0 <= self.detail_threshold <= 1.0:  # also refuses nan
            raise ValueError(f"detail_threshold must be from 0 to 1 (a moderator weight), not {self.detail_threshold}")
        if not 0.0 < self.detail_crop_scale < 10.0:
            raise ValueError(f"detail_crop_scale must be a positive factor, not {self.detail_crop_scale}")


@dataclass(frozen=True)
class PixieConfig:
    """Everything that changes numbers, plus where to run."""

    net: NetConfig = field(default_factory=NetConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    device: str = "cpu"  #: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA, then MPS, then CPU)
    precision: Precision = "fp32"  #: of the encoders; see :data:`Precision`
    speed: Speed = "exact"
    dtype: Dtype = "float32"
    compile: Compile = "off"  #: see :data:`Compile`

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', not {self.dtype!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', not {self.precision!r}")
        if self.dtype == "float64" and self.precision not in ("fp32", "auto"):
            raise ValueError(f"precision {self.precision!r} (autocast) cannot run in float64; use precision='fp32'")
        if self.compile not in ("off", "default", "reduce-overhead", "max-autotune"):
            raise ValueError(f"compile must be 'off', 'default', 'reduce-overhead' or 'max-autotune', "
                             f"not {self.compile!r}")

    @property
    def torch_dtype(self):
        """``torch.float32`` or ``torch.float64``."""
        import torch

        return getattr(torch, self.dtype)

    def with_(self, **changes) -> PixieConfig:
        return replace(self, **changes)
