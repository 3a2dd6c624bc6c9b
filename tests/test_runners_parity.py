"""Parity: local, Ray (a real two-node cluster on loopback) and Beam (FnApiRunner, two SDK worker
processes) build the shared sample into byte-identical manifests and shards. A guard for every later
stage: a stage that makes output depend on the runner, the worker count or the processing order fails
here."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import tree_bytes
from testdata import ARTICLES, REPO, release_dir

from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines.build import build
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.runners import make_runner
from medcorpus.pipelines.sources.local import LocalSource


def _members(tar_bytes: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def _build(runner_name: str, out: Path) -> None:
    cfg = load_config(REPO / "dataflow.yaml")
    summary = build(cfg, LocalSource(str(ARTICLES)), make_runner(runner_name, 2, config=cfg), str(out), progress=False)
    assert summary.samples > 0 and summary.units == 18
    assert summary.worker_peak_rss > 100 * 2**20  # the workers' own peak memory came back (Ray rows, Beam metric)


@pytest.mark.parametrize("runner_name", ["ray", "beam"])
def test_runner_output_is_byte_identical_to_local(runner_name: str, sample_build: Path, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    if runner_name == "ray":
        import ray

        request.getfixturevalue("ray_cluster")
        alive = [n for n in ray.nodes() if n["Alive"]]
        # two nodes with one CPU each and two one-CPU workers: the build runs on both nodes
        assert len(alive) == 2 and ray.cluster_resources()["CPU"] == 2
    out = tmp_path / runner_name
    _build(runner_name, out)
    local, other = tree_bytes(sample_build), tree_bytes(out)
    assert sorted(other) == sorted(local)
    assert any(k.endswith(".tar") for k in local) and "manifest/errors.parquet" in local
    for rel, data in local.items():
        if rel.endswith(".tar"):
            assert _members(other[rel]) == _members(data), rel  # same members, same order, same bytes
        else:
            keys = [c for c in ("key", "article_id") if c in pq.read_schema(io.BytesIO(data)).names][:1]
            if keys:  # rows sorted by key
                col = pq.read_table(io.BytesIO(other[rel])).column(keys[0]).to_pylist()
                assert col == sorted(col), rel
        assert other[rel] == data, f"{rel} differs between local and {runner_name}"
    assert verify_output(str(out))[0] == []
    runs = pq.read_table(release_dir(out) / "manifest" / "runs.parquet").to_pylist()
    assert [(r["runner"], r["workers"]) for r in runs] == [(runner_name, 2)]
