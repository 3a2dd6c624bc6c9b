"""The stage registry: every stage ``dataflow.yaml`` can name, one class per file in this folder.

Adding a stage is one new file (a ``Stage`` subclass, see ``base.py``) and one line here.
"""
from __future__ import annotations

from medcorpus.pipelines.stages.base import Prepared, Stage, WorkerEnv
from medcorpus.pipelines.stages.concepts import Concepts
from medcorpus.pipelines.stages.fetch import Fetch
from medcorpus.pipelines.stages.image import Image
from medcorpus.pipelines.stages.llm import LLM
from medcorpus.pipelines.stages.panels import Panels
from medcorpus.pipelines.stages.parse import ParseJats
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

__all__ = ["REGISTRY", "Prepared", "Stage", "WorkerEnv"]
