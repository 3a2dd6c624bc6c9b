"""JATS parsing on every real XML file in the shared data, plus hostile constructs."""
from __future__ import annotations

import re
import tarfile
import time

import pytest
from testdata import ARTICLES, BULK, DATA

from medcorpus.schemas.records import SkipError
from medcorpus.transforms.jats import parse_article

NXML = sorted((DATA / "pmc" / "nxml_only").rglob("*.*xml"))


def _all_article_xml() -> list[tuple[str, bytes]]:
    out = [(p.name, p.read_bytes()) for p in NXML if "medline" not in p.name]
    out += [(p.name, p.read_bytes()) for p in ARTICLES.rglob("*.*xml")
            if p.name.lower() not in ("manifest.xml", "transfer.xml", "directives.xml")]
    with tarfile.open(next(BULK.glob("*.tar.gz"))) as tar:
        out += [(m.name, tar.extractfile(m).read()) for m in tar if m.name.endswith(".xml")]
    return out


def test_every_shared_article_parses_with_all_its_figures() -> None:
    docs = _all_article_xml()
    assert len(docs) > 150
    for name, xml in docs:
        parsed = parse_article(xml, fallback_id=name)
        assert len(parsed.figures) == len(re.findall(rb"<fig[\s>]", xml)), name
        assert parsed.article.article_id, name
        assert len({f.key for f in parsed.figures}) == len(parsed.figures), name


def test_a_medline_record_is_not_an_article() -> None:
    medline = next(p for p in NXML if "medline" in p.name)
    with pytest.raises(SkipError) as exc:
        parse_article(medline.read_bytes(), fallback_id="x")
    assert exc.value.reason == "xml_not_jats"


def test_undefined_named_entities_become_their_characters() -> None:
    parsed = parse_article((ARTICLES / "pone.0000010" / "pone.0000010.xml").read_bytes(), fallback_id="x")
    captions = " ".join(f.caption for f in parsed.figures)
    assert "Brasília" in captions
    assert parsed.article.license_code == "CC BY"  # from the copyright statement's wording
    pmed = next(p for p in NXML if p.name == "journal.pmed.0020124.xml")
    text = pmed.read_text(encoding="utf-8")
    assert "&alpha;" in text
    parsed = parse_article(pmed.read_bytes(), fallback_id="x")
    assert parsed.article.pmcid is None or parsed.article.pmcid.startswith("PMC")


def _with_subset(subset: str, caption_extra: str) -> bytes:
    """A real eLife article with an internal DTD subset added (the subset is synthetic)."""
    xml = (ARTICLES / "elife-19405" / "elife-19405.xml").read_text(encoding="utf-8")
    xml = re.sub(r"<\?xml[^>]*\?>\s*", "", xml)
    xml = re.sub(r"<!DOCTYPE[^>]*>\s*", "", xml)
    xml = xml.replace("<caption><title>", f"<caption><title>{caption_extra} ", 1)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE article [\n{subset}\n]>\n{xml}'.encode()


def test_internal_dtd_subset_entities_are_honoured() -> None:
    xml = _with_subset('<!ENTITY stain "H&amp;E stain"> <!ENTITY delta "&#948;">', "&stain; &delta;-wave &beta;")
    fig = parse_article(xml, fallback_id="x").figures[0]
    assert fig.caption_title.startswith("H&E stain δ-wave β")


def test_external_entities_are_never_expanded() -> None:
    xml = _with_subset('<!ENTITY xxe SYSTEM "file:///etc/passwd">', "&xxe;")
    fig = parse_article(xml, fallback_id="x").figures[0]
    assert "root:" not in fig.caption


def test_entity_expansion_bomb_is_refused_quickly() -> None:
    lol = '<!ENTITY a "lollollollollollollollollollol">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    xml = _with_subset(lol, "&j;")
    t0 = time.perf_counter()
    with pytest.raises(SkipError) as exc:
        parse_article(xml, fallback_id="x")
    assert exc.value.reason == "xml_malformed"
    assert time.perf_counter() - t0 < 5


def test_truncated_and_empty_xml() -> None:
    xml = (ARTICLES / "elife-19405" / "elife-19405.xml").read_bytes()
    for bad, reason in ((xml[: len(xml) // 3], "xml_malformed"), (b"", "xml_empty"), (b"   ", "xml_empty")):
        with pytest.raises(SkipError) as exc:
            parse_article(bad, fallback_id="x")
        assert exc.value.reason == reason


def test_mentions_and_supplements_on_elife() -> None:
    parsed = parse_article((ARTICLES / "elife-46793-v1" / "main.jats.xml").read_bytes(), fallback_id="x")
    figs = {f.figure_id: f for f in parsed.figures}
    supplements = [f for f in parsed.figures if f.parent_figure_id]
    assert len(supplements) == 9
    assert all(s.parent_figure_id in figs and figs[s.parent_figure_id].parent_figure_id is None for s in supplements)
    fig1 = figs["fig1"]
    assert fig1.label == "Figure 1." and fig1.caption.startswith(fig1.caption_title)
    assert fig1.mentions and all("Figure 1" in m for m in fig1.mentions)
    assert parsed.article.pmcid is None and parsed.article.doi == "10.7554/eLife.46793"
    assert parsed.article.license_code == "CC BY"
