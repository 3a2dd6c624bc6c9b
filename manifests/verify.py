"""Check a build: every manifest row's members are where it says, with the bytes it says."""
from __future__ import annotations

import hashlib

from medcorpus.manifests.query import connect
from medcorpus.manifests.storage import Output


def verify_output(out: str) -> tuple[list[str], int]:
    con = connect(out)
    rows = con.execute("SELECT key, shard, image_offset, image_size, image_sha256, txt_offset, txt_size, caption "
                       "FROM samples ORDER BY shard, image_offset").fetchall()
    con.close()
    output = Output(out)
    problems: list[str] = []
    for key, shard, off, size, sha, txt_off, txt_size, caption in rows:
        if not output.exists(shard):
            problems.append(f"{key}: shard {shard} missing")
            continue
        data = output.read_range(shard, off, size)
        if hashlib.sha256(data).hexdigest() != sha:
            problems.append(f"{key}: image bytes at {shard}:{off} do not hash to image_sha256")
        if output.read_range(shard, txt_off, txt_size).decode("utf-8", "replace") != caption:
            problems.append(f"{key}: caption member differs from the manifest caption")
    return problems, len(rows)
