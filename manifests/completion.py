"""The completion record ``_complete.json`` of a release folder: proof that a build finished writing it.

A build writes its release into a folder of its own (``manifests/layout.py``) and the record last
there, after every shard, manifest part, table, ``attribution.csv`` and the ``runs`` row; only then
is the release published. A folder without it is a build that was killed, ran out of disk, or is
still running; ``query`` and the reader refuse such a folder unless told otherwise, and ``verify``
reports it.

The record lists every published file with its size; manifest files and ``attribution.csv`` also
carry their sha256 (they are small, and hashing them catches a rewritten or emptied table). Shards
carry only their size: hashing them would read the whole corpus again at the end of every build,
and ``verify`` already hashes every image member and checks every tar member against the manifest.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import posixpath
from typing import Any

import fsspec

from medcorpus import __version__
from medcorpus.manifests.layout import resolve
from medcorpus.manifests.storage import Output
from medcorpus.schemas.manifest import SCHEMA_VERSION

RECORD = "_complete.json"
RECORD_FORMAT = 1
PUBLISHED_DIRS = ("shards", "manifest")
PUBLISHED_FILES = ("attribution.csv", "README.md", "croissant.json")
RERUN_HINT = "rerun the same build command: it resumes from its staged units and rewrites the output"


class NotAnOutput(Exception):
    """The path is not a medcorpus build output (no ``manifest/`` folder)."""


class IncompleteOutput(Exception):
    """The output has no completion record: its build did not finish, or is still running."""

    def __init__(self, out: str) -> None:
        super().__init__(f"{out} has no completion record ({RECORD}): its build did not finish or is still "
                         f"running; {RERUN_HINT}, or pass --allow-incomplete to read it as it is")


def open_output(out: str) -> Output:
    """The release ``out`` names (``OUT`` the current one, ``OUT@N`` release N: ``layout.resolve``,
    once), refusing (``NotAnOutput``) a path without a manifest; checked before ``Output`` is made
    because that creates a missing local folder. fsspec shares one filesystem object per URL in a
    process, so its listing cache is dropped first: a check must see the store as it is now, not as
    an earlier listing in this process saw it."""
    url = resolve(out).url
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    if not fs.isdir(posixpath.join(root, "manifest")):
        raise NotAnOutput(f"{out} is not a medcorpus build output (it has no manifest/ folder)")
    return Output(url)


def published_sizes(output: Output) -> dict[str, int]:
    """Every published file (shards, manifest, attribution) by relative path, with its size; one
    listing per folder, so an object store answers with a few LIST calls, not one HEAD per file."""
    sizes: dict[str, int] = {}
    root = output.root.rstrip("/") + "/"
    for rel_dir in PUBLISHED_DIRS:
        base = output.path(rel_dir)
        if not output.fs.exists(base):
            continue
        for path, info in output.fs.find(base, detail=True).items():
            rel = path[len(root):] if path.startswith(root) else path
            if not posixpath.basename(rel).startswith("."):  # temporary files of a running writer
                sizes[rel] = int(info["size"])
    for rel in PUBLISHED_FILES:
        if output.exists(rel):
            sizes[rel] = int(output.fs.info(output.path(rel))["size"])
    return dict(sorted(sizes.items()))


def hashed(rel: str) -> bool:
    """Whether the record carries this file's sha256 (everything but shards)."""
    return not rel.startswith("shards/")


def file_sha256(output: Output, rel: str) -> str:
    digest = hashlib.sha256()
    with output.fs.open(output.path(rel), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_record(output: Output, run_id: str, finished_at: dt.datetime, samples: int,
                release: int | None = None) -> dict[str, Any]:
    files = [{"path": rel, "size": size, "sha256": file_sha256(output, rel) if hashed(rel) else None}
             for rel, size in published_sizes(output).items()]
    return {"format": RECORD_FORMAT, "medcorpus_version": __version__, "schema_version": SCHEMA_VERSION,
            "run_id": run_id, "finished_at": finished_at.isoformat(), "samples": samples, "release": release,
            "files": files}


def write_record(output: Output, run_id: str, finished_at: dt.datetime, samples: int,
                 release: int | None = None) -> None:
    """Write the record; call it after the build's last write to the output."""
    record = make_record(output, run_id, finished_at, samples, release)
    output.write_bytes(RECORD, json.dumps(record, indent=1, sort_keys=True).encode("utf-8"))


def read_record(output: Output) -> dict[str, Any] | None:
    """The record, or None when there is none. Raises ValueError for an unreadable one."""
    if not output.exists(RECORD):
        return None
    doc = json.loads(output.read_bytes(RECORD).decode("utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise ValueError(f"{RECORD} is not a completion record")
    return doc


def require_complete(out: str, allow_incomplete: bool = False) -> Output:
    """The output, refusing one that is not an output, or (unless allowed) one without a record."""
    output = open_output(out)
    if not allow_incomplete and not output.exists(RECORD):
        raise IncompleteOutput(out)
    return output
