"""Sources bring their own parse stage: the stage list names ``parse``, the source picks the class."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from medcorpus.pipelines.config import from_dict
from medcorpus.pipelines.graph import Pipeline, process_unit
from medcorpus.pipelines.sources.local import LocalSource
from medcorpus.pipelines.stages import PARSERS, REGISTRY, Stage, WorkerEnv, stage_class
from medcorpus.pipelines.stages.parse import ParseJats
from medcorpus.schemas.records import Sample, UnitRef
from testdata import ARTICLES


class ParseText(Stage):
    """A parser for a source whose units are plain text files: one text-only unit → one error-free
    sample per line (no image stage needed downstream in this test)."""

    name = "parse"
    parser = "lines"
    requires = ("fetch",)

    def process(self, item: str) -> Iterator[Any]:
        for i, line in enumerate(item.splitlines()):
            yield Sample(key=f"lines/{i}", image=b"", image_format="png", width=1, height=1, orig_width=1,
                         orig_height=1, image_sha256="0" * 64, text=line, document_id="doc")


class LineSource:
    name = "lines"
    parser = "lines"

    def list_units(self) -> Iterator[UnitRef]:
        yield UnitRef("lines", "doc", "doc", "fp")

    def open(self, unit: UnitRef) -> str:
        return "first line\nsecond line"


def test_journal_sources_use_the_jats_parser() -> None:
    assert stage_class("parse") is ParseJats
    assert LocalSource(str(ARTICLES)).parser == "jats"
    assert stage_class("image", "anything") is REGISTRY["image"]


def test_a_source_brings_its_own_parse_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PARSERS, "lines", ParseText)
    config = from_dict({"stages": ["fetch", "parse"]}, None)
    pipeline = Pipeline(config, WorkerEnv(LineSource()))
    assert [type(s) for s in pipeline.stages][1] is ParseText
    result = process_unit(next(LineSource().list_units()), pipeline)
    assert [s.row["caption"] for s in result.samples] == ["first line", "second line"]
    assert result.errors == []
