"""Identity across frames: associate per-frame person results into tracks.

What was chosen, and why:

* **Association by predicted keypoints and boxes** (a SORT-style tracker, Bewley et al. 2016, with
  OKS-style keypoint similarity in place of appearance features). Each track predicts where its
  keypoints will be (last keypoints moved by a smoothed constant velocity); each candidate (a person
  crop that went through the networks) is scored against each track by
  ``similarity = w·IoU(boxes) + (1 − w)·OKS(keypoints)`` and the assignment maximising the total
  similarity is found with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``).
  Boxes alone are ambiguous when people overlap; keypoints (44 body, head, hand-tip and foot
  points, scaled by the person's size as in COCO's object keypoint similarity) tell apart people of
  different size, pose or depth, and the velocity carries identities through a crossing. PIXIE
  gives keypoints for every crop, so this costs nothing extra; appearance embeddings would need
  another network.
* **Short memory for occlusions**: a track that is not seen survives ``max_age`` frames (default
  30, one second at 30 fps) coasting on its velocity, and is matched again when the person
  reappears near the prediction.
* **The previous frame's keypoints propose the next crop** (:meth:`Tracker.proposals`): today's
  detector is face-driven, so a person who turns away is not detected. Every live track that no
  detection of the frame continues proposes a box around its predicted keypoints; the job runs the
  networks on the proposals and passes the results back as ``proposal`` candidates, which may only
  continue their own track and only if they still look like it (``min_proposal_similarity``). A
  track followed by proposals alone for ``max_unconfirmed`` frames (default 90) stops proposing,
  so a track cannot drift onto background forever, and a track whose proposals were rejected
  ``max_rejected`` frames in a row (default 3: the person left the picture or is hidden) stops
  proposing until it is matched again, so a lost person does not cost a network run every frame.
* New tracks start from unmatched detector (or given) candidates; ids are never reused.

Deterministic and free of randomness, so a resumed job can rebuild the state by replaying the
committed frames through :meth:`Tracker.update` (or save :meth:`Tracker.state_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

#: Rows of PIXIE's 145 keypoints used for tracking: the 22 body joints (pelvis … wrists) and the 22
#: extra joints (head top, nose, eyes, ears, finger tips, toes, heels). The 68 face landmarks are left
#: out so that the face does not dominate the similarity.
TRACKING_ROWS: tuple[int, ...] = tuple(range(22)) + tuple(range(123, 145))

CANDIDATE_SOURCES = ("detector", "proposal", "given")


@dataclass(frozen=True)
class TrackerConfig:
    iou_weight: float = 0.5  #: w in ``similarity = w·IoU + (1 − w)·OKS``
    min_similarity: float = 0.2  #: weaker pairs are never associated
    min_proposal_similarity: float = 0.35  #: a proposal's result must resemble its track this much
    max_age: int = 30  #: frames a track survives unseen
    max_unconfirmed: int = 90  #: frames a track may be followed by proposals alone
    max_rejected: int = 3  #: consecutive frames with a rejected proposal after which a track stops proposing
    oks_kappa: float = 0.1  #: keypoint tolerance as a fraction of the person's size
    proposal_margin: float = 0.1  #: a proposal is the keypoints' box enlarged by this per side
    proposal_covered: float = 0.6  #: a track whose predicted keypoint box a detection covers this much proposes nothing
    velocity_gain: float = 0.5  #: weight of the newest displacement in the velocity estimate


@dataclass(frozen=True)
class Candidate:
    """One person crop of a frame after the networks.

    Attributes:
        box: (4,) the crop's person box ``x1, y1, x2, y2`` (detection, proposal or given box).
        keypoints: (145, 2) PIXIE ``keypoints_2d`` in image pixels, or any (K, 2) set that is the
            same kind in every frame.
        source: ``detector``, ``proposal`` or ``given``.
        track_id: for a proposal, the track that proposed it.
    """

    box: np.ndarray
    keypoints: np.ndarray
    source: str = "detector"
    track_id: int | None = None

    def __post_init__(self):
        if self.source not in CANDIDATE_SOURCES:
            raise ValueError(f"source must be one of {CANDIDATE_SOURCES}, not {self.source!r}")
        if self.source == "proposal" and self.track_id is None:
            raise ValueError("a proposal candidate needs the track_id that proposed it")


@dataclass(frozen=True)
class Proposal:
    """A crop box proposed for a frame by a live track."""

    track_id: int
    box: np.ndarray  #: (4,) x1, y1, x2, y2


@dataclass
class _Track:
    id: int
    last_frame: int
    keypoints: np.ndarray  #: (K, 2) last observed
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  #: pixels per frame
    hits: int = 1
    unconfirmed: int = 0  #: consecutive frames followed by proposals alone
    rejected: int = 0  #: consecutive frames whose proposal for this track was rejected

    def predict(self, frame: int) -> np.ndarray:
        return self.keypoints + self.velocity * float(frame - self.last_frame)


def _select(keypoints: np.ndarray) -> np.ndarray:
    k = np.asarray(keypoints, dtype=np.float64)
    if k.ndim != 2 or k.shape[1] != 2:
        raise ValueError(f"keypoints must be (K, 2), got {k.shape}")
    return k[list(TRACKING_ROWS)] if len(k) == 145 else k


def keypoint_box(keypoints: np.ndarray) -> np.ndarray:
    """(4,) tight box of (K, 2) points."""
    k = np.asarray(keypoints, dtype=np.float64)
    return np.concatenate([k.min(axis=0), k.max(axis=0)])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (N, 4) × (M, 4) → (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0.0, None), axis=-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_coverage(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fraction of each box of ``a`` (N, 4) inside each box of ``b`` (M, 4) → (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
    area = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=-1)
    return inter / np.maximum(area, 1e-12)[:, None]


def keypoint_similarity(pred: np.ndarray, obs: np.ndarray, kappa: float) -> float:
    """OKS-style similarity in [0, 1] of two (K, 2) keypoint sets: the mean over points of
    ``exp(−d² / (2 (κ·s)²))``, ``s`` = √(area of the predicted set's box)."""
    box = keypoint_box(pred)
    s = max(np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1.0)), 1.0)
    d2 = np.sum((pred - obs) ** 2, axis=-1)
    return float(np.mean(np.exp(-d2 / (2.0 * (kappa * s) ** 2))))


class Tracker:
    """Frame-by-frame association. Per frame, in order:

    1. ``proposals = tracker.proposals(frame, detection_boxes)``: boxes to run the networks on in
       addition to the detections;
    2. run the networks on the detections and the proposals;
    3. ``ids = tracker.update(frame, candidates)``: a track id per candidate, or None for a proposal
       that no longer matches its track (drop that result).

    Frames must be given in increasing order (gaps allowed).
    """

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._last_frame: int | None = None

    # ------------------------------------------------------------------ queries
    @property
    def live_track_ids(self) -> list[int]:
        return [t.id for t in self._tracks]

    def proposals(
        self,
        frame: int,
        detection_boxes: np.ndarray | None = None,
        detection_keypoints: np.ndarray | None = None,
    ) -> list[Proposal]:
        """Crop boxes for ``frame`` from the live tracks' predicted keypoints, except for tracks
        followed by proposals alone for too long, tracks whose last ``max_rejected`` proposals were
        rejected, and tracks whose predicted keypoint box (without the margin) a detection box covers
        by ``proposal_covered`` or more (that person is probably the detection, or hidden behind it).
        The margin is left out of that test: it would make every proposal larger than the detection
        of the same person, and a detected person would be cropped twice.

        Args:
            detection_boxes: (D, 4) the frame's detection (or given) boxes.
            detection_keypoints: (D, K, 2) their results' keypoints, when the networks have already run
                on them: then a track that one of them continues (the association of :meth:`update`,
                among the detections alone) proposes nothing either, however its box lies.
        """
        cfg = self.config
        dets = np.zeros((0, 4)) if detection_boxes is None else np.asarray(detection_boxes, np.float64).reshape(-1, 4)
        continued: set[int] = set()
        if detection_keypoints is not None and len(detection_keypoints):
            live = [t for t in self._tracks if 0 < frame - t.last_frame <= cfg.max_age]
            cands = [Candidate(np.zeros(4), k, "detector") for k in detection_keypoints]
            pairs = self._assign(live, frame, [_select(c.keypoints) for c in cands], cands)
            continued = {live[i].id for i, _ in pairs}
        out = []
        for t in self._tracks:
            if t.unconfirmed >= cfg.max_unconfirmed or t.rejected >= cfg.max_rejected or frame <= t.last_frame:
                continue
            if t.id in continued:
                continue
            box = keypoint_box(t.predict(frame))
            if len(dets) and box_coverage(box, dets).max() >= cfg.proposal_covered:
                continue
            w, h = box[2] - box[0], box[3] - box[1]
            m = cfg.proposal_margin
            out.append(Proposal(t.id, box + np.array([-m * w, -m * h, m * w, m * h])))
        return out

    # ------------------------------------------------------------------ update
    def update(self, frame: int, candidates: list[Candidate]) -> list[int | None]:
        """Associate the frame's candidates; returns a track id per candidate (None: a rejected
        proposal)."""
        frame = int(frame)
        if self._last_frame is not None and frame <= self._last_frame:
            raise ValueError(f"frames must increase: got {frame} after {self._last_frame}")
        self._last_frame = frame
        cfg = self.config
        live = [t for t in self._tracks if frame - t.last_frame <= cfg.max_age]
        self._tracks = live
        kps = [_select(c.keypoints) for c in candidates]
        ids: list[int | None] = [None] * len(candidates)
        for i, j in self._assign(live, frame, kps, candidates):
            self._observe(live[i], frame, kps[j], candidates[j].source)
            ids[j] = live[i].id
        for j, c in enumerate(candidates):
            if ids[j] is None and c.source == "proposal":
                for t in live:
                    if t.id == c.track_id:
                        t.rejected += 1
        for j, c in enumerate(candidates):
            if ids[j] is None and c.source != "proposal":
                t = _Track(self._next_id, frame, kps[j])
                self._next_id += 1
                self._tracks.append(t)
                ids[j] = t.id
        return ids

    def _assign(
        self, live: list[_Track], frame: int, kps: list[np.ndarray], candidates: list[Candidate]
    ) -> list[tuple[int, int]]:
        """(track position, candidate position) pairs of the best assignment (Hungarian) among
        pairs whose similarity passes the gate."""
        cfg = self.config
        n_t, n_c = len(live), len(candidates)
        if not (n_t and n_c):
            return []
        sim = np.full((n_t, n_c), -1.0)
        preds = [t.predict(frame) for t in live]
        iou = box_iou(np.stack([keypoint_box(p) for p in preds]), np.stack([keypoint_box(k) for k in kps]))
        for i, t in enumerate(live):
            for j, c in enumerate(candidates):
                if kps[j].shape != preds[i].shape:
                    raise ValueError("every frame must give the same kind of keypoints")
                if c.source == "proposal" and c.track_id != t.id:
                    continue
                s = cfg.iou_weight * iou[i, j] + (1 - cfg.iou_weight) * keypoint_similarity(
                    preds[i], kps[j], cfg.oks_kappa
                )
                gate = cfg.min_proposal_similarity if c.source == "proposal" else cfg.min_similarity
                if s >= gate:
                    sim[i, j] = s
        rows, cols = linear_sum_assignment(np.where(sim >= 0, -sim, 1e6))
        return [(i, j) for i, j in zip(rows, cols, strict=True) if sim[i, j] >= 0]

    def _observe(self, t: _Track, frame: int, keypoints: np.ndarray, source: str) -> None:
        dt = frame - t.last_frame
        step = (keypoints.mean(axis=0) - t.keypoints.mean(axis=0)) / dt
        g = self.config.velocity_gain
        t.velocity = step if t.hits == 1 else (1 - g) * t.velocity + g * step
        t.keypoints = keypoints
        t.last_frame = frame
        t.hits += 1
        t.unconfirmed = t.unconfirmed + 1 if source == "proposal" else 0
        t.rejected = 0

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """JSON-serialisable state (resume without replaying)."""
        return {
            "config": asdict(self.config),
            "next_id": self._next_id,
            "last_frame": self._last_frame,
            "tracks": [
                {
                    "id": t.id,
                    "last_frame": t.last_frame,
                    "keypoints": t.keypoints.tolist(),
                    "velocity": t.velocity.tolist(),
                    "hits": t.hits,
                    "unconfirmed": t.unconfirmed,
                    "rejected": t.rejected,
                }
                for t in self._tracks
            ],
        }

    @classmethod
    def from_state(cls, state: dict) -> Tracker:
        self = cls(TrackerConfig(**{**asdict(TrackerConfig()), **state["config"]}))
        self._next_id = int(state["next_id"])
        self._last_frame = state["last_frame"]
        self._tracks = [
            _Track(
                int(t["id"]),
                int(t["last_frame"]),
                np.asarray(t["keypoints"], np.float64),
                np.asarray(t["velocity"], np.float64),
                int(t["hits"]),
                int(t["unconfirmed"]),
                int(t.get("rejected", 0)),
            )
            for t in state["tracks"]
        ]
        return self
