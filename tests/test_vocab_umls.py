"""UMLS release reader on the real RRF samples (scispacy's test fixtures), filters, index round trip."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from concept_fixtures import REPO, UMLS_META

from medcorpus.transforms.vocab_index import VocabIndex, build_index
from medcorpus.transforms.vocab_records import merge_by_cui
from medcorpus.transforms.vocab_umls import UmlsFilters, iter_rrf, iter_umls_concepts
from medcorpus.transforms.text_norm import norm_key


def _rows(name: str) -> list[list[str]]:
    return list(iter_rrf(UMLS_META / name))


def test_reads_every_concept_with_names_types_definition() -> None:
    conso, sty, mrdef = _rows("MRCONSO.RRF"), _rows("MRSTY.RRF"), _rows("MRDEF.RRF")
    concepts = {c.cui: c for c in iter_umls_concepts(UMLS_META)}
    assert set(concepts) == {r[0] for r in conso}
    for r in conso:
        assert r[14] in concepts[r[0]].aliases
        if r[2] == "P" and r[4] == "PF" and r[6] == "Y":
            assert concepts[r[0]].name == r[14]
    for r in sty:
        assert r[1] in concepts[r[0]].tuis
    for r in mrdef:
        assert concepts[r[0]].definition == r[5]


def test_filters_language_source_semantic_type(tmp_path: Path) -> None:
    assert list(iter_umls_concepts(UMLS_META, UmlsFilters(langs=frozenset({"SPA"})))) == []
    assert list(iter_umls_concepts(UMLS_META, UmlsFilters(sabs=frozenset({"NOSUCHSAB"})))) == []
    chem = {c.cui for c in iter_umls_concepts(UMLS_META, UmlsFilters(tuis=frozenset({"T121"})))}
    expected = {r[0] for r in _rows("MRSTY.RRF") if r[1] == "T121"}
    assert chem == expected and chem


def test_drops_suppressed_names(tmp_path: Path) -> None:
    rel = tmp_path / "META"
    shutil.copytree(UMLS_META, rel)
    lines = (rel / "MRCONSO.RRF").read_text().splitlines()
    f = lines[1].split("|")
    f[16] = "O"  # mark the second name obsolete
    lines[1] = "|".join(f)
    (rel / "MRCONSO.RRF").write_text("\n".join(lines) + "\n")
    kept = {c.cui: c for c in iter_umls_concepts(tmp_path)}  # finds META/ inside the release dir
    assert f[14] not in kept[f[0]].aliases
    kept_all = {c.cui: c for c in iter_umls_concepts(tmp_path, UmlsFilters(drop_suppressed=False))}
    assert f[14] in kept_all[f[0]].aliases


def test_index_round_trip_and_scispacy_candidates(tmp_path: Path) -> None:
    from medcorpus.transforms.vocab_index import AnnParams

    meta = build_index(iter_umls_concepts(UMLS_META), tmp_path / "v", {"kind": "umls"},
                       ann_params=AnnParams(m=4, ef_construction=10))
    assert meta["format_version"] == 1 and meta["counts"]["concepts"] == len({r[0] for r in _rows("MRCONSO.RRF")})
    v = VocabIndex.load(tmp_path / "v")
    name = _rows("MRCONSO.RRF")[0][14]
    assert _rows("MRCONSO.RRF")[0][0] in v.key_to_cuis[norm_key(name)]
    cands = v.candidate_generator()([name.lower()], 5)[0]
    assert _rows("MRCONSO.RRF")[0][0] in {c.concept_id for c in cands}


def test_unsorted_release_merges_by_cui() -> None:
    from medcorpus.transforms.vocab_umls import ConsoRow, concept_from_rows, group_by_cui

    rows = [ConsoRow("C1", "ENG", "P", "PF", "Y", "MSH", "MH", "a", "N"),
            ConsoRow("C2", "ENG", "P", "PF", "Y", "MSH", "MH", "b", "N"),
            ConsoRow("C1", "ENG", "S", "PF", "N", "MSH", "ET", "a2", "N")]
    merged = merge_by_cui(concept_from_rows(g, ("T047",), None) for g in group_by_cui(rows))
    assert merged["C1"].aliases == ["a", "a2"] and merged["C1"].name == "a"


def test_synthetic_release_streams(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO))
    from bench.synthetic_rrf import write_release

    shape = write_release(tmp_path, 3000)
    concepts = list(iter_umls_concepts(tmp_path))
    assert 0 < len(concepts) <= shape["cuis"]
    assert all(c.tuis for c in concepts)
