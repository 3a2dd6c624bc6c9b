"""Build configuration: dataflow.yaml (defaults + named profiles) → one typed, hashable config.

The config hash covers only what changes output bytes (stage options, shard sizes, license policy),
not where or how fast it runs (runner, workers, the ``ray:`` and ``beam:`` runner settings), so every runner of one config writes the same
manifest and the hash in each row names the config that made it.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from medcorpus.transforms.images import ImageOptions
from medcorpus.transforms.licenses import DEFAULT_FAMILIES
from medcorpus.transforms.options import checked

FAMILIES = ("comm", "noncomm", "other")
RUN_KEYS = ("runner", "workers", "ray", "beam", "profile")  # where and how fast, not what: outside the hash
# decontam keys that name where eval sets come from (the rest are DecontamOptions)
DECONTAM_SOURCES = ("registry", "builtin_data")
# concepts: where the vocabulary comes from (a built one, or sources to build it from) and how to link
CONCEPT_SOURCES = ("vocab", "ontologies", "umls_dir")
CONCEPT_KEYS = (*CONCEPT_SOURCES, "ann", "ner_model", "context")


@dataclass(frozen=True)
class ShardOptions:
    max_samples: int = 10_000
    max_bytes: int = 1_000_000_000


@dataclass(frozen=True)
class SubfigureConfig:
    """The ``panels`` stage: compound figures split into panel samples (see transforms/subfigures.py)."""

    ocr: str = "never"  # never | auto (only when panel and label counts disagree) | always
    keep_whole_figure: bool = True  # the parent figure stays a sample beside its panels
    split_unlabeled: bool = False  # split figures whose caption names no panels (reading order only)
    max_panels: int = 40
    min_confidence: float = 0.0  # pairs below it are not emitted (the figure stays whole)
    detector: str | None = None  # path of an ONNX/TorchScript panel detector replacing layout analysis


@dataclass(frozen=True)
class BuildConfig:
    stages: tuple[str, ...] = ("fetch", "parse", "image", "panels", "quality")
    image: ImageOptions = ImageOptions()
    shards: ShardOptions = ShardOptions()
    subfigures: SubfigureConfig = SubfigureConfig()
    llm: dict[str, Any] = field(default_factory=dict)  # the llm stage's options (pipelines/llm/config.py)
    quality: dict[str, Any] = field(default_factory=dict)  # filters (transforms/quality.py FilterOptions)
    image_types: dict[str, Any] = field(default_factory=dict)  # tags (transforms/image_types.py)
    dedup: dict[str, Any] = field(default_factory=dict)  # transforms/dedup.py DedupOptions; kinds: [] turns it off
    decontam: dict[str, Any] = field(default_factory=dict)  # eval-set registry + manifests/evalsets.py options
    concepts: dict[str, Any] = field(default_factory=dict)  # vocabulary sources + linker options (CONCEPT_KEYS)
    licenses: dict[str, list[str]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_FAMILIES))
    families: tuple[str, ...] = FAMILIES
    runner: str = "local"
    workers: int = 0
    ray: dict[str, Any] = field(default_factory=dict)  # RayRunner settings (pipelines/runner_ray.py)
    beam: dict[str, Any] = field(default_factory=dict)  # BeamRunner settings (pipelines/runner_beam.py)
    profile: str | None = None

    def output_options(self) -> dict[str, Any]:
        d = asdict(self)
        for key in RUN_KEYS:
            d.pop(key)
        d["llm"] = self.llm_options().output_options() if "llm" in self.stages else None
        for section, keys in (("decontam", DECONTAM_SOURCES), ("concepts", CONCEPT_SOURCES)):
            for k in keys:  # what eval sets and vocabularies hold counts (see build.py), not where they lie
                d[section].pop(k, None)
        return d

    def filter_options(self) -> Any:
        from medcorpus.transforms.quality import FilterOptions

        return FilterOptions.from_dict(self.quality)

    def image_type_options(self) -> Any:
        from medcorpus.transforms.image_types import ImageTypeOptions

        return ImageTypeOptions.from_dict(self.image_types)

    def dedup_options(self) -> Any:
        from medcorpus.transforms.dedup import DedupOptions

        return DedupOptions.from_dict(self.dedup)

    def decontam_options(self) -> Any:
        from medcorpus.manifests.evalsets import DecontamOptions

        return DecontamOptions(**{k: v for k, v in self.decontam.items() if k not in DECONTAM_SOURCES})

    def llm_options(self) -> Any:
        from medcorpus.pipelines.llm.config import LLMOptions

        return LLMOptions.from_dict(self.llm)

    def config_hash(self) -> str:
        blob = json.dumps(self.output_options(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _typed(cls: type, values: dict[str, Any]) -> Any:
    return cls(**checked(cls, values, f"{cls.__name__} keys in config"))


def from_dict(raw: dict[str, Any], profile: str | None = None) -> BuildConfig:
    settings = dict(raw.get("defaults") or {})
    if profile:
        profiles = raw.get("profiles") or {}
        if profile not in profiles:
            raise ValueError(f"profile {profile!r} not in config (have: {sorted(profiles)})")
        settings = _merge(settings, profiles[profile])
    image = _typed(ImageOptions, settings.pop("image", {}) or {})
    shards = _typed(ShardOptions, settings.pop("shards", {}) or {})
    subfigures = _typed(SubfigureConfig, settings.pop("subfigures", {}) or {})
    llm = settings.pop("llm", {}) or {}
    sections = {k: settings.pop(k, {}) or {} for k in ("quality", "image_types", "dedup", "decontam", "concepts")}
    unknown = set(sections["concepts"]) - set(CONCEPT_KEYS)
    if unknown:
        raise ValueError(f"unknown concepts keys in config: {sorted(unknown)}")
    licenses = settings.pop("licenses", None) or copy.deepcopy(DEFAULT_FAMILIES)
    families = tuple(settings.pop("families", FAMILIES))
    bad = set(families) - set(FAMILIES)
    if bad:
        raise ValueError(f"unknown shard families {sorted(bad)}; use {FAMILIES}")
    stages = tuple(raw.get("stages") or BuildConfig.stages)
    cfg = _typed(BuildConfig, {**settings, "image": image, "shards": shards, "subfigures": subfigures, "llm": llm, **sections, "licenses": licenses,
                               "families": families, "stages": stages, "profile": profile})
    if cfg.subfigures.ocr not in ("never", "auto", "always"):
        raise ValueError("subfigures.ocr must be never, auto or always")
    if cfg.image.reencode not in ("auto", "always", "never"):
        raise ValueError("image.reencode must be auto, always or never")
    if cfg.image.resample not in ("area", "lanczos"):
        raise ValueError("image.resample must be area or lanczos")
    if "llm" in cfg.stages:
        cfg.llm_options()  # unknown keys and bad values fail here, before any work
    cfg.filter_options(), cfg.image_type_options(), cfg.dedup_options(), cfg.decontam_options()
    return cfg


def load_config(path: str | Path | None = None, profile: str | None = None) -> BuildConfig:
    if path is None:
        return from_dict({}, None) if profile is None else from_dict({"profiles": {}}, profile)
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    cfg = from_dict(raw, profile)
    # eval-set and vocabulary paths in a config file are relative to that file
    return replace(cfg, decontam=_resolve(cfg.decontam, DECONTAM_SOURCES, Path(path).parent),
                   concepts=_resolve(cfg.concepts, CONCEPT_SOURCES, Path(path).parent))


def _resolve(section: dict[str, Any], keys: tuple[str, ...], base: Path) -> dict[str, Any]:
    def one(v: str) -> str:
        return str((base / v).resolve())

    out = dict(section)
    for k in keys:
        if out.get(k):
            out[k] = [one(v) for v in out[k]] if isinstance(out[k], list) else one(out[k])
    return out
