"""The output folder's write lock: one build writes into an ``--out`` at a time.

Two builds writing one output interleave their shards and manifest parts and lose samples, so a
build holds ``OUT/_lock.json`` from before its first write until it ends.

- **Local disks:** an OS lock (``flock``) on ``OUT/_lock.json``. The kernel drops it when the holder
  exits in any way, SIGKILL included, so a lock file whose flock is free is stale by definition and
  is taken over; the file names the holder (host, pid, start time, command) for the message a second
  build prints. A filesystem must enforce ``flock`` across its clients (local disks, NFSv4 do).
- **Object stores** (``s3://``, ``gs://``): a lease object ``OUT/_lock.json`` with the holder and an
  expiry, refreshed by a thread while the build runs, taken over once expired (a killed build's lease
  runs out after ``lease_s``). On S3 creation and takeover are conditional writes (``If-None-Match``,
  ``If-Match``), so two builds cannot both win; elsewhere a build writes and then re-reads the lease
  after a pause, which is only a best effort.
"""
from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import posixpath
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable

import fsspec
from fsspec.implementations.local import LocalFileSystem

LOCK_NAME = "_lock.json"
LEASE_S = 120.0  # an object-store lease lasts this long without a refresh
POLL_S = 0.5  # how often a waiting build looks again


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) an output's lock."""

    host: str
    pid: int
    started: str  # ISO time, UTC
    command: str
    token: str = ""  # tells two holders apart (lease objects)
    expires: float | None = None  # lease objects: epoch seconds

    @classmethod
    def current(cls, command: str | None = None) -> "Holder":
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        cmd = command if command is not None else " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])
        return cls(socket.gethostname(), os.getpid(), now.isoformat(), cmd, uuid.uuid4().hex)

    @classmethod
    def parse(cls, data: bytes) -> "Holder | None":
        """The holder a lock file names; None for an empty (released) or unreadable one."""
        try:
            doc = json.loads(data.decode("utf-8"))
            return cls(str(doc["host"]), int(doc["pid"]), str(doc["started"]), str(doc.get("command", "")),
                       str(doc.get("token", "")), doc.get("expires"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}: {self.command}"


class OutputLocked(Exception):
    """Another build holds the output's lock (and we did not wait, or waited too long)."""

    def __init__(self, out: str, holder: Holder | None, waited_s: float | None = None) -> None:
        who = holder.describe() if holder else "a build whose lock file is being written"
        if waited_s is None:
            msg = f"{out} is locked by another build ({who}); wait for it with --wait, or use another --out"
        else:
            msg = f"{out} is still locked after waiting {waited_s:.0f} s by another build ({who})"
        super().__init__(msg)
        self.out, self.holder = out, holder


class LockLost(Exception):
    """The lease on an object-store output expired and another build took it while this one ran."""


class OutputLock:
    """Context manager: hold ``out``'s write lock.

    ``wait``: wait for the holder to finish instead of raising ``OutputLocked`` at once;
    ``timeout_s``: how long to wait at most (None: no limit). ``notify`` receives one-line messages
    (waiting for a holder, taking over a stale lock)."""

    def __init__(self, out: str, *, wait: bool = False, timeout_s: float | None = None,
                 command: str | None = None, lease_s: float = LEASE_S,
                 notify: Callable[[str], None] | None = None) -> None:
        self.out = out
        self.wait = wait or timeout_s is not None
        self.timeout_s = timeout_s
        self.holder = Holder.current(command)
        self.notify = notify or (lambda msg: None)
        fs, root = fsspec.core.url_to_fs(out)
        self._impl: _FlockLock | _Lease
        if isinstance(fs, LocalFileSystem):
            os.makedirs(root, exist_ok=True)
            self._impl = _FlockLock(os.path.join(root, LOCK_NAME), self.holder)
        else:
            self._impl = _Lease(fs, posixpath.join(root.rstrip("/"), LOCK_NAME), self.holder, lease_s)

    def acquire(self) -> None:
        t0 = time.monotonic()
        announced = False
        while True:
            blocker = self._impl.try_acquire()
            if blocker is None:
                break
            waited = time.monotonic() - t0
            if not self.wait:
                raise OutputLocked(self.out, blocker.holder)
            if self.timeout_s is not None and waited >= self.timeout_s:
                raise OutputLocked(self.out, blocker.holder, waited)
            if not announced:
                who = blocker.holder.describe() if blocker.holder else "another build"
                self.notify(f"{self.out} is locked by {who}; waiting for it")
                announced = True
            time.sleep(POLL_S if self.timeout_s is None else max(0.0, min(POLL_S, self.timeout_s - waited)))
        stale = self._impl.previous
        if stale is not None and stale.token != self.holder.token:
            self.notify(f"took over the stale lock of {self.out} left by {stale.describe()} (that build is gone)")

    def release(self) -> None:
        self._impl.release()

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


@dataclass
class _Blocked:
    holder: Holder | None


class _FlockLock:
    """``flock`` on a lock file that stays in place (never unlinked: a waiter could otherwise lock
    a removed file while a newcomer locks its replacement). Released: the file is emptied."""

    def __init__(self, path: str, holder: Holder) -> None:
        self.path, self.holder = path, holder
        self.previous: Holder | None = None
        self._fd: int | None = None

    def try_acquire(self) -> _Blocked | None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return _Blocked(_read_holder(self.path))
            raise OSError(exc.errno, f"cannot lock {self.path}: {exc.strerror} (the filesystem must support flock)") from exc
        self.previous = Holder.parse(_read_all(fd))  # a holder that never released: it was killed
        data = self.holder.to_bytes()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # drops the flock


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _read_holder(path: str) -> Holder | None:
    try:
        with open(path, "rb") as f:
            return Holder.parse(f.read())
    except OSError:
        return None


class _Lease:
    """A lease object on an fsspec filesystem, kept alive by a refresh thread."""

    def __init__(self, fs: Any, path: str, holder: Holder, lease_s: float) -> None:
        self.fs, self.path, self.lease_s = fs, path, lease_s
        self.holder = holder
        self.previous: Holder | None = None
        self.conditional = "s3" in (fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,))
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: Holder | None = None

    # -- reading and writing the object --------------------------------------------------------

    def _read(self) -> tuple[Holder | None, str | None] | None:
        """(holder, etag) of the lease object, None when there is none."""
        self.fs.invalidate_cache(self.path)
        try:
            etag = str(self.fs.info(self.path).get("ETag") or "") or None
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        return Holder.parse(data), etag

    def _put(self, holder: Holder, *, if_none_match: bool = False, if_match: str | None = None) -> bool:
        """Write the lease; False when a condition failed (someone else wrote it first)."""
        data = holder.to_bytes()
        if not self.conditional:
            self.fs.pipe_file(self.path, data)
            return True
        bucket, key, _ = self.fs.split_path(self.path)
        cond = {"IfNoneMatch": "*"} if if_none_match else ({"IfMatch": if_match} if if_match else {})
        try:
            out = self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **cond)
        except (FileExistsError, FileNotFoundError):
            return False
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # 412 PreconditionFailed (If-Match)
                return False
            raise
        self._etag = str(out.get("ETag") or "") or None
        self.fs.invalidate_cache(self.path)
        return True

    def _mine(self) -> Holder:
        return Holder(**{**asdict(self.holder), "expires": time.time() + self.lease_s})

    # -- the lock protocol --------------------------------------------------------------------

    def try_acquire(self) -> _Blocked | None:
        found = self._read()
        if found is None:
            won = self._put(self._mine(), if_none_match=True)
        else:
            holder, etag = found
            if holder is not None and (holder.expires is None or holder.expires > time.time()):
                return _Blocked(holder)
            self.previous = holder
            won = self._put(self._mine(), if_match=etag)
        if won and not self.conditional:
            time.sleep(POLL_S)  # a concurrent writer's lease would land by now; the last one wins
        check = self._read()
        if not won or check is None or check[0] is None or check[0].token != self.holder.token:
            self.previous = None
            return _Blocked(check[0] if check else None)
        self._etag = check[1]
        self._thread = threading.Thread(target=self._refresh, name="medcorpus-lease", daemon=True)
        self._thread.start()
        return None

    def _refresh(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            found = self._read()
            if found is None or found[0] is None or found[0].token != self.holder.token:
                self.lost = found[0] if found else None
                return
            if not self._put(self._mine(), if_match=found[1]):
                self.lost = (self._read() or (None, None))[0]
                return

    def release(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        found = self._read()
        if found is not None and found[0] is not None and found[0].token == self.holder.token:
            if self.conditional and found[1]:
                bucket, key, _ = self.fs.split_path(self.path)
                try:
                    self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=found[1])
                except OSError:
                    pass  # taken over between the read and the delete: the new holder's lease stays
            else:
                self.fs.rm_file(self.path)
            self.fs.invalidate_cache(self.path)
        if self.lost is not None or found is None or found[0] is None or found[0].token != self.holder.token:
            who = self.lost.describe() if self.lost else "another build"
            raise LockLost(f"the lease on {self.path} expired and was taken over by {who} while this build "
                           f"ran; the output may mix both builds: rerun this build")
