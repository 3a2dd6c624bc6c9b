"""Checks of a whole config that no single options class can make: the stage list against the
registry (names, order, prerequisites), the top-level settings, the license policy, and every
configured stage's sections. All run when the config loads, before any work."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from medcorpus.transforms.licenses import normalize_code
from medcorpus.transforms.options import ConfigError, suggest, unknown_keys

if TYPE_CHECKING:
    from medcorpus.pipelines.config import BuildConfig

RUNNERS = ("local", "ray", "beam")


def check_stages(stages: Any) -> tuple[str, ...]:
    """Known names, each once, every prerequisite earlier in the list."""
    from medcorpus.pipelines.stages import REGISTRY

    if not isinstance(stages, (list, tuple)) or not all(isinstance(s, str) for s in stages) or not stages:
        raise ConfigError(f"stages: {stages!r} is not valid: expected a list of stage names ({', '.join(REGISTRY)})")
    for i, name in enumerate(stages):
        if name not in REGISTRY:
            raise ConfigError(f"stages: unknown stage {name!r}{suggest(name, REGISTRY)} (known: {', '.join(REGISTRY)})")
        if name in stages[:i]:
            raise ConfigError(f"stages: {name!r} is listed twice")
        for needed in REGISTRY[name].requires:
            if needed not in stages[:i]:
                raise ConfigError(f"stages: {name!r} needs {needed!r} before it (got {list(stages)})")
    step_stages = [s for s in stages[:-1] if REGISTRY[s].step]
    if step_stages:
        raise ConfigError(f"stages: {step_stages[0]!r} runs as a step of its own and must come last")
    return tuple(stages)


def check_settings(settings: Mapping[str, Any]) -> None:
    """Top-level keys of ``defaults:`` (or a profile), the runner, workers, families and licenses."""
    from medcorpus.pipelines.config import FAMILIES, SECTIONS, SETTINGS

    unknown_keys(settings, SETTINGS, "defaults")
    for key in (*SECTIONS, "ray", "beam", "output", "licenses"):
        value = settings.get(key)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{key}: {value!r} is not valid: expected a mapping of keys")
    runner = settings.get("runner", "local")
    if runner not in RUNNERS:
        raise ConfigError(f"runner: {runner!r} is not valid: expected one of {', '.join(RUNNERS)}")
    workers = settings.get("workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers: {workers!r} is not valid: expected a whole number >= 0 (0 = all cores)")
    families = settings.get("families", FAMILIES)
    if not isinstance(families, (list, tuple)) or not set(families) <= set(FAMILIES) or not families:
        raise ConfigError(f"families: {families!r} is not valid: expected a list of {', '.join(FAMILIES)}")
    check_licenses(settings.get("licenses") or {}, FAMILIES)


def check_licenses(licenses: Mapping[str, Any], families: Sequence[str]) -> None:
    """License code → family: families must exist, and every code must be one the parsers produce
    (``CC BY-NC``, ``CC0``, ``PD``, ``unknown``): a misspelt code would silently match nothing."""
    unknown_keys(licenses, families, "licenses")
    for family, codes in licenses.items():
        if not isinstance(codes, (list, tuple)) or not all(isinstance(c, str) for c in codes):
            raise ConfigError(f"licenses.{family}: {codes!r} is not valid: expected a list of license codes")
        for code in codes:
            canonical = normalize_code(code)
            if code != "unknown" and canonical != code:
                hint = f"; did you mean {canonical!r}?" if canonical else ""
                raise ConfigError(f"licenses.{family}: {code!r} matches no license code{hint} "
                                  f"(codes look like 'CC BY', 'CC BY-NC-SA', 'CC0', 'PD', 'unknown')")


def check_sections(config: "BuildConfig") -> None:
    """Every section a configured stage reads, validated by the class the stage declares; sections
    of stages not configured are still checked for unknown keys and types (except ``llm``, whose
    backends are only resolved when the stage runs)."""
    from medcorpus.pipelines.stages import all_stage_classes

    for stage in all_stage_classes():
        if stage.name == "llm" and "llm" not in config.stages:
            continue
        for section, kind in stage.sections.items():
            config.section(section, kind)
