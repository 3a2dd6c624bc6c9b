"""Precision of linked concept mentions outside radiology, on mentions labelled by reading.

``tests/data/concept_mention_labels.jsonl``: 236 (figure, mention, CUI) links read and judged right or
wrong by hand: tune = every link made before or after the precision work in the captions of
``shared/data/pmc/articles`` (19 packages: ecology, genomics, epidemiology, physics ...; 46 links, and the
46 more that MeSH brought), aside = 45 links drawn by a hash from the captions of
``shared/data/pmc/nxml_only/plos_allofplos`` (PLOS Medicine, NTD, Pathogens), labelled after the work, and
every link of the figures there with a MeSH link, in hash order until 40 MeSH links (46 more with two
left unlabelled before), labelled after the MeSH work; then every link the HGNC genes and EFO cell lines
added (47 tune, 6 aside, the aside ones labelled after that work). A nested hypernym ("prostate cancer" ->
cancer, prostate) counts as right; a link inside a name of something else (a project, a virus, a cell
line, a place) as wrong. The current linker relinks those captions; links nobody labelled are counted
apart. Run: ``python bench/concept_precision.py [--no-mesh] [--no-genes]`` (the open vocabulary of dataflow.yaml, cached).
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from medcorpus.pipelines.vocab import cached_vocab
from medcorpus.transforms.concepts import shared_linker
from medcorpus.transforms.jats import parse_article

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LABELS = ROOT / "tests" / "data" / "concept_mention_labels.jsonl"
MESH = "--no-mesh" not in sys.argv  # the open ontologies alone, as before MeSH was indexed
GENES = "--no-genes" not in sys.argv  # without HGNC's genes and EFO's cell lines


def evaluate() -> dict[str, Counter]:
    labels = [json.loads(line) for line in LABELS.read_text().splitlines()]
    judged = {(r["source"], r["figure"], r["mention"], r["cui"]): r for r in labels}
    linker = shared_linker(str(cached_vocab((str(DATA / "umls" / "open_vocab"),), None, ann=True, mesh=MESH,
                                                  genes=GENES)))
    out: dict[str, Counter] = {"tune": Counter(), "aside": Counter()}
    for source in sorted({r["source"] for r in labels}):
        split = next(r["split"] for r in labels if r["source"] == source)
        figures = {r["figure"] for r in labels if r["source"] == source}
        for fig in parse_article((DATA / source).read_bytes(), fallback_id=source).figures:
            if fig.figure_id not in figures and split == "aside":
                continue
            for c in linker.link((fig.caption_title + " " + fig.caption).strip()):
                r = judged.get((source, fig.figure_id, c.mention, c.cui))
                out[split]["unlabelled" if r is None else "right" if r["correct"] else "wrong"] += 1
    return out


def main() -> None:
    for split, n in evaluate().items():
        judged = n["right"] + n["wrong"]
        print(f"{split}: precision {n['right']}/{judged} = {n['right'] / judged:.3f}, "
              f"unlabelled links {n['unlabelled']}")


if __name__ == "__main__":
    main()
