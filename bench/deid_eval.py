"""Free-text de-identification, measured: recall on identifiers planted in real reports, and how
often it changes real (already de-identified) report text.

Real texts: the Open-i reports (findings + impression; their own ``XXXX`` masks stay). Into each,
one sentence carrying a synthetic identifier is inserted between two sentences (seeded by the
report's uid): names, dates, identifiers (MRN, accession ...), phone numbers, e-mail addresses,
street addresses and ages over 89. The identifiers and the sentences around them are made here
(synthetic: say so when quoting numbers). An identifier counts as removed when none of its
sensitive parts (name words, digit runs, the e-mail) is left in the scrubbed text.

Reports with uid % 5 == 0 are kept aside and get identifiers in forms and with names the rules
were not written against (``ASIDE``); they were looked at only for the final numbers.
False positives: the share of real report fields (all four sections of every report, no planted
text) that the scrubber changes at all.

    PYTHONPATH=. python bench/deid_eval.py [--json out.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
from collections import Counter
from pathlib import Path

from medcorpus.transforms.deid_text import scrub

DATA = Path(os.environ.get("MEDCORPUS_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data"
REPORTS = DATA / "reports" / "iu_xray_openi" / "indiana_reports.csv"

TUNE = {
    "first": ["John", "Maria", "Wei", "Fatima", "Robert", "Anna"],
    "last": ["Smith", "Garcia", "Chen", "Okafor", "Johnson", "Kowalski"],
    "NAME": ["Findings discussed with Dr. {first} {last} by telephone.", "Dictated by: {first} {last}, MD",
             "Signed by {first} {initial}. {last}", "Reviewed by Dr. {last}.", "{last}^{first}"],
    "DATE": ["Compared with the study of {mm}/{dd}/{yyyy}.", "Prior exam {yyyy}-{mm}-{dd}.",
             "Comparison: {month} {d}, {yyyy}.", "Seen on {d} {mon} {yyyy}."],
    "ID": ["MRN: {n8}.", "Accession number: A{n8}.", "MRN {n7}"],
    "PHONE": ["Please call {a}-{b}-{c} with questions.", "Reached at ({a}) {b}-{c}."],
    "EMAIL": ["Results sent to {first}.{last}@hospital.org."],
    "ADDRESS": ["Patient lives at {n3} Main Street.", "Transferred from Boston, MA {zip}."],
    "AGE": ["{age}-year-old with cough."],
}
ASIDE = {
    "first": ["Priya", "Olumide", "Sven", "Keiko", "Diego", "Harriet"],
    "last": ["Ramanathan", "Adeyemi", "Lindqvist", "Tanaka", "Fernandez", "Whitfield"],
    "NAME": ["The findings were communicated to {first} {last} at the bedside.",
             "Electronically signed by: {first} {last}, M.D.", "d/w dr. {lower_last} on the phone.",
             "Reviewed by Prof. {first} {last}.", "Patient name: {last}, {first}"],
    "DATE": ["Compared with {m}-{d}-{yy}.", "Prior study dated {mon}. {d}th, {yyyy}.", "Stable since {m}/{d}.",
             "Last seen in {month} {yyyy}.", "Exam of the {d}th of {month} {yyyy}."],
    "ID": ["acc #E{n7}", "Medical record number {n8}.", "pt id: {n7}", "SSN {n3}-{n2}-{n4}.", "Order no. {n8}"],
    "PHONE": ["Call {a}.{b}.{c} for the report.", "Pager {n5}.", "Phone: +1 {a} {b} {c}"],
    "EMAIL": ["Copy to {lower_first}_{lower_last}+rad@mail.example.co.uk."],
    "ADDRESS": ["Home: {n2} Elm Ave., Apt 3.", "Mail to P.O. Box {n3}.", "From Springfield, IL {zip}-{n4}."],
    "AGE": ["{age} yo female.", "Patient is {age} years old."],
}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def _values(rng: random.Random, names: dict[str, list[str]]) -> dict[str, str]:
    first, last, month = rng.choice(names["first"]), rng.choice(names["last"]), rng.randint(1, 12)
    digits = {f"n{k}": "".join(str(rng.randint(1 if i == 0 else 0, 9)) for i in range(k)) for k in (2, 3, 4, 5, 7, 8)}
    return {"first": first, "last": last, "initial": rng.choice("ABCDEFGHJKLMNPRSTW"), "lower_first": first.lower(), "lower_last": last.lower(),
            "m": str(month), "mm": f"{month:02d}", "d": str(rng.randint(2, 28)), "dd": f"{rng.randint(10, 28)}",
            "yyyy": str(rng.randint(1990, 2025)), "yy": f"{rng.randint(0, 25):02d}", "month": MONTHS[month - 1],
            "mon": MONTHS[month - 1][:3], "a": str(rng.randint(201, 989)), "b": str(rng.randint(201, 989)),
            "c": f"{rng.randint(1000, 9999)}", "zip": f"{rng.randint(10000, 99999)}", "age": str(rng.randint(90, 104)),
            **digits}


def _sensitive(kind: str, template: str, v: dict[str, str]) -> list[str]:
    """The parts of a planted identifier that must not survive."""
    filled = template.format(**v)
    if kind == "NAME":
        return [w for w in (v["first"], v["last"]) if re.search(rf"\b{w}\b", filled, re.I)]
    if kind == "EMAIL":
        return [re.search(r"\S+@\S+[a-z]", filled).group(0)]
    if kind == "ADDRESS":
        return re.findall(r"\d+", filled)
    return re.findall(r"\d{2,}", filled) or [filled]


def plant(rows: list[dict[str, str]], names: dict[str, list[str]]) -> dict[str, list[int]]:
    """Per kind: [removed, planted]."""
    score: dict[str, list[int]] = {}
    for row in rows:
        rng = random.Random(int(row["uid"]))
        text = " ".join(row[s] for s in ("findings", "impression") if row[s].strip())
        sentences = re.split(r"(?<=\.)\s+", text)
        for kind in ("NAME", "DATE", "ID", "PHONE", "EMAIL", "ADDRESS", "AGE"):
            template, values = rng.choice(names[kind]), _values(rng, names)
            at = rng.randint(0, len(sentences))
            planted = " ".join([*sentences[:at], template.format(**values), *sentences[at:]])
            out = scrub(planted)
            left = [p for p in _sensitive(kind, template, values) if re.search(rf"(?<![\w]){re.escape(p)}(?![\w])", out, re.I)]
            s = score.setdefault(kind, [0, 0])
            s[0] += not left
            s[1] += 1
    return score


def false_positives(rows: list[dict[str, str]]) -> tuple[int, int, list[str]]:
    changed, total, examples = 0, 0, []
    for row in rows:
        for section in ("indication", "comparison", "findings", "impression"):
            if row[section].strip():
                total += 1
                if scrub(row[section]) != row[section]:
                    changed += 1
                    examples.append(f"{row[section][:80]} -> {scrub(row[section])[:80]}")
    return changed, total, examples[:5]


def _summary(score: dict[str, list[int]]) -> dict[str, object]:
    removed, planted = sum(s[0] for s in score.values()), sum(s[1] for s in score.values())
    return {"recall": round(removed / planted, 4), "planted": planted,
            "per_kind": {k: round(s[0] / s[1], 4) for k, s in score.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with REPORTS.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["findings"].strip() or r["impression"].strip()]
    tune = [r for r in rows if int(r["uid"]) % 5]
    aside = [r for r in rows if int(r["uid"]) % 5 == 0]
    changed, total, examples = false_positives(rows)
    result = {"tune": _summary(plant(tune, TUNE)), "aside": _summary(plant(aside, ASIDE)),
              "real_fields_changed": changed, "real_fields": total, "changed_examples": examples}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
