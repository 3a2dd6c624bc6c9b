"""Options dataclasses from config mappings."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

__all__ = ["checked"]


def checked(cls: type, values: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """A copy of ``values`` once every key is a field of the dataclass ``cls``: a typo in
    dataflow.yaml must fail the run, not be silently ignored. ``what`` names them in the error."""
    values = dict(values or {})
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what}: {sorted(unknown)}")
    return values
