"""The driver's collect on an object store: staged units read per second, one read at a time against
``Staging.read_metas``' concurrent reads.

A real S3 server (moto, on loopback) behind the tests' loopback proxy, which holds every request for
``--latency-ms`` before forwarding it: a remote store's round trip, which loopback lacks (that delay
is synthetic, and so are the staged units: ``--samples`` small rows each, a key, an article id and
a caption). Prints units/s for each thread count and the speed-up over one.

    python bench/staged_reads_bench.py [--units 400] [--latency-ms 20] [--threads 1 4 16]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def staged_unit(i: int, samples: int) -> object:
    from medcorpus.pipelines.staging import StagedSample, UnitResult

    row = {"key": "", "article_id": f"PMC{i:07d}", "caption": "Axial CT of the chest shows a nodule. " * 8,
           "image_format": "jpg", "license_code": "cc-by"}
    return UnitResult(f"unit-{i}", samples=[StagedSample(f"PMC{i:07d}_f{k}", "cc-by", {**row, "key": f"PMC{i:07d}_f{k}"},
                                                         90_000) for k in range(samples)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=400)
    ap.add_argument("--samples", type=int, default=8, help="rows per staged unit")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16])
    args = ap.parse_args()

    import os
    import uuid

    import s3fs
    from fixtures_s3 import Fault, FaultProxy, _acquire_server, _release_server, s3_client

    from medcorpus.pipelines.staging import Staging

    endpoint = _acquire_server()
    try:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3_client(endpoint.url).create_bucket(Bucket=bucket)
        with FaultProxy(endpoint.url) as proxy:
            os.environ.update({**endpoint.env, "AWS_ENDPOINT_URL": proxy.url, "AWS_ENDPOINT_URL_S3": proxy.url})
            s3fs.S3FileSystem.clear_instance_cache()
            staging = Staging(f"s3://{bucket}/work/staging")
            tokens = [f"{i:040x}" for i in range(args.units)]
            for i, token in enumerate(tokens):
                staging.write(token, staged_unit(i, args.samples))
            proxy.faults.append(Fault("delay", times=10 ** 9, stall_s=args.latency_ms / 1000))
            print(f"{args.units} staged units on S3 (moto on loopback), {args.latency_ms:g} ms added per request")
            base = None
            for threads in args.threads:
                t0 = time.perf_counter()
                n = sum(1 for _ in staging.read_metas(tokens, threads=threads))
                rate = n / (time.perf_counter() - t0)
                base = base or rate
                print(f"  threads {threads:3d}: {rate:8.1f} units/s  ({rate / base:.1f}x one at a time)"
                      f"  most requests in flight {proxy.max_in_flight}")
                proxy.max_in_flight = 0
    finally:
        _release_server()


if __name__ == "__main__":
    main()
