"""What every source provides: a cheap listing of units and a way to open one.

A source object holds only configuration, so it pickles to any worker (process pool, Ray, Beam);
``open`` runs in the worker. Selection (limit, PMCID list) is applied by the pipeline on the
listing, the same way for every source.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from medcorpus.pipelines.failures import BadOption
from medcorpus.schemas.records import UnitRef


@dataclass
class ArticlePackage:
    """One article version, opened: its XML, the names of its media files, and how to read them."""

    unit: UnitRef
    xml: bytes
    media_names: list[str]
    source: "Source"
    version: int = 1
    license_code: str | None = None  # authoritative code from source metadata, when it has one
    source_url: str | None = None
    source_md5: str | None = None
    media: dict[str, bytes] = field(default_factory=dict)  # already in memory (packages, archives)
    no_media: bool = False  # the source never ships images (bulk XML): figures are text-only

    def read_media(self, name: str) -> bytes:
        if name in self.media:
            return self.media[name]
        return self.source.read_media(self.unit, name)


class Source(Protocol):
    name: str
    parser: str  # the key of its parse stage in ``pipelines.stages.PARSERS``

    def list_units(self) -> Iterator[UnitRef]:
        """Units in a deterministic order (sorted by unit id)."""

    def open(self, unit: UnitRef) -> Any:
        """Fetch the unit (an ``ArticlePackage`` for journal articles; whatever its parse stage
        reads for other sources); raise SkipError with a reason when it cannot."""

    def read_media(self, unit: UnitRef, name: str) -> bytes:
        """Bytes of one media file of the unit; raise SkipError('image_not_found') when absent."""


_PMCID = re.compile(r"^(?:PMC)?(\d+)(?:\.\d+)?$", re.I)


def normalize_pmcid(raw: str) -> str:
    """``PMC123``, ``pmc123``, ``123`` and ``PMC123.2`` → ``PMC123`` (a unit is an article)."""
    m = _PMCID.match(raw.strip())
    if not m:
        raise BadOption(f"not a PMCID: {raw!r}", "PMCIDs look like PMC1234567 (or 1234567)")
    return f"PMC{int(m.group(1))}"


def normalize_ids(items: list[str]) -> frozenset[str]:
    """PMCIDs in any spelling become ``PMC<digits>``; other ids (folder names) stay as given."""
    return frozenset(normalize_pmcid(i) if _PMCID.match(i.strip()) else i.strip() for i in items if i.strip())


@dataclass(frozen=True)
class Selection:
    limit: int | None = None
    ids: frozenset[str] | None = None  # PMCIDs or unit ids to keep
    since: str | None = None  # ISO date: only units updated on or after it (sources that know)

    def admits(self, unit: UnitRef) -> bool:
        if self.ids is None:
            return True
        meta = unit.meta_dict()
        return unit.unit_id in self.ids or meta.get("pmcid") in self.ids


def select(units: Iterator[UnitRef], selection: Selection) -> Iterator[UnitRef]:
    n = 0
    for unit in units:
        if selection.limit is not None and n >= selection.limit:
            return
        if selection.admits(unit):
            n += 1
            yield unit


def meta_tuple(meta: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in meta.items() if v is not None))
