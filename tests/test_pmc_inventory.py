"""``--changes-since``: an incremental pmc-cloud release from the bucket's daily S3 inventories,
on the loopback S3 server over three simulated days. The bucket holds the real shared articles
(tests/fixtures_s3.py); the inventories are synthetic (moto publishes none), written in S3
Inventory's layout from the bucket's own metadata listing each day."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from fixtures_s3 import moto_server, s3_client, seed_pmc_bucket  # noqa: F401
from testdata import release_dir
from typer.testing import CliRunner

from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines.cli import app

BUCKET = "pmc-inventory-days"
DAYS = ("2026-11-01T01-00Z", "2026-11-02T01-00Z", "2026-11-03T01-00Z")


def _publish_inventory(client: Any, day: str) -> None:
    """Today's inventory of metadata/: a csv.gz of bucket, key, last modified, ETag, and its manifest."""
    rows = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="metadata/"):
        for obj in page.get("Contents", []):
            rows.append(f'"{BUCKET}","{obj["Key"]}","{obj["LastModified"].isoformat()}","{obj["ETag"].strip(chr(34))}"')
    data = gzip.compress(("\n".join(rows) + "\n").encode(), mtime=0)
    data_key = f"inventory-reports/{BUCKET}/metadata/data/{day}.csv.gz"
    client.put_object(Bucket=BUCKET, Key=data_key, Body=data)
    manifest = {"sourceBucket": BUCKET, "destinationBucket": f"arn:aws:s3:::{BUCKET}", "version": "2016-11-30",
                "fileFormat": "CSV", "fileSchema": "Bucket, Key, LastModifiedDate, ETag",
                "files": [{"key": data_key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()}]}
    client.put_object(Bucket=BUCKET, Key=f"inventory-reports/{BUCKET}/metadata/{day}/manifest.json",
                      Body=json.dumps(manifest).encode())


def _new_version(client: Any, pmcid: str) -> None:
    """Version 2 of an article: its files copied under PMC<id>.2/ and new metadata naming them."""
    for obj in client.list_objects_v2(Bucket=BUCKET, Prefix=f"{pmcid}.1/")["Contents"]:
        name = obj["Key"].split("/", 1)[1].replace(f"{pmcid}.1", f"{pmcid}.2")
        client.copy_object(Bucket=BUCKET, Key=f"{pmcid}.2/{name}", CopySource={"Bucket": BUCKET, "Key": obj["Key"]})
    doc = json.loads(client.get_object(Bucket=BUCKET, Key=f"metadata/{pmcid}.1.json")["Body"].read())
    doc = json.loads(json.dumps(doc).replace(f"{pmcid}.1", f"{pmcid}.2"))
    doc["version"] = 2
    client.put_object(Bucket=BUCKET, Key=f"metadata/{pmcid}.2.json", Body=json.dumps(doc).encode())


def _retract(client: Any, pmcid: str) -> None:
    doc = json.loads(client.get_object(Bucket=BUCKET, Key=f"metadata/{pmcid}.1.json")["Body"].read())
    client.put_object(Bucket=BUCKET, Key=f"metadata/{pmcid}.1.json", Body=json.dumps({**doc, "is_retracted": True}).encode())


def _changes(out: Path) -> list[dict[str, Any]]:
    return pq.read_table(release_dir(out) / "manifest" / "changes.parquet").to_pylist()


def test_changes_since_processes_only_changed_versions_and_records_retractions(moto_server, tmp_path: Path) -> None:  # noqa: ANN001,F811
    seeded = seed_pmc_bucket(moto_server.url, BUCKET)
    updated, retracted = seeded.cases["missing_media"], seeded.cases["bad_md5_media"]
    client = s3_client(moto_server.url)
    config, out = tmp_path / "fast.yaml", tmp_path / "out"
    config.write_text("version: 1\nstages: [fetch, parse, image]\ndefaults: {workers: 1}\n")
    cmd = ["build", "--config", str(config), "--source", "pmc-cloud", "--endpoint", moto_server.url,
           "--transport", "https", "--bucket", BUCKET, "--out", str(out), "--no-progress"]

    _publish_inventory(client, DAYS[0])
    first = CliRunner().invoke(app, cmd)
    assert first.exit_code == 0, first.output
    before = {r["key"]: r for r in pq.read_table(release_dir(out) / "manifest" / "samples").to_pylist()}
    assert json.loads((release_dir(out) / "manifest/inventory/release-000001.json").read_text())["newest"] == DAYS[0]

    _new_version(client, updated)
    _publish_inventory(client, DAYS[1])
    _retract(client, retracted)
    _publish_inventory(client, DAYS[2])
    second = CliRunner().invoke(app, [*cmd, "--changes-since", "1"])
    assert second.exit_code == 0, second.output
    assert "mode: incremental" in second.output and "units 2 " in second.output  # only the two changed articles

    rows = _changes(out)
    got = {(r["article_id"], r["change"], r["reason"]) for r in rows}
    assert got == {(updated, "removed", "new version"), (updated, "added", "new version"),
                   (retracted, "removed", "retracted")}
    gone = {r["key"] for r in rows if r["article_id"] == retracted}
    assert gone == {k for k, r in before.items() if r["article_id"] == retracted} and gone
    assert all("_v2_" in r["key"] for r in rows if r["change"] == "added")
    record = json.loads((release_dir(out) / "manifest/inventory/release-000002.json").read_text())
    assert (record["base"], record["newest"], record["changed_articles"]) == (DAYS[0], DAYS[2], 2)
    assert (release_dir(out) / "manifest/inventory" / DAYS[2] / "manifest.json").is_file()
    assert verify_output(str(out))[0] == []

    print(second.output, *sorted(got), sep="\n")
    unknown = CliRunner().invoke(app, [*cmd, "--changes-since", "7"])
    assert unknown.exit_code == 2 and "release 7" in unknown.output and "records no inventory day" in unknown.output
