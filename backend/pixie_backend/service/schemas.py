"""Response documents of the API (pydantic models: they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class GpuInfo(BaseModel):
    name: str
    memory_total: int | None = Field(None, description="bytes")
    memory_free: int | None = Field(None, description="bytes")


class ModelInfo(BaseModel):
    state: str = Field(description="loading | ready | missing | failed")
    device: str
    gpu: GpuInfo | None = None
    precision: str = Field(description="precision of the encoders: what runs once loaded (auto resolved), "
                                       "what was asked for before")
    precision_reason: str | None = Field(None, description="why that precision runs on this device (once loaded)")
    speed: str
    missing: list[str] = Field(description="required model files that are missing or damaged")
    missing_optional: list[str] = Field(description="optional files (texture, detail) that are missing")
    load_seconds: float | None = None
    error: dict[str, str] | None = Field(None, description="{code, message} when the model cannot run")
    synthetic: bool | None = Field(None, description="the data folder holds make-synthetic assets")
    net: str | None = None
    data_dir: str | None = None
    batches: dict[str, int] | None = Field(None, description="batches run, persons in them, the largest")


class Health(BaseModel):
    status: str = Field(description="ok, or shutting_down")
    protocol: int = Field(description="the handshake/API protocol (1)")
    event_schema: int = Field(description="schema_version of the events (docs/protocol.md)")
    version: str = Field(description="pixie_backend's version; the add-on requires its own")
    versions: dict[str, str]
    mode: str = Field(description="local or remote")
    uptime: float
    model: ModelInfo
    jobs: dict[str, int] = Field(description="active (queued or running) and kept")
    job_kinds: list[str]
    limits: dict[str, int]


class FileInfo(BaseModel):
    name: str
    size: int | None = None


class PackageInfo(BaseModel):
    sha256: str
    size: int | None = None


class JobStatus(BaseModel):
    id: str
    kind: str
    state: str = Field(description="queued | running | done")
    status: str | None = Field(None, description="the finished event's status: ok, partial, failed, cancelled")
    total: int | None = None
    created: float
    started: float | None = None
    finished: float | None = None
    events: int = Field(description="events so far (GET .../events?after=N resumes after N)")
    files: list[FileInfo] = Field(description="result files to fetch with GET /v1/jobs/{id}/files/{name}")
    packages: list[PackageInfo] = Field(description="model packages the results need: GET /v1/packages/{sha256}")
    images: list[str] | None = Field(None, description="reconstruct: the item names, in upload order")

    model_config = {"extra": "allow"}


class JobList(BaseModel):
    jobs: list[JobStatus]


def job_status(snapshot: dict[str, Any]) -> JobStatus:
    return JobStatus(**snapshot)
