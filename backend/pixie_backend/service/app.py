"""The FastAPI application: authentication, limits, JSON errors, health, and the endpoints every
job kind shares (status, events, files, cancel, delete, model packages). Each job kind adds its
submit route from its own module (:data:`JOB_KIND_ROUTERS`)."""

from __future__ import annotations

import asyncio
import json
import platform
import time
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from .. import __version__
from ..jobs.events import SCHEMA_VERSION
from . import errors
from .auth import bearer, check_token, token_matches
from .errors import ApiError, error_response, responses
from .limits import BodyLimit
from .registry import ServiceJob
from .schemas import Health, JobList, JobStatus, job_status
from .state import ServiceState

#: The handshake and API protocol (``pixie_blender.client.supervisor.PROTOCOL``).
PROTOCOL = 1
NDJSON = "application/x-ndjson"


def require_token(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
                  ) -> None:
    check_token(request, credentials)


def state_of(request: Request) -> ServiceState:
    return request.app.state.service


class AuthGate:
    """Refuse a request without the token before anything reads its body (the route dependency
    :func:`require_token` checks again and documents the scheme in OpenAPI)."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            header = dict(scope.get("headers") or ()).get(b"authorization", b"").decode("latin-1")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not token_matches(given.strip(), self.token):
                response = error_response("unauthorized", "missing or wrong token: send 'Authorization: Bearer "
                                                          "<token>'", headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def versions() -> dict[str, str]:
    import torch

    return {"pixie_backend": __version__, "torch": torch.__version__, "python": platform.python_version()}


# --------------------------------------------------------------------------------------------------
# Routes every job kind shares

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])


@router.get("/health", response_model=Health, responses=responses("unauthorized"), tags=["service"],
            summary="Version, device, GPU, model files, jobs, limits")
def health(request: Request) -> Health:
    st = state_of(request)
    with st.registry._lock:
        kept = len(st.registry.jobs)
    return Health(
        status="shutting_down" if st.registry.closing else "ok", protocol=PROTOCOL, event_schema=SCHEMA_VERSION,
        version=__version__, versions=versions(), mode="remote" if st.config.remote else "local",
        uptime=round(time.time() - st.started, 3), model=st.models.describe(),
        jobs={"active": st.registry.active(), "kept": kept}, job_kinds=sorted(st.registry.kinds),
        limits=st.config.limits.as_dict(),
    )


@router.get("/jobs", response_model=JobList, responses=responses("unauthorized"), tags=["jobs"],
            summary="The jobs the service keeps")
def list_jobs(request: Request) -> JobList:
    reg = state_of(request).registry
    with reg._lock:
        jobs = list(reg.jobs.values())
    return JobList(jobs=[job_status(j.snapshot()) for j in jobs])


def _job(request: Request, job_id: str) -> ServiceJob:
    return state_of(request).registry.get(job_id)


@router.get("/jobs/{job_id}", response_model=JobStatus, responses=responses("unauthorized", "job_not_found"),
            tags=["jobs"], summary="A job's state, its files and the model packages they need")
def get_job(request: Request, job_id: str) -> JobStatus:
    return job_status(_job(request, job_id).snapshot())


async def _event_lines(job: ServiceJob, after: int, keepalive: float):
    sent = after
    loop = asyncio.get_running_loop()
    while True:
        done = job.done  # read before the events: once done, the events are complete
        new = job.events_since(sent)
        if new:
            sent += len(new)
            yield "".join(json.dumps(ev, ensure_ascii=False, allow_nan=False) + "\n" for ev in new).encode()
            continue
        if done:
            return
        flag = asyncio.Event()
        job.add_waiter(loop, flag)
        try:
            if len(job.events_since(sent)) or job.done:
                continue
            try:
                await asyncio.wait_for(flag.wait(), keepalive)
            except asyncio.TimeoutError:
                yield b"\n"  # keep-alive: readers skip empty lines; a silent stream means a dead service
        finally:
            job.remove_waiter(loop, flag)


@router.get("/jobs/{job_id}/events", responses={200: {"content": {NDJSON: {}}, "description":
                                                       "The job's events (docs/protocol.md), one JSON object per "
                                                       "line, from the first after `after`, until `finished`; "
                                                       "empty lines are keep-alives"},
                                                **responses("unauthorized", "job_not_found", "invalid_request")},
            response_class=StreamingResponse, tags=["jobs"], summary="Stream a job's events (NDJSON)")
def job_events(request: Request, job_id: str,
               after: Annotated[int, Query(ge=0, le=10_000_000, description="skip this many events (to resume)")] = 0):
    job = _job(request, job_id)
    return StreamingResponse(_event_lines(job, after, state_of(request).config.keepalive), media_type=NDJSON,
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/jobs/{job_id}/files/{name}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "the file"},
                       **responses("unauthorized", "job_not_found", "file_not_found")},
            tags=["jobs"], summary="Fetch one of a job's result files")
def job_file(request: Request, job_id: str, name: str) -> Response:
    job = _job(request, job_id)
    path = job.file_path(name)
    if path is None:
        raise ApiError("file_not_found", f"job {job_id} has no file {name!r} (its events list the files)")
    return FileResponse(path, media_type="application/octet-stream", filename=name)


@router.post("/jobs/{job_id}/cancel", response_model=JobStatus, responses=responses("unauthorized", "job_not_found"),
             tags=["jobs"], summary="Cancel a job (it stops after the item it is on; finished items are kept)")
def cancel_job(request: Request, job_id: str) -> JobStatus:
    return job_status(state_of(request).registry.cancel(job_id).snapshot())


@router.delete("/jobs/{job_id}", status_code=204, response_class=Response,
               responses=responses("unauthorized", "job_not_found", "job_running"), tags=["jobs"],
               summary="Delete a finished job and its files")
def delete_job(request: Request, job_id: str) -> Response:
    state_of(request).registry.delete(job_id)
    return Response(status_code=204)


@router.get("/packages/{sha256}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "the model package"},
                       **responses("unauthorized", "package_not_found")},
            tags=["packages"], summary="Fetch a model package by its content hash (once; clients cache it)")
def package(request: Request, sha256: str) -> Response:
    path = state_of(request).registry.packages.path(sha256.lower())
    if path is None:
        raise ApiError("package_not_found", f"no model package {sha256[:64]!r} here (a job's status lists the "
                                            "packages its results need)")
    return FileResponse(path, media_type="application/octet-stream", filename=f"smplx_package_{sha256[:12]}.npz",
                        headers={"X-Content-SHA256": sha256.lower()})


# --------------------------------------------------------------------------------------------------


def job_kind_routers() -> list[tuple[str, APIRouter]]:
    """(kind, router) of every job kind; mount a new kind by adding its module here."""
    from . import reconstruct_routes, sequence_routes

    return [(reconstruct_routes.KIND, reconstruct_routes.router), (sequence_routes.KIND, sequence_routes.router)]


def create_app(state: ServiceState) -> FastAPI:
    app = FastAPI(
        title="pixie-backend service", version=__version__,
        description="Reconstruct SMPL-X avatars from photos with PIXIE. Every request needs "
                    "`Authorization: Bearer <token>`. Errors are `{\"error\": {\"code\", \"message\"}}` with stable "
                    "codes. See docs/service.md.",
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.state.service = state
    errors.install(app)
    app.include_router(router)
    for kind, kind_router in job_kind_routers():
        state.registry.register_kind(kind)
        app.include_router(kind_router, prefix="/v1", dependencies=[Depends(require_token)])

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_token)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    from .sequence_routes import SUBMIT_PATH

    limits = state.config.limits
    app.add_middleware(BodyLimit, max_bytes=limits.max_upload_bytes, per_path={SUBMIT_PATH: limits.max_video_bytes})
    app.add_middleware(AuthGate, token=state.config.token)
    return app
