"""Items that travel between stages besides ``Sample``: side outputs for the manifest tables, and
the work unit of the image stage. Plain dataclasses: picklable for every runner."""
from __future__ import annotations

from dataclasses import dataclass, field
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
class ImageTask:
    """One image of a source that is not a journal article (a DICOM frame, a report's image, a
    dataset image) for the image stage: either its encoded file or pixels the parser rendered itself
    (DICOM after its LUTs), with the sample fields the parser decided. ``extra`` holds manifest
    columns (schemas.manifest.IMAGING_FIELDS and the like)."""

    key: str
    text: str
    document_id: str
    data: bytes | None = None
    pixels: Any = None  # a PIL image
    license_code: str = "unknown"
    license_family: str = "other"
    source: str = ""
    source_url: str | None = None
    source_md5: str | None = None
    context: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FigureTask:
    """One figure whose image the image stage resolves, decodes and normalizes."""

    package: ArticlePackage
    article: Article
    figure: Figure
