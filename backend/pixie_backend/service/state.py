"""What the routes share: the configuration, the model holder and the job registry."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ServiceConfig
from .models import ModelHolder
from .registry import JobRegistry


@dataclass
class ServiceState:
    config: ServiceConfig
    models: ModelHolder
    registry: JobRegistry
    work_dir: Path
    owns_work_dir: bool
    started: float = field(default_factory=time.time)

    @classmethod
    def create(cls, config: ServiceConfig, *, load: str | None = "background") -> ServiceState:
        """Make the job folders and load the model: ``"now"`` (on this thread, before returning),
        ``"background"`` (on a thread) or None (not yet)."""
        if config.work_dir is not None:
            work, owns = Path(config.work_dir).expanduser(), False
            work.mkdir(parents=True, exist_ok=True)
        else:
            work, owns = Path(tempfile.mkdtemp(prefix="pixie-service-")), True
        models = ModelHolder(config.model, config.data_dir, batch_size=config.batch_size,
                             max_wait=config.max_wait, trust_checkpoint=config.trust_checkpoint)
        registry = JobRegistry(models, work, config.limits, config.keep_seconds)
        if load == "now":
            models.load()
        elif load == "background":
            models.start()
        return cls(config, models, registry, work, owns)

    def require_model(self) -> None:
        """Refuse a job at once when the model cannot run (``model_files`` names the missing files,
        ``model_failed``); a model that loads (again) is waited for by the job.

        Raises:
            ApiError: ``model_files`` or ``model_failed``.
        """
        from .errors import ApiError

        if self.models.state in ("missing", "failed"):
            try:
                self.models.get(timeout=0)
            except TimeoutError:
                pass  # loading again: the job waits for it
            except Exception as e:  # noqa: BLE001 - ModelUnavailable: say which files are missing now
                raise ApiError(getattr(e, "code", "model_failed"), str(e)) from None

    def close(self, timeout: float = 30.0) -> None:
        """Cancel the jobs, wait for them, stop the batcher, remove the service's own files."""
        self.registry.shutdown(timeout)
        self.models.close()
        if self.owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        else:
            shutil.rmtree(self.registry.jobs_dir, ignore_errors=True)
