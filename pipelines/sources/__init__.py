"""Source specs: ``local:PATH``, ``bulk:PATH``, ``pmc-cloud``."""
from __future__ import annotations

from typing import Any

from medcorpus.pipelines.sources.base import Selection, Source, select  # noqa: F401


def make_source(spec: str, *, cache_dir: str, **options: Any) -> Source:
    kind, _, arg = spec.partition(":")
    if kind == "local":
        from medcorpus.pipelines.sources.local import LocalSource

        return LocalSource(arg)
    if kind == "bulk":
        from medcorpus.pipelines.sources.bulk import BulkSource

        return BulkSource(arg, cache_dir=cache_dir)
    if kind == "pmc-cloud":
        from medcorpus.pipelines.sources.pmc_cloud import PmcCloudSource

        return PmcCloudSource(cache_dir=cache_dir, **{k: v for k, v in options.items() if v is not None})
    raise ValueError(f"unknown source {spec!r}: use local:PATH, bulk:PATH or pmc-cloud")
