"""``pixie-backend serve``: the HTTP service (FastAPI on uvicorn) over the job layer.

* :mod:`.config`: the one frozen :class:`~.config.ServiceConfig` (address, token, limits, model settings);
* :mod:`.models`: the model, loaded once on a thread (:class:`~.models.ModelHolder`), and the shared batcher;
* :mod:`.registry`: the job registry: job kinds, queue limits, job threads, events, output folders, clean-up;
* :mod:`.app`: the FastAPI application (authentication, limits, errors, the common job endpoints);
* :mod:`.reconstruct_routes`: the ``reconstruct`` job kind's submit endpoint (one module per job kind);
* :mod:`.server`: uvicorn on a socket it binds itself, the handshake line, exit on stdin EOF, signals.

The API is documented in ``docs/service.md`` and served as OpenAPI (``GET /openapi.json``).
"""
