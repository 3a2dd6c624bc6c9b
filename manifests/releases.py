"""Release numbers, and the previous release a build compares itself with.

Every build that finishes publishes a release: 1, 2, 3 ... in the order they finished, recorded in
the completion record (``release``) and in the ``runs`` row of that build. A build's changes
(``manifests/changes.py``) are the difference between the previous release and what it publishes,
so before its first write the build saves what it needs of the previous release under
``OUT/_previous/`` (an index of the samples with their content fingerprints, and the small tables
that hold the evidence for reasons: articles, figures, errors, dropped, units). The previous
release's own files are overwritten as the build goes, so this copy is what lets a build that was
killed halfway still be compared with the last complete release when it is rerun. The copy is
made only from a complete release (one with a completion record), marked usable by writing
``release.json`` last, and removed once the new release's completion record is written.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from medcorpus.manifests import completion
from medcorpus.manifests.change_reasons import EVIDENCE
from medcorpus.manifests.parquet import read_table
from medcorpus.manifests.query import open_dataset
from medcorpus.manifests.storage import Output

PREVIOUS = "_previous"
INDEX = f"{PREVIOUS}/samples.parquet"
_MARK = f"{PREVIOUS}/release.json"


@dataclass
class Baseline:
    """The previous release: its number (0 before the first), its saved sample index and evidence
    tables (the index stays on disk: it has a row per sample)."""

    release: int = 0
    output: Output | None = None
    tables: dict[str, pa.Table] = field(default_factory=dict)

    def index_dataset(self) -> ds.Dataset | None:
        return open_dataset(self.output, INDEX) if self.output is not None and self.output.exists(INDEX) else None

    def article_ids(self, among: list[str]) -> list[str]:
        """Which of these articles the previous release had samples of."""
        data = self.index_dataset()
        if data is None or not among:
            return []
        found = data.to_table(columns=["article_id"], filter=pc.field("article_id").isin(among))
        return pc.unique(found["article_id"]).to_pylist()


def start(output: Output) -> Baseline:
    """The previous release of ``output``, saved under ``_previous/`` when the output is complete;
    call it before the build's first write. Without a complete release and without a saved one
    (the first build, or an output whose history predates releases) the baseline is empty."""
    try:
        record = completion.read_record(output)
    except ValueError:
        record = None
    if record is not None:
        _save(output, int(record.get("release") or runs_release(output)))
    return _load(output) or Baseline(release=runs_release(output))


def _save(output: Output, release: int) -> None:
    from medcorpus.manifests.changes import index_batches

    if output.exists(_MARK):
        output.remove(_MARK)  # a half-replaced copy is never used
    if output.exists(INDEX):
        output.remove(INDEX)
    batches = index_batches(output)
    first = next(batches, None) if batches is not None else None
    if first is not None:
        with output.staged_file(INDEX) as tmp, pq.ParquetWriter(tmp, first.schema, compression="zstd") as writer:
            writer.write_batch(first)
            for batch in batches:
                writer.write_batch(batch)
    for name in EVIDENCE:
        rel, copy = f"manifest/{name}.parquet", f"{PREVIOUS}/{name}.parquet"
        if output.exists(rel):
            output.write_bytes(copy, output.read_bytes(rel))
        elif output.exists(copy):
            output.remove(copy)
    output.write_bytes(_MARK, json.dumps({"release": release}).encode())


def _load(output: Output) -> Baseline | None:
    if not output.exists(_MARK):
        return None
    release = int(json.loads(output.read_bytes(_MARK))["release"])
    tables = {name: read_table(output, f"{PREVIOUS}/{name}.parquet") for name in EVIDENCE
              if output.exists(f"{PREVIOUS}/{name}.parquet")}
    return Baseline(release, output, tables)


def runs_release(output: Output) -> int:
    """The last release the ``runs`` table knows: its largest ``release``, or for runs written
    before releases were numbered, their count."""
    if not output.exists("manifest/runs.parquet"):
        return 0
    runs = read_table(output, "manifest/runs.parquet").to_pylist()
    numbered = [r["release"] for r in runs if r.get("release") is not None]
    return max(numbered) if numbered else len(runs)


def finish(output: Output) -> None:
    """Drop the saved previous release; call it after the new completion record is written."""
    if output.fs.exists(output.path(PREVIOUS)):
        output.fs.rm(output.path(PREVIOUS), recursive=True)
