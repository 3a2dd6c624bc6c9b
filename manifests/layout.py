"""Where the releases of an output folder live, and the one pointer that says which is current.

    OUT/current.json           {"release": 3, "path": "releases/000003"}: the pointer
    OUT/current -> releases/000003   local disks: a convenience symlink, swapped after the pointer
    OUT/releases/000003/       every published file of release 3 (shards/, manifest/, _complete.json,
                               README.md, croissant.json, attribution.csv); never changed once published
    OUT/releases/000002/       older releases, kept up to ``output.keep_releases``
    OUT/release_log.jsonl      one line per publication: the release, and the releases it removed and why
    OUT/_work/, OUT/_lock.json build state: staged units, the write lock

**Publication is one atomic step.** A build writes release N into its own folder, completion record
last, then replaces the pointer: locally a temporary file renamed over ``current.json``, on an
object store a single PUT (an object is visible only whole). A reader resolves the pointer once per
open (``resolve``) and reads everything from that folder, so it sees release N-1 or release N,
never a mix; a killed build leaves a folder no pointer names (its rerun starts that folder again
from the staged units). Release N-1 stays on disk until it falls out of the kept window, so a reader
that resolved it just before the swap finishes reading it.

``OUT@N`` names release N (``medcorpus query OUT@2 ...``); ``OUT`` alone the current one. A folder
from before releases had folders (manifest and shards at its top, no pointer) reads as it is, as the
release its completion record names; the next build publishes the next release in folders beside it.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
from dataclasses import dataclass, replace

import fsspec
from fsspec.implementations.local import LocalFileSystem

from medcorpus.files import temp_name

RELEASES = "releases"
POINTER = "current.json"
LINK = "current"
LOG = "release_log.jsonl"
_REF = re.compile(r"^(?P<out>.+)@(?P<release>\d+)$")
_FOLDER = re.compile(r"^\d{6,}$")


@dataclass(frozen=True)
class Release:
    """One release of an output: its number (None when unknown) and the URL of its folder. ``flat``:
    its files are at the top of the folder named (an output from before release folders, or a
    release folder named directly)."""

    number: int | None
    url: str
    flat: bool = False


def release_rel(number: int) -> str:
    return f"{RELEASES}/{number:06d}"


def join(url: str, rel: str) -> str:
    return f"{url.rstrip('/')}/{rel}" if rel else url


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``OUT@N`` → (OUT, N); ``OUT`` → (OUT, None)."""
    m = _REF.match(ref)
    return (m["out"], int(m["release"])) if m else (ref, None)


def numbered(fs: fsspec.AbstractFileSystem, root: str) -> list[int]:
    """The release folders under ``root`` (published or not), by number."""
    base = posixpath.join(root, RELEASES)
    if not fs.isdir(base):
        return []
    names = (posixpath.basename(str(p).rstrip("/")) for p in fs.ls(base, detail=False))
    return sorted(int(n) for n in names if _FOLDER.match(n))


def read_pointer(fs: fsspec.AbstractFileSystem, root: str) -> int | None:
    path = posixpath.join(root, POINTER)
    if not fs.exists(path):
        return None
    return int(json.loads(fs.cat_file(path))["release"])


def flat_release(fs: fsspec.AbstractFileSystem, root: str) -> int | None:
    """The release a folder from before release folders holds (its completion record's number, else
    how many builds its ``runs`` table lists); None when it holds no flat manifest."""
    if not fs.isdir(posixpath.join(root, "manifest")):
        return None
    record = posixpath.join(root, "_complete.json")
    if fs.exists(record):
        try:
            number = json.loads(fs.cat_file(record)).get("release")
        except ValueError:
            number = None
        if number:
            return int(number)
    runs = posixpath.join(root, "manifest", "runs.parquet")
    if not fs.exists(runs):
        return 0
    import pyarrow.parquet as pq

    with fs.open(runs, "rb") as f:
        table = pq.read_table(f)
    numbered_runs = [r for r in table.column("release").to_pylist() if r is not None] if "release" in table.schema.names else []
    return max(numbered_runs) if numbered_runs else table.num_rows


def current(out: str) -> Release | None:
    """The published release of ``out`` (the pointer's, else a flat folder's), or None."""
    fs, root = _fs(out)
    number = read_pointer(fs, root)
    if number is not None:
        return Release(number, join(out, release_rel(number)))
    number = flat_release(fs, root)
    return Release(number, out, flat=True) if number is not None else None


def resolve(ref: str) -> Release:
    """The release ``ref`` names: ``OUT@N`` release N, ``OUT`` the current one. Resolve once per open
    and read everything from ``Release.url``. A folder with neither pointer nor flat manifest
    resolves to its newest unpublished release folder if it has one (a first build that did not
    finish: readers refuse it as incomplete), else to itself (readers say it is no output)."""
    out, wanted = parse_ref(ref)
    fs, root = _fs(out)
    if wanted is None:
        found = current(out)
        if found is None:
            started = numbered(fs, root)
            found = Release(started[-1], join(out, release_rel(started[-1]))) if started else Release(None, out)
        return _pinned(fs, found)
    if wanted in numbered(fs, root):
        return _pinned(fs, Release(wanted, join(out, release_rel(wanted))))
    if flat_release(fs, root) == wanted:
        return _pinned(fs, Release(wanted, out, flat=True))
    from medcorpus.manifests.completion import NotAnOutput

    kept = sorted(set(numbered(fs, root)) | ({n} if (n := flat_release(fs, root)) else set()))
    raise NotAnOutput(f"{out} holds no release {wanted} (releases kept: {', '.join(map(str, kept)) or 'none'})")


def _pinned(fs: fsspec.AbstractFileSystem, release: Release) -> Release:
    """On a local disk, the folder's real path: a path through the ``current`` symlink would follow
    the next publication at every later open."""
    if isinstance(fs, LocalFileSystem):
        return replace(release, url=os.path.realpath(fs._strip_protocol(release.url)))
    return release


def _fs(out: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and root of ``out``, its listing cache dropped: the pointer must be read as it
    is now, not as an earlier listing in this process saw it."""
    fs, root = fsspec.core.url_to_fs(out)
    fs.invalidate_cache()
    return fs, root.rstrip("/") if root != "/" else root


def swap_link(root: str, number: int) -> None:
    """Point the local convenience symlink ``OUT/current`` at release ``number``: a new symlink
    renamed over the old one, so the name never dangles or disappears."""
    link = os.path.join(root, LINK)
    tmp = temp_name(link)
    os.symlink(release_rel(number), tmp)
    os.replace(tmp, link)
