"""A sample needs no journal article: an image with a text and a document id (a DICOM series, an
image+report pair) goes through the panels and quality stages and into a manifest row,
with the article and figure columns null. The image is a real shared figure; the sample around it
is what a non-article source would make."""
from __future__ import annotations

import hashlib
from dataclasses import replace

from PIL import Image
from testdata import ARTICLES, REPO

from medcorpus.manifests.parquet import table_bytes
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.graph import stage_sample
from medcorpus.pipelines.stages import REGISTRY, WorkerEnv
from medcorpus.schemas import manifest as schema
from medcorpus.schemas.records import Sample


def _sample() -> Sample:
    path = ARTICLES / "elife-46793-v1" / "fig1.jpg"
    data = path.read_bytes()
    img = Image.open(path).convert("RGB")
    return Sample(key="series-1_i0", image=data, image_format="jpg", width=img.width, height=img.height,
                  orig_width=img.width, orig_height=img.height, image_sha256=hashlib.sha256(data).hexdigest(),
                  text="Axial CT of the chest, lung window, showing a nodule in the right upper lobe.",
                  document_id="series-1", license_code="CC BY", license_family="comm", source="dicom",
                  decoded=img)


def test_a_sample_without_an_article_reaches_a_manifest_row(tmp_path) -> None:  # noqa: ANN001
    cfg = replace(load_config(REPO / "dataflow.yaml"), stages=("fetch", "parse", "image", "panels", "quality"))
    env = WorkerEnv(None, work_dir=str(tmp_path))  # type: ignore[arg-type]
    panels, quality = REGISTRY["panels"](cfg, env), REGISTRY["quality"](cfg, env)
    panels.setup(), quality.setup()
    out = [s for p in panels.process(_sample()) for s in quality.process(p)]
    assert out and all(isinstance(s, Sample) for s in out)
    rows = [stage_sample(s, cfg.config_hash())[0].row for s in out]
    row = rows[0]
    assert row["article_id"] == "series-1" and row["license_family"] == "comm" and row["source"] == "dicom"
    assert row["figure_id"] is None and row["pmcid"] is None and row["image_phash"]
    shard_cols = {c: "x" if c in ("shard", "image_member") else 0 for c in schema.SHARD_COLUMNS}
    assert table_bytes(schema.to_table([{**r, **shard_cols} for r in rows], schema.SAMPLES))  # fits the schema
