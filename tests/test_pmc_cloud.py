"""pmc-cloud source against a real S3-compatible server (moto, server mode) on loopback.

The bucket is seeded from real shared articles in the 2026 pmc-oa-opendata layout (see
fixtures_s3.seed_pmc_bucket for the cases). Request counts and injected faults come from a small
reverse proxy in front of moto (fixtures_s3.FaultProxy).
"""
from __future__ import annotations

import hashlib
import json
import pickle
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest

_here = str(Path(__file__).resolve().parent)
if _here not in sys.path:  # --import-mode=importlib leaves tests/ off sys.path
    sys.path.insert(0, _here)

from fixtures_s3 import (  # noqa: E402
    Fault, FaultProxy, S3Bucket, SeededPmcBucket, fault_proxy, moto_server, pmc_bucket, s3_client,
    s3_output_bucket,
)
from medcorpus.pipelines.sources.base import ArticlePackage  # noqa: E402
from medcorpus.pipelines.sources.pmc_cloud import (  # noqa: E402
    PmcCloudSource, _HttpsTransport, license_group, normalize_pmcid, parse_s3_url, parse_since,
)
from medcorpus.schemas.records import SkipError, UnitRef  # noqa: E402

__all__ = ["moto_server", "pmc_bucket", "fault_proxy", "s3_output_bucket"]  # fixtures used here

TRANSPORTS = ["s3", "https"]
FAST = {"retry_base_s": 0.005, "retry_max_s": 0.05, "seed": 1234}


def make(tmp_path: Path, endpoint: str, transport: str = "s3", cache: str = "cache", **kw) -> PmcCloudSource:
    opts = {**FAST, **kw}
    return PmcCloudSource(cache_dir=str(tmp_path / cache), endpoint_url=endpoint, transport=transport, **opts)


def object_gets(proxy: FaultProxy) -> list[str]:
    """Keys of object GETs (not listings) the proxy forwarded or faulted."""
    out = []
    for method, path, _ in proxy.requests("GET"):
        if "?" in path or path.rstrip("/").count("/") < 2:
            continue
        out.append(unquote(path.split("/", 2)[2]))
    return out


def listings(proxy: FaultProxy) -> list[str]:
    return [p for m, p, _ in proxy.requests("GET") if "list-type=2" in p]


def by_id(units: list[UnitRef]) -> dict[str, UnitRef]:
    return {u.unit_id: u for u in units}


# ------------------------------------------------------------------------------------------------
# pure helpers


def test_normalize_pmcid():
    assert normalize_pmcid("PMC123") == normalize_pmcid("pmc123") == normalize_pmcid(" 123 ") == "PMC123"
    assert normalize_pmcid("PMC0123.4") == "PMC123"
    with pytest.raises(ValueError):
        normalize_pmcid("PMCX1")


def test_parse_s3_url():
    u = parse_s3_url("s3://pmc-oa-opendata/PMC1.2/PMC1.2.xml?md5=0123456789ABCDEF0123456789abcdef")
    assert (u.bucket, u.key, u.md5) == ("pmc-oa-opendata", "PMC1.2/PMC1.2.xml", "0123456789abcdef0123456789abcdef")
    assert parse_s3_url("s3://b/k/x.jpg").md5 is None
    for bad in ("https://b/k", "s3://b/", "s3://b/k?md5=xyz"):
        with pytest.raises(ValueError):
            parse_s3_url(bad)


def test_license_group():
    assert license_group("CC BY") == license_group("CC0") == license_group("cc-by 4.0") == "oa_comm"
    assert license_group("CC BY-NC") == license_group("CC BY-NC-ND") == license_group("CC BY-SA") == "oa_noncomm"
    assert license_group("PHE TIMEBOUND") == license_group("COVID-19 timebound") == "phe_timebound"
    assert license_group("NO-CC CODE") == license_group(None) == license_group("") == "other"


def test_parse_since():
    assert parse_since("2026-03-01").isoformat() == "2026-03-01T00:00:00+00:00"
    assert parse_since("2026-03-01T12:00:00Z").isoformat() == "2026-03-01T12:00:00+00:00"
    assert parse_since(None) is None


def test_constructor_validates():
    with pytest.raises(ValueError):
        PmcCloudSource(cache_dir="/tmp/x", transport="ftp")
    with pytest.raises(ValueError):
        PmcCloudSource(cache_dir="/tmp/x", license_groups=("oa_comm", "commercial"))


def test_unsafe_keys_never_become_cache_paths(tmp_path):
    src = PmcCloudSource(cache_dir=str(tmp_path), endpoint_url="http://127.0.0.1:9")
    for key in ("PMC1.1/../../../etc/passwd", "../x", ""):
        with pytest.raises(SkipError) as e:
            src._fetch(key, "0" * 32)
        assert e.value.reason == "unsafe_key"
    assert not any(tmp_path.iterdir())


def test_https_urls_without_endpoint():
    t = _HttpsTransport("pmc-oa-opendata", None, 5.0, 2)
    try:
        assert t.base == "https://pmc-oa-opendata.s3.amazonaws.com"
        assert t._url("PMC1.1/a b+c.jpg") == "https://pmc-oa-opendata.s3.amazonaws.com/PMC1.1/a%20b%2Bc.jpg"
    finally:
        t.close()


# ------------------------------------------------------------------------------------------------
# listing


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_list_units_latest_versions_paginated(tmp_path, pmc_bucket: SeededPmcBucket, fault_proxy, transport):
    src = make(tmp_path, fault_proxy.url, transport, page_size=4)
    units = list(src.list_units())
    ids = [u.unit_id for u in units]
    assert ids == sorted(ids) == sorted(pmc_bucket.articles)
    assert len(listings(fault_proxy)) >= 5  # ~30 metadata keys at 4 a page: pagination followed
    meta = s3_client(pmc_bucket.endpoint_url)
    for u in units:
        art = pmc_bucket.articles[u.unit_id]
        m = u.meta_dict()
        assert u.source == "pmc-cloud"
        assert m["pmcid"] == u.unit_id and m["version"] == art.latest
        key = f"metadata/{u.unit_id}.{art.latest}.json"
        assert u.locator == f"s3://{pmc_bucket.bucket}/{key}"
        body = meta.get_object(Bucket=pmc_bucket.bucket, Key=key)["Body"].read()
        assert u.fingerprint == hashlib.md5(body).hexdigest()
    got = by_id(units)
    assert got[pmc_bucket.cases["two_versions"]].meta_dict()["version"] == 2
    assert got[pmc_bucket.cases["ten_versions"]].meta_dict()["version"] == 10  # 10 > 9 numerically
    assert got[pmc_bucket.cases["retracted_latest"]].meta_dict()["version"] == 2  # not replaced by v1
    src.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_list_units_by_ids_uses_version_prefixes(tmp_path, pmc_bucket, fault_proxy, transport):
    wanted = {pmc_bucket.cases["two_versions"], pmc_bucket.cases["ten_versions"].lower(),
              pmc_bucket.cases["retracted_latest"].removeprefix("PMC"), "PMC1234567"}  # last one absent
    src = make(tmp_path, fault_proxy.url, transport, ids=frozenset(wanted))
    units = list(src.list_units())
    assert [u.unit_id for u in units] == sorted([pmc_bucket.cases["two_versions"], pmc_bucket.cases["ten_versions"],
                                                 pmc_bucket.cases["retracted_latest"]])
    assert {u.unit_id: u.meta_dict()["version"] for u in units} == {
        pmc_bucket.cases["two_versions"]: 2, pmc_bucket.cases["ten_versions"]: 10, pmc_bucket.cases["retracted_latest"]: 2}
    lists = [unquote(p) for p in listings(fault_proxy)]
    assert all("delimiter=/" in p for p in lists), lists
    assert any(f"prefix={pmc_bucket.cases['ten_versions']}." in p for p in lists)
    assert not any("prefix=metadata/" in p for p in lists)  # no full listing
    # The same fingerprint as the full listing gives (HEAD of the metadata object).
    full = by_id(list(make(tmp_path, pmc_bucket.endpoint_url, transport, cache="c2").list_units()))
    for u in units:
        assert u.fingerprint == full[u.unit_id].fingerprint
        assert u.locator == full[u.unit_id].locator
    src.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_since_filters_on_metadata_last_modified(tmp_path, pmc_bucket, transport):
    ep = pmc_bucket.endpoint_url
    after = {pmcid for pmcid, a in pmc_bucket.articles.items() if a.uploaded_after_split}
    assert after == {pmc_bucket.cases["two_versions"], pmc_bucket.cases["new_after_split"]}
    split = pmc_bucket.split_time
    assert {u.unit_id for u in make(tmp_path, ep, transport, since=split.isoformat()).list_units()} == after
    earlier = (split - timedelta(days=1)).date().isoformat()
    assert len(list(make(tmp_path, ep, transport, since=earlier).list_units())) == len(pmc_bucket.articles)
    later = (split + timedelta(days=2)).date().isoformat()
    assert list(make(tmp_path, ep, transport, since=later).list_units()) == []
    # ids mode honours since too (Last-Modified of the HEAD)
    ids = frozenset({pmc_bucket.cases["two_versions"], pmc_bucket.cases["noncomm"]})
    assert [u.unit_id for u in make(tmp_path, ep, transport, ids=ids, since=split.isoformat()).list_units()] == [
        pmc_bucket.cases["two_versions"]]


# ------------------------------------------------------------------------------------------------
# open / read_media


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_open_latest_version_with_media(tmp_path, pmc_bucket, transport):
    art = pmc_bucket.article("two_versions")
    src = make(tmp_path, pmc_bucket.endpoint_url, transport)
    unit = by_id(list(src.list_units()))[art.pmcid]
    pkg = src.open(unit)
    assert isinstance(pkg, ArticlePackage)
    assert pkg.version == 2 and pkg.unit == unit and pkg.source is src
    assert pkg.xml == art.xml
    assert pkg.source_url == f"s3://{pmc_bucket.bucket}/{art.pmcid}.2/{art.pmcid}.2.xml?md5={hashlib.md5(art.xml).hexdigest()}"
    assert pkg.source_md5 == hashlib.md5(art.xml).hexdigest()
    assert pkg.license_code == "CC BY"
    assert len(art.media_names) == 5  # v1 had one image; v2 has all five
    assert pkg.media_names == sorted(art.media_names)
    assert pkg.media == art.media
    assert pkg.read_media("fig2.jpg") == art.media["fig2.jpg"]
    assert src.read_media(unit, "fig3.jpg") == art.media["fig3.jpg"]
    with pytest.raises(SkipError) as e:
        src.read_media(unit, "fig99.jpg")
    assert e.value.reason == "image_not_found"
    src.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_open_skips_retracted_and_non_oa(tmp_path, pmc_bucket, transport):
    src = make(tmp_path, pmc_bucket.endpoint_url, transport)
    units = by_id(list(src.list_units()))
    with pytest.raises(SkipError) as e:
        src.open(units[pmc_bucket.cases["retracted_latest"]])
    assert e.value.reason == "retracted" and ".2" in e.value.detail
    with pytest.raises(SkipError) as e:
        src.open(units[pmc_bucket.cases["not_open_access"]])
    assert e.value.reason == "not_open_access"
    src.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_missing_and_bad_media_are_per_file_errors(tmp_path, pmc_bucket, fault_proxy, transport):
    src = make(tmp_path, fault_proxy.url, transport)
    units = by_id(list(src.list_units()))
    for case, name, reason in (("missing_media", "g003.png", "image_not_found"),
                               ("bad_md5_media", "fig3.jpg", "md5_mismatch")):
        art = pmc_bucket.article(case)
        pkg = src.open(units[art.pmcid])  # the article opens
        assert name in pkg.media_names and name not in pkg.media
        good = {n: b for n, b in art.media.items() if n != name}
        assert pkg.media == good
        key = f"{art.pmcid}.1/{name}"
        before = object_gets(fault_proxy).count(key)
        assert before >= 1
        for _ in range(2):  # the failure is cached: no refetch
            with pytest.raises(SkipError) as e:
                pkg.read_media(name)
            assert e.value.reason == reason and name in e.value.detail
        assert object_gets(fault_proxy).count(key) == before
    # md5 mismatch is retried a bounded number of times (a corrupted transfer), then given up
    assert object_gets(fault_proxy).count(f"{pmc_bucket.cases['bad_md5_media']}.1/fig3.jpg") == 3
    assert object_gets(fault_proxy).count(f"{pmc_bucket.cases['missing_media']}.1/g003.png") == 1  # 404: no retry
    src.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_license_groups(tmp_path, pmc_bucket, transport):
    ep = pmc_bucket.endpoint_url
    expect = {"two_versions": "oa_comm", "bad_md5_media": "oa_comm", "noncomm": "oa_noncomm",
              "other_license": "other", "phe_timebound": "phe_timebound"}
    for group in ("oa_comm", "oa_noncomm", "phe_timebound", "other"):
        src = make(tmp_path, ep, transport, license_groups=(group,))
        units = by_id(list(src.list_units()))
        assert len(units) == len(pmc_bucket.articles)  # listing is cheap: groups need the metadata
        for case, g in expect.items():
            unit = units[pmc_bucket.cases[case]]
            if g == group:
                assert src.open(unit).license_code == pmc_bucket.article(case).license_code
            else:
                with pytest.raises(SkipError) as e:
                    src.open(unit)
                assert e.value.reason == "license_excluded" and g in e.value.detail
        src.close()
    src = make(tmp_path, ep, transport, license_groups=("oa_comm", "oa_noncomm"))
    units = by_id(list(src.list_units()))
    assert src.open(units[pmc_bucket.cases["noncomm"]]).license_code == "CC BY-NC-ND"
    src.close()


# ------------------------------------------------------------------------------------------------
# retries, concurrency


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retries_slowdown_500_stall_and_reset(tmp_path, pmc_bucket, fault_proxy, transport):
    art = pmc_bucket.article("two_versions")
    xml_key = f"{art.pmcid}.2/{art.pmcid}.2.xml"
    fault_proxy.faults += [
        Fault("500", 2, lambda m, p: "list-type=2" in p),
        Fault("slowdown", 2, lambda m, p: p.endswith(xml_key)),
        Fault("stall", 1, lambda m, p: p.endswith("/fig2.jpg"), stall_s=5.0),
        Fault("reset", 1, lambda m, p: p.endswith("/fig3.jpg")),
    ]
    src = make(tmp_path, fault_proxy.url, transport, timeout_s=1.0, ids=frozenset({art.pmcid}))
    slept: list[float] = []
    src._sleep = slept.append
    units = list(src.list_units())
    assert [u.unit_id for u in units] == [art.pmcid]
    pkg = src.open(units[0])
    assert pkg.xml == art.xml and pkg.media == art.media
    assert all(f.hits == f.times for f in fault_proxy.faults)
    statuses = [s for m, p, s in fault_proxy.requests(contains=xml_key)]
    assert statuses == [503, 503, 200]  # no hidden retries inside boto3/httpx
    assert statuses.count(503) == 2
    assert len(slept) == 6  # one backoff per injected fault
    src.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retries_exhausted(tmp_path, pmc_bucket, fault_proxy, transport):
    art = pmc_bucket.article("two_versions")
    xml_key = f"{art.pmcid}.2/{art.pmcid}.2.xml"
    src = make(tmp_path, fault_proxy.url, transport, max_retries=2)
    unit = by_id(list(src.list_units()))[art.pmcid]
    fault_proxy.faults.append(Fault("slowdown", 100, lambda m, p: p.endswith(xml_key)))
    with pytest.raises(SkipError) as e:
        src.open(unit)
    assert e.value.reason == "fetch_transient" and "3 attempts" in e.value.detail
    assert len(fault_proxy.requests(contains=xml_key)) == 3
    # a media file that keeps failing is a per-file error and is not cached as permanent
    src.close()
    src = make(tmp_path, fault_proxy.url, transport, max_retries=2, cache="fresh")
    fault_proxy.faults[:] = [Fault("500", 100, lambda m, p: p.endswith("/fig1.jpg"))]
    pkg = src.open(unit)
    assert "fig1.jpg" in pkg.media_names and "fig1.jpg" not in pkg.media
    with pytest.raises(SkipError) as e:
        pkg.read_media("fig1.jpg")
    assert e.value.reason == "fetch_transient"
    fault_proxy.faults.clear()
    assert pkg.read_media("fig1.jpg") == art.media["fig1.jpg"]  # recovers once the server does
    src.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_forbidden_is_its_own_reason_and_not_retried_within_a_run(tmp_path, pmc_bucket, fault_proxy, transport):
    art = pmc_bucket.article("noncomm")
    meta_key = f"metadata/{art.pmcid}.1.json"
    src = make(tmp_path, fault_proxy.url, transport, ids=frozenset({art.pmcid}))
    unit = by_id(list(src.list_units()))[art.pmcid]
    fault_proxy.faults.append(Fault("403", 100, lambda m, p: m == "GET" and p.endswith(meta_key)))
    with pytest.raises(SkipError) as e:
        src.open(unit)
    assert e.value.reason == "forbidden" and "403" in e.value.detail
    assert len(fault_proxy.requests("GET", contains=meta_key)) == 1  # retrying a 403 in a loop helps nothing
    fault_proxy.faults.clear()
    assert src.open(unit).xml == art.xml  # nothing of the 403 was cached
    src.close()


def test_backoff_is_exponential_and_seeded(tmp_path, pmc_bucket, fault_proxy):
    art = pmc_bucket.article("noncomm")
    key = f"{art.pmcid}.1/{art.pmcid}.1.xml"
    runs = []
    for i in range(2):
        fault_proxy.faults[:] = [Fault("slowdown", 4, lambda m, p: p.endswith(key))]
        src = make(tmp_path, fault_proxy.url, cache=f"c{i}", ids=frozenset({art.pmcid}),
                   retry_base_s=0.1, retry_max_s=0.5, seed=42)
        slept: list[float] = []
        src._sleep = slept.append
        src.open(next(src.list_units()))
        runs.append(slept)
        src.close()
    assert runs[0] == runs[1] and len(runs[0]) == 4
    for attempt, delay in enumerate(runs[0]):
        assert 0.5 * min(0.5, 0.1 * 2 ** attempt) <= delay < 1.5 * min(0.5, 0.1 * 2 ** attempt)
    other = make(tmp_path, fault_proxy.url, cache="c9", retry_base_s=0.1, retry_max_s=0.5, seed=43)
    assert [other._backoff(a) for a in range(4)] != runs[0]


def test_media_fetch_concurrency_is_bounded(tmp_path, pmc_bucket, fault_proxy):
    art = pmc_bucket.article("missing_media")  # 11 media files present
    src = make(tmp_path, fault_proxy.url, max_concurrency=3)
    unit = by_id(list(src.list_units()))[art.pmcid]
    fault_proxy.reset()
    fault_proxy.faults.append(Fault("delay", 100, lambda m, p: p.endswith(".png"), stall_s=0.1))
    pkg = src.open(unit)
    assert len(pkg.media) == 11
    assert 2 <= fault_proxy.max_in_flight <= 3 + 1  # the pool, plus the XML GET of open() itself
    src.close()


# ------------------------------------------------------------------------------------------------
# cache and resume


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resume_makes_no_gets_for_cached_objects(tmp_path, pmc_bucket, fault_proxy, transport):
    def crawl(src: PmcCloudSource, limit: int | None = None) -> dict[str, str]:
        out = {}
        for i, unit in enumerate(src.list_units()):
            if limit is not None and i >= limit:
                break  # "interrupted"
            try:
                pkg = src.open(unit)
                out[unit.unit_id] = f"ok {len(pkg.media)}/{len(pkg.media_names)}"
            except SkipError as e:
                out[unit.unit_id] = e.reason
        return out

    first = make(tmp_path, fault_proxy.url, transport)
    part = crawl(first, limit=4)  # an interrupted crawl
    first.close()
    gets_first = set(object_gets(fault_proxy))
    assert gets_first and not list((tmp_path / "cache").rglob("*.part"))  # atomic writes leave no temp files

    fault_proxy.reset()
    second = make(tmp_path, fault_proxy.url, transport)
    full = crawl(second)
    second.close()
    assert {k: full[k] for k in part} == part
    refetched = set(object_gets(fault_proxy)) & gets_first
    permanent_failures = {f"{pmc_bucket.cases['missing_media']}.1/g003.png",
                          f"{pmc_bucket.cases['bad_md5_media']}.1/fig3.jpg"}
    assert refetched <= permanent_failures  # everything fetched before came from the cache

    fault_proxy.reset()
    third = make(tmp_path, fault_proxy.url, transport)
    assert crawl(third) == full
    third.close()
    assert set(object_gets(fault_proxy)) <= permanent_failures
    assert full[pmc_bucket.cases["retracted_latest"]] == "retracted"
    assert full[pmc_bucket.cases["two_versions"]] == "ok 5/5"
    assert full[pmc_bucket.cases["missing_media"]] == "ok 11/12"


def test_corrupt_cache_entry_is_refetched(tmp_path, pmc_bucket, fault_proxy):
    art = pmc_bucket.article("two_versions")
    src = make(tmp_path, fault_proxy.url)
    unit = by_id(list(src.list_units()))[art.pmcid]
    src.open(unit)
    [cached] = list((tmp_path / "cache").rglob(f"{art.pmcid}.2.xml~*"))
    cached.write_bytes(b"<torn")
    fault_proxy.reset()
    assert src.open(unit).xml == art.xml
    assert object_gets(fault_proxy) == [f"{art.pmcid}.2/{art.pmcid}.2.xml"]
    assert cached.read_bytes() == art.xml


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mirror_bucket_keeps_nlm_urls(tmp_path, pmc_bucket, transport):
    """A mirror (another bucket name) holds NLM's keys and metadata, whose URLs still name
    pmc-oa-opendata: objects are read from the mirror."""
    art = pmc_bucket.article("two_versions")
    client = s3_client(pmc_bucket.endpoint_url)
    mirror = f"pmc-mirror-{transport}"
    client.create_bucket(Bucket=mirror, ACL="public-read")
    base = f"{art.pmcid}.2"
    for key in (f"metadata/{base}.json", f"{base}/{base}.xml", *(f"{base}/{n}" for n in art.media_names)):
        client.copy_object(Bucket=mirror, Key=key, CopySource={"Bucket": pmc_bucket.bucket, "Key": key}, ACL="public-read")
    src = make(tmp_path, pmc_bucket.endpoint_url, transport, bucket=mirror)
    [unit] = list(src.list_units())
    pkg = src.open(unit)
    assert pkg.xml == art.xml and pkg.media == art.media
    assert pkg.source_url.startswith(f"s3://{mirror}/{base}/{base}.xml?md5=")
    src.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ids_mode_metadata_fallbacks(tmp_path, pmc_bucket, transport):
    """ids mode: metadata only next to the XML is found; a version with no metadata at all is
    listed and then skipped with a clear reason."""
    client = s3_client(pmc_bucket.endpoint_url)
    bucket = f"pmc-partial-{transport}"
    client.create_bucket(Bucket=bucket, ACL="public-read")
    a, b = pmc_bucket.article("noncomm"), pmc_bucket.article("other_license")
    for art, keys in ((a, ("{p}/{p}.json", "{p}/{p}.xml")), (b, ("{p}/{p}.xml",))):
        for k in keys:
            key = k.format(p=f"{art.pmcid}.1")
            client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": pmc_bucket.bucket, "Key": key},
                               ACL="public-read")
    src = make(tmp_path, pmc_bucket.endpoint_url, transport, bucket=bucket, ids=frozenset({a.pmcid, b.pmcid}))
    units = by_id(list(src.list_units()))
    assert units[a.pmcid].meta_dict()["metadata_key"] == f"{a.pmcid}.1/{a.pmcid}.1.json"
    assert src.open(units[a.pmcid]).xml == a.xml
    with pytest.raises(SkipError) as e:
        src.open(units[b.pmcid])
    assert e.value.reason == "metadata_not_found"
    assert list(make(tmp_path, pmc_bucket.endpoint_url, transport, bucket=bucket, cache="c2").list_units()) == []
    src.close()


def test_source_pickles_and_works_after(tmp_path, pmc_bucket):
    src = make(tmp_path, pmc_bucket.endpoint_url, "https", license_groups=("oa_comm",))
    unit = by_id(list(src.list_units()))[pmc_bucket.cases["two_versions"]]
    src.open(unit)  # clients and pool exist now
    clone = pickle.loads(pickle.dumps(src))
    assert clone.license_groups == ("oa_comm",) and clone.transport == "https"
    assert clone.open(unit).media == pmc_bucket.article("two_versions").media
    src.close()
    clone.close()
    assert src.open(unit).version == 2  # usable after close(): client and pool come back lazily
    src.close()


def test_output_bucket_fixture(s3_output_bucket: S3Bucket):
    import boto3
    import fsspec

    boto3.client("s3").put_object(Bucket=s3_output_bucket.name, Key="a/b.txt", Body=b"hi")  # env vars route it
    fs = fsspec.filesystem("s3", **s3_output_bucket.storage_options)
    assert fs.cat(f"{s3_output_bucket.name}/a/b.txt") == b"hi"
    assert json.loads(json.dumps(s3_output_bucket.env))["AWS_ENDPOINT_URL"] == s3_output_bucket.endpoint_url
