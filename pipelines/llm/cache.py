"""Persistent request cache: reruns and resumed runs never send the same request twice.

The key is a sha256 over (model, prompt-template hash, task inputs, generation parameters); images
enter the key by their sha256. SQLite in WAL mode lets the pipeline's worker processes share one
file; each process opens its own connection.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["RequestCache", "cache_key"]


def cache_key(model: str, template_hash: str, inputs: dict[str, Any], params: dict[str, Any]) -> str:
    blob = json.dumps({"model": model, "template": template_hash, "inputs": inputs, "params": params},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@contextmanager
def _setup_lock(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """One process at a time switches a new cache file to WAL: SQLite answers a second process
    doing the same at that moment with "database is locked" at once, not after its busy timeout
    (workers that start together each open the cache)."""
    if not path:
        yield
        return
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class RequestCache:
    """``get``/``put`` of completed answers with hit and miss counters."""

    def __init__(self, path: str | os.PathLike[str] | None):
        self.path = str(path) if path else ":memory:"
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        with _setup_lock(path):
            if path:
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._conn.commit()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM answers WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
            return json.loads(row[0])

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(value)))
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __getstate__(self) -> dict[str, Any]:  # Ray/multiprocessing: reopen by path in the worker
        return {"path": None if self.path == ":memory:" else self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])
