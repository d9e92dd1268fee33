"""The image-classification pipeline: (jpeg, label) zip shards to uint8 NHWC
batches with int64 labels, deterministic, sharded, with the corrupt-sample
policy, and batches that are never overwritten while the caller holds them."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "benchmarks"))
import photos  # noqa: E402  (benchmarks/photos.py: real photos, seeded)

import dareblopy as db  # noqa: E402
from dareblopy import _pack  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    tree = root / "tree"
    for i, data in enumerate(photos.photo_set(40, (120, 90), seed=7)):
        folder = tree / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:03d}.jpg").write_bytes(data)
    items, classes = _pack.imagefolder_items(str(tree))
    out = str(root / "train.zip")
    paths = _pack.pack(items, out, shards=2, method="stored", progress=False, classes=classes)
    return paths, db.read_manifest_labels(_pack.manifest_path(out))


def epoch(ds, epoch_no=0):
    ds.set_epoch(epoch_no)
    batches = list(ds)
    return (np.concatenate([b["data"] for b in batches]),
            np.concatenate([b["labels"] for b in batches]),
            sum((b["keys"] for b in batches), []))


def test_training_batches(shards):
    paths, labels = shards
    ds = db.image_classification_dataset(db.zip_shards(paths), batch_size=16, size=SIZE,
                                         labels=labels, seed=3, rank=0, world_size=1)
    batch = next(iter(ds))
    assert batch["data"].shape == (16, SIZE, SIZE, 3) and batch["data"].dtype == np.uint8
    assert batch["labels"].dtype == np.int64
    assert [labels[k] for k in batch["keys"]] == batch["labels"].tolist()
    assert int(batch["labels"].max()) < 4
    data, labs, keys = epoch(ds)  # resumes after the batch taken above
    assert len(keys) == 40 - 16 and batch["keys"][0] not in keys
    ds.set_epoch(1)
    data, labs, keys = epoch(ds, 1)
    assert sorted(keys) == sorted(labels)
    assert data.std() > 10  # photographs, not blank slots


def test_same_seed_same_pixels_other_epoch_other_pixels(shards):
    paths, labels = shards

    def make():
        return db.image_classification_dataset(db.zip_shards(paths), batch_size=16, size=SIZE,
                                               labels=labels, seed=11, rank=0, world_size=1)
    a, la, ka = epoch(make(), 0)
    b, lb, kb = epoch(make(), 0)
    assert ka == kb and np.array_equal(a, b) and np.array_equal(la, lb)
    c, _, kc = epoch(make(), 1)
    assert kc != ka  # another order
    order = {k: i for i, k in enumerate(kc)}
    assert not np.array_equal(a, c[[order[k] for k in ka]])  # other crops


def test_validation_is_a_center_crop(shards):
    paths, labels = shards
    ds = db.image_classification_dataset(db.zip_shards(paths), batch_size=8, size=SIZE,
                                         train=False, labels=labels, rank=0, world_size=1)
    assert not ds.shuffle
    batch = next(iter(ds))
    archive = {os.path.basename(p): db.open_zip_archive(p) for p in paths}
    raws = [archive[k.split("/", 1)[0]].read(k.split("/", 1)[1]) for k in batch["keys"]]
    expected = db.decode_jpeg_batch(raws, size=(SIZE, SIZE), crop="center",
                                    shorter=int(round(SIZE / 0.875)))
    assert np.array_equal(batch["data"], expected)


def test_ranks_split_exactly(shards):
    paths, labels = shards
    seen = []
    for rank in range(2):
        ds = db.image_classification_dataset(db.zip_shards(paths), batch_size=8, size=SIZE,
                                             labels=labels, seed=5, rank=rank, world_size=2)
        seen += epoch(ds)[2]
    assert sorted(seen) == sorted(labels)


def test_held_batches_are_not_overwritten(shards):
    paths, labels = shards
    ds = db.image_classification_dataset(db.zip_shards(paths), batch_size=8, size=SIZE,
                                         labels=labels, seed=2, rank=0, world_size=1,
                                         queue_size=2)
    held = []
    copies = []
    for batch in ds:
        held.append(batch["data"])
        copies.append(batch["data"].copy())
    assert all(np.array_equal(h, c) for h, c in zip(held, copies))
    assert len({id(h) for h in held}) == len(held)


def test_corrupt_images_raise_or_are_skipped(tmp_path, shards):
    paths, labels = shards
    bad = tmp_path / "bad.zip"
    good = photos.photo_set(3, (120, 90), seed=1)
    with db.ZipWriter(bad, method="stored") as w:
        w.write("c/ok0.jpg", good[0])
        w.write("c/truncated.jpg", good[1][:len(good[1]) // 2])
        w.write("c/ok1.jpg", good[2])
    with pytest.raises(db.CorruptDataError):
        list(db.image_classification_dataset(db.zip_shards([bad]), batch_size=3, size=SIZE,
                                             rank=0, world_size=1))
    ds = db.image_classification_dataset(db.zip_shards([bad]), batch_size=3, size=SIZE,
                                         rank=0, world_size=1, on_error="skip")
    batches = list(ds)
    assert sum(len(b["keys"]) for b in batches) == 2
    assert [name for name, _ in ds.skipped] == ["bad.zip/c/truncated.jpg"]
    assert batches[0]["data"].shape == (2, SIZE, SIZE, 3)
