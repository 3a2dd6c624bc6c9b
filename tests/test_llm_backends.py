"""Backends end to end: tiny random-weight models built from configs, the OpenAI-compatible server on
loopback, the HTTP client's retries/concurrency/rate limit, the request cache and the stage."""
from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import time

import pyarrow as pa
import pytest
from aiohttp import web
from PIL import Image
from testdata import DATA, roco_captions

from medcorpus.pipelines.llm.cache import RequestCache
from medcorpus.pipelines.llm.config import BackendOptions, LLMOptions
from medcorpus.pipelines.llm.engine import LLMEngine, TaskInput
from medcorpus.pipelines.llm.local_backend import LocalBackend, LocalBackendOptions, decode_data_url, image_data_url
from medcorpus.pipelines.llm.openai_client import OpenAIClient, OpenAIClientOptions
from medcorpus.pipelines.llm.random_models import build_text_model, build_vlm
from medcorpus.pipelines.llm.server import make_app, request_count, run_app_in_thread
from medcorpus.pipelines.llm.stage import LLMStage, backend_engine, recaption, recaption_batch
from medcorpus.pipelines.llm.types import ChatRequest, Completion, GenParams, RunStats
from medcorpus.pipelines.llm.vllm_backend import sampling_kwargs, vllm_messages
from medcorpus.schemas.llm import LLM_FIELDS, to_arrow_row
from medcorpus.transforms.llm_tasks import ENRICH, EXTRACT, RECAPTION

MEDICAT = DATA / "compound" / "medicat_sample"
NO_VLLM = importlib.util.find_spec("vllm") is None  # absent in CI (see test_vllm_backend.py)
needs_no_vllm = pytest.mark.skipif(not NO_VLLM, reason="checks what happens where vllm is not installed")
PARAMS = GenParams(max_new_tokens=8)


def _jpeg(path) -> bytes:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize((64, 48)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def samples():
    """Real MedICaT figures: caption, citing paragraphs and the image."""
    out = []
    for line in (MEDICAT / "sample.jsonl").read_text().splitlines()[:3]:
        rec = json.loads(line)
        out.append(({"caption": rec["s2_caption"], "mentions": rec.get("s2orc_references") or []},
                    _jpeg(MEDICAT / "figures" / f"{rec['pdf_hash']}_{rec['fig_uri']}")))
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    texts = roco_captions()
    return {"llm": build_text_model(root / "tiny-llama", texts), "vlm": build_vlm(root / "tiny-llava", texts)}


@pytest.fixture(scope="module")
def vlm(models):
    return LocalBackend(LocalBackendOptions(str(models["vlm"]), device="cpu", batch_size=2))


@pytest.fixture(scope="module")
def served(vlm):
    app = make_app(vlm, batch_size=4, max_wait_ms=20)
    with run_app_in_thread(app) as url:
        yield app, url + "/v1"


def test_local_text_model_batches_and_is_deterministic(models):
    backend = LocalBackend(LocalBackendOptions(str(models["llm"]), device="cpu", batch_size=2))
    reqs = [ChatRequest(ENRICH.messages({"caption": c, "context": c}), PARAMS) for c in roco_captions(5)]
    out = backend.complete(reqs + reqs[:1])
    assert len(out) == 6 and all(o.text and 0 < o.completion_tokens <= 8 and o.prompt_tokens > 10 for o in out)
    assert out[0].text == out[5].text  # greedy decoding is reproducible across batches
    assert backend.stats.requests == 6 and backend.stats.completion_tokens == sum(o.completion_tokens for o in out)


def test_local_vlm_reads_the_image(vlm, samples):
    fields, image = samples[0]
    with_img = vlm.complete([ChatRequest(RECAPTION.messages({"caption": fields["caption"], "context": ""},
                                                            image_data_url(image)), PARAMS)])[0]
    no_img = vlm.complete([ChatRequest(RECAPTION.messages({"caption": fields["caption"], "context": ""}), PARAMS)])[0]
    assert with_img.text and with_img.completion_tokens > 0
    assert with_img.prompt_tokens == no_img.prompt_tokens + 16 - 1 + 1  # 4x4 patches + CLS replace <image>


def test_http_client_against_loopback_server(served, samples):
    app, url = served
    client = OpenAIClient(OpenAIClientOptions(base_url=url, model="tiny-llava", api_key_env=None))
    assert asyncio.run(client.models()) == ["tiny-llava"]
    reqs = [ChatRequest(RECAPTION.messages({"caption": f["caption"], "context": ""}, image_data_url(img)), PARAMS)
            for f, img in samples]
    out = asyncio.run(client.acomplete(reqs))
    assert all(o.error is None and o.text and o.completion_tokens > 0 for o in out)
    assert client.stats.requests == 3 and client.stats.prompt_tokens == sum(o.prompt_tokens for o in out)


def _stage_config(url: str, cache: str) -> dict:
    return {"tasks": {"clean": True, "enrich": True, "recaption": True, "extract": True},
            "backend": {"kind": "openai", "base_url": url, "model": "tiny-llava", "api_key_env": None,
                        "max_concurrency": 4},
            "generation": {"max_new_tokens": 8}, "repair_retries": 1, "cache": {"path": cache}}


def test_cache_means_zero_repeated_requests_on_rerun(served, samples, tmp_path):
    app, url = served
    config = _stage_config(url, str(tmp_path / "cache.sqlite"))
    before = request_count(app)
    first = LLMStage(LLMOptions.from_dict(config))
    out1 = first.process([f for f, _ in samples], [img for _, img in samples])
    sent = request_count(app) - before
    # enrich (samples with citing paragraphs) + 3 recaption + 3 extract + one schema repair per extraction
    # (random weights never write valid JSON)
    n_enrich = sum(bool(f["mentions"]) for f, _ in samples)
    assert sent == first.summary()["requests"] == n_enrich + 3 + 3 + 3
    assert first.summary()["cache_misses"] == n_enrich + 6 and first.summary()["repairs"] == 3
    again = LLMStage(LLMOptions.from_dict(config))  # a new run (new process state) over the same cache
    out2 = again.process([f for f, _ in samples], [img for _, img in samples])
    assert request_count(app) - before == sent  # nothing sent twice
    assert again.summary()["requests"] == 0 and again.summary()["cache_hits"] == n_enrich + 6
    strip = lambda outs: [[{k: v for k, v in g.items() if k != "cache_hit"} for g in o["generated"]] for o in outs]
    assert strip(out1) == strip(out2)
    assert all(g["cache_hit"] for o in out2 for g in o["generated"])
    assert not any(g["cache_hit"] for o in out1 for g in o["generated"])


def test_stage_provenance_and_arrow_fields(served, samples, tmp_path):
    _, url = served
    out = recaption(samples[0][0], samples[0][1], _stage_config(url, str(tmp_path / "c.sqlite")))
    assert out["caption_original"] == samples[0][0]["caption"]
    assert out["caption_clean"] and not out["caption_clean"].startswith("Figure")
    tasks = {g["task"] for g in out["generated"]}
    assert tasks == {"enrich", "recaption", "extract"} and samples[0][0]["mentions"]
    for g in out["generated"]:
        assert g["backend"] == "openai" and g["model"] == "tiny-llava" and len(g["prompt_hash"]) == 16
        assert json.loads(g["params_json"])["max_new_tokens"] == 8
        if g["task"] == "recaption":
            assert out["caption_llm"] == (g["text"] if g["accepted"] else None)
    extract = next(g for g in out["generated"] if g["task"] == "extract")
    assert extract["accepted"] is False and extract["unsupported"][0].startswith("schema:")
    table = pa.Table.from_pylist([to_arrow_row(out)], schema=pa.schema(LLM_FIELDS))
    assert table.num_rows == 1 and table.column("generated")[0].as_py()[0]["task"] in tasks


class _Scripted:
    """A backend answering from a script, to test the engine and gate decisions exactly."""
    name, model = "scripted", "script-1"

    def __init__(self, answer):
        self.answer, self.calls, self.stats = answer, [], RunStats()

    async def acomplete(self, requests):
        self.calls.append(requests)
        return [Completion(self.answer(r), 5, 3) for r in requests]


def test_gate_keeps_the_original_when_the_output_hallucinates(tmp_path):
    caption = "Chest X-ray showing right upper lobe cavitation due to pulmonary tuberculosis."

    def answer(req):
        text = req.messages[-1]["content"][-1]["text"]
        return "CXR: cavitation of the right upper lobe, pulmonary TB." if "first" in text else \
            "CXR: left upper lobe mass consistent with lung cancer."

    backend = _Scripted(answer)
    stage = LLMStage(LLMOptions.from_dict({"tasks": {"recaption": True}}), backend=backend)
    good, bad = stage.process([{"caption": caption, "mentions": ["The first patient."]},
                               {"caption": caption, "mentions": ["The second patient."]}], [b"img1", b"img2"])
    assert good["caption_llm"].startswith("CXR") and good["generated"][0]["accepted"]
    assert bad["caption_llm"] is None and bad["caption_original"] == caption
    rec = bad["generated"][0]
    assert not rec["accepted"] and "laterality:left" in rec["unsupported"] and rec["backend"] == "scripted"
    assert stage.summary()["accepted"] == 1 and stage.summary()["rejected"] == 1
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 2  # one batch


def test_cache_hits_keep_the_engine_that_wrote_them(samples, tmp_path):
    """The engine is not in the cache key: a rerun of the same model on another engine sends nothing,
    and its outputs still name the engine that wrote them."""
    config = LLMOptions.from_dict({"tasks": {"recaption": True}, "cache": {"path": str(tmp_path / "c.sqlite")}})
    first, second = _Scripted(lambda r: "Chest CT."), _Scripted(lambda r: "never sent")
    second.name = "vllm"
    out1 = LLMStage(config, backend=first).process([f for f, _ in samples], [img for _, img in samples])
    out2 = LLMStage(config, backend=second).process([f for f, _ in samples], [img for _, img in samples])
    assert len(first.calls) == 1 and second.calls == []
    assert [g["backend"] for o in out1 for g in o["generated"]] == ["scripted"] * 3
    assert [(g["backend"], g["cache_hit"]) for o in out2 for g in o["generated"]] == [("scripted", True)] * 3


def test_schema_repair_is_bounded_and_cached(tmp_path):
    answers = iter(['{"modality": "CAT"}', '{"modality": "CT", "anatomy": ["chest"], "findings": []}'])
    backend = _Scripted(lambda r: next(answers))
    engine = LLMEngine(backend, RequestCache(tmp_path / "c.sqlite"), PARAMS, repair_retries=1)
    ans = engine.run(EXTRACT, [TaskInput({"caption": "Chest CT", "context": ""})])[0]
    assert ans.value == {"modality": "CT", "anatomy": ["chest"], "findings": []} and not ans.errors
    assert "not valid" in backend.calls[1][0].messages[-1]["content"]
    never = _Scripted(lambda r: "not json")
    engine = LLMEngine(never, RequestCache(tmp_path / "d.sqlite"), PARAMS, repair_retries=2)
    ans = engine.run(EXTRACT, [TaskInput({"caption": "Chest CT", "context": ""})])[0]
    assert ans.errors and len(never.calls) == 3  # one request + two repairs, then it stops
    engine.run(EXTRACT, [TaskInput({"caption": "Chest CT", "context": ""})])
    assert len(never.calls) == 3


def _ok_body(text: str = "ok") -> dict:
    return {"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


STATE = web.AppKey("state", dict)


def _flaky_app(script: list) -> web.Application:
    """Answers with the scripted statuses in turn ("slow" = sleeps past the client's timeout), then 200."""
    app = web.Application()
    state = app[STATE] = {"n": 0, "inflight": 0, "max_inflight": 0}

    async def chat(request):
        state["n"] += 1
        step = script[state["n"] - 1] if state["n"] <= len(script) else 200
        state["inflight"] += 1
        state["max_inflight"] = max(state["max_inflight"], state["inflight"])
        try:
            if step == "slow":
                await asyncio.sleep(1.0)
            elif step == "pause":
                await asyncio.sleep(0.05)
            elif step != 200:
                return web.json_response({"error": "busy"}, status=step, headers={"Retry-After": "0"})
            return web.json_response(_ok_body())
        finally:
            state["inflight"] -= 1

    app.router.add_post("/v1/chat/completions", chat)
    return app


def _client(url: str, **kw) -> OpenAIClient:
    return OpenAIClient(OpenAIClientOptions(base_url=url + "/v1", api_key_env=None, backoff_base_s=0.01, **kw))


REQ = ChatRequest([{"role": "user", "content": "hi"}], PARAMS)


def test_retries_on_429_5xx_and_timeouts():
    app = _flaky_app([429, 503, "slow", 502])
    with run_app_in_thread(app) as url:
        client = _client(url, max_retries=4, timeout_s=0.3)
        out = asyncio.run(client.acomplete([REQ]))[0]
    assert out.error is None and out.text == "ok"
    assert app[STATE]["n"] == 5 and client.stats.retries == 4 and client.stats.errors == 0


def test_gives_up_after_bounded_retries_and_not_on_4xx():
    app = _flaky_app([503] * 10)
    with run_app_in_thread(app) as url:
        client = _client(url, max_retries=2)
        out = asyncio.run(client.acomplete([REQ]))[0]
        assert out.error.startswith("HTTP 503") and app[STATE]["n"] == 3 and client.stats.errors == 1
    app = _flaky_app([400])
    with run_app_in_thread(app) as url:
        out = asyncio.run(_client(url, max_retries=3).acomplete([REQ]))[0]
    assert out.error.startswith("HTTP 400") and app[STATE]["n"] == 1


def test_bounded_concurrency_and_rate_limit():
    app = _flaky_app(["pause"] * 8)
    with run_app_in_thread(app) as url:
        out = asyncio.run(_client(url, max_concurrency=2).acomplete([REQ] * 8))
        assert all(o.error is None for o in out) and app[STATE]["max_inflight"] == 2
        t = time.monotonic()
        asyncio.run(_client(url, requests_per_second=20, burst=1).acomplete([REQ] * 6))
        assert time.monotonic() - t >= 0.2  # 5 waits of 1/20 s after the first token


def test_recaption_batch_with_local_backend(models, samples, tmp_path):
    config = {"tasks": {"recaption": True, "subcaptions": "rules"},
              "backend": {"kind": "local", "model_path": str(models["vlm"]), "device": "cpu", "batch_size": 4},
              "generation": {"max_new_tokens": 6}, "cache": {"path": str(tmp_path / "c.sqlite")},
              "ray": {"use_vllm": "never"}}
    batch = {"caption": [f["caption"] for f, _ in samples], "mentions": [f["mentions"] for f, _ in samples],
             "image": [img for _, img in samples]}
    out = recaption_batch(batch, config)
    assert out["caption"] == batch["caption"] and len(out["generated"]) == 3
    gens = [json.loads(g) for g in out["generated"]]
    assert all(g[0]["backend"] == "local" and g[0]["model"] == "tiny-llava" for g in gens)
    compound = [json.loads(s) for s in out["subcaptions"] if s]
    assert compound and all(len(s) >= 2 for s in compound)  # the real compound captions split by the rules


# --- vLLM: engine selection and the requests it gets (vLLM itself: test_vllm_backend.py) ---------------

def _local(path, **kw) -> BackendOptions:
    return BackendOptions(kind="local", model_path=str(path), **kw)


def test_engine_selection_without_vllm(models):
    path = models["vlm"]
    assert backend_engine(BackendOptions(), "always") == "openai"  # use_vllm never touches HTTP backends
    assert backend_engine(_local(path), "never") == "local"
    assert backend_engine(_local(path, device="cuda:0"), "auto") == "local"  # one GPU is not a vLLM setting
    if NO_VLLM:
        assert backend_engine(_local(path), "auto") == "local"
        with pytest.raises(ImportError, match=r"backend kind vllm needs the 'vllm' package.*vllm"):
            backend_engine(BackendOptions(kind="vllm", model_path=str(path)), "auto")
        with pytest.raises(ImportError, match=r"ray.use_vllm: always needs the 'vllm' package"):
            backend_engine(_local(path), "always")


@needs_no_vllm
def test_auto_without_vllm_runs_transformers_and_one_model_serves_both_tasks(models, samples):
    stage = LLMStage(LLMOptions.from_dict({
        "tasks": {"enrich": True, "recaption": True},
        "backend": {"kind": "local", "model_path": str(models["vlm"]), "batch_size": 4},
        "generation": {"max_new_tokens": 4}}))
    assert stage.options.ray.use_vllm == "auto"
    assert stage._engine("vision") is stage._engine("text")  # never two copies of the model
    assert isinstance(stage._engine("vision").backend, LocalBackend)
    out = stage.process([samples[0][0]], [samples[0][1]])[0]
    assert {g["task"] for g in out["generated"]} == {"enrich", "recaption"}
    assert {g["backend"] for g in out["generated"]} == {"local"}


@needs_no_vllm
@pytest.mark.parametrize("backend, ray, message", [
    ({"kind": "vllm"}, {}, "backend kind vllm needs the 'vllm' package"),
    ({"kind": "local"}, {"use_vllm": "always"}, "ray.use_vllm: always needs the 'vllm' package"),
])
def test_missing_vllm_fails_when_the_stage_is_built(models, tmp_path, backend, ray, message):
    options = LLMOptions.from_dict({"tasks": {"recaption": True}, "ray": ray,
                                    "backend": {**backend, "model_path": str(models["vlm"])}})  # the config is fine
    with pytest.raises(ImportError, match=message):
        LLMStage(options)
    # a stage whose model is injected needs no engine of its own
    stage = LLMStage(options, backend=_Scripted(lambda r: "CT."))
    assert stage.process([{"caption": "Chest CT."}], [b"img"])[0]["generated"][0]["backend"] == "scripted"


def test_vllm_messages_from_real_requests(samples):
    """What vLLM's chat gets: the task's OpenAI messages, read as the transformers backend reads them."""
    for fields, image in samples:
        url = image_data_url(image)
        inputs = {"caption": fields["caption"], "context": " ".join(fields["mentions"])}
        messages = RECAPTION.messages(inputs, url)
        system, user = vllm_messages(messages, vision=True)
        assert system == {"role": "system", "content": RECAPTION.system}
        assert user["role"] == "user" and [p["type"] for p in user["content"]] == ["image_url", "text"]
        assert decode_data_url(user["content"][0]["image_url"]["url"]) == image
        assert user["content"][1]["text"] == RECAPTION.render(inputs)
        assert vllm_messages(messages, vision=False)[1] == {"role": "user", "content": RECAPTION.render(inputs)}
        repair = ENRICH.messages(inputs) + [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]
        assert vllm_messages(repair, vision=True) == repair  # text-only turns pass as they are
    web_image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.org/a.jpg"}}]}]
    with pytest.raises(ValueError, match="no network"):
        vllm_messages(web_image, vision=True)


def test_sampling_kwargs_carry_every_generation_parameter():
    params = GenParams(max_new_tokens=12, temperature=0.7, top_p=0.9, seed=3)
    assert sampling_kwargs(params) == {"max_tokens": 12, "temperature": 0.7, "top_p": 0.9, "seed": 3}
    assert sampling_kwargs(PARAMS)["temperature"] == 0.0  # greedy by default, as the transformers backend


def _open_cache_together(args: tuple[str, object]) -> str:
    path, barrier = args
    barrier.wait()  # type: ignore[attr-defined]
    try:
        cache = RequestCache(path)
        cache.put("k", {"text": "t"})
        cache.close()
        return "ok"
    except Exception as e:  # noqa: BLE001 - the failure is the result
        return repr(e)


def test_workers_that_open_a_new_cache_together_all_open_it(tmp_path) -> None:
    """Worker processes that start together each open the cache file; SQLite refuses a second
    switch to WAL at that moment with "database is locked" at once (it failed a 2-worker vLLM
    build, and 6 of 120 opens of this test), so the setup is serialized."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for trial in range(30):
        path = str(tmp_path / f"cache{trial}.sqlite")
        with ctx.Manager() as manager:
            barrier = manager.Barrier(4)
            with ctx.Pool(4) as pool:
                assert pool.map(_open_cache_together, [(path, barrier)] * 4) == ["ok"] * 4
        assert len(RequestCache(path)) == 1
