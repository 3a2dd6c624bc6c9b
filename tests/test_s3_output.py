"""Builds written to an s3:// URL (a real S3-compatible server, moto, on loopback)."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import fsspec
from testdata import REPO, copy_articles

from medcorpus.manifests.query import query
from medcorpus.manifests.reader import iter_samples
from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines.build import build
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources.local import LocalSource


def test_build_to_s3_url(tmp_path: Path, s3_output_bucket) -> None:  # noqa: ANN001
    src = copy_articles(tmp_path / "in", ["elife-46472-v3", "elife-32671"])
    url = f"{s3_output_bucket.url}/corpus/v1"
    summary = build(load_config(REPO / "dataflow.yaml"), LocalSource(str(src)), LocalRunner(2), url,
                    work_dir=str(tmp_path / "work"), progress=False)
    fs = fsspec.filesystem("s3", **s3_output_bucket.storage_options)
    keys = sorted(fs.find(f"{s3_output_bucket.name}/corpus/v1"))
    assert any(k.endswith("shards/comm/comm-000000.tar") for k in keys)
    assert any(k.endswith("shards/other/other-000000.tar") for k in keys)  # elife-32671 lost its license: other
    assert not any(".tmp" in k or "/." in k for k in keys)  # no temporary objects left behind
    problems, checked = verify_output(url)
    assert problems == [] and checked == summary.samples
    _, [(n,)] = query(url, "SELECT count(*) FROM samples WHERE license_family = 'comm'")
    streamed = list(iter_samples(url, "license_family = 'comm'"))
    assert len(streamed) == n > 0
    _, rows = query(url, "SELECT key, image_sha256 FROM samples WHERE license_family = 'comm' ORDER BY shard, image_offset")
    assert [hashlib.sha256(s["image"]).hexdigest() for s in streamed] == [sha for _, sha in rows]
    # the shard on S3 is a plain WebDataset tar
    with fs.open(f"{s3_output_bucket.name}/corpus/v1/releases/000001/shards/comm/comm-000000.tar", "rb") as f:
        names = tarfile.open(fileobj=io.BytesIO(f.read())).getnames()
    assert len(names) == 3 * n
