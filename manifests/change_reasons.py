"""Why a sample was added, removed or updated between two releases: reasons derived from evidence
only (both releases' sample rows, their ``dropped``, ``errors``, ``articles``, ``figures`` and
``units`` tables, and the config hash and code version each row was made with). Pure functions
over plain rows, so the rules read in one place and are tested without a build.

A reason is a short code a summary groups by; ``detail`` is the evidence behind it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]
EVIDENCE = ("articles", "figures", "errors", "dropped", "units")
"""The tables (of both releases) the rules read."""

DROPPED_NOW = {"quality": "now filtered", "decontam": "evaluation-set match", "dedup": "duplicate"}
DROPPED_BEFORE = {"quality": "no longer filtered", "decontam": "no longer an evaluation-set match",
                  "dedup": "no longer a duplicate"}
ERROR_REASONS = {"retracted": "retracted", "not_open_access": "no longer open access",
                 "license_excluded": "license excluded"}
# what an updated sample's columns say changed, in the order the detail lists them
ASPECTS = (("family", "license_family"), ("license", "license_code"), ("image", "image_sha256"),
           ("caption", "caption_md5"), ("duplicate cluster", "dedup_cluster"),
           ("duplicate of", "duplicate_of"), ("article XML", "source_md5"))


@dataclass
class Evidence:
    """Both releases' evidence tables, indexed for the lookups the rules make."""

    families: tuple[str, ...]  # the shard families the new release writes
    config_hash: str  # of the new release
    medcorpus_version: str
    old_articles: dict[str, Row] = field(default_factory=dict)
    new_articles: dict[str, Row] = field(default_factory=dict)
    old_dropped: dict[str, Row] = field(default_factory=dict)
    new_dropped: dict[str, Row] = field(default_factory=dict)
    old_errors: dict[tuple[str, str], Row] = field(default_factory=dict)  # (article_id, figure_id)
    new_errors: dict[tuple[str, str], Row] = field(default_factory=dict)
    new_unit_errors: dict[str, Row] = field(default_factory=dict)  # unit id -> its error
    new_figures: set[tuple[str, str]] = field(default_factory=set)
    old_units: dict[str, str] = field(default_factory=dict)  # unit id -> fingerprint
    new_units: dict[str, str] = field(default_factory=dict)


def make_evidence(old: dict[str, list[Row]], new: dict[str, list[Row]], families: tuple[str, ...],
                  config_hash: str, medcorpus_version: str) -> Evidence:
    """Index the tables of both releases (``articles``, ``figures``, ``errors``, ``dropped``, ``units``)."""
    ev = Evidence(families, config_hash, medcorpus_version)
    ev.old_articles = {r["article_id"]: r for r in old.get("articles", [])}
    ev.new_articles = {r["article_id"]: r for r in new.get("articles", [])}
    ev.old_dropped = {r["key"]: r for r in old.get("dropped", [])}
    ev.new_dropped = {r["key"]: r for r in new.get("dropped", [])}
    ev.old_errors = {(r["article_id"], r["figure_id"]): r for r in old.get("errors", []) if r.get("article_id")}
    ev.new_errors = {(r["article_id"], r["figure_id"]): r for r in new.get("errors", []) if r.get("article_id")}
    ev.new_unit_errors = {_unit_of(r["input"]): r for r in new.get("errors", []) if _unit_level(r)}
    ev.new_figures = {(r["article_id"], r["figure_id"]) for r in new.get("figures", [])}
    ev.old_units = {r["unit_id"]: r.get("fingerprint") or "" for r in old.get("units", [])}
    ev.new_units = {r["unit_id"]: r.get("fingerprint") or "" for r in new.get("units", [])}
    return ev


def _unit_level(error: Row) -> bool:
    """An error about a whole unit (it failed before parsing: its ``article_id``, when set, is the
    unit's PMCID or id, not the parsed article's)."""
    return error.get("stage") == "fetch" or not error.get("article_id")


def _unit_of(error_input: str) -> str:
    """The unit id of a unit-level error's input (``source:unit_id``)."""
    return error_input.split(":", 1)[-1].split("#", 1)[0]


def removed(old: Row, ev: Evidence) -> tuple[str, str]:
    """Why a sample of the previous release is not in the new one."""
    aid, fig = old.get("article_id"), old.get("figure_id")
    if (d := ev.new_dropped.get(old["key"])) is not None:
        return DROPPED_NOW.get(d["stage"], "dropped"), f"{d.get('dropped_by') or d['stage']}: {d.get('reason') or ''}"
    if (e := ev.new_errors.get((aid, fig))) is not None:
        return _error(e)
    article = ev.new_articles.get(aid)
    if article is None:
        unit_error = _unit_error(old, ev)
        if unit_error is not None:
            return _error(unit_error)
        return "withdrawn from source", "the article is no longer in the source's listing"
    if (article.get("version") or 0) > (old.get("version") or 0):
        return "new version", f"superseded by version {article['version']}"
    if article.get("license_family") not in ev.families:
        why = f"family {article.get('license_family')} is not written"
        if article.get("license_code") != old.get("license_code"):
            return "license changed", f"{old.get('license_code')} -> {article.get('license_code')}: {why}"
        return "config changed", why
    if (aid, fig) not in ev.new_figures:
        return "figure removed", f"the article no longer has figure {fig}"
    return _context(old, article, ev, "no longer produced")


def added(new: Row, ev: Evidence, old_article_ids: set[str]) -> tuple[str, str]:
    """Why a sample of the new release was not in the previous one."""
    aid = new.get("article_id")
    before = ev.old_articles.get(aid)
    if before is None and aid not in old_article_ids:
        return "new article", ""
    if (d := ev.old_dropped.get(new["key"])) is not None:
        return DROPPED_BEFORE.get(d["stage"], "no longer dropped"), f"was {d.get('dropped_by') or d['stage']}"
    if (e := ev.old_errors.get((aid, new.get("figure_id")))) is not None:
        return "error resolved", f"was {e['reason']}"
    if before is not None and (new.get("version") or 0) > (before.get("version") or 0):
        return "new version", f"version {before.get('version')} -> {new.get('version')}"
    if before is not None and before.get("license_family") != new.get("license_family"):
        return "license changed", f"{before.get('license_code')} -> {new.get('license_code')}"
    return _context(new, before, ev, "new figure")


def updated(old: Row, new: Row, ev: Evidence) -> tuple[str, str]:
    """Why a sample kept its key but not its content; the detail lists what differs."""
    aspects = [name for name, col in ASPECTS if old.get(col) != new.get(col)]
    detail = "changed: " + ", ".join(aspects or ["other columns"])
    if old.get("license_code") != new.get("license_code") or old.get("license_family") != new.get("license_family"):
        return "license changed", detail
    if old.get("config_hash") != new.get("config_hash"):
        return "config changed", detail
    if old.get("medcorpus_version") != new.get("medcorpus_version"):
        return "medcorpus version changed", detail
    if old.get("source_md5") != new.get("source_md5") or _unit_changed(old, ev):
        return "source changed", detail
    if aspects and set(aspects) <= {"duplicate cluster", "duplicate of"}:
        return "duplicate cluster changed", detail
    return "columns changed", detail


def _context(row: Row, article: Row | None, ev: Evidence, otherwise: str) -> tuple[str, str]:
    """A change the row's own tables do not explain: the config, the code or the source changed."""
    if row.get("config_hash") != ev.config_hash:
        return "config changed", f"config {row.get('config_hash')} -> {ev.config_hash}"
    if row.get("medcorpus_version") != ev.medcorpus_version:
        return "medcorpus version changed", f"{row.get('medcorpus_version')} -> {ev.medcorpus_version}"
    if article is not None and article.get("source_md5") != row.get("source_md5"):
        return "source changed", "the article XML changed"
    if _unit_changed(row, ev):
        return "source changed", "the article's files changed"
    return otherwise, ""


def _error(e: Row) -> tuple[str, str]:
    return ERROR_REASONS.get(e["reason"], "error"), f"{e['stage']}: {e['reason']}: {e.get('detail') or ''}".rstrip(": ")


def _units_of(row: Row, units: dict[str, Any]) -> list[str]:
    """Units a sample may have come from: the unit named like its PMCID or article id, or a unit
    id that is a folder of its source URL (local and bulk sources)."""
    found = [u for u in (row.get("pmcid"), row.get("article_id")) if u and u in units]
    url = row.get("source_url") or ""
    found += [part for part in url.split("/") if part in units]
    return found


def _unit_error(old: Row, ev: Evidence) -> Row | None:
    for unit in _units_of(old, ev.new_unit_errors):
        return ev.new_unit_errors[unit]
    return None


def _unit_changed(row: Row, ev: Evidence) -> bool:
    return any(ev.old_units.get(u) != ev.new_units.get(u) for u in _units_of(row, ev.new_units))
