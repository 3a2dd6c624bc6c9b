"""Typed options from config mappings, validated before any work.

Every options dataclass is validated by pydantic in strict mode (as if read from JSON: a list may
fill a tuple, but ``"128"`` never fills an int), with its field annotations as the contract
(``Annotated[int, Field(ge=1)]``, ``Literal[...]``). A bad value fails the run when the config
loads, naming the key path, the value and what was expected, with a suggestion for a misspelt key.
"""
from __future__ import annotations

import datetime as dt
import difflib
import json
from dataclasses import fields
from functools import lru_cache
from typing import Annotated, Any, Iterable, Mapping, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

__all__ = ["ConfigError", "Fraction", "NonNegative", "NonNegativeInt", "Percent", "Positive", "PositiveInt", "known_names", "suggest",
           "unknown_keys", "validated"]

T = TypeVar("T")

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Percent = Annotated[int, Field(ge=1, le=100)]


class ConfigError(ValueError):
    """A config value the build cannot use: raised before any work, with the key path."""


def suggest(key: str, known: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the closest known name (spelling, or one name a prefix of the other)."""
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6) or [k for k in known if key.startswith(k)
                                                                        or k.startswith(key)][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_keys(values: Mapping[str, Any], known: Iterable[str], path: str) -> None:
    """Refuse keys the section does not have: a typo must fail the run, not be silently ignored."""
    known = sorted(known)
    for key in sorted(values):
        if key not in known:
            raise ConfigError(f"{path}.{key}: unknown key{suggest(key, known)} (known: {', '.join(known)})")


def known_names(names: Iterable[str], known: Iterable[str], path: str) -> None:
    """Refuse names (filters, dedup kinds ...) that are not among ``known``, with a suggestion."""
    known = list(known)
    for name in names:
        if name not in known:
            raise ConfigError(f"{path}: unknown name {name!r}{suggest(name, known)} (known: {', '.join(known)})")


@lru_cache(maxsize=None)
def _adapter(cls: type) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a config value")


def validated(cls: type[T], values: Mapping[str, Any] | None, path: str) -> T:
    """An instance of the options dataclass ``cls`` from ``values`` (the config section at ``path``)."""
    values = dict(values or {})
    unknown_keys(values, [f.name for f in fields(cls)], path)  # type: ignore[arg-type]
    try:
        return _adapter(cls).validate_json(json.dumps(values, default=_json_default), strict=True)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, values, path)) from None


def _describe(exc: ValidationError, values: Mapping[str, Any], path: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    value = values.get(str(err["loc"][0])) if err["loc"] else values
    expected = err["msg"][0].lower() + err["msg"][1:]
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{path}.{loc}: {value!r} is not valid: {expected}{more}"
