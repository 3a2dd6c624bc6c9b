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
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import Field

from medcorpus.transforms.images import ImageOptions
from medcorpus.transforms.licenses import DEFAULT_FAMILIES
from medcorpus.transforms.options import ConfigError, PositiveInt, suggest, unknown_keys, validated
from medcorpus.transforms.subfigures import SubfigureConfig

T = TypeVar("T")

FAMILIES = ("comm", "noncomm", "other")
RUN_KEYS = ("runner", "workers", "ray", "beam", "output", "profile")  # where and how fast, not what: outside the hash
# decontam keys that name where eval sets come from (the rest are DecontamOptions)
DECONTAM_SOURCES = ("registry", "builtin_data")
# concepts: where the vocabulary comes from (a built one, or sources to build it from) and how to link
CONCEPT_SOURCES = ("vocab", "ontologies", "umls_dir")
# dicom: where the pseudonym key lies (the key itself joins each unit's fingerprint)
DICOM_SOURCES = ("secret_file",)


@dataclass(frozen=True)
class ShardOptions:
    max_samples: PositiveInt = 10_000
    max_bytes: PositiveInt = 1_000_000_000


@dataclass(frozen=True)
class OutputOptions:
    """How an output folder keeps its releases (``manifests/layout.py``). At least two: a reader
    that opened the release a build replaces must find it until the next one is published."""

    keep_releases: Annotated[int, Field(ge=2)] = 3


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
    dicom: dict[str, Any] = field(default_factory=dict)  # DICOM sources (transforms/dicom_options.py DicomOptions)
    licenses: dict[str, list[str]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_FAMILIES))
    families: tuple[str, ...] = FAMILIES
    runner: str = "local"
    workers: int = 0
    ray: dict[str, Any] = field(default_factory=dict)  # RayRunner settings (pipelines/runner_ray.py)
    beam: dict[str, Any] = field(default_factory=dict)  # BeamRunner settings (pipelines/runner_beam.py)
    output: OutputOptions = OutputOptions()  # releases kept (not hashed: it changes no release's bytes)
    profile: str | None = None

    def output_options(self) -> dict[str, Any]:
        d = asdict(self)
        for key in RUN_KEYS:
            d.pop(key)
        if "llm" in self.stages:
            from medcorpus.pipelines.llm.config import LLMOptions

            d["llm"] = self.section("llm", LLMOptions).output_options()
        else:
            d["llm"] = None
        for section, keys in (("decontam", DECONTAM_SOURCES), ("concepts", CONCEPT_SOURCES), ("dicom", DICOM_SOURCES)):
            for k in keys:  # what eval sets and vocabularies hold counts (see build.py), not where they lie
                d[section].pop(k, None)
        return d

    def section(self, name: str, kind: type[T]) -> T:
        """The validated options of one config section (the classes stages declare in ``sections``)."""
        value = getattr(self, name)
        if isinstance(value, kind):
            return value
        from_dict = getattr(kind, "from_dict", None)
        return from_dict(value) if from_dict else validated(kind, value, name)

    def dedup_options(self) -> Any:
        from medcorpus.transforms.dedup import DedupOptions

        return self.section("dedup", DedupOptions)

    def config_hash(self) -> str:
        blob = json.dumps(self.output_options(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


TYPED_SECTIONS = ("image", "shards", "subfigures")  # held as options dataclasses
DICT_SECTIONS = ("llm", "quality", "image_types", "dedup", "decontam", "concepts", "dicom")  # held as given (hashed so)
SECTIONS = (*TYPED_SECTIONS, *DICT_SECTIONS)
SETTINGS = (*SECTIONS, "licenses", "families", *RUN_KEYS[:-1])


def from_dict(raw: dict[str, Any], profile: str | None = None) -> BuildConfig:
    """The typed config of ``defaults:`` merged with a profile; every value is checked here, before
    any work (pipelines/validate.py)."""
    from medcorpus.pipelines.validate import check_settings, check_stages

    unknown_keys(raw, ("version", "stages", "defaults", "profiles"), "config")
    settings = dict(raw.get("defaults") or {})
    stages = raw.get("stages")
    if profile:
        profiles = raw.get("profiles") or {}
        if profile not in profiles:
            raise ConfigError(f"--profile {profile}: not in the config{suggest(profile, profiles)} (have: {sorted(profiles)})")
        over = dict(profiles[profile] or {})
        stages = over.pop("stages", stages)  # a profile may turn on the stages it needs
        settings = _merge(settings, over)
    stages = check_stages(stages if stages is not None else BuildConfig.stages)
    check_settings(settings)
    cfg = BuildConfig(
        stages=stages, image=validated(ImageOptions, settings.get("image"), "image"),
        shards=validated(ShardOptions, settings.get("shards"), "shards"),
        subfigures=validated(SubfigureConfig, settings.get("subfigures"), "subfigures"),
        **{k: dict(settings.get(k) or {}) for k in DICT_SECTIONS},
        licenses=settings.get("licenses") or copy.deepcopy(DEFAULT_FAMILIES),
        families=tuple(settings.get("families", FAMILIES)), runner=settings.get("runner", "local"),
        workers=settings.get("workers", 0), ray=dict(settings.get("ray") or {}), beam=dict(settings.get("beam") or {}),
        output=validated(OutputOptions, settings.get("output"), "output"), profile=profile)
    from medcorpus.pipelines.validate import check_sections

    check_sections(cfg)
    return cfg


def load_config(path: str | Path | None = None, profile: str | None = None) -> BuildConfig:
    if path is None:
        return from_dict({}, None) if profile is None else from_dict({"profiles": {}}, profile)
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    cfg = from_dict(raw, profile)
    # eval-set and vocabulary paths in a config file are relative to that file
    return replace(cfg, decontam=_resolve(cfg.decontam, DECONTAM_SOURCES, Path(path).parent),
                   concepts=_resolve(cfg.concepts, CONCEPT_SOURCES, Path(path).parent),
                   dicom=_resolve(cfg.dicom, DICOM_SOURCES, Path(path).parent))


def _resolve(section: dict[str, Any], keys: tuple[str, ...], base: Path) -> dict[str, Any]:
    def one(v: str) -> str:
        return str((base / v).resolve())

    out = dict(section)
    for k in keys:
        if out.get(k):
            out[k] = [one(v) for v in out[k]] if isinstance(out[k], list) else one(out[k])
    return out
