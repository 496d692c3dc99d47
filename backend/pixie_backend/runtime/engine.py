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
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..config import PixieConfig
from ..model import PixieModel
from ..types import AppearanceOutput, PixieOutput
from .device import resolve_device

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
        if str(self.device) != self.config.device:
            self.config = replace(self.config, device=str(self.device))
            model.cfg = self.config
        configure_cuda(self.device)
        moved = any(t.device != self.device for t in model.parameters())
        self.model = model.to(self.device).eval()
        if moved and self.config.speed == "fast":
            self.model.use_speed("fast")  # the folded copies are snapshots: rebuild them on the device
        self.files = files or ModelFiles()
        self.appearance = (appearance.to(self.device, self.config.torch_dtype).eval()
                           if appearance is not None else None)
        self.appearance_notices: list[str] = list(notices)
        self._lock = threading.Lock()

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
        d = {"device": str(self.device), "precision": self.config.precision, "speed": self.config.speed,
             "synthetic": self.synthetic, "net": "official" if self.config.net.is_official else "reduced",
             "data_dir": str(self.files.data_dir) if self.files.data_dir else None,
             "appearance": self.appearance.features if self.appearance is not None else []}
        if self.device.type == "cuda":
            d["gpu"] = torch.cuda.get_device_name(self.device)
        return d
