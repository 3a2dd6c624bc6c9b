"""JSON-lines commands (``medcorpus subcaptions``, ``faithfulness`` ...): one output per input line."""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Iterator


def map_json_lines(lines: Iterable[str], fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``fn`` of each non-blank line's object; a line that is not a JSON object yields
    ``{"id": null, "error": ...}`` and the stream goes on."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            yield {"id": None, "error": f"line {n}: {exc}"}
            continue
        yield fn(record)
