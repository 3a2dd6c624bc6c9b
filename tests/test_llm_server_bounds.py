"""``serve-llm`` bounds what one client can ask: the max_tokens cap, the prompt limit, cancellation on
disconnect, 429 beyond ``max_concurrent``, and a prompt stop on SIGTERM/SIGINT mid-generation.

The tiny random model never emits its end token, so an uncapped or uncancelled request really
generates for minutes: each bound is observable as time or token counts."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from testdata import roco_captions

from medcorpus.pipelines.llm.local_backend import LocalBackend, LocalBackendOptions
from medcorpus.pipelines.llm.random_models import build_text_model
from medcorpus.pipelines.llm.server import ServerLimits, in_flight, make_app, run_app_in_thread

HUGE = 1_000_000_000
HUGE_CAP = 1_000_000  # a cap no test request reaches: what remains is cancellation


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_text_model(tmp_path_factory.mktemp("models") / "tiny-llama", roco_captions())


@pytest.fixture(scope="module")
def backend(model):
    return LocalBackend(LocalBackendOptions(str(model), device="cpu", batch_size=1))


def _body(max_tokens: int, text: str = "Chest CT shows") -> dict:
    return {"model": "tiny-llama", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}


def _serve(backend, **limits):
    return run_app_in_thread(make_app(backend, batch_size=1, max_wait_ms=1, limits=ServerLimits(**limits)))


def _wait_until(test, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test():
            return True
        time.sleep(0.02)
    return False


def _give_up_after(url: str, seconds: float) -> threading.Thread:
    """A client that sends a huge request and disconnects when its read timeout expires."""
    def run() -> None:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json=_body(HUGE), timeout=httpx.Timeout(10, read=seconds))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_max_tokens_is_clamped_to_the_cap(backend):
    with _serve(backend, max_tokens_cap=12) as url:
        resp = httpx.post(url + "/v1/chat/completions", json=_body(HUGE), timeout=60)
    assert resp.status_code == 200
    usage = resp.json()["usage"]
    assert 0 < usage["completion_tokens"] <= 12
    assert resp.json()["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("body, message", [
    (_body(8, "x" * 101), "prompt too long: 101 characters"),
    (_body(-1), "max_tokens must be at least 1"),
])
def test_what_no_clamp_can_fix_is_a_400_with_a_json_error(backend, body, message):
    with _serve(backend, max_prompt_chars=100) as url:
        resp = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert message in resp.json()["error"]["message"]


def test_a_client_that_disconnects_frees_the_server(backend):
    """The server notices a disconnect at its next poll, so the slot is free within a bound, not at once."""
    app = make_app(backend, batch_size=1, max_wait_ms=1, limits=ServerLimits(max_tokens_cap=HUGE_CAP, max_concurrent=1))
    with run_app_in_thread(app) as url:
        client = _give_up_after(url, 1.0)
        client.join(30)
        assert not client.is_alive()
        assert _wait_until(lambda: in_flight(app) == 0, 5), "the abandoned request still holds its slot after 5 s"
        start = time.monotonic()
        resp = httpx.post(url + "/v1/chat/completions", json=_body(2), timeout=30)
        elapsed = time.monotonic() - start
    assert resp.status_code == 200 and resp.json()["usage"]["completion_tokens"] == 2
    assert elapsed < 5, f"the next request waited {elapsed:.1f}s: the abandoned generation kept running"


def test_beyond_max_concurrent_is_an_immediate_429(backend):
    app = make_app(backend, batch_size=1, max_wait_ms=1, limits=ServerLimits(max_tokens_cap=HUGE_CAP, max_concurrent=1))
    with run_app_in_thread(app) as url:
        client = _give_up_after(url, 3.0)
        assert _wait_until(lambda: in_flight(app) == 1, 10)
        start = time.monotonic()
        resp = httpx.post(url + "/v1/chat/completions", json=_body(2), timeout=10)
        elapsed = time.monotonic() - start
        client.join(30)
        assert _wait_until(lambda: in_flight(app) == 0, 5)
    assert resp.status_code == 429 and elapsed < 2  # a queued request would wait out the 3 s client
    assert resp.headers["Retry-After"] == "1"
    assert resp.json()["error"]["type"] == "rate_limit_error"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(model: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "medcorpus.pipelines.cli", "serve-llm", "--model", str(model), "--device", "cpu",
           "--host", "127.0.0.1", "--port", str(port), "--max-tokens-cap", str(HUGE_CAP)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _healthy(url: str) -> dict | None:
    try:
        return httpx.get(url + "/health", timeout=2).json()
    except httpx.HTTPError:
        return None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_server_mid_generation(model, signum):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_server(model, port)
    try:
        assert _wait_until(lambda: proc.poll() is None and _healthy(url) is not None, 120), proc.stderr.read().decode()
        answers: list[int] = []
        client = threading.Thread(target=lambda: answers.append(httpx.post(
            url + "/v1/chat/completions", json=_body(HUGE), timeout=30).status_code), daemon=True)
        client.start()
        assert _wait_until(lambda: (_healthy(url) or {}).get("in_flight") == 1, 10)
        time.sleep(0.5)  # well into decoding
        start = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(timeout=5)
        elapsed = time.monotonic() - start
        client.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 0 and elapsed < 5
    assert answers == [503]  # cut short, so not passed off as a completion (the pipeline would cache it)
