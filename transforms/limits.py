"""Hard limits on the text one sample carries, each with its own error reason.

Beyond them a record is malformed or hostile (a megabyte caption, thousands of citing paragraphs),
and the libraries later stages use fail on it with their own messages (spaCy refuses texts over a
million characters). The image stage checks them first, so such a figure is one error with a
reason that says which limit it broke, before any stage spends time on it. The number of panels
has its own limit in the panels stage (``subfigures.max_panels``: the figure stays whole,
``split_status`` says why).
"""
from __future__ import annotations

from typing import Sequence

from medcorpus.schemas.records import SkipError

__all__ = ["MAX_CAPTION_CHARS", "MAX_MENTIONS", "MAX_MENTION_CHARS", "check_text_fields"]

MAX_CAPTION_CHARS = 100_000  # ten times the quality filter's default maximum
MAX_MENTIONS = 500  # citing paragraphs of one figure
MAX_MENTION_CHARS = 100_000  # one citing paragraph


def check_text_fields(caption: str, mentions: Sequence[str]) -> None:
    """Raise ``SkipError`` (``caption_too_long``, ``too_many_mentions``, ``mention_too_long``) when a
    field is over its limit."""
    if len(caption) > MAX_CAPTION_CHARS:
        raise SkipError("caption_too_long", f"caption of {len(caption):,} characters (limit {MAX_CAPTION_CHARS:,})")
    if len(mentions) > MAX_MENTIONS:
        raise SkipError("too_many_mentions", f"{len(mentions):,} citing paragraphs (limit {MAX_MENTIONS:,})")
    longest = max(map(len, mentions), default=0)
    if longest > MAX_MENTION_CHARS:
        raise SkipError("mention_too_long", f"a citing paragraph of {longest:,} characters "
                                            f"(limit {MAX_MENTION_CHARS:,})")
