"""``idc``: NCI Imaging Data Commons, public DICOM in anonymous buckets (s3, or https).

Series are selected with SQL over IDC's own Parquet index as the ``idc-index-data`` package ships it
(``--where "Modality = 'CT' AND collection_id = 'lidc_idri'"``, the columns of ``idc_index``), and
each selected series' instances are fetched from its folder ``<bucket>/<crdc_series_uuid>/`` with the
same S3 and HTTPS clients (and retry policy) as the PMC source, so a loopback server can stand in for
the bucket. The license is the index's ``license_short_name`` (never the bucket's name); the parse
stage maps it to a shard family by the config's ``licenses``. Units are named by keyed pseudonyms of
the SeriesInstanceUID, as in ``dicom:PATH``; a new version of a series (a new CRDC series UUID)
changes the unit's fingerprint.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterator

from medcorpus.pipelines.sources.dicom import DicomSeries
from medcorpus.retry import Backoff, retrying
from medcorpus.schemas.records import SkipError, UnitRef
from medcorpus.transforms.pseudonyms import pseudonym

COLUMNS = ("SeriesInstanceUID", "crdc_series_uuid", "aws_bucket", "license_short_name", "collection_id")


@dataclass(frozen=True)
class IdcSeries:
    bucket: str
    crdc_series_uuid: str
    license: str
    collection: str


def default_index() -> str:
    import idc_index_data

    return str(idc_index_data.IDC_INDEX_PARQUET_FILEPATH)


def select_series(where: str, index_path: str) -> list[dict[str, Any]]:
    """Rows of the index that ``where`` selects, by SeriesInstanceUID. The SQL runs in a DuckDB
    connection that can read nothing but the index file (external access off, that one path allowed)."""
    import duckdb

    con = duckdb.connect()
    try:
        quoted = index_path.replace("'", "''")
        con.execute(f"CREATE VIEW idc_index AS SELECT * FROM read_parquet('{quoted}')")
        con.execute(f"SET allowed_paths = ['{quoted}']")
        con.execute("SET enable_external_access = false")
        sql = f"SELECT {', '.join(COLUMNS)} FROM idc_index WHERE ({where}) ORDER BY SeriesInstanceUID"
        try:
            cursor = con.execute(sql)
        except duckdb.Error as exc:
            raise ValueError(f"--where {where!r}: {' '.join(str(exc).split())[:300]}") from None
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        con.close()


class IdcSource:
    name = "idc"
    parser = "dicom"

    def __init__(self, where: str, secret: bytes, *, index_path: str | None = None, endpoint_url: str | None = None,
                 transport: str = "s3", timeout_s: float = 60.0, max_retries: int = 4) -> None:
        if not where or not where.strip():
            raise ValueError("the idc source needs --where: SQL over IDC's index, e.g. \"Modality = 'CT'\"")
        if transport not in ("s3", "https"):
            raise ValueError(f"idc --transport {transport!r}: use s3 or https")
        self.where, self.secret, self.endpoint_url, self.transport = where, secret, endpoint_url, transport
        self.index_path = index_path or default_index()
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.key_id = hashlib.sha256(b"key-id\x1f" + secret).hexdigest()[:12]
        self.index: dict[str, IdcSeries] | None = None

    def build_index(self) -> dict[str, IdcSeries]:
        index = {}
        for row in select_series(self.where, self.index_path):
            unit_id = "series-" + pseudonym(self.secret, "series", f"series:{row['SeriesInstanceUID']}")
            index[unit_id] = IdcSeries(row["aws_bucket"], row["crdc_series_uuid"], row["license_short_name"] or "unknown",
                                       row["collection_id"])
        self.index = dict(sorted(index.items()))
        return self.index

    def list_units(self) -> Iterator[UnitRef]:
        for unit_id, series in self.build_index().items():
            fingerprint = hashlib.sha1(f"{self.key_id}\x1f{series.crdc_series_uuid}".encode()).hexdigest()
            yield UnitRef(self.name, unit_id, "", fingerprint)

    def _transport(self, bucket: str) -> Any:
        from medcorpus.pipelines.sources.pmc_cloud import _HttpsTransport, _S3Transport

        kind = _S3Transport if self.transport == "s3" else _HttpsTransport
        return kind(bucket, self.endpoint_url, self.timeout_s, 8)

    def open(self, unit: UnitRef) -> DicomSeries:
        from medcorpus.pipelines.sources.pmc_cloud import _Transient, _fetch_error

        index = self.index if self.index is not None else self.build_index()
        series = index.get(unit.unit_id)
        if series is None:
            raise SkipError("dicom_missing", "the series is no longer selected by --where")
        client = self._transport(series.bucket)
        loop = retrying(_Transient, self.max_retries, Backoff(0.5, 8.0))
        try:
            keys, token = [], None
            while True:
                page = loop(lambda: client.list(f"{series.crdc_series_uuid}/", None, token, 1000))
                keys += [k for k, _, _ in page.keys if k.endswith(".dcm")]
                if not (token := page.next_token):
                    break
            if not keys:
                raise SkipError("dicom_missing", "the series' folder in the bucket holds no instances")
            blobs = [loop(lambda k=k: client.get(k)) for k in sorted(keys)]
        except SkipError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified like the PMC source's fetches
            raise _fetch_error(exc, f"series {unit.unit_id}") from None
        finally:
            client.close()
        return DicomSeries(unit.unit_id, blobs, license_code=series.license, source_name=self.name,
                           dataset_name=series.collection)

    def read_media(self, unit: UnitRef, name: str) -> bytes:
        raise SkipError("image_not_found", "an IDC source has no media files")
