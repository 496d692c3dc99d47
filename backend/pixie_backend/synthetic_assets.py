"""Writing a complete synthetic data folder (official file names and formats, no licensed data):
the mannequin body files from :mod:`pixie_backend.synthetic` plus a random-weight
``pixie_model.tar``, and a marker file that flags the folder as synthetic."""

from __future__ import annotations

import json
from pathlib import Path

from .assets import ASSET_BY_KEY, SYNTHETIC_MARKER
from .checkpoint import save_checkpoint
from .config import NetConfig
from .nets.random_init import random_pixie_net

_LICENSED = ("smplx_model", "pixie_model", "extra_joints", "j14_regressor", "smplx_tex_obj", "flame_albedo",
             "deca_model")


class RefuseToOverwrite(RuntimeError):
    """The target folder holds real (non-synthetic) model files."""


def write_synthetic_data(out_dir: str | Path, body: str = "small", net: str = "tiny", seed: int = 0,
                         force: bool = False, face: bool = True) -> dict[str, Path]:
    """Write synthetic assets into ``out_dir``; returns ``{file name: path}``.

    Args:
        body: ``full`` (10,475 vertices, the real counts) or ``small`` (fast tests).
        net: ``full`` (the released architecture, ~770 MB checkpoint) or ``tiny`` (width-reduced).
        seed: everything is a deterministic function of it.
        force: overwrite an existing synthetic folder.
        face: also the face-appearance files (albedo model, texel map, body texture, masks, DECA's
            fixed displacement and random ``deca_model.tar``); the albedo image is 512² (official)
            for the full body, 64² for the small one.

    Raises:
        RefuseToOverwrite: the folder has model files but no synthetic marker (real data).
    """
    from .synthetic.files import write_body_assets

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / SYNTHETIC_MARKER
    present = [ASSET_BY_KEY[k].filename for k in _LICENSED if (out / ASSET_BY_KEY[k].filename).exists()]
    if present and not marker.exists():
        raise RefuseToOverwrite(f"{out} already holds model files ({', '.join(present)}) that are not "
                                "synthetic; refusing to overwrite them. Choose an empty folder.")
    if present and not force:
        raise RefuseToOverwrite(f"{out} already holds synthetic assets; pass --force to regenerate them")
    if net not in ("full", "tiny"):
        raise ValueError(f"net must be 'full' or 'tiny', not {net!r}")
    from .synthetic import build_body_model

    model = build_body_model(body, seed)
    paths = dict(write_body_assets(out, model=model))
    if face:
        from .appearance.deca import DecaConfig
        from .appearance.deca_random import write_random_deca
        from .synthetic.face_assets import write_face_assets

        paths.update(write_face_assets(out, model=model, seed=seed, albedo_resolution=512 if body == "full" else 64))
        deca = out / ASSET_BY_KEY["deca_model"].filename
        paths[deca.name] = write_random_deca(deca, DecaConfig() if net == "full" else DecaConfig.tiny(), seed)
    cfg = NetConfig() if net == "full" else NetConfig.tiny()
    ckpt = out / ASSET_BY_KEY["pixie_model"].filename
    save_checkpoint(random_pixie_net(cfg, seed=seed), ckpt)
    paths[ckpt.name] = ckpt
    info = {"synthetic": True, "body": body, "net": net, "seed": seed, "face": face}
    marker.write_text(
        "SYNTHETIC ASSETS - NOT A REAL MODEL.\n"
        "Written by `pixie-backend make-synthetic`: a mannequin body in the SMPL-X file format and random\n"
        "network weights in the PIXIE checkpoint layout. Anything computed from them is NOT a\n"
        "reconstruction. They contain no licensed data.\n" + json.dumps(info) + "\n",
        encoding="utf-8",
    )
    paths[marker.name] = marker
    return paths
