"""The llm stage inside a corpus build: a tiny random VLM (built from a config) re-captions real figures."""
from __future__ import annotations

import importlib.util
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from testdata import REPO, copy_articles, roco_captions

from medcorpus.manifests.query import query
from medcorpus.pipelines.build import build
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.llm.random_models import build_vlm
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources.local import LocalSource



@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = roco_captions(400)
    return build_vlm(tmp_path_factory.mktemp("vlm") / "tiny-llava", texts)


def _with_llm(tiny_vlm: Path):  # noqa: ANN202
    """The default config plus the llm stage: clean + re-caption with the tiny local VLM on transformers."""
    base = load_config(REPO / "dataflow.yaml")
    return replace(base, stages=(*base.stages, "llm"), llm={
        "tasks": {"clean": True, "recaption": True},
        "backend": {"kind": "local", "model_path": str(tiny_vlm), "device": "cpu", "batch_size": 4},
        "generation": {"max_new_tokens": 6}, "ray": {"use_vllm": "never"},  # transformers, vllm installed or not
    })


def test_build_with_llm_stage_keeps_provenance_and_never_asks_twice(tmp_path: Path, tiny_vlm: Path) -> None:
    src = copy_articles(tmp_path / "in", ["elife-43154-v2"])
    cfg = _with_llm(tiny_vlm)
    work = tmp_path / "work"
    first = build(cfg, LocalSource(str(src)), LocalRunner(1), str(tmp_path / "out1"), work_dir=str(work),
                  progress=False)
    assert first.llm_counts["llm:requests"] == first.samples > 0
    _, rows = query(str(tmp_path / "out1"), """
        SELECT key, caption, caption_original, caption_clean, caption_llm, generated FROM samples ORDER BY key""")
    for key, caption, original, clean, generated_caption, generated in rows:
        assert original and clean and generated, key
        g = generated[0]
        assert g["task"] == "recaption" and g["backend"] == "local" and g["prompt_hash"] and not g["cache_hit"]
        if g["accepted"]:  # an accepted re-caption becomes the sample's caption; the original is kept
            assert caption == generated_caption == g["text"]
        else:  # a rejected one is recorded, and the caption stays the (cleaned) source
            assert generated_caption is None and caption == clean and g["score"] < 1
    # a rebuild from scratch (staging gone, request cache kept) sends no request at all
    shutil.rmtree(work / "staging")
    second = build(cfg, LocalSource(str(src)), LocalRunner(1), str(tmp_path / "out2"), work_dir=str(work),
                   progress=False)
    assert second.llm_counts.get("llm:requests", 0) == 0
    assert second.llm_counts["llm:cache_hits"] == first.samples
    _, hits = query(str(tmp_path / "out2"), "SELECT DISTINCT generated[1].cache_hit FROM samples")
    assert hits == [(True,)]


def test_llm_config_changes_the_config_hash_and_bad_keys_fail_early() -> None:
    base = load_config(REPO / "dataflow.yaml")
    on = replace(base, stages=(*base.stages, "llm"), llm={"tasks": {"recaption": True}})
    other_model = replace(on, llm={"tasks": {"recaption": True}, "backend": {"model": "another"}})
    url_only = replace(on, llm={"tasks": {"recaption": True}, "backend": {"base_url": "http://127.0.0.1:9/v1"}})
    assert len({base.config_hash(), on.config_hash(), other_model.config_hash()}) == 3
    assert url_only.config_hash() == on.config_hash()  # where a model is served does not change output
    from medcorpus.pipelines.config import from_dict

    with pytest.raises(ValueError, match="unknown"):
        from_dict({"stages": ["fetch", "parse", "image", "llm"], "defaults": {"llm": {"taskz": {}}}})


def _llm_backend(**backend) -> dict:
    return {"tasks": {"recaption": True}, "backend": backend}


def test_engine_is_not_in_the_config_hash_and_vllm_keys_are_checked_early() -> None:
    """kind: vllm names a model as kind: local does (the engine is how it runs, like the device);
    the config is checked where it is read, without vllm, which only the GPU workers may have."""
    from medcorpus.pipelines.llm.config import LLMOptions

    base = load_config(REPO / "dataflow.yaml")
    cfg = lambda llm: replace(base, stages=(*base.stages, "llm"), llm=llm)  # noqa: E731
    local = cfg(_llm_backend(kind="local", model_path="/models/llava-med"))
    same = [cfg(_llm_backend(kind="vllm", model_path="/models/llava-med", engine_kwargs={"max_model_len": 8192})),
            cfg({**_llm_backend(kind="local", model_path="/models/llava-med"), "ray": {"use_vllm": "never"}}),
            cfg(_llm_backend(kind="local", model_path="/models/llava-med", device="cpu", batch_size=64))]
    assert {c.config_hash() for c in same} == {local.config_hash()}
    assert cfg(_llm_backend(kind="vllm", model_path="/models/other")).config_hash() != local.config_hash()
    assert cfg(_llm_backend(kind="openai", model="llava-med")).config_hash() != local.config_hash()
    bad = {"kind must be one of openai, local, vllm": _llm_backend(kind="tgi"),
           "kind vllm needs model_path": _llm_backend(kind="vllm"),
           "kind local needs model_path": _llm_backend(kind="local"),
           "vllm needs device auto, cuda or cpu": _llm_backend(kind="vllm", model_path="m", device="cuda:1"),
           "llm.backend.engine_kwargs: .* is not valid": _llm_backend(kind="vllm", model_path="m", engine_kwargs=[1]),
           "use_vllm must be one of": {"ray": {"use_vllm": "sometimes"}},
           "always runs local backends on vLLM": {**_llm_backend(kind="local", model_path="m", device="cuda:0"),
                                                  "ray": {"use_vllm": "always"}}}
    for message, llm in bad.items():
        with pytest.raises(ValueError, match=message):
            LLMOptions.from_dict(llm)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="checks a worker without vllm")
def test_worker_without_vllm_fails_building_the_llm_stage(tmp_path: Path, tiny_vlm: Path) -> None:
    from medcorpus.pipelines.stages import REGISTRY, WorkerEnv

    cfg = replace(_with_llm(tiny_vlm), llm=_llm_backend(kind="vllm", model_path=str(tiny_vlm)))
    assert cfg.config_hash()  # the driver reads the config without vllm
    stage = REGISTRY["llm"](cfg, WorkerEnv(None, work_dir=str(tmp_path)))  # type: ignore[arg-type]
    with pytest.raises(ImportError, match="backend kind vllm needs the 'vllm' package"):
        stage.setup()


def test_llm_stage_as_its_own_ray_step_matches_local(tmp_path: Path, tiny_vlm: Path,
                                                     request: pytest.FixtureRequest) -> None:
    """On Ray the llm stage runs on actors of its own (ray.llm resources) after the other stages."""
    request.getfixturevalue("ray_cluster")
    from conftest import tree_bytes

    from medcorpus.pipelines.runners import make_runner

    src = copy_articles(tmp_path / "in", ["elife-43154-v2"])
    cfg = _with_llm(tiny_vlm)
    local = build(cfg, LocalSource(str(src)), LocalRunner(1), str(tmp_path / "local"), progress=False)
    ray_summary = build(cfg, LocalSource(str(src)), make_runner("ray", 2, config=cfg), str(tmp_path / "ray"),
                        progress=False)
    assert ray_summary.llm_counts["llm:requests"] == local.llm_counts["llm:requests"] == local.samples
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")
    assert list((tmp_path / "ray" / "_work" / "staging").rglob("*-pre.meta"))  # the two steps ran
