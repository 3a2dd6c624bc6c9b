"""End-to-end: the pipeline's build() over the seeded pmc-oa-opendata bucket on moto."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_here = str(Path(__file__).resolve().parent)
if _here not in sys.path:  # --import-mode=importlib leaves tests/ off sys.path
    sys.path.insert(0, _here)

from fixtures_s3 import SeededPmcBucket, moto_server, pmc_bucket  # noqa: E402,F401

pytest.importorskip("medcorpus.pipelines.build")
from medcorpus.manifests.query import query  # noqa: E402
from medcorpus.pipelines.build import build  # noqa: E402
from medcorpus.pipelines.config import load_config  # noqa: E402
from medcorpus.pipelines.runners import LocalRunner  # noqa: E402
from medcorpus.pipelines.sources import Selection, make_source  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_build_from_pmc_cloud(tmp_path, pmc_bucket: SeededPmcBucket):
    c = pmc_bucket.cases
    ids = frozenset({c["two_versions"], c["retracted_latest"], c["not_open_access"], c["missing_media"],
                     c["bad_md5_media"], c["noncomm"]})
    src = make_source("pmc-cloud", cache_dir=str(tmp_path / "cache"), endpoint_url=pmc_bucket.endpoint_url,
                      transport="https", ids=ids, retry_base_s=0.005, seed=0)
    out = tmp_path / "out"
    summary = build(load_config(REPO / "dataflow.yaml"), src, LocalRunner(1), str(out),
                    selection=Selection(ids=ids), work_dir=str(tmp_path / "work"), progress=False)
    assert summary.units == 6 and summary.articles == 4
    # article-level skips; per-figure errors for the bad media; the NC preprint has no media at all
    assert summary.errors_by_reason == {"retracted": 1, "not_open_access": 1, "md5_mismatch": 1,
                                        "image_not_found": 1 + 9}
    _, rows = query(str(out), "SELECT input, stage, figure_id FROM errors WHERE reason IN ('md5_mismatch', 'image_not_found') "
                              "AND input NOT LIKE '%PMC9000006%' ORDER BY input")
    assert rows == [(f"pmc-cloud:{c['missing_media']}#g003.png", "image", "pone.0178565.g003"),
                    (f"pmc-cloud:{c['bad_md5_media']}#fig3.jpg", "image", "fig3")]
    _, rows = query(str(out), "SELECT a.source_url, a.version, a.license_code, a.n_figures, "
                              "count(s.key) FILTER (WHERE s.parent_key IS NULL) FROM articles a "
                              "LEFT JOIN samples s USING (article_id) GROUP BY ALL ORDER BY a.source_url")
    b = pmc_bucket.bucket
    assert [(r[0].split("?")[0], *r[1:]) for r in rows] == [
        (f"s3://{b}/{c['two_versions']}.2/{c['two_versions']}.2.xml", 2, "CC BY", 5, 5),  # the later version
        (f"s3://{b}/{c['missing_media']}.1/{c['missing_media']}.1.xml", 1, "CC BY", 6, 5),
        (f"s3://{b}/{c['bad_md5_media']}.1/{c['bad_md5_media']}.1.xml", 1, "CC0", 8, 7),
        (f"s3://{b}/{c['noncomm']}.1/{c['noncomm']}.1.xml", 1, "CC BY-NC-ND", 9, 0),
    ]
    _, [(n, whole)] = query(str(out), "SELECT count(*), count(*) FILTER (WHERE parent_key IS NULL) FROM samples")
    assert whole == 17 and n == summary.samples
    # the source's PMCID names the article when the XML carries none
    _, ids = query(str(out), "SELECT DISTINCT article_id = pmcid AND pmcid LIKE 'PMC%' FROM samples")
    assert ids == [(True,)]
