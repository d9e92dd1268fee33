"""The image-classification pipeline: shards of ``(jpeg bytes, label)``
become uint8 NHWC batches and int64 labels.

Training batches use a random-resized crop (torchvision's
RandomResizedCrop semantics) and a random horizontal flip; validation batches
resize the shorter side to ``size / crop_fraction`` and take the centre.
Either way, each batch is decoded in one C call on a thread pool with the GIL
released. Crops are decoded at the smallest DCT scale that covers the target,
from only the blocks under the crop. The random choices come from
``(seed, epoch, rank, batch)`` and the sample's place in the batch, so they
do not depend on the number of threads or DataLoader workers.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence, Union

from ._dataset import ShardedDataset, ShardReader


def image_batch_transform(size: int = 224, train: bool = True, crop_fraction: float = 0.875,
                          interp: str = "bilinear", threads: int = 0, fast: bool = False,
                          strict: Optional[bool] = None) -> Callable:
    """A ``batch_transform(raws, rng_seed)`` for :class:`ShardedDataset` that
    decodes a list of JPEG buffers into an ``N x size x size x 3`` array."""
    import numpy as np

    from ._buffers import ArrayRecycler
    from ._jpeg import decode_jpeg_batch

    # Batches are reused once the caller has let go of them (fresh
    # multi-megabyte arrays cost page faults; see ArrayRecycler).
    recycle = ArrayRecycler(keep=8)
    if train:
        options = dict(crop="random", flip="random")
    else:
        options = dict(crop="center", shorter=int(round(size / crop_fraction)))

    def transform(raws, rng_seed):
        out = recycle((len(raws), size, size, 3), np.uint8)
        return decode_jpeg_batch(raws, size=(size, size), out=out, seed=rng_seed, interp=interp,
                                 threads=threads, fast=fast, strict=strict, **options)
    return transform


def image_classification_dataset(
        shards: Sequence[ShardReader], batch_size: int = 64, *, size: int = 224,
        train: bool = True,
        labels: Union[Mapping[str, int], Callable[[str], int], None] = None,
        seed: int = 0, threads: int = 0, crop_fraction: float = 0.875,
        interp: str = "bilinear", fast: bool = False, **dataset_kwargs) -> ShardedDataset:
    """A :class:`ShardedDataset` of image batches: each batch is a dict
    with ``"data"`` (uint8 ``[N, size, size, 3]``), ``"labels"`` (int64, when
    ``labels`` is given), ``"keys"`` and ``"skipped"``.

    ``shards`` hold JPEG files (zip shards from ``dareblopy pack``, or
    directories).  ``labels`` maps sample names to classes (for example
    :func:`read_manifest_labels` or :func:`labels_from_parent_dirs`).
    Training shuffles, validation keeps the order, unless ``shuffle=`` is
    passed.  Other keywords go to :class:`ShardedDataset` (rank, world_size,
    drop_last, on_error, worker_count (default 2), queue_size, ...)."""
    dataset_kwargs.setdefault("shuffle", train)
    # Two batches in flight: one is read and set up while the other decodes,
    # which keeps both cores busy at batch boundaries (measured +5%).
    dataset_kwargs.setdefault("worker_count", 2)
    return ShardedDataset(
        shards, batch_size, seed=seed, labels=labels,
        batch_transform=image_batch_transform(size, train, crop_fraction, interp, threads, fast),
        **dataset_kwargs)


__all__ = ["image_batch_transform", "image_classification_dataset"]
