"""Writing sequence result files (format v1, ``docs/sequence-format.md``).

A sequence file holds a whole clip: the clip's frames (indices, timestamps, status), one
perspective camera, and per-track rows of **raw** per-frame results (pose, expression, jaw, shape,
camera, translation, moderator confidences) plus each track's fixed shape. Smoothing is never
baked in: consumers apply it (``sequence.smoothing``), so it can change without recomputing.

The sequence job builds it from per-frame results in the v1 per-person layout (what
:func:`pixie_backend.export.result_file.result_arrays` returns, or a committed ``.pixie.npz``)::

    builder = SequenceBuilder(ClipInfo.for_frames(paths, fps=30.0, width=W, height=H))
    builder.add_persons(frame=k, arrays=v1_arrays, track_ids=[3, 7], box_sources=["detector", "proposal"])
    builder.set_frame_status(k + 1, "no_person")
    builder.write(out / "clip.pixie-seq.npz", model=header["model"], synthetic=False)

"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..constants import SMPLX_JOINT_NAMES
from ..export.result_file import atomic_savez, json_array
from .placement import PerspectiveCamera, default_camera, perspective_translation
from .shape import robust_betas

SEQUENCE_FORMAT = "pixie-sequence"
SEQUENCE_VERSION = 1
SEQUENCE_SUFFIX = ".pixie-seq.npz"

#: ``frame_status`` codes, in code order.
FRAME_STATUS = ("ok", "no_person", "error", "pending")
#: ``box_source`` codes, in code order: the person detector, a crop proposed by the tracker from the
#: previous frame's keypoints, a box the caller gave.
BOX_SOURCES = ("detector", "proposal", "given")

#: Per-person arrays taken from a v1 result (name in v1 → row array name) and their trailing shapes.
_ROW_ARRAYS = {
    "betas": (None,),
    "expression": (50,),
    "full_pose": (55, 3, 3),
    "cam": (3,),
    "cam_image_px": (3,),
    "bbox": (4,),
    "keypoints_2d": (None, 2),
    "moderator_weights": (3, 2),
}


@dataclass(frozen=True)
class ClipInfo:
    """The clip's frames. ``F`` frames, in presentation order.

    Attributes:
        kind: ``"video"`` or ``"frames"`` (a folder or glob of images).
        name: a name for the clip (the video's or the folder's stem).
        width, height: frame size in pixels.
        fps: nominal frame rate.
        frame_index: (F,) source frame numbers (video: decoded frame number; frames: position in the
            sorted file list). Increasing; a job that skips frames leaves gaps.
        timestamps: (F,) seconds (video: presentation time; frames: ``frame_index / fps``).
        path: the video file or the frames' folder (or None for arrays).
        frame_paths: (F,) image files for ``kind == "frames"``.
        sha256: the video file's hash, if known.
    """

    kind: str
    name: str
    width: int
    height: int
    fps: float
    frame_index: np.ndarray
    timestamps: np.ndarray
    path: str | None = None
    frame_paths: tuple[str, ...] | None = None
    sha256: str | None = None

    def __post_init__(self):
        if self.kind not in ("video", "frames"):
            raise ValueError(f"kind must be 'video' or 'frames', not {self.kind!r}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        fi, ts = np.asarray(self.frame_index), np.asarray(self.timestamps)
        if fi.ndim != 1 or fi.shape != ts.shape or len(fi) == 0:
            raise ValueError("frame_index and timestamps must be non-empty (F,) arrays of one length")
        if len(fi) > 1 and not ((np.diff(fi) > 0).all() and (np.diff(ts) > 0).all()):
            raise ValueError("frame_index and timestamps must be strictly increasing")
        if self.frame_paths is not None and len(self.frame_paths) != len(fi):
            raise ValueError(f"{len(self.frame_paths)} frame paths for {len(fi)} frames")

    @property
    def num_frames(self) -> int:
        return len(self.frame_index)

    @classmethod
    def for_frames(
        cls, paths: Sequence[str | os.PathLike], fps: float, width: int, height: int, name: str | None = None
    ) -> ClipInfo:
        """A clip of image files in the given (natural) order, at ``fps``."""
        paths = [str(Path(p).resolve()) for p in paths]
        n = len(paths)
        folder = str(Path(paths[0]).parent) if n else None
        return cls(
            "frames",
            name or (Path(folder).name if folder else "frames"),
            int(width),
            int(height),
            float(fps),
            np.arange(n),
            np.arange(n) / float(fps),
            folder,
            tuple(paths),
        )

    @classmethod
    def for_video(
        cls,
        path: str | os.PathLike,
        fps: float,
        width: int,
        height: int,
        frame_index: Sequence[int],
        timestamps: Sequence[float],
        sha256: str | None = None,
    ) -> ClipInfo:
        p = Path(path)
        return cls(
            "video",
            p.stem,
            int(width),
            int(height),
            float(fps),
            np.asarray(frame_index),
            np.asarray(timestamps, dtype=np.float64),
            str(p.resolve()),
            None,
            sha256,
        )


@dataclass
class _Row:
    track_id: int
    frame: int
    box_source: int
    values: dict[str, np.ndarray]
    pelvis: np.ndarray


@dataclass
class SequenceBuilder:
    """Collects per-frame, per-person results of one clip and writes the sequence file."""

    clip: ClipInfo
    camera: PerspectiveCamera | None = None
    _rows: dict[tuple[int, int], _Row] = field(default_factory=dict)
    _status: np.ndarray | None = None
    _messages: dict[int, str] = field(default_factory=dict)
    _num_betas: int | None = None
    _num_keypoints: int | None = None

    def __post_init__(self):
        if self.camera is None:
            self.camera = default_camera(self.clip.width, self.clip.height)
        self._status = np.full(self.clip.num_frames, FRAME_STATUS.index("pending"), np.int8)

    def set_frame_status(self, frame: int, status: str, message: str = "") -> None:
        """Status of clip frame ``frame`` (position 0..F−1): ``ok``, ``no_person``, ``error`` or
        ``pending``; an ``error`` keeps its message."""
        self._check_frame(frame)
        if status not in FRAME_STATUS:
            raise ValueError(f"status must be one of {FRAME_STATUS}, not {status!r}")
        self._status[frame] = FRAME_STATUS.index(status)
        if message:
            self._messages[frame] = str(message)
        else:
            self._messages.pop(frame, None)

    def add_persons(
        self,
        frame: int,
        arrays: Mapping[str, np.ndarray],
        track_ids: Sequence[int],
        box_sources: Sequence[str] | None = None,
    ) -> None:
        """Add the P persons of clip frame ``frame``.

        Args:
            arrays: per-person arrays in the v1 result layout (leading dimension P): ``betas``,
                ``expression``, ``full_pose``, ``cam``, ``cam_image_px``, ``bbox``,
                ``keypoints_2d``, ``joints_rest`` and optionally ``moderator_weights``.
            track_ids: (P,) the tracker's id of each person (non-negative, distinct).
            box_sources: (P,) ``detector``, ``proposal`` or ``given`` (default ``detector``).
        """
        self._check_frame(frame)
        n = len(track_ids)
        if len(set(int(t) for t in track_ids)) != n or any(int(t) < 0 for t in track_ids):
            raise ValueError(f"track ids of frame {frame} must be distinct and non-negative: {list(track_ids)}")
        sources = ["detector"] * n if box_sources is None else list(box_sources)
        if len(sources) != n or any(s not in BOX_SOURCES for s in sources):
            raise ValueError(f"box_sources must be {n} of {BOX_SOURCES}, got {sources}")
        vals: dict[str, np.ndarray] = {}
        for name, trailing in _ROW_ARRAYS.items():
            if name not in arrays:
                if name == "moderator_weights":
                    vals[name] = np.full((n, 3, 2), np.nan, np.float32)
                    continue
                raise ValueError(f"frame {frame}: per-person array {name!r} is missing")
            a = np.asarray(arrays[name])
            if (
                a.shape[0] != n
                or len(a.shape) != 1 + len(trailing)
                or any(t is not None and t != s for t, s in zip(trailing, a.shape[1:], strict=True))
            ):
                raise ValueError(f"frame {frame}: {name!r} has shape {a.shape} for {n} persons")
            vals[name] = a
        jr = np.asarray(arrays["joints_rest"]) if "joints_rest" in arrays else None
        if jr is None or jr.shape != (n, 55, 3):
            raise ValueError(f"frame {frame}: 'joints_rest' (P, 55, 3) is needed for the pelvis")
        self._num_betas = self._same(self._num_betas, vals["betas"].shape[1], "betas")
        self._num_keypoints = self._same(self._num_keypoints, vals["keypoints_2d"].shape[1], "keypoints_2d")
        for i, tid in enumerate(track_ids):
            self._rows[(int(tid), int(frame))] = _Row(
                int(tid),
                int(frame),
                BOX_SOURCES.index(sources[i]),
                {k: v[i] for k, v in vals.items()},
                jr[i, 0].astype(np.float64),
            )
        if n and self._status[frame] == FRAME_STATUS.index("pending"):
            self._status[frame] = FRAME_STATUS.index("ok")

    def _check_frame(self, frame: int) -> None:
        if not 0 <= int(frame) < self.clip.num_frames:
            raise ValueError(f"frame {frame} is outside the clip (0..{self.clip.num_frames - 1})")

    @staticmethod
    def _same(old: int | None, new: int, what: str) -> int:
        if old is not None and old != new:
            raise ValueError(f"{what} width changed within the clip ({old} → {new})")
        return new

    @property
    def num_rows(self) -> int:
        return len(self._rows)

    def build(
        self,
        model: Mapping,
        synthetic: bool,
        settings: Mapping | None = None,
        tracker: Mapping | None = None,
        min_track_rows: int = 1,
    ) -> tuple[dict, dict[str, np.ndarray]]:
        """(header, arrays) of the sequence file.

        Args:
            model: the v1 header's ``model`` object (checkpoint and SMPL-X hashes, package file/hash).
            synthetic: produced from synthetic assets or random weights.
            settings: reconstruction settings to record.
            tracker: tracker settings to record.
            min_track_rows: tracks with fewer rows are left out (their frames keep their status).
        """
        by_track: dict[int, list[_Row]] = {}
        for row in self._rows.values():
            by_track.setdefault(row.track_id, []).append(row)
        track_ids = sorted(t for t, rows in by_track.items() if len(rows) >= min_track_rows)
        # tracks in order of first appearance, then id
        track_ids.sort(key=lambda t: (min(r.frame for r in by_track[t]), t))
        rows = [r for t in track_ids for r in sorted(by_track[t], key=lambda r: r.frame)]
        R, T = len(rows), len(track_ids)
        B = self._num_betas or 200
        K = self._num_keypoints or 145
        f32 = np.float32

        def stack(name, trailing, dtype=f32):
            if not rows:
                return np.zeros((0, *trailing), dtype)
            return np.stack([r.values[name] for r in rows]).astype(dtype)

        arrays: dict[str, np.ndarray] = {
            "frame_index": np.asarray(self.clip.frame_index, np.int32),
            "timestamps": np.asarray(self.clip.timestamps, np.float64),
            "frame_status": self._status.copy(),
            "row_track": np.array([track_ids.index(r.track_id) for r in rows], np.int32).reshape(R),
            "row_frame": np.array([r.frame for r in rows], np.int32).reshape(R),
            "betas": stack("betas", (B,)),
            "expression": stack("expression", (50,)),
            "full_pose": stack("full_pose", (55, 3, 3)),
            "cam": stack("cam", (3,)),
            "cam_image_px": stack("cam_image_px", (3,)),
            "bbox": stack("bbox", (4,)),
            "box_source": np.array([r.box_source for r in rows], np.int8).reshape(R),
            "keypoints_2d": stack("keypoints_2d", (K, 2)),
            "moderator_weights": stack("moderator_weights", (3, 2)),
            "pelvis_rest": np.array([r.pelvis for r in rows], f32).reshape(R, 3),
            "track_id": np.array(track_ids, np.int32).reshape(T),
        }
        arrays["transl"] = (
            perspective_translation(
                arrays["cam_image_px"].astype(np.float64), arrays["pelvis_rest"].astype(np.float64), self.camera
            )
            .astype(f32)
            .reshape(R, 3)
        )
        track_betas = np.zeros((T, B), f32)
        for k in range(T):
            sel = arrays["row_track"] == k
            track_betas[k] = robust_betas(arrays["betas"][sel].astype(np.float64))
        arrays["track_betas"] = track_betas
        if self.clip.frame_paths is not None:
            arrays["frame_paths"] = np.array(self.clip.frame_paths, dtype=str)

        c = self.clip
        header = {
            "format": SEQUENCE_FORMAT,
            "version": SEQUENCE_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "producer": {"name": "pixie-backend", "version": __version__},
            "synthetic": bool(synthetic),
            "source": {
                "kind": c.kind,
                "path": c.path,
                "name": c.name,
                "width": c.width,
                "height": c.height,
                "sha256": c.sha256,
            },
            "fps": float(c.fps),
            "num_frames": c.num_frames,
            "num_tracks": T,
            "num_rows": R,
            "camera": self.camera.to_header(),
            "model": dict(model),
            "joint_names": list(SMPLX_JOINT_NAMES),
            "conventions": {
                "frame": "pixie",
                "rotation": "matrix_column_vectors_relative",
                "units": "m",
                "hand_mean": "flat",
                "camera": "opencv",
            },
            "settings": dict(settings or {}),
            "tracker": dict(tracker or {}),
            "frame_messages": {str(k): v for k, v in sorted(self._messages.items())},
            "smoothing": {"filter": "one-euro-zero-phase", "default_strength": 0.5},
        }
        return header, arrays

    def write(
        self,
        path: str | os.PathLike,
        model: Mapping,
        synthetic: bool,
        settings: Mapping | None = None,
        tracker: Mapping | None = None,
        min_track_rows: int = 1,
    ) -> Path:
        """Build and write the file atomically; returns its path."""
        header, arrays = self.build(model, synthetic, settings, tracker, min_track_rows)
        return write_sequence(path, header, arrays)


def write_sequence(path: str | os.PathLike, header: Mapping, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``header`` (0-d JSON string) and ``arrays`` atomically (temporary file, then rename):
    an interrupted write never leaves a partial file."""
    path = Path(path)
    atomic_savez(path, {"header": json_array(dict(header)), **arrays})
    return path


def read_sequence_arrays(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of a sequence file, loaded without pickles (for exports and tests)."""
    with np.load(Path(path), allow_pickle=False) as z:
        header = json.loads(str(z["header"][()]))
        if header.get("format") != SEQUENCE_FORMAT or header.get("version") != SEQUENCE_VERSION:
            raise ValueError(f"{Path(path).name} is not a {SEQUENCE_FORMAT} v{SEQUENCE_VERSION} file")
        return header, {k: z[k] for k in z.files if k != "header"}
