"""Release numbers, the previous release a build compares itself with, and publication.

Every build that finishes publishes a release: 1, 2, 3 ... recorded in the completion record
(``release``) and in the ``runs`` row of that build. Release N is written into its own folder
(``manifests/layout.py``) while release N-1 stays untouched and current, so the previous release
*is* the baseline: its samples and evidence tables are read from its folder, and a build killed
halfway is compared with it again when it is rerun.

``begin`` starts release N's folder: a partial one that a killed build left is removed (no pointer
ever named it), and what a release carries on from the one before is copied in (the ``runs``
table, the change-list history and the archived inventories). ``link_shard`` gives a shard whose
samples did not change the previous release's file (a hard link on a local disk, a copy on an
object store) instead of writing it again. ``publish`` replaces the pointer, then removes the
releases beyond ``keep`` and logs which and why.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Sequence

import pyarrow as pa

from medcorpus.manifests import layout
from medcorpus.manifests.completion import PUBLISHED_DIRS, PUBLISHED_FILES, RECORD, file_sha256
from medcorpus.manifests.parquet import read_columns, shard_sha256
from medcorpus.manifests.storage import Output

CARRIED = ("manifest/runs.parquet", "manifest/history", "manifest/inventory")
"""What each release carries on from the one before: every build's ``runs`` row, every release's
change list (``diff`` composes them) and the inventories incremental pmc-cloud builds start from."""
DEFAULT_KEEP = 3


@dataclass
class Baseline:
    """The previous release: its number (0 before the first) and its folder, whose samples and
    evidence tables are read in place when the changes are worked out (never held in memory)."""

    release: int = 0
    output: Output | None = None


def start(out: str) -> Baseline:
    """The current release of ``out`` (empty before the first). A folder from before release folders
    is its own previous release, complete or not (a killed build of an older medcorpus)."""
    found = layout.current(out)
    if found is None:
        return Baseline()
    return Baseline(found.number or 0, Output(found.url))


def begin(out: str, baseline: Baseline) -> Output:
    """Release ``baseline.release + 1``'s folder, empty but for what it carries on."""
    root = Output(out)
    if root.is_local and layout.read_pointer(root.fs, root.root) is not None:
        layout.swap_link(root.root, baseline.release)  # a build killed between pointer and symlink left it behind
    rel = layout.release_rel(baseline.release + 1)
    if root.fs.exists(root.path(rel)):
        root.fs.rm(root.path(rel), recursive=True)  # a killed build's partial release: never published
    output = Output(layout.join(out, rel))
    if baseline.output is not None:
        for carried in CARRIED:  # a file, or a folder's files
            is_file = baseline.output.fs.isfile(baseline.output.path(carried))
            names = [carried] if is_file else baseline.output.list(carried)
            for name in names:
                output.copy_from(baseline.output, name)
    return output


def link_shard(previous: Output, output: Output, part: str, shard: str,
               members: Sequence[dict[str, Any]]) -> tuple[dict[str, tuple[int, int]], str] | None:
    """Put the previous release's ``shard`` in place when it holds exactly these members (per sample,
    in order: key, image member name, image sha256, caption, sidecar sha256): the tar would come out
    the same. Returns the members' (offset, size) from the previous manifest part and the shard's
    sha256, or None (nothing done) when anything differs or the file no longer hashes to what its
    part says (reading a shard costs less than writing one, and on an object store the copy stays
    on the server)."""
    if not (previous.exists(part) and previous.exists(shard)):
        return None
    digest = shard_sha256(previous, part)
    compared = ["key", "image_member", "image_sha256", "caption", "json_sha256"]
    spans = ["image_offset", "image_size", "txt_offset", "txt_size", "json_offset", "json_size"]
    try:
        rows = read_columns(previous, part, compared + spans + ["shard"]).to_pylist()
    except (KeyError, pa.ArrowInvalid):  # a part written before a column existed
        return None
    if digest is None or [{c: r[c] for c in compared} for r in rows] != list(members) or \
            any(r["shard"] != shard for r in rows) or file_sha256(previous, shard) != digest:
        return None  # the sha256 check: a damaged shard is written again, never carried on
    output.copy_from(previous, shard, link=True)
    offsets: dict[str, tuple[int, int]] = {}
    for r in rows:
        offsets[r["image_member"]] = (r["image_offset"], r["image_size"])
        offsets[f"{r['key']}.txt"] = (r["txt_offset"], r["txt_size"])
        offsets[f"{r['key']}.json"] = (r["json_offset"], r["json_size"])
    return offsets, digest


def publish(out: str, release: int, keep: int = DEFAULT_KEEP) -> list[int]:
    """Make ``release`` (its folder complete) the current one, then remove the releases beyond the
    newest ``keep``; return the releases removed. The pointer is the one atomic step; the local
    symlink follows it, and removal comes after both, so a reader of the release just replaced
    keeps it until the next publication (``keep`` >= 2)."""
    root = Output(out)
    root.write_bytes(layout.POINTER, json.dumps({"release": release, "path": layout.release_rel(release)}).encode())
    if root.is_local:
        layout.swap_link(root.root, release)
    removed = [n for n in _releases(root) if n <= release - keep]
    for number in removed:
        _remove(root, number)
    _log(root, {"release": release, "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "removed": [{"release": n, "reason": f"older than the {keep} releases kept (output.keep_releases)"}
                            for n in removed]})
    return removed


def _releases(root: Output) -> list[int]:
    """Every release on disk: the numbered folders and a flat one from before release folders."""
    flat = layout.flat_release(root.fs, root.root)
    return sorted(set(layout.numbered(root.fs, root.root)) | ({flat} if flat else set()))


def _remove(root: Output, number: int) -> None:
    """Remove one release, its completion record first, so a removal cut short leaves a folder
    readers refuse as incomplete rather than one that looks whole."""
    rel = layout.release_rel(number)
    if root.exists(rel):
        if root.exists(f"{rel}/{RECORD}"):
            root.remove(f"{rel}/{RECORD}")
        root.fs.rm(root.path(rel), recursive=True)
        return
    for name in (RECORD, *PUBLISHED_FILES, "report.html"):  # a flat release at the top of OUT
        if root.exists(name):
            root.remove(name)
    for folder in (*PUBLISHED_DIRS, "_previous"):
        if root.fs.exists(root.path(folder)):
            root.fs.rm(root.path(folder), recursive=True)


def _log(root: Output, entry: dict[str, Any]) -> None:
    old = root.read_bytes(layout.LOG) if root.exists(layout.LOG) else b""
    root.write_bytes(layout.LOG, old + json.dumps(entry, sort_keys=True).encode() + b"\n")
