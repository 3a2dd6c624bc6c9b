"""The request/response types every backend speaks: OpenAI chat messages in, text and token counts out."""
from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Protocol


@dataclass(frozen=True)
class GenParams:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    params: GenParams = GenParams()
    json_schema: dict[str, Any] | None = None


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    error: str | None = None


class Backend(Protocol):
    """What the engine needs of a backend; requests in, completions out, same order."""
    name: str
    model: str

    async def acomplete(self, requests: list[ChatRequest]) -> list[Completion]: ...


@dataclass
class RunStats:
    """Request, token and cache counts of one run, for the build summary (thread-safe)."""
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0
    repairs: int = 0
    errors: int = 0
    accepted: int = 0
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def add_completions(self, completions: Iterable[Completion]) -> None:
        """One request and its tokens per completion: how in-process backends count their work."""
        for c in completions:
            self.add(requests=1, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens)

    def to_dict(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
