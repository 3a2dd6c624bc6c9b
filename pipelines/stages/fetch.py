"""fetch: a listed unit → its opened package (source I/O: the only stage that reads the source)."""
from __future__ import annotations

from typing import Iterator

from medcorpus.pipelines.sources.base import ArticlePackage
from medcorpus.pipelines.stages.base import Stage
from medcorpus.schemas.records import UnitRef


class Fetch(Stage):
    name = "fetch"

    def process(self, item: UnitRef) -> Iterator[ArticlePackage]:
        yield self.env.source.open(item)
