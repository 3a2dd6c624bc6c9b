"""Read samples straight from shards by the manifest's byte offsets: select with SQL, stream those."""
from __future__ import annotations

from typing import Iterator

from medcorpus.manifests.layout import resolve
from medcorpus.manifests.selection import Params, select
from medcorpus.manifests.storage import Output


def iter_samples(out: str, where: str = "true", *, params: Params = None,
                 allow_incomplete: bool = False) -> Iterator[dict]:
    """Yield {key, image, caption, shard} for the samples matching a SQL predicate (one expression,
    values bound from ``params``: ``manifests/selection.py``), shard by shard. For training, see
    ``manifests/loader.py``.

    Refuses (``IncompleteOutput``) an output whose build did not finish unless ``allow_incomplete``:
    a training job would otherwise silently stream a partial or inconsistent corpus."""
    out = resolve(out).url  # one release for the rows and the shards (manifests/layout.py)
    columns = ["key", "shard", "image_offset", "image_size", "txt_offset", "txt_size"]
    rows = select(out, where, params, columns=columns, allow_incomplete=allow_incomplete).to_pylist()
    output = Output(out)
    handle, current = None, None
    try:
        for row in rows:
            key, shard, img_off, img_size, txt_off, txt_size = (row[c] for c in columns)
            if shard != current:
                if handle:
                    handle.close()
                handle, current = output.fs.open(output.path(shard), "rb"), shard
            handle.seek(img_off)
            image = handle.read(img_size)
            handle.seek(txt_off)
            caption = handle.read(txt_size).decode("utf-8")
            yield {"key": key, "shard": shard, "image": image, "caption": caption}
    finally:
        if handle:
            handle.close()
