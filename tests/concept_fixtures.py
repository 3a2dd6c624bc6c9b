"""Shared, cached test data for the concept-mapping tests (real files from ../shared/data; never holdout).

Indexes are built once per test process (``functools.cache``) from small real ontology files with a
small HNSW, so the whole concept suite stays fast.
"""
from __future__ import annotations

import os
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDCORPUS_SHARED", REPO / ".." / "shared")) / "data"
UMLS_META = DATA / "umls" / "scispacy_fixtures" / "umls_META"
OPEN_VOCAB = DATA / "umls" / "open_vocab"
ROCO = DATA / "evalsets" / "roco_test"
MEDMENTIONS = DATA / "umls" / "scispacy_fixtures" / "med_mentions.txt"

# Disease Ontology (labels + synonyms), Symptom Ontology, Uberon EFO slim (organs).
TEST_ONTOLOGIES = (
    OPEN_VOCAB / "doid" / "doid-2018-07-05.json.gz",
    OPEN_VOCAB / "symp" / "symp.obo",
    OPEN_VOCAB / "uberon" / "efo-slim.obo",
)


@cache
def open_vocab_dir(tmp_root: str) -> Path:
    from medcorpus.transforms.vocab_index import AnnParams, build_index
    from medcorpus.transforms.vocab_ontology import open_vocab_concepts

    out = Path(tmp_root) / "open_vocab"
    records = open_vocab_concepts(TEST_ONTOLOGIES)
    build_index(records.values(), out, {"files": [str(p) for p in TEST_ONTOLOGIES]}, tuis_inferred=True,
                ann_params=AnnParams(m=8, ef_construction=40, ef_search=50))
    return out


@cache
def linker(tmp_root: str, **kw):  # type: ignore[no-untyped-def]
    from medcorpus.transforms.concepts import ConceptLinker

    return ConceptLinker.load(open_vocab_dir(tmp_root), **kw)


def read_roco_captions(n: int) -> list[tuple[str, str, set[str]]]:
    import sys

    sys.path.insert(0, str(REPO))
    from bench.concept_eval import read_roco

    return read_roco("radiology")[:n]
