"""Free-text de-identification: names, dates, identifiers, phone numbers, e-mail addresses, street
addresses and ages over 89 become placeholders (``[NAME]``, ``[DATE]``, ``[ID]``, ``[PHONE]``,
``[EMAIL]``, ``[ADDRESS]``, ``[AGE]``).

A rule set rather than a statistical recognizer: the spaCy models presidio-analyzer needs for
names (en_core_web_*) are not installed here, and scispaCy's biomedical NER has no PERSON label.
Rules see what reports write around identifiers (titles and credentials around names, "dictated
by", "MRN:", "accession", date and phone formats, street suffixes), and every number of six or
more digits counts as an identifier (reports measure in millimetres and percent, never with six
digits). Names without a cue (a bare "Smith" in prose) are the known gap; ``bench/deid_eval.py``
measures recall on identifiers planted in real reports and the false positive rate on them.
Placeholders a de-identified dataset already carries (``XXXX``, ``___``, ``[**...**]``) are kept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_PLACEHOLDER = r"(?:X{2,}|_{2,}|\[\*\*[^\]]*\*\*\])"
_NAME_WORD = r"\b(?!" + _PLACEHOLDER + r"\b|(?i:on|at|by|and|the|of|to|in|with|for|no|not)\b)(?:[A-Z][a-zA-Z'\-]+|[A-Z]\.?(?=[\s,]))"
_NAME = _NAME_WORD + r"(?:[ \t]+" + _NAME_WORD + r"){0,2}"
_LOWER_NAME = r"(?!(?:the|and|or|to|of|in|on|at|for|with|by|was|is|who)\b|" + _PLACEHOLDER + r")[a-z][a-z'\-]+"
_TITLE = r"\b(?i:dr|doctor|mr|mrs|ms|miss|prof|professor)\b\.?"
_CUE = (r"\b(?i:(?:dictated|signed|reviewed|read|discussed|communicated|reported|notified|paged|called|"
        r"d/w|seen|examined|referred|attending|radiologist|resident|physician|nurse|technologist|tech|patient|pt)"
        r"(?:\s+(?:by|with|to|from|on))?)\s*:?")
_CREDENTIAL = r"(?:,?\s+(?:M\.?D\.?|Ph\.?D\.?|MBBS|FRCR)|,\s*(?:D\.?O\.?|R\.?N\.?|N\.?P\.?|P\.?A\.?-?C?|RT\(R\)))(?![\w])"
_ID_LABEL = (r"\b(?:mrn|mr\s*#|medical\s+record\s*(?:number|no\.?|#)?|acc(?:ession)?\s*(?:number|no\.?|#)?|"
             r"patient\s*id|pt\s*id|unit\s*(?:number|no\.?)|account\s*(?:number|no\.?|#)?|acct\s*#?|ssn|"
             r"social\s+security\s*(?:number|no\.?)?|study\s*id|order\s*(?:number|no\.?|#)|encounter\s*(?:id|#)?|"
             r"visit\s*(?:id|#)|specimen\s*(?:id|#)?|case\s*(?:id|#|number)|id\s*(?:number|no\.?|#))")
_STREET = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
           r"Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq)\b\.?")

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("ID", re.compile(_ID_LABEL + r"\b\s*[:#.]?\s*(?:is\s+)?(?P<v>(?=[A-Z0-9\-/]*\d)[A-Z0-9][A-Z0-9\-/]{2,})", re.I)),
    ("ID", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),  # SSN
    ("PHONE", re.compile(r"(?<![\w/.-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s*|\d{3}[\s.-])\d{3}[\s.-]\d{4}\b"
                         r"(?:\s*(?:x|ext\.?)\s*\d{1,6})?", re.I)),
    ("PHONE", re.compile(r"\b(?:pager|beeper|ext(?:ension)?|tel(?:ephone)?|phone|fax|cell)\s*[:#.]?\s*(?:no\.?|number)?"
                         r"\s*(?P<v>\+?[\d][\d\s.()-]{2,}\d)", re.I)),
    ("DATE", re.compile(r"\b\d{4}([-/.])\d{1,2}\1\d{1,2}\b|\b\d{1,2}([-/.])\d{1,2}\2(?:\d{4}|\d{2})\b(?![.,]\d)")),
    ("DATE", re.compile(r"\b" + _MONTH + r"\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+\d{4})?\b"
                        r"|\b\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r"(?:,?\s+\d{4})?\b"
                        r"|\b" + _MONTH + r",?\s+(?:of\s+)?\d{4}\b", re.I)),
    ("DATE", re.compile(r"\b(?:on|dated?|from|since|until|of)\s+(?P<v>(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01]))\b", re.I)),
    ("ADDRESS", re.compile(r"\b\d{1,6}\s+(?:[A-Z][a-zA-Z]+\s+){1,3}" + _STREET + r"(?:\s*,?\s*(?i:apt|suite|unit|#)\.?\s*\w+)?")),
    ("ADDRESS", re.compile(r"\b(?:[A-Z][a-z]+\s){0,2}[A-Z][a-z]+,\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?\b")),
    ("ADDRESS", re.compile(r"\bP\.?\s?O\.?\s+Box\s+\d+\b", re.I)),
    ("AGE", re.compile(r"\b(?P<v>(?:9\d|1[01]\d))(?=[\s-]*(?:years?|yrs?|y/?o|-year)\b)", re.I)),
    ("NAME", re.compile(_TITLE + r"\s*(?P<v>" + _NAME + r"|" + _LOWER_NAME + r")")),
    ("NAME", re.compile(_CUE + r"\s*(?:" + _TITLE + r"\s*)?(?P<v>" + _NAME + r")(?=\s*(?:[,.;:)\n]|$)|\s+(?:(?:at|on|by|and|who|via)\b|[A-Z]))")),
    ("NAME", re.compile(r"(?P<v>" + _NAME + r")" + _CREDENTIAL)),
    ("NAME", re.compile(r"\b(?i:patient(?:'s)?\s+name|name)\s*:\s*(?P<v>" + _NAME + r"(?:,\s*" + _NAME + r")?)")),
    ("NAME", re.compile(r"\b(?i:patient|pt)\s*:\s*(?P<v>" + _NAME_WORD + r",\s*" + _NAME + r")")),  # Last, First
    ("NAME", re.compile(r"\b(?P<v>[A-Z][A-Za-z'\-]+\^[A-Z][A-Za-z'\-]+(?:\^[A-Z]?[A-Za-z'\-]*)*)")),  # DICOM PN
    ("ID", re.compile(r"(?<![\d.,])\b(?=[A-Z0-9-]*\d{6})[A-Z]{0,4}-?\d[\d-]{5,}[A-Z0-9]*\b(?![.,]\d)", re.I)),
)
_KEEP = re.compile(_PLACEHOLDER)


@dataclass(frozen=True)
class Span:
    kind: str
    start: int
    end: int


def find_phi(text: str) -> list[Span]:
    """Spans of identifiers, overlaps merged (the earlier-starting, longer span wins), sorted."""
    spans = []
    for kind, pattern in _RULES:
        for m in pattern.finditer(text):
            start, end = (m.start("v"), m.end("v")) if "v" in pattern.groupindex and m.group("v") else m.span()
            if end > start and not _KEEP.fullmatch(text[start:end].strip()):
                spans.append(Span(kind, start, end))
    merged: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if merged and s.start < merged[-1].end:
            last = merged[-1]
            if s.end > last.end:
                merged[-1] = Span(last.kind, last.start, s.end)
            continue
        merged.append(s)
    return merged


def scrub(text: str | None) -> str | None:
    """``text`` with every identifier replaced by its placeholder (``None`` stays ``None``)."""
    if not text:
        return text
    out, pos = [], 0
    for s in find_phi(text):
        out += [text[pos:s.start], f"[{s.kind}]"]
        pos = s.end
    out.append(text[pos:])
    return "".join(out)
