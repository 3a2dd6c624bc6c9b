"""The build's dedup step on Ray (real two-node loopback cluster), Beam and local worker processes
(image bands split in groups across two workers, exact and caption buckets in DuckDB) gives exactly
the clusters of the in-process version, on real figures reused (re-encoded, resized, cropped) by
other articles — the copies are synthetic transformations of real images."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from testdata import ARTICLES, REPO

from medcorpus.pipelines.assemble import DEDUP_RECORDS, Assembly, _record_row
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines import dedup as dedup_module
from medcorpus.pipelines.dedup import dedup
from medcorpus.pipelines.runners import Job, make_runner
from medcorpus.pipelines.spool import Spool
from medcorpus.transforms.dedup import make_record
from medcorpus.transforms.dedup_clusters import dedup_local, merged


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


def _spooled(records: list, root: Path) -> Assembly:
    """The records as a build's spool holds them after collect."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    spool = Spool(root)
    rows = [{**_record_row(r), "sample": i} for i, r in enumerate(records)]
    pq.write_table(pa.Table.from_pylist(rows, schema=DEDUP_RECORDS), spool.root / "records.parquet")
    return Assembly(spool, ("comm",), records=len(records))


@pytest.mark.parametrize("runner_name", ["local", "ray", "beam"])
def test_distributed_dedup_equals_local(runner_name: str, tmp_path: Path, request: pytest.FixtureRequest,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if runner_name == "ray":
        request.getfixturevalue("ray_cluster")
    monkeypatch.setattr(dedup_module, "GROUP_RECORDS", 1)  # a band group per worker, however few the records
    cfg = load_config(REPO / "dataflow.yaml")
    records = _records()
    expected = dedup_local(records, cfg.dedup_options())
    assert len(set(expected.cluster_of.values())) >= 6  # the reuses were found
    runner = make_runner(runner_name, 2, config=cfg)
    job = Job(cfg, None, str(tmp_path / "staging"), str(tmp_path / "out"))  # type: ignore[arg-type]
    groups, shuffle = [], runner.shuffle
    runner.shuffle = lambda job, parts, *args, **kw: groups.append(list(parts)) or shuffle(job, parts, *args, **kw)
    try:
        got = merged(r for r, _ in dedup(runner, job, _spooled(list(reversed(records)), tmp_path / "spool")))
    finally:
        runner.close()
    assert groups == [["0:64", "64:128"]]  # the image bands, half on each worker
    assert got.matches == expected.matches
    assert got.cluster_of == expected.cluster_of
    assert sum("image" in m.kinds for m in got.matches.values()) >= 6
    assert not (tmp_path / "staging" / "dedup-hashes").exists()  # the band groups' files are gone
