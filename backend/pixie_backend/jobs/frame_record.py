"""One frame of a sequence job as committed: ``frame_<n>.npz`` in the job's work folder.

It holds everything the tracker and the sequence file need from that frame, so that a resumed
run replays it without running any network: the boxes the tracker was shown, the crops it proposed,
and for every person crop that went through the networks the per-person arrays of the v1 result
layout that :class:`~pixie_backend.sequence.sequence_file.SequenceBuilder` takes (``betas``,
``expression``, ``full_pose``, ``cam``, ``cam_image_px``, ``bbox``, ``keypoints_2d``,
``joints_rest``, ``moderator_weights``), with where each crop came from.

Arrays are stored exactly as the live run used them (float32 results, float64 boxes), so a replay
gives the tracker bit-identical input. Loads with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..sequence.tracker import Candidate

FRAME_FORMAT = "pixie-frame"
FRAME_VERSION = 1
#: The per-person arrays kept (v1 result names).
ROW_KEYS: tuple[str, ...] = ("betas", "expression", "full_pose", "cam", "cam_image_px", "bbox", "keypoints_2d",
                             "joints_rest", "moderator_weights")


@dataclass
class FrameRecord:
    """A frame's committed result.

    Attributes:
        detections: (D, 4) float64 boxes of the persons found by the detector (or given), as shown to
            ``Tracker.proposals``; their results are the first D persons.
        proposals: (Q, 4) float64 crops the tracker proposed, ``proposal_ids`` (Q,) the tracks that
            proposed them; their results follow the detections' (a degenerate box has none).
        arrays: per-person arrays (P, ...), see :data:`ROW_KEYS`.
        sources: (P,) ``detector``, ``given`` or ``proposal``.
        proposal_track: (P,) the proposing track of a ``proposal`` person, else -1.
    """

    position: int
    frame_index: int
    timestamp: float
    width: int
    height: int
    detections: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    proposals: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    proposal_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    proposal_track: list[int] = field(default_factory=list)

    @property
    def persons(self) -> int:
        return len(self.sources)

    def candidates(self) -> list[Candidate]:
        """The tracker's candidates, one per person."""
        return [Candidate(self.arrays["bbox"][i].astype(np.float64), self.arrays["keypoints_2d"][i], s,
                          self.proposal_track[i] if s == "proposal" else None)
                for i, s in enumerate(self.sources)]

    def select(self, keep: list[int]) -> dict[str, np.ndarray]:
        """The per-person arrays of persons ``keep``."""
        return {k: v[keep] for k, v in self.arrays.items()}

    def same_proposals(self, boxes: np.ndarray, ids: list[int]) -> bool:
        """Whether ``boxes`` (Q, 4) and ``ids`` are the proposals this frame was computed with."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        return (len(ids) == len(self.proposal_ids) and [int(i) for i in ids] == self.proposal_ids.tolist()
                and np.allclose(boxes, self.proposals, rtol=0, atol=1e-6))

    # ------------------------------------------------------------------ files
    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        header = {"format": FRAME_FORMAT, "version": FRAME_VERSION, "position": self.position,
                  "frame_index": self.frame_index, "timestamp": self.timestamp, "width": self.width,
                  "height": self.height, "sources": list(self.sources),
                  "proposal_track": [int(t) for t in self.proposal_track]}
        arrays = {f"person_{k}": np.asarray(v) for k, v in self.arrays.items()}
        with open(path, "wb") as f:
            np.savez(f, header=np.array(json.dumps(header, sort_keys=True)),
                     detections=np.asarray(self.detections, np.float64).reshape(-1, 4),
                     proposals=np.asarray(self.proposals, np.float64).reshape(-1, 4),
                     proposal_ids=np.asarray(self.proposal_ids, np.int32).reshape(-1), **arrays)
        return path

    @classmethod
    def read(cls, path: str | os.PathLike) -> FrameRecord:
        """Raises ``ValueError`` (not a frame record of this version) or ``OSError``."""
        with np.load(Path(path), allow_pickle=False) as z:
            header = json.loads(str(z["header"][()]))
            if header.get("format") != FRAME_FORMAT or header.get("version") != FRAME_VERSION:
                raise ValueError(f"{Path(path).name} is not a {FRAME_FORMAT} v{FRAME_VERSION} file")
            arrays = {k[len("person_"):]: z[k] for k in z.files if k.startswith("person_")}
            rec = cls(int(header["position"]), int(header["frame_index"]), float(header["timestamp"]),
                      int(header["width"]), int(header["height"]), z["detections"], z["proposals"],
                      z["proposal_ids"], arrays, list(header["sources"]), list(header["proposal_track"]))
        if any(len(v) != rec.persons for v in arrays.values()) or set(arrays) != set(ROW_KEYS):
            raise ValueError(f"{Path(path).name}: inconsistent per-person arrays")
        return rec


def empty_rows(num_betas: int = 200, num_keypoints: int = 145) -> dict[str, np.ndarray]:
    """Per-person arrays for zero persons."""
    f32 = np.float32
    shapes = {"betas": (num_betas,), "expression": (50,), "full_pose": (55, 3, 3), "cam": (3,), "cam_image_px": (3,),
              "bbox": (4,), "keypoints_2d": (num_keypoints, 2), "joints_rest": (55, 3), "moderator_weights": (3, 2)}
    return {k: np.zeros((0, *s), f32) for k, s in shapes.items()}
