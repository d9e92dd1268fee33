"""PyTorch adapter: sharded datasets inside ``torch.utils.data.DataLoader``.

Imported only on request (``import dareblopy.torch``); ``import dareblopy``
never imports torch.

- :class:`ShardedIterableDataset` yields whole batches (use it with
  ``batch_size=None``).  Each DataLoader worker takes every K-th batch of
  its rank, so with any ``num_workers`` and any number of ranks every sample
  is read exactly once per epoch (see :mod:`dareblopy._dataset` for padding
  and dropping when the counts do not divide), and the DataLoader's
  round-robin collection hands them out in batch order.
- :class:`DataLoader` is torch's DataLoader plus bookkeeping in the main
  process: ``state_dict()``/``load_state_dict()`` to resume mid-epoch,
  ``set_epoch()``, and ``skipped`` (names of corrupt samples that were
  skipped, gathered from all workers).
- :class:`ShardMapDataset` is map-style random access over indexed shards,
  for samplers such as ``DistributedSampler``; ``__getitems__`` reads a
  batch with one call per shard.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch  # noqa: F401  (registers torch.distributed for rank detection)
from torch.utils import data as _data

from ._dataset import IndexedSamples, ShardedDataset
from ._mix import MixedDataset
from ._shards import ShardReader

__all__ = ["ShardedIterableDataset", "DataLoader", "ShardMapDataset"]


class _EpochState:
    """set_epoch, state_dict and load_state_dict, passed to the underlying
    :class:`dareblopy.ShardedDataset`."""

    def _sharded(self) -> ShardedDataset:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self._sharded().set_epoch(epoch)

    def state_dict(self) -> Dict[str, Any]:
        return self._sharded().state_dict()

    def load_state_dict(self, state) -> None:
        self._sharded().load_state_dict(state)


class ShardedIterableDataset(_EpochState, _data.IterableDataset):
    """A :class:`dareblopy.ShardedDataset` (or a :func:`dareblopy.mix` of
    them) as a torch IterableDataset.

    Pass a ShardedDataset or a mix, or shards, a batch size and ShardedDataset's
    keyword arguments.  Rank and world size come from torch.distributed
    when it is initialised (or pass ``rank=``/``world_size=``).  The
    worker split comes from ``torch.utils.data.get_worker_info()``."""

    def __init__(self, shards, batch_size: int = None, **kwargs):
        if isinstance(shards, (ShardedDataset, MixedDataset)):
            if batch_size is not None or kwargs:
                raise TypeError("ShardedIterableDataset: pass a ShardedDataset or its "
                                "arguments, not both")
            self.dataset = shards
        else:
            if batch_size is None:
                raise TypeError("ShardedIterableDataset: batch_size is required")
            self.dataset = ShardedDataset(shards, batch_size, **kwargs)

    def _sharded(self):
        return self.dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        # Never advances the dataset's position itself: in worker processes
        # that would change a copy.  DataLoader (below) keeps the count.
        info = _data.get_worker_info()
        partition, count = (0, 1) if info is None else (info.id, info.num_workers)
        ds = self.dataset
        return ds.iter_partition(ds.epoch, ds.position, partition, count)



class DataLoader(_EpochState, _data.DataLoader):
    """torch's DataLoader over a :class:`ShardedIterableDataset`, with
    resumable state.  ``batch_size`` defaults to None (the dataset makes the
    batches).  Workers are started afresh for each epoch so that they see
    the epoch and position; ``persistent_workers`` is therefore refused."""

    def __init__(self, dataset: ShardedIterableDataset, **kwargs):
        if not isinstance(dataset, ShardedIterableDataset):
            raise TypeError("dareblopy.torch.DataLoader needs a ShardedIterableDataset; "
                            "use torch.utils.data.DataLoader for other datasets")
        if kwargs.get("persistent_workers"):
            raise ValueError("dareblopy.torch.DataLoader: persistent_workers would keep the "
                             "workers' old epoch and position; leave it off")
        if kwargs.get("in_order") is False:
            raise ValueError("dareblopy.torch.DataLoader: in_order=False breaks resumable "
                             "positions; leave it on")
        kwargs.setdefault("batch_size", None)
        super().__init__(dataset, **kwargs)
        self.skipped: List[str] = []

    def _sharded(self) -> ShardedDataset:
        return self.dataset.dataset

    def __iter__(self):
        ds = self._sharded()
        for batch in super().__iter__():
            # The batch number rides in the batch, so the count is exact
            # whatever the number of workers.
            index = batch["index"] if isinstance(batch, dict) else ds.position
            ds._advance(int(index))
            if isinstance(batch, dict):
                self.skipped.extend(batch.get("skipped", ()))
            yield batch



class ShardMapDataset(_data.Dataset):
    """Map-style access to the samples of shards by global index.  Items are
    dicts with ``"key"``, ``"data"`` (``transform(raw)`` or the raw bytes)
    and, when ``labels`` is given, ``"label"``."""

    def __init__(self, shards: Sequence[ShardReader], transform=None, labels=None):
        self.samples = IndexedSamples(shards, transform, labels)
        self._labelled = labels is not None

    def __len__(self) -> int:
        return len(self.samples)

    def _item(self, found) -> Dict[str, Any]:
        name, sample, label = found
        item = {"key": name, "data": sample}
        if self._labelled:
            item["label"] = label
        return item

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return self._item(self.samples[index])

    def __getitems__(self, indices: Sequence[int]) -> List[Dict[str, Any]]:
        return [self._item(found) for found in self.samples.get_many(indices)]
