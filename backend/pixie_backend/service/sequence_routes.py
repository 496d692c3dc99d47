"""Job kind ``sequence``: ``POST /v1/jobs/sequence`` with a video, or the frames of a clip in order,
and options; the job is :class:`~pixie_backend.jobs.sequence.SequenceJob` on the service's engine
and batcher.

The upload travels as bytes (multipart parts ``video``, or ``frames`` in frame order) and is stored
in the job's folder before the job is queued, never held in memory as a whole. It is checked there
first: a video must decode (``not_a_video``), its frames and every frame image must fit
``--max-megapixels`` (``too_many_pixels``), a frame image must be an image (``not_an_image``), and
the clip may have at most ``--max-frames`` frames (``too_many_frames``; a video whose container does
not state its count is cut there by the job, with a warning). The whole request may be
``--max-video-mb`` large (its own limit: a video is larger than photos).

The form is read here rather than by FastAPI, so that a clip of thousands of frame parts is not
refused by the form parser's default part count; :class:`SequenceForm` validates its fields and
is also the schema of the request in OpenAPI.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path, PurePath
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..jobs.frames import DEFAULT_FPS, ClipError, FrameFiles, VideoFile
from ..jobs.sequence import SequenceJob, SequenceOptions
from ..jobs.sources import IMAGE_EXTENSIONS, safe_name
from ..sequence.tracker import TrackerConfig
from .config import Limits
from .errors import ApiError, responses
from .limits import check_image_header, upload_name, upload_stems
from .registry import JobContext
from .schemas import JobStatus, job_status

KIND = "sequence"
#: The submit route's path (its request body has its own limit, ``Limits.max_video_bytes``).
SUBMIT_PATH = "/v1/jobs/sequence"
router = APIRouter(tags=["sequence"])

_COPY_CHUNK = 1 << 20
_EXT = re.compile(r"^\.[a-z0-9]{1,8}$")


class SequenceForm(BaseModel):
    """The options of a sequence job (form fields; those of ``pixie-backend reconstruct-video``)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field("", max_length=120, description="the clip's name, which names the result files "
                                                      "(default: the video's file name, or 'frames')")
    fps: float = Field(0.0, ge=0, le=1000, description="frame rate of the frames (default 30); for a video only "
                                                       "used when it states none. 0: the default")
    detector: Literal["auto", "mediapipe", "opencv", "none"] = Field(
        "auto", description="person detector; none: each frame is one person crop")
    proposals: bool = Field(True, description="crop where each tracked person's previous keypoints say they are, "
                                              "so people the detector misses are still followed")
    track_memory: int = Field(30, ge=0, le=100_000, description="frames a person may be unseen and keep their "
                                                                "track id")
    min_track_frames: int = Field(1, ge=1, le=1_000_000, description="leave out tracks shorter than this")
    focal_length: float = Field(0.0, ge=0, le=1e7, description="the camera's focal length in pixels; 0: the "
                                                               "image diagonal")
    amass: bool = Field(False, description="also write one AMASS-style SMPL-X .npz per track")
    smoothing: float = Field(0.5, ge=0, le=1, description="smoothing strength of the AMASS files")
    boxes: str = Field("", max_length=10_000_000, description="JSON {frame number (0-based) or frame file name: "
                                                              "[[x1, y1, x2, y2], ...]}: your own person boxes "
                                                              "for those frames ([]: nobody)")


def _request_schema() -> dict[str, Any]:
    schema = SequenceForm.model_json_schema()
    schema.pop("title", None)
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    schema["properties"] = {
        "video": {**binary, "description": "a video file (decoded with OpenCV/FFmpeg); or send frames"},
        "frames": {"type": "array", "items": binary, "description": "the clip's frames as image files, in frame "
                                                                    "order (JPEG, PNG, ...); or send a video"},
        **schema["properties"],
    }
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


# --------------------------------------------------------------------------------------------------
# the form


async def read_form(request: Request, limits: Limits) -> FormData:
    """The multipart form (file parts spooled to disk by Starlette beyond 1 MB each)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ApiError("invalid_request", "send a multipart/form-data form with a 'video' part or 'frames' parts")
    try:
        return await request.form(max_files=limits.max_frames + 1, max_fields=64, max_part_size=16 << 20)
    except StarletteHTTPException as e:
        detail = str(e.detail)
        if detail.startswith("Too many files"):
            raise ApiError("too_many_frames", f"more than {limits.max_frames} frames; the service takes at most "
                                              f"{limits.max_frames} per job") from None
        raise ApiError("invalid_request", f"the form cannot be read: {detail}") from None


def parse_options(form: FormData) -> SequenceForm:
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if key in ("video", "frames"):
            continue
        if not isinstance(value, str):
            raise ApiError("invalid_request", f"{key}: expected a value, got a file")
        if key in fields:
            raise ApiError("invalid_request", f"{key}: given more than once")
        fields[key] = value
    try:
        return SequenceForm.model_validate(fields)
    except ValidationError as e:
        parts = [f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
                 for err in e.errors()[:5]]
        raise ApiError("invalid_request", "; ".join(parts)) from None


def parse_frame_boxes(text: str, count: int | None, names: list[str] | None) -> dict[int, list[list[float]]] | None:
    """``boxes``: JSON ``{frame number or frame file name: [[x1, y1, x2, y2], ...]}`` → frame numbers."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ApiError("bad_option", f"boxes: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ApiError("bad_option", "boxes: expected a JSON object {frame: [[x1, y1, x2, y2], ...]}")
    by_name = {n: k for k, n in enumerate(names or [])}
    out: dict[int, list[list[float]]] = {}
    for key, boxes in data.items():
        if key.strip().isdigit() and len(key.strip()) < 10:
            k = int(key)
        elif key in by_name:
            k = by_name[key]
        else:
            raise ApiError("bad_option", f"boxes: {key[:80]!r} is neither a frame number nor a frame file of the clip")
        if count is not None and k >= count:
            raise ApiError("bad_option", f"boxes: frame {k} is beyond the clip's {count} frames")
        ok = isinstance(boxes, list) and all(
            isinstance(b, list) and len(b) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e7 for v in b)
            and b[2] > b[0] and b[3] > b[1]
            for b in boxes)
        if not ok:
            raise ApiError("bad_option", f"boxes: the entry for {key[:80]!r} must be a list of [x1, y1, x2, y2] "
                                         "number lists with x1 < x2 and y1 < y2 ([] for nobody)")
        out[k] = [[float(v) for v in b] for b in boxes]
    return out


# --------------------------------------------------------------------------------------------------
# storing and checking the upload (in the job folder, on a worker thread)


def _copy(upload: UploadFile, dest: Path) -> int:
    upload.file.seek(0)
    with open(dest, "wb") as fh:
        shutil.copyfileobj(upload.file, fh, _COPY_CHUNK)
        return fh.tell()


def store_video(upload: UploadFile, label: str, name: str, folder: Path, fps: float | None,
                limits: Limits) -> VideoFile:
    """Copy the video into ``folder`` and open it; refuse what cannot be a clip of this service."""
    ext = PurePath(label).suffix.lower()
    path = folder / f"{name}{ext if _EXT.match(ext) else '.video'}"
    if _copy(upload, path) == 0:
        raise ApiError("not_a_video", f"{label}: the upload is empty")
    try:
        clip = VideoFile(path, fps, name, max_pixels=limits.max_pixels)
    except ClipError as e:
        raise ApiError("not_a_video", str(e).replace(str(path), label)) from None
    w, h = clip.size
    if w * h > limits.max_pixels:
        raise ApiError("too_many_pixels", f"{label}: {w}x{h} = {w * h / 1e6:.1f} MP frames are more than the "
                                          f"service's limit of {limits.max_pixels / 1e6:.1f} MP; downscale it")
    if clip.expected_frames is not None and clip.expected_frames > limits.max_frames:
        raise ApiError("too_many_frames", f"{label}: {clip.expected_frames} frames; the service takes at most "
                                          f"{limits.max_frames} per job (cut the video)")
    return clip


def store_frames(uploads: list[UploadFile], labels: list[str], name: str, folder: Path, fps: float | None,
                 limits: Limits) -> FrameFiles:
    """Check and store the frame images in ``folder/<name>/``, in upload order."""
    frames_dir = folder / name
    frames_dir.mkdir()
    stems = upload_stems(labels)
    paths = []
    for upload, label, stem in zip(uploads, labels, stems, strict=True):
        upload.file.seek(0)
        data = upload.file.read()
        check_image_header(label, data, limits.max_pixels)
        ext = PurePath(label).suffix.lower()
        path = frames_dir / f"{stem}{ext if ext in IMAGE_EXTENSIONS else '.img'}"
        path.write_bytes(data)
        paths.append(path)
    return FrameFiles(paths, fps or DEFAULT_FPS, name, frames_dir, max_pixels=limits.max_pixels)


# --------------------------------------------------------------------------------------------------


@router.post(
    "/jobs/sequence", status_code=202, response_model=JobStatus,
    responses=responses("unauthorized", "upload_too_large", "too_many_pixels", "too_many_frames", "not_an_image",
                        "not_a_video", "invalid_request", "bad_option", "queue_full", "model_files", "model_failed",
                        "shutting_down"),
    summary="Reconstruct and track every person of a video or a sequence of frames",
    description="Queues a job and answers at once with its status (202). Send a `video` part, or `frames` parts "
                "(the clip's images, in frame order), and options. Follow the job with "
                "`GET /v1/jobs/{id}/events` (one `item_done` per frame, `progress` with frames/s and ETA); its "
                "`finished` event lists the sequence file (and AMASS files) in `details.files`; the job's status "
                "lists the model package they need.",
    openapi_extra={"requestBody": _request_schema()},
)
async def submit_sequence(request: Request) -> JobStatus:
    st = request.app.state.service
    limits: Limits = st.config.limits
    form = await read_form(request, limits)
    try:
        opts = parse_options(form)
        videos, frames = form.getlist("video"), form.getlist("frames")
        if any(not isinstance(u, UploadFile) for u in (*videos, *frames)):
            raise ApiError("invalid_request", "'video' and 'frames' must be file parts")
        if bool(videos) == bool(frames) or len(videos) > 1:
            raise ApiError("invalid_request", "send one 'video' part, or the clip's 'frames' parts, not both")
        if len(frames) > limits.max_frames:
            raise ApiError("too_many_frames", f"{len(frames)} frames; the service takes at most {limits.max_frames} "
                                              "per job")
        st.require_model()
        fps = opts.fps or None
        if videos:
            label = upload_name(videos[0].filename, "video")
            name = safe_name(opts.name or PurePath(label).stem or "clip")
            labels = None
            count = None
            given = None  # checked against the frame count once the video is open
        else:
            labels = [upload_name(u.filename, f"frame_{i}") for i, u in enumerate(frames)]
            name = safe_name(opts.name or "frames")
            count = len(frames)
            given = parse_frame_boxes(opts.boxes, count, labels)
        holder: dict[str, Any] = {}

        def prepare(folder: Path) -> None:
            if videos:
                clip = store_video(videos[0], label, name, folder, fps, limits)
                holder["boxes"] = parse_frame_boxes(opts.boxes, clip.expected_frames, None)
            else:
                clip = store_frames(frames, labels, name, folder, fps, limits)
                holder["boxes"] = given
            holder["clip"] = clip

        def factory(ctx: JobContext) -> SequenceJob:
            options = SequenceOptions(
                out_dir=ctx.out_dir, batch_size=ctx.batcher.batch_size, resume=False,
                detector=st.models.detector(opts.detector), boxes=holder["boxes"], proposals=opts.proposals,
                tracker=replace(TrackerConfig(), max_age=opts.track_memory), focal_px=opts.focal_length or None,
                min_track_frames=opts.min_track_frames, amass=opts.amass, smoothing=opts.smoothing, lock_wait=0,
                max_frames=limits.max_frames, relative_source=True)
            return SequenceJob(ctx.engine, holder["clip"], options, batcher=ctx.batcher, job_id=ctx.job_id)

        info = {"clip": name, "source": "video" if videos else "frames", "detector": opts.detector}
        if videos:
            info["video"] = label
        job = await run_in_threadpool(st.registry.submit, KIND, factory, total=count, info=info, prepare=prepare)
        if videos:
            job.total = holder["clip"].expected_frames  # the container's count (an estimate)
    finally:
        await form.close()
    return job_status(job.snapshot())
