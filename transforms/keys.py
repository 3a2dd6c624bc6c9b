"""Stable sample keys.

WebDataset splits a member name at its first dot, so keys carry only ``[A-Za-z0-9_-]``. A key is
derived from the article id, version and figure id (panels add their label, see
``subfigures.panel_key``), never from a run's order, so the same figure has the same key in every rebuild and on every runner.
"""
from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def slug(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-") or "x"


def figure_key(article_id: str, version: int, figure_id: str) -> str:
    return f"{slug(article_id)}_v{int(version)}_{slug(figure_id)}"

