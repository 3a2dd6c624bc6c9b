"""What a build publishes besides shards and tables, once they are written: the release's change
list (``manifests/changes.py``) and its Croissant description (``manifests/croissant.py``)."""
from __future__ import annotations

import json
import tempfile
from collections import Counter
from typing import Any

from medcorpus.manifests import changes, croissant
from medcorpus.manifests.releases import Baseline
from medcorpus.manifests.storage import Output
from medcorpus.pipelines.config import BuildConfig


def write_release_files(output: Output, baseline: Baseline, release: int, config: BuildConfig,
                        source: Any = None, source_spec: str = "") -> dict[str, int]:
    """Write ``manifest/changes.parquet`` (and its copy in the history), the inventory a pmc-cloud
    release is based on, and ``croissant.json``; return the samples added, removed and updated."""
    basis = getattr(source, "inventory", None)
    if basis is not None:
        from medcorpus.pipelines.sources import pmc_inventory

        pmc_inventory.archive(output, release, basis)
    by_reason = changes.write_changes(baseline, output, release, tuple(config.families), config.config_hash())
    croissant.write(output, release, preprocessing(config), source_spec)
    found: Counter[str] = Counter()
    for (change, _), samples in by_reason.items():
        found[change] += samples
    return {change: found[change] for change in ("added", "removed", "updated")}


def preprocessing(config: BuildConfig) -> list[str]:
    """What this config's stages do to the data, for the Croissant file's preprocessing protocol."""
    steps = [f"stages run: {', '.join(config.stages)}",
             f"images decoded, converted to 8-bit RGB and resized to at most {config.image.max_side} px "
             f"on the longest side (JPEG quality {config.image.jpeg_quality}, re-encoding: {config.image.reencode})"]
    if "panels" in config.stages:
        steps.append("compound figures split into panels, each paired with its subcaption (with a confidence)")
    if "concepts" in config.stages:
        steps.append("caption and citing-paragraph text linked to UMLS concepts (scispacy)")
    if "quality" in config.stages:
        steps.append("quality filters (dropped samples listed in manifest/dropped.parquet with the filter "
                     "and reason), evaluation-set decontamination, exact and near-duplicate removal")
    return steps


def composition(output: Output) -> dict[str, str]:
    """The release's samples per license family, image type and imaging modality (JSON objects for
    the ``runs`` row), so the report can draw them over releases without older manifests."""
    from medcorpus.manifests.query import open_dataset
    from medcorpus.pipelines.spool import driver_db

    out = {"samples_by_family": "{}", "samples_by_image_type": "{}", "samples_by_modality": "{}"}
    data = open_dataset(output, "manifest/samples")
    if data is None:
        return out
    with tempfile.TemporaryDirectory(prefix="medcorpus-composition-") as spill, driver_db(spill) as con:
        con.register("samples", data)
        for name, column in (("samples_by_family", "license_family"), ("samples_by_image_type", "image_type"),
                             ("samples_by_modality", "image_modality")):
            if column in data.schema.names:
                rows = con.execute(f'SELECT "{column}", count(*) FROM samples WHERE "{column}" IS NOT NULL '
                                   f'GROUP BY 1 ORDER BY 1').fetchall()
                out[name] = json.dumps(dict(rows), sort_keys=True)
    return out
