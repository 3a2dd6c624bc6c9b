"""Restricted builds (--pmcids, --limit, --since) into an existing output are additive; a full build
is a snapshot of the source."""
from __future__ import annotations

import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import tree_bytes
from testdata import ARTICLES, REPO, copy_articles, release_dir

from medcorpus.manifests.storage import Output
from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines.build import build, summary_lines
from medcorpus.pipelines.config import BuildConfig, load_config
from medcorpus.pipelines.incremental import IncrementalError
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources.base import Selection
from medcorpus.pipelines.sources.local import LocalSource
from medcorpus.schemas.manifest import SHARD_COLUMNS

# one "other"-family article (its own shard family) and three commercial ones, one with a dropped sample
NAMES = ["elife-32671", "pone.0000010", "pone.0038869", "plosone-0178565"]


def _config() -> BuildConfig:
    """The default config without the concepts stage (its vocabulary build is slow, and it is not
    what decides which samples a build keeps)."""
    return replace(load_config(REPO / "dataflow.yaml"), stages=("fetch", "parse", "image", "panels", "quality"))


def _table(out: Path, name: str) -> list[dict[str, Any]]:
    path = release_dir(out) / "manifest" / name
    if path.is_dir():
        return [r for part in sorted(path.glob("*.parquet")) for r in pq.read_table(part).to_pylist()]
    return pq.read_table(path).to_pylist()


def _samples(out: Path) -> dict[str, dict[str, Any]]:
    """Every sample's row without its shard placement, plus the image bytes its offsets point at."""
    output, rows = Output(str(release_dir(out))), {}
    for r in _table(out, "samples"):
        image = output.read_range(r["shard"], r["image_offset"], r["image_size"])
        rows[r["key"]] = {**{k: v for k, v in r.items() if k not in SHARD_COLUMNS}, "image": image}
    return rows


def _of_articles(rows: list[dict[str, Any]], article_ids: set[str]) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r.get("article_id") in article_ids), key=repr)


def _run(src: Path, out: Path, selection: Selection = Selection()):  # noqa: ANN202
    return build(_config(), LocalSource(str(src)), LocalRunner(2), str(out), selection=selection, progress=False)


def test_restricted_builds_keep_every_other_sample(tmp_path: Path) -> None:
    src, out = copy_articles(tmp_path / "in", NAMES), tmp_path / "out"
    first = _run(src, out)
    assert first.mode == "snapshot" and "mode: snapshot" in summary_lines(first)
    before, before_tree, errors_before = _samples(out), tree_bytes(out), _table(out, "errors.parquet")
    assert {r["license_family"] for r in before.values()} == {"comm", "other"}
    assert any(r["stage"] == "quality" for r in _table(out, "dropped.parquet"))

    # the same units looked at again: nothing changes, byte for byte
    again = _run(src, out, Selection(ids=frozenset({"pone.0000010"})))
    assert (again.mode, again.units, again.units_kept) == ("incremental", 1, 3)
    assert tree_bytes(out) == before_tree
    limited = _run(src, out, Selection(limit=1))
    assert (limited.mode, limited.units, limited.units_kept) == ("incremental", 1, 3)
    assert tree_bytes(out) == before_tree

    # one article changes (a figure's image is gone); only it changes in the output
    (src / "pone.0038869" / sorted(p.name for p in (src / "pone.0038869").glob("*.tif"))[0]).unlink()
    changed = _run(src, out, Selection(ids=frozenset({"pone.0038869"})))
    assert changed.mode == "incremental" and "mode: incremental" in summary_lines(changed)
    after = _samples(out)
    gone = {k for k, r in before.items() if r["article_id"] == "10.1371/journal.pone.0038869"}
    lost = {k for k in gone if "-g001" in k}  # the deleted image's figure and its panels
    assert lost and lost < gone and set(after) == set(before) - lost
    assert {k: r for k, r in after.items() if k not in gone} == {k: r for k, r in before.items() if k not in gone}
    assert set(p.name for p in (release_dir(out) / "shards").iterdir()) == {"comm", "other"}
    errors_after, pone = _table(out, "errors.parquet"), {"10.1371/journal.pone.0038869"}
    assert len(_of_articles(errors_after, pone)) == len(_of_articles(errors_before, pone)) + 1  # the deleted image
    others = {r["article_id"] for r in errors_before} - pone
    assert _of_articles(errors_after, others) == _of_articles(errors_before, others)
    assert verify_output(str(out))[0] == []
    runs = _table(out, "runs.parquet")
    assert [(r["mode"], r["units_kept"]) for r in runs] == [("snapshot", 0)] + [("incremental", 3)] * 3


def test_kept_samples_take_part_in_dedup(tmp_path: Path) -> None:
    src, out = copy_articles(tmp_path / "in", NAMES[:2]), tmp_path / "out"
    _run(src, out)
    before = _samples(out)
    # a new article whose figures are the same images as a kept article's
    dup = src / "zz-copy"
    shutil.copytree(src / "pone.0000010", dup)
    xml = dup / "pone.0000010.xml"
    xml.write_bytes(xml.read_bytes().replace(b"10.1371/journal.pone.0000010", b"10.9999/copy.0000010"))
    summary = _run(src, out, Selection(ids=frozenset({"zz-copy"})))
    assert (summary.mode, summary.units, summary.units_kept) == ("incremental", 1, 2)
    after = _samples(out)
    dropped = [r for r in _table(out, "dropped.parquet") if r["stage"] == "dedup"]
    assert len(dropped) == 3 and all(r["duplicate_of"] for r in dropped)
    assert set(before) <= set(after) | {r["key"] for r in dropped}  # every kept sample is a sample or a named duplicate
    assert len(after) == len(before)
    assert verify_output(str(out))[0] == []


def test_full_rebuild_is_a_snapshot_that_drops_vanished_articles(tmp_path: Path) -> None:
    src, out = copy_articles(tmp_path / "in", NAMES), tmp_path / "out"
    _run(src, out)
    shutil.rmtree(src / "elife-32671")  # the only article of the "other" family
    summary = _run(src, out)
    assert summary.mode == "snapshot" and summary.units == 3
    assert not any(r["license_family"] == "other" for r in _samples(out).values())
    assert not list((release_dir(out) / "shards").glob("other/*.tar"))
    assert "elife-32671" not in {r["unit_id"] for r in _table(out, "units.parquet")}
    assert verify_output(str(out))[0] == []


def test_incremental_refuses_what_it_cannot_keep(tmp_path: Path) -> None:
    src, out = copy_articles(tmp_path / "in", NAMES[1:3]), tmp_path / "out"
    _run(src, out)
    before = tree_bytes(out)
    shutil.rmtree(out / "_work" / "staging")  # _work is safe to delete ...
    with pytest.raises(IncrementalError, match="full rebuild"):
        _run(src, out, Selection(ids=frozenset({"pone.0000010"})))
    assert tree_bytes(out) == before  # ... and then an incremental run writes nothing
    (release_dir(out) / "manifest" / "units.parquet").unlink()  # an output made before units were recorded
    with pytest.raises(IncrementalError, match="units.parquet is missing"):
        _run(src, out, Selection(limit=1))
    assert _run(src, out).mode == "snapshot" and verify_output(str(out))[0] == []
    assert _run(src, out, Selection(limit=1)).units_kept == 1


def _new_version_fixing_media(client: Any, bucket: str, pmcid: str, name: str) -> None:
    """Publish version 2 of ``pmcid`` whose metadata carries the right md5 of media ``name`` (v1's
    was wrong), as PMC does when it corrects an article: a new version prefix and metadata object."""
    import hashlib
    import json

    doc = json.loads(client.get_object(Bucket=bucket, Key=f"metadata/{pmcid}.1.json")["Body"].read())
    data = client.get_object(Bucket=bucket, Key=f"{pmcid}.1/{name}")["Body"].read()
    doc["version"] = 2
    doc["media_urls"] = [u.split("?md5=")[0] + f"?md5={hashlib.md5(data).hexdigest()}" if u.split("?")[0].endswith(f"/{name}")
                         else u for u in doc["media_urls"]]
    body = json.dumps(doc, indent=1).encode()
    for key in (f"{pmcid}.2/{pmcid}.2.json", f"metadata/{pmcid}.2.json"):
        client.put_object(Bucket=bucket, Key=key, Body=body, ACL="public-read", ContentType="application/json")


def test_since_build_changes_only_the_changed_article(tmp_path: Path, moto_server: Any) -> None:
    from fixtures_s3 import s3_client, seed_pmc_bucket

    from medcorpus.pipelines.sources import make_source

    seeded = seed_pmc_bucket(moto_server.url, bucket="pmc-incremental")
    out, work = tmp_path / "out", tmp_path / "work"

    def run(since: str | None = None):  # noqa: ANN202
        src = make_source("pmc-cloud", cache_dir=str(tmp_path / "cache"), endpoint_url=seeded.endpoint_url,
                          transport="https", bucket=seeded.bucket, since=since, retry_base_s=0.005, seed=0)
        return build(_config(), src, LocalRunner(2), str(out), selection=Selection(since=since),
                     work_dir=str(work), progress=False)

    first = run()
    assert first.mode == "snapshot"
    before, errors_before = _samples(out), _table(out, "errors.parquet")
    changed = seeded.cases["bad_md5_media"]
    assert "md5_mismatch" in {e["reason"] for e in errors_before if e["article_id"] == changed}

    since_ts = int(time.time()) + 1  # S3 times have one-second resolution
    time.sleep(max(0.0, since_ts - time.time()) + 0.01)
    _new_version_fixing_media(s3_client(seeded.endpoint_url), seeded.bucket, changed, "fig3.jpg")
    second = run(since=datetime.fromtimestamp(since_ts, timezone.utc).isoformat())

    assert (second.mode, second.units, second.units_kept) == ("incremental", 1, first.units - 1)
    after = _samples(out)
    assert {k: r for k, r in after.items() if r["pmcid"] != changed} == \
        {k: r for k, r in before.items() if r["pmcid"] != changed}
    old = [r for r in before.values() if r["pmcid"] == changed]
    new = [r for r in after.values() if r["pmcid"] == changed]
    assert {r["version"] for r in old} == {1} and {r["version"] for r in new} == {2}  # v2 replaced v1
    assert sum(r["parent_key"] is None for r in new) == sum(r["parent_key"] is None for r in old) + 1  # fig3
    others = {e["article_id"] for e in errors_before} - {changed}
    assert _of_articles(_table(out, "errors.parquet"), others) == _of_articles(errors_before, others)
    assert "md5_mismatch" not in {e["reason"] for e in _table(out, "errors.parquet")}
    assert verify_output(str(out))[0] == []


def test_a_new_version_folder_supersedes_the_old_one(tmp_path: Path) -> None:
    src, out = copy_articles(tmp_path / "in", ["pone.0000010"]), tmp_path / "out"
    shutil.copytree(ARTICLES / "pone.0038869", src / "PMC1000001.1")
    _run(src, out)
    kept = {k: r for k, r in _samples(out).items() if r["article_id"] == "10.1371/journal.pone.0000010"}
    n_version = len(_samples(out)) - len(kept)
    (src / "PMC1000001.1").rename(src / "PMC1000001.2")  # the mirror now holds version 2 only
    summary = _run(src, out, Selection(ids=frozenset({"PMC1000001"})))
    assert (summary.mode, summary.units, summary.units_kept) == ("incremental", 1, 1)
    assert sorted(r["unit_id"] for r in _table(out, "units.parquet")) == ["PMC1000001.2", "pone.0000010"]
    after = _samples(out)
    assert {k: r for k, r in after.items() if k in kept} == kept and len(after) == len(kept) + n_version > len(kept)
    assert not [e for e in _table(out, "errors.parquet") if e["reason"] == "duplicate_key"]
    assert verify_output(str(out))[0] == []
