"""Radiology report text → its sections (indication, comparison, findings, impression).

Reports name their sections with headers ("FINDINGS:", "Impression :", "HISTORY:", "REASON FOR
EXAM:" ...), in capitals or not, on their own line or inline after a sentence. A header starts a
section that runs to the next header; headers of sections outside the four (technique,
examination, recommendation, sign-off lines) end the previous section and their text is left out.
A report without any header is all findings (the body of a dictated report), so no text is lost.
``bench/report_sections_eval.py`` measures it on the Open-i reports.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

SECTIONS = ("indication", "comparison", "findings", "impression")

_NAMES: dict[str, str] = {
    "indication": r"indications?|clinical\s+indications?|(?:clinical\s+|medical\s+)?history|"
                  r"reason\s+for\s+(?:the\s+)?(?:exam(?:ination)?|study|request|referral)|"
                  r"clinical\s+(?:information|info|details|data|notes?|question)|reason",
    "comparison": r"comparisons?|comparison\s+(?:study|studies|exam(?:ination)?s?)|prior\s+(?:studies|study|exams?)",
    "findings": r"findings?|report|description",
    "impression": r"impressions?|conclusions?|summary|interpretation|opinion|diagnosis|assessment",
    "": r"technique|techniques|examination|exam|procedure|study|type\s+of\s+(?:exam|study)|recommendations?|"
        r"notification|addendum|final\s+report|wet\s+read|provisional\s+findings\s+impression|"
        r"dictat(?:ed|ing)(?:\s+by)?|signed(?:\s+by)?|electronically\s+signed(?:\s+by)?|attending|radiologist",
}
# a header candidate: a name after whitespace, then a colon (or dash), or the end of its line;
# ``_is_header`` decides from what precedes it
_HEADER = re.compile(
    r"(?:^|(?<=\s))[ \t]*(?P<name>" + "|".join(f"(?P<g{i}>{names})" for i, names in enumerate(_NAMES.values()))
    + r")[ \t]*(?:\([^)\n]{0,40}\))?[ \t]*(?::|-{1,2}(?=\s)|(?=[ \t]*\n)|$)",
    re.I | re.M,
)
_ORDER = list(_NAMES)
_INLINE = {"indication", "indications", "comparison", "comparisons", "findings", "impression", "impressions",
           "technique", "conclusion"}  # names that open a section even lowercase mid-line: never prose before a colon
_SIGNOFF = re.compile(r"^\s*(?:dictating|dictated|[-=*]{3,})[-=* ]*\s*$", re.I | re.M)


@dataclass(frozen=True)
class ReportSections:
    indication: str | None = None
    comparison: str | None = None
    findings: str | None = None
    impression: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def caption(self) -> str:
        """The sample text of a report image: findings and impression, each under its name."""
        parts = [f"{name.capitalize()}: {text}" for name in ("findings", "impression") if (text := getattr(self, name))]
        return " ".join(parts)


def _clean(text: str) -> str | None:
    text = " ".join(_SIGNOFF.sub(" ", text).split())
    return text.strip(" :;-") or None


def _is_header(match: re.Match[str], text: str) -> bool:
    """A name and a colon opens a section at a line's start or after a sentence's end, or inline
    when capitalized ("... None. Findings: ..."); a bare name with no colon only in capitals on a
    line of its own (``IMPRESSION``). So prose such as "no history of trauma" never opens one."""
    name = match.group("name")
    line_start = text.rfind("\n", 0, match.start("name")) + 1
    before = text[line_start:match.start("name")].rstrip()
    if ":" in text[match.end("name"):match.end()] or "-" in text[match.end("name"):match.end()]:
        return not before or before[-1] in ".;!?" or name[0].isupper() or name.lower() in _INLINE
    return name.isupper() and not before


def parse_sections(text: str) -> ReportSections:
    """The four sections of a report; text under other headers is left out, text before the first
    header is the findings when no findings header follows (else dropped as preamble)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    heads = [m for m in _HEADER.finditer(text) if _is_header(m, text)]
    if not heads:
        return ReportSections(findings=_clean(text))
    found: dict[str, list[str]] = {}
    for n, m in enumerate(heads):
        kind = _ORDER[next(i for i in range(len(_ORDER)) if m.group(f"g{i}") is not None)]
        body = text[m.end():heads[n + 1].start() if n + 1 < len(heads) else len(text)]
        if kind and (cleaned := _clean(body)):
            found.setdefault(kind, []).append(cleaned)
    preamble = _clean(text[:heads[0].start()])
    if preamble and "findings" not in found:
        found["findings"] = [preamble]
    return ReportSections(**{k: " ".join(v) for k, v in found.items()})
