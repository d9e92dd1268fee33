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


def imagefolder(tree, count, classes, seed):
    """count photos in an ImageFolder tree of `classes` classes; its items."""
    for i, data in enumerate(photos.photo_set(count, (120, 90), seed=seed)):
        folder = tree / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:03d}.jpg").write_bytes(data)
    return _pack.imagefolder_items(str(tree))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    items, classes = imagefolder(root / "tree", 40, 4, seed=7)
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


def test_pack_tfrecord_shards_feed_the_pipeline(tmp_path):
    """pack --format tfrecord -> tfrecord_shards -> image batches: the image
    comes from the record's data feature, the key is its path, the label
    its label feature; the same pixels as the zip shards of the same pack."""
    tree = tmp_path / "tree"
    items, classes = imagefolder(tree, 12, 3, seed=5)
    records = _pack.pack(items, str(tmp_path / "t.tfrecord"), format="tfrecord", shards=2,
                         progress=False, classes=classes)
    ds = db.image_classification_dataset(db.tfrecord_shards(records), batch_size=5, size=SIZE,
                                         train=False, rank=0, world_size=1)
    batches = list(ds)
    keys = sum((b["keys"] for b in batches), [])
    assert sorted(keys) == sorted(item.name for item in items)
    expected_labels = {item.name: item.label for item in items}
    for b in batches:
        assert b["labels"].tolist() == [expected_labels[k] for k in b["keys"]]
        raws = [(tree / k).read_bytes() for k in b["keys"]]
        assert np.array_equal(b["data"], db.decode_jpeg_batch(
            raws, size=(SIZE, SIZE), crop="center", shorter=int(round(SIZE / 0.875))))
    with pytest.raises(ValueError, match="image/encoded.*missing"):
        list(db.image_classification_dataset(db.tfrecord_shards(records, data="image/encoded"),
                                             batch_size=5, size=SIZE, rank=0, world_size=1))


@pytest.mark.parametrize("kind", ["zip", "directory", "tfrecord"])
def test_skip_mode_decodes_once_and_keeps_exactly_the_good_images(tmp_path, kind):
    good = photos.photo_set(30, (120, 90), seed=9)
    bad = {3, 11, 17, 29}
    stored = {f"{i:02d}.jpg": data[:len(data) // 3] if i in bad else data
              for i, data in enumerate(good)}
    if kind == "zip":
        path = tmp_path / "mixed.zip"
        with db.ZipWriter(path, method="stored") as w:
            for name, data in stored.items():
                w.write(name, data)
        shards, prefix = db.zip_shards([path]), "mixed.zip/"
    elif kind == "directory":
        for name, data in stored.items():
            (tmp_path / name).write_bytes(data)
        shards, prefix = db.directory_shards(tmp_path, 16), ""
    else:
        with db.TFRecordWriter(tmp_path / "mixed.tfrecord") as w:
            for name, data in stored.items():
                w.write(db.serialize_example({"path": name, "data": data}))
        shards, prefix = db.tfrecord_shards([tmp_path / "mixed.tfrecord"]), ""
    expected = sorted(f"{prefix}{i:02d}.jpg" for i in range(30) if i not in bad)
    for train in (True, False):
        ds = db.image_classification_dataset(shards, batch_size=8, size=SIZE,
                                             train=train, seed=4, rank=0, world_size=1,
                                             on_error="skip")
        for epoch in range(3):
            ds.set_epoch(epoch)
            ds.skipped.clear()
            batches = list(ds)
            keys = sum((b["keys"] for b in batches), [])
            assert sorted(keys) == expected
            assert sorted(n for n, _ in ds.skipped) == sorted(f"{prefix}{i:02d}.jpg"
                                                              for i in bad)
            assert all(f"epoch {epoch}" in msg and "CorruptDataError" in msg
                       for _, msg in ds.skipped)
            for b in batches:
                assert b["data"].shape == (len(b["keys"]), SIZE, SIZE, 3)
                if not train:  # each kept row is its own image
                    raws = [good[int(k[-6:-4])] for k in b["keys"]]
                    assert np.array_equal(b["data"], db.decode_jpeg_batch(
                        raws, size=(SIZE, SIZE), crop="center",
                        shorter=int(round(SIZE / 0.875))))
