"""Deduplication on reprints: does every duplicate point at its own counterpart, and is nothing lost?

For each scenario of ``bench/reprints.py`` (resize 0.5-0.9x, JPEG q40/q90, a 3-pixel recrop,
JPEG->PNG, grayscale, and the reported 0.8x + q60 case), a corpus of real shared articles plus a
reprint of each is built with the production pipeline (``dataflow.yaml``; the concepts stage is
left out: dedup does not read it) and the ``dropped`` table is scored against the ground truth:

- figures / panels: share of (original, reprint) sample pairs, both present, that dedup joined
  (one dropped with the other as ``duplicate_of``);
- wrong: dropped samples whose ``duplicate_of`` is not their own counterpart;
- lost: samples of the original articles dropped for anything but their counterpart.

Two article sets: ``tune`` (looked at while choosing thresholds) and ``aside`` (run at the end).

    PYTHONPATH=. python bench/dedup_reprint_eval.py [--set tune|aside|all] [--scenario NAME ...] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.reprints import SCENARIOS, counterpart, is_panel_key, make_reprint, panel_counterparts

REPO = Path(__file__).resolve().parents[1]
ARTICLES = Path(os.environ.get("MEDCORPUS_SHARED", REPO.parent / "shared")) / "data" / "pmc" / "articles"
SETS = {
    "tune": ["elife-46793-v1", "elife-52882-v2", "elife-43154-v2", "plosone-0178565"],
    "aside": ["elife-46472-v3", "elife-30274-v1", "elife-32671", "plosone-0091296", "pone.0056489"],
}


def build_corpus(names: list[str], scenario: object, root: Path, work: Path) -> Path:
    from medcorpus.pipelines.build import build
    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.runners import LocalRunner
    from medcorpus.pipelines.sources.local import LocalSource

    src = root / "in"
    src.mkdir(parents=True)
    for name in names:
        (src / name).symlink_to(ARTICLES / name)
        make_reprint(ARTICLES / name, src / f"reprint-{name}", scenario)  # type: ignore[arg-type]
    config = load_config(REPO / "dataflow.yaml")
    config = replace(config, stages=tuple(s for s in config.stages if s != "concepts"))
    out = root / "out"
    build(config, LocalSource(str(src)), LocalRunner(1), str(out), work_dir=str(work), progress=False)
    return out


def score(out: Path, work: Path) -> dict[str, float | int]:
    """Counterpart pairs joined, wrong pairings and original samples lost, from the manifest; a
    panel's counterpart is the other copy's panel covering the same region (``panel_counterparts``)."""
    from medcorpus.manifests.query import query

    _, kept = query(str(out), "SELECT key, parent_key IS NOT NULL FROM samples")
    _, dropped = query(str(out), "SELECT key, duplicate_of FROM dropped WHERE stage = 'dedup'")
    _, others = query(str(out), "SELECT key FROM dropped WHERE stage <> 'dedup'")
    same_region = panel_counterparts(out, work)
    is_panel = {k: p for k, p in kept}
    dup_of = dict(dropped)
    for key in dup_of:
        is_panel[key] = is_panel_key(key)
    gone_for_other_reasons = {k for (k,) in others}
    stats = {"figures": 0, "figures_joined": 0, "panels": 0, "panels_joined": 0, "wrong": 0, "lost": 0}
    for key, panel in sorted(is_panel.items()):
        other = same_region.get(key) if panel else counterpart(key)
        if key.startswith("reprint-") and other in is_panel and other not in gone_for_other_reasons:
            kind = "panels" if panel else "figures"
            stats[kind] += 1
            stats[f"{kind}_joined"] += dup_of.get(key) == other or dup_of.get(other) == key
        if key in dup_of and dup_of[key] != other:
            stats["wrong"] += 1
            stats["lost"] += not key.startswith("reprint-")
    return stats


def run(names: list[str], scenarios: list[str]) -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"  # originals' staged units are reused across scenarios
        for scenario in SCENARIOS:
            if scenarios and scenario.name not in scenarios:
                continue
            t0 = time.perf_counter()
            out = build_corpus(names, scenario, Path(tmp) / scenario.name, work)
            stats = score(out, work)
            rows.append({"scenario": scenario.name, **stats, "seconds": round(time.perf_counter() - t0, 1)})
            print(_line(rows[-1]), flush=True)
    return rows


def _share(n: int, d: int) -> str:
    return f"{n / d:.3f} ({n}/{d})" if d else "-"


def _line(row: dict) -> str:
    return (f"| {row['scenario']} | {_share(row['figures_joined'], row['figures'])} | "
            f"{_share(row['panels_joined'], row['panels'])} | {row['wrong']} | {row['lost']} | {row['seconds']} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=[*SETS, "all"], default="tune")
    ap.add_argument("--scenario", action="append", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    names = SETS["tune"] + SETS["aside"] if args.set == "all" else SETS[args.set]
    print(f"articles ({args.set}): {', '.join(names)}")
    print("| scenario | figures joined with their counterpart | panels joined | wrong pairings | originals lost | s |")
    print("|---|---|---|---|---|---|")
    rows = run(names, args.scenario)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
