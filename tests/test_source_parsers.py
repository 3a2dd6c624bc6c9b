"""Sources bring their own parse stage: the stage list names ``parse``, the source picks the class,
and a parser that is not JATS hands its images to the image stage as ``ImageTask``s."""
from __future__ import annotations

import io
from typing import Any, Iterator

import pyarrow.parquet as pq
import pytest
from PIL import Image

from medcorpus.pipelines.config import from_dict
from medcorpus.pipelines.graph import Pipeline, process_unit
from medcorpus.pipelines.items import ImageTask
from medcorpus.pipelines.sources.local import LocalSource
from medcorpus.pipelines.stages import PARSERS, REGISTRY, Stage, WorkerEnv, stage_class
from medcorpus.pipelines.stages.parse import ParseJats
from medcorpus.schemas.manifest import SAMPLES, to_table
from medcorpus.schemas.records import UnitRef
from testdata import ARTICLES

FIGURE = ARTICLES / "elife-00353" / "elife-00353-fig1-v1.tif"  # a real figure, read as a dataset image


class ParseFolder(Stage):
    """The parser of a source whose unit is one image file with a label: the file as encoded bytes,
    and the same image as pixels the parser rendered itself (as a DICOM parser does)."""

    name = "parse"
    parser = "folder"
    requires = ("fetch",)

    def process(self, item: bytes) -> Iterator[Any]:
        common = {"document_id": "folder/fig1", "license_code": "CC BY", "license_family": "comm", "source": "folder"}
        yield ImageTask(key="folder/fig1/file", text="fig1 as a file", data=item,
                        extra={"labels": ["figure"], "dataset_name": "folder"}, **common)
        yield ImageTask(key="folder/fig1/pixels", text="fig1 as pixels", pixels=Image.open(io.BytesIO(item)).convert("L"),
                        extra={"image_modality": "OT", "frame_index": 0}, **common)
        yield ImageTask(key="folder/fig1/nothing", text="neither", **common)


class FolderSource:
    name = "folder"
    parser = "folder"

    def list_units(self) -> Iterator[UnitRef]:
        yield UnitRef("folder", "fig1", str(FIGURE), "fp")

    def open(self, unit: UnitRef) -> bytes:
        return FIGURE.read_bytes()


def test_journal_sources_use_the_jats_parser() -> None:
    assert stage_class("parse") is ParseJats
    assert LocalSource(str(ARTICLES)).parser == "jats"
    assert stage_class("image", "anything") is REGISTRY["image"]


def test_a_source_brings_its_own_parse_stage(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setitem(PARSERS, "folder", ParseFolder)
    config = from_dict({"stages": ["fetch", "parse", "image"]}, None)
    pipeline = Pipeline(config, WorkerEnv(FolderSource()))
    assert type(pipeline.stages[1]) is ParseFolder
    result = process_unit(next(FolderSource().list_units()), pipeline)
    rows = {s.key: s.row for s in result.samples}
    assert set(rows) == {"folder/fig1/file", "folder/fig1/pixels"}
    assert [(e["input"], e["stage"], e["reason"]) for e in result.errors] == [("folder/fig1/nothing", "image", "no_image")]
    file_row, pixel_row = rows["folder/fig1/file"], rows["folder/fig1/pixels"]
    with Image.open(FIGURE) as img:
        assert (pixel_row["orig_width"], pixel_row["orig_height"]) == img.size == (file_row["orig_width"], file_row["orig_height"])
    assert max(pixel_row["width"], pixel_row["height"]) <= config.image.max_side
    assert file_row["labels"] == ["figure"] and pixel_row["image_modality"] == "OT"
    assert file_row["article_id"] == "folder/fig1" and file_row["license_family"] == "comm" and file_row["pmcid"] is None
    pq.write_table(to_table([{**r, "shard": "s"} for r in rows.values()], SAMPLES), tmp_path / "s.parquet")
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.column("image_modality").to_pylist() in (["OT", None], [None, "OT"])
