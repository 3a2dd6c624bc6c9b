"""The faithfulness gate on real captions: planted hallucinations rejected, faithful rewrites accepted."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import typer
from faithful_cases import planted_cases
from typer.testing import CliRunner

from medcorpus.pipelines.commands.llm import faithfulness_stream, register
from medcorpus.transforms.faithfulness import FaithfulnessOptions, check, quantities


@pytest.fixture(scope="module")
def verdicts():
    cases = planted_cases()
    return [(c, check(c.source, c.generated)) for c in cases]


def test_planted_set_accuracy(verdicts):
    per_kind: Counter = Counter()
    right: Counter = Counter()
    for case, v in verdicts:
        per_kind[case.kind] += 1
        right[case.kind] += v.accepted == case.faithful
    assert len(verdicts) >= 200
    faithful = [v.accepted for c, v in verdicts if c.faithful]
    hallucinated = [not v.accepted for c, v in verdicts if not c.faithful]
    assert sum(faithful) / len(faithful) >= 0.95, per_kind
    assert sum(hallucinated) / len(hallucinated) >= 0.95, right
    for kind in ("diagnosis", "measurement", "number", "side", "negation", "empty", "off_topic", "random_tokens",
                 "word_salad"):
        assert right[kind] == per_kind[kind], (kind, right[kind], per_kind[kind])
    assert right["morphology"] >= per_kind["morphology"] - 2, (right["morphology"], per_kind["morphology"])


def test_both_splits_hold(verdicts):
    """The aside split (never looked at while tuning) holds the same floor as the tune split."""
    for split in ("tune", "aside"):
        faithful = [v.accepted for c, v in verdicts if c.faithful and c.split == split]
        other = [not v.accepted for c, v in verdicts if not c.faithful and c.split == split]
        assert len(faithful) >= 20 and sum(faithful) / len(faithful) >= 0.9, split
        assert sum(other) / len(other) >= 0.9, split


def test_rejections_name_the_unsupported_claim(verdicts):
    for case, v in verdicts:
        if case.kind == "diagnosis":
            assert any(u.split(":", 1)[0] in ("disease", "phenotype") for u in v.unsupported), (case.id, v)
        if case.kind == "measurement":
            assert "number:4.2 cm" in v.unsupported


SRC = "Chest X-ray showing right upper lobe cavitation due to pulmonary tuberculosis and no pleural effusion."


@pytest.mark.parametrize("generated, accepted", [
    ("Radiograph of the chest: cavitation of the right upper lobe from pulmonary TB; no pleural effusion.", True),
    ("Chest radiograph with left upper lobe cavitation due to pulmonary tuberculosis.", False),
    ("Chest X-ray showing right upper lobe cavitation due to pulmonary tuberculosis with a pleural effusion.", False),
    ("Chest X-ray showing right upper lobe cavitation due to lung cancer.", False),
    ("Chest X-ray showing a 3 cm right upper lobe cavity due to pulmonary tuberculosis.", False),
])
def test_synonyms_abbreviations_negation_laterality(generated, accepted):
    assert check(SRC, generated).accepted is accepted


def test_bleeding_hemorrhage_and_units():
    src = "Non-contrast CT shows an intracerebral haemorrhage measuring 3 cm in the left basal ganglia."
    assert check(src, "CT demonstrating a 30 mm intracerebral bleeding in the left basal ganglia.").accepted
    assert not check(src, "CT demonstrating a 40 mm intracerebral bleeding in the left basal ganglia.").accepted
    assert [q.base for q in quantities("5 mm and 0.5 cm")] == [5.0, 5.0]


def test_abbreviation_defined_in_source_counts_as_support():
    src = "CT angiography shows a saddle embolus consistent with acute pulmonary embolism (PE)."
    assert check(src, "CTA: saddle embolus, acute PE.").accepted


def test_output_without_content_rejected():
    """Nothing to check is not the same as faithful: empty, contentless, off-topic and random-weight
    model text are refused with the requirement they miss."""
    assert not check(SRC, "").accepted
    v = check(SRC, "An image.")
    assert not v.accepted and v.score == 1.0 and v.unsupported == ["content:no_content_words"]
    v = check(SRC, "detected t technique bodies fistulography mouse lens velocity quantile")
    assert not v.accepted and any(u.startswith("content:off_topic") for u in v.unsupported)
    v = check(SRC, "Chest X-ray upper lobe tuberculosis right of the the pulmonary and cavitation due to of")
    assert not v.accepted and any(u.startswith("content:fluency") for u in v.unsupported)


def test_a_shuffle_of_the_captions_own_words_is_rejected():
    """Each pair of a shuffled caption may read as English somewhere, so the bigram table passes it;
    against the source, its words are out of order (a real ROCO caption)."""
    src = "Post mortem CT shows hydrocephalus (asterisk) and multicystic encephalomalacia (arrow)"
    salad = "Post hydrocephalus encephalomalacia shows (asterisk) mortem multicystic (arrow) CT and"
    v = check(src, salad)
    assert not v.accepted and any(u.startswith("content:scrambled") for u in v.unsupported), v
    rewrite = "Post-mortem CT showing hydrocephalus (asterisk) and multicystic encephalomalacia (arrow)."
    assert check(src, rewrite).accepted
    assert check(src, salad, FaithfulnessOptions(min_source_order=None)).accepted  # the check alone rejected it


@pytest.mark.parametrize("source, generated", [
    ("Left subclavian arteriography demonstrating a thrombosed brachial artery at the mid-humeral level.",
     "Left subclavian arteriogram showing thrombosis of the brachial artery at the mid-humeral level."),
    ("MRI after more than one year of antituberculosis therapy showing intact growth plates.",
     "MRI showing intact growth plates after over a year of anti-TB therapy."),
    ("Transoesophageal echocardiogram demonstrating a mass of the left ventricular outflow tract.",
     "Transesophageal echocardiography showing a mass in the outflow tract of the left ventricle."),
    ("Computerized tomography reveals dilated intrahepatic biliary ducts.",
     "Computed tomography revealing dilatation of the intrahepatic bile ducts."),
])
def test_word_forms_of_one_concept_support_each_other(source, generated):
    v = check(source, generated)
    assert v.accepted, v.unsupported


def test_disease_suffix_is_not_a_word_form():
    """hepatic is not hepatitis: a disease-forming suffix keeps its meaning."""
    v = check("Contrast-enhanced CT showing a hepatic lesion.", "Contrast-enhanced CT showing hepatitis.")
    assert not v.accepted and "disease:hepatitis" in v.unsupported


def test_linker_cuis_support_and_reject():
    """A concept linker (text → concepts with .cui) adds CUI matching; dicts work like Concept objects."""
    lexicon = {"cardiac event": "C0027051", "myocardial infarction": "C0027051", "sarcoidosis": "C0036202"}

    def linker(text):
        low = text.lower()
        return [{"cui": cui, "start": low.find(t), "end": low.find(t) + len(t), "group": "DISO", "negated": False}
                for t, cui in lexicon.items() if t in low]

    src = "Coronary angiogram of a patient after a myocardial infarction."
    paraphrase = "Coronary angiogram after a cardiac event."
    assert check(src, paraphrase, linker=linker).accepted
    assert not check(src, paraphrase).accepted  # without the linker "cardiac event" is not recognised
    v = check(src, "Coronary angiogram after a cardiac event, with sarcoidosis.", linker=linker)
    assert not v.accepted and "disease:sarcoidosis" in v.unsupported


def test_cli_reads_and_writes_json_lines():
    app = typer.Typer()
    register(app)

    @app.command()
    def _noop() -> None:  # a second command keeps typer in multi-command mode
        pass

    lines = [json.dumps({"id": "a", "source": SRC, "generated": "CXR: right upper lobe cavitation, pulmonary TB."}),
             json.dumps({"id": "b", "source": SRC, "generated": "CXR: left upper lobe cavitation."}), "not json"]
    res = CliRunner().invoke(app, ["faithfulness"], input="\n".join(lines) + "\n")
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in res.stdout.splitlines()]
    assert [o.get("id") for o in out] == ["a", "b", None]
    assert out[0]["accepted"] is True and out[0]["unsupported"] == [] and out[0]["score"] == 1.0
    assert out[1]["accepted"] is False and "laterality:left" in out[1]["unsupported"]
    assert set(out[0]) == {"id", "score", "accepted", "unsupported"} and "error" in out[2]
    assert list(faithfulness_stream([lines[0]], FaithfulnessOptions()))[0] == out[0]


def test_compounds_and_function_words_under_negation():
    """Real ROCO captions: "CT-scan" supports "CT"; "non-contrast" does not support contrast; a
    preposition inside a negation's reach ("no ... after") is not a flipped claim."""
    src = "CT-scan of the abdomen: This image shows an oval umbilical mass measured 2 cm."
    assert check(src, "An oval umbilical mass measuring 2 cm on CT of the abdomen.").accepted
    v = check("Non-contrast CT of the head showing a right subdural hematoma.",
              "Contrast CT of the head showing a right subdural hematoma.")
    assert not v.accepted, v
    src = "CT scan portal phase. After contrast enhancement, there was no enhancing portion of the lesion."
    rewrite = "No enhancing portion of the lesion after contrast enhancement on the portal phase CT scan."
    assert check(src, rewrite).accepted
