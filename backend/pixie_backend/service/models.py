"""The model of the service: loaded once, shared by every job through one batcher.

``serve`` loads it on its main thread before it listens (the handshake comes after the load); a
job submitted while a (re)load runs waits for it. When required model files are missing, the
holder says which (``model_files``), the service still starts, and the next job tries again (on a
thread), so files set up while the service runs are picked up without a restart.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from ..config import PixieConfig

log = logging.getLogger(__name__)

LOADING, READY, MISSING, FAILED = "loading", "ready", "missing", "failed"


class ModelUnavailable(RuntimeError):
    """No model to run: ``code`` is ``model_files`` (files missing; ``missing`` names them) or
    ``model_failed`` (they are there but could not be loaded)."""

    def __init__(self, code: str, message: str, missing: list[str] | None = None):
        super().__init__(message)
        self.code = code
        self.missing = missing or []


def missing_files(data_dir: Path | None) -> tuple[list[str], list[str]]:
    """(required files missing or damaged, optional files missing) in the data folder."""
    from ..assets import Need
    from ..doctor import check_assets

    _folder, rows = check_assets(data_dir)
    required = [r.spec.filename for r in rows if r.spec.need is Need.REQUIRED and not r.usable]
    optional = [r.spec.filename for r in rows if r.spec.need is not Need.REQUIRED and not r.usable]
    return required, optional


class SharedDetector:
    """One person detector of a kind for every job of the service: built on first use, used by one
    job at a time (a lock), never closed by a job (its ``close`` is a no-op; :meth:`shutdown` closes
    it). Building a mediapipe detector costs about 0.3 s, which every job would otherwise pay."""

    def __init__(self, spec: str):
        self.spec = spec
        self._inner = None
        self._lock = threading.Lock()

    def _get(self):
        if self._inner is None:
            from ..preprocess.detector import make_detector

            self._inner = make_detector(self.spec)  # DetectorUnavailable: the job reports it
        return self._inner

    @property
    def name(self) -> str:
        with self._lock:
            return getattr(self._get(), "name", self.spec)

    def detect(self, image):
        with self._lock:
            return self._get().detect(image)

    def close(self) -> None:
        """A job is done with it: nothing to do."""

    def shutdown(self) -> None:
        with self._lock:
            if self._inner is not None:
                self._inner.close()
                self._inner = None


class ModelHolder:
    """The engine and the shared :class:`~pixie_backend.runtime.batcher.Batcher`, once loaded."""

    def __init__(self, config: PixieConfig, data_dir: Path | None, *, batch_size: int | str = 8,
                 max_wait: float | None = 0.05, trust_checkpoint: bool = False):
        self.config = config
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.trust_checkpoint = trust_checkpoint
        self.state = LOADING
        self.error: ModelUnavailable | None = None
        self.engine = None
        self.batcher = None
        self.load_seconds: float | None = None
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._detectors: dict[str, SharedDetector] = {}

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load now, on the calling thread (the service does this on its main thread before it
        serves: inference on the threads it starts later is then several times faster on the CPU
        than after a load on a worker thread, measured with glibc's per-thread memory arenas)."""
        with self._cv:
            self.state, self.error = LOADING, None
        self._load()

    def start(self) -> None:
        """Load in the background (returns at once); used to retry once missing files have appeared."""
        with self._cv:
            if self._thread is not None and self._thread.is_alive():
                return
            self.state, self.error = LOADING, None
            self._thread = threading.Thread(target=self._load, name="pixie-model-load", daemon=True)
            self._thread.start()

    def _load(self) -> None:
        import time

        from ..assets import MissingAssetError
        from ..body.smplx_layer import ModelFileError
        from ..checkpoint import CheckpointError
        from ..runtime.batcher import Batcher
        from ..runtime.device import DeviceError
        from ..runtime.engine import Engine

        t0 = time.perf_counter()
        try:
            engine = Engine.from_data_dir(self.data_dir, self.config, trust_checkpoint=self.trust_checkpoint)
        except MissingAssetError:
            required, _ = missing_files(self.data_dir)
            error = ModelUnavailable("model_files", "the model files are missing: " + ", ".join(required)
                                     + " (set them up with 'pixie-backend fetch-data', or in Blender: "
                                       "Preferences > Add-ons > PIXIE > Set up model files)", required)
            self._done(MISSING, error=error)
            return
        except (CheckpointError, ModelFileError, DeviceError, OSError, ValueError) as e:
            self._done(FAILED, error=ModelUnavailable("model_failed", f"the model could not be loaded: {e}"))
            return
        except Exception as e:  # noqa: BLE001 - reported through health and every job
            log.exception("loading the model failed")
            self._done(FAILED, error=ModelUnavailable("model_failed", f"the model could not be loaded: {e!r}"))
            return
        batch_size = engine.suggest_batch_size() if self.batch_size == "auto" else self.batch_size
        batcher = Batcher(engine, batch_size, max_wait=self.max_wait)
        self.load_seconds = time.perf_counter() - t0
        log.info("model loaded in %.1f s on %s, encoders in %s (%s), batches of %d", self.load_seconds,
                 engine.device, engine.precision.precision, engine.precision.reason, batch_size)
        self._done(READY, engine=engine, batcher=batcher)

    def _done(self, state: str, *, error: ModelUnavailable | None = None, engine=None, batcher=None) -> None:
        with self._cv:
            self.state, self.error, self.engine, self.batcher = state, error, engine, batcher
            self._cv.notify_all()

    def get(self, timeout: float | None = None, stop: threading.Event | None = None):
        """``(engine, batcher)``, waiting while the model loads; a missing model is looked for again.

        Raises:
            ModelUnavailable: the model cannot run (files missing, or it failed to load).
            TimeoutError: still loading after ``timeout`` seconds (or ``stop`` was set).
        """
        import time

        with self._cv:
            if self.state == MISSING and not missing_files(self.data_dir)[0]:
                self.start()  # the files were set up meanwhile (the condition's lock is re-entrant)
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.state == LOADING:
                if stop is not None and stop.is_set():
                    raise TimeoutError("stopped while the model was loading")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("the model is still loading")
                self._cv.wait(0.2 if left is None else min(left, 0.2))
            if self.state != READY:
                raise self.error
            return self.engine, self.batcher

    def detector(self, spec: str) -> SharedDetector:
        """The service's shared detector for ``spec`` (``auto``, ``mediapipe``, ``opencv``, ``none``)."""
        with self._cv:
            if spec not in self._detectors:
                self._detectors[spec] = SharedDetector(spec)
            return self._detectors[spec]

    def close(self, timeout: float = 120.0) -> None:
        """Stop the batcher; a load still in progress is waited for (a thread killed inside torch at
        interpreter exit aborts the process)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        if self.batcher is not None:
            self.batcher.close(timeout=5.0)
        for d in list(self._detectors.values()):
            d.shutdown()

    # ------------------------------------------------------------------ health
    def describe(self) -> dict[str, Any]:
        """State, device, GPU, precision and the data folder's missing files, for ``/v1/health``."""
        import torch

        from ..runtime.device import DeviceError, resolve_device

        try:
            device = str(self.engine.device) if self.engine is not None else str(resolve_device(self.config.device))
        except DeviceError as e:
            device = f"unusable ({e})"
        gpu = None
        if device.startswith("cuda") and torch.cuda.is_available():
            index = torch.device(device).index or 0
            free, total = torch.cuda.mem_get_info(index)
            gpu = {"name": torch.cuda.get_device_name(index), "memory_total": int(total), "memory_free": int(free)}
        elif device == "mps":
            gpu = {"name": "Apple GPU (MPS)", "memory_total": None, "memory_free": None}
        required, optional = missing_files(self.data_dir)
        d: dict[str, Any] = {
            "state": self.state, "device": device, "gpu": gpu,
            # what runs once loaded (``auto`` resolved), what was asked for before
            "precision": self.engine.config.precision if self.engine is not None else self.config.precision,
            "speed": self.config.speed, "missing": required, "missing_optional": optional,
            "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 3),
            "error": {"code": self.error.code, "message": str(self.error)} if self.error is not None else None,
        }
        if self.engine is not None:
            info = self.engine.describe()
            d.update(synthetic=info["synthetic"], net=info["net"], data_dir=info["data_dir"],
                     precision_reason=info["precision_reason"])
        if self.batcher is not None:
            sizes = list(self.batcher.batch_sizes)
            d["batches"] = {"run": self.batcher.batches_run, "persons": int(sum(sizes)),
                            "largest": max(sizes) if sizes else 0}
        return d
