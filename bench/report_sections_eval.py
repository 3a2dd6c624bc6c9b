"""The report section parser, measured on the real Open-i (IU X-ray) reports.

The CSV holds each report's indication, comparison, findings and impression in columns. Each
report is written back as free text in a style picked by its uid (header spelling and case,
spacing, inline or one header per line, header alone on its line, sections in another order), the
parser reads it, and each section is compared with the CSV's column (whitespace-normalized exact
match). The texts are real; the layouts are made here (synthetic: say so when quoting numbers).

Reports with uid % 5 == 0 are kept aside, written with header spellings the parser was not tuned
on (``ASIDE_NAMES``), and looked at only for the final numbers. The two raw NegBio reports (real
free text, headers as dictated) are checked against their sections read by hand.

    PYTHONPATH=. python bench/report_sections_eval.py [--json out.json]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
from collections import Counter
from pathlib import Path

from medcorpus.transforms.report_sections import SECTIONS, parse_sections

DATA = Path(os.environ.get("MEDCORPUS_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data"
REPORTS = DATA / "reports" / "iu_xray_openi" / "indiana_reports.csv"

TUNE_NAMES = {
    "indication": ["INDICATION", "Indication", "indication", "HISTORY", "Clinical history", "REASON FOR EXAM"],
    "comparison": ["COMPARISON", "Comparison", "comparison"],
    "findings": ["FINDINGS", "Findings", "findings"],
    "impression": ["IMPRESSION", "Impression", "impression"],
}
ASIDE_NAMES = {
    "indication": ["CLINICAL INFORMATION", "Reason for examination", "INDICATIONS", "Clinical Indication"],
    "comparison": ["COMPARISONS", "Comparison study", "PRIOR STUDIES"],
    "findings": ["FINDING", "Findings", "FINDINGS"],
    "impression": ["CONCLUSION", "IMPRESSIONS", "Impression", "SUMMARY"],
}
SEPARATORS = (":", " :", ":  ", ":\n", ":\n\n")
LAYOUTS = ("lines", "inline", "blank_lines", "bare_caps")

NEGBIO = {  # sections of the two raw NegBio reports, read by hand
    "00000086.txt": {"findings": "pa and lat cxr at 7:34 p.m.. heart and mediastinum are stable. lungs are unchanged. "
                                 "air- filled cystic changes. no pneumothorax. osseous structures unchanged scoliosis",
                     "impression": "stable chest."},
    "00019248.txt": {"findings": "chest: four images: right picc with tip within the upper svc. probable enlargement "
                                 "of the main pulmonary artery. mild cardiomegaly. no evidence of focal infiltrate, "
                                 "effusion or pneumothorax."},
}


def _pick(options: list[str] | tuple[str, ...], uid: str, salt: str) -> str:
    h = int(hashlib.sha256(f"{uid}:{salt}".encode()).hexdigest()[:8], 16)
    return options[h % len(options)]


def free_text(row: dict[str, str], names: dict[str, list[str]]) -> tuple[str, str]:
    """The report as free text in a style picked by its uid, and the style's name."""
    uid = row["uid"]
    layout = _pick(LAYOUTS, uid, "layout")
    order = list(SECTIONS) if _pick(("keep", "swap"), uid, "order") == "keep" else \
        ["comparison", "indication", "findings", "impression"]
    parts = []
    for section in order:
        body = " ".join(row[section].split())
        if not body:
            continue
        name = _pick(names[section], uid, section)
        if layout == "bare_caps":
            parts.append(f"{name.upper()}\n{body}")
        else:
            parts.append(f"{name}{_pick(SEPARATORS, uid, 'sep' + section)}{body}")
    joiner = {"lines": "\n", "inline": " ", "blank_lines": "\n\n", "bare_caps": "\n\n"}[layout]
    return joiner.join(parts), layout


def _norm(text: str | None) -> str:
    return " ".join((text or "").split()).strip(" :;-")


def evaluate(rows: list[dict[str, str]], names: dict[str, list[str]]) -> dict[str, object]:
    per_section, whole, by_layout, misses = Counter(), 0, Counter(), []
    total = Counter()
    for row in rows:
        text, layout = free_text(row, names)
        got = parse_sections(text).to_dict()
        ok_all = True
        for section in SECTIONS:
            expected = _norm(row[section])
            total[section] += 1
            if _norm(got[section]) == expected:
                per_section[section] += 1
            else:
                ok_all = False
                if len(misses) < 5:
                    misses.append({"uid": row["uid"], "section": section, "expected": expected[:120],
                                   "got": _norm(got[section])[:120]})
        whole += ok_all
        by_layout[layout] += ok_all
    return {"reports": len(rows), "all_sections_exact": round(whole / len(rows), 4),
            "per_section": {s: round(per_section[s] / total[s], 4) for s in SECTIONS}, "misses": misses}


def headerless(rows: list[dict[str, str]]) -> float:
    """A report with no headers at all: its whole text must come back as findings."""
    ok = 0
    for row in rows:
        text = " ".join(" ".join(row[s].split()) for s in ("findings", "impression") if row[s].strip())
        ok += _norm(parse_sections(text).findings) == _norm(text)
    return round(ok / len(rows), 4)


def negbio() -> dict[str, bool]:
    folder = DATA / "reports" / "negbio_examples"
    out = {}
    for name, expected in NEGBIO.items():
        got = parse_sections((folder / name).read_text(encoding="utf-8")).to_dict()
        out[name] = all(_norm(got[s]) == _norm(expected.get(s)) for s in SECTIONS)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with REPORTS.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if any(r[s].strip() for s in SECTIONS)]
    tune = [r for r in rows if int(r["uid"]) % 5]
    aside = [r for r in rows if int(r["uid"]) % 5 == 0]
    result = {"tune": evaluate(tune, TUNE_NAMES), "aside": evaluate(aside, ASIDE_NAMES),
              "headerless_tune": headerless(tune), "headerless_aside": headerless(aside), "negbio": negbio()}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
