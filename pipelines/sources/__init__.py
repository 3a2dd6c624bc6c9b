"""Source specs: ``local:PATH``, ``bulk:PATH``, ``pmc-cloud``."""
from __future__ import annotations

from typing import Any

from medcorpus.pipelines.failures import BadOption
from medcorpus.pipelines.sources.base import Selection, Source, select  # noqa: F401


# COVID-19 public-health-emergency articles (phe_timebound) had reuse terms that expired: a build
# takes them only when asked by name.
DEFAULT_LICENSE_GROUPS = ("oa_comm", "oa_noncomm", "other")


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

        options = {k: v for k, v in options.items() if v is not None}
        options.setdefault("license_groups", DEFAULT_LICENSE_GROUPS)
        return PmcCloudSource(cache_dir=cache_dir, **options)
    raise BadOption(f"unknown source {spec!r}", "use --source local:PATH, bulk:PATH or pmc-cloud")
