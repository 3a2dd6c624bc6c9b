"""Source specs: ``local:PATH``, ``bulk:PATH``, ``pmc-cloud``, ``dicom:PATH``, ``idc``, ``reports:PATH``,
``dataset:PATH``."""
from __future__ import annotations

from typing import Any

from medcorpus.pipelines.failures import BadOption
from medcorpus.pipelines.sources.base import Selection, Source, select  # noqa: F401


# COVID-19 public-health-emergency articles (phe_timebound) had reuse terms that expired: a build
# takes them only when asked by name.
DEFAULT_LICENSE_GROUPS = ("oa_comm", "oa_noncomm", "other")


def make_source(spec: str, *, cache_dir: str, **options: Any) -> Source:
    kind, _, arg = spec.partition(":")
    secret_file = options.pop("secret_file", None)  # DICOM sources: the pseudonym key
    where, idc_index = options.pop("where", None), options.pop("idc_index", None)  # idc: the series to take
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
    if kind in ("dicom", "idc", "reports", "dataset"):
        if not secret_file:
            raise ValueError(f"a {kind} source needs a secret file for its pseudonyms (dicom.secret_file)")
        return _keyed_source(kind, arg, secret_file, where, idc_index, options)
    raise BadOption(f"unknown source {spec!r}", "use --source local:PATH, bulk:PATH, pmc-cloud, dicom:PATH, idc, "
                                                 "reports:PATH or dataset:PATH")


def _keyed_source(kind: str, arg: str, secret_file: str, where: str | None, idc_index: str | None,
                  options: dict[str, Any]) -> Source:
    """The sources whose ids are pseudonyms keyed with the corpus secret."""
    from medcorpus.pipelines.sources.dicom import DicomSource, load_secret

    secret = load_secret(secret_file)
    if kind == "dicom":
        return DicomSource(arg, secret)
    if kind == "reports":
        from medcorpus.pipelines.sources.reports import ReportsSource

        return ReportsSource(arg, secret)
    if kind == "dataset":
        from medcorpus.pipelines.sources.dataset import DatasetSource

        return DatasetSource(arg, secret)
    from medcorpus.pipelines.sources.idc import IdcSource

    return IdcSource(where or "", secret, index_path=idc_index,
                     endpoint_url=options.get("endpoint_url"), transport=options.get("transport") or "s3")
