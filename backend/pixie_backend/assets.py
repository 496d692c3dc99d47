"""The data folder: which licensed files PIXIE needs, where they are looked for, and how they are
reported when missing.

The data folder has the layout and file names of upstream PIXIE's ``data/`` directory. It is
resolved in this order:

1. an explicit path (API argument or ``--data-dir``);
2. the ``PIXIE_DATA_DIR`` environment variable;
3. the per-user data directory (``platformdirs.user_data_dir("pixie-blender")/data``).

Nothing here downloads anything; ``pixie-backend fetch-data`` is the only command that does.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import platformdirs

ENV_DATA_DIR = "PIXIE_DATA_DIR"
APP_NAME = "pixie-blender"
#: Marker file written by ``make-synthetic``: its presence means the folder holds synthetic assets.
SYNTHETIC_MARKER = "SYNTHETIC_ASSETS.txt"

SMPLX_SITE = "https://smpl-x.is.tue.mpg.de"
PIXIE_SITE = "https://pixie.is.tue.mpg.de"
SMPLX_LICENCE = "https://smpl-x.is.tue.mpg.de/modellicense.html"
PIXIE_LICENCE = "https://pixie.is.tue.mpg.de/license.html"
DOWNLOAD_ENDPOINT = "https://download.is.tue.mpg.de/download.php"


class Need(str, Enum):
    """How much the pipeline depends on an asset."""

    REQUIRED = "required"  # reconstruction cannot run without it
    TEXTURE = "texture"  # needed for the SMPL-X-UV albedo texture
    OPTIONAL = "optional"  # an extra feature


@dataclass(frozen=True)
class AssetSpec:
    """One file of the data folder."""

    key: str
    filename: str  #: path relative to the data folder
    purpose: str
    need: Need
    licence: str
    licence_url: str
    register_url: str
    #: ``(domain, sfile)`` on the MPI download endpoint, or None if it is not downloadable there.
    download: tuple[str, str] | None = None
    #: The archive the file is unpacked from (``utilities.zip``), if any.
    archive: str | None = None
    #: What is turned off when the file is missing (optional files only).
    missing_effect: str = ""
    #: How to obtain a file that cannot be downloaded directly.
    instructions: str = ""
    #: Hex SHA-256 of the file, or None where it is not known.
    sha256: str | None = None
    #: Size in bytes, or None where it is not known.
    size: int | None = None
    #: Public address a file that is not on the MPI download server can be fetched from by hand.
    url: str | None = None


UTILITIES = "utilities.zip"

ASSETS: tuple[AssetSpec, ...] = (
    AssetSpec(
        key="smplx_model",
        filename="SMPLX_NEUTRAL_2020.npz",
        purpose="SMPL-X 2020 neutral body model (mesh, shape/expression/pose blend shapes)",
        need=Need.REQUIRED,
        licence="SMPL-X Model License (non-commercial)",
        licence_url=SMPLX_LICENCE,
        register_url=SMPLX_SITE,
        download=("smplx", "SMPLX_NEUTRAL_2020.npz"),
    ),
    AssetSpec(
        key="pixie_model",
        filename="pixie_model.tar",
        purpose="PIXIE network weights (body, head and hand experts, moderators)",
        need=Need.REQUIRED,
        licence="PIXIE License (non-commercial)",
        licence_url=PIXIE_LICENCE,
        register_url=PIXIE_SITE,
        download=("pixie", "pixie_model.tar"),
    ),
    AssetSpec(
        key="extra_joints",
        filename="smplx_extra_joints.yaml",
        purpose="the 22 extra vertex keypoints (toes, heels, fingertips, ears, ...)",
        need=Need.REQUIRED,
        licence="PIXIE License (non-commercial)",
        licence_url=PIXIE_LICENCE,
        register_url=PIXIE_SITE,
        download=("pixie", UTILITIES),
        archive=UTILITIES,
    ),
    AssetSpec(
        key="j14_regressor",
        filename="SMPLX_to_J14.pkl",
        purpose="J14 joint regressor (changes the wrist keypoints that place the hand crops)",
        need=Need.REQUIRED,
        licence="PIXIE License (non-commercial)",
        licence_url=PIXIE_LICENCE,
        register_url=PIXIE_SITE,
        download=("pixie", UTILITIES),
        archive=UTILITIES,
    ),
    AssetSpec(
        key="smplx_tex_obj",
        filename="smplx_tex.obj",
        purpose="SMPL-X mesh with the UV layout that the face texture map targets",
        need=Need.TEXTURE,
        licence="PIXIE License (non-commercial)",
        licence_url=PIXIE_LICENCE,
        register_url=PIXIE_SITE,
        download=("pixie", UTILITIES),
        archive=UTILITIES,
        missing_effect="results and the Blender mesh have no UVs; no textures",
    ),
    AssetSpec(
        key="flame2smplx_map",
        filename="flame2smplx_tex_1024.npy",
        purpose="FLAME-UV to SMPL-X-UV texel map: moves the face albedo and the detail displacement "
                "into the body's UV layout",
        need=Need.TEXTURE,
        licence="PIXIE License (non-commercial)",
        licence_url=PIXIE_LICENCE,
        register_url=PIXIE_SITE,
        download=("pixie", UTILITIES),
        archive=UTILITIES,
        missing_effect="no face albedo texture and no facial detail",
    ),
    AssetSpec(
        key="smplx_tex_png",
        filename="smplx_tex.png",
        purpose="stock SMPL-X body texture (1024x1024) the face albedo is pasted into",
        need=Need.TEXTURE,
        licence="PIXIE License (non-commercial; file from the PIXIE repository's data/ folder)",
        licence_url=PIXIE_LICENCE,
        register_url=PIXIE_SITE,
        missing_effect="no face albedo texture (the albedo is pasted into this body texture)",
        instructions=(
            "Not on the download server: it is in the PIXIE git repository. Download "
            "https://github.com/yfeng95/PIXIE/raw/master/data/smplx_tex.png (no account needed) "
            "and save it as smplx_tex.png in the data folder."
        ),
        url="https://github.com/yfeng95/PIXIE/raw/master/data/smplx_tex.png",
    ),
    AssetSpec(
        key="uv_face_mask",
        filename="uv_face_mask.png",
        purpose="face region in FLAME UV (256x256, channel 0): where the detail displacement applies",
        need=Need.OPTIONAL,
        licence="PIXIE License (non-commercial; file from the PIXIE repository's data/ folder)",
        licence_url=PIXIE_LICENCE,
        register_url=PIXIE_SITE,
        missing_effect="no facial detail (displacement and normal map)",
        instructions=(
            "Not on the download server: it is in the PIXIE git repository. Download "
            "https://github.com/yfeng95/PIXIE/raw/master/data/uv_face_mask.png (no account needed) "
            "and save it as uv_face_mask.png in the data folder."
        ),
        url="https://github.com/yfeng95/PIXIE/raw/master/data/uv_face_mask.png",
    ),
    AssetSpec(
        key="uv_face_eye_mask",
        filename="uv_face_eye_mask.png",
        purpose="face and eye region in FLAME UV (256x256, channel 0): where the photo's texels are used",
        need=Need.OPTIONAL,
        licence="PIXIE License (non-commercial; file from the PIXIE repository's data/ folder)",
        licence_url=PIXIE_LICENCE,
        register_url=PIXIE_SITE,
        missing_effect="no face texture taken from the photo (only with --photo-texture)",
        instructions=(
            "Not on the download server: it is in the PIXIE git repository. Download "
            "https://github.com/yfeng95/PIXIE/raw/master/data/uv_face_eye_mask.png (no account needed) "
            "and save it as uv_face_eye_mask.png in the data folder."
        ),
        url="https://github.com/yfeng95/PIXIE/raw/master/data/uv_face_eye_mask.png",
    ),
    AssetSpec(
        key="flame_albedo",
        filename="FLAME_albedo_from_BFM.npz",
        purpose="FLAME albedo space converted from the Basel Face Model (MU, PC)",
        need=Need.OPTIONAL,
        licence="Basel Face Model licence (not redistributable)",
        licence_url="https://faces.dmi.unibas.ch/bfm/bfm2017.html",
        register_url="https://faces.dmi.unibas.ch/bfm/bfm2017.html",
        missing_effect="no face albedo texture (the avatar gets a plain skin material)",
        instructions=(
            "Build it yourself (the BFM licence forbids redistribution): "
            "(1) register at https://faces.dmi.unibas.ch/bfm/bfm2017.html and download "
            "model2017-1_bfm_nomouth.h5; "
            "(2) git clone https://github.com/TimoBolkart/BFM_to_FLAME and put the .h5 file in its "
            "model/ folder (optionally put "
            "http://files.is.tue.mpg.de/tbolkart/FLAME/mask_inpainting.npz in its data/ folder); "
            "(3) in a Python 3.8 environment (its chumpy dependency fails on Python 3.11+): "
            "pip install numpy==1.19.4 h5py==3.1.0 chumpy==0.70 opencv-python==4.4.0.46; "
            "(4) run python col_to_tex.py inside BFM_to_FLAME; "
            "(5) copy output/FLAME_albedo_from_BFM.npz into the data folder."
        ),
    ),
    AssetSpec(
        key="deca_model",
        filename="deca_model.tar",
        purpose="DECA's encoders and detail decoder (E_flame, E_detail, D_detail): the facial displacement map",
        need=Need.OPTIONAL,
        licence="DECA License (non-commercial)",
        licence_url="https://deca.is.tue.mpg.de/license.html",
        register_url="https://deca.is.tue.mpg.de",
        missing_effect="no facial detail (displacement and normal map)",
        instructions=(
            "Register at https://flame.is.tue.mpg.de and accept the FLAME and DECA licences, then "
            "download deca_model.tar from the Google Drive file that DECA's fetch_data.sh names "
            "(https://drive.google.com/file/d/1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje, e.g. with "
            "pip install gdown; gdown 1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje -O deca_model.tar) "
            "and save it as deca_model.tar in the data folder."
        ),
        url="https://drive.google.com/file/d/1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje",
    ),
    AssetSpec(
        key="deca_fixed_displacement",
        filename="fixed_displacement_256.npy",
        purpose="DECA's fixed displacement (256x256, metres), added to every detail map",
        need=Need.OPTIONAL,
        licence="DECA License (non-commercial; file from the DECA repository's data/ folder)",
        licence_url="https://deca.is.tue.mpg.de/license.html",
        register_url="https://deca.is.tue.mpg.de",
        missing_effect="no facial detail (displacement and normal map)",
        instructions=(
            "Not on the download server: it is in the DECA git repository. Download "
            "https://github.com/yfeng95/DECA/raw/master/data/fixed_displacement_256.npy (no account "
            "needed) and save it as fixed_displacement_256.npy in the data folder."
        ),
        url="https://github.com/yfeng95/DECA/raw/master/data/fixed_displacement_256.npy",
    ),
)

ASSET_BY_KEY = {spec.key: spec for spec in ASSETS}


@dataclass(frozen=True)
class DownloadSpec:
    """One file on the MPI download server (``download.php?domain=<domain>&sfile=<sfile>``).

    ``size`` and ``sha256`` are checked after a download where they are known; None means unknown.
    ``pixie-backend fetch-data`` prints both for every file it downloads, so that a maintainer with
    the files can fill them in here.
    """

    domain: str
    sfile: str
    size: int | None = None
    sha256: str | None = None


#: The downloadable files. Nobody on the team has downloaded them yet, so sizes and checksums are
#: unknown (None); sizes are then checked against the server's Content-Length / Content-Range.
DOWNLOAD_FILES: tuple[DownloadSpec, ...] = (
    DownloadSpec("smplx", "SMPLX_NEUTRAL_2020.npz"),
    DownloadSpec("pixie", "pixie_model.tar"),
    DownloadSpec("pixie", UTILITIES),
)

#: Members of ``utilities.zip`` that no registry entry lists but that upstream PIXIE's ``data/``
#: folder has (unpacked too, so that the folder matches upstream's; not checked by ``doctor``).
UTILITIES_OTHER_MEMBERS: tuple[str, ...] = (
    "MANO_SMPLX_vertex_ids.pkl",
    "SMPL-X__FLAME_vertex_ids.npy",
    "smplx_hand.obj",
    "SMPL_X_template_FLAME_uv.obj",
)


class MissingAssetError(FileNotFoundError):
    """A licensed data file is missing. The message names the file, where it was looked for and
    where to get it."""

    def __init__(self, spec: AssetSpec, searched: list[Path]):
        self.spec = spec
        self.searched = searched
        where = "\n".join(f"  - {p}" for p in searched) or "  (no data folder configured)"
        if spec.download is not None:
            how = (
                f"Register at {spec.register_url}, accept the licence ({spec.licence_url}), then run\n"
                f"  pixie-backend fetch-data --data-dir <folder>\n"
                f"or download it yourself and place it in the data folder."
            )
        else:
            how = spec.instructions
        super().__init__(
            f"Missing {spec.filename} ({spec.purpose}).\nLooked in:\n{where}\n{how}\n"
            f"Set the folder with --data-dir or the {ENV_DATA_DIR} environment variable."
        )


def user_data_dir() -> Path:
    """Per-user default data folder (``.../pixie-blender/data``)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "data"


def candidate_dirs(explicit: str | os.PathLike | None = None) -> list[Path]:
    """Data folders in resolution order: explicit, ``$PIXIE_DATA_DIR``, per-user folder."""
    dirs: list[Path] = []
    if explicit is not None:
        dirs.append(Path(explicit).expanduser())
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(user_data_dir())
    return dirs


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data folder to use.

    An explicit path always wins (even if it does not exist yet, so that errors name it);
    otherwise the first existing candidate, else the per-user folder.
    """
    if explicit is not None:
        return Path(explicit).expanduser()
    for d in candidate_dirs(None):
        if d.is_dir():
            return d
    return user_data_dir()


class DataFolder:
    """Resolved data folder with typed look-ups."""

    def __init__(self, explicit: str | os.PathLike | None = None):
        self.root = resolve_data_dir(explicit)
        self.searched = [self.root] if explicit is not None else candidate_dirs(None)
        env = os.environ.get(ENV_DATA_DIR)
        if explicit is not None:
            #: how the folder was chosen, in words (doctor shows it)
            self.origin = "given with --data-dir"
        elif env and self.root == Path(env).expanduser():
            self.origin = f"from {ENV_DATA_DIR}={env}"
        else:
            self.origin = "the per-user default folder" + ("" if env else f"; {ENV_DATA_DIR} is not set")

    def path(self, key: str) -> Path:
        """Path where asset ``key`` would be, present or not."""
        return self.root / ASSET_BY_KEY[key].filename

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def require(self, key: str) -> Path:
        """Path of asset ``key``; raises :class:`MissingAssetError` if absent."""
        p = self.path(key)
        if not p.is_file():
            spec = ASSET_BY_KEY[key]
            raise MissingAssetError(spec, [d / spec.filename for d in self.searched])
        return p

    def optional(self, key: str) -> Path | None:
        p = self.path(key)
        return p if p.is_file() else None

    @property
    def is_synthetic(self) -> bool:
        """True if the folder was written by ``make-synthetic`` (not a real model)."""
        return (self.root / SYNTHETIC_MARKER).is_file()

    def synthetic_info(self) -> dict:
        """The ``make-synthetic`` settings recorded in the marker file ({} for real data)."""
        marker = self.root / SYNTHETIC_MARKER
        if not marker.is_file():
            return {}
        import json

        text = marker.read_text(encoding="utf-8")
        start = text.find("{")
        try:
            return json.loads(text[start:]) if start >= 0 else {}
        except ValueError:
            return {}


def network_config_for(folder: DataFolder, requested):
    """The network widths to build for ``folder``'s checkpoint.

    A folder written by ``make-synthetic --net tiny`` holds a width-reduced random network; when
    the caller asked for the released architecture, the tiny one is used instead, and this is
    logged. Any other request is returned unchanged (a mismatch then fails in the strict loader,
    naming the keys).

    Args:
        requested: :class:`~pixie_backend.config.NetConfig`.
    """
    import logging

    from .config import NetConfig

    if folder.synthetic_info().get("net") == "tiny" and requested.is_official:
        logging.getLogger(__name__).warning(
            "%s holds SYNTHETIC assets with a width-reduced network (make-synthetic --net tiny): "
            "building NetConfig.tiny()",
            folder.root,
        )
        return NetConfig.tiny()
    return requested


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()
