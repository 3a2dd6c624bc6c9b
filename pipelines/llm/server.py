"""An OpenAI-compatible HTTP server (``/v1/chat/completions``, ``/v1/models``) over any backend.

Why: users without a GPU server can serve a local transformers model to the same HTTP client the
pipeline uses for vLLM or a hosted API, and tests get a real endpoint on loopback. Concurrent
requests are gathered into micro-batches (up to ``batch_size``, waiting at most ``max_wait_ms``)
so the local backend's batching works behind HTTP too. Images come as data URLs only.

Bounds (``ServerLimits``): one request can never hold the model for long or pile up work. A
``max_tokens`` above the cap is clamped (clients send large values to mean "as much as you
allow"; the answer's ``finish_reason: length`` says it was cut), a prompt longer than the limit is
a 400 (the server cannot shorten it without changing its meaning), requests beyond
``max_concurrent`` get an immediate 429 with ``Retry-After``. A local backend's generation stops
between decoding steps when every client of its batch has disconnected or the server is shutting
down, so SIGTERM/SIGINT end the process within seconds.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from aiohttp import web

from medcorpus.pipelines.llm.local_backend import split_content
from medcorpus.pipelines.llm.types import Backend, ChatRequest, Completion, GenParams

__all__ = ["make_app", "serve", "running_server", "run_app_in_thread", "request_count", "REQUESTS",
           "ServerLimits", "in_flight"]

REQUESTS = web.AppKey("requests", dict)  # {"n": chat requests received}; a dict so it can change after start
_STATE = web.AppKey("state", dict)       # {"in_flight": chat requests being answered}
_DISCONNECT_POLL_S = 0.05
_SHUTDOWN_TIMEOUT_S = 3.0

# The should-stop test of the batch being generated; asyncio.to_thread copies it into the backend's thread.
_SHOULD_STOP: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar("should_stop", default=None)


@dataclass(frozen=True)
class ServerLimits:
    """What one client may ask of the server (defaults: the ``serve-llm`` options' defaults).

    ``max_concurrent`` matches the pipeline client's default ``max_concurrency`` (16), so a default
    build against a default server is never refused; the model still runs ``batch_size`` at a time."""
    max_tokens_cap: int = 1024
    max_prompt_chars: int = 32_000
    max_concurrent: int = 16
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in ("max_tokens_cap", "max_prompt_chars", "max_concurrent", "retry_after_s"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")


def request_count(app: web.Application) -> int:
    """Chat-completion requests the app has received (the cache tests count these)."""
    return app[REQUESTS]["n"]


def in_flight(app: web.Application) -> int:
    """Chat-completion requests being answered now (what ``max_concurrent`` bounds)."""
    return app[_STATE]["in_flight"]


def _stop_criteria(should_stop: Callable[[], bool]) -> Any:
    """A transformers StoppingCriteria that ends every row once ``should_stop()`` is true."""
    import torch
    from transformers import StoppingCriteria

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), should_stop(), dtype=torch.bool, device=input_ids.device)

    return _Stop()


def _make_cancellable(backend: Backend) -> None:
    """Let the server stop a local backend's ``generate`` between steps.

    Why here: ``generate`` is synchronous in a worker thread and cannot be interrupted from the
    event loop; a stopping criterion read at every step is the one way in. Backends without a
    transformers model (vLLM, HTTP) are left as they are; the token cap still bounds them."""
    net = getattr(backend, "net", None)
    generate = getattr(net, "generate", None)
    if generate is None or getattr(generate, "medcorpus_cancellable", False):
        return
    from transformers import StoppingCriteriaList

    @functools.wraps(generate)
    def cancellable(*args: Any, **kwargs: Any) -> Any:
        should_stop = _SHOULD_STOP.get()
        if should_stop is not None:
            criteria = StoppingCriteriaList(kwargs.pop("stopping_criteria", None) or [])
            criteria.append(_stop_criteria(should_stop))
            kwargs["stopping_criteria"] = criteria
        return generate(*args, **kwargs)

    cancellable.medcorpus_cancellable = True  # type: ignore[attr-defined]
    net.generate = cancellable  # type: ignore[union-attr]


_Item = tuple[ChatRequest, asyncio.Future, threading.Event]


class _Batcher:
    def __init__(self, backend: Backend, batch_size: int, max_wait_ms: float, stopping: threading.Event):
        self.backend, self.batch_size, self.max_wait = backend, max(1, batch_size), max_wait_ms / 1000
        self.stopping = stopping
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def submit(self, req: ChatRequest, cancel: threading.Event) -> asyncio.Future:
        """Queue ``req``; setting ``cancel`` (client gone) lets its batch stop early."""
        if self.task is None:
            self.task = asyncio.create_task(self._loop())
        fut = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((req, fut, cancel))
        return fut

    async def _collect(self) -> list[_Item]:
        items = [await self.queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(items) < self.batch_size:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self.queue.get(), timeout))
            except asyncio.TimeoutError:
                break
        return [item for item in items if not item[1].done()]  # skip requests whose client left

    async def _loop(self) -> None:
        while True:
            items = await self._collect()
            if not items:
                continue
            flags = [cancel for _, _, cancel in items]
            token = _SHOULD_STOP.set(lambda: self.stopping.is_set() or all(f.is_set() for f in flags))
            try:
                results = await self.backend.acomplete([r for r, _, _ in items])
                for (_, fut, _), res in zip(items, results):
                    if not fut.done():
                        fut.set_result(res)
            except Exception as exc:  # noqa: BLE001 — every waiting request gets the error
                for _, fut, _ in items:
                    if not fut.done():
                        fut.set_exception(exc)
            finally:
                _SHOULD_STOP.reset(token)


def _error(status: int, message: str, kind: str = "invalid_request_error", **headers: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind}}, status=status, headers=headers)


def _prompt_chars(messages: list[Any]) -> int:
    """Characters of text over all messages (images are bounded by the body size limit instead)."""
    total = 0
    for msg in messages:
        if not isinstance(msg, dict):
            raise ValueError("each message must be an object")
        total += len(split_content(msg.get("content"))[0])
    return total


def _request(body: dict[str, Any], limits: ServerLimits) -> ChatRequest:
    """The request, with ``max_tokens`` clamped to the cap; ValueError for what no clamp can fix."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    chars = _prompt_chars(messages)
    if chars > limits.max_prompt_chars:
        raise ValueError(f"prompt too long: {chars} characters of text, this server accepts at most "
                         f"{limits.max_prompt_chars} (serve-llm --max-prompt-chars)")
    asked = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
    if asked < 1:
        raise ValueError("max_tokens must be at least 1")
    params = GenParams(max_new_tokens=min(asked, limits.max_tokens_cap),
                       temperature=float(body.get("temperature") or 0.0), top_p=float(body.get("top_p") or 1.0),
                       seed=int(body.get("seed") or 0))
    return ChatRequest(messages=messages, params=params)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _answer(request: web.Request, fut: asyncio.Future, cancel: threading.Event) -> Completion | None:
    """The completion, or None once the client has disconnected (its generation is then cancelled)."""
    try:
        while True:
            done, _ = await asyncio.wait({fut}, timeout=_DISCONNECT_POLL_S)
            if done:
                return fut.result()
            if _client_gone(request):
                return None
    finally:
        if not fut.done():
            cancel.set()
            fut.cancel()


def _completion_body(model: str, res: Completion) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": res.text},
                     "finish_reason": res.finish_reason}],
        "usage": {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                  "total_tokens": res.prompt_tokens + res.completion_tokens},
    }


def _chat_handler(backend: Backend, batcher: _Batcher, limits: ServerLimits,
                  stopping: threading.Event) -> Callable[[web.Request], Any]:
    async def chat(request: web.Request) -> web.Response:
        request.app[REQUESTS]["n"] += 1
        state = request.app[_STATE]
        if stopping.is_set():
            return _error(503, "server is shutting down", "server_error", **{"Retry-After": str(limits.retry_after_s)})
        if state["in_flight"] >= limits.max_concurrent:
            return _error(429, f"too many concurrent requests (at most {limits.max_concurrent}); retry later",
                          "rate_limit_error", **{"Retry-After": str(limits.retry_after_s)})
        state["in_flight"] += 1
        try:
            return await _chat(request, backend, batcher, limits, stopping)
        finally:
            state["in_flight"] -= 1

    return chat


async def _chat(request: web.Request, backend: Backend, batcher: _Batcher, limits: ServerLimits,
                stopping: threading.Event) -> web.Response:
    try:
        req = _request(await request.json(), limits)
    except (ValueError, TypeError) as exc:
        return _error(400, str(exc))
    cancel = threading.Event()
    try:
        res = await _answer(request, batcher.submit(req, cancel), cancel)
    except ValueError as exc:  # bad image data etc.
        return _error(400, str(exc))
    if res is None:
        return _error(499, "client closed the request")
    if stopping.is_set():  # cut short by shutdown: not an answer a client should keep (or cache)
        return _error(503, "server is shutting down", "server_error")
    return web.json_response(_completion_body(backend.model, res))


def make_app(backend: Backend, batch_size: int = 8, max_wait_ms: float = 10.0,
             limits: ServerLimits | None = None) -> web.Application:
    """The server's aiohttp application: routes, the micro-batcher, and the bounds of ``limits``."""
    limits = limits or ServerLimits()
    stopping = threading.Event()
    _make_cancellable(backend)
    batcher = _Batcher(backend, batch_size, max_wait_ms, stopping)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[REQUESTS] = {"n": 0}
    app[_STATE] = {"in_flight": 0}

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": backend.model, "object": "model",
                                                               "owned_by": "medcorpus"}]})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "in_flight": request.app[_STATE]["in_flight"]})

    async def stop_generating(_: web.Application) -> None:  # runs before in-flight handlers are awaited
        stopping.set()

    async def stop_batcher(_: web.Application) -> None:
        if batcher.task is not None:
            batcher.task.cancel()
            try:
                await batcher.task
            except asyncio.CancelledError:
                pass

    app.on_shutdown.append(stop_generating)
    app.on_cleanup.append(stop_batcher)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", _chat_handler(backend, batcher, limits, stopping))
    app.router.add_get("/health", health)
    return app


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 8000, batch_size: int = 8,
          max_wait_ms: float = 10.0, limits: ServerLimits | None = None) -> None:
    """Serve until SIGTERM/SIGINT (the ``medcorpus serve-llm`` command); returns normally then.

    A signal stops running generations at their next step, answers their requests 503 and returns
    within a few seconds (``_SHUTDOWN_TIMEOUT_S`` bounds the wait for handlers)."""
    web.run_app(make_app(backend, batch_size, max_wait_ms, limits), host=host, port=port, print=None,
                shutdown_timeout=_SHUTDOWN_TIMEOUT_S)


@contextmanager
def run_app_in_thread(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` on its own event loop in a thread; yields ``http://host:port``; stops on exit."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        box["runner"] = runner
        box["port"] = runner.addresses[0][1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc
        ready.set()
        if "error" not in box:
            loop.run_forever()

    thread = threading.Thread(target=run, daemon=True, name="medcorpus-llm-server")
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]
    try:
        yield f"http://{host}:{box['port']}"
    finally:
        fut = asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop)
        fut.result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


@contextmanager
def running_server(backend: Backend, host: str = "127.0.0.1", port: int = 0, batch_size: int = 8,
                   max_wait_ms: float = 10.0, limits: ServerLimits | None = None) -> Iterator[str]:
    """``backend`` served on loopback for the duration of the block; yields the ``/v1`` base URL."""
    with run_app_in_thread(make_app(backend, batch_size, max_wait_ms, limits), host, port) as url:
        yield url + "/v1"
