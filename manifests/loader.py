"""A torch ``IterableDataset`` over the samples a SQL predicate selects from a build's manifest,
read by byte range straight from the shards (local disk or any fsspec URL).

    ds = ManifestDataset("out/", "license_code = ? AND year >= ?", params=["CC BY", 2019],
                         batch_size=64, rank=0, world_size=8)
    loader = ds.dataloader(num_workers=4)          # DataLoader that also tracks what it delivered
    for epoch in range(3):
        ds.set_epoch(epoch)
        for batch in loader: ...
        state = ds.state_dict()                     # {"epoch", "consumed"}: save with the checkpoint

**Guarantees.** In one epoch each selected sample is delivered exactly once across all ranks and
DataLoader workers (with mixing: each selection's share, see ``manifests/epochs.py``). Ranks take
contiguous slices of the epoch's order whose sizes differ by at most one sample (``even=True``
drops the epoch's last ``N % world_size`` samples instead, so every rank has as many; a different
few each epoch); nothing is ever repeated to pad a rank. Batches arrive in the rank's order for any
worker count, provided the DataLoader's batch size is the dataset's ``batch_size``
(``dataloader()`` sees to it). ``state_dict()`` says how many samples of the rank's epoch order were
delivered; a new dataset with the same arguments given it by ``load_state_dict`` delivers exactly
the rest of that order, then the next epochs as an uninterrupted run would.

``out`` is an output (its current release, resolved once: the dataset reads that release however
many are published while it runs) or ``OUT@N`` (release N).

The predicate is one SQL expression over the ``samples`` view with bound ``params``
(``manifests/selection.py``: parsed as an expression, never pasted as text).
"""
from __future__ import annotations

import io
import json
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from medcorpus.manifests import epochs
from medcorpus.manifests.layout import resolve
from medcorpus.manifests.ranges import RangeReader, member, sample_span
from medcorpus.manifests.selection import Params, select
from medcorpus.manifests.storage import Output

INDEX_COLUMNS = ("key", "shard", "image_member", "image_offset", "image_size", "txt_offset", "txt_size",
                 "json_offset", "json_size")
Decode = str | Callable[[bytes], Any]


def decode_image(data: bytes, how: Decode) -> Any:
    if callable(how):
        return how(data)
    if how == "bytes":
        return data
    if how == "pil":
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    raise ValueError(f"decode must be 'pil', 'bytes' or a callable, not {how!r}")


class ManifestDataset(IterableDataset):
    """Items ``{"key", "image", "caption", "row"}``: ``row`` is the sample's manifest row (its JSON
    sidecar plus the shard columns); ``transform`` maps each item inside the worker."""

    def __init__(self, out: str, where: str | None = None, *, params: Params = None,
                 shuffle: bool = True, seed: int = 0, rank: int | None = None, world_size: int | None = None,
                 decode: Decode = "pil", transform: Callable[[dict[str, Any]], Any] | None = None,
                 batch_size: int = 1, even: bool = False, allow_incomplete: bool = False,
                 _selections: Sequence[tuple[str | None, float, Any]] | None = None,
                 samples_per_epoch: int | None = None) -> None:
        out = resolve(out).url  # one release for the index and every read (manifests/layout.py)
        selections = _selections or [(where, 1.0, params)]
        self.shuffle, self.seed, self.even = shuffle, seed, even
        self.decode, self.transform, self.batch_size = decode, transform, int(batch_size)
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.rank, self.world_size = _rank_world(rank, world_size)
        self.index, self.sources = _combined(out, selections, allow_incomplete)
        sizes = [len(s) for s in self.sources]
        length = sum(sizes) if samples_per_epoch is None else int(samples_per_epoch)
        self.quota = epochs.quotas(sizes, [w for _, w, _ in selections], length)
        empty = [where for (where, _, _), n, q in zip(selections, sizes, self.quota) if q and not n]
        if empty:
            raise ValueError(f"a weighted selection selects no samples: {empty[0]!r}")
        self.output = Output(out)
        self._epoch, self._consumed, self._loader_counts, self._resuming = 0, 0, False, False

    @classmethod
    def mix(cls, out: str, selections: Sequence[tuple[Any, ...]], *, samples_per_epoch: int | None = None,
            **kwargs: Any) -> ManifestDataset:
        """Mix selections by weight: ``[(where, weight), (where, weight, params), ...]``. An epoch
        has ``samples_per_epoch`` samples (default: all selected), each selection its weighted share,
        evenly interleaved; a sample two predicates select belongs to the first."""
        parsed = [(s[0], float(s[1]), s[2] if len(s) > 2 else None) for s in selections]
        return cls(out, _selections=parsed, samples_per_epoch=samples_per_epoch, **kwargs)

    def __len__(self) -> int:
        """Samples this rank delivers per epoch."""
        return len(epochs.rank_slice(np.empty(sum(self.quota)), self.rank, self.world_size, self.even))

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning; after ``load_state_dict``, setting the loaded epoch
        keeps the loaded position (a training loop calls ``set_epoch`` on resume too)."""
        if not (self._resuming and int(epoch) == self._epoch):
            self._epoch, self._consumed = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "consumed": self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._epoch, self._consumed, self._resuming = int(state["epoch"]), int(state["consumed"]), True

    def rank_order(self, epoch: int | None = None) -> np.ndarray:
        """Positions (into ``self.index``) of this rank's samples in ``epoch``, in delivery order."""
        order = epochs.epoch_order(self.sources, self.quota, self.seed, self._epoch if epoch is None else epoch,
                                   self.shuffle)
        return epochs.rank_slice(order, self.rank, self.world_size, self.even)

    def _begin_pass(self) -> None:
        """A pass that starts after the whole epoch was delivered starts the next epoch."""
        self._resuming = False
        if self._consumed >= len(self):
            self._epoch, self._consumed = self._epoch + 1, 0

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        counting = info is None and not self._loader_counts
        if counting:
            self._begin_pass()
        remaining = self.rank_order()[self._consumed:]
        if info is not None:
            remaining = epochs.worker_part(remaining, info.id, info.num_workers, self.batch_size)
        reader = RangeReader(self.output)
        try:
            step = max(self.batch_size, 32)
            for lo in range(0, len(remaining), step):
                for item in self._read(reader, remaining[lo:lo + step]):
                    if counting:
                        self._consumed += 1
                    yield item if self.transform is None else self.transform(item)
        finally:
            reader.close()

    def _read(self, reader: RangeReader, positions: np.ndarray) -> Iterator[dict[str, Any]]:
        columns = [lambda c, p=p: self.index[c][p] for p in positions]
        spans = [sample_span(self.index["shard"][p], col) for p, col in zip(positions, columns)]
        for p, col, span, blob in zip(positions, columns, spans, reader.read(spans)):
            row = json.loads(member(blob, span, "json", col))
            row.update({c: _plain(self.index[c][p]) for c in INDEX_COLUMNS if c != "key"})
            yield {"key": self.index["key"][p], "image": decode_image(member(blob, span, "image", col), self.decode),
                   "caption": member(blob, span, "txt", col).decode("utf-8"), "row": row}

    def dataloader(self, num_workers: int = 0, **kwargs: Any) -> DataLoader:
        """A DataLoader with this dataset's batch size that records in ``state_dict()`` what it
        delivered, however many workers it has (workers cannot tell what the loop consumed)."""
        if kwargs.get("persistent_workers"):
            raise ValueError("persistent workers would keep an old epoch's order; leave persistent_workers off")
        kwargs.setdefault("collate_fn", collate)
        return _DeliveryLoader(self, batch_size=self.batch_size, num_workers=num_workers, **kwargs)


class _DeliveryLoader(DataLoader):
    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        ds: ManifestDataset = self.dataset  # type: ignore[assignment]
        ds._loader_counts = True
        ds._begin_pass()
        total = len(ds)
        for batch in super().__iter__():
            ds._consumed = min(total, ds._consumed + ds.batch_size)
            yield batch


def collate(items: list[Any]) -> Any:
    """Batches of items: lists per field, images stacked when they are tensors; items that a
    transform made into something else go through torch's default collate."""
    if not items or not isinstance(items[0], dict) or "row" not in items[0]:
        return torch.utils.data.default_collate(items)
    batch = {k: [it[k] for it in items] for k in items[0]}
    if all(isinstance(x, torch.Tensor) for x in batch["image"]):
        batch["image"] = torch.stack(batch["image"])
    return batch


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit rank and world size, else torch.distributed's, else a single process."""
    if rank is None and world_size is None and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    rank, world_size = rank or 0, world_size or 1
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    return rank, world_size


def _combined(out: str, selections: Sequence[tuple[str | None, float, Any]],
              allow_incomplete: bool) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """One index over the union of the selections, and each selection's positions in it (a key
    goes to the first selection that has it)."""
    parts = []
    for where, _, params in selections:
        table = select(out, where, params, columns=INDEX_COLUMNS, allow_incomplete=allow_incomplete)
        parts.append({c: table.column(c).to_numpy(zero_copy_only=False) for c in INDEX_COLUMNS})
    seen: set[str] = set()
    keep = []
    for part in parts:
        mask = np.array([k not in seen for k in part["key"]], dtype=bool)
        seen.update(part["key"][mask])
        keep.append(mask)
    index = {c: np.concatenate([p[c][m] for p, m in zip(parts, keep)]) for c in INDEX_COLUMNS}
    bounds = np.cumsum([0] + [int(m.sum()) for m in keep])
    return index, [np.arange(bounds[i], bounds[i + 1]) for i in range(len(parts))]
