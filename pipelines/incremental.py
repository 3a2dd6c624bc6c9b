"""Snapshot and incremental builds of one output folder.

A build whose listing covers the whole source is a *snapshot*: the output becomes exactly what the
source holds now, so articles that vanished upstream leave the corpus. A build whose listing is
restricted (``--since``, ``--pmcids``, ``--limit``) only looked at part of the source, so it is
*incremental*: it replaces the units it looked at and carries every other unit of the previous build
over unchanged. Absence from a restricted listing says nothing about an article, so it never removes
one.

What the previous build held is recorded in its release's ``manifest/units.parquet`` (one row per
unit, with the token of its staged result). It lives beside the other manifest tables rather than under ``_work/``
because ``_work/`` is documented as safe to delete. A carried unit's samples, articles, figures,
errors and dropped rows come from its staged result, so they pass through deduplication and shard
planning exactly as in a snapshot build. When a carried unit cannot be reproduced exactly (its
staged result was deleted, or the config or code version changed since), the run stops before it
writes anything and says to run a full rebuild: guessing would silently lose or mix samples.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from medcorpus.manifests.parquet import read_table, write_rows
from medcorpus.manifests.storage import Output
from medcorpus.pipelines.sources.base import Selection
from medcorpus.pipelines.staging import Staging
from medcorpus.schemas import manifest as schema
from medcorpus.schemas.records import UnitRef

UNITS_TABLE = "manifest/units.parquet"
SNAPSHOT, INCREMENTAL = "snapshot", "incremental"
_VERSIONED_ID = re.compile(r"^(PMC\d+)\.(\d+)$")


class IncrementalError(RuntimeError):
    """An incremental run cannot keep the previous build intact; nothing was written."""


@dataclass
class UnitPlan:
    """The units of this build: those the listing gave (to stage) and those carried over."""

    mode: str
    units: list[tuple[UnitRef, str]]  # every unit of the build, sorted by unit id
    kept: int = 0


def build_mode(source: Any, selection: Selection) -> str:
    """Incremental when the listing is restricted, by the selection or by the source itself
    (pmc-cloud applies ``since`` and ``ids`` while listing)."""
    restricted = selection.limit is not None or selection.ids is not None or bool(selection.since)
    restricted = restricted or bool(getattr(source, "since", None)) or getattr(source, "ids", None) is not None
    return INCREMENTAL if restricted else SNAPSHOT


def plan_units(mode: str, listed: list[tuple[UnitRef, str]], output: Output | None, staging: Staging,
               token_of: Callable[[UnitRef], str]) -> UnitPlan:
    """This build's units. Incremental: the previous build's units minus those the listing gave
    again (same unit id, or an older version of a listed article), plus the listed ones."""
    if mode == SNAPSHOT:
        return UnitPlan(mode, listed)
    previous = read_units(output)
    replaced = _replaced_by(listed)
    kept = [(ref, token) for ref, token in previous if not replaced(ref)]
    check_carried(kept, staging, token_of)
    units = sorted(listed + kept, key=lambda u: (u[0].unit_id, u[0].source))
    return UnitPlan(mode, units, kept=len(kept))


def _replaced_by(listed: list[tuple[UnitRef, str]]) -> Callable[[UnitRef], bool]:
    """Whether a listed unit replaces a previous one: the same unit, or a newer version of the same
    article where versions are separate units (local folders ``PMC123.1``, ``PMC123.2``)."""
    ids = {(u.source, u.unit_id) for u, _ in listed}
    newest: dict[tuple[str, str], int] = {}
    for u, _ in listed:
        av = _article_version(u)
        if av:
            newest[(u.source, av[0])] = max(av[1], newest.get((u.source, av[0]), 0))

    def replaced(ref: UnitRef) -> bool:
        av = _article_version(ref)
        return (ref.source, ref.unit_id) in ids or bool(av and newest.get((ref.source, av[0]), 0) > av[1])
    return replaced


def _article_version(unit: UnitRef) -> tuple[str, int] | None:
    m = _VERSIONED_ID.match(unit.unit_id)
    return (m.group(1), int(m.group(2))) if m else None


def check_carried(kept: list[tuple[UnitRef, str]], staging: Staging, token_of: Callable[[UnitRef], str]) -> None:
    """Refuse (before anything is written) when a carried unit cannot be reproduced exactly."""
    changed = [ref.unit_id for ref, token in kept if token_of(ref) != token]
    if changed:
        raise IncrementalError(
            f"the previous build of this output was made with another config or medcorpus version "
            f"({len(changed)} units, e.g. {changed[0]}); an incremental run would mix the two. "
            f"Run a full rebuild (without --since, --pmcids or --limit).")
    missing = [ref.unit_id for ref, token in kept if not staging.staged(token)]
    if missing:
        raise IncrementalError(
            f"the staged results of {len(missing)} units of the previous build are gone (e.g. {missing[0]}; "
            f"was the work dir deleted or moved?), so an incremental run cannot keep their samples. "
            f"Pass the original --work-dir, or run a full rebuild (without --since, --pmcids or --limit).")


def read_units(output: Output | None) -> list[tuple[UnitRef, str]]:
    """The previous release's units (none before the first); refuses a release that has samples but
    no units record (made by an older medcorpus), whose samples an incremental run could not account for."""
    if output is None:
        return []
    if not output.exists(UNITS_TABLE):
        if output.list("manifest/samples"):
            raise IncrementalError(
                f"{output.path(UNITS_TABLE)} is missing, so this output's units are unknown and an "
                f"incremental run would drop them. Run one full rebuild (without --since, --pmcids or "
                f"--limit) first.")
        return []
    return [(_unit_ref(row), row["token"]) for row in read_table(output, UNITS_TABLE).to_pylist()]


def write_units(output: Output, units: list[tuple[UnitRef, str]]) -> None:
    rows = [{"source": u.source, "unit_id": u.unit_id, "locator": u.locator, "fingerprint": u.fingerprint,
             "meta": json.dumps([list(kv) for kv in u.meta], sort_keys=True), "token": token}
            for u, token in units]
    write_rows(output, UNITS_TABLE, rows, schema.UNITS, ("unit_id", "source"))


def _unit_ref(row: dict[str, Any]) -> UnitRef:
    meta = tuple(tuple(kv) for kv in json.loads(row["meta"] or "[]"))
    return UnitRef(source=row["source"], unit_id=row["unit_id"], locator=row["locator"] or "",
                   fingerprint=row["fingerprint"] or "", meta=meta)  # type: ignore[arg-type]
