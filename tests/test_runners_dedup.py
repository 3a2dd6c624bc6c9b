"""Dedup as a distributed shuffle on Ray (real two-node loopback cluster) and Beam gives exactly the
clusters of the in-process version, on real figures reused (re-encoded, resized, cropped) by other
articles — the copies are synthetic transformations of real images."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from testdata import ARTICLES, REPO

from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.dedup import shuffled_pairs, write_records
from medcorpus.pipelines.runners import Job, make_runner
from medcorpus.transforms.dedup import make_record
from medcorpus.transforms.dedup_clusters import bucketed, dedup_local, finish


def _records() -> list:
    recs = []
    figures = sorted((ARTICLES / "elife-46793-v1").glob("fig*.jpg"))[:8]
    for i, path in enumerate(figures):
        img = Image.open(path).convert("RGB")
        img.thumbnail((512, 512))
        recs.append(make_record(f"a{i}", img, f"Figure {i} of article A.", "PMC-A", 1, "CC BY"))
        small = img.resize((img.width * 3 // 4, img.height * 3 // 4))
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=60)
        recs.append(make_record(f"b{i}", Image.open(buf), f"Reused figure {i}.", "PMC-B", 1, "CC BY-NC"))
        w, h = img.size
        recs.append(make_record(f"c{i}", img.crop((0, 0, w, int(h * 0.97))), "", "PMC-C", 2, "CC0"))
    return recs


@pytest.mark.parametrize("runner_name", ["local", "ray", "beam"])
def test_distributed_dedup_equals_local(runner_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if runner_name == "ray":
        request.getfixturevalue("ray_cluster")
    cfg = load_config(REPO / "dataflow.yaml")
    records = _records()
    expected = dedup_local(records, cfg.dedup_options())
    assert len(set(expected.cluster_of.values())) >= 6  # the reuses were found
    runner = make_runner(runner_name, 2, config=cfg)
    job = Job(cfg, None, str(tmp_path / "staging"), str(tmp_path / "out"))  # type: ignore[arg-type]
    # the records outside the copies, in reverse order, as two Parquet parts (two map tasks)
    parts = write_records(list(reversed(bucketed(records, cfg.dedup_options()))), str(tmp_path / "parts"), 2)
    assert len(parts) == 2
    try:
        # the shuffle itself on every runner (the local build matches image bands vectorized instead)
        got = finish({r.key: r for r in records}, shuffled_pairs(runner, job, parts, cfg.dedup_options()),
                     cfg.dedup_options())
    finally:
        runner.close()
    assert got.cluster_of == expected.cluster_of
    assert got.canonical_of == expected.canonical_of
    assert sorted(got.pairs) == sorted(expected.pairs)
