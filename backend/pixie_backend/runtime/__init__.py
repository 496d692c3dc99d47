"""Where the model runs: the :class:`~.engine.Engine` (model loaded once, device, precision, the
CUDA flags), the cross-job :class:`~.batcher.Batcher`, device resolution and cached file hashes."""
