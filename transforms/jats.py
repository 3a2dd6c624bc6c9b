"""Parse JATS / PMC / publisher XML into an Article and its Figures.

Safety: parsing never touches the network, never loads external DTDs and never expands external
entities. Named entities that a document uses without defining (``&delta;`` in old PLOS files) are
replaced by character references (``&#948;``) before parsing, which mean the same character in
every encoding the document may declare (ISO-8859-1, windows-1252 ...); a UTF-16 or UTF-32 document
is first re-encoded as UTF-8 (its declaration with it). Entities defined in the document's own
internal DTD subset are left to the XML parser, as the document asks.
"""
from __future__ import annotations

import codecs
import html.entities
import re
from dataclasses import dataclass
from typing import Iterable

from lxml import etree

from medcorpus.schemas.records import Article, Figure, Graphic, SkipError
from medcorpus.transforms.keys import figure_key
from medcorpus.transforms.licenses import resolve_license
from medcorpus.transforms.text import normalize_text

_XML_ENTITIES = {"lt", "gt", "amp", "quot", "apos"}
_ENTITY_REF = re.compile(rb"&([A-Za-z][A-Za-z0-9._-]*);")
# internal (literal-valued) general entities only: external ones (SYSTEM/PUBLIC) are dropped like undefined ones
_SUBSET_ENTITY = re.compile(rb"<!ENTITY\s+(?!%)([A-Za-z][A-Za-z0-9._-]*)\s+[\"']")
_DOCTYPE_SUBSET = re.compile(rb"<!DOCTYPE[^\[>]*\[(.*?)\]\s*>", re.S)
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False,
    remove_comments=True, remove_pis=True,
)
_PARSER_INTERNAL = etree.XMLParser(
    resolve_entities="internal", no_network=True, load_dtd=False, dtd_validation=False,
    huge_tree=False, remove_comments=True, remove_pis=True,
)


@dataclass
class ParsedArticle:
    article: Article
    figures: list[Figure]


def _replace_undefined_entities(xml: bytes, defined: set[bytes]) -> bytes:
    def sub(m: re.Match[bytes]) -> bytes:
        name = m.group(1)
        if name.decode() in _XML_ENTITIES or name in defined:
            return m.group(0)
        chars = html.entities.html5.get(name.decode() + ";", "")
        return "".join(f"&#{ord(c)};" for c in chars).encode("ascii")

    return _ENTITY_REF.sub(sub, xml)


_WIDE = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"), (b"<\0\0\0", "utf-32-le"), (b"\0\0\0<", "utf-32-be"),
         (b"<\0?\0", "utf-16-le"), (b"\0<\0?", "utf-16-be"))
_DECLARED_ENCODING = re.compile(rb"^(<\?xml[^>]*?encoding\s*=\s*[\"'])[^\"']*([\"'])")


def wide_codec(xml: bytes) -> str | None:
    """The codec of a UTF-16/32 document (by its BOM or its first ``<``); None for any other."""
    return next((codec for start, codec in _WIDE if xml.startswith(start)), None)


def _ascii_compatible(xml: bytes) -> bytes:
    """A UTF-16/32 document as UTF-8 with its declaration saying so; any other document as it is."""
    codec = wide_codec(xml)
    if codec is None:
        return xml
    try:
        text = xml.decode(codec).lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise SkipError("xml_malformed", f"not valid {codec.upper()}: {exc}") from None
    return _DECLARED_ENCODING.sub(rb"\1UTF-8\2", text.encode("utf-8"), count=1)


def parse_xml(xml: bytes) -> etree._Element:
    """Parse bytes into a namespace-free element tree, or raise SkipError('xml_malformed')."""
    if not xml or not xml.strip():
        raise SkipError("xml_empty", "the article XML is empty")
    xml = _ascii_compatible(xml)
    subset = _DOCTYPE_SUBSET.search(xml[:200_000])
    defined = set(_SUBSET_ENTITY.findall(subset.group(1))) if subset else set()
    xml = _replace_undefined_entities(xml, defined)
    try:
        root = etree.fromstring(xml, _PARSER_INTERNAL if defined else _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SkipError("xml_malformed", str(exc)) from None
    if root is None:
        raise SkipError("xml_malformed", "no root element")
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag[0] == "{":
            el.tag = el.tag.split("}", 1)[1]
    _formulas_as_text(root)
    return root


_TEX_BODY = re.compile(r"\\begin\{document\}(.*?)\\end\{document\}", re.S)


def _formulas_as_text(root: etree._Element) -> None:
    """A formula reads as its MathML text (``μg/mL``) where ``<alternatives>`` has one, else as its TeX
    without the LaTeX preamble (``\\documentclass ... \\begin{document}``) publishers wrap it in."""
    for tex in list(root.iter("tex-math")):
        parent = tex.getparent()
        if parent is not None and parent.tag == "alternatives" and parent.find("math") is not None:
            _drop(tex)
        elif tex.text and (body := _TEX_BODY.search(tex.text)):
            tex.text = body.group(1).strip().strip("$").strip()


def _drop(el: etree._Element) -> None:
    """Remove an element, keeping the text that follows it."""
    parent, prev = el.getparent(), el.getprevious()
    if el.tail:
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _text(el: etree._Element | None) -> str:
    if el is None:
        return ""
    return normalize_text("".join(el.itertext()))


def _attr(el: etree._Element, name: str) -> str | None:
    """An attribute by local name, whatever namespace prefix (xlink:href, href)."""
    for key, value in el.attrib.items():
        if key == name or key.endswith("}" + name):
            return value
    return None


def _first(el: etree._Element, paths: Iterable[str]) -> etree._Element | None:
    for path in paths:
        found = el.find(path)
        if found is not None:
            return found
    return None


def _article_ids(meta: etree._Element) -> dict[str, str]:
    ids: dict[str, str] = {}
    for aid in meta.findall("article-id"):
        kind = (aid.get("pub-id-type") or "").lower()
        value = (aid.text or "").strip()
        if value and kind not in ids:
            ids[kind] = value
    return ids


def _pmcid(ids: dict[str, str]) -> str | None:
    for kind in ("pmcid", "pmc", "pmc-uid"):
        if kind in ids:
            digits = re.sub(r"\D", "", ids[kind])
            return f"PMC{digits}" if digits else None
    return None


def _year(meta: etree._Element) -> int | None:
    dates = meta.findall("pub-date")
    ranked = sorted(dates, key=lambda d: 0 if (d.get("pub-type") or d.get("date-type")) in ("epub", "pub") else 1)
    for d in ranked:
        y = (d.findtext("year") or "").strip()
        if y.isdigit():
            return int(y)
    return None


def _license(meta: etree._Element, metadata_code: str | None) -> tuple[str, str | None]:
    perms = meta.find("permissions")
    url = text = None
    if perms is not None:
        lic = perms.find("license")
        if lic is not None:
            url = _attr(lic, "href")
            ref = lic.find(".//license_ref")
            if ref is not None and ref.text:
                url = url or ref.text.strip()
            text = _text(lic)
    # JATS 2.x and some publishers put the statement directly in <article-meta>
    statement = _text(_first(meta, ["permissions/copyright-statement", "copyright-statement"]))
    text = " ".join(t for t in (text, statement) if t) or None
    return resolve_license(metadata_code, url, text), url


def _version(meta: etree._Element, default: int) -> int:
    v = (meta.findtext("article-version") or "").strip()
    return int(v) if v.isdigit() else default


def parse_article_meta(root: etree._Element, *, fallback_id: str, version: int = 1,
                       metadata_license: str | None = None, pmcid: str | None = None) -> Article:
    """``pmcid`` is the source's own id for the article, used when the XML carries none."""
    meta = _first(root, ["front/article-meta", ".//article-meta", "front-stub"])
    if meta is None:
        raise SkipError("xml_not_jats", f"root <{root.tag}> has no <article-meta>")
    ids = _article_ids(meta)
    pmcid = _pmcid(ids) or pmcid
    doi = ids.get("doi")
    code, url = _license(meta, metadata_license)
    journal = _first(root, ["front/journal-meta/journal-title-group/journal-title",
                            "front/journal-meta/journal-title", ".//journal-title"])
    journal_text = _text(journal) or (root.findtext("front/journal-meta/journal-id") or "").strip() or None
    return Article(
        article_id=pmcid or doi or ids.get("publisher-id") or ids.get("manuscript") or fallback_id,
        pmcid=pmcid,
        pmid=ids.get("pmid"),
        doi=doi,
        version=_version(meta, version),
        journal=journal_text,
        year=_year(meta),
        title=_text(meta.find("title-group/article-title")) or None,
        article_type=root.get("article-type"),
        license_code=code,
        license_url=url,
        keywords=[_text(k) for k in meta.findall(".//kwd-group/kwd") if _text(k)],
    )


def _graphics(fig: etree._Element) -> list[Graphic]:
    out = []
    for g in fig.iter("graphic"):
        href = _attr(g, "href")
        if href:
            out.append(Graphic(href=href.strip(), specific_use=g.get("specific-use")))
    return out


def _mentions(root: etree._Element) -> dict[str, list[str]]:
    """Paragraphs citing each figure id, in document order, each paragraph once per figure."""
    by_fig: dict[str, list[str]] = {}
    for xref in root.iter("xref"):
        if xref.get("ref-type") != "fig":
            continue
        para = xref
        while para is not None and para.tag != "p":
            para = para.getparent()
        if para is None or any(a.tag in ("caption", "fig") for a in para.iterancestors()):
            continue
        text = _text(para)
        for rid in (xref.get("rid") or "").split():
            paras = by_fig.setdefault(rid, [])
            if text and text not in paras:
                paras.append(text)
    return by_fig


def _parent_figure_id(fig: etree._Element) -> str | None:
    """Figure supplements (eLife fig-groups, child-figs) link to the group's first figure."""
    group = fig.getparent()
    if group is None or group.tag != "fig-group":
        return None
    first = group.find("fig")
    if first is None or first is fig:
        return None
    return first.get("id")


def parse_figures(root: etree._Element, article: Article) -> list[Figure]:
    mentions = _mentions(root)
    figures = []
    for position, fig in enumerate(root.iter("fig")):
        fig_id = fig.get("id") or f"fig{position + 1}"
        caption_el = fig.find("caption")
        title = _text(caption_el.find("title")) if caption_el is not None else ""
        paras = [_text(p) for p in caption_el.findall("p")] if caption_el is not None else []
        caption = normalize_text(" ".join([title] + paras)) if caption_el is not None else ""
        if caption_el is not None and not caption:
            caption = _text(caption_el)
        figures.append(Figure(
            figure_id=fig_id,
            key=figure_key(article.article_id, article.version, fig_id),
            label=_text(fig.find("label")) or None,
            caption_title=title,
            caption=caption,
            mentions=mentions.get(fig_id, []),
            graphics=_graphics(fig),
            parent_figure_id=_parent_figure_id(fig),
            position=position,
        ))
    return figures


def parse_article(xml: bytes, *, fallback_id: str, version: int = 1,
                  metadata_license: str | None = None, pmcid: str | None = None) -> ParsedArticle:
    root = parse_xml(xml)
    article = parse_article_meta(root, fallback_id=fallback_id, version=version,
                                 metadata_license=metadata_license, pmcid=pmcid)
    figures = parse_figures(root, article)
    article.n_figures = len(figures)
    return ParsedArticle(article=article, figures=figures)
