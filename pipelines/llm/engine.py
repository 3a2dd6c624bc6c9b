"""Runs one task over many inputs: cache lookup, batched backend calls, JSON validation with a
bounded repair retry, and the run's request/token/cache counts.

Only answers not in the cache are sent; every final answer (valid or not) is stored, so a rerun or
a resumed run sends nothing it has sent before.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
from dataclasses import dataclass
from typing import Any, Awaitable, TypeVar

from medcorpus.pipelines.llm.cache import RequestCache, cache_key
from medcorpus.pipelines.llm.local_backend import image_data_url
from medcorpus.pipelines.llm.types import Backend, ChatRequest, GenParams, RunStats
from medcorpus.transforms.llm_tasks import TaskSpec, parse_json, repair_prompt, schema_errors

__all__ = ["TaskInput", "TaskAnswer", "LLMEngine", "run_sync"]

T = TypeVar("T")


@dataclass(frozen=True)
class TaskInput:
    fields: dict[str, Any]          # the template's inputs (caption, context ...)
    image: bytes | None = None
    image_mime: str = "image/jpeg"


@dataclass
class TaskAnswer:
    text: str
    value: Any = None               # parsed JSON for schema tasks
    errors: list[str] | None = None  # schema errors left after repairs
    cache_hit: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None        # transport failure
    backend: str | None = None      # the engine that wrote it (None: a cache entry from before it was stored)


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine from sync code, also when the caller already runs an event loop (Ray, Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


class LLMEngine:
    def __init__(self, backend: Backend, cache: RequestCache | None = None, params: GenParams = GenParams(),
                 repair_retries: int = 1, stats: RunStats | None = None):
        self.backend, self.cache, self.params = backend, cache, params
        self.repair_retries = repair_retries
        self.stats = stats or getattr(backend, "stats", None) or RunStats()

    def key(self, task: TaskSpec, item: TaskInput) -> str:
        """The request's cache key: model name, template, inputs and parameters. Not the engine: the
        same model answers the same request on transformers or vLLM (up to numerics, as on another
        device or batch size), so a rerun on the other engine reuses the cache; each answer keeps the
        engine that wrote it."""
        inputs = dict(item.fields)
        if task.vision and item.image is not None:
            inputs["image_sha256"] = hashlib.sha256(item.image).hexdigest()
        return cache_key(self.backend.model, task.template_hash(), inputs, self.params.to_dict())

    def _request(self, task: TaskSpec, item: TaskInput) -> ChatRequest:
        url = image_data_url(item.image, item.image_mime) if task.vision and item.image is not None else None
        return ChatRequest(task.messages(item.fields, url), self.params, task.json_schema)

    async def arun(self, task: TaskSpec, items: list[TaskInput]) -> list[TaskAnswer]:
        answers: list[TaskAnswer | None] = [None] * len(items)
        keys = [self.key(task, it) for it in items]
        todo = []
        for i, k in enumerate(keys):
            hit = self.cache.get(k) if self.cache else None
            if hit is not None:
                answers[i] = TaskAnswer(**hit, cache_hit=True)
                self.stats.add(cache_hits=1)
            else:
                todo.append(i)
                self.stats.add(cache_misses=1)
        first_of: dict[str, int] = {}
        unique = [i for i in todo if first_of.setdefault(keys[i], i) == i]  # same request once per run
        requests = [self._request(task, items[i]) for i in unique]
        results = await self.backend.acomplete(requests) if requests else []
        fresh = [TaskAnswer(r.text, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                            error=r.error, backend=self.backend.name) for r in results]
        if task.json_schema is not None:
            await self._validate(task, requests, fresh)
        for i, ans in zip(unique, fresh):
            answers[i] = ans
            if self.cache is not None and ans.error is None:
                self.cache.put(keys[i], {"text": ans.text, "value": ans.value, "errors": ans.errors,
                                         "prompt_tokens": ans.prompt_tokens,
                                         "completion_tokens": ans.completion_tokens, "backend": ans.backend})
        for i in todo:
            if answers[i] is None:
                src = answers[first_of[keys[i]]]
                answers[i] = TaskAnswer(src.text, src.value, src.errors, True, 0, 0, src.error, src.backend)
        return answers  # type: ignore[return-value]

    async def _validate(self, task: TaskSpec, requests: list[ChatRequest], answers: list[TaskAnswer]) -> None:
        """Parse and check against the schema; answers still invalid get up to ``repair_retries`` follow-ups."""
        pending = list(range(len(answers)))
        for round_ in range(self.repair_retries + 1):
            bad = []
            for i in pending:
                a = answers[i]
                if a.error is not None:
                    continue
                try:
                    a.value = parse_json(a.text)
                    a.errors = schema_errors(a.value, task.json_schema)  # type: ignore[arg-type]
                except ValueError as exc:
                    a.value, a.errors = None, [str(exc)]
                if a.errors:
                    bad.append(i)
            if not bad or round_ == self.repair_retries:
                return
            follow = [ChatRequest(requests[i].messages + [
                {"role": "assistant", "content": answers[i].text},
                {"role": "user", "content": repair_prompt(answers[i].text, answers[i].errors or [],
                                                          task.json_schema)}],  # type: ignore[arg-type]
                requests[i].params, task.json_schema) for i in bad]
            self.stats.add(repairs=len(follow))
            for i, r in zip(bad, await self.backend.acomplete(follow)):
                a = answers[i]
                a.text, a.error = r.text, r.error
                a.prompt_tokens += r.prompt_tokens
                a.completion_tokens += r.completion_tokens
            pending = bad

    def run(self, task: TaskSpec, items: list[TaskInput]) -> list[TaskAnswer]:
        return run_sync(self.arun(task, items))
