"""Three releases of the real sample articles: numbered releases, the change list of each with
reasons derived from evidence, ``medcorpus diff`` between any two, and the removal list."""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from testdata import REPO, copy_articles, release_dir
from typer.testing import CliRunner

from medcorpus.manifests import changes
from medcorpus.manifests.query import query
from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines.build import build, summary_lines
from medcorpus.pipelines.cli import app
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources.local import LocalSource

os.environ.setdefault("CROISSANT_CACHE", tempfile.mkdtemp(prefix="croissant-cache-"))  # before mlcroissant loads

PONE10, PONE38, ELIFE, PLOS = "pone.0000010", "pone.0038869", "elife-32671", "plosone-0178565"
ARTICLE_IDS = {PONE10: "10.1371/journal.pone.0000010", PONE38: "10.1371/journal.pone.0038869",
               ELIFE: "elife-32671", PLOS: "10.1371/journal.pone.0178565"}


def _table(out: Path, rel: str) -> list[dict[str, Any]]:
    path = release_dir(out) / "manifest" / rel
    if path.is_dir():
        return [r for part in sorted(path.glob("*.parquet")) for r in pq.read_table(part).to_pylist()]
    return pq.read_table(path).to_pylist()


def _samples(out: Path) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in _table(out, "samples")}


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Release 1: three articles. Release 2: one article's license becomes non-commercial, one
    article is gone from the source, one is new. Release 3: the gone article is back, and one
    figure image of the new article is replaced by another real figure."""
    tmp = tmp_path_factory.mktemp("releases")
    src, out = copy_articles(tmp / "in", [PONE10, PONE38, ELIFE]), tmp / "out"
    # the stages that decide which samples exist and what they hold; concepts and quality do not matter here
    config = replace(load_config(REPO / "dataflow.yaml"), stages=("fetch", "parse", "image"))

    def run() -> Any:
        with pytest.MonkeyPatch.context() as mp:  # changes stream in batches and key ranges: a few samples each here
            mp.setattr(changes, "BATCH", 3)
            mp.setattr(changes, "RANGE_ROWS", 4)
            return build(config, LocalSource(str(src)), LocalRunner(2), str(out), progress=False)

    states, summaries = [], []
    summaries.append(run())
    states.append(_samples(out))
    xml = src / PONE10 / "pone.0000010.xml"
    xml.write_text(xml.read_text(encoding="utf-8").replace(
        "Creative Commons Attribution License", "Creative Commons Attribution-NonCommercial License"), encoding="utf-8")
    shutil.move(src / PONE38, tmp / PONE38)
    copy_articles(src, [PLOS])
    summaries.append(run())
    states.append(_samples(out))
    shutil.move(tmp / PONE38, src / PONE38)
    shutil.copyfile(src / PLOS / "g002.png", src / PLOS / "g001.png")
    summaries.append(run())
    states.append(_samples(out))
    return {"out": out, "states": states, "summaries": summaries}


def _keys_of(state: dict[str, dict[str, Any]], name: str) -> set[str]:
    return {k for k, r in state.items() if r["article_id"] == ARTICLE_IDS[name]}


def test_each_build_is_a_numbered_release(releases: dict[str, Any]) -> None:
    out, summaries = releases["out"], releases["summaries"]
    assert [s.release for s in summaries] == [1, 2, 3]
    assert [r["release"] for r in _table(out, "runs.parquet")] == [1, 2, 3]
    assert json.loads((release_dir(out) / "_complete.json").read_text())["release"] == 3
    assert sorted(p.name for p in (out / "releases").iterdir()) == ["000001", "000002", "000003"]  # keep_releases 3
    for number, state in enumerate(releases["states"], 1):  # OUT@N reads release N, whole
        assert query(f"{out}@{number}", "SELECT count(*) FROM samples")[1] == [(len(state),)]
        assert verify_output(f"{out}@{number}") == ([], len(state))
    assert "release 2: added" in "\n".join(summary_lines(summaries[1]))
    runs = _table(out, "runs.parquet")
    first = json.loads(runs[0]["samples_by_family"])
    assert first == {f: sum(r["license_family"] == f for r in releases["states"][0].values()) for f in first}
    assert verify_output(str(out))[0] == []


def test_release_2_lists_each_change_with_its_reason(releases: dict[str, Any]) -> None:
    out, (one, two, _) = releases["out"], releases["states"]
    rows = _table(out, "history/changes-000002.parquet")
    by_key = {r["key"]: r for r in rows}
    assert len(by_key) == len(rows) and {r["release"] for r in rows} == {2} and {r["previous_release"] for r in rows} == {1}
    assert [r["key"] for r in rows] == sorted(by_key)  # one key order across the ranges
    relicensed, gone, new = _keys_of(one, PONE10), _keys_of(one, PONE38), _keys_of(two, PLOS)
    assert relicensed and gone and new
    assert set(by_key) == relicensed | gone | new  # unchanged samples (elife) are not listed
    for key in relicensed:
        row = by_key[key]
        assert (row["change"], row["reason"], row["old_family"], row["new_family"]) == \
            ("updated", "license changed", "comm", "noncomm")
        assert "family" in row["detail"] and row["old_image_sha256"] == row["new_image_sha256"]
    for key in gone:
        row = by_key[key]
        assert (row["change"], row["reason"], row["new_fingerprint"]) == ("removed", "withdrawn from source", None)
        assert (row["old_image_sha256"], row["old_shard"]) == (one[key]["image_sha256"], one[key]["shard"])
    assert {(by_key[k]["change"], by_key[k]["reason"]) for k in new} == {("added", "new article")}
    assert _table(out, "history/changes-000001.parquet")[0]["reason"] == "new article"


def test_release_3_changes_and_the_current_change_list(releases: dict[str, Any]) -> None:
    out, (_, two, three) = releases["out"], releases["states"]
    rows = _table(out, "changes.parquet")
    assert rows == _table(out, "history/changes-000003.parquet")
    by_key = {r["key"]: r for r in rows}
    back, replaced = _keys_of(three, PONE38), [k for k in _keys_of(two, PLOS) if k.endswith("-g001")]
    assert {(by_key[k]["change"], by_key[k]["reason"]) for k in back} == {("added", "new article")}
    assert len(replaced) == 1
    row = by_key[replaced[0]]
    assert (row["change"], row["reason"], row["detail"]) == ("updated", "source changed", "changed: image")
    assert row["new_image_sha256"] == three[replaced[0]]["image_sha256"] != row["old_image_sha256"]
    assert set(by_key) == back | set(replaced)


def test_diff_cli_composes_releases_and_writes_the_removal_list(releases: dict[str, Any], tmp_path: Path) -> None:
    out, (one, two, three) = releases["out"], releases["states"]
    removals = tmp_path / "removed.csv"
    result = CliRunner().invoke(app, ["diff", str(out), "--from", "1", "--to", "2", "--removals", str(removals)])
    assert result.exit_code == 0, result.output
    gone, relicensed, new = _keys_of(one, PONE38), _keys_of(one, PONE10), _keys_of(two, PLOS)
    assert f"release 1 -> 2: added {len(new)}, removed {len(gone)}, updated {len(relicensed)}" in result.output
    assert "withdrawn from source" in result.output and "license changed" in result.output
    listed = {r["key"]: r for r in csv.DictReader(removals.open(encoding="utf-8"))}
    # removed samples, and updated ones whose family changed: each with the old image's hashes
    assert set(listed) == gone | relicensed
    for key, row in listed.items():
        assert (row["image_sha256"], row["image_phash"], row["shard"]) == \
            (one[key]["image_sha256"], one[key]["image_phash"] or "", one[key]["shard"])

    # 1 -> 3: the article that left and came back unchanged is not a change at all
    result = CliRunner().invoke(app, ["diff", str(out), "--from", "1", "--to", "3", "--removals", str(removals)])
    assert result.exit_code == 0, result.output
    assert f"release 1 -> 3: added {len(_keys_of(three, PLOS))}, removed 0, updated {len(relicensed)}" in result.output
    assert set(csv.DictReader(removals.open(encoding="utf-8")).fieldnames or []) >= {"key", "image_sha256"}

    # without --removals the list goes beside the reports, never into the working directory
    default = CliRunner().invoke(app, ["diff", str(out), "--from", "1", "--to", "2"])
    assert default.exit_code == 0, default.output
    written = out / "reports" / "removals-000001-000002.csv"
    assert str(written) in default.output.replace("\n", "")
    assert {r["key"] for r in csv.DictReader(written.open(encoding="utf-8"))} == gone | relicensed

    bad = CliRunner().invoke(app, ["diff", str(out), "--from", "3", "--to", "2"])
    assert bad.exit_code == 2 and "--from" in bad.output


def test_croissant_validates_and_loads_records_with_mlcroissant(releases: dict[str, Any]) -> None:
    mlc = pytest.importorskip("mlcroissant")
    out, state = releases["out"], releases["states"][2]
    out = release_dir(out)
    doc = json.loads((out / "croissant.json").read_text(encoding="utf-8"))
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1" and doc["version"] == "3.0.0"
    for name in ("dataCollection", "dataPreprocessingProtocol", "personalSensitiveInformation", "dataLimitations",
                 "dataReleaseMaintenancePlan"):
        assert doc[f"rai:{name}"], name
    record = json.loads((out / "_complete.json").read_text())
    shards = {f["path"] for f in record["files"] if f["path"].startswith("shards/") and f["path"].endswith(".tar")}
    objects = {d["contentUrl"]: d for d in doc["distribution"] if d["@type"] == "cr:FileObject"}
    assert shards <= set(objects) and "croissant.json" in {f["path"] for f in record["files"]}
    for shard in shards:
        assert objects[shard]["sha256"] == hashlib.sha256((out / shard).read_bytes()).hexdigest()

    dataset = mlc.Dataset(jsonld=str(out / "croissant.json"))  # raises on any validation error
    assert not dataset.metadata.ctx.issues.errors and not dataset.metadata.ctx.issues.warnings
    families = {r["license_family"] for r in state.values()}
    assert {rs.name for rs in dataset.metadata.record_sets} == families | {f"{f}_images" for f in families}
    for family in families:
        keys = {r[f"{family}/key"].decode() for r in dataset.records(family)}
        assert keys == {k for k, r in state.items() if r["license_family"] == family}
        for image in itertools.islice(dataset.records(f"{family}_images"), 2):
            key = image[f"{family}_images/key"].decode()
            assert image[f"{family}_images/image"].size == (state[key]["width"], state[key]["height"])


def test_report_is_self_contained_and_covers_the_release(releases: dict[str, Any], tmp_path: Path) -> None:
    out = releases["out"]
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(out), "--out", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    for title in ("Samples per license family, by release", "Samples per image type, by release", "Image sizes",
                  "Caption length", "Drops by filter and reason", "Duplicates", "Top concepts", "Panels per figure",
                  "Errors by reason", "This release&#x27;s changes"):
        assert f"<h2>{title}</h2>" in text, title
    assert text.count('src="data:image/png;base64,') >= 6
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing outside the file
    assert "medcorpus release 3" in text and "source changed" in text and "image_not_found" in text

    default = CliRunner().invoke(app, ["report", f"{out}@2"])  # beside the releases: they stay as published
    assert default.exit_code == 0, default.output
    assert (out / "reports" / "release-000002.html").read_text(encoding="utf-8").count("<h1>medcorpus release 2</h1>") == 1
    assert not list(out.glob("releases/*/report.html"))

    shot = pytest.importorskip("bench.report_screenshot")
    if shot.browser() is None:
        pytest.skip("no chromium or firefox on this machine")
    png = shot.screenshot(page, tmp_path / "report.png")
    from PIL import Image, ImageStat

    with Image.open(png) as img:
        assert img.width >= 800 and max(ImageStat.Stat(img.convert("L")).stddev) > 20  # drawn, not blank


def test_a_killed_build_is_compared_with_the_last_complete_release(tmp_path: Path) -> None:
    src, out = copy_articles(tmp_path / "in", [PONE10]), tmp_path / "out"
    config = replace(load_config(REPO / "dataflow.yaml"), stages=("fetch", "parse", "image"))
    first = build(config, LocalSource(str(src)), LocalRunner(1), str(out), progress=False)
    # what a build killed after its first writes leaves: release 2's folder, unpublished, without
    # its record, a part gone, a stray file
    partial = out / "releases" / "000002"
    shutil.copytree(release_dir(out), partial)
    (partial / "_complete.json").unlink()
    for part in (partial / "manifest" / "samples").glob("*.parquet"):
        part.unlink()
    (partial / "shards" / "stray.tar").write_bytes(b"half")
    assert query(str(out), "SELECT count(*) FROM samples")[1] == [(first.samples,)]  # still release 1
    again = build(config, LocalSource(str(src)), LocalRunner(1), str(out), progress=False)
    assert (first.release, again.release) == (1, 2)
    assert again.changes == {"added": 0, "removed": 0, "updated": 0}  # against release 1, not the damaged folder
    assert _table(out, "changes.parquet") == [] and not (partial / "shards" / "stray.tar").exists()
    assert verify_output(str(out)) == ([], first.samples)


def test_reasons_follow_the_evidence() -> None:
    """The rules on rows shaped like the manifest's (synthetic: the sample articles hold no
    retraction, duplicate or new version)."""
    from medcorpus.manifests import change_reasons as cr

    old = {"key": "PMC1_v1_f1", "article_id": "PMC1", "pmcid": "PMC1", "version": 1, "figure_id": "f1",
           "license_code": "CC BY", "license_family": "comm", "config_hash": "c", "medcorpus_version": "v",
           "source_md5": "m", "source_url": "s3://b/PMC1.1/PMC1.1.xml", "image_sha256": "i", "caption_md5": "t"}
    article = {"article_id": "PMC1", "version": 1, "license_code": "CC BY", "license_family": "comm", "source_md5": "m"}
    figure = {"article_id": "PMC1", "figure_id": "f1"}

    def ev(**new: list[dict[str, Any]]) -> cr.Evidence:
        tables = {"articles": [article], "figures": [figure], **new}
        return cr.make_evidence({"articles": [article]}, tables, ("comm", "noncomm", "other"), "c", "v")

    retracted = {"input": "pmc-cloud:PMC1", "stage": "fetch", "reason": "retracted", "detail": "", "article_id": None}
    assert cr.removed(old, ev(articles=[], errors=[retracted]))[0] == "retracted"
    assert cr.removed(old, ev(articles=[]))[0] == "withdrawn from source"
    filtered = {"key": old["key"], "stage": "quality", "dropped_by": "min_side", "reason": "32 px < 64"}
    assert cr.removed(old, ev(dropped=[filtered])) == ("now filtered", "min_side: 32 px < 64")
    duplicate = {"key": old["key"], "stage": "dedup", "dropped_by": "image", "reason": "duplicate of PMC2_v1_f3"}
    assert cr.removed(old, ev(dropped=[duplicate]))[0] == "duplicate"
    assert cr.removed(old, ev(articles=[{**article, "version": 2}])) == ("new version", "superseded by version 2")
    only_comm = cr.make_evidence({}, {"articles": [{**article, "license_family": "noncomm"}], "figures": [figure]},
                                 ("comm",), "c", "v")
    assert cr.removed(old, only_comm)[0] == "config changed"  # same license, its family no longer written
    assert cr.removed(old, ev(figures=[]))[0] == "figure removed"
    assert cr.removed(old, ev()) == ("no longer produced", "")
    new = {**old, "key": "PMC1_v2_f1", "version": 2}
    assert cr.added(new, ev(), {"PMC1"})[0] == "new version"
    assert cr.added({**new, "article_id": "PMC9"}, ev(), {"PMC1"})[0] == "new article"
    assert cr.updated(old, {**old, "caption_md5": "u", "source_md5": "n"}, ev()) == ("source changed",
                                                                                      "changed: caption, article XML")
    assert cr.updated(old, {**old, "config_hash": "d", "image_sha256": "j"}, ev()) == ("config changed", "changed: image")
    assert cr.updated(old, {**old, "dedup_cluster": "PMC0_v1_f2"}, ev())[0] == "duplicate cluster changed"


def test_releases_of_an_s3_output(tmp_path: Path, s3_output_bucket) -> None:  # noqa: ANN001
    """Release folders and the pointer on an object store: release 1 stays readable beside release 2."""
    import fsspec

    src, url = copy_articles(tmp_path / "in", [PONE10, PONE38]), f"{s3_output_bucket.url}/corpus"
    config = replace(load_config(REPO / "dataflow.yaml"), stages=("fetch", "parse", "image"))
    run = lambda: build(config, LocalSource(str(src)), LocalRunner(1), url, work_dir=str(tmp_path / "work"),  # noqa: E731
                        progress=False)
    first = run()
    shutil.rmtree(src / PONE38)
    second = run()
    assert (first.release, second.release) == (1, 2)
    assert second.changes == {"added": 0, "removed": 2, "updated": 0}
    fs = fsspec.filesystem("s3", **s3_output_bucket.storage_options)
    fs.invalidate_cache()
    keys = fs.find(f"{s3_output_bucket.name}/corpus")
    assert any(k.endswith("corpus/releases/000002/manifest/history/changes-000001.parquet") for k in keys)
    assert json.loads(fs.cat_file(f"{s3_output_bucket.name}/corpus/current.json"))["release"] == 2
    assert verify_output(url) == ([], second.samples) and verify_output(f"{url}@1") == ([], first.samples)
    assert query(f"{url}@1", "SELECT count(*) FROM samples")[1] == [(first.samples,)]
