"""Items that travel between stages besides ``Sample``: side outputs for the manifest tables, and
the work unit of the image stage. Plain dataclasses: picklable for every runner."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medcorpus.pipelines.sources.base import ArticlePackage
from medcorpus.schemas.records import Article, Figure


@dataclass
class ArticleRow:
    """An article for the ``articles`` table."""

    article: Article


@dataclass
class FigureRow:
    """A ``<fig>`` for the ``figures`` table, with or without an image."""

    figure: Figure
    article_id: str
    has_media: bool


@dataclass
class DroppedRow:
    """A sample a filter, decontamination or dedup removed: listed in ``dropped``, never in a shard."""

    row: dict[str, Any]


@dataclass
class FigureTask:
    """One figure whose image the image stage resolves, decodes and normalizes."""

    package: ArticlePackage
    article: Article
    figure: Figure
