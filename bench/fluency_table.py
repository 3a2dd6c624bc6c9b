"""Builds ``transforms/data/fluency_bigrams.tsv.gz``: word and word-pair counts of open-access article text.

Sources: paragraphs, titles and captions of ``shared/data/pmc/articles`` (19 packages, CC BY / CC0) and
of the CC BY files of ``shared/data/pmc/nxml_only`` (PLOS, eLife, BMC ...; the non-commercial and
all-rights-reserved ones listed in SOURCES.md are skipped). No evaluation set is read (ROCO, MedICaT,
SLAKE and the planted faithfulness cases stay unseen). Run: ``python bench/fluency_table.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from medcorpus.transforms.fluency import BIGRAMS_FILE, count_ngrams, write_table
from medcorpus.transforms.jats import parse_xml

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pmc"
CORPORA = [SHARED / "nxml_only", SHARED / "articles"]
# SOURCES.md marks these non-commercial, no-derivatives or without a licence: not counted
NOT_FREE = ("6605965a", "468444", "493855", "PMC10335194", "PMC3671108", "PMC3717426", "PMC_test_")


def texts(roots: list[Path]) -> list[str]:
    out = []
    for root in roots:
        for path in sorted(root.rglob("*.xml")) + sorted(root.rglob("*.nxml")):
            if any(path.name.startswith(n) for n in NOT_FREE):
                continue
            try:
                tree = parse_xml(path.read_bytes())
            except Exception:  # noqa: BLE001 - manifests and other non-article XML
                continue
            out += [" ".join(" ".join(el.itertext()).split()) for el in tree.iter("p", "title", "caption")]
    return out


def main() -> None:
    corpus = texts(CORPORA)
    uni, big = count_ngrams(corpus)
    n = write_table(uni, big, BIGRAMS_FILE)
    print(f"{len(corpus)} text blocks -> {n} rows in {BIGRAMS_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
