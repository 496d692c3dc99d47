"""The synthetic assets of the parity references, rebuilt from their seeds, with their hashes."""

from __future__ import annotations

import tempfile
from pathlib import Path


def build_parity_assets(body: str, body_seed: int, net_seed: int):
    """Build the synthetic body files and the random network the references were made with.

    Returns:
        (net, smplx, hashes): the float32 ``PixieNet`` and ``PixieSMPLX``, and the SHA-256 of each
        body file (by file name) and of the network's state (``"pixie_net_state"``).
    """
    from pixie_backend.assets import sha256_file
    from pixie_backend.body.smplx_layer import PixieSMPLX
    from pixie_backend.config import NetConfig
    from pixie_backend.nets.random_init import random_pixie_net, state_sha256
    from pixie_backend.synthetic.files import write_body_assets

    with tempfile.TemporaryDirectory(prefix="pixie-parity-") as tmp:
        paths = write_body_assets(Path(tmp), variant=body, seed=body_seed)
        hashes = {name: sha256_file(path) for name, path in paths.items()}
        by_name = {p.name: p for p in paths.values()}
        smplx = PixieSMPLX.from_files(by_name["SMPLX_NEUTRAL_2020.npz"], by_name["smplx_extra_joints.yaml"],
                                      by_name["SMPLX_to_J14.pkl"])
    net = random_pixie_net(NetConfig(), seed=net_seed)
    hashes["pixie_net_state"] = state_sha256(net)
    return net, smplx, hashes
