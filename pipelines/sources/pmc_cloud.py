"""``pmc-cloud``: the 2026 PMC Cloud Service layout on S3 (bucket ``pmc-oa-opendata``).

Layout (shared/docs/pmc-sources.md §1): every article *version* has its own prefix
``PMC<id>.<ver>/`` holding ``PMC<id>.<ver>.xml`` and the media files; per-version metadata lives at
``metadata/PMC<id>.<ver>.json`` with ``s3://<bucket>/<key>?md5=<hex>`` URLs. One unit = one article
at its **latest** version (highest version number, compared numerically); when that version is
retracted the article is skipped, never replaced by an older version.

Two transports reach the same bucket: ``s3`` (anonymous boto3, botocore ``UNSIGNED``) and ``https``
(plain GETs and ListObjectsV2 over httpx, the XML parsed by botocore's S3 model). Both retry timeouts, connection errors, 5xx and
503 SlowDown under the one retry policy (``medcorpus.retry``, on tenacity); every fetched object is md5-verified and cached
under ``cache_dir`` keyed by S3 key + md5 (metadata: key + ETag), written atomically, so an
interrupted crawl resumes without refetching. A fetch that still fails is a SkipError by class:
``fetch_transient`` (retries exhausted) and ``forbidden`` (403/401, never retried within a run) may
clear by themselves, so the build retries those units on its next runs; ``*_not_found`` (404),
``md5_mismatch`` and ``fetch_failed`` (any other answer) are final for this source version.

The object holds configuration only (clients, pools and locks are created lazily and dropped when
pickled), so it ships to any worker.
"""
from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs, quote, urlsplit

from medcorpus.files import atomic_write
from medcorpus.retry import Backoff, retrying
from medcorpus.pipelines.sources.base import ArticlePackage, meta_tuple, normalize_pmcid
from medcorpus.schemas.records import SkipError, UnitRef
from medcorpus.transforms.licenses import normalize_code

log = logging.getLogger(__name__)

LICENSE_GROUPS = ("oa_comm", "oa_noncomm", "phe_timebound", "other")
DEFAULT_BUCKET = "pmc-oa-opendata"

_META_KEY = re.compile(r"^metadata/(PMC\d+)\.(\d+)\.json$")
_VERSION_PREFIX = re.compile(r"^(PMC\d+)\.(\d+)/$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


# --------------------------------------------------------------------------------------------
# small pure helpers (tested directly)


def license_group(code: str | None) -> str:
    """The legacy directory a license code falls in: ``oa_comm`` (CC BY, CC0; public domain too),
    ``oa_noncomm`` (every other CC license), ``phe_timebound`` (COVID-19 public-health-emergency
    timebound statements: the exact code string is not documented, so anything naming PHE,
    timebound or COVID is matched) or ``other``."""
    if code and re.search(r"\bphe\b|time[\s_-]*bound|covid", code, re.I):
        return "phe_timebound"
    norm = normalize_code(code)
    if norm in ("CC BY", "CC0", "PD"):
        return "oa_comm"
    if norm and norm.startswith("CC "):
        return "oa_noncomm"
    return "other"


@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str
    md5: str | None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}" + (f"?md5={self.md5}" if self.md5 else "")


def parse_s3_url(url: str) -> S3Url:
    """``s3://pmc-oa-opendata/PMC1.1/PMC1.1.xml?md5=<hex>`` → bucket, key, md5 (lower-case)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise ValueError(f"not an s3:// object URL: {url!r}")
    md5 = parse_qs(parts.query).get("md5", [None])[0]
    if md5 is not None:
        md5 = md5.lower()
        if not _MD5.match(md5):
            raise ValueError(f"bad md5 in {url!r}")
    return S3Url(parts.netloc, parts.path.lstrip("/"), md5)


def parse_since(since: str | None) -> datetime | None:
    """ISO date or datetime → aware UTC datetime (a bare date means its midnight UTC)."""
    if not since:
        return None
    try:
        dt = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        dt = datetime.combine(date.fromisoformat(since), datetime.min.time())
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _strip_etag(etag: str | None) -> str:
    return (etag or "").strip().strip('"')


def _as_utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


# --------------------------------------------------------------------------------------------
# transports: one interface, errors classified for the retry loop


class _NotFound(Exception):
    """404 / NoSuchKey: permanent for this key."""


class _Forbidden(Exception):
    """403 / 401 (AccessDenied, also S3's answer for a missing key where listing is not allowed):
    not retried within a run, but a policy or credential change can clear it, so the next build
    tries again (a bounded number of times, pipelines/staging.py)."""


class _Transient(Exception):
    """Worth retrying: timeout, connection error, 5xx, SlowDown, a truncated body."""


class _Fatal(Exception):
    """Neither: a 4xx other than 404/403, a malformed answer."""


@dataclass
class _Listing:
    keys: list[tuple[str, str, datetime | None]]  # key, etag, last modified
    prefixes: list[str]
    next_token: str | None


@dataclass
class _Head:
    etag: str
    last_modified: datetime | None


class _S3Transport:
    def __init__(self, bucket: str, endpoint_url: str | None, timeout_s: float, pool: int) -> None:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        config = Config(
            signature_version=UNSIGNED,
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"total_max_attempts": 1, "mode": "standard"},  # our loop retries
            max_pool_connections=pool,
        )
        session = boto3.session.Session()
        self.client = session.client("s3", region_name="us-east-1", endpoint_url=endpoint_url,
                                     config=config)
        self.bucket = bucket

    def _classify(self, exc: Exception) -> Exception:
        from botocore.exceptions import (BotoCoreError, ClientError, ConnectionError as BcConnErr,
                                         ReadTimeoutError, ResponseStreamingError)

        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "NotFound", "404") or status == 404:
                return _NotFound(f"{code or status}")
            if code in ("AccessDenied", "403", "401", "Unauthorized") or status in (401, 403):
                return _Forbidden(f"{status} {code}".strip())
            if status >= 500 or code in ("SlowDown", "InternalError", "ServiceUnavailable",
                                         "RequestTimeout", "503", "500"):
                return _Transient(f"{status} {code}")
            return _Fatal(f"{status} {code}")
        if isinstance(exc, (BcConnErr, ReadTimeoutError, ResponseStreamingError)):
            return _Transient(repr(exc))
        if isinstance(exc, BotoCoreError):
            return _Transient(repr(exc))
        return exc

    def get(self, key: str) -> bytes:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
            return resp["Body"].read()
        except Exception as exc:  # classified below
            raise self._classify(exc) from exc

    def head(self, key: str) -> _Head:
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise self._classify(exc) from exc
        lm = resp.get("LastModified")
        return _Head(_strip_etag(resp.get("ETag")), _as_utc(lm) if lm else None)

    def list(self, prefix: str, delimiter: str | None, token: str | None, page_size: int) -> _Listing:
        kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": page_size}
        if delimiter:
            kw["Delimiter"] = delimiter
        if token:
            kw["ContinuationToken"] = token
        try:
            resp = self.client.list_objects_v2(**kw)
        except Exception as exc:
            raise self._classify(exc) from exc
        return _listing(resp)

    def close(self) -> None:
        self.client.close()


class _HttpsTransport:
    def __init__(self, bucket: str, endpoint_url: str | None, timeout_s: float, pool: int) -> None:
        import httpx

        self._httpx = httpx
        if endpoint_url:  # path-style against an S3-compatible endpoint
            self.base = f"{endpoint_url.rstrip('/')}/{bucket}"
        else:  # virtual-hosted style, as NLM documents it
            self.base = f"https://{bucket}.s3.amazonaws.com"
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            follow_redirects=True,
        )

    def _url(self, key: str) -> str:
        return f"{self.base}/{quote(key, safe='/~')}"

    def _request(self, method: str, url: str, **kw: Any) -> Any:
        httpx = self._httpx
        try:
            resp = self.client.request(method, url, **kw)
            if method == "GET":
                resp.read()
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise _Transient(repr(exc)) from exc
        if resp.status_code == 404:
            raise _NotFound("404")
        if resp.status_code in (401, 403):
            raise _Forbidden(f"{resp.status_code} {_error_code(resp.content)}".strip())
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _Transient(f"{resp.status_code} {_error_code(resp.content)}")
        if resp.status_code >= 300:
            raise _Fatal(f"{resp.status_code} {_error_code(resp.content)}")
        return resp

    def get(self, key: str) -> bytes:
        resp = self._request("GET", self._url(key))
        expected = resp.headers.get("content-length")
        if expected is not None and resp.headers.get("content-encoding") in (None, "identity") \
                and int(expected) != len(resp.content):
            raise _Transient(f"truncated body: {len(resp.content)} of {expected} bytes")
        return resp.content

    def head(self, key: str) -> _Head:
        resp = self._request("HEAD", self._url(key))
        lm = resp.headers.get("last-modified")
        return _Head(_strip_etag(resp.headers.get("etag")), _as_utc(parsedate_to_datetime(lm)) if lm else None)

    def list(self, prefix: str, delimiter: str | None, token: str | None, page_size: int) -> _Listing:
        params = {"list-type": "2", "prefix": prefix, "max-keys": str(page_size)}
        if delimiter:
            params["delimiter"] = delimiter
        if token:
            params["continuation-token"] = token
        resp = self._request("GET", self.base + "/", params=params)
        return _listing(_parse_list_xml(resp.content, dict(resp.headers)))

    def close(self) -> None:
        self.client.close()


def _listing(resp: dict[str, Any]) -> _Listing:
    """A ListObjectsV2 answer as botocore gives it (both transports): keys, prefixes, next token."""
    keys = [(o["Key"], _strip_etag(o.get("ETag")), _as_utc(o["LastModified"]) if o.get("LastModified") else None)
            for o in resp.get("Contents", [])]
    prefixes = [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
    token = resp.get("NextContinuationToken") if resp.get("IsTruncated") else None
    if resp.get("IsTruncated") and not token:
        raise _Fatal("truncated listing without NextContinuationToken")
    return _Listing(keys, prefixes, token)


@lru_cache(maxsize=1)
def _list_parser() -> tuple[Any, Any]:
    from botocore.parsers import RestXMLParser
    from botocore.session import get_session

    return RestXMLParser(), get_session().get_service_model("s3").operation_model("ListObjectsV2").output_shape


def _parse_list_xml(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """The https transport's listing body, parsed by botocore's own S3 model (no SDK call, no signing)."""
    from botocore.parsers import ResponseParserError

    if not body.strip():  # botocore reads nothing as an empty listing; a cut-off answer is not one
        raise _Transient("unparsable listing: empty body")
    parser, shape = _list_parser()
    try:
        return parser.parse({"body": body, "headers": headers, "status_code": 200}, shape)
    except ResponseParserError as exc:
        raise _Transient(f"unparsable listing: {exc}") from exc


def _error_code(body: bytes) -> str:
    m = re.search(rb"<Code>([^<]{1,64})</Code>", body or b"")
    return m.group(1).decode("ascii", "replace") if m else ""


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Version:
    pmcid: str
    version: int
    metadata_key: str
    etag: str
    last_modified: datetime | None


class PmcCloudSource:
    """Articles of the PMC Cloud Service bucket, one unit per article at its latest version."""

    name = "pmc-cloud"
    parser = "jats"  # journal articles: the JATS parse stage

    def __init__(
        self,
        *,
        cache_dir: str,
        bucket: str = DEFAULT_BUCKET,
        endpoint_url: str | None = None,
        transport: str = "s3",
        license_groups: tuple[str, ...] | None = None,
        since: str | None = None,
        ids: frozenset[str] | None = None,
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout_s: float = 30.0,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        seed: int | None = None,
        page_size: int = 1000,
        media_suffixes: tuple[str, ...] | None = None,
    ) -> None:
        """``retry_base_s``/``retry_max_s``/``seed``: the backoff of ``medcorpus.retry.Backoff``
        (``min(max, base*2**attempt)`` scaled by a seeded jitter in [0.5, 1.5)). ``media_suffixes``: prefetch in
        ``open`` only media whose names end so (e.g. image extensions); ``None`` prefetches all,
        the rest stay readable through ``read_media``."""
        if transport not in ("s3", "https"):
            raise ValueError(f"transport must be 's3' or 'https', not {transport!r}")
        if license_groups is not None:
            unknown = set(license_groups) - set(LICENSE_GROUPS)
            if unknown:
                raise ValueError(f"unknown license groups {sorted(unknown)}; known: {LICENSE_GROUPS}")
        if max_concurrency < 1 or max_retries < 0 or page_size < 1:
            raise ValueError("max_concurrency and page_size must be >= 1, max_retries >= 0")
        self.cache_dir = str(cache_dir)
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.transport = transport
        self.license_groups = tuple(license_groups) if license_groups is not None else None
        self.since = since
        self._since_dt = parse_since(since)
        self.ids = frozenset(normalize_pmcid(i) for i in ids) if ids is not None else None
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.seed = seed
        self.page_size = page_size
        self.media_suffixes = tuple(s.lower() for s in media_suffixes) if media_suffixes else None
        self._init_runtime()

    # -- runtime state: never pickled ---------------------------------------------------------

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._client: _S3Transport | _HttpsTransport | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._wait = Backoff(self.retry_base_s, self.retry_max_s, self.seed)
        self._sleep: Callable[[float], None] = time.sleep  # tests swap it to record the backoff
        self._failed: dict[tuple[str, str], SkipError] = {}  # (unit_id@version, name) → failure

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for k in ("_lock", "_client", "_pool", "_wait", "_sleep", "_failed", "inventory"):  # inventory: the driver's
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def close(self) -> None:
        """Stop the thread pool and close connections (the object stays usable: both come back
        lazily). The lock is not held while waiting: running fetches need it."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> "PmcCloudSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def client(self) -> _S3Transport | _HttpsTransport:
        with self._lock:
            if self._client is None:
                cls = _S3Transport if self.transport == "s3" else _HttpsTransport
                self._client = cls(self.bucket, self.endpoint_url, self.timeout_s, self.max_concurrency + 2)
            return self._client

    @property
    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="pmc-cloud")
            return self._pool

    # -- retry loop -----------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return self._wait.delay(attempt)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` with retries on transient errors; _NotFound/_Forbidden/_Fatal pass through at once."""
        def note(state: Any) -> None:
            log.debug("%s: %s; retry %d in %.2fs", what, state.outcome.exception(), state.attempt_number,
                      state.upcoming_sleep)

        loop = retrying(_Transient, self.max_retries, self._wait, sleep=lambda s: self._sleep(s), before_sleep=note)
        try:
            return loop(fn)
        except _Transient as exc:
            raise _Transient(f"{what}: gave up after {self.max_retries + 1} attempts: {exc}") from exc

    # -- cache ----------------------------------------------------------------------------------

    def _cache_path(self, key: str, tag: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts) or not re.fullmatch(r"[0-9A-Za-z._-]+", tag):
            raise ValueError(f"unsafe key for the cache: {key!r} ({tag!r})")
        return Path(self.cache_dir, self.bucket, *parts[:-1], f"{parts[-1]}~{tag}")

    def _cache_read(self, path: Path, md5: str | None) -> bytes | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if md5 and hashlib.md5(data).hexdigest() != md5:  # torn or tampered: fetch again
            log.warning("cache entry %s fails its md5; refetching", path)
            path.unlink(missing_ok=True)
            return None
        return data

    def _fetch(self, key: str, md5: str | None, *, cache_tag: str | None = None) -> bytes:
        """Bytes of ``key``, verified against ``md5`` (when given), from the cache when there.

        Raises _NotFound, _Forbidden, _Transient (retries exhausted), _Fatal, or SkipError('md5_mismatch').
        A wrong md5 is retried a couple of times (a corrupted transfer), not ``max_retries``."""
        tag = md5 or cache_tag
        try:
            path = self._cache_path(key, tag) if tag else None
        except ValueError as exc:  # '..' in a key from the metadata: never a path
            raise SkipError("unsafe_key", str(exc)) from exc
        if path is not None:
            cached = self._cache_read(path, md5)
            if cached is not None:
                return cached
        got = ""
        for _ in range(min(self.max_retries, 2) + 1):
            data = self._call(f"GET {key}", lambda: self.client.get(key))
            got = hashlib.md5(data).hexdigest()
            if md5 is None or got == md5:
                if path is not None:
                    atomic_write(path, data)
                return data
        raise SkipError("md5_mismatch", f"s3://{self.bucket}/{key}: expected md5 {md5}, got {got}")

    # -- listing --------------------------------------------------------------------------------

    def _list_all(self, prefix: str, delimiter: str | None = None) -> Iterator[_Listing]:
        token: str | None = None
        seen: set[str] = set()
        while True:
            page = self._call(f"LIST {prefix}", lambda: self.client.list(prefix, delimiter, token, self.page_size))
            yield page
            if not page.next_token:
                return
            if page.next_token in seen:  # a server looping on one token must not loop us forever
                raise RuntimeError(f"listing {prefix!r} repeated continuation token")
            seen.add(page.next_token)
            token = page.next_token

    def _latest_from_metadata_listing(self) -> Iterator[_Version]:
        """Stream ``metadata/`` in key order. All versions of one PMCID are adjacent (the '.' after
        the id sorts before any digit), so each article is complete when the next one starts."""
        current: list[_Version] = []
        last_id = ""
        for page in self._list_all("metadata/"):
            for key, etag, lm in page.keys:
                m = _META_KEY.match(key)
                if not m:
                    continue  # inventories, readmes, anything else under metadata/
                v = _Version(m.group(1), int(m.group(2)), key, etag, lm)
                if current and v.pmcid != current[0].pmcid:
                    yield max(current, key=lambda x: x.version)
                    current = []
                if v.pmcid < last_id:
                    raise RuntimeError(f"listing not in key order at {key!r}")
                last_id = v.pmcid
                current.append(v)
        if current:
            yield max(current, key=lambda x: x.version)

    def _latest_for_id(self, pmcid: str) -> _Version | None:
        versions: list[int] = []
        for page in self._list_all(f"{pmcid}.", "/"):
            for p in page.prefixes:
                m = _VERSION_PREFIX.match(p)
                if m and m.group(1) == pmcid:
                    versions.append(int(m.group(2)))
        if not versions:
            log.info("%s: no versions in s3://%s", pmcid, self.bucket)
            return None
        ver = max(versions)
        for key in (f"metadata/{pmcid}.{ver}.json", f"{pmcid}.{ver}/{pmcid}.{ver}.json"):
            try:
                head = self._call(f"HEAD {key}", lambda: self.client.head(key))
            except (_NotFound, _Forbidden):  # open() fetches it and reports why
                continue
            return _Version(pmcid, ver, key, head.etag, head.last_modified)
        # The version exists but has no metadata: list it so open() reports why it is unusable.
        return _Version(pmcid, ver, f"metadata/{pmcid}.{ver}.json", "", None)

    def list_units(self) -> Iterator[UnitRef]:
        if self.ids is not None:
            ordered = sorted(self.ids)
            latest: Iterable[_Version | None] = self.pool.map(self._wrap_latest, ordered)
        else:
            latest = self._latest_from_metadata_listing()
        for v in latest:
            if v is None:
                continue
            if self._since_dt is not None and v.last_modified is not None and v.last_modified < self._since_dt:
                continue
            yield self._unit(v)

    def _wrap_latest(self, pmcid: str) -> _Version | None:
        try:
            return self._latest_for_id(pmcid)
        except (_Forbidden, _Transient, _Fatal) as exc:
            raise RuntimeError(f"listing {pmcid} failed: {exc}") from exc

    def _unit(self, v: _Version) -> UnitRef:
        meta = {
            "pmcid": v.pmcid,
            "version": v.version,
            "metadata_key": v.metadata_key,
            "last_modified": v.last_modified.isoformat() if v.last_modified else None,
            "bucket": self.bucket,
            "etag": v.etag or None,
        }
        return UnitRef(
            source=self.name,
            unit_id=v.pmcid,
            locator=f"s3://{self.bucket}/{v.metadata_key}",
            fingerprint=v.etag or f"{v.pmcid}.{v.version}",
            meta=meta_tuple(meta),
        )

    # -- open / read_media ----------------------------------------------------------------------

    def _metadata(self, unit: UnitRef) -> dict[str, Any]:
        meta = unit.meta_dict()
        key = meta.get("metadata_key") or f"metadata/{unit.unit_id}.{meta.get('version', 1)}.json"
        etag = str(meta.get("etag") or "")
        md5 = etag if _MD5.match(etag) else None
        try:
            # A single-part ETag is the object's md5: verify with it; the cache is keyed by it
            # (a multipart ETag only keys the cache; no ETag at all: not cached).
            raw = self._fetch(key, md5, cache_tag=None if md5 else _safe_tag(etag))
        except _NotFound as exc:
            raise SkipError("metadata_not_found", f"s3://{self.bucket}/{key}: {exc}") from exc
        except (_Forbidden, _Transient, _Fatal) as exc:
            raise _fetch_error(exc, f"s3://{self.bucket}/{key}") from exc
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise SkipError("metadata_malformed", f"s3://{self.bucket}/{key}: {exc}") from exc
        return doc

    def _media_urls(self, unit: UnitRef, doc: dict[str, Any]) -> dict[str, S3Url]:
        """Media name (relative to the version prefix) → URL; malformed entries are logged."""
        version_prefix = f"{unit.unit_id}.{unit.meta_dict().get('version') or doc.get('version')}/"
        out: dict[str, S3Url] = {}
        for raw in doc.get("media_urls") or []:
            try:
                u = parse_s3_url(str(raw))
            except ValueError as exc:
                log.warning("%s: skipping media URL: %s", unit.unit_id, exc)
                continue
            name = u.key[len(version_prefix):] if u.key.startswith(version_prefix) else posixpath.basename(u.key)
            out.setdefault(name, u)
        return out

    def open(self, unit: UnitRef) -> ArticlePackage:
        doc = self._metadata(unit)
        version, code, xml_url = self._admit(unit, doc)
        media_urls = self._media_urls(unit, doc)
        prefetch = [n for n in media_urls
                    if self.media_suffixes is None or n.lower().endswith(self.media_suffixes)]
        futures = {n: self.pool.submit(self._fetch_media, unit, n, media_urls[n]) for n in prefetch}
        try:
            xml = self._fetch(xml_url.key, xml_url.md5)
        except BaseException as exc:
            for fut in futures.values():  # the article is lost: don't start more media fetches
                fut.cancel()
            for fut in futures.values():
                if not fut.cancelled():
                    fut.exception()  # wait: nothing of this article keeps running after open()
            if isinstance(exc, _NotFound):
                raise SkipError("xml_not_found", f"{xml_url.url}: {exc}") from exc
            if isinstance(exc, (_Forbidden, _Transient, _Fatal)):
                raise _fetch_error(exc, xml_url.url) from exc
            raise
        media: dict[str, bytes] = {}
        for n, fut in futures.items():
            try:
                media[n] = fut.result()
            except SkipError:
                pass  # recorded in self._failed (permanent) or retried later by read_media
            except Exception:  # a bug must not sink the article; read_media will tell
                log.exception("%s: prefetching %s failed", unit.unit_id, n)
        return ArticlePackage(unit=unit, xml=xml, media_names=sorted(media_urls), source=self, version=version,
                              license_code=code, source_url=xml_url.url, source_md5=xml_url.md5, media=media)

    def _admit(self, unit: UnitRef, doc: dict[str, Any]) -> tuple[int, Any, S3Url]:
        """The version, license code and XML location of a unit whose metadata lets it in; a
        SkipError (retracted, not open access, license excluded, malformed) otherwise."""
        meta = unit.meta_dict()
        pmcid = str(doc.get("pmcid") or "")
        if pmcid and normalize_pmcid(pmcid) != unit.unit_id:
            raise SkipError("metadata_mismatch", f"metadata of {unit.unit_id} names {pmcid}")
        version = int(meta.get("version") or doc.get("version") or 1)  # the listed key decides
        where = f"{unit.unit_id}.{version}"
        if doc.get("version") is not None and str(doc.get("version")) != str(version):
            log.warning("%s: metadata says version %s", where, doc.get("version"))
        if doc.get("is_retracted"):
            raise SkipError("retracted", f"{where} (the latest version) is retracted")
        if doc.get("is_pmc_openaccess") is False or str(doc.get("is_pmc_openaccess")).lower() == "false":
            raise SkipError("not_open_access", f"{where}: is_pmc_openaccess is false")
        code = doc.get("license_code")
        group = license_group(code)
        if self.license_groups is not None and group not in self.license_groups:
            raise SkipError("license_excluded",
                            f"{where}: license {code!r} is in group {group}, not in {list(self.license_groups)}")
        if not doc.get("xml_url"):
            raise SkipError("xml_not_found", f"{where}: metadata has no xml_url")
        try:
            xml_url = parse_s3_url(str(doc["xml_url"]))
        except ValueError as exc:
            raise SkipError("metadata_malformed", f"{where}: {exc}") from exc
        if xml_url.bucket != self.bucket:  # a mirror keeps NLM's keys (and URLs): read the mirror
            xml_url = S3Url(self.bucket, xml_url.key, xml_url.md5)
        return version, code, xml_url

    def _fetch_media(self, unit: UnitRef, name: str, url: S3Url) -> bytes:
        fkey = (f"{unit.unit_id}@{unit.fingerprint}", name)
        failed = self._failed.get(fkey)
        if failed is not None:
            raise failed
        try:
            return self._fetch(url.key, url.md5)
        except SkipError as exc:  # md5_mismatch after its retries: permanent for this md5
            err = exc
        except _NotFound as exc:
            err = SkipError("image_not_found", f"{name}: listed in the metadata but {url.url} answers {exc}")
        except (_Forbidden, _Transient, _Fatal) as exc:  # not cached: a later read_media tries again
            raise _fetch_error(exc, f"{name}: {url.url}") from exc
        with self._lock:
            self._failed[fkey] = err
        raise err

    def read_media(self, unit: UnitRef, name: str) -> bytes:
        fkey = (f"{unit.unit_id}@{unit.fingerprint}", name)
        failed = self._failed.get(fkey)
        if failed is not None:
            raise failed
        url = self._media_urls(unit, self._metadata(unit)).get(name)
        if url is None:
            raise SkipError("image_not_found", f"{name}: not among the media of {unit.unit_id}")
        return self._fetch_media(unit, name, url)


def _fetch_error(exc: Exception, where: str) -> SkipError:
    """The recorded reason of a failed fetch, by class: ``forbidden`` and ``fetch_transient`` may
    clear by themselves (the next build retries the unit), ``fetch_failed`` (any other answer) not."""
    reason = ("forbidden" if isinstance(exc, _Forbidden) else
              "fetch_transient" if isinstance(exc, _Transient) else "fetch_failed")
    return SkipError(reason, f"{where}: {exc}")


def _safe_tag(fingerprint: str | None) -> str | None:
    if not fingerprint:
        return None
    tag = re.sub(r"[^0-9A-Za-z._-]", "_", fingerprint)
    return tag or None
