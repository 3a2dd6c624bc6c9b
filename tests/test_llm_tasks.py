"""Caption cleaning on real captions, task templates, JSON parsing and the subcaption check."""
from __future__ import annotations

import json

import pytest
from testdata import ARTICLES, DATA

from medcorpus.transforms.caption_clean import clean_caption
from medcorpus.transforms.jats import parse_article
from medcorpus.transforms.llm_tasks import (EXTRACT, RECAPTION, TASKS, TaskSpec, extraction_claims_text,
                                            near_substring, parse_json, schema_errors, validate_subcaptions)
from medcorpus.transforms.subcaptions import split_caption


def _medicat():
    return [json.loads(x) for x in (DATA / "compound" / "medicat_sample" / "sample.jsonl").read_text().splitlines()]


def test_clean_removes_labels_citations_and_stray_panels():
    cap = _medicat()[0]["s2_caption"]
    assert cap.startswith("Figure 4.")
    assert clean_caption(cap) == cap[len("Figure 4. "):]
    assert clean_caption("Fig. 2: CT of the chest [3–5] shows a mass (Smith et al., 2010) (A).") == \
        "CT of the chest shows a mass."
    assert clean_caption("Figure 1—figure supplement 2. Tumor growth curves.") == "Tumor growth curves."
    assert clean_caption("(A) Barium enema and (B) endoscopic image.") == "(A) Barium enema and (B) endoscopic image."


def test_clean_keeps_real_captions_intact_apart_from_artefacts():
    """Over every figure of the real PMC packages: cleaning never grows a caption, keeps ≥ 80% of it,
    and leaves no bracketed numeric citation behind."""
    n = 0
    for d in sorted(ARTICLES.iterdir()):
        xml = next((p for p in d.rglob("*") if p.suffix in (".xml", ".nxml") and "manifest" not in p.name.lower()
                    and p.stat().st_size > 5000), None)
        if xml is None:
            continue
        try:
            parsed = parse_article(xml.read_bytes(), fallback_id=d.name)
        except Exception:  # noqa: BLE001 — packages the parser rejects are not this test's subject
            continue
        for fig in parsed.figures:
            if not fig.caption:
                continue
            out = clean_caption(fig.caption)
            assert len(out) <= len(fig.caption) and len(out) >= 0.8 * len(fig.caption) - 20, (fig.caption, out)
            assert "[1]" not in out
            n += 1
    assert n >= 50


def test_template_hashes_are_stable_and_distinct():
    hashes = {t.template_hash() for t in TASKS.values()}
    assert len(hashes) == len(TASKS)
    changed = TaskSpec(RECAPTION.name, RECAPTION.system + " ", RECAPTION.user, True)
    assert changed.template_hash() != RECAPTION.template_hash()
    assert RECAPTION.template_hash() == TaskSpec(RECAPTION.name, RECAPTION.system, RECAPTION.user, True).template_hash()


def test_vision_messages_carry_the_image_as_data_url():
    msgs = RECAPTION.messages({"caption": "CT", "context": ""}, "data:image/png;base64,AAAA")
    assert msgs[1]["content"][0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def test_parse_json_and_schema():
    value = parse_json('Sure!\n```json\n{"modality": "CT", "anatomy": ["liver"], "findings": []}\n```')
    assert schema_errors(value, EXTRACT.json_schema) == []
    assert schema_errors({"modality": "CAT scan", "anatomy": [], "findings": []}, EXTRACT.json_schema)
    with pytest.raises(ValueError):
        parse_json("no json here")
    assert extraction_claims_text({"modality": "CT", "anatomy": ["liver"], "findings": ["cyst"], "stain": None}) \
        == "liver. cyst"


def test_subcaption_check_on_real_compound_captions():
    """Rule splits of the real MedICaT compound captions pass the check; an invented panel text fails."""
    checked = 0
    for rec in _medicat():
        cap = clean_caption(rec["s2_caption"])
        split = split_caption(cap)
        if len(split.labels) < 2:
            continue
        subs = {"subcaptions": [{"label": lab, "text": split.own(lab)} for lab in split.labels]}
        ok, errors = validate_subcaptions(subs, cap)
        assert errors == [] and len(ok) == len(split.labels), (cap, errors)
        bad = {"subcaptions": subs["subcaptions"][:1] + [{"label": "Z", "text": "Histology showing sarcoidosis "
                                                                                 "with granulomas."}]}
        assert any("not from the caption" in e for e in validate_subcaptions(bad, cap)[1])
        dup = {"subcaptions": subs["subcaptions"][:1] * 2}
        assert "duplicate labels" in validate_subcaptions(dup, cap)[1]
        checked += 1
    assert checked >= 2
    assert near_substring("barium  ENEMA", "(A) Barium enema and (B) endoscopic image") == 1.0
