"""Shared fixtures. Tests read the real data in ../shared/data (never the acceptance holdout)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures_s3 import *  # noqa: F401,F403 - moto server, seeded PMC bucket, output bucket, fault proxy
from testdata import ARTICLES, DATA, REPO, release_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

def pytest_collection_modifyitems(config, items):  # noqa: ANN001
    if not DATA.is_dir():
        skip = pytest.mark.skip(reason=f"shared data not found at {DATA}")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def articles_dir() -> Path:
    return ARTICLES


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build of the real shared articles, made once per test session (2 worker processes)."""
    from medcorpus.pipelines.build import build
    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.runners import LocalRunner
    from medcorpus.pipelines.sources.local import LocalSource

    out = tmp_path_factory.mktemp("sample_build")
    build(load_config(REPO / "dataflow.yaml"), LocalSource(str(ARTICLES)), LocalRunner(2), str(out),
          progress=False)
    return out



@pytest.fixture(scope="session")
def ray_cluster():  # noqa: ANN201
    """ONE real two-node Ray cluster on loopback for the whole session (tests/raycluster.py); this
    process stays connected to it, and it is stopped (only its own processes) at the end."""
    pytest.importorskip("ray")
    from raycluster import LoopbackCluster

    cluster = LoopbackCluster(cpus_per_node=1, object_store_bytes=200_000_000).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def staged_units(staging: Path) -> int:
    """Units staged for good: a ``.meta`` under its own name (a write in flight has a hidden name
    that ends in ``.meta`` too, and a kill may leave one behind)."""
    return sum(not p.name.startswith(".") for p in staging.rglob("*.meta")) if staging.exists() else 0


def tree_bytes(out: Path) -> dict[str, bytes]:
    """Every manifest table and every shard, by relative path; except runs (run facts) and the
    change lists (what changed since the release before, so a rebuild's list differs); of the
    current release."""
    out = release_dir(out)
    files = sorted((out / "manifest").rglob("*.parquet")) + sorted((out / "shards").rglob("*.tar"))
    release_facts = ("manifest/runs.parquet", "manifest/changes.parquet", "manifest/history/")
    return {rel: f.read_bytes() for f in files if not (rel := f.relative_to(out).as_posix()).startswith(release_facts)}
