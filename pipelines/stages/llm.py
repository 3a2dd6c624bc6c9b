"""llm: caption cleaning, LLM/VLM generation and the faithfulness gate, batched per unit.

It runs as a step of its own (``step``): a runner may give it its own workers and resources
(GPU actors on Ray, ``ray.llm``) over the units the other stages staged; run inside a unit's
chain or as a step, its output is the same. A sample whose requests failed keeps its caption and
gets an ``llm_failed`` row in ``errors`` (the reason); its unit is staged to be retried, so the next
build sends those requests again (pipelines/staging.py).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from medcorpus.files import cache_root
from medcorpus.pipelines.llm.config import LLMOptions
from medcorpus.pipelines.stages.base import Stage
from medcorpus.pipelines.staging import UnitResult
from medcorpus.schemas.llm import LLM_FIELDS
from medcorpus.schemas.records import LLM_FAILED, ErrorRecord, Sample


class LLM(Stage):
    name = "llm"
    requires = ("image",)
    sections = {"llm": LLMOptions}
    columns = tuple(LLM_FIELDS)
    batched = True
    step = "llm"

    def setup(self) -> None:
        """The backends, request cache and gate (models load once per worker)."""
        from medcorpus.pipelines.llm.stage import LLMStage

        options: LLMOptions = self.options(self.config)["llm"]
        if options.cache_path is None:
            # SQLite needs a local file: a remote work dir (s3://, gs://) keeps its cache on this machine
            work = self.env.work_dir
            local = work if work and "://" not in work else str(cache_root())
            options = replace(options, cache_path=str(Path(local) / "llm_cache.sqlite"))
        self.stage = LLMStage(options)

    def generate(self, texts: list[str], mentions: list[list[str]],
                 images: list[bytes | None]) -> list[tuple[dict[str, Any], str, str]]:
        """Per sample: the generated columns, the caption it should carry, and why its requests failed
        ("" when none did)."""
        from medcorpus.schemas.llm import to_arrow_row

        outputs = self.stage.process([{"caption": t, "mentions": m} for t, m in zip(texts, mentions)], images)
        return [(to_arrow_row(out), out.get("caption_llm") or out.get("caption_clean") or text,
                 "; ".join(out["failures"])) for text, out in zip(texts, outputs)]

    def process_batch(self, items: list[Sample]) -> list[Sample]:
        results = self.generate([s.text for s in items], [s.context for s in items], [s.image for s in items])
        for sample, (columns, caption, failed) in zip(items, results):
            sample.extra.update(columns)
            sample.text = caption
            if failed:
                sample.errors.append(ErrorRecord(sample.key, self.name, LLM_FAILED, failed, sample.document_id,
                                                 sample.figure_id))
        return items

    def process_staged(self, result: UnitResult, members: dict[str, dict[str, bytes]]) -> UnitResult:
        from medcorpus.pipelines.graph import sidecar_size

        before = self.summary()
        t0 = time.perf_counter()
        rows = [s.row for s in result.samples]
        images = [members[r["key"]][r["image_format"]] for r in rows]
        done = self.generate([r["caption"] for r in rows], [r["mentions"] or [] for r in rows], images)
        for staged, (columns, caption, failed) in zip(result.samples, done):
            if failed:
                result.errors.append(ErrorRecord(staged.key, self.name, LLM_FAILED, failed, staged.row.get("article_id"),
                                                 staged.row.get("figure_id")).to_dict())
            staged.row.update(columns, caption=caption)
            members[staged.key]["txt"] = caption.encode("utf-8")
            staged.size = sum(len(v) for v in members[staged.key].values()) + sidecar_size(staged.row)
        after = self.summary()
        result.counters = {**result.counters, "in:llm": len(rows), "us:llm": int((time.perf_counter() - t0) * 1e6),
                           **{f"llm:{k}": v - before.get(k, 0) for k, v in after.items()}}
        result.members = members
        return result

    def summary(self) -> dict[str, int]:
        return self.stage.summary()
