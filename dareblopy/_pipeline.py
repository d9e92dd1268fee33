"""The image-classification pipeline: shards of ``(jpeg, label)`` become
uint8 NHWC batches and int64 labels.

Training batches use a random-resized crop (torchvision's
RandomResizedCrop semantics) and a random horizontal flip; validation batches
resize the shorter side to ``size / crop_fraction`` and take the centre.
Either way, each shard's part of a batch is decoded in one C call on the
dataset's thread budget with the GIL released. Crops are decoded at the
smallest DCT scale that covers the target, from only the blocks under the
crop. The random choices come from ``(seed, epoch, rank, batch)`` and the
sample's place in the batch, so they do not depend on the number of threads
or DataLoader workers.

From shards to pixels (the ``from_shards`` protocol)
----------------------------------------------------
:class:`ShardedDataset` hands a batch transform that has a ``from_shards``
method the batch as ``[(shard, local indices), ...]`` (grouped by shard)
instead of bytes.  :class:`ImageBatchTransform` then lets each shard decode
its own samples straight into the batch array when it offers
``decode_jpegs(indices, **decode options)`` (zip shards: libdbr decodes the
entries from the archive; directory shards: each C worker reads and decodes
its file), so compressed bytes never pass through Python; other shards
(TFRecord Examples, custom readers) are read and their bytes decoded.  It
returns the array and one outcome per sample: a :class:`Sample`, the
exception that reading it raised, or a Sample whose ``data`` is the
exception that decoding it raised; so skip mode drops exactly the failed
samples, by name, without reading or decoding anything twice.
"""
from __future__ import annotations

from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._buffers import ArrayRecycler
from ._dataset import ShardedDataset
from ._shards import Sample, ShardReader, read_samples


class ImageBatchTransform:
    """JPEG batches to ``N x size x size x 3`` uint8: called with bytes
    (``transform(raws, rng_seed)``, raising for the first bad image) or, by
    the dataset, with shards (:meth:`from_shards`)."""

    def __init__(self, size: int = 224, train: bool = True, crop_fraction: float = 0.875,
                 interp: str = "bilinear", threads: int = 0, fast: bool = False,
                 strict: Optional[bool] = None):
        self.size = int(size)
        self.threads = threads
        # Batches are reused once the caller has let go of them (fresh
        # multi-megabyte arrays cost page faults; see ArrayRecycler).
        self._recycle = ArrayRecycler(keep=8)
        # strict: the damage rule of dareblopy._jpeg (None: Pillow's).
        self.options = dict(size=(self.size, self.size), interp=interp, fast=fast,
                            strict=strict)
        if train:
            self.options.update(crop="random", flip="random")
        else:
            self.options.update(crop="center", shorter=int(round(size / crop_fraction)))

    def _out(self, n: int) -> np.ndarray:
        return self._recycle((n, self.size, self.size, 3), np.uint8)

    def __call__(self, raws, rng_seed):
        from ._jpeg import decode_jpeg_batch
        return decode_jpeg_batch(raws, out=self._out(len(raws)), seed=rng_seed,
                                 threads=self.threads, **self.options)

    def from_shards(self, parts: Sequence[Tuple[ShardReader, List[int]]], rng_seed: int,
                    threads: int):
        """The batch array for ``parts`` and each sample's outcome."""
        from ._jpeg import decode_jpeg_batch
        out = self._out(sum(len(idx) for _, idx in parts))
        outcomes: list = []
        start = 0
        for shard, idx in parts:
            options = dict(self.options, out=out[start:start + len(idx)], seed=rng_seed,
                           index_offset=start, threads=threads)
            direct = getattr(shard, "decode_jpegs", None)
            if direct is not None:
                _, errors = direct(idx, **options)
                labels = _shard_labels(shard, idx)
                outcomes += [err if err is not None else
                             label if isinstance(label, BaseException) else
                             Sample(shard.name(i), None, label)
                             for i, err, label in zip(idx, errors, labels)]
            else:
                samples = read_samples(shard, idx, threads)
                raws = [b"" if isinstance(s, BaseException) else s.data for s in samples]
                _, errors = decode_jpeg_batch(raws, errors="return", **options)
                outcomes += [s if isinstance(s, BaseException) or err is None else
                             s._replace(data=err) for s, err in zip(samples, errors)]
            start += len(idx)
        return out, outcomes


def _shard_labels(shard, indices) -> list:
    """The labels a shard that decodes directly knows (``labels_of``: tar
    shards' ``cls`` members), else None for each sample."""
    own = getattr(shard, "labels_of", None)
    return own(indices) if own is not None else [None] * len(indices)


def image_batch_transform(size: int = 224, train: bool = True, crop_fraction: float = 0.875,
                          interp: str = "bilinear", threads: int = 0, fast: bool = False,
                          strict: Optional[bool] = None) -> Callable:
    """A batch transform for :class:`ShardedDataset` that decodes JPEGs into
    an ``N x size x size x 3`` array (see :class:`ImageBatchTransform`)."""
    return ImageBatchTransform(size, train, crop_fraction, interp, threads, fast, strict)


def image_classification_dataset(
        shards: Sequence[ShardReader], batch_size: int = 64, *, size: int = 224,
        train: bool = True,
        labels: Union[Mapping[str, int], Callable[[str], int], None] = None,
        seed: int = 0, threads: int = 0, crop_fraction: float = 0.875,
        interp: str = "bilinear", fast: bool = False, **dataset_kwargs) -> ShardedDataset:
    """A :class:`ShardedDataset` of image batches: each batch is a dict
    with ``"data"`` (uint8 ``[N, size, size, 3]``), ``"labels"`` (int64, when
    ``labels`` is given or the shards carry labels), ``"keys"`` and
    ``"skipped"``.

    ``shards`` hold JPEG files (zip shards from ``dareblopy pack``,
    directories, TFRecord shards of pack's Examples, or WebDataset tar
    shards, whose ``jpg`` members are decoded and whose ``cls`` members
    are the labels).  ``labels`` maps
    sample names to classes (for example :func:`read_manifest_labels` or
    :func:`labels_from_parent_dirs`).  ``threads`` is the dataset's thread
    budget (0: every CPU this process may use).  Training shuffles,
    validation keeps the order, unless ``shuffle=`` is passed.  Other
    keywords go to :class:`ShardedDataset` (rank, world_size, drop_last,
    on_error, loader_threads (default 2), queue_size, ...)."""
    dataset_kwargs.setdefault("shuffle", train)
    if "worker_count" not in dataset_kwargs:
        # Two batches in flight: one is read and set up while the other
        # decodes, which keeps both cores busy at batch boundaries.
        dataset_kwargs.setdefault("loader_threads", 2)
    return ShardedDataset(
        shards, batch_size, seed=seed, labels=labels, threads=threads or None,
        batch_transform=ImageBatchTransform(size, train, crop_fraction, interp, threads, fast),
        **dataset_kwargs)


__all__ = ["ImageBatchTransform", "image_batch_transform", "image_classification_dataset"]
