"""Content hashes of the big model files, computed once and cached.

``file_sha256`` hashes a file's **content** (SHA-256) the first time it sees the file and caches
the digest in the per-user cache folder under the key (absolute path, size, modification time in
ns). A later call with the same key is a ``stat``; a file replaced in place (new size or mtime)
is hashed again. The cache is a JSON file written atomically; when it cannot be written the hash
is simply recomputed next time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import platformdirs

from ..assets import APP_NAME, sha256_file
from ..atomic import atomic_write_text

log = logging.getLogger(__name__)
ENV_CACHE_DIR = "PIXIE_CACHE_DIR"
_LOCK = threading.Lock()


def cache_file() -> Path:
    root = os.environ.get(ENV_CACHE_DIR) or platformdirs.user_cache_dir(APP_NAME, appauthor=False)
    return Path(root) / "file-hashes.json"


def _key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of ``path``'s content, from the cache when the file is unchanged."""
    path = Path(path)
    key = _key(path)
    cache = cache_file()
    with _LOCK:
        try:
            table = json.loads(cache.read_text(encoding="utf-8"))
            if not isinstance(table, dict):
                table = {}
        except (OSError, ValueError):
            table = {}
        digest = table.get(key)
        if isinstance(digest, str) and len(digest) == 64:
            return digest
        digest = sha256_file(path)
        # keep entries of files that still exist; drop the rest
        table = {k: v for k, v in table.items() if Path(k.split("|", 1)[0]).exists()}
        table[key] = digest
        try:
            atomic_write_text(cache, json.dumps(table, indent=0, sort_keys=True))
        except OSError as e:
            log.debug("cannot write the hash cache %s: %s", cache, e)
        return digest
