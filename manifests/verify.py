"""Check a whole build output, not only the rows its manifest lists: a killed build, a full disk or an
interrupted rebuild leave folders whose listed rows are all fine while shards, parts or members
are missing, extra or stale.

Checks: the completion record is there and matches the files (sizes; sha256 of manifest files);
every shard has its manifest part and every part its shard; every shard folder's ``sizes.json``
counts every shard's rows; no key is in two parts; every part's
rows point into its own shard; every tar member is a member of a manifest row at the offset and
size the row says (and every row's members are in the tar); every image hashes to its
``image_sha256`` and every caption member equals the manifest caption.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import re
import tarfile
from collections import Counter
from typing import IO, Any

import pyarrow.parquet as pq

from medcorpus.manifests.completion import RECORD, hashed, file_sha256, open_output, published_sizes, read_record
from medcorpus.manifests.shards import SIZES_FILE, sizes_json
from medcorpus.manifests.storage import Output

ROW_COLUMNS = ["key", "shard", "image_member", "image_offset", "image_size", "image_sha256",
               "txt_offset", "txt_size", "json_offset", "json_size", "caption"]
_SHARD = re.compile(r"^shards/(?P<family>[^/]+)/(?P=family)-(?P<index>\d+)\.tar$")
_PART = re.compile(r"^manifest/samples/(?P<family>[^/]+)-(?P<index>\d+)\.parquet$")


def verify_output(out: str) -> tuple[list[str], int]:
    """Every problem found (empty for a good output) and the number of manifest rows checked.
    Raises ``NotAnOutput`` for a path without a manifest."""
    output = open_output(out)
    sizes = published_sizes(output)
    problems = check_record(output, sizes)
    size_files = sorted(r for r in sizes if r.startswith("shards/") and posixpath.basename(r) == SIZES_FILE)
    shards = sorted(r for r in sizes if r.startswith("shards/") and r not in size_files)
    parts = sorted(r for r in sizes if r.startswith("manifest/samples/"))
    problems += check_pairs(shards, parts)
    rows_by_shard, row_problems, n_rows = read_parts(output, parts)
    problems += row_problems
    problems += check_sizes(output, size_files, shards, rows_by_shard)
    for shard in sorted(set(shards) | set(rows_by_shard)):
        problems += check_shard(output, shard, rows_by_shard.get(shard, []), shard in sizes)
    record = _record_or_none(output)
    if record is not None and isinstance(record.get("samples"), int) and record["samples"] != n_rows:
        problems.append(f"{RECORD} says {record['samples']} samples, the manifest parts hold {n_rows}")
    return problems, n_rows


def _record_or_none(output: Output) -> dict[str, Any] | None:
    try:
        return read_record(output)
    except ValueError:
        return None


def check_record(output: Output, sizes: dict[str, int]) -> list[str]:
    """The completion record is there, readable, and lists exactly the files present, with their
    sizes (and hashes where it has them)."""
    try:
        record = read_record(output)
    except ValueError as exc:
        return [f"{RECORD} is unreadable ({exc}): the build did not finish"]
    if record is None:
        return [f"no completion record ({RECORD}): the build did not finish (killed, out of disk) or is still running"]
    problems = []
    listed = {f["path"]: f for f in record["files"]}
    for rel in sorted(set(listed) - set(sizes)):
        problems.append(f"{rel}: listed in {RECORD} but missing")
    for rel in sorted(set(sizes) - set(listed)):
        problems.append(f"{rel}: present but not listed in {RECORD} (written after the build finished, or left by another build)")
    for rel in sorted(set(sizes) & set(listed)):
        entry = listed[rel]
        if entry.get("size") != sizes[rel]:
            problems.append(f"{rel}: {sizes[rel]} bytes, {RECORD} says {entry.get('size')}")
        elif hashed(rel) and entry.get("sha256") and file_sha256(output, rel) != entry["sha256"]:
            problems.append(f"{rel}: content differs from {RECORD} (sha256)")
    return problems


def check_sizes(output: Output, size_files: list[str], shards: list[str],
                rows_by_shard: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every shard folder has a ``sizes.json`` that counts every shard's rows (webdataset trainers
    take their epoch length from it)."""
    expected = json.loads(sizes_json((s, len(rows_by_shard.get(s, []))) for s in shards))
    problems = [f"{folder}: no {SIZES_FILE}" for folder in sorted({posixpath.dirname(s) for s in shards})
                if posixpath.join(folder, SIZES_FILE) not in size_files]
    for rel in size_files:
        try:
            found = json.loads(output.read_bytes(rel))
        except ValueError as exc:
            problems.append(f"{rel}: unreadable ({exc})")
            continue
        if found != expected:
            wrong = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
            problems.append(f"{rel}: sample counts differ from the manifest for {', '.join(wrong[:5])}")
    return problems


def part_of(shard: str) -> str | None:
    """The manifest part that lists a shard's samples (``shards/comm/comm-000003.tar`` →
    ``manifest/samples/comm-000003.parquet``)."""
    m = _SHARD.match(shard)
    return f"manifest/samples/{m['family']}-{m['index']}.parquet" if m else None


def shard_of(part: str) -> str | None:
    m = _PART.match(part)
    return f"shards/{m['family']}/{m['family']}-{m['index']}.tar" if m else None


def check_pairs(shards: list[str], parts: list[str]) -> list[str]:
    """Every shard has its manifest part and every part its shard."""
    return (_unpaired(shards, part_of, parts, "a shard name (shards/FAMILY/FAMILY-NNNNNN.tar)",
                      "shard without its manifest part")
            + _unpaired(parts, shard_of, shards, "a manifest part name (manifest/samples/FAMILY-NNNNNN.parquet)",
                        "manifest part without its shard"))


def _unpaired(names: list[str], partner_of: Any, partners: list[str], pattern: str, missing: str) -> list[str]:
    problems = []
    for name in names:
        partner = partner_of(name)
        if partner is None:
            problems.append(f"{name}: not {pattern}")
        elif partner not in partners:
            problems.append(f"{name}: {missing} {partner}")
    return problems


def read_parts(output: Output, parts: list[str]) -> tuple[dict[str, list[dict[str, Any]]], list[str], int]:
    """Rows of every part grouped by the shard they point into, the problems found on the way (an
    unreadable part, a row pointing into another part's shard, a key in more than one row), and the
    number of rows."""
    rows_by_shard: dict[str, list[dict[str, Any]]] = {}
    problems: list[str] = []
    keys: Counter[str] = Counter()
    where: dict[str, list[str]] = {}
    for part in parts:
        try:
            with output.fs.open(output.path(part), "rb") as f:
                rows = pq.read_table(f, columns=ROW_COLUMNS).to_pylist()
        except Exception as exc:  # noqa: BLE001 - any unreadable part is a finding, not a crash
            problems.append(f"{part}: unreadable manifest part ({type(exc).__name__}: {exc})")
            continue
        own = shard_of(part)
        for row in rows:
            if own is not None and row["shard"] != own:
                problems.append(f"{row['key']}: listed in {part} but points into {row['shard']}")
            rows_by_shard.setdefault(row["shard"], []).append(row)
            keys[row["key"]] += 1
            where.setdefault(row["key"], []).append(part)
    for key, n in sorted(keys.items()):
        if n > 1:
            problems.append(f"{key}: duplicate key, {n} rows (in {', '.join(where[key])})")
    return rows_by_shard, problems, sum(keys.values())


def _members(handle: IO[bytes]) -> dict[str, tuple[int, int]]:
    """Every member of a tar: name → (data offset, size)."""
    with tarfile.open(fileobj=handle, mode="r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar}


def _expected(row: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {row["image_member"]: (row["image_offset"], row["image_size"]),
            f"{row['key']}.txt": (row["txt_offset"], row["txt_size"]),
            f"{row['key']}.json": (row["json_offset"], row["json_size"])}


def check_shard(output: Output, shard: str, rows: list[dict[str, Any]], present: bool) -> list[str]:
    """One shard against the rows that point into it: its members are exactly theirs, at their
    offsets, and their image and caption bytes are what the rows say."""
    if not present:
        return [f"{row['key']}: shard {shard} missing" for row in rows] or [f"{shard}: missing"]
    with output.fs.open(output.path(shard), "rb") as handle:
        try:
            members = _members(handle)
        except (tarfile.TarError, OSError, EOFError) as exc:
            return [f"{shard}: not a readable tar ({type(exc).__name__}: {exc})"]
        if not rows:
            return [f"{shard}: {len(members)} tar members, none of them in the manifest"]
        problems = _check_members(shard, members, rows)
        for row in rows:
            problems += _check_bytes(handle, shard, row)
    return problems


def _check_members(shard: str, members: dict[str, tuple[int, int]], rows: list[dict[str, Any]]) -> list[str]:
    problems = []
    expected: dict[str, tuple[int, int]] = {}
    for row in rows:
        expected.update(_expected(row))
    for name in sorted(set(members) - set(expected)):
        problems.append(f"{shard}: tar member {name} is not in the manifest")
    for name, (offset, size) in sorted(expected.items()):
        if name not in members:
            problems.append(f"{shard}: member {name} of the manifest is not in the tar")
        elif members[name] != (offset, size):
            problems.append(f"{shard}: member {name} is at {members[name]} (offset, size), the manifest says {(offset, size)}")
    return problems


def _check_bytes(handle: IO[bytes], shard: str, row: dict[str, Any]) -> list[str]:
    problems = []
    handle.seek(row["image_offset"])
    if hashlib.sha256(handle.read(row["image_size"])).hexdigest() != row["image_sha256"]:
        problems.append(f"{row['key']}: image bytes at {shard}:{row['image_offset']} do not hash to image_sha256")
    handle.seek(row["txt_offset"])
    if handle.read(row["txt_size"]).decode("utf-8", "replace") != row["caption"]:
        problems.append(f"{row['key']}: caption member differs from the manifest caption")
    return problems
