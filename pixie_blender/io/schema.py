"""Read and validate result files (format v1 and v2) and model packages (v1), ``docs/result-format.md``.

numpy and the standard library only: no ``bpy``, no torch. Every problem a user can cause (wrong
file, wrong version, missing or malformed arrays, corrupt archive, missing model package) raises
:class:`PixieFormatError` with a message fit for ``Operator.report`` *before* anything is built.

Entry points: :func:`read_result`, :func:`read_package`, :func:`find_package`,
:func:`package_content_sha256`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import format_spec
from .constants import (
    JOINT_NAMES,
    PACKAGE_FORMAT,
    PARENTS,
    RESULT_FORMAT,
    SEQUENCE_FORMAT,
    SUPPORTED_MAJOR_VERSION,
    SUPPORTED_RESULT_VERSIONS,
)

__all__ = [
    "PACKAGE_HASH_ORDER",
    "PackageData",
    "PackageNotFoundError",
    "PersonData",
    "PixieFormatError",
    "ResultData",
    "find_package",
    "find_package_by_hash",
    "package_cache_path",
    "package_content_sha256",
    "read_package",
    "read_result",
]


class PixieFormatError(ValueError):
    """A file is not a readable result or model package; the message is for the user."""


class PackageNotFoundError(PixieFormatError):
    """The model package a result refers to is neither next to it nor in the cache."""


#: Arrays that enter the package content hash, in the order of the format's table.
PACKAGE_HASH_ORDER: tuple[str, ...] = format_spec.PACKAGE_HASH_ORDER

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------------
# low-level npz access


def _npy_header(fp) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version in ((2, 0), (3, 0)):
        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:  # pragma: no cover - numpy writes 1.0-3.0
        raise ValueError(f"unknown .npy version {version}")
    return tuple(int(s) for s in shape), np.dtype(dtype)


class _Archive:
    """An ``.npz`` opened for validation: array shapes/dtypes from the headers, data on demand."""

    def __init__(self, path: Path, what: str):
        self.path = path
        self.what = what
        if not path.is_file():
            raise PixieFormatError(f"{what} not found: {path}")
        if not zipfile.is_zipfile(path):
            raise PixieFormatError(
                f"{path.name} is not a PIXIE {what} (not an .npz archive, or a corrupt one)"
            )
        self.meta: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with zf.open(info) as fp:
                        self.meta[info.filename[:-4]] = _npy_header(fp)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as exc:
            raise PixieFormatError(f"{path.name} is a corrupt {what} archive: {exc}") from exc

    def has(self, name: str) -> bool:
        return name in self.meta

    def shape(self, name: str) -> tuple[int, ...]:
        return self.meta[name][0]

    def dtype(self, name: str) -> np.dtype:
        return self.meta[name][1]

    def load(self, *names: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        try:
            with np.load(self.path, allow_pickle=False) as npz:
                for name in names:
                    out[name] = np.asarray(npz[name])
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, RuntimeError) as exc:
            raise PixieFormatError(f"{self.path.name}: cannot read {self.what} data: {exc}") from exc
        return out

    def header(self, expected_format: str) -> dict[str, Any]:
        if not self.has("header"):
            raise PixieFormatError(f"{self.path.name} is not a PIXIE {self.what}: it has no header")
        raw = self.load("header")["header"]
        if raw.ndim != 0 or raw.dtype.kind not in "US":
            raise PixieFormatError(f"{self.path.name}: the header is not a JSON string")
        text = raw[()]
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        try:
            header = json.loads(str(text))
        except json.JSONDecodeError as exc:
            raise PixieFormatError(f"{self.path.name}: the header is not valid JSON ({exc})") from exc
        if not isinstance(header, dict):
            raise PixieFormatError(f"{self.path.name}: the header is not a JSON object")
        fmt = header.get("format")
        if fmt != expected_format:
            hint = ""
            if fmt == PACKAGE_FORMAT:
                hint = " (it is a model package; import the .pixie.npz result next to it)"
            elif fmt == RESULT_FORMAT:
                hint = " (it is a still-image result; use Import PIXIE Result)"
            elif fmt == SEQUENCE_FORMAT:
                hint = " (it is an image-sequence result; use Import Image Sequence)"
            raise PixieFormatError(f"{self.path.name} is not a PIXIE {self.what}: format is {fmt!r}{hint}")
        allowed = SUPPORTED_RESULT_VERSIONS if fmt == RESULT_FORMAT else (SUPPORTED_MAJOR_VERSION,)
        _check_version(self.path, header.get("version"), self.what, allowed)
        return header


def _check_version(path: Path, version: Any, what: str, allowed: tuple[int, ...]) -> None:
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        major = None
    if major not in allowed:
        readable = " and ".join(str(v) for v in allowed)
        raise PixieFormatError(
            f"{path.name}: {what} format version {version!r} is not supported "
            f"(this add-on reads version {readable}); update the add-on or the backend"
        )


def _require_shape(arc: _Archive, name: str, shape: tuple[int | None, ...], *, kind: str = "f"):
    """Check an array's presence, shape (None = any) and dtype kind ('f' float, 'i' integer)."""
    if not arc.has(name):
        raise PixieFormatError(f"{arc.path.name}: required array {name!r} is missing")
    got = arc.shape(name)
    ok = len(got) == len(shape) and all(s is None or s == g for s, g in zip(shape, got, strict=True))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise PixieFormatError(f"{arc.path.name}: array {name!r} has shape {got}, expected {want}")
    dk = arc.dtype(name).kind
    if kind == "f" and dk != "f":
        raise PixieFormatError(f"{arc.path.name}: array {name!r} must be floating point, is {dk}")
    if kind == "i" and dk not in "iu":
        raise PixieFormatError(f"{arc.path.name}: array {name!r} must be integer, is {dk}")
    if kind == "u8" and arc.dtype(name) != np.uint8:
        raise PixieFormatError(f"{arc.path.name}: array {name!r} must be uint8")
    return got


def _check_table(arc: _Archive, table, dims: dict[str, int], needs: tuple[str, ...]) -> list[str]:
    """Check the arrays of ``table`` whose ``need`` is in ``needs`` (absent optional ones are
    skipped); symbols in ``dims`` are fixed sizes, new symbols take the first size seen.

    Returns:
        the names present and checked.
    """
    checked = []
    for spec in table:
        if spec.need not in needs or (spec.need != "required" and not arc.has(spec.name)):
            continue
        want = tuple(dims.get(d) if isinstance(d, str) else d for d in spec.shape)
        got = _require_shape(arc, spec.name, want, kind=spec.kind)
        for d, g in zip(spec.shape, got, strict=True):
            if isinstance(d, str):
                dims.setdefault(d, g)
        checked.append(spec.name)
    return checked


def _finite(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    for name, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise PixieFormatError(f"{path.name}: array {name!r} contains NaN or infinite values")


def _check_rotations(path: Path, name: str, rot: np.ndarray) -> None:
    r = rot.astype(np.float64)
    eye = np.eye(3)
    ortho = np.abs(np.einsum("...ji,...jk->...ik", r, r) - eye).max(initial=0.0)
    det = np.linalg.det(r) if r.size else np.ones(1)
    if ortho > 1e-3 or (det < 0.5).any():
        raise PixieFormatError(
            f"{path.name}: {name!r} does not hold rotation matrices (max |RᵀR−I| = {ortho:.2g})"
        )


# --------------------------------------------------------------------------------------------
# result files


@dataclass
class PersonData:
    """One person of a result file; arrays are views into the result's (P, ...) arrays."""

    index: int
    betas: np.ndarray  # (B,) B <= 200
    expression: np.ndarray  # (50,)
    full_pose: np.ndarray  # (55, 3, 3) relative rotations, PIXIE frame for the root
    cam_image_px: np.ndarray  # (3,) [a, bx, by]
    vertices: np.ndarray  # (V, 3) posed, PIXIE frame
    pose_correctives: np.ndarray | None = None  # (V, 3) rest frame
    joints_rest: np.ndarray | None = None  # (55, 3) y-up SMPL-X frame
    moderator_weights: np.ndarray | None = None  # (3, 2)
    bbox: np.ndarray | None = None  # (4,)
    cam: np.ndarray | None = None  # (3,)
    light: np.ndarray | None = None  # (9, 3)
    tex: np.ndarray | None = None  # (50,)
    keypoints_2d: np.ndarray | None = None  # (145, 2)
    albedo_uv: np.ndarray | None = None  # (H, W, 3) uint8, row 0 = top
    displacement_uv: np.ndarray | None = None  # (H, W) float metres (float16 in v2 files)
    # format v2
    lit_uv: np.ndarray | None = None  # (H, W, 3) uint8 sRGB
    photo_uv: np.ndarray | None = None  # (H, W, 3) uint8 sRGB
    normal_map_uv: np.ndarray | None = None  # (H, W, 3) uint8 tangent space n·½ + ½
    head_confidence: np.ndarray | None = None  # () float
    detail_gate: np.ndarray | None = None  # () uint8, 1 = detail computed


class HeaderFile:
    """What result and sequence files share: their ``path``, the JSON ``header`` and what it says about
    the source and the model package. Subclasses name their file suffixes and default name."""

    path: Path
    header: dict[str, Any]
    SUFFIXES: tuple[str, ...] = (".npz",)
    DEFAULT_NAME = "pixie"

    @property
    def source(self) -> dict[str, Any]:
        src = self.header.get("source")
        return src if isinstance(src, dict) else {}

    @property
    def source_name(self) -> str:
        """Name for the avatars: the source's name, else the file's stem."""
        name = self.source.get("name")
        if isinstance(name, str) and name.strip():
            return name.strip()
        stem = self.path.name
        for suffix in self.SUFFIXES:
            if stem.endswith(suffix):
                return stem[: -len(suffix)] or self.DEFAULT_NAME
        return stem

    @property
    def package_sha256(self) -> str:
        return self.header["model"]["package"]["sha256"]

    @property
    def package_file(self) -> str | None:
        name = self.header["model"]["package"].get("file")
        return name if isinstance(name, str) and name else None

    @property
    def synthetic(self) -> bool:
        return bool(self.header.get("synthetic", False))


@dataclass
class ResultData(HeaderFile):
    """A validated result file (all persons)."""

    SUFFIXES = (".pixie.npz", ".npz")

    path: Path
    header: dict[str, Any]
    persons: list[PersonData] = field(default_factory=list)

    @property
    def version(self) -> Any:
        return self.header.get("version")


    @property
    def num_vertices(self) -> int:
        return int(self.persons[0].vertices.shape[0]) if self.persons else 0


    @property
    def appearance_notices(self) -> list[str]:
        """The backend's notices about face-appearance features that were off (v2)."""
        look = self.header.get("appearance")
        notes = look.get("notices") if isinstance(look, dict) else None
        return [str(n) for n in notes] if isinstance(notes, list) else []

    def find_source_image(self) -> Path | None:
        """The source photo: its path as given (absolute or relative to the result), else a file
        of the same name next to the result, else the photo a ``<stem>.pixie-source.json`` beside
        the result records (results of Reconstruct from Image)."""
        raw = self.source.get("path")
        candidates: list[Path] = []
        if isinstance(raw, str) and raw:
            p = Path(raw)
            candidates.append(p if p.is_absolute() else self.path.parent / p)
            candidates.append(self.path.parent / p.name)
        # Reconstruct from Image uploads the photo (the header names the upload); the add-on
        # records the local photo beside the result: <stem>.pixie-source.json {"image": path}
        stem = self.path.name[: -len(".pixie.npz")] if self.path.name.endswith(".pixie.npz") else self.path.stem
        record = self.path.with_name(f"{stem}.pixie-source.json")
        if record.is_file():
            try:
                image = json.loads(record.read_text(encoding="utf-8")).get("image")
            except (OSError, ValueError, AttributeError):
                image = None
            if isinstance(image, str) and image:
                candidates.append(Path(image))
        for c in candidates:
            if c.is_file():
                return c.resolve()
        return None


#: Per-person arrays that only feed metadata; a non-finite one is ignored, not an error.
_INFORMATIONAL = ("moderator_weights", "bbox", "cam", "light", "tex", "keypoints_2d", "head_confidence")

_POSE_PARTS = (  # (array, joints) assembling full_pose when a writer leaves it out
    ("global_orient", 1),
    ("body_pose", 21),
    ("jaw_pose", 1),
    ("leye_pose", 1),
    ("reye_pose", 1),
    ("left_hand_pose", 15),
    ("right_hand_pose", 15),
)


def read_result(path: str | os.PathLike) -> ResultData:
    """Read and validate a ``<stem>.pixie.npz`` result file (all persons)."""
    path = Path(path)
    arc = _Archive(path, "result file")
    header = arc.header(RESULT_FORMAT)
    name = path.name

    status = header.get("status", "ok")
    if status != "ok":
        raise PixieFormatError(f"{name}: result status is {status!r}, nothing to import")
    names = header.get("joint_names")
    if names is not None and tuple(names) != JOINT_NAMES:
        raise PixieFormatError(f"{name}: unexpected joint names or joint order in the header")
    conv = header.get("conventions") or {}
    expected = {
        "frame": "pixie",
        "rotation": "matrix_column_vectors_relative",
        "units": "m",
        "hand_mean": "flat",
    }
    for key, want in expected.items():
        if key in conv and conv[key] != want:
            raise PixieFormatError(
                f"{name}: unsupported convention {key}={conv[key]!r} (this add-on reads {want!r})"
            )
    try:
        sha = header["model"]["package"]["sha256"]
    except (KeyError, TypeError):
        sha = None
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise PixieFormatError(f"{name}: the header does not name its model package (model.package.sha256)")

    num = header.get("num_persons")
    if not isinstance(num, int) or num < 0:
        raise PixieFormatError(f"{name}: header num_persons is missing or invalid")
    if num == 0:
        src = (header.get("source") or {}).get("name", "the image")
        raise PixieFormatError(f"{name}: no person was found in {src}; nothing to import")

    dims = {"P": num}
    to_load = _check_table(arc, format_spec.RESULT_ARRAYS, dims, ("required", "optional"))
    if dims["B"] > 300:
        raise PixieFormatError(f"{name}: 'betas' has {dims['B']} components, at most 300 supported")
    if "full_pose" not in to_load:
        to_load += _check_table(arc, format_spec.RESULT_ARRAYS, dims, ("pose",))
        for part, _ in _POSE_PARTS:  # all parts, since full_pose is not there
            if part not in to_load:
                raise PixieFormatError(f"{name}: required array {part!r} is missing")
    P = num
    data = arc.load(*to_load)
    # informational arrays may hold NaN for "not available" (e.g. moderator_weights when the
    # moderator did not run): drop them instead of refusing the file
    for info in _INFORMATIONAL:
        if info in data and not np.isfinite(data[info]).all():
            del data[info]
    _finite(path, data)
    if "full_pose" not in data:
        data["full_pose"] = np.concatenate([data.pop(p) for p, _ in _POSE_PARTS], axis=1)
    _check_rotations(path, "full_pose", data["full_pose"])
    cam_a = data["cam_image_px"][:, 0]
    if (cam_a <= 0).any():
        raise PixieFormatError(f"{name}: cam_image_px scale must be positive")

    persons = []
    for i in range(P):
        kw = {k: data[k][i] for k in data}
        persons.append(PersonData(index=i, **kw))
    return ResultData(path=path, header=header, persons=persons)


# --------------------------------------------------------------------------------------------
# model packages

_SMALL_PACKAGE_ARRAYS = ("parents", "joints_template", "joints_shapedirs", "joints_exprdirs")


@dataclass
class PackageData:
    """A validated model package. The small arrays that every import needs are loaded; the big
    ones (``v_template``, ``shapedirs``, ``posedirs``, ...) are read on demand with :meth:`load`."""

    path: Path
    header: dict[str, Any]
    content_sha256: str
    num_vertices: int
    num_faces: int
    num_betas: int
    has_uv: bool
    parents: np.ndarray
    joints_template: np.ndarray  # (55, 3)
    joints_shapedirs: np.ndarray  # (55, 3, B)
    joints_exprdirs: np.ndarray  # (55, 3, 50)
    _arc: _Archive = field(repr=False, default=None)  # type: ignore[assignment]
    verified: bool = False  # set by verify()

    @property
    def synthetic(self) -> bool:
        return bool(self.header.get("synthetic", False))

    @property
    def smplx_sha256(self) -> str | None:
        return self.header.get("smplx_sha256")

    def load(self, *names: str) -> dict[str, np.ndarray]:
        """Load (and finiteness-check) arrays by name."""
        missing = [n for n in names if not self._arc.has(n)]
        if missing:
            raise PixieFormatError(f"{self.path.name}: model package lacks {', '.join(missing)}")
        data = self._arc.load(*names)
        _finite(self.path, data)
        return data

    def compute_content_sha256(self) -> str:
        """Recompute the content hash from the arrays (reads the whole package)."""
        present = [n for n in PACKAGE_HASH_ORDER if self._arc.has(n)]
        return package_content_sha256(self._arc.load(*present))

    def verify(self) -> None:
        """Raise :class:`PixieFormatError` unless the arrays hash to ``content_sha256``."""
        if self.verified:
            return
        got = self.compute_content_sha256()
        self.verified = got == self.content_sha256
        if not self.verified:
            raise PixieFormatError(
                f"{self.path.name}: model package content does not match its hash "
                f"(header {self.content_sha256[:12]}, content {got[:12]}); the file is damaged"
            )


def package_content_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the package arrays in :data:`PACKAGE_HASH_ORDER` (``header`` excluded): for
    each present array the UTF-8 text ``name|dtype.str|shape`` (e.g. ``v_template|<f4|(10475, 3)``)
    immediately followed by its C-contiguous little-endian bytes."""
    h = hashlib.sha256()
    for name in PACKAGE_HASH_ORDER:
        if name not in arrays:
            continue
        a = np.asarray(arrays[name])
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        h.update(f"{name}|{a.dtype.str}|{tuple(a.shape)}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_package(path: str | os.PathLike) -> PackageData:
    """Read and validate a ``smplx_package_<hash12>.npz`` model package (big arrays stay on disk)."""
    path = Path(path)
    arc = _Archive(path, "model package")
    header = arc.header(PACKAGE_FORMAT)
    name = path.name
    sha = header.get("content_sha256")
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise PixieFormatError(f"{name}: header content_sha256 is missing or invalid")
    names = header.get("joint_names")
    if names is not None and tuple(names) != JOINT_NAMES:
        raise PixieFormatError(f"{name}: unexpected joint names or joint order in the package")

    dims: dict[str, int] = {}
    _check_table(arc, format_spec.PACKAGE_ARRAYS, dims, ("required",))
    has_uv = arc.has("uv_coords") or arc.has("uv_faces")
    if has_uv:
        for uv in ("uv_coords", "uv_faces"):
            spec = next(a for a in format_spec.PACKAGE_ARRAYS if a.name == uv)
            _require_shape(arc, uv, tuple(dims.get(d) if isinstance(d, str) else d for d in spec.shape),
                           kind=spec.kind)
    V, F, B = dims["V"], dims["F"], dims["B"]
    if V == 0 or F == 0:
        raise PixieFormatError(f"{name}: the model package has an empty mesh")
    hv = header.get("num_vertices")
    if hv is not None and hv != V:
        raise PixieFormatError(f"{name}: header says {hv} vertices, arrays have {V}")

    small = arc.load(*_SMALL_PACKAGE_ARRAYS)
    _finite(path, small)
    if tuple(int(p) for p in small["parents"]) != PARENTS:
        raise PixieFormatError(f"{name}: the kinematic tree (parents) is not SMPL-X's")
    return PackageData(
        path=path,
        header=header,
        content_sha256=sha,
        num_vertices=V,
        num_faces=F,
        num_betas=B,
        has_uv=has_uv,
        parents=small["parents"].astype(np.int32),
        joints_template=small["joints_template"].astype(np.float64),
        joints_shapedirs=small["joints_shapedirs"].astype(np.float64),
        joints_exprdirs=small["joints_exprdirs"].astype(np.float64),
        _arc=arc,
    )


def package_cache_path(cache_dir: str | os.PathLike, content_sha256: str) -> Path:
    """Where the add-on's cache keeps a package: ``<cache>/packages/<content_sha256>.npz``."""
    return Path(cache_dir) / "packages" / f"{content_sha256}.npz"


def find_package_by_hash(
    want: str,
    directories: Iterable[str | os.PathLike] = (),
    cache_dirs: Iterable[str | os.PathLike] = (),
    file_name: str | None = None,
    context: str = "",
) -> PackageData:
    """Find and validate the model package with content hash ``want``: in each of
    ``directories`` (by ``file_name``, then any ``smplx_package_<hash12>*.npz``), then in each
    cache directory."""
    candidates: list[Path] = []
    for d in directories:
        d = Path(d)
        if file_name:
            candidates.append(d / Path(file_name).name)
        if d.is_dir():
            candidates.extend(sorted(d.glob(f"smplx_package_{want[:12]}*.npz")))
    for cache in cache_dirs:
        candidates.append(package_cache_path(cache, want))
    seen: set[Path] = set()
    mismatched: list[str] = []
    for cand in candidates:
        if cand in seen or not cand.is_file():
            continue
        seen.add(cand)
        pkg = read_package(cand)
        if pkg.content_sha256 == want:
            return pkg
        mismatched.append(f"{cand.name} (hash {pkg.content_sha256[:12]})")
    msg = (
        f"{context}model package smplx_package_{want[:12]}.npz not found next to the "
        f"result nor in the add-on cache"
    )
    if mismatched:
        msg += f"; found only other packages: {', '.join(mismatched)}"
    msg += ". Copy the package written by the backend next to the result file."
    raise PackageNotFoundError(msg)


def find_package(result: ResultData, cache_dirs: Iterable[str | os.PathLike] = ()) -> PackageData:
    """Find and validate the model package of ``result``: next to the result file (by the header's
    file name, then any ``smplx_package_<hash12>*.npz``), then in each cache directory."""
    return find_package_by_hash(
        result.package_sha256,
        [result.path.parent],
        cache_dirs,
        file_name=result.package_file,
        context=f"{result.path.name}: ",
    )
