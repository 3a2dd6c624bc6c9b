"""Attribution file of a release: citation + license + URL for every sample, as CC BY requires.

One row per sample (``attribution.csv`` or ``attribution.jsonl``), sorted by key, built from
manifest sample rows (``schemas.manifest.SAMPLES`` columns), so it can be regenerated from any
release's manifest with DuckDB or this module alone.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

LICENSE_URLS = {
    "CC BY": "https://creativecommons.org/licenses/by/4.0/",
    "CC BY-SA": "https://creativecommons.org/licenses/by-sa/4.0/",
    "CC BY-ND": "https://creativecommons.org/licenses/by-nd/4.0/",
    "CC BY-NC": "https://creativecommons.org/licenses/by-nc/4.0/",
    "CC BY-NC-SA": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "CC BY-NC-ND": "https://creativecommons.org/licenses/by-nc-nd/4.0/",
    "CC0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "PD": "https://creativecommons.org/publicdomain/mark/1.0/",
}
"""Fallback deed URLs when the article gave no license URL (the article's own URL wins: it has the version)."""

COLUMNS = ("key", "citation", "title", "journal", "year", "doi", "pmcid", "figure_label", "license_code",
           "license_url", "article_url", "source_url")


# manifest columns an attribution row is made from
INPUT_COLUMNS = ["key", "article_id", "title", "journal", "year", "doi", "pmcid", "figure_label", "license_code",
                 "license_url", "source_url"]


def article_url(row: Mapping[str, Any]) -> str | None:
    if row.get("pmcid"):
        return f"https://pmc.ncbi.nlm.nih.gov/articles/{row['pmcid']}/"
    if row.get("doi"):
        return f"https://doi.org/{row['doi']}"
    return row.get("source_url")


def citation(row: Mapping[str, Any]) -> str:
    """``Title. Journal (Year). doi:… PMCID: PMC….`` — only the parts the manifest has."""
    parts = []
    if row.get("title"):
        parts.append(str(row["title"]).rstrip(".") + ".")
    venue = " ".join(p for p in (row.get("journal") or "", f"({row['year']})" if row.get("year") else "") if p)
    if venue:
        parts.append(venue + ".")
    if row.get("doi"):
        parts.append(f"doi:{row['doi']}.")
    if row.get("pmcid"):
        parts.append(f"PMCID: {row['pmcid']}.")
    return " ".join(parts) or str(row.get("article_id") or "")


def attribution_row(row: Mapping[str, Any]) -> dict[str, Any]:
    code = row.get("license_code") or "unknown"
    return {
        "key": row["key"], "citation": citation(row), "title": row.get("title"), "journal": row.get("journal"),
        "year": row.get("year"), "doi": row.get("doi"), "pmcid": row.get("pmcid"),
        "figure_label": row.get("figure_label"), "license_code": code,
        "license_url": row.get("license_url") or LICENSE_URLS.get(code), "article_url": article_url(row),
        "source_url": row.get("source_url"),
    }


def write_attribution(rows: Iterable[Mapping[str, Any]], path: str | Path, presorted: bool = False) -> int:
    """Write ``.csv`` or ``.jsonl`` (by suffix) sorted by key (``presorted``: the rows come so, and
    stream to the file); returns the number of rows."""
    out: Iterable[dict[str, Any]] = (attribution_row(r) for r in rows)
    if not presorted:
        out = sorted(out, key=lambda r: r["key"])
    p = Path(path)
    n = 0
    with p.open("w", newline="", encoding="utf-8") as f:
        w = None if p.suffix == ".jsonl" else csv.DictWriter(f, fieldnames=COLUMNS)
        if w is not None:
            w.writeheader()
        for r in out:
            if w is None:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            else:
                w.writerow(r)
            n += 1
    return n
