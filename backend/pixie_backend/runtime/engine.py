"""The engine: PIXIE loaded once, on one device, at one precision.

It is the only place that sets process-wide CUDA flags, the only place that enters
``torch.inference_mode`` for the pipeline, and it is safe to call from several threads (one batch
runs at a time). Everything the writers need to know about the model (its files and their hashes,
whether it is synthetic, the UV layout) is public here, so nothing else reads model internals.

The engine also holds the optional face-appearance stage (:mod:`pixie_backend.appearance`), built
once from the data folder: :meth:`Engine.infer` runs it right after the networks, on the same
device and in the same dtype, so every job that batches through the engine gets it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..config import PixieConfig
from ..model import PixieModel
from ..preprocess.crop import crop_squares, square_taps
from ..types import AppearanceOutput, PixieOutput
from .device import DeviceError, resolve_device, resolve_precision
from .transfer import DeviceImage, PendingOutput, Transfers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFiles:
    """The data-folder files a model was built from (all None for a model built in memory)."""

    data_dir: Path | None = None
    checkpoint: Path | None = None
    smplx: Path | None = None
    extra_joints: Path | None = None
    j14: Path | None = None
    uv_obj: Path | None = None  #: ``smplx_tex.obj`` if present
    synthetic: bool = False  #: the folder holds make-synthetic assets: not a reconstruction


def configure_cuda(device: torch.device) -> None:
    """Process-wide CUDA flags (the engine calls this; nothing else sets them).

    True fp32 matmuls (TF32 off) keep CUDA fp32 within the parity tolerance; bf16/fp16 autocast is
    the fast path. Fixed input sizes let cuDNN pick its fastest kernels once.
    """
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True


def check_dtype(device: torch.device, dtype: str) -> None:
    """Raise :class:`DeviceError` for a dtype the device has no arithmetic for (float64 on MPS)."""
    if device.type == "mps" and dtype == "float64":
        raise DeviceError("MPS (Apple GPU) has no float64; run dtype float64 with --device cpu")


def batch_size_for(free_bytes: int, per_person: int, image_bytes: int, max_batch: int = 512) -> int:
    """The largest power of two <= ``max_batch`` with ``B·per_person + 2·B·image_bytes`` within 70 %
    of ``free_bytes`` (at least 1)."""
    budget = 0.7 * free_bytes
    b = 1
    while b * 2 <= max_batch and (b * 2) * (per_person + 2 * image_bytes) <= budget:
        b *= 2
    return b


class Engine:
    """A :class:`PixieModel` on its device, ready for batches of body crops.

    Build it with :meth:`from_data_dir` (the official files) or :meth:`from_model`.

    Args:
        appearance: the face-appearance stage (``FaceAppearance``), or None.
        notices: one sentence per face-appearance feature that is off for want of a file.
    """

    def __init__(self, model: PixieModel, files: ModelFiles | None = None, appearance=None,
                 notices: list[str] | tuple[str, ...] = ()):
        self.config: PixieConfig = model.cfg
        self.device = resolve_device(self.config.device)
        check_dtype(self.device, self.config.dtype)
        configure_cuda(self.device)
        moved = any(t.device != self.device for t in model.parameters())
        self.model = model.to(self.device).eval()
        if moved:  # the fast copies are snapshots, and "auto" depends on the device: rebuild them there
            self.model.configure()
        #: the precision that runs and why (``auto`` resolved for this device)
        self.precision = self.model.precision
        self.config = replace(self.config, device=str(self.device), precision=self.precision.precision)
        model.cfg = self.config
        (log.warning if self.precision.reason.startswith("NOT NATIVE") else log.info)(
            "PIXIE on %s, encoders in %s (%s), speed %s", self.device, self.precision.precision,
            self.precision.reason, self.config.speed)
        self.files = files or ModelFiles()
        self.appearance = (appearance.to(self.device, self.config.torch_dtype).eval()
                           if appearance is not None else None)
        self.appearance_notices: list[str] = list(notices)
        self._lock = threading.Lock()
        self.transfers = Transfers(self.device)

    @property
    def accelerated(self) -> bool:
        """The model runs on a GPU (CUDA or MPS): crops are cut there and part crops stay there."""
        return self.device.type in ("cuda", "mps")

    @classmethod
    def from_data_dir(cls, data_dir: str | os.PathLike | None = None, config: PixieConfig | None = None,
                      trust_checkpoint: bool = False) -> Engine:
        """Load ``pixie_model.tar`` and the SMPL-X files of the data folder.

        Raises:
            MissingAssetError, CheckpointError, ModelFileError, DeviceError: with a message for the user.
        """
        from ..appearance.model import FaceAppearance
        from ..assets import DataFolder, network_config_for
        from ..body.smplx_layer import PixieSMPLX
        from ..checkpoint import load_pixie_net

        config = config or PixieConfig()
        device = resolve_device(config.device)
        check_dtype(device, config.dtype)
        resolve_precision(config.precision, device, config.dtype)  # a bad choice fails before the slow load
        data = DataFolder(data_dir)
        config = replace(config, device=str(device), net=network_config_for(data, config.net))
        files = ModelFiles(
            data_dir=data.root, checkpoint=data.require("pixie_model"), smplx=data.require("smplx_model"),
            extra_joints=data.require("extra_joints"), j14=data.require("j14_regressor"),
            uv_obj=data.optional("smplx_tex_obj"), synthetic=data.is_synthetic,
        )
        net = load_pixie_net(files.checkpoint, config.net, device, trust_pickle=trust_checkpoint)
        smplx = PixieSMPLX.from_files(files.smplx, files.extra_joints, files.j14).to(device)
        appearance, notices = FaceAppearance.from_data(data, config.appearance, smplx.faces.cpu().numpy(),
                                                       trust_checkpoint=trust_checkpoint)
        return cls(PixieModel(net, smplx, config), files, appearance, notices)

    @classmethod
    def from_model(cls, model: PixieModel, appearance=None) -> Engine:
        """Wrap an already-built model (and face-appearance stage) (tests, benchmarks); they move to
        ``model.cfg.device``."""
        return cls(model, appearance=appearance)

    # ------------------------------------------------------------------ inference
    def infer(self, image: torch.Tensor, image_hd: torch.Tensor, appearance: bool = True) -> PixieOutput:
        """Decoded outputs for body crops, on the engine's device (thread-safe, inference mode).

        Args:
            image: (B, 3, 224, 224) RGB in [0, 1].
            image_hd: (B, 3, H, H) RGB in [0, 1], the same crops at high resolution (1024).
            appearance: also run the face-appearance stage (if the engine has one) into
                ``PixieOutput.appearance``.

        Returns:
            Outputs in the configured dtype (``PixieConfig.dtype``).
        """
        dtype = self.config.torch_dtype
        with self._lock, torch.inference_mode():
            image_hd = image_hd.to(self.device, dtype)
            out = self.model(image.to(self.device, dtype), image_hd)
            if appearance and self.appearance is not None:
                out = replace(out, appearance=self._appearance(out, image_hd))
            return out

    def infer_appearance(self, out: PixieOutput, image_hd: torch.Tensor) -> AppearanceOutput | None:
        """The face appearance of decoded outputs (None without the stage), on the engine's device.

        Args:
            out: :meth:`infer` output for B persons.
            image_hd: (B, 3, H, H) their HD body crops, RGB in [0, 1].
        """
        if self.appearance is None:
            return None
        with self._lock, torch.inference_mode():
            return self._appearance(out.to(self.device), image_hd.to(self.device, self.config.torch_dtype))

    def _appearance(self, out: PixieOutput, image_hd: torch.Tensor) -> AppearanceOutput:
        return self.appearance(out, image_hd, self.model.smplx)

    @property
    def appearance_settings(self) -> dict | None:
        """The face-appearance settings in effect (features whose files are missing are off), for
        result headers and resume keys; None without the stage."""
        if self.appearance is None:
            return None
        from dataclasses import asdict

        return asdict(self.appearance.cfg)

    def upload(self, pixels: torch.Tensor, centers: torch.Tensor, sides: torch.Tensor) -> DeviceImage:
        """Start copying one decoded image (H, W, 3) to the device, with its persons' body squares
        (``centers`` (P, 2), ``sides`` (P,), image pixels); see :class:`~.transfer.Transfers`."""
        return self.transfers.upload(pixels, centers, sides)

    def infer_batch(self, parts: Sequence[tuple[torch.Tensor, torch.Tensor] | DeviceImage],
                    appearance: bool = True) -> PixieOutput:
        """One batch from several images: each part is either body crops ``(image, image_hd)``
        (cut on the CPU) or a :class:`DeviceImage` whose crops are cut here, on the device, straight
        into the batch. Returns the outputs on the device (thread-safe, inference mode), with the
        face appearance as :meth:`infer` adds it; on CUDA the work is queued and this returns
        before it has run."""
        crop = self.config.crop
        dtype = self.config.torch_dtype
        n = sum(p.persons if isinstance(p, DeviceImage) else p[0].shape[0] for p in parts)
        hd = next((p[1].shape[-1] for p in parts if not isinstance(p, DeviceImage)), crop.hd_size)
        with self._lock, torch.inference_mode():
            image = torch.empty(n, 3, crop.image_size, crop.image_size, device=self.device, dtype=dtype)
            image_hd = torch.empty(n, 3, hd, hd, device=self.device, dtype=dtype)
            i = 0
            for p in parts:
                if isinstance(p, DeviceImage):
                    k = p.persons
                    pixels = self.transfers.wait(p)
                    crop_squares(pixels, square_taps(p.centers, p.sides, crop.image_size), dtype, image[i:i + k])
                    crop_squares(pixels, square_taps(p.centers, p.sides, hd), dtype, image_hd[i:i + k])
                else:
                    k = p[0].shape[0]
                    image[i:i + k].copy_(p[0], non_blocking=True)
                    image_hd[i:i + k].copy_(p[1], non_blocking=True)
                i += k
            out = self.model(image, image_hd)
            if appearance and self.appearance is not None:
                out = replace(out, appearance=self._appearance(out, image_hd))
            return out

    def to_host(self, out: PixieOutput, part_crop_images: bool | None = None) -> PendingOutput:
        """Start copying outputs to the host (pinned memory, a copy stream of its own on CUDA).

        Args:
            part_crop_images: copy the head and hand crop images too (default: only from the CPU,
                where they are there already; on a GPU they stay there and are freed).
        """
        keep = not self.accelerated if part_crop_images is None else part_crop_images
        return self.transfers.download(out, keep)

    def suggest_batch_size(self, image_bytes: int = 24_000_000, max_batch: int = 512) -> int:
        """Persons per batch for this device (``--batch-size auto``).

        * CPU: 8 (measured: larger batches spill the caches, see README: Benchmarks).
        * CUDA: the largest power of two up to ``max_batch`` whose activations (measured once on
          a probe batch of 4) plus two batches of uploaded images (``image_bytes`` per person, a
          24 MB 8-megapixel photo by default) fit in 70 % of the free device memory.
        * MPS: the same rule with the memory torch recommends for this Mac and a per-person figure
          estimated from the tensor sizes (MPS reports no peak memory).
        """
        if self.device.type == "cpu":
            return 8
        if self.device.type == "cuda":
            per_person = self._measured_bytes_per_person()
            free, _ = torch.cuda.mem_get_info(self.device)
            free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        else:
            per_person = self._estimated_bytes_per_person()
            free = torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
        return batch_size_for(free, per_person, image_bytes, max_batch)

    def _measured_bytes_per_person(self, probe: int = 4) -> int:
        crop = self.config.crop
        x = torch.rand(probe, 3, crop.image_size, crop.image_size, generator=torch.Generator().manual_seed(0))
        xh = torch.nn.functional.interpolate(x, size=crop.hd_size, mode="bilinear", align_corners=False)
        torch.cuda.synchronize(self.device)
        base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        out = self.infer(x, xh)
        torch.cuda.synchronize(self.device)
        peak = torch.cuda.max_memory_allocated(self.device)
        del out
        return max(1, (peak - base) // probe)

    def _estimated_bytes_per_person(self) -> int:
        crop, item = self.config.crop, torch.tensor([], dtype=self.config.torch_dtype).element_size()
        inputs = 3 * (crop.image_size ** 2 + crop.hd_size ** 2 + 3 * crop.image_size ** 2) * item
        return int(inputs + 64_000_000)  # + HRNet-W48 activations at 224², a generous bound

    # ------------------------------------------------------------------ what writers need
    @property
    def synthetic(self) -> bool:
        return self.files.synthetic

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) int64 triangles of the body model."""
        return self.model.smplx.faces.cpu().numpy()

    @cached_property
    def uvs(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(vt (T, 2), ft (F, 3))`` from ``smplx_tex.obj``, or None (absent or unusable: logged)."""
        if self.files.uv_obj is None:
            return None
        from ..body.obj_io import read_obj_uvs

        try:
            uvs = read_obj_uvs(self.files.uv_obj)
            if uvs[1].shape != tuple(self.model.smplx.faces.shape):
                raise ValueError(f"{len(uvs[1])} UV triangles for {self.model.smplx.faces.shape[0]} model triangles")
        except (ValueError, OSError) as e:
            log.warning("smplx_tex.obj is unusable (%s); results get no UVs", e)
            return None
        return uvs

    @cached_property
    def file_hashes(self) -> dict[str, str | None]:
        """SHA-256 of every model file (content hashes, cached per file size and mtime)."""
        from .fingerprint import file_sha256

        f = self.files
        named = {"checkpoint": f.checkpoint, "smplx": f.smplx, "extra_joints": f.extra_joints, "j14": f.j14,
                 "uv_obj": f.uv_obj}
        if self.appearance is not None:  # the face-appearance files in use (keyed by asset key)
            named.update({f"appearance.{k}": p for k, p in sorted(self.appearance.files.items())})
        return {k: (file_sha256(p) if p is not None else None) for k, p in named.items()}

    @cached_property
    def model_fingerprint(self) -> str:
        """One hash of everything that defines the model: file contents and network widths. A
        model built in memory (no files) hashes its weights instead."""
        import hashlib
        import json

        h = hashlib.sha256()
        h.update(json.dumps({"files": self.file_hashes, "net": repr(self.config.net),
                             "fusion": repr(self.config.fusion), "crop": repr(self.config.crop)},
                            sort_keys=True).encode())
        if self.files.checkpoint is None:
            for name, t in self.model.state_dict().items():
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        """Device, precision and model facts for logs, events and the service's health report."""
        d = {"device": str(self.device), "precision": self.config.precision,
             "precision_reason": self.precision.reason, "speed": self.config.speed,
             "synthetic": self.synthetic, "net": "official" if self.config.net.is_official else "reduced",
             "data_dir": str(self.files.data_dir) if self.files.data_dir else None,
             "appearance": self.appearance.features if self.appearance is not None else []}
        if self.config.compile != "off":
            d["compile"] = self.config.compile
        if self.device.type == "cuda":
            d["gpu"] = torch.cuda.get_device_name(self.device)
        if self.device.type == "mps":
            from ..preprocess.crop import MPS_FALLBACKS

            d["fallbacks"] = dict(MPS_FALLBACKS)
        return d
