"""The ``idc`` source against a loopback S3 server (moto) seeded with real DICOM files under IDC's
series layout (``<bucket>/<crdc_series_uuid>/<crdc_instance_uuid>.dcm``), series selected with SQL
over the real ``idc_index`` Parquet that ``idc-index-data`` installs."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from fixtures_s3 import MotoEndpoint, s3_client
from medcorpus.pipelines.build import build
from medcorpus.pipelines.config import from_dict
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources.idc import IdcSource, default_index, select_series
from testdata import DEID_DATA, DICOM_TEST_FILES, release_dir

FILES = [DICOM_TEST_FILES / "CT_small.dcm", DICOM_TEST_FILES / "MR_small.dcm", DEID_DATA / "humans" / "ctbrain1.dcm"]


def _pick() -> list[dict[str, Any]]:
    """One small CC BY CT series, one CC BY-NC series, from the real index."""
    rows = []
    for lic in ("CC BY 4.0", "CC BY-NC 4.0"):
        rows += duckdb.sql(f"""SELECT SeriesInstanceUID, crdc_series_uuid, aws_bucket, license_short_name, collection_id
            FROM read_parquet('{default_index()}') WHERE license_short_name = '{lic}' AND instanceCount >= 2
            ORDER BY SeriesInstanceUID LIMIT 1""").fetchall()
    return [dict(zip(("uid", "crdc", "bucket", "license", "collection"), r)) for r in rows]


@pytest.fixture(scope="module")
def idc_bucket(moto_server: MotoEndpoint) -> list[dict[str, Any]]:
    client = s3_client(moto_server.url)
    series = _pick()
    for n, s in enumerate(series):
        if s["bucket"] not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
            client.create_bucket(Bucket=s["bucket"], ACL="public-read")  # anonymous reads, as IDC's
        for path in FILES[n:n + 2]:  # two real instances per series
            client.put_object(Bucket=s["bucket"], Key=f"{s['crdc']}/{uuid.uuid4()}.dcm", Body=path.read_bytes(), ACL="public-read")
    return series


def _where(series: list[dict[str, Any]]) -> str:
    return "SeriesInstanceUID IN (" + ", ".join(f"'{s['uid']}'" for s in series) + ")"


@pytest.mark.parametrize("transport", ["s3", "https"])
def test_idc_build_takes_license_and_collection_from_the_index(idc_bucket: list[dict[str, Any]], moto_server: MotoEndpoint,
                                                              tmp_path: Path, transport: str) -> None:
    source = IdcSource(_where(idc_bucket), b"idc test secret", endpoint_url=moto_server.url, transport=transport)
    config = from_dict({"stages": ["fetch", "parse", "image"], "defaults": {"dicom": {"slices": "all", "ocr": "never"}}}, None)
    summary = build(config, source, LocalRunner(1), str(tmp_path / "out"), progress=False)
    assert summary.units == 2 and summary.errors == 0 and summary.samples == 4
    rows = [r for p in (release_dir(tmp_path / "out") / "manifest" / "samples").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    by_collection = {r["dataset_name"]: r for r in rows}
    for s in idc_bucket:
        row = by_collection[s["collection"]]
        assert row["source"] == "idc" and row["license_family"] == ("comm" if s["license"] == "CC BY 4.0" else "noncomm")
        assert row["license_code"] == ("CC BY" if s["license"] == "CC BY 4.0" else "CC BY-NC")
    blob = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert not [s["uid"] for s in idc_bucket if s["uid"].encode() in blob]  # units are pseudonyms


def test_where_is_sql_over_the_index_and_reads_nothing_else(tmp_path: Path) -> None:
    rows = select_series("Modality = 'MR' AND collection_id = 'lidc_idri'", default_index())
    assert rows == []  # LIDC is CT and DX: nothing selected, nothing wrong
    assert len(select_series("Modality = 'CT' AND collection_id = 'lidc_idri'", default_index())) > 1000
    with pytest.raises(ValueError, match="--where"):
        select_series("Modalty = 'CT'", default_index())
    secret_csv = tmp_path / "x.csv"
    secret_csv.write_text("a\n1\n")
    with pytest.raises(ValueError, match="--where"):
        select_series(f"SeriesInstanceUID IN (SELECT a FROM read_csv('{secret_csv}'))", default_index())


def test_a_bad_where_stops_the_cli_before_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medcorpus.pipelines.cli import app

    result = CliRunner().invoke(app, ["build", "--source", "idc", "--where", "Modalty = 'CT'", "--out", str(tmp_path / "out")],
                                env={"MEDCORPUS_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 2 and "--where" in result.output and "Modalty" in result.output
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # nothing written
