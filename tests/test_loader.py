"""ManifestDataset, export and the shard layout trainers read, on a real build of five shared
articles (47 samples: 42 comm in 7 shards, 5 other; panels included)."""
from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import fsspec
import pytest
from loader_build import small_build
from testdata import release_dir
from typer.testing import CliRunner

from medcorpus.manifests.completion import RECORD, IncompleteOutput
from medcorpus.manifests.loader import ManifestDataset
from medcorpus.manifests.query import query
from medcorpus.manifests.ranges import Span, coalesce
from medcorpus.manifests.selection import SelectionError
from medcorpus.manifests.shards import plan_shards
from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines.cli import app


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_build(tmp_path_factory.mktemp("loader"))


def _keys(out: Path, where: str = "true") -> list[str]:
    return [k for (k,) in query(str(out), f"SELECT key FROM samples WHERE {where} ORDER BY key")[1]]


def _delivered(ds: ManifestDataset, workers: int) -> list[str]:
    return [k for batch in ds.dataloader(num_workers=workers) for k in batch["key"]]


def test_items_are_the_manifest_rows_with_their_bytes(out: Path) -> None:
    _, rows = query(str(out), "SELECT key, image_sha256, caption, parent_key, panel_label, shard, image_offset "
                              "FROM samples WHERE license_family = 'comm'")
    want = {r[0]: r for r in rows}
    ds = ManifestDataset(str(out), "license_family = ?", params=["comm"], decode="bytes", shuffle=False)
    items = list(ds)
    assert sorted(i["key"] for i in items) == sorted(want)
    for item in items:
        key, sha, caption, parent, label, shard, offset = want[item["key"]]
        assert hashlib.sha256(item["image"]).hexdigest() == sha and item["caption"] == caption
        row = item["row"]
        assert (row["parent_key"], row["panel_label"], row["shard"], row["image_offset"]) == (parent, label, shard, offset)
    assert any(i["row"]["parent_key"] for i in items)
    pil = next(iter(ManifestDataset(str(out), "key = ?", params=[items[0]["key"]])))
    assert pil["image"].mode == "RGB" and pil["image"].size == (items[0]["row"]["width"], items[0]["row"]["height"])


def test_predicates_are_bound_and_checked(out: Path) -> None:
    assert len(ManifestDataset(str(out), "width > ? AND license_family = ?", params=[0, "other"])) == 5
    with pytest.raises(SelectionError, match="yr"):
        ManifestDataset(str(out), "yr > 1")
    for bad in ("true) UNION SELECT (1", "true; DROP TABLE samples", "true) OR (true"):
        with pytest.raises(SelectionError, match="not one SQL expression"):
            ManifestDataset(str(out), bad)
    quoted = "x' OR '1'='1"  # a value is a value, never SQL
    assert len(ManifestDataset(str(out), "license_code = ?", params=[quoted])) == 0


@pytest.mark.parametrize("even", [False, True])
def test_each_sample_exactly_once_per_epoch_across_ranks_and_workers(out: Path, even: bool) -> None:
    world, everything = 3, _keys(out)
    per_rank = []
    for rank in range(world):
        ds = ManifestDataset(str(out), rank=rank, world_size=world, batch_size=4, seed=7, even=even)
        ds.set_epoch(2)
        keys = _delivered(ds, workers=2)
        assert len(keys) == len(ds) and keys == list(ds.index["key"][ds.rank_order()])
        per_rank.append(keys)
    counts = Counter(k for keys in per_rank for k in keys)
    assert max(counts.values()) == 1  # never twice, on any rank or worker
    sizes = [len(k) for k in per_rank]
    if even:  # equal ranks: the epoch's last N % world samples wait for another epoch
        assert len(set(sizes)) == 1 and sum(sizes) == len(everything) - len(everything) % world
    else:
        assert sorted(counts) == everything and max(sizes) - min(sizes) <= 1


def test_epochs_reorder_deterministically(out: Path) -> None:
    a, b = ManifestDataset(str(out), seed=1), ManifestDataset(str(out), seed=1)
    orders = []
    for epoch in (0, 1):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        keys = [i["key"] for i in a]
        assert keys == [i["key"] for i in b] and sorted(keys) == _keys(out)
        orders.append(keys)
    assert orders[0] != orders[1]


@pytest.mark.parametrize("workers", [0, 2])
def test_state_dict_resumes_with_exactly_the_rest(out: Path, workers: int) -> None:
    def dataset() -> ManifestDataset:
        return ManifestDataset(str(out), rank=1, world_size=2, batch_size=3, seed=3)

    full = dataset()
    full.set_epoch(4)
    expected = _delivered(full, workers)
    first = dataset()
    first.set_epoch(4)
    taken = []
    for batch in first.dataloader(num_workers=workers):
        taken += batch["key"]
        if len(taken) >= 6:
            break
    state = first.state_dict()
    assert state == {"epoch": 4, "consumed": 6}
    resumed = dataset()
    resumed.load_state_dict(json.loads(json.dumps(state)))  # as saved with a checkpoint
    resumed.set_epoch(4)  # the training loop's call on resume keeps the loaded position
    rest = _delivered(resumed, workers)
    assert taken + rest == expected
    assert resumed.state_dict() == {"epoch": 4, "consumed": len(expected)}
    following = _delivered(resumed, workers)  # a finished epoch: the next pass is epoch 5
    full.set_epoch(5)
    assert resumed.state_dict()["epoch"] == 5 and following == _delivered(full, workers)


def test_mix_takes_each_selection_by_weight(out: Path) -> None:
    ds = ManifestDataset.mix(str(out), [("license_family = 'comm'", 1.0), ("license_family = ?", 1.0, ["other"])],
                             samples_per_epoch=20, decode="bytes")
    families = [i["row"]["license_family"] for i in ds]
    assert Counter(families) == {"comm": 10, "other": 10}
    assert "other" in families[:4] and "comm" in families[:4]  # interleaved, not one after the other
    others = [i["key"] for i in ds if i["row"]["license_family"] == "other"]
    assert sorted(Counter(others).values()) == [2, 2, 2, 2, 2]  # 10 of 5: every one twice, none three times
    ds.set_epoch(1)
    comm = [i["key"] for i in ds if i["row"]["license_family"] == "comm"]
    assert len(set(comm)) == 10  # 10 of 42: no repeats within an epoch
    with pytest.raises(ValueError, match="selects no samples"):
        ManifestDataset.mix(str(out), [("true", 1.0), ("key = 'none'", 1.0)])


def test_refuses_an_output_without_its_completion_record(out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(release_dir(out), copy)  # the release folder alone
    (copy / RECORD).unlink()
    with pytest.raises(IncompleteOutput, match="--allow-incomplete"):
        ManifestDataset(str(copy))
    assert len(ManifestDataset(str(copy), allow_incomplete=True)) == len(_keys(out))


def test_neighbouring_members_share_one_request(out: Path) -> None:
    _, rows = query(str(out), "SELECT shard, image_offset, json_offset + json_size FROM samples ORDER BY shard, image_offset")
    spans = [Span(s, a, b) for s, a, b in rows]
    merged, where = coalesce(spans, max_gap=1 << 20)
    assert len(merged) == len({s for s, _, _ in rows})  # one request per shard
    assert all(merged[m].start + off == s.start for s, (m, off) in zip(spans, where))


def test_ranged_reads_from_s3(out: Path, s3_output_bucket) -> None:  # noqa: ANN001
    fs = fsspec.filesystem("s3", **s3_output_bucket.storage_options)
    base = f"{s3_output_bucket.name}/loader"
    for path in out.rglob("*"):
        if path.is_file() and "_work" not in path.parts:
            fs.pipe_file(f"{base}/{path.relative_to(out).as_posix()}", path.read_bytes())
    where = "license_family = 'comm' AND parent_key IS NOT NULL"
    remote = ManifestDataset(f"{s3_output_bucket.url}/loader", where, decode="bytes", world_size=2, rank=0, batch_size=2)
    local = ManifestDataset(str(out), where, decode="bytes", world_size=2, rank=0, batch_size=2)
    got = [(i["key"], i["image"], i["caption"]) for i in remote]
    assert got == [(i["key"], i["image"], i["caption"]) for i in local] and len(got) == len(local) > 0


def test_shards_for_trainers_and_export(out: Path, tmp_path: Path) -> None:
    current = release_dir(out)
    sizes = json.loads((current / "shards/comm/sizes.json").read_text())
    assert sizes == json.loads((current / "shards/other/sizes.json").read_text())
    tars = sorted(p.name for p in current.glob("shards/*/*.tar"))
    assert sorted(sizes) == tars and len(set(tars)) == len(tars) and sum(sizes.values()) == len(_keys(out))
    dest = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", str(out), "--where", "parent_key IS NULL", "--out", str(dest),
                                      "--shard-size", "4"])
    assert result.exit_code == 0, result.output
    assert verify_output(str(dest)) == ([], len(_keys(out, "parent_key IS NULL")))
    exported = json.loads((dest / "shards/comm/sizes.json").read_text())
    comm = [n for name, n in sorted(exported.items()) if name.startswith("comm-")]
    assert max(comm) <= 4 and min(comm) >= 2  # balanced: no tiny last shard
    again = CliRunner().invoke(app, ["export", str(out), "--out", str(dest)])
    assert again.exit_code == 2 and "not empty" in again.output
    bad = CliRunner().invoke(app, ["export", str(out), "--where", "nope = 1", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "nope" in bad.output


def test_shard_plans_balance_the_last_shards_and_ignore_input_order(out: Path) -> None:
    _, rows = query(str(out), "SELECT key, image_size FROM samples")
    plans = plan_shards("comm", rows, 10, 1 << 40)
    sizes, tail = [len(p.keys) for p in plans], len(rows) % 10
    assert tail and sizes[:-2] == [10] * (len(sizes) - 2)  # greedy would end 10, tail
    assert sorted(sizes[-2:]) == [(10 + tail) // 2, (11 + tail) // 2]
    assert plan_shards("comm", list(reversed(rows)), 10, 1 << 40) == plans
    by_bytes = plan_shards("comm", rows, 1000, sum(s for _, s in rows) // 3)
    assert all(sum(dict(rows)[k] for k in p.keys) <= sum(s for _, s in rows) // 3 for p in by_bytes)


@pytest.mark.parametrize("streaming", [False, True])
def test_huggingface_datasets_loads_the_output_unchanged(out: Path, tmp_path: Path, streaming: bool) -> None:
    datasets = pytest.importorskip("datasets")
    _, rows = query(str(out), "SELECT key, parent_key, panel_index, panel_box, panel_label, license_family, "
                              "map_from_entries(image_type_scores)['other'] FROM samples")
    want = {r[0]: r for r in rows}
    ds = datasets.load_dataset(str(out / "current"), split="train", streaming=streaming, cache_dir=str(tmp_path / "hf"))
    got = {}
    for sample in ds:
        meta = sample["json"]
        got[sample["__key__"]] = (meta["key"], meta["parent_key"], meta["panel_index"], meta["panel_box"],
                                  meta["panel_label"], meta["license_family"],
                                  {s["name"]: s["value"] for s in meta["image_type_scores"]}.get("other"))
        assert sample["jpg"].size == (meta["width"], meta["height"]) and sample["txt"] == meta["caption"]
    assert got == want and sum(1 for r in rows if r[1]) > 0  # panels keep parent_key and panel_*
    other = datasets.load_dataset(str(out / "current"), "other", split="train", streaming=streaming, cache_dir=str(tmp_path / "hf"))
    assert sorted(s["__key__"] for s in other) == _keys(out, "license_family = 'other'")


@pytest.mark.parametrize("streaming", [False, True])
def test_huggingface_datasets_reads_the_manifest(out: Path, tmp_path: Path, streaming: bool) -> None:
    datasets = pytest.importorskip("datasets")
    parts = str(out / "current/manifest/samples/*.parquet")
    ds = datasets.load_dataset("parquet", data_files=parts, split="train", streaming=streaming,
                               cache_dir=str(tmp_path / "hf"))
    rows = {r["key"]: r for r in ds}
    assert sorted(rows) == _keys(out)
    _, scores = query(str(out), "SELECT key, map_from_entries(quality_scores)['caption_chars'] FROM samples")
    assert all({s["name"]: s["value"] for s in rows[k]["quality_scores"]}.get("caption_chars") == v for k, v in scores)


def test_card_declares_the_features_datasets_would_derive(out: Path) -> None:
    datasets = pytest.importorskip("datasets")
    import yaml

    from medcorpus.schemas.manifest import SIDECAR

    meta = yaml.safe_load((out / "current/README.md").read_text().split("---\n")[1])
    assert [c["config_name"] for c in meta["configs"]] == ["all", "comm", "other"]
    features = {i["config_name"]: i["features"] for i in meta["dataset_info"]}["all"]
    declared = datasets.Features._from_yaml_list(features)
    assert declared["json"] == datasets.Features.from_arrow_schema(SIDECAR)
    assert isinstance(declared["jpg"], datasets.Image)
