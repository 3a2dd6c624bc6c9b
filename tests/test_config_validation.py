"""Config errors surface when the config loads, before any work: the key path, the bad value and
what is expected. The stage list is checked against the registry (names, order, prerequisites)."""
from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml
from testdata import ARTICLES, REPO

from medcorpus.pipelines.config import from_dict, load_config
from medcorpus.pipelines.stages import REGISTRY
from medcorpus.transforms.options import ConfigError

RAW = yaml.safe_load((REPO / "dataflow.yaml").read_text(encoding="utf-8"))


def _with(path: str, value: object, raw: dict | None = None) -> dict:
    out = copy.deepcopy(raw or RAW)
    node = out["defaults"]
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


@pytest.mark.parametrize(("path", "value", "message"), [
    ("dedup.bands", "128", "dedup.bands: '128' is not valid: input should be a valid integer"),
    ("shards.max_samples", -5, "shards.max_samples: -5 is not valid: input should be greater than 0"),
    ("image.max_bytes", 0, "image.max_bytes: 0 is not valid: input should be greater than 0"),
    ("image.jpeg_quality", 500, "image.jpeg_quality: 500 is not valid: input should be less than or equal to 100"),
    ("image.resample", "bicubic", "image.resample: 'bicubic' is not valid: input should be 'area' or 'lanczos'"),
    ("subfigures.min_confidence", 2, "subfigures.min_confidence: 2 is not valid"),
    ("quality.min_side", 12.5, "quality.min_side: 12.5 is not valid: input should be a valid integer"),
    ("dedup.caption_jaccard", "high", "dedup.caption_jaccard: 'high' is not valid"),
    ("concepts.context", "yes", "concepts.context: 'yes' is not valid: input should be a valid boolean"),
    ("workers", -1, "workers: -1 is not valid"),
    ("runner", "spark", "runner: 'spark' is not valid: expected one of local, ray, beam"),
])
def test_a_bad_value_names_its_key_and_what_is_expected(path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(_with(path, value))
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(("path", "suggestion"), [
    ("dedup.bnads", "bands"), ("image.max_sid", "max_side"), ("quality.languges", "languages"),
    ("subfigrues", "subfigures"), ("concepts.ontology", "ontologies"),
])
def test_an_unknown_key_is_refused_with_a_suggestion(path: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=f"{path}: unknown key; did you mean '{suggestion}'"):
        from_dict(_with(path, 1))


def test_a_license_code_that_matches_nothing_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"licenses.comm: 'CC-BY' matches no license code; did you mean 'CC BY'"):
        from_dict(_with("licenses", {"comm": ["CC-BY", "CC0"]}))
    with pytest.raises(ConfigError, match="licenses.commercial: unknown key; did you mean 'comm'"):
        from_dict(_with("licenses", {"commercial": ["CC BY"]}))


@pytest.mark.parametrize(("stages", "message"), [
    (["fetch", "parse", "image", "panel"], "stages: unknown stage 'panel'; did you mean 'panels'"),
    (["fetch", "parse", "panels", "image"], "stages: 'panels' needs 'image' before it"),
    (["fetch", "image"], "stages: 'image' needs 'parse' before it"),
    (["fetch", "parse", "image", "llm", "quality"], "stages: 'llm' runs as a step of its own and must come last"),
    (["fetch", "parse", "image", "image"], "stages: 'image' is listed twice"),
    ("fetch", "stages: 'fetch' is not valid: expected a list of stage names"),
])
def test_the_stage_list_is_checked_against_the_registry(stages: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict({**RAW, "stages": stages})


def test_a_profile_may_set_its_own_stages_and_is_checked_too() -> None:
    assert load_config(REPO / "dataflow.yaml", "recaption").stages[-1] == "llm"
    assert "llm" not in load_config(REPO / "dataflow.yaml").stages
    raw = copy.deepcopy(RAW)
    raw["profiles"]["broken"] = {"stages": ["fetch", "parse", "quality"]}
    with pytest.raises(ConfigError, match="stages: 'quality' needs 'image' before it"):
        from_dict(raw, "broken")
    with pytest.raises(ConfigError, match="--profile relase: not in the config; did you mean 'release'"):
        from_dict(RAW, "relase")


def test_every_registered_stage_declares_what_it_needs() -> None:
    from medcorpus.schemas.manifest import SAMPLES

    for name, stage in REGISTRY.items():
        assert stage.name == name
        assert all(r in REGISTRY for r in stage.requires), name
        assert all(f.name in SAMPLES.names for f in stage.columns), name  # its columns are in the schema


def test_the_cli_refuses_a_bad_config_before_any_work(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(_with("shards.max_bytes", "1GB")), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "medcorpus"), "build", "--config", str(cfg), "--source",
                           f"local:{ARTICLES}", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "shards.max_bytes: '1GB' is not valid" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()  # nothing was written


def test_unknown_filters_and_dedup_kinds_are_named() -> None:
    with pytest.raises(ConfigError, match="quality.enabled: unknown name 'min_sides'; did you mean 'min_side'"):
        from_dict(_with("quality.enabled", ["min_sides"]))
    with pytest.raises(ConfigError, match="dedup.kinds: unknown name 'images'; did you mean 'image'"):
        from_dict(_with("dedup.kinds", ["exact", "images"]))
