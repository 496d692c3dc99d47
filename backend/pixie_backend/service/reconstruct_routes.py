"""Job kind ``reconstruct``: ``POST /v1/jobs/reconstruct`` with one or more images and options.

The images travel as bytes (multipart form parts named ``images``); the server never opens a path
a client names. Each image is checked from its header before the job is queued (``not_an_image``,
``too_many_pixels``); what fails further in (a truncated file, no person) is an ``item_error``
event of the job, and the other images go on.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile

from ..jobs.reconstruct import ReconstructJob, ReconstructOptions
from ..jobs.sources import ImageSource
from .errors import ApiError, responses
from .limits import check_image_header, upload_name, upload_stems
from .registry import JobContext
from .schemas import JobStatus, job_status

KIND = "reconstruct"
router = APIRouter(tags=["reconstruct"])


def parse_boxes(text: str | None, names: list[str], uploads: list[str]) -> dict[str, list[list[float]]]:
    """``boxes``: JSON ``{image: [[x1, y1, x2, y2], ...]}`` keyed by upload file name or item name."""
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ApiError("bad_option", f"boxes: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ApiError("bad_option", "boxes: expected a JSON object {image: [[x1, y1, x2, y2], ...]}")
    known = dict(zip(uploads, names, strict=True)) | {n: n for n in names}
    out: dict[str, list[list[float]]] = {}
    for key, boxes in data.items():
        if key not in known:
            raise ApiError("bad_option", f"boxes: {key!r} is not one of the uploaded images")
        ok = isinstance(boxes, list) and boxes and all(
            isinstance(b, list) and len(b) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e7 for v in b)
            for b in boxes)
        if not ok:
            raise ApiError("bad_option", f"boxes: the entry for {key!r} must be a non-empty list of "
                                         "[x1, y1, x2, y2] number lists")
        out[known[key]] = [[float(v) for v in b] for b in boxes]
    return out


@router.post(
    "/jobs/reconstruct", status_code=202, response_model=JobStatus,
    responses=responses("unauthorized", "upload_too_large", "too_many_pixels", "too_many_images", "not_an_image",
                        "invalid_request", "bad_option", "queue_full", "model_files", "model_failed",
                        "shutting_down"),
    summary="Reconstruct every person in one or more images",
    description="Queues a job and answers at once with its status (202). Follow it with "
                "`GET /v1/jobs/{id}/events`; each `item_done` event names the files to fetch; "
                "the job's status lists the model package the results need.",
)
async def submit_reconstruct(
    request: Request,
    images: Annotated[list[UploadFile], File(description="the images (JPEG, PNG, BMP, TIFF, WebP, GIF, PPM); each "
                                                         "part's file name names its results")],
    detector: Annotated[Literal["auto", "mediapipe", "opencv", "none"],
                        Form(description="person detector; none: each image is one person crop")] = "auto",
    write_objs: Annotated[bool, Form(description="also write <name>_p<k>.obj quick-look meshes")] = True,
    boxes: Annotated[str | None, Form(description="JSON {image file name: [[x1, y1, x2, y2], ...]}: your own "
                                                  "person boxes for these images")] = None,
) -> JobStatus:
    st = request.app.state.service
    limits = st.config.limits
    if not images:
        raise ApiError("invalid_request", "send at least one image")
    if len(images) > limits.max_images:
        raise ApiError("too_many_images", f"{len(images)} images; the service takes at most {limits.max_images} "
                                          "per job")
    st.require_model()
    uploads = [upload_name(u.filename, f"image_{i}") for i, u in enumerate(images)]
    names = upload_stems(uploads)
    chosen = parse_boxes(boxes, names, uploads)
    sources = []
    for upload, label, name in zip(images, uploads, names, strict=True):
        data = await upload.read()
        check_image_header(label, data, limits.max_pixels)
        sources.append(ImageSource.from_bytes(name, data, chosen.get(name)))

    def factory(ctx: JobContext) -> ReconstructJob:
        options = ReconstructOptions(out_dir=ctx.out_dir, write_objs=write_objs, resume=False,
                                     max_pixels=limits.max_pixels, detector=st.models.detector(detector), lock_wait=0)
        return ReconstructJob(ctx.engine, sources, options, batcher=ctx.batcher, job_id=ctx.job_id)

    job = st.registry.submit(KIND, factory, total=len(sources),
                             info={"images": names, "uploads": uploads, "detector": detector})
    return job_status(job.snapshot())
