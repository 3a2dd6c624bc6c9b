"""The linker on real vocabularies and real ROCO captions: spans, negation, abbreviations, plurals, NER path."""
from __future__ import annotations

from pathlib import Path

import pytest
from concept_fixtures import linker as cached_linker
from concept_fixtures import open_vocab_dir, read_roco_captions

from medcorpus.transforms.concepts import Concept, ConceptLinker, concept_hints
from medcorpus.transforms.text_norm import norm_key


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def linker(root: str) -> ConceptLinker:
    return cached_linker(root)


def cuis_of(linker: ConceptLinker, alias: str) -> set[str]:
    return set(linker.vocab.key_to_cuis.get(norm_key(alias), ()))


def test_spans_point_into_the_text(linker: ConceptLinker) -> None:
    text = "Axial CT shows a large pneumothorax and hepatic cysts in the liver."
    concepts = linker.link(text)
    assert concepts
    for c in concepts:
        assert text[c.start:c.end] == c.mention
        assert c.cui in linker.vocab.concepts and c.name == linker.vocab.concepts[c.cui].name
        assert 0 < c.score <= 1


def test_negation(linker: ConceptLinker) -> None:
    target = cuis_of(linker, "pneumothorax")
    neg = [c for c in linker.link("Chest radiograph: no evidence of pneumothorax.") if c.cui in target]
    pos = [c for c in linker.link("Chest radiograph showing a large pneumothorax.") if c.cui in target]
    assert neg and all(c.negated for c in neg)
    assert pos and not any(c.negated for c in pos)


def test_plural_and_case(linker: ConceptLinker) -> None:
    one = {c.cui for c in linker.link("A hepatic cyst.")}
    many = {c.cui for c in linker.link("Multiple HEPATIC CYSTS.")}
    assert one and one == many


def test_abbreviation_defined_in_text(linker: ConceptLinker) -> None:
    tb = cuis_of(linker, "tuberculosis")
    assert tb
    text = "Pulmonary tuberculosis (TB) in a child. Follow-up CT shows TB cavities."
    tb_mentions = [c for c in linker.link(text) if c.mention == "TB"]
    assert len(tb_mentions) == 2 and all(c.cui in tb for c in tb_mentions)


def test_undefined_short_forms_and_ambiguous_strings_are_not_matched(linker: ConceptLinker) -> None:
    short = [k for k in linker.vocab.key_to_cuis if len(k) <= 3 and k.isalpha()]
    assert short, "the vocabulary has short aliases (abbreviations)"
    text = "Findings: " + ", ".join(k.upper() for k in short[:40]) + "; CT and MRI were normal."
    assert [c for c in linker.link(text) if len(c.mention) <= 3] == []


def test_stop_words_never_mentions(linker: ConceptLinker) -> None:
    from spacy.lang.en.stop_words import STOP_WORDS

    assert not [k for k in linker.matcher.keys if k in STOP_WORDS]


def test_compound_mentions_give_head_and_site(linker: ConceptLinker) -> None:
    kidney = cuis_of(linker, "kidney")
    assert kidney
    got = linker.link("Renal cell carcinoma of the right kidney.")
    assert any(c.cui in kidney for c in got), [(c.mention, c.name) for c in got]
    longest = max(got, key=lambda c: c.end - c.start)
    assert all(longest.start <= c.start and c.end <= longest.end for c in got if c.score < longest.score)


def test_link_many_equals_link(linker: ConceptLinker) -> None:
    texts = [t for _, t, _ in read_roco_captions(30)]
    assert [[c.to_dict() for c in cs] for cs in linker.link_many(texts)] == \
        [[c.to_dict() for c in linker.link(t)] for t in texts]


def test_roco_captions_beat_plain_lookup(linker: ConceptLinker) -> None:
    """On real ROCO captions (gold restricted to the vocabulary) the linker beats plain longest match."""
    from bench.concept_eval import baseline_linker, score

    docs = read_roco_captions(400)
    known = set(linker.vocab.concepts)
    gold = [g & known for _, _, g in docs]
    assert sum(map(len, gold)) > 100
    ours = score([{c.cui for c in cs} for cs in linker.link_many([t for _, t, _ in docs])], gold)
    base_link = baseline_linker(linker.vocab)
    base = score([base_link(t) for _, t, _ in docs], gold)
    assert ours["micro"]["f1"] > base["micro"]["f1"]
    assert ours["micro"]["precision"] > base["micro"]["precision"]
    assert ours["tp"] > 0.3 * sum(map(len, gold))


def test_ner_model_path_links_through_scispacy_ann(root: str, tmp_path: Path) -> None:
    """A configured local NER pipeline supplies mentions; a misspelled one is linked by the ANN index."""
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "ENTITY", "pattern": "pneumothorx"}, {"label": "ENTITY", "pattern": "liver"}])
    nlp.to_disk(tmp_path / "ner")
    lk = ConceptLinker.load(open_vocab_dir(root), ner_model=str(tmp_path / "ner"), ann_threshold=0.6)
    got = {c.mention: c for c in lk.link("Large pneumothorx; the liver is normal.")}
    assert got["pneumothorx"].cui in cuis_of(lk, "pneumothorax") and got["pneumothorx"].score < 1.0
    assert got["liver"].cui in cuis_of(lk, "liver") and got["liver"].score == 1.0


def test_concept_hints(linker: ConceptLinker) -> None:
    hints = concept_hints(linker.link("Enhancing mass in the liver and the left lung."))
    assert set(hints["anatomy"]) == {"abdomen", "chest"}
    ct = Concept("C0", "X-Ray Computed Tomography", ["T060"], "PROC", "CT", 0, 2, 1.0)
    he = {"cui": "C1", "name": "Hematoxylin and eosin stain method", "group": "PROC", "negated": False}
    assert concept_hints([ct, he])["modality"] == ["ct", "histology"]
    neg = Concept("C2", "liver", ["T023"], "ANAT", "liver", 0, 5, 1.0, negated=True)
    assert concept_hints([neg]) == {"anatomy": [], "modality": []}


def test_fallback_negation_without_medspacy(root: str) -> None:
    lk = cached_linker(root)
    from medcorpus.transforms.concepts import _negex

    text = "No evidence of pneumothorax but a large effusion."
    assert _negex(text, text.index("pneumothorax"))
    assert not _negex(text, text.index("effusion"))
    assert lk.context is not None  # medspacy is installed in this venv: ConText is the one in use


def test_shared_linker_is_loaded_once_per_process(root: str) -> None:
    from medcorpus.transforms.concepts import shared_linker

    path = str(open_vocab_dir(root))
    assert shared_linker(path) is shared_linker(path)


@pytest.mark.parametrize("caption, expected", [
    ("TDM cervicale en coupe axiale", ["ct"]),
    ("Transthoracic echocardiography showing severe MR (arrow).", ["ultrasound"]),
    ("Axial T2-weighted MR image of the brain.", ["mri"]),
    ("Abdominal US showing a hypoechoic mass.", ["ultrasound"]),
    ("H&E staining, original magnification x200.", ["histology"]),
    ("Kaplan-Meier survival curves of the two groups.", ["chart"]),
    ("Coronal image of the pelvis.", ["radiology"]),
    ("Growth of the cells after siRNA transfection.", []),
    # no modality named: read from the signs (real ROCO captions)
    ("T1WI shows hyperintense mass in the region of foramen of Monro extending superiorly into the frontal lobe",
     ["mri"]),
    ("The right kidney appeared to contain a tubular structure with a hypoecogenic wall", ["ultrasound"]),
    ("Mass with attenuation of 60HU that extends from postoperative bed to the perinephric space.", ["ct"]),
    ("Infiltration over bilateral lung fields.", ["xray"]),
    ("Octreotide scanning of the patient revealed 'hot-spots' in the liver (arrow).", ["spect"]),
    ("Esophagram 18 months after surgery depicting a patent lumen.", ["fluoroscopy"]),
    # contrast studies and dental films named by their own words (real ROCO captions)
    ("Lateral cephalogram showing maxillary hypoplasia, mandibular pseudo-prognathism and reverse overjet, and "
     "overbite", ["xray"]),
    ("Panorex showed severe alveolar resorption of #17 (circle).", ["xray"]),
    ("Endoscopic retrograde cholangiopancreatography showing obstruction of the pancreatic duct",
     ["endoscopy", "fluoroscopy"]),
    ("Ventriculogram (Diastole).", ["angiography"]),
    ("Pre-repair bronchogram demonstrating the string-like long-segment tracheal stenosis down to the carina.",
     ["fluoroscopy"]),
    ("Contrast-enhanced computed tomography chest showing bilateral infiltrates with air bronchogram on the right side",
     ["ct"]),  # an air bronchogram is a sign on CT or X-ray, not a contrast study
    ("Pre-operative.", []),
    # more signs, other languages' names and abbreviations (real ROCO captions)
    ("Coupe scannographique axiale montrant la disparition complète du processus tumoral", ["ct"]),
    ("Angioscan showing the saccular aneurysms", ["ct"]),
    ("HD Flow image of a true umbilical knot", ["ultrasound"]),
    ("Chest PA taken on hospital day 4 indicated marked improvement of lung infiltration.", ["xray"]),
    ("Escape of radiopaque material indicated by the arrow.", ["xray"]),
    ("Band slippage to the body of the stomach on RTG", ["xray"]),
    ("Postoperative panorama view.", ["xray"]),
    ("Oral Gastrografin study on day 8 postoperatively.", ["fluoroscopy"]),
    ("Upper GI study showing no evidence of leak.", ["fluoroscopy"]),
    ("Radiological control of deployed SEMS.", ["radiology"]),
    ("Radiographie du thorax: élargissement du médiastin, IMT 0, 4", ["xray"]),  # IMT: the mediastinal index
])
def test_caption_modality_hints(caption: str, expected: list[str]) -> None:
    """Modality hints come from the caption's own words and abbreviations (with their case), and where it
    names none from the signs a radiologist reads it from; no sign, no hint."""
    assert concept_hints([], caption)["modality"] == expected


def test_modality_hints_on_roco_radiology_captions() -> None:
    from testdata import roco_captions

    from medcorpus.transforms.concept_hints import RADIOLOGY, caption_modalities

    captions = roco_captions(400)
    share = sum(bool(caption_modalities(c) & RADIOLOGY) for c in captions) / len(captions)
    assert share >= 0.75, share


@pytest.mark.parametrize("text, wrong", [
    ("Sampling sites at Ahus and Karkar islands.", "hemolytic"),  # a place, not aHUS
    ("Mean diameter at breast height (DBH) of the trees.", "breast"),  # forestry
])
def test_no_medical_concept_outside_medicine(linker: ConceptLinker, text: str, wrong: str) -> None:
    assert not any(wrong in c.name.lower() for c in linker.link(text))


def test_case_patterned_abbreviations_and_other_fields_phrases() -> None:
    """aHUS, BRCA1, HT1080 are abbreviations (matched only as spelt); "breast height" is skipped whole."""
    from medcorpus.transforms.concept_matcher import VocabMatcher, _is_case_pattern_abbreviation

    assert all(_is_case_pattern_abbreviation(s, 5) for s in ("aHUS", "TB", "BRCA1", "HT1080"))
    assert not any(_is_case_pattern_abbreviation(s, 5) for s in ("Ahus", "breast", "Lung"))
    m = VocabMatcher({"breast": ("C1",), "ahus": ("C2",)}, {"ahus": {"aHUS"}})
    assert m.match_tokens("diameter at breast height".split()) == []
    assert [x.key for x in m.match_tokens("breast MRI".split())] == ["breast"]
    assert m.match_tokens("at Ahus Island".split()) == [] and m.match_tokens("with aHUS".split())


def test_concepts_stage_links_each_distinct_text_once(root: str, linker: ConceptLinker) -> None:
    """Panels share their figure's citing paragraph, reprints share captions: the stage links each
    distinct text once per worker and gives every sample what linking it alone gives, in dicts of its own."""
    from dataclasses import replace

    from testdata import REPO

    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.stages import REGISTRY, WorkerEnv
    from medcorpus.schemas.concepts import concept_dicts
    from medcorpus.schemas.records import Sample

    config = replace(load_config(REPO / "dataflow.yaml"), stages=("fetch", "parse", "image", "concepts"))
    stage = REGISTRY["concepts"](config, WorkerEnv(None, prepared={"concepts": str(open_vocab_dir(root))}))  # type: ignore[arg-type]
    stage.setup()
    caption = "Axial CT of the chest shows a large pneumothorax and hepatic cysts in the liver."
    paragraph = "The patient had no evidence of lung carcinoma; the kidney was normal (Fig 1)."
    samples = [Sample(key=f"k{i}", image=b"", image_format="jpg", width=1, height=1, orig_width=1, orig_height=1,
                      image_sha256="", text=caption, document_id=f"a{i}", license_code="CC BY",
                      license_family="comm", source="pmc", context=[paragraph]) for i in range(3)]
    out = [s for sample in samples for s in stage.process(sample)]
    expected = concept_dicts(linker.link(caption))
    assert expected and all(s.extra["concepts"] == expected for s in out)
    assert all(s.extra["context_concepts"] == concept_dicts(linker.link(paragraph)) for s in out)
    assert out[0].modality == concept_hints(linker.link(caption), caption)["modality"]
    assert stage.caption.cache_info().misses == stage.paragraph.cache_info().misses == 1
    out[0].extra["concepts"][0]["tuis"].append("T000")  # a later stage editing one row changes no other
    assert out[1].extra["concepts"] == expected
