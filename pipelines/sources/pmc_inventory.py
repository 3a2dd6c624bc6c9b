"""PMC Cloud's daily S3 Inventory of ``metadata/``: which article versions changed between two days.

The bucket publishes ``inventory-reports/<bucket>/metadata/<YYYY-MM-DDT01-00Z>/manifest.json`` (the
standard S3 Inventory manifest) pointing at ``csv.gz`` files with the key and ETag of every
``metadata/PMC<id>.<ver>.json``. That object changes whenever anything of its article version
changes (a new version is a new key; a retraction rewrites the metadata), so the keys that are new
or carry another ETag in the later inventory are exactly the article versions to process again.

An incremental release (``--changes-since N``) diffs the inventory release N was based on with the
newest one, and archives the newest one under ``manifest/inventory/<date>/`` with
``manifest/inventory/release-NNNNNN.json`` naming both days, so the next release starts from it.
A full pmc-cloud build is based on the newest inventory older than its start (inventories lag the
bucket, so changes after it are seen again next time: reprocessing is safe, missing one is not).
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from medcorpus.manifests.storage import Output

log = logging.getLogger(__name__)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z$")
_META_KEY = re.compile(r"^metadata/(PMC\d+)\.(\d+)\.json$")
ARCHIVE = "manifest/inventory"


class InventoryError(RuntimeError):
    """The inventories cannot say what changed (none published, or the base day expired)."""


@dataclass
class Inventory:
    date: str
    etags: dict[str, str]  # metadata key -> ETag
    files: dict[str, bytes] = field(default_factory=dict)  # name -> bytes as published, for the archive


def prefix(bucket: str) -> str:
    return f"inventory-reports/{bucket}/metadata/"


def dates(source: Any) -> list[str]:
    """The inventory days the bucket holds, oldest first."""
    found = []
    for page in source._list_all(prefix(source.bucket), "/"):
        for p in page.prefixes:
            name = p.rstrip("/").rsplit("/", 1)[-1]
            if _DATE.match(name):
                found.append(name)
    return sorted(found)


def read(source: Any, date: str) -> Inventory:
    """One day's inventory: every metadata key with its ETag (data files checked against the
    manifest's MD5)."""
    manifest_bytes = source._fetch(f"{prefix(source.bucket)}{date}/manifest.json", None)
    manifest = json.loads(manifest_bytes)
    columns = [c.strip() for c in manifest.get("fileSchema", "Bucket, Key, LastModifiedDate, ETag").split(",")]
    key_col, etag_col = columns.index("Key"), columns.index("ETag")
    inv = Inventory(date, {}, {"manifest.json": manifest_bytes})
    for entry in manifest["files"]:
        data = source._fetch(entry["key"], entry.get("MD5checksum"))
        inv.files[entry["key"].rsplit("/", 1)[-1]] = data
        for row in csv.reader(io.StringIO(gzip.decompress(data).decode("utf-8"))):
            key = unquote(row[key_col])
            if _META_KEY.match(key):
                inv.etags[key] = row[etag_col].strip('"')
    return inv


def changed_pmcids(base: Inventory, newest: Inventory) -> frozenset[str]:
    """Articles with a version that is new, rewritten or gone between the two days."""
    keys = {k for k, etag in newest.etags.items() if base.etags.get(k) != etag} | (base.etags.keys() - newest.etags.keys())
    return frozenset(m.group(1) for k in keys if (m := _META_KEY.match(k)))


def base_date(output: Output, release: int, available: list[str]) -> str:
    """The inventory day release ``release`` of ``output`` was based on."""
    rel = f"{ARCHIVE}/release-{release:06d}.json"
    if not output.exists(rel):
        raise InventoryError(f"release {release} of {output.url} records no inventory day ({rel}); "
                             f"run a full pmc-cloud build first")
    day = json.loads(output.read_bytes(rel))["newest"]
    if day not in available:
        raise InventoryError(f"the inventory of {day} (release {release}) is no longer published "
                             f"(reports are kept 30 days); run a full rebuild")
    return day


def archive(output: Output, release: int, newest: Inventory, base: str | None, changed: int | None) -> None:
    """Keep the newest inventory used, and which days this release compared."""
    for name, data in sorted(newest.files.items()):
        output.write_bytes(f"{ARCHIVE}/{newest.date}/{name}", data)
    doc = {"release": release, "base": base, "newest": newest.date, "changed_articles": changed}
    output.write_bytes(f"{ARCHIVE}/release-{release:06d}.json", json.dumps(doc, indent=1).encode())


def prepare(source: Any, out: str, changes_since: int | None) -> frozenset[str] | None:
    """Attach the inventory a pmc-cloud build is based on (``source.inventory``: the newest day,
    and with ``changes_since`` the base day it is compared with); return the PMCIDs to process
    for ``--changes-since`` (None for a full build). A full build without any published
    inventory just records none."""
    if changes_since is None:
        try:
            available = dates(source)
            source.inventory = (read(source, available[-1]), None) if available else None
        except Exception as exc:  # noqa: BLE001 - the full build goes on; only the next --changes-since needs it
            log.warning("no inventory recorded for this build (%s: %s)", type(exc).__name__, exc)
            source.inventory = None
        return None
    available = dates(source)
    if not available:
        raise InventoryError(f"s3://{source.bucket}/{prefix(source.bucket)} holds no inventory")
    base = base_date(Output(out), changes_since, available)
    newest = read(source, available[-1])
    changed = changed_pmcids(read(source, base), newest) if base != newest.date else frozenset()
    source.inventory = (newest, base)
    return changed
