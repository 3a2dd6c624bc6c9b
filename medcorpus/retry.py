"""The one retry policy for remote calls (PMC Cloud over S3/HTTPS, OpenAI-compatible servers).

tenacity runs the loop; this module only fixes the policy, so every client waits alike:
``min(max_s, base_s * 2**n)`` for the n-th retry (0-based), scaled by a jitter drawn uniformly
from [0.5, 1.5). The jitter spreads many workers hitting one throttled endpoint so they do not
retry in lockstep, while never waiting less than half the nominal delay (a throttled server gets
real relief); it comes from a ``random.Random(seed)``, so tests can fix and record it. A server's
``Retry-After`` (an exception's ``retry_after``) raises the wait to at least that, capped at max_s.
"""
from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable

import tenacity

__all__ = ["Backoff", "retrying"]


class Backoff(tenacity.wait.wait_base):
    """Exponential backoff with a seeded [0.5, 1.5) jitter; thread-safe (one RNG, one lock)."""

    def __init__(self, base_s: float, max_s: float, seed: int | None = None) -> None:
        self.base_s, self.max_s = base_s, max_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 = the first retry)."""
        with self._lock:
            jitter = 0.5 + self._rng.random()
        wait = min(self.max_s, self.base_s * 2 ** retry) * jitter
        return max(wait, min(retry_after, self.max_s)) if retry_after is not None else wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        return self.delay(retry_state.attempt_number - 1, getattr(exc, "retry_after", None))


def retrying(retry_on: type[BaseException] | tuple[type[BaseException], ...], max_retries: int, wait: Backoff, *,
             sleep: Callable[[float], Any] = time.sleep,
             before_sleep: Callable[[tenacity.RetryCallState], Any] | None = None,
             asynchronous: bool = False) -> tenacity.BaseRetrying:
    """``max_retries + 1`` attempts, retrying only ``retry_on``; the last error is re-raised.

    ``asynchronous`` gives a loop for coroutines (it sleeps with ``asyncio.sleep``).
    """
    common: dict[str, Any] = dict(stop=tenacity.stop_after_attempt(max_retries + 1), wait=wait,
                                  retry=tenacity.retry_if_exception_type(retry_on),
                                  before_sleep=before_sleep, reraise=True)
    if asynchronous:
        return tenacity.AsyncRetrying(**common)
    return tenacity.Retrying(sleep=sleep, **common)
