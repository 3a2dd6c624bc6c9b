"""Select samples with a SQL predicate, safely: the predicate is parsed as one SQL expression and
DuckDB's own serialization of that expression is what runs, so it can never close the query or add
a statement; values come as bound parameters; an unknown column is one clear error.

The predicate sees the ``samples`` columns; subqueries may use the other views
(``key IN (SELECT key FROM concepts WHERE cui = ?)``).
"""
from __future__ import annotations

from typing import Any, Sequence

import duckdb
import pyarrow as pa

from medcorpus.manifests.query import connect

Params = Sequence[Any] | dict[str, Any] | None


class SelectionError(ValueError):
    """A predicate that is not one valid SQL expression over the manifest."""


def expression(where: str | None) -> str:
    """DuckDB's serialization of ``where`` parsed as a single expression (``true`` for none)."""
    if where is None or not where.strip():
        return "true"
    try:
        return str(duckdb.SQLExpression(where))
    except (duckdb.ParserException, duckdb.NotImplementedException) as exc:
        raise SelectionError(f"not one SQL expression: {where!r} ({_first_line(exc)})") from None


def select(out: str, where: str | None, params: Params = None, *, columns: Sequence[str] | None = None,
           order_by: str = "shard, image_offset", allow_incomplete: bool = False) -> pa.Table:
    """The selected samples' ``columns`` (all by default), in ``order_by`` order. Refuses an output
    without a completion record unless ``allow_incomplete`` (``IncompleteOutput``)."""
    con = connect(out, allow_incomplete=allow_incomplete)
    try:
        names = {r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE samples)").fetchall()}
        unknown = sorted(set(columns or ()) - names)
        if unknown:
            raise SelectionError(f"no such samples column: {', '.join(unknown)}")
        cols = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        sql = f"SELECT {cols} FROM samples WHERE {expression(where)} ORDER BY {order_by}"
        return con.execute(sql, params or []).to_arrow_table()
    except (duckdb.BinderException, duckdb.ConversionException, duckdb.InvalidInputException) as exc:
        raise SelectionError(f"cannot select samples where {where!r}: {_first_line(exc)}") from None
    finally:
        con.close()


def _first_line(exc: Exception) -> str:
    lines = str(exc).splitlines()
    hint = next((ln.strip() for ln in lines[1:] if ln.strip().startswith("Candidate")), "")
    return " ".join(filter(None, [lines[0] if lines else "", hint]))
