"""Typed records that flow between stages. Plain dataclasses: picklable for every runner."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TRANSIENT_REASONS = frozenset({"fetch_transient", "forbidden"})
"""Error reasons that may clear without the source changing (5xx, SlowDown, timeouts, connection
errors; 403/401, which a bucket policy or a credential fixes). A unit with one is staged but not
final: the next build fetches it again (pipelines/staging.py bounds how many times)."""

LLM_FAILED = "llm_failed"
"""A sample whose LLM requests got no answer (no server, timeouts, HTTP errors): it keeps its caption,
``errors`` says why, and its unit is retried by every next build (the server, not the source, failed)."""

DELIBERATE_SKIPS = frozenset({"retracted", "not_open_access", "license_excluded", "dicom_no_pixels", "report_empty"})
"""Reasons a source declines a unit by policy (or a unit holds nothing to make a sample of, such as
a DICOM structured report, or a report with no findings or impression): the unit is not a failure."""


class SkipError(Exception):
    """Raised by a transform when one input cannot become output; the runner records it and goes on.

    ``reason`` is a short stable code (``image_not_found``, ``xml_malformed`` ...) that summaries
    group by; ``detail`` is the human explanation.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class UnitRef:
    """One unit of work (an article version) as a source lists it: small, cheap, picklable.

    ``fingerprint`` changes whenever the unit's content changes (md5, etag, mtime+size); together
    with the config hash it names the unit's staged result, so reruns skip unchanged units.
    """

    source: str
    unit_id: str
    locator: str
    fingerprint: str
    meta: tuple[tuple[str, Any], ...] = ()

    def meta_dict(self) -> dict[str, Any]:
        return dict(self.meta)


@dataclass
class Article:
    article_id: str
    pmcid: str | None = None
    pmid: str | None = None
    doi: str | None = None
    version: int = 1
    journal: str | None = None
    year: int | None = None
    title: str | None = None
    article_type: str | None = None
    license_code: str = "unknown"
    license_url: str | None = None
    license_family: str = "other"
    keywords: list[str] = field(default_factory=list)
    source: str = ""
    source_url: str | None = None
    source_md5: str | None = None
    n_figures: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Graphic:
    href: str
    specific_use: str | None = None


@dataclass
class Figure:
    figure_id: str
    key: str
    label: str | None
    caption_title: str
    caption: str
    mentions: list[str] = field(default_factory=list)
    graphics: list[Graphic] = field(default_factory=list)
    parent_figure_id: str | None = None
    position: int = 0

    def primary_graphic(self) -> Graphic | None:
        """The full-size rendition: thumbnails and web previews are never the sample's image."""
        for g in self.graphics:
            use = (g.specific_use or "").lower()
            if "thumb" not in use and "web" not in use and ".thumbnail." not in g.href:
                return g
        return None


@dataclass
class ErrorRecord:
    input: str
    stage: str
    reason: str
    detail: str = ""
    article_id: str | None = None
    figure_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sample:
    """An image-text pair ready for a shard, from any source.

    The common fields come first: every source fills them. What only one kind of source knows rides
    in its own records (``article`` and ``figure`` for journal articles; nullable columns in the
    manifest). ``extra`` holds the manifest columns stages add; the typed fields after it carry what
    one stage hands to a later one.
    """

    key: str
    image: bytes
    image_format: str
    width: int
    height: int
    orig_width: int
    orig_height: int
    image_sha256: str
    text: str  # the caption (a panel's: the caption's shared text and its own subcaption)
    document_id: str  # what it comes from (an article, a series): samples of one document never dedup as near pairs
    license_code: str = "unknown"
    license_family: str = "other"
    source: str = ""
    source_url: str | None = None
    source_md5: str | None = None
    context: list[str] = field(default_factory=list)  # texts that cite or describe it (citing paragraphs)
    article: Article | None = None  # journal-article samples
    figure: Figure | None = None
    graphic_href: str | None = None
    graphic_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # manifest columns stages add (see their ``columns``)
    decoded: Any = field(default=None, repr=False)  # the RGB image, in memory between stages only
    anatomy: list[str] = field(default_factory=list)  # concept hints (concepts stage) for later stages
    modality: list[str] = field(default_factory=list)
    errors: list["ErrorRecord"] = field(default_factory=list)  # failures the sample survived (an LLM request)

    @property
    def figure_id(self) -> str | None:
        return self.figure.figure_id if self.figure else None
