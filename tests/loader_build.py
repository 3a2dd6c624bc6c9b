"""A small real build for the loader, export, Hugging Face and open_clip tests: five shared
articles (one lost its license, so two families), panels and quality on, 6 samples per shard."""
from __future__ import annotations

from pathlib import Path

from testdata import copy_articles

ARTICLES = ["pone.0000010", "elife-43154-v2", "plosone-0091296", "elife-46472-v3", "elife-32671"]


def small_build(root: Path, max_samples: int = 6) -> Path:
    from medcorpus.pipelines.build import build
    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.runners import LocalRunner
    from medcorpus.pipelines.sources.local import LocalSource

    src = copy_articles(root / "in", ARTICLES)
    cfg = root / "cfg.yaml"
    cfg.write_text(f"stages: [fetch, parse, image, panels, quality]\ndefaults:\n  shards: {{max_samples: {max_samples}}}\n")
    out = root / "out"
    build(load_config(cfg), LocalSource(str(src)), LocalRunner(2), str(out), progress=False)
    return out
