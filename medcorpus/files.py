"""The two file helpers every layer shares: atomic writes and the cache root.

A killed build resumes from what it staged, so no reader may ever see a half-written file:
``atomic_write`` writes under a unique temporary name in the target's own folder (same
filesystem, so the final ``os.replace`` is atomic), fsyncs it, and removes it on any failure.
On an object store (any fsspec URL but ``file://``) an object becomes visible only once its
upload completes, which gives the same guarantee without a rename.

``file_sha256`` hashes a local file without reading it whole.

``cache_root`` is the one place that decides where per-machine caches live (built vocabularies,
lexicon pickles, remote builds' work dirs, the LLM request cache), so ``MEDCORPUS_CACHE`` moves
all of them at once.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

__all__ = ["atomic_write", "atomic_path", "cache_root", "file_sha256", "temp_name", "remove_temp_files"]


def cache_root() -> Path:
    """``$MEDCORPUS_CACHE``, else ``$XDG_CACHE_HOME/medcorpus``, else ``~/.cache/medcorpus``."""
    env = os.environ.get("MEDCORPUS_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medcorpus"


def temp_name(path: str | os.PathLike[str]) -> str:
    """A hidden sibling name unique per process and call (listings skip names starting with '.').

    It ends in the target's extension, for writers that choose a format by suffix.
    """
    head, tail = os.path.split(os.fspath(path))
    unique = f"{os.getpid()}-{secrets.token_hex(4)}"
    return os.path.join(head, f".{tail}.{unique}.tmp{os.path.splitext(tail)[1]}")


_TEMP = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.tmp(\.[^.]*)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_temp_files(root: str | os.PathLike[str]) -> int:
    """Remove the temporary files that killed writers left under ``root`` (``temp_name``'s names
    whose process is gone); how many. A writer that is still running keeps its file."""
    removed = 0
    for folder, _, names in os.walk(root):
        for name in names:
            m = _TEMP.match(name)
            if m and (int(m.group(1)) == os.getpid() or not _alive(int(m.group(1)))):
                _remove(os.path.join(folder, name))
                removed += 1
    return removed


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[str]:
    """A temporary local path next to ``path``; moved onto ``path`` when the block ends cleanly.

    For writers that want a file name (tar writers, Parquet, CSV). On failure the temporary file
    is removed and ``path`` keeps its previous content (or stays absent).
    """
    target = os.fspath(path)
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    tmp = temp_name(target)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes | Callable[[IO[bytes]], object], *,
                 fs: object | None = None, fsync: bool = True) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) so ``path`` appears whole.

    ``fs`` is an fsspec filesystem for a non-local ``path``: the upload is the atomic step there.
    """
    write = (lambda f: f.write(data)) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if fs is not None and not _is_local(fs):
        with fs.open(os.fspath(path), "wb") as f:  # type: ignore[attr-defined]
            write(f)
        return
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def _is_local(fs: object) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a local file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
