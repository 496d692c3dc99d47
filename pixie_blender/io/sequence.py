"""Read and validate sequence result files (``docs/sequence-format.md``, format v1).

numpy and the standard library only. Every problem a user can cause raises
:class:`~pixie_blender.io.schema.PixieFormatError` with a message fit for ``Operator.report``,
before anything is built. The backend's writer (``pixie_backend/sequence/sequence_file.py``) is a
separate implementation; ``tests/contract/test_sequence_contract.py`` keeps the two equal.

    seq = read_sequence("clip.pixie-seq.npz")
    for track in seq.tracks:
        track.frames, track.full_pose, track.expression, track.transl, track.betas
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .constants import (
    JOINT_NAMES,
    NUM_EXPRESSION,
    NUM_JOINTS,
    SEQUENCE_FORMAT,
    SEQUENCE_SUFFIX,
    SOURCE_RECORD_SUFFIX,
)
from .schema import (
    HeaderFile,
    PackageData,
    PixieFormatError,
    _Archive,
    _check_rotations,
    _finite,
    _require_shape,
    find_package_by_hash,
)

__all__ = [
    "BOX_SOURCES",
    "FRAME_STATUS",
    "SEQUENCE_SUFFIX",
    "SOURCE_RECORD_SUFFIX",
    "CameraIntrinsics",
    "SequenceData",
    "TrackData",
    "find_sequence_package",
    "read_sequence",
]

#: ``frame_status`` codes.
FRAME_STATUS = ("ok", "no_person", "error", "pending")
#: ``box_source`` codes.
BOX_SOURCES = ("detector", "proposal", "given")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class CameraIntrinsics:
    """The clip's one pinhole camera, image pixels (origin at the centre of the top-left pixel)."""

    focal_px: float
    cx: float
    cy: float
    width: int
    height: int
    focal_source: str = "diagonal"


@dataclass
class TrackData:
    """One tracked person: N rows, one per frame the person was reconstructed in, in frame order."""

    index: int  #: position in the file (0..T−1)
    id: int  #: the tracker's id
    frames: np.ndarray  #: (N,) clip frame positions, increasing
    times: np.ndarray  #: (N,) seconds
    betas: np.ndarray  #: (B,) the track's fixed shape (robust average)
    betas_raw: np.ndarray  #: (N, B) per frame
    expression: np.ndarray  #: (N, 50)
    full_pose: np.ndarray  #: (N, 55, 3, 3) relative rotations, root in the PIXIE frame
    cam: np.ndarray  #: (N, 3) weak perspective, normalised crop
    cam_image_px: np.ndarray  #: (N, 3) [a, bx, by]
    transl: np.ndarray  #: (N, 3) camera-frame translation of the frame's own body
    pelvis_rest: np.ndarray  #: (N, 3) rest pelvis of the frame's own body (y-up SMPL-X frame)
    bbox: np.ndarray  #: (N, 4)
    box_source: np.ndarray  #: (N,) int8 codes of :data:`BOX_SOURCES`
    keypoints_2d: np.ndarray  #: (N, K, 2)
    moderator_weights: np.ndarray  #: (N, 3, 2), NaN where the moderator did not run

    @property
    def num_rows(self) -> int:
        return len(self.frames)

    @property
    def first_frame(self) -> int:
        return int(self.frames[0])

    @property
    def last_frame(self) -> int:
        return int(self.frames[-1])

    def missing_frames(self) -> np.ndarray:
        """Clip frame positions between the first and last row that have no row."""
        span = np.arange(self.first_frame, self.last_frame + 1)
        return span[~np.isin(span, self.frames)]

    def pelvis_camera(self) -> np.ndarray:
        """(N, 3) where the pelvis joint is in the camera frame: ``pelvis_rest + transl``."""
        return self.pelvis_rest.astype(np.float64) + self.transl.astype(np.float64)


@dataclass
class SequenceData(HeaderFile):
    """A validated sequence result file."""

    SUFFIXES = (SEQUENCE_SUFFIX, ".npz")
    DEFAULT_NAME = "clip"

    path: Path
    header: dict[str, Any]
    fps: float
    frame_index: np.ndarray  #: (F,) source frame numbers
    timestamps: np.ndarray  #: (F,) seconds
    frame_status: np.ndarray  #: (F,) int8 codes of :data:`FRAME_STATUS`
    camera: CameraIntrinsics
    frame_paths: list[str] | None = None
    tracks: list[TrackData] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.frame_index)

    def _resolve(self, raw: str | None) -> Path | None:
        if not raw:
            return None
        p = Path(raw)
        for c in (p if p.is_absolute() else self.path.parent / p, self.path.parent / p.name):
            if c.is_file():
                return c.resolve()
        return None

    def source_record(self) -> dict[str, Any]:
        """The add-on's record of the local clip beside the file (``<name>.pixie-seq-source.json``,
        written by Import Image Sequence when a backend computed the file from an upload):
        ``{"video": path}`` or ``{"frames": [path, ...]}``; empty when there is none."""
        name = self.path.name
        stem = name[: -len(SEQUENCE_SUFFIX)] if name.endswith(SEQUENCE_SUFFIX) else self.path.stem
        try:
            doc = json.loads(self.path.with_name(f"{stem}{SOURCE_RECORD_SUFFIX}").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def find_video(self) -> Path | None:
        """The source video (``source.kind == "video"``): its path as given, else by name next to
        the file, else the local video the source record names."""
        if self.source.get("kind") != "video":
            return None
        found = self._resolve(self.source.get("path"))
        if found is None:
            local = self.source_record().get("video")
            if isinstance(local, str) and local and Path(local).is_file():
                found = Path(local).resolve()
        return found

    def find_frames(self) -> list[Path] | None:
        """The frame images (``source.kind == "frames"``) if every one is found (as given, else by
        name next to the file or in a folder of the clip's name there, else the local frames the
        source record names)."""
        if not self.frame_paths:
            return None
        out = []
        alt = self.path.parent / self.source_name
        for raw in self.frame_paths:
            p = self._resolve(raw)
            if p is None and (alt / Path(raw).name).is_file():
                p = (alt / Path(raw).name).resolve()
            if p is None:
                return self._recorded_frames()
            out.append(p)
        return out

    def _recorded_frames(self) -> list[Path] | None:
        local = self.source_record().get("frames")
        if not isinstance(local, list) or len(local) != len(self.frame_paths or ()):
            return None
        if not all(isinstance(p, str) and p and Path(p).is_file() for p in local):
            return None
        return [Path(p).resolve() for p in local]


_ROW_SPECS = {  # name: (trailing shape, dtype kind)
    "betas": ((None,), "f"),
    "expression": ((NUM_EXPRESSION,), "f"),
    "full_pose": ((NUM_JOINTS, 3, 3), "f"),
    "cam": ((3,), "f"),
    "cam_image_px": ((3,), "f"),
    "transl": ((3,), "f"),
    "pelvis_rest": ((3,), "f"),
    "bbox": ((4,), "f"),
    "box_source": ((), "i"),
    "keypoints_2d": ((None, 2), "f"),
    "moderator_weights": ((3, 2), "f"),
}


def _camera(name: str, raw: Any) -> CameraIntrinsics:
    try:
        f = float(raw["focal_px"])
        cx, cy = (float(v) for v in raw["principal_point"])
        w, h = int(raw["width"]), int(raw["height"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PixieFormatError(f"{name}: the header's camera is missing or malformed ({exc})") from exc
    if raw.get("model", "pinhole") != "pinhole" or not (np.isfinite([f, cx, cy]).all() and f > 0 and w > 0 and h > 0):
        raise PixieFormatError(f"{name}: the header's camera is not a valid pinhole camera")
    return CameraIntrinsics(f, cx, cy, w, h, str(raw.get("focal_source", "diagonal")))


def read_sequence(path: str | os.PathLike) -> SequenceData:
    """Read and validate a ``<clip>.pixie-seq.npz`` sequence result file (all tracks)."""
    path = Path(path)
    arc = _Archive(path, "sequence file")
    header = arc.header(SEQUENCE_FORMAT)
    name = path.name

    names = header.get("joint_names")
    if names is not None and tuple(names) != JOINT_NAMES:
        raise PixieFormatError(f"{name}: unexpected joint names or joint order in the header")
    conv = header.get("conventions") or {}
    expected = {
        "frame": "pixie",
        "rotation": "matrix_column_vectors_relative",
        "units": "m",
        "hand_mean": "flat",
        "camera": "opencv",
    }
    for key, want in expected.items():
        if key in conv and conv[key] != want:
            raise PixieFormatError(f"{name}: unsupported convention {key}={conv[key]!r} (this add-on reads {want!r})")
    try:
        sha = header["model"]["package"]["sha256"]
    except (KeyError, TypeError):
        sha = None
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise PixieFormatError(f"{name}: the header does not name its model package (model.package.sha256)")
    fps = header.get("fps")
    if not isinstance(fps, (int, float)) or not np.isfinite(fps) or fps <= 0:
        raise PixieFormatError(f"{name}: header fps is missing or not positive")
    camera = _camera(name, header.get("camera"))

    F = _require_shape(arc, "frame_index", (None,), kind="i")[0]
    if F == 0:
        raise PixieFormatError(f"{name}: the clip has no frames")
    _require_shape(arc, "timestamps", (F,))
    _require_shape(arc, "frame_status", (F,), kind="i")
    R = _require_shape(arc, "row_track", (None,), kind="i")[0]
    _require_shape(arc, "row_frame", (R,), kind="i")
    T = _require_shape(arc, "track_id", (None,), kind="i")[0]
    B = _require_shape(arc, "betas", (R, None))[1]
    _require_shape(arc, "track_betas", (T, B))
    for row_name, (trailing, kind) in _ROW_SPECS.items():
        _require_shape(arc, row_name, (R, *trailing), kind=kind)
    to_load = ["frame_index", "timestamps", "frame_status", "row_track", "row_frame", "track_id", "track_betas"]
    to_load += list(_ROW_SPECS)
    has_paths = arc.has("frame_paths")
    if has_paths:
        if arc.shape("frame_paths") != (F,) or arc.dtype("frame_paths").kind not in "US":
            raise PixieFormatError(f"{name}: 'frame_paths' must be ({F},) strings")
        to_load.append("frame_paths")
    data = arc.load(*to_load)

    if header.get("num_frames", F) != F or header.get("num_tracks", T) != T or header.get("num_rows", R) != R:
        raise PixieFormatError(f"{name}: the header's frame, track or row counts do not match the arrays")
    if T == 0:
        raise PixieFormatError(f"{name}: no person was tracked in {header.get('source', {}).get('name', 'the clip')}")
    mw = data.pop("moderator_weights")
    _finite(path, {k: v for k, v in data.items() if k != "frame_paths"})
    if not np.isnan(mw[~np.isfinite(mw)]).all():
        raise PixieFormatError(f"{name}: 'moderator_weights' contains infinite values")
    ts = data["timestamps"].astype(np.float64)
    if F > 1 and not ((np.diff(data["frame_index"]) > 0).all() and (np.diff(ts) > 0).all()):
        raise PixieFormatError(f"{name}: frame_index and timestamps must increase")
    status = data["frame_status"]
    if ((status < 0) | (status >= len(FRAME_STATUS))).any():
        raise PixieFormatError(f"{name}: unknown frame_status codes")
    rt, rf = data["row_track"].astype(np.int64), data["row_frame"].astype(np.int64)
    if R and (rt.min() < 0 or rt.max() >= T or rf.min() < 0 or rf.max() >= F):
        raise PixieFormatError(f"{name}: row_track or row_frame out of range")
    key = rt * F + rf
    if R > 1 and not (np.diff(key) > 0).all():
        raise PixieFormatError(f"{name}: rows must be sorted by track, then frame, without repeats")
    if len(set(data["track_id"].tolist())) != T:
        raise PixieFormatError(f"{name}: track ids must be distinct")
    bs = data["box_source"]
    if R and (bs.min() < 0 or bs.max() >= len(BOX_SOURCES)):
        raise PixieFormatError(f"{name}: unknown box_source codes")
    _check_rotations(path, "full_pose", data["full_pose"])
    if R and (data["cam_image_px"][:, 0] <= 0).any():
        raise PixieFormatError(f"{name}: cam_image_px scale must be positive")
    if (status[rf] != FRAME_STATUS.index("ok")).any():
        raise PixieFormatError(f"{name}: a frame with rows does not have status 'ok'")

    starts = np.searchsorted(rt, np.arange(T + 1))
    tracks = []
    for k in range(T):
        sl = slice(int(starts[k]), int(starts[k + 1]))
        if sl.start == sl.stop:
            raise PixieFormatError(f"{name}: track {int(data['track_id'][k])} has no rows")
        tracks.append(
            TrackData(
                index=k,
                id=int(data["track_id"][k]),
                frames=rf[sl].astype(np.int64),
                times=ts[rf[sl]],
                betas=data["track_betas"][k],
                betas_raw=data["betas"][sl],
                expression=data["expression"][sl],
                full_pose=data["full_pose"][sl],
                cam=data["cam"][sl],
                cam_image_px=data["cam_image_px"][sl],
                transl=data["transl"][sl],
                pelvis_rest=data["pelvis_rest"][sl],
                bbox=data["bbox"][sl],
                box_source=data["box_source"][sl],
                keypoints_2d=data["keypoints_2d"][sl],
                moderator_weights=mw[sl],
            )
        )
    return SequenceData(
        path=path,
        header=header,
        fps=float(fps),
        frame_index=data["frame_index"].astype(np.int64),
        timestamps=ts,
        frame_status=status.astype(np.int8),
        camera=camera,
        frame_paths=[str(p) for p in data["frame_paths"]] if has_paths else None,
        tracks=tracks,
    )


def find_sequence_package(seq: SequenceData, cache_dirs=()) -> PackageData:
    """The model package of ``seq``: next to the file (by name, then by hash prefix), then in the
    cache."""
    return find_package_by_hash(
        seq.package_sha256, [seq.path.parent], cache_dirs, file_name=seq.package_file, context=f"{seq.path.name}: "
    )
