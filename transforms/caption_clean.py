"""Caption cleaning without an LLM.

Captions reach the corpus with artefacts a model should not learn to produce: a leading figure
label ("Figure 3.", "Fig. 2:"), citation markers ("[12]", "[3–5]", "(Smith et al., 2010)") and
panel markers left stranded once their text is gone ("(A)" at the very end, "A, B" alone).
Everything here is a pure string transform so the result is reproducible and cheap.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from medcorpus.transforms.text import normalize_text

__all__ = ["CleanOptions", "clean_caption"]

_FIG_LABEL = re.compile(
    r"^\s*(?:supplementary\s+|supplemental\s+)?(?:fig(?:ure)?s?|scheme|plate)\.?\s*"
    r"(?:S?\d+[A-Za-z]?(?:\s*[-–,]\s*S?\d+[A-Za-z]?)*)?"
    r"(?:\s*[-–—]\s*(?:figure|source data|video)\s+supplement\s+\d+)?\s*[.:|\-–—)]?\s*",
    re.I,
)
# [1], [1, 2], [3-5], [3–5,8]
_CITE_BRACKET = re.compile(r"\s*\[\s*\d+(?:\s*[-–,]\s*\d+)*\s*\]")
# (Smith et al., 2010), (Smith and Jones 2009; Lee et al. 2011a)
_CITE_AUTHOR = re.compile(
    r"\s*\((?:[A-Z][A-Za-z'’\-]+(?:\s+(?:et al\.?|and|&)\s*(?:[A-Z][A-Za-z'’\-]+)?)?,?\s+(?:19|20)\d{2}[a-z]?"
    r"(?:\s*[;,]\s*)?)+\)"
)
# a panel marker with nothing after it: "... liver. (B)" / "... liver (A, B)."
_TRAILING_PANEL = re.compile(r"\s*[(\[]\s*[A-Za-z](?:\s*[-–,&]\s*[A-Za-z])*\s*[)\]]\s*\.?\s*$")
# markers with only punctuation between them: "(A) (B)" / "(A)."
_EMPTY_PANEL = re.compile(r"[(\[]\s*[A-Za-z]\s*[)\]]\s*(?=[(\[]\s*[A-Za-z]\s*[)\]])")
_SPACE_PUNCT = re.compile(r"\s+([,.;:])")
_DOUBLE_PUNCT = re.compile(r"([,;:])\s*([.,;:])")


@dataclass(frozen=True)
class CleanOptions:
    figure_label: bool = True
    citations: bool = True
    stray_panels: bool = True


def _strip_figure_label(text: str) -> str:
    m = _FIG_LABEL.match(text)
    # only a label followed by real text counts: "Fig" alone or "Figure legend" is left as is
    if m and m.end() < len(text) and m.group(0).strip() and re.search(r"\d|[.:|]", m.group(0)):
        return text[m.end():]
    return text


def clean_caption(text: str, options: CleanOptions | None = None) -> str:
    """The caption with labels, citations and stranded panel markers removed; text otherwise kept."""
    opts = options or CleanOptions()
    out = normalize_text(text or "")
    if opts.figure_label:
        out = _strip_figure_label(out)
    if opts.citations:
        out = _CITE_BRACKET.sub("", out)
        out = _CITE_AUTHOR.sub("", out)
    if opts.stray_panels:
        out = _EMPTY_PANEL.sub("", out)
        prev = None
        while prev != out:
            prev, out = out, _TRAILING_PANEL.sub("", out)
            if out != prev and not out.endswith("."):
                out += "."
    out = _SPACE_PUNCT.sub(r"\1", out)
    out = _DOUBLE_PUNCT.sub(r"\2", out)
    return normalize_text(out)
