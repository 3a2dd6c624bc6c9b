"""How a failure reaches the user: one line saying what went wrong and where, and a hint.

A mistake the user can fix (a missing path, a folder that is not a build output, a bad option) is
a ``UserError``: exit code 2. A full disk is a ``DiskFull`` naming the path, the build phase and
the space needed when known: exit code 1, and the same command resumes once space is freed. Any
other exception is a bug: one line and exit code 1. The traceback is printed only with ``--debug``
(``pipelines/cli.py``).
"""
from __future__ import annotations

import errno
from contextlib import contextmanager
from typing import Iterator

__all__ = ["UserError", "MissingPath", "BadOption", "DiskFull", "phase", "explain"]

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
RESUME_HINT = ("free space (or point --out / --work-dir elsewhere) and rerun the same command: it resumes "
               "from what was staged and writes the same bytes")


class UserError(Exception):
    """A mistake the user can fix: ``str`` is the one line, ``hint`` what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class MissingPath(UserError, FileNotFoundError):
    """A path the user named does not exist (still a ``FileNotFoundError`` for callers that catch it)."""


class BadOption(UserError, ValueError):
    """An option value the command cannot use (still a ``ValueError`` for callers that catch it)."""


class DiskFull(OSError):
    """No space left where a build phase writes."""

    def __init__(self, path: str, during: str, needed: int | None = None) -> None:
        super().__init__(errno.ENOSPC, "no space left on device")
        self.path, self.during, self.needed = path, during, needed

    def __str__(self) -> str:
        need = f"; about {_size(self.needed)} needed" if self.needed else ""
        return f"disk full: no space left on device under {self.path} while {self.during}{need}"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n:.1f} TB"


@contextmanager
def phase(during: str, path: str, needed: int | None = None) -> Iterator[None]:
    """Run a build phase that writes under ``path``: a full disk there becomes one ``DiskFull``."""
    try:
        yield
    except DiskFull:
        raise
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise DiskFull(exc.filename or path, during, needed) from exc
        raise


def explain(exc: BaseException) -> tuple[str, str, int]:
    """(line, hint, exit code) for an exception that ended a command."""
    from medcorpus.transforms.options import ConfigError

    if isinstance(exc, UserError):
        return str(exc), exc.hint, 2
    if isinstance(exc, ConfigError):  # a value only a stage's preparation could check
        return f"config error: {exc}", "", 2
    if isinstance(exc, DiskFull):
        return str(exc), RESUME_HINT, 1
    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
        return f"disk full: {exc.strerror} ({exc.filename or 'path unknown'})", RESUME_HINT, 1
    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        return str(exc), "check the path", 2
    return (f"internal error: {type(exc).__name__}: {exc}".splitlines()[0],
            "rerun with --debug for the traceback, and report it", 1)
