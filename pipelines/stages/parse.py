"""parse: a JATS article package → its article row, figure rows and one task per figure image.

The parse stage of the journal-article sources (PMC Cloud, OA packages, local mirrors)."""
from __future__ import annotations

from typing import Any, Iterator

from medcorpus.pipelines.items import ArticleRow, FigureRow, FigureTask
from medcorpus.pipelines.sources.base import ArticlePackage
from medcorpus.pipelines.stages.base import Stage
from medcorpus.transforms.jats import parse_article
from medcorpus.transforms.licenses import license_family


class ParseJats(Stage):
    name = "parse"
    parser = "jats"
    requires = ("fetch",)

    def process(self, item: ArticlePackage) -> Iterator[Any]:
        parsed = parse_article(item.xml, fallback_id=item.unit.unit_id, version=item.version,
                               metadata_license=item.license_code, pmcid=item.unit.meta_dict().get("pmcid"))
        article = parsed.article
        article.license_family = license_family(article.license_code, self.config.licenses)
        article.source, article.source_url, article.source_md5 = self.env.source.name, item.source_url, item.source_md5
        yield ArticleRow(article)
        for fig in parsed.figures:
            yield FigureRow(fig, article.article_id, has_media=not item.no_media)
            if not item.no_media:
                yield FigureTask(item, article, fig)
