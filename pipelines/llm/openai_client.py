"""OpenAI-compatible chat-completions client (vLLM, SGLang, TGI, llama.cpp server, hosted APIs).

Why these pieces: a corpus run sends hundreds of thousands of requests, so concurrency is bounded
(a semaphore), the request rate is limited (a token bucket, so a hosted API's quota is not burnt
in bursts), and transient failures — 429, 5xx, timeouts, dropped connections — are retried under
the one retry policy (``medcorpus.retry``: exponential backoff, jitter, ``Retry-After`` honoured).
A request that still fails comes back as a ``Completion`` with ``error`` set instead of failing
the whole batch.
"""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx

from medcorpus.pipelines.llm.types import ChatRequest, Completion, RunStats
from medcorpus.retry import Backoff, retrying

__all__ = ["OpenAIClientOptions", "OpenAIClient", "TokenBucket"]

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class OpenAIClientOptions:
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str | None = "OPENAI_API_KEY"  # the key is read from this variable, never from config
    max_concurrency: int = 16
    requests_per_second: float | None = None
    burst: int = 1
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    response_format: str | None = None  # None | "json_object" | "json_schema" (servers with guided decoding)


class TokenBucket:
    """``rate`` acquisitions per second on average, at most ``burst`` at once."""

    def __init__(self, rate: float, burst: int = 1):
        self.rate, self.capacity = float(rate), float(max(1, burst))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class _Retryable(Exception):
    """A failure another attempt may cure; ``retry_after`` is the server's hint, in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Failed(Exception):
    """An answer no retry changes (a 4xx other than the RETRY_STATUS ones)."""


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAIClient:
    name = "openai"

    def __init__(self, options: OpenAIClientOptions, stats: RunStats | None = None,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.options = options
        self.model = options.model
        self.stats = stats or RunStats()
        self._transport = transport
        self._wait = Backoff(options.backoff_base_s, options.backoff_max_s)

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.options.api_key_env) if self.options.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _body(self, req: ChatRequest) -> dict[str, Any]:
        p = req.params
        body: dict[str, Any] = {"model": self.model, "messages": req.messages, "max_tokens": p.max_new_tokens,
                                "temperature": p.temperature, "top_p": p.top_p, "seed": p.seed}
        fmt = self.options.response_format
        if req.json_schema is not None and fmt == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif req.json_schema is not None and fmt == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": req.json_schema}}
        return body

    async def _attempt(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, bucket: TokenBucket | None,
                       body: dict[str, Any]) -> Completion:
        """One request: the completion, or _Retryable (429, 5xx, timeouts) / _Failed (other answers)."""
        if bucket is not None:
            await bucket.acquire()
        async with sem:
            try:
                self.stats.add(requests=1)
                resp = await client.post("chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from None
            if resp.status_code == 200:
                return self._parse(resp.json())
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
            if resp.status_code not in RETRY_STATUS:
                raise _Failed(last)
            raise _Retryable(last, _retry_after(resp))

    async def _one(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, bucket: TokenBucket | None,
                   req: ChatRequest) -> Completion:
        loop = retrying(_Retryable, self.options.max_retries, self._wait, asynchronous=True,
                        before_sleep=lambda _state: self.stats.add(retries=1))
        try:
            return await loop(self._attempt, client, sem, bucket, self._body(req))
        except (_Retryable, _Failed) as exc:
            self.stats.add(errors=1)
            return Completion(text="", finish_reason="error", error=str(exc))

    def _parse(self, data: dict[str, Any]) -> Completion:
        choice = (data.get("choices") or [{}])[0]
        usage = data.get("usage") or {}
        out = Completion(text=(choice.get("message") or {}).get("content") or "",
                         prompt_tokens=int(usage.get("prompt_tokens", 0)),
                         completion_tokens=int(usage.get("completion_tokens", 0)),
                         finish_reason=choice.get("finish_reason") or "stop")
        self.stats.add(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens)
        return out

    async def acomplete(self, requests: list[ChatRequest]) -> list[Completion]:
        o = self.options
        sem = asyncio.Semaphore(max(1, o.max_concurrency))
        bucket = TokenBucket(o.requests_per_second, o.burst) if o.requests_per_second else None
        limits = httpx.Limits(max_connections=max(1, o.max_concurrency))
        async with httpx.AsyncClient(base_url=o.base_url.rstrip("/") + "/", timeout=o.timeout_s, limits=limits,
                                     headers=self._headers(), transport=self._transport) as client:
            return list(await asyncio.gather(*(self._one(client, sem, bucket, r) for r in requests)))

    async def models(self) -> list[str]:
        async with httpx.AsyncClient(base_url=self.options.base_url.rstrip("/") + "/", timeout=self.options.timeout_s,
                                     headers=self._headers(), transport=self._transport) as client:
            resp = await client.get("models")
            resp.raise_for_status()
            return [m["id"] for m in resp.json().get("data", [])]
