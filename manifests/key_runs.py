"""A manifest table in key order, read a part at a time instead of sorted whole.

The shard planner cuts each family's samples into shards in key order, so the sample parts of
one family are key-sorted runs that do not overlap. Walking the runs side by side, a step at a
time, gives the table in key order while holding one part per run: a change list over tens of
millions of samples holds a few parts, not every row. Parts that do overlap (another layout, an
older writer) only make more runs; the order is the same.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medcorpus.manifests.storage import Output

KEY = "key"


def runs(output: Output, paths: Sequence[str]) -> list[list[str]]:
    """The parts grouped into runs: within a run, each part's keys all come after the previous
    part's (read from the parts' statistics). Empty parts are left out."""
    bounds = sorted((*b, path) for path in paths if (b := _bounds(output, path)) is not None)
    grouped: list[list[str]] = []
    ends: list[str] = []
    for lo, hi, path in bounds:  # in order of first key, so any run that ended before lo will do
        free = next((i for i, end in enumerate(ends) if end < lo), None)
        if free is None:
            grouped.append([path])
            ends.append(hi)
        else:
            grouped[free].append(path)
            ends[free] = hi
    return grouped


def _bounds(output: Output, path: str) -> tuple[str, str] | None:
    """(first key, last key) of a part, or None when it has no rows; from the row groups'
    statistics where every one has them (truncated statistics still bound the keys)."""
    with output.fs.open(path, "rb") as f:
        parquet = pq.ParquetFile(f)
        meta = parquet.metadata
        if meta.num_rows == 0:
            return None
        column = meta.schema.to_arrow_schema().get_field_index(KEY)
        stats = [meta.row_group(i).column(column).statistics for i in range(meta.num_row_groups)]
        if all(s is not None and s.has_min_max for s in stats):
            return min(s.min for s in stats), max(s.max for s in stats)
        found = pc.min_max(parquet.read(columns=[KEY])[KEY])
        return found["min"].as_py(), found["max"].as_py()


def in_step(streams: Sequence[Iterable[pa.Table]], schema: pa.Schema) -> Iterator[list[pa.Table]]:
    """Each key-sorted stream's rows up to one key, step by step: a step takes from every stream
    its rows up to the smallest last key among the tables in hand, so each step ends at least one
    of them and the steps cover the streams' keys in order, none twice."""
    sources = [iter(s) for s in streams]
    heads = [_next(s) for s in sources]
    while any(h is not None for h in heads):
        bound = min(h[KEY][-1].as_py() for h in heads if h is not None)
        step = []
        for i, head in enumerate(heads):
            if head is None:
                step.append(schema.empty_table())
                continue
            taken = pc.sum(pc.less_equal(head[KEY], bound)).as_py() or 0
            step.append(head.slice(0, taken))
            heads[i] = head.slice(taken) if taken < head.num_rows else _next(sources[i])
        yield step


def _next(source: Iterator[pa.Table]) -> pa.Table | None:
    return next((t for t in source if t.num_rows), None)


def merged(output: Output, paths: Sequence[str], read: Callable[[str], pa.Table],
           schema: pa.Schema) -> Iterator[pa.Table]:
    """The parts' rows in key order, a step at a time; ``read`` gives one part's rows key-sorted."""
    streams = [(read(path) for path in run) for run in runs(output, paths)]
    for step in in_step(streams, schema):
        yield pa.concat_tables(step).sort_by(KEY)
