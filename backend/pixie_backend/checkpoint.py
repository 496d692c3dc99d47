"""Loading ``pixie_model.tar`` strictly.

Recipe (``pixie-inference.md`` §10.2): ``torch.load(map_location="cpu", weights_only=True)``; the
top level must hold the 13 module keys; each module loads with strict key checks, and every
missing or unexpected key is named in the error. Unpickling arbitrary objects
(``weights_only=False``) is refused unless the caller explicitly trusts the file, because
unpickling can execute code.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path

import torch

from . import constants as C
from .atomic import atomic_write
from .config import NetConfig
from .nets.pixie_net import PixieNet

log = logging.getLogger(__name__)

#: Keys a module may lack without consequence at inference (BN's step counter).
_TOLERATED_MISSING_SUFFIX = "num_batches_tracked"


class CheckpointError(RuntimeError):
    """The checkpoint file is unreadable or does not have PIXIE's layout."""


def read_checkpoint(path: str | os.PathLike, trust_pickle: bool = False, site: str = "pixie.is.tue.mpg.de") -> dict:
    """Read the raw checkpoint dict.

    Args:
        path: ``pixie_model.tar`` (or another checkpoint such as DECA's ``deca_model.tar``).
        trust_pickle: allow full unpickling if the safe loader refuses the file. Only for files
            you downloaded yourself from the official site.
        site: the official site, named in the message that suggests trusting the file.

    Raises:
        CheckpointError: missing, truncated or corrupt file, or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the download did not complete")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # not a refused object: the bytes are not a checkpoint
            raise CheckpointError(
                f"{path} ({size / 1e6:.1f} MB) is not a readable PyTorch checkpoint (corrupt, a partial "
                "download, or an error page saved under this name); download it again."
            ) from None
        if not trust_pickle:
            raise CheckpointError(
                f"{path} contains Python objects that the safe loader refuses "
                f"({next(ln.strip() for ln in str(e).splitlines() if 'Unsupported global' in ln)}). If you "
                f"downloaded this file yourself from {site}, allow it with "
                "--trust-checkpoint (API: trust_pickle=True); unpickling can run code."
            ) from None
        log.warning("loading %s with full unpickling (trusted by the caller)", path)
        ckpt = _load(path, weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} ({size / 1e6:.1f} MB) is not a readable PyTorch checkpoint: {e}. "
            "It may be corrupt or a partial download; download it again."
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, expected a dict of module states")
    return ckpt


def _load(path: Path, weights_only: bool) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # noqa: BLE001 - any failure here means an unreadable file
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}") from None


def _list(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_state_strict(net: PixieNet, ckpt: dict, source: str = "checkpoint",
                      keys: tuple[str, ...] = C.CHECKPOINT_KEYS, what: str = "PIXIE's pixie_model.tar") -> None:
    """Copy ``ckpt`` into ``net``, naming every missing/unexpected key or shape mismatch.

    Args:
        net: a module with ``submodule(key)`` for every top-level ``key`` of ``keys``.
        keys: the top-level checkpoint keys (default: PIXIE's 13 modules).
        what: the file's name in messages.

    Raises:
        CheckpointError: any module key is missing or unexpected, or a shape differs.
    """
    absent = [k for k in keys if k not in ckpt]
    if absent:
        raise CheckpointError(
            f"{source} lacks the module(s) {_list(absent)}; found top-level keys "
            f"{_list(sorted(map(str, ckpt)))}. Is this {what}?"
        )
    extra_top = sorted(str(k) for k in ckpt if k not in keys)
    if extra_top:
        log.info("%s: ignoring top-level entries %s", source, _list(extra_top))
    problems: list[str] = []
    for key in keys:
        module = net.submodule(key)
        state = ckpt[key]
        if not isinstance(state, dict):
            problems.append(f"{key}: expected a state dict, found {type(state).__name__}")
            continue
        expected = module.state_dict()
        missing = [k for k in expected if k not in state and not k.endswith(_TOLERATED_MISSING_SUFFIX)]
        unexpected = [k for k in state if k not in expected]
        shapes = [
            f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state and torch.is_tensor(state[k]) and tuple(state[k].shape) != tuple(v.shape)
        ]
        if missing:
            problems.append(f"{key}: missing {_list(missing)}")
        if unexpected:
            problems.append(f"{key}: unexpected {_list(unexpected)}")
        if shapes:
            problems.append(f"{key}: shape mismatch {_list(shapes, 6)}")
        if missing or unexpected or shapes:
            continue
        module.load_state_dict(state, strict=False)  # strictness checked above, incl. tolerance
    if problems:
        raise CheckpointError(f"{source} does not match the architecture of {what}:\n  " + "\n  ".join(problems))


def build_net(cfg: NetConfig | None = None, device: str | torch.device = "cpu") -> PixieNet:
    """An uninitialised :class:`PixieNet` on ``device`` (parameters are garbage until loaded)."""
    with torch.device("meta"):
        net = PixieNet(cfg)
    return net.to_empty(device=device)


def load_pixie_net(
    path: str | os.PathLike,
    cfg: NetConfig | None = None,
    device: str | torch.device = "cpu",
    trust_pickle: bool = False,
) -> PixieNet:
    """Build the networks and load ``pixie_model.tar`` strictly; returns the net in eval mode."""
    ckpt = read_checkpoint(path, trust_pickle=trust_pickle)
    net = build_net(cfg, "cpu")
    # BN's num_batches_tracked may be absent; give it a defined value before loading.
    for buf_name, buf in net.named_buffers():
        if buf_name.endswith(_TOLERATED_MISSING_SUFFIX):
            buf.zero_()
    load_state_strict(net, ckpt, source=str(path))
    return net.to(device).eval()


def save_checkpoint(net: PixieNet, path: str | os.PathLike) -> None:
    """Write ``net`` in the official layout (a dict of 13 module state dicts)."""
    with atomic_write(path) as f:
        torch.save(net.checkpoint_state(), f)
