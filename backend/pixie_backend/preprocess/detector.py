"""Offline person detection. Every person found gets a box (upstream keeps only the first).

Detectors (choose with ``make_detector(name)`` / ``--detector``):

* ``mediapipe`` (default when installed): mediapipe 0.10.21's bundled models, no download.
  Faces are found with the full-range face detector (several people per image); for each face the
  single-person pose model runs on a region around it, and the person box is the extent of its
  segmentation mask around the pose landmarks (close to an object detector's silhouette box).
  Without any face (a person seen from behind), the pose model runs on the whole image.
* ``opencv``: OpenCV's bundled Haar face cascade; the body box is extrapolated from the face with
  standard body proportions. Crude, but needs no extra package.
* ``none``: the image already is a person crop; the whole image is the box.

Boxes are ``x1, y1, x2, y2`` in image pixels, sorted left to right.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .image_io import LoadedImage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  #: x1, y1, x2, y2 in image pixels
    score: float
    source: str  #: which detector (and cue) produced it


class Detector(Protocol):
    name: str

    def detect(self, image: LoadedImage) -> list[Detection]: ...

    def close(self) -> None: ...


class DetectorUnavailable(RuntimeError):
    """The requested detector's package is not installed."""


def to_uint8(image: LoadedImage) -> np.ndarray:
    """(H, W, 3) uint8 view of the pixels (detectors want 8-bit RGB)."""
    p = image.pixels
    return p if p.dtype == np.uint8 else np.clip(p * 255.0 + 0.5, 0, 255).astype(np.uint8)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def merge_detections(dets: list[Detection], iou: float = 0.5) -> list[Detection]:
    """Greedy non-maximum suppression by score, then left-to-right order."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(box_iou(np.array(d.box), np.array(k.box)) < iou for k in kept):
            kept.append(d)
    return sorted(kept, key=lambda d: (d.box[0], d.box[1]))


def _clip_box(box, w: int, h: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return (float(max(0, x1)), float(max(0, y1)), float(min(w - 1, x2)), float(min(h - 1, y2)))


def body_box_from_face(face: tuple[float, float, float, float], w: int, h: int) -> tuple[float, float, float, float]:
    """Extrapolate a standing person's box from a face box (x1, y1, x2, y2): about 8 face heights
    tall from the forehead, 3.5 face widths wide, clipped to the image."""
    fx1, fy1, fx2, fy2 = face
    fw, fh = fx2 - fx1, fy2 - fy1
    cx = (fx1 + fx2) / 2
    return _clip_box((cx - 1.75 * fw, fy1 - 0.5 * fh, cx + 1.75 * fw, fy1 + 8.0 * fh), w, h)


class WholeImageDetector:
    """``none``: the whole image is the person box (the image is already a person crop)."""

    name = "none"

    def detect(self, image: LoadedImage) -> list[Detection]:
        return [Detection((0.0, 0.0, float(image.width - 1), float(image.height - 1)), 1.0, "none")]

    def close(self) -> None:
        pass


class OpenCVFaceDetector:
    """``opencv``: Haar frontal-face cascade + body proportions."""

    name = "opencv"

    def __init__(self, min_face: int = 24):
        import cv2

        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise DetectorUnavailable(f"OpenCV's face cascade is missing ({path}); OpenCV >= 5 has none")
        self._cv2 = cv2
        self.min_face = min_face

    def detect(self, image: LoadedImage) -> list[Detection]:
        cv2 = self._cv2
        gray = cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2GRAY)
        faces = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=6,
                                               minSize=(self.min_face, self.min_face))
        dets = [
            Detection(body_box_from_face((x, y, x + fw, y + fh), image.width, image.height), 0.5, "opencv-face")
            for x, y, fw, fh in (faces if len(faces) else [])
        ]
        return merge_detections(dets)

    def close(self) -> None:
        pass


class MediaPipeDetector:
    """``mediapipe``: faces (multi-person) -> pose + segmentation per face region."""

    name = "mediapipe"

    def __init__(self, min_face_score: float = 0.5, min_pose_score: float = 0.5):
        try:
            from mediapipe.python.solutions import face_detection, pose
        except ImportError as e:
            raise DetectorUnavailable(
                "mediapipe is not installed. Install the detector with\n"
                '  pip install "pixie-blender[detector]" && pip install --no-deps mediapipe==0.10.21\n'
                "or choose --detector opencv / none"
            ) from e
        from .native_log import filter_native_stderr

        filter_native_stderr()
        self._faces = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_face_score)
        self._pose = pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True,
                               min_detection_confidence=min_pose_score)
        self.min_pose_score = min_pose_score

    def close(self) -> None:
        self._faces.close()
        self._pose.close()

    def _face_boxes(self, rgb: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        h, w = rgb.shape[:2]
        res = self._faces.process(rgb)
        out = []
        for d in res.detections or []:
            bb = d.location_data.relative_bounding_box
            box = (bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h)
            out.append((box, float(d.score[0])))
        return out

    def _person_in(self, rgb: np.ndarray, roi: tuple[int, int, int, int],
                   face: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        """Pose + segmentation inside ``roi`` (x1, y1, x2, y2 ints); box in image pixels or None."""
        x1, y1, x2, y2 = roi
        sub = np.ascontiguousarray(rgb[y1:y2, x1:x2])
        res = self._pose.process(sub)
        if res.pose_landmarks is None:
            return None
        sh, sw = sub.shape[:2]
        lm = np.array([[p.x * sw, p.y * sh, p.visibility] for p in res.pose_landmarks.landmark])
        vis = lm[lm[:, 2] > 0.5, :2]
        if len(vis) < 4:
            return None
        if face is not None:  # the pose must belong to this face: nose inside the (enlarged) face box
            fx1, fy1, fx2, fy2 = face
            nx, ny = lm[0, 0] + x1, lm[0, 1] + y1
            mx, my = (fx2 - fx1) * 0.5, (fy2 - fy1) * 0.5
            if not (fx1 - mx <= nx <= fx2 + mx and fy1 - my <= ny <= fy2 + my):
                return None
        lo, hi = vis.min(0), vis.max(0)
        if face is not None:
            lo = np.minimum(lo, [face[0] - x1, face[1] - y1])
            hi = np.maximum(hi, [face[2] - x1, face[3] - y1])
        box = np.concatenate([lo, hi])
        mask = res.segmentation_mask
        if mask is not None:
            pad = 0.25 * (hi - lo).max()
            ex1, ey1 = np.maximum(lo - pad, 0).astype(int)
            ex2, ey2 = np.minimum(hi + pad, [sw - 1, sh - 1]).astype(int)
            ys, xs = np.nonzero(mask[ey1:ey2 + 1, ex1:ex2 + 1] > 0.5)
            if len(xs):
                mbox = np.array([xs.min() + ex1, ys.min() + ey1, xs.max() + ex1, ys.max() + ey1], float)
                # the silhouette must contain most of the landmark box to be trusted
                if box_iou(mbox, box) > 0.3:
                    box = np.concatenate([np.minimum(mbox[:2], box[:2]), np.maximum(mbox[2:], box[2:])])
        return (box[0] + x1, box[1] + y1, box[2] + x1, box[3] + y1)

    def detect(self, image: LoadedImage) -> list[Detection]:
        rgb = to_uint8(image)
        h, w = rgb.shape[:2]
        dets: list[Detection] = []
        for face, score in self._face_boxes(rgb):
            fx1, fy1, fx2, fy2 = face
            fh = max(fy2 - fy1, fx2 - fx1)
            cx = (fx1 + fx2) / 2
            side = 10.0 * fh
            roi = (int(max(0, cx - side / 2)), int(max(0, fy1 - 1.0 * fh)),
                   int(min(w, cx + side / 2)), int(min(h, fy1 - 1.0 * fh + side)))
            box = self._person_in(rgb, roi, face)
            if box is None:
                dets.append(Detection(body_box_from_face(face, w, h), score * 0.5, "mediapipe-face"))
            else:
                dets.append(Detection(_clip_box(box, w, h), score, "mediapipe-pose"))
        if not dets:
            box = self._person_in(rgb, (0, 0, w, h), None)
            if box is not None:
                dets.append(Detection(_clip_box(box, w, h), self.min_pose_score, "mediapipe-pose"))
        return merge_detections(dets)


DETECTORS = ("auto", "mediapipe", "opencv", "none")


def make_detector(name: str = "auto") -> Detector:
    """Build a detector by name; ``auto`` prefers mediapipe and falls back to OpenCV."""
    if name == "auto":
        try:
            return MediaPipeDetector()
        except DetectorUnavailable as e:
            log.warning("mediapipe unavailable (%s); using the cruder OpenCV face detector", str(e).splitlines()[0])
            return OpenCVFaceDetector()
    if name == "mediapipe":
        return MediaPipeDetector()
    if name == "opencv":
        return OpenCVFaceDetector()
    if name == "none":
        return WholeImageDetector()
    raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
