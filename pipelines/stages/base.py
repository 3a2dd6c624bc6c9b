"""What a stage is: one class with a name, typed options, per-worker setup and a process method.

A stage maps one item to zero or more items (``process``), or, when ``batched``, all of a unit's
items at once (``process_batch``: one model call per article). Runners know nothing about
particular stages: they build a ``Pipeline`` (pipelines/graph.py) once per worker, which
instantiates the configured stages and calls ``setup`` on each.

Declarations the rest of the system reads:

* ``name`` — the name ``dataflow.yaml``'s ``stages:`` lists; ``requires`` — stages that must come
  earlier (checked when the config loads);
* ``sections`` — the config sections it reads and the options dataclass that validates each
  (validated when the config loads, before any work);
* ``columns`` — the manifest columns it adds (Arrow fields of ``schemas.manifest.SAMPLES``);
* ``needs_pixels`` — it reads the decoded image, which the image stage then keeps with the sample;
* ``step`` — a stage that runs as a step of its own over staged units (its own workers and
  resources, e.g. GPUs: ``ray.<step>`` on Ray) implements ``process_staged``;
* ``prepare`` — driver-side work done once per build before the workers start (an eval-set
  registry, a vocabulary; it may read the source, e.g. a dataset's test split), whose content hash
  joins the staged units' identity.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping

if TYPE_CHECKING:
    import pyarrow as pa

    from medcorpus.pipelines.config import BuildConfig
    from medcorpus.pipelines.sources.base import Source
    from medcorpus.pipelines.staging import UnitResult


@dataclass(frozen=True)
class Prepared:
    """A stage's driver-side preparation: a value for its workers and a content hash."""

    value: Any = None
    hash: str = ""


@dataclass
class WorkerEnv:
    """What a worker knows besides the config: the source, the work dir, the prepared values."""

    source: "Source"
    work_dir: str | None = None
    prepared: Mapping[str, Any] = field(default_factory=dict)  # stage name -> Prepared.value


class Stage:
    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    sections: ClassVar[Mapping[str, type]] = {}
    columns: ClassVar[tuple["pa.Field", ...]] = ()
    batched: ClassVar[bool] = False
    step: ClassVar[str | None] = None
    needs_pixels: ClassVar[bool] = False  # reads the decoded image (the image stage keeps it for it)
    parser: ClassVar[str | None] = None  # a parse stage: the key sources name it by (``Source.parser``)

    def __init__(self, config: "BuildConfig", env: WorkerEnv) -> None:
        self.config = config
        self.env = env

    @classmethod
    def options(cls, config: "BuildConfig") -> Mapping[str, Any]:
        """This stage's validated options, one per section it reads."""
        return {name: config.section(name, kind) for name, kind in cls.sections.items()}

    @classmethod
    def prepare(cls, config: "BuildConfig", work_dir: str, source: "Source | None" = None) -> Prepared:
        return Prepared()

    def setup(self) -> None:
        """Load what every item needs (models, vocabularies, indexes): once per worker."""

    def process(self, item: Any) -> Iterable[Any]:
        raise NotImplementedError(f"stage {self.name} processes batches")

    def process_batch(self, items: list[Any]) -> list[Any]:
        raise NotImplementedError(f"stage {self.name} processes items one by one")

    def end_unit(self) -> None:
        """Forget per-unit state (units never share articles)."""

    def process_staged(self, result: "UnitResult", members: dict[str, dict[str, bytes]]) -> "UnitResult":
        raise NotImplementedError(f"stage {self.name} does not run as a step of its own")

    def summary(self) -> dict[str, int]:
        """Counters this stage reports per unit (e.g. requests, tokens, cache hits)."""
        return {}
