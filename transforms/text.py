"""Text normalization shared by the parsers: markup stripped, whitespace collapsed, symbols kept."""
from __future__ import annotations

import re
import unicodedata

_WS = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:)\]])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[])\s+")


def normalize_text(text: str) -> str:
    """NFC (keeps Greek letters, ±, µ ...), one space between words, no space before punctuation."""
    text = unicodedata.normalize("NFC", text).replace("\u00a0", " ")
    text = _WS.sub(" ", text).strip()
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    return _SPACE_AFTER_OPEN.sub(r"\1", text)
