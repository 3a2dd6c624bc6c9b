"""The stage registry: every stage ``dataflow.yaml`` can name, one class per file in this folder.

Adding a stage is one new file (a ``Stage`` subclass, see ``base.py``) and one line here.

``parse`` is the source's own parser: each source names its parse stage (``Source.parser``, a key of
``PARSERS``), and ``stage_class`` resolves ``parse`` to it, so a new kind of source brings its parser
without the stage list changing. Every parse stage reports itself as ``parse``.
"""
from __future__ import annotations

from medcorpus.pipelines.stages.base import Prepared, Stage, WorkerEnv
from medcorpus.pipelines.stages.concepts import Concepts
from medcorpus.pipelines.stages.fetch import Fetch
from medcorpus.pipelines.stages.image import Image
from medcorpus.pipelines.stages.llm import LLM
from medcorpus.pipelines.stages.panels import Panels
from medcorpus.pipelines.stages.parse import ParseJats
from medcorpus.pipelines.stages.parse_dicom import ParseDicom
from medcorpus.pipelines.stages.parse_dataset import ParseDataset
from medcorpus.pipelines.stages.parse_reports import ParseReports
from medcorpus.pipelines.stages.quality import Quality

REGISTRY: dict[str, type[Stage]] = {cls.name: cls for cls in (
    Fetch,
    ParseJats,
    Image,
    Panels,
    Concepts,
    Quality,
    LLM,
)}

PARSERS: dict[str, type[Stage]] = {cls.parser: cls for cls in (
    ParseJats,
    ParseReports,
    ParseDataset,
    ParseDicom,
)}


def stage_class(name: str, parser: str = "jats") -> type[Stage]:
    """The class that runs the configured stage ``name`` for a source whose parser is ``parser``."""
    return PARSERS[parser] if name == "parse" else REGISTRY[name]


def all_stage_classes() -> list[type[Stage]]:
    """Every stage class a build may run: the registered stages and every source's parser."""
    return [*REGISTRY.values(), *(cls for cls in PARSERS.values() if cls not in REGISTRY.values())]


__all__ = ["PARSERS", "REGISTRY", "Prepared", "Stage", "WorkerEnv", "all_stage_classes", "stage_class"]
