"""The change list reads a release's samples in key order a part at a time (``manifests/key_runs``):
on the sample build's real manifest rows, as the shard planner cuts them and re-cut into parts
that overlap, are empty or carry no statistics."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from medcorpus.manifests import key_runs
from medcorpus.manifests.layout import resolve
from medcorpus.manifests.storage import Output

COLUMNS = ["key", "article_id", "figure_id", "json_sha256"]


def _read(path: str) -> pa.Table:
    return pq.read_table(path, columns=COLUMNS).sort_by("key")


@pytest.fixture(scope="module")
def samples(sample_build: Path) -> tuple[Output, list[str], pa.Table]:
    output = Output(resolve(str(sample_build)).url)
    paths = sorted(str(p) for p in Path(output.path("manifest/samples")).glob("*.parquet"))
    return output, paths, pa.concat_tables([pq.read_table(p, columns=COLUMNS) for p in paths])


def _merged(output: Output, paths: list[str], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(list(key_runs.merged(output, paths, _read, schema)))


def test_planned_parts_make_a_run_per_family_at_most(samples: tuple[Output, list[str], pa.Table]) -> None:
    output, paths, table = samples
    families = {Path(p).name.split("-")[0] for p in paths}
    assert len(families) > 1 and 1 <= len(key_runs.runs(output, paths)) <= len(families)
    merged = _merged(output, paths, table.schema)
    assert merged.equals(table.sort_by("key"))  # every row once, in key order


def test_overlapping_empty_and_unindexed_parts(samples: tuple[Output, list[str], pa.Table], tmp_path: Path) -> None:
    output, _, table = samples
    ordered = table.sort_by("key")
    parts = []
    for i in range(3):  # every third row: three parts whose keys interleave
        part = ordered.take(pa.array(range(i, ordered.num_rows, 3)))
        parts.append(str(tmp_path / f"comm-{i:06d}.parquet"))
        pq.write_table(part, parts[-1], write_statistics=i != 1)  # the middle one without statistics
    parts.append(str(tmp_path / "comm-000003.parquet"))
    pq.write_table(table.schema.empty_table(), parts[-1])
    local = Output(str(tmp_path))
    assert len(key_runs.runs(local, parts)) == 3  # overlapping parts each make a run; the empty one none
    assert _merged(local, parts, table.schema).equals(ordered)


def test_steps_cover_both_streams_in_key_order(samples: tuple[Output, list[str], pa.Table]) -> None:
    """Two indexes walked side by side, as a rebuild's change list does: each step holds both sides'
    rows up to one key, and every key of a step comes before every key of the next."""
    output, paths, table = samples
    ordered = table.sort_by("key")
    odd = ordered.take(pa.array(range(1, ordered.num_rows, 2)))
    chunks = [ordered.slice(i, 7) for i in range(0, ordered.num_rows, 7)]  # another cut of the other side
    steps = list(key_runs.in_step([chunks, [odd]], table.schema))
    seen: list[str] = []
    for left, right in steps:
        keys = sorted(pc.unique(pa.concat_arrays([left["key"].combine_chunks(), right["key"].combine_chunks()])).to_pylist())
        assert not seen or not keys or seen[-1] < keys[0]
        seen += keys
        assert right["key"].to_pylist() == [k for k in odd["key"].to_pylist() if k in set(keys)]
    assert seen == ordered["key"].to_pylist()
