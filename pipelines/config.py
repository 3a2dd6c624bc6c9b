"""Build configuration: dataflow.yaml (defaults + named profiles) → one typed, hashable config.

The config hash covers only what changes output bytes (stage options, shard sizes, license policy),
not where or how fast it runs (runner, workers, the ``ray:`` and ``beam:`` runner settings), so every runner of one config writes the same
manifest and the hash in each row names the config that made it.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from medcorpus.transforms.images import ImageOptions
from medcorpus.transforms.licenses import DEFAULT_FAMILIES

FAMILIES = ("comm", "noncomm", "other")
RUN_KEYS = ("runner", "workers", "ray", "beam", "profile")  # where and how fast, not what: outside the hash


@dataclass(frozen=True)
class ShardOptions:
    max_samples: int = 10_000
    max_bytes: int = 1_000_000_000


@dataclass(frozen=True)
class BuildConfig:
    stages: tuple[str, ...] = ("fetch", "parse", "image")
    image: ImageOptions = ImageOptions()
    shards: ShardOptions = ShardOptions()
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
        return d

    def config_hash(self) -> str:
        blob = json.dumps(self.output_options(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _typed(cls: type, values: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys in config: {sorted(unknown)}")
    return cls(**values)


def from_dict(raw: dict[str, Any], profile: str | None = None) -> BuildConfig:
    settings = dict(raw.get("defaults") or {})
    if profile:
        profiles = raw.get("profiles") or {}
        if profile not in profiles:
            raise ValueError(f"profile {profile!r} not in config (have: {sorted(profiles)})")
        settings = _merge(settings, profiles[profile])
    image = _typed(ImageOptions, settings.pop("image", {}) or {})
    shards = _typed(ShardOptions, settings.pop("shards", {}) or {})
    licenses = settings.pop("licenses", None) or copy.deepcopy(DEFAULT_FAMILIES)
    families = tuple(settings.pop("families", FAMILIES))
    bad = set(families) - set(FAMILIES)
    if bad:
        raise ValueError(f"unknown shard families {sorted(bad)}; use {FAMILIES}")
    stages = tuple(raw.get("stages") or BuildConfig.stages)
    cfg = _typed(BuildConfig, {**settings, "image": image, "shards": shards, "licenses": licenses,
                               "families": families, "stages": stages, "profile": profile})
    if cfg.image.reencode not in ("auto", "always", "never"):
        raise ValueError("image.reencode must be auto, always or never")
    return cfg


def load_config(path: str | Path | None = None, profile: str | None = None) -> BuildConfig:
    if path is None:
        return from_dict({}, None) if profile is None else from_dict({"profiles": {}}, profile)
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    return from_dict(raw, profile)
