"""CLI (vocab build, link) through typer's CliRunner, and the Arrow column queried by DuckDB."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from concept_fixtures import OPEN_VOCAB, UMLS_META, open_vocab_dir, read_roco_captions
from concept_fixtures import linker as cached_linker
from typer.testing import CliRunner

from medcorpus.pipelines.commands.concepts import register
from medcorpus.schemas.concepts import CONCEPT_TYPE, concepts_array, flat_concepts_table

KEYS = {"cui", "name", "tuis", "group", "mention", "start", "end", "score", "negated"}


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


def test_vocab_build_from_ontology_and_umls(app: typer.Typer, tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["vocab", "build", "--ontology", str(OPEN_VOCAB / "symp" / "symp.obo"),
                                 "--out", str(tmp_path / "symp"), "--ann-m", "4", "--ann-ef-construction", "10"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "symp" / "vocab.json").read_text())
    assert meta["provenance"]["kind"] == "ontology" and meta["tuis_inferred"]
    assert meta["provenance"]["files"][0]["sha256"] and meta["counts"]["concepts"] > 100
    assert (tmp_path / "symp" / "ann" / "nmslib_index.bin").is_file()
    r = CliRunner().invoke(app, ["vocab", "build", "--umls-dir", str(UMLS_META), "--out", str(tmp_path / "u"),
                                 "--group", "CHEM", "--no-ann"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "u" / "vocab.json").read_text())
    assert meta["provenance"]["kind"] == "umls" and meta["provenance"]["filters"]["langs"] == ["ENG"]
    assert meta["counts"]["concepts"] >= 1 and meta["ann"] is None
    from medcorpus.transforms.vocab_index import vocab_provenance

    prov = vocab_provenance(tmp_path / "u")
    assert prov["format_version"] == 1 and prov["provenance"]["release"]["files"]["MRCONSO.RRF"]["bytes"] > 0


def test_vocab_build_needs_exactly_one_source(app: typer.Typer, tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["vocab", "build", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["vocab", "build", "--umls-dir", str(UMLS_META), "--mesh", "--out", str(tmp_path)])
    assert r.exit_code == 2


def test_link_json_lines(app: typer.Typer, tmp_path_factory: pytest.TempPathFactory) -> None:
    vocab = open_vocab_dir(str(tmp_path_factory.getbasetemp()))
    lines = [json.dumps({"id": rid, "text": t}) for rid, t, _ in read_roco_captions(20)]
    stdin = "\n".join(lines + ["", "not json", json.dumps({"id": "neg", "text": "No evidence of pneumothorax."})])
    r = CliRunner().invoke(app, ["link", "--vocab", str(vocab)], input=stdin + "\n")
    assert r.exit_code == 0, r.output
    out = [json.loads(x) for x in r.output.splitlines()]
    assert len(out) == 22
    assert [o["id"] for o in out[:20]] == [json.loads(x)["id"] for x in lines]
    assert out[20] == {"id": None, "error": out[20]["error"]}
    good = [o for o in out if "concepts" in o]
    assert all(set(o) == {"id", "concepts"} for o in good)
    assert any(o["concepts"] for o in good)
    for o in good:
        for c in o["concepts"]:
            assert set(c) == KEYS
    assert out[21]["concepts"] and all(c["negated"] for c in out[21]["concepts"])


def test_arrow_column_and_duckdb_flat_query(tmp_path_factory: pytest.TempPathFactory) -> None:
    duckdb = pytest.importorskip("duckdb")
    lk = cached_linker(str(tmp_path_factory.getbasetemp()))
    docs = read_roco_captions(200)
    linked = lk.link_many([t for _, t, _ in docs])
    ids = [rid for rid, _, _ in docs]
    table = pa.table({"id": ids, "concepts": concepts_array(linked)})
    assert table.schema.field("concepts").type == CONCEPT_TYPE
    diso = {(rid, c.cui) for rid, cs in zip(ids, linked) for c in cs if c.group == "DISO"}
    assert diso
    _, cui = sorted(diso)[0]
    want = sorted({rid for rid, c in diso if c == cui})
    con = duckdb.connect()
    con.register("manifest", table)
    got = con.execute("SELECT DISTINCT id FROM manifest, UNNEST(concepts) AS t(c) "
                      "WHERE c.cui = ? AND c.\"group\" = 'DISO' ORDER BY id", [cui]).fetchall()
    assert [g[0] for g in got] == want
    flat = flat_concepts_table(ids, linked)
    assert flat.num_rows == sum(map(len, linked))
    con.register("concepts", flat)
    n = con.execute("SELECT count(DISTINCT sample_id) FROM concepts WHERE cui = ? AND \"group\" = 'DISO'",
                    [cui]).fetchone()[0]
    assert n == len(want)
