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

from medcorpus.manifests.layout import resolve
from medcorpus.manifests.storage import Output

log = logging.getLogger(__name__)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z$")
_META_KEY = re.compile(r"^metadata/(PMC\d+)\.(\d+)\.json$")
ARCHIVE = "manifest/inventory"


class InventoryError(RuntimeError):
    """The inventories cannot say what changed (none published, or the base day expired)."""


@dataclass
class Inventory:
    """One day's inventory as published: ``manifest.json`` and its data files by name."""

    date: str
    files: dict[str, bytes] = field(default_factory=dict)

    def etags(self) -> dict[str, str]:
        """Every metadata key with its ETag (parsed only when a release compares two days)."""
        manifest = json.loads(self.files["manifest.json"])
        columns = [c.strip() for c in manifest.get("fileSchema", "Bucket, Key, LastModifiedDate, ETag").split(",")]
        key_col, etag_col = columns.index("Key"), columns.index("ETag")
        found = {}
        for entry in manifest["files"]:
            data = gzip.decompress(self.files[entry["key"].rsplit("/", 1)[-1]]).decode("utf-8")
            for row in csv.reader(io.StringIO(data)):
                key = unquote(row[key_col])
                if _META_KEY.match(key):
                    found[key] = row[etag_col].strip('"')
        return found


@dataclass
class Basis:
    """What a pmc-cloud release is based on: the newest inventory, and for ``--changes-since`` the
    day it was compared with and the articles that changed in between."""

    newest: Inventory
    base: str | None = None
    changed: frozenset[str] | None = None


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
    """One day's inventory: its manifest and data files (each checked against the manifest's MD5)."""
    manifest_bytes = source._fetch(f"{prefix(source.bucket)}{date}/manifest.json", None)
    inv = Inventory(date, {"manifest.json": manifest_bytes})
    for entry in json.loads(manifest_bytes)["files"]:
        inv.files[entry["key"].rsplit("/", 1)[-1]] = source._fetch(entry["key"], entry.get("MD5checksum"))
    return inv


def changed_pmcids(base: Inventory, newest: Inventory) -> frozenset[str]:
    """Articles with a version that is new, rewritten or gone between the two days."""
    old, new = base.etags(), newest.etags()
    keys = {k for k, etag in new.items() if old.get(k) != etag} | (old.keys() - new.keys())
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


def archive(output: Output, release: int, basis: Basis) -> None:
    """Keep the newest inventory used, and which days this release compared."""
    for name, data in sorted(basis.newest.files.items()):
        output.write_bytes(f"{ARCHIVE}/{basis.newest.date}/{name}", data)
    changed = len(basis.changed) if basis.changed is not None else None
    doc = {"release": release, "base": basis.base, "newest": basis.newest.date, "changed_articles": changed}
    output.write_bytes(f"{ARCHIVE}/release-{release:06d}.json", json.dumps(doc, indent=1).encode())


def prepare(source: Any, out: str, changes_since: int | None) -> None:
    """Attach what a pmc-cloud build is based on (``source.inventory``, a ``Basis``); with
    ``changes_since``, restrict the source to the articles that changed since that release. A full
    build that finds no inventory (none published, or unreadable) records none and goes on."""
    if changes_since is None:
        try:
            available = dates(source)
            source.inventory = Basis(read(source, available[-1])) if available else None
        except Exception as exc:  # noqa: BLE001 - the full build goes on; only the next --changes-since needs it
            log.warning("no inventory recorded for this build (%s: %s)", type(exc).__name__, exc)
            source.inventory = None
        return
    available = dates(source)
    if not available:
        raise InventoryError(f"s3://{source.bucket}/{prefix(source.bucket)} holds no inventory")
    base = base_date(Output(resolve(out).url), changes_since, available)
    newest = read(source, available[-1])
    changed = changed_pmcids(read(source, base), newest) if base != newest.date else frozenset()
    source.inventory = Basis(newest, base, changed)
    source.ids = changed
