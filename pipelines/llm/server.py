"""An OpenAI-compatible HTTP server (``/v1/chat/completions``, ``/v1/models``) over any backend.

Why: users without a GPU server can serve a local transformers model to the same HTTP client the
pipeline uses for vLLM or a hosted API, and tests get a real endpoint on loopback. Concurrent
requests are gathered into micro-batches (up to ``batch_size``, waiting at most ``max_wait_ms``)
so the local backend's batching works behind HTTP too. Images come as data URLs only.
"""
from __future__ import annotations

import asyncio
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from aiohttp import web

from medcorpus.pipelines.llm.types import Backend, ChatRequest, Completion, GenParams

__all__ = ["make_app", "serve", "running_server", "run_app_in_thread", "request_count", "REQUESTS"]

REQUESTS = web.AppKey("requests", dict)  # {"n": chat requests received}; a dict so it can change after start


def request_count(app: web.Application) -> int:
    """Chat-completion requests the app has received (the cache tests count these)."""
    return app[REQUESTS]["n"]


class _Batcher:
    def __init__(self, backend: Backend, batch_size: int, max_wait_ms: float):
        self.backend, self.batch_size, self.max_wait = backend, max(1, batch_size), max_wait_ms / 1000
        self.queue: asyncio.Queue[tuple[ChatRequest, asyncio.Future]] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def submit(self, req: ChatRequest) -> Completion:
        if self.task is None:
            self.task = asyncio.create_task(self._loop())
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((req, fut))
        return await fut

    async def _loop(self) -> None:
        while True:
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
            try:
                results = await self.backend.acomplete([r for r, _ in items])
                for (_, fut), res in zip(items, results):
                    if not fut.done():
                        fut.set_result(res)
            except Exception as exc:  # noqa: BLE001 — every waiting request gets the error
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)


def _request(body: dict[str, Any]) -> ChatRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    params = GenParams(max_new_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 256),
                       temperature=float(body.get("temperature") or 0.0), top_p=float(body.get("top_p") or 1.0),
                       seed=int(body.get("seed") or 0))
    return ChatRequest(messages=messages, params=params)


def make_app(backend: Backend, batch_size: int = 8, max_wait_ms: float = 10.0) -> web.Application:
    batcher = _Batcher(backend, batch_size, max_wait_ms)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[REQUESTS] = {"n": 0}

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": backend.model, "object": "model",
                                                               "owned_by": "medcorpus"}]})

    async def chat(request: web.Request) -> web.Response:
        request.app[REQUESTS]["n"] += 1
        try:
            req = _request(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": {"message": str(exc), "type": "invalid_request_error"}}, status=400)
        try:
            res = await batcher.submit(req)
        except ValueError as exc:  # bad image data etc.
            return web.json_response({"error": {"message": str(exc), "type": "invalid_request_error"}}, status=400)
        return web.json_response({
            "id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion", "created": int(time.time()),
            "model": backend.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": res.text},
                         "finish_reason": res.finish_reason}],
            "usage": {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                      "total_tokens": res.prompt_tokens + res.completion_tokens},
        })

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stop_batcher(_: web.Application) -> None:
        if batcher.task is not None:
            batcher.task.cancel()
            try:
                await batcher.task
            except asyncio.CancelledError:
                pass

    app.on_cleanup.append(stop_batcher)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    return app


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 8000, batch_size: int = 8,
          max_wait_ms: float = 10.0) -> None:
    """Serve until interrupted (the ``medcorpus serve-llm`` command)."""
    web.run_app(make_app(backend, batch_size, max_wait_ms), host=host, port=port, print=None)


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
                   max_wait_ms: float = 10.0) -> Iterator[str]:
    """``backend`` served on loopback for the duration of the block; yields the ``/v1`` base URL."""
    with run_app_in_thread(make_app(backend, batch_size, max_wait_ms), host, port) as url:
        yield url + "/v1"
