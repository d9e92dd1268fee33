"""Packing ImageFolder trees and list files into zip / TFRecord shards, and
reading them back through the dataset layer."""
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import dareblopy as db
from dareblopy import _pack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def imagefolder(tmp_path):
    src = tmp_path / "train"
    files = {}
    for c, cls in enumerate(["cat", "dog", "eel"]):
        (src / cls / "nested").mkdir(parents=True)
        for i in range(7 + c):
            rel = f"{cls}/{'nested/' if i % 3 == 0 else ''}{i}.jpg"
            data = os.urandom(100 + i * 10 + c)
            (src / rel).write_bytes(data)
            files[rel] = (data, c)
    return src, files


def test_imagefolder_to_shuffled_zip_shards(tmp_path, imagefolder):
    src, files = imagefolder
    items, classes = _pack.imagefolder_items(str(src))
    assert classes == ["cat", "dog", "eel"]
    out = str(tmp_path / "out" / "train.zip")
    os.makedirs(os.path.dirname(out))
    paths = _pack.pack(items, out, shards=3, shuffle=True, seed=5, method="stored",
                       progress=False, classes=classes)
    assert [os.path.basename(p) for p in paths] == [
        "train-00000-of-00003.zip", "train-00001-of-00003.zip", "train-00002-of-00003.zip"]
    seen = {}
    for p in paths:
        with zipfile.ZipFile(p) as z:  # an independent reader agrees
            assert z.testzip() is None
            assert not [n for n in z.namelist() if n.endswith("/")]  # no directory entries
            for n in z.namelist():
                seen[n] = z.read(n)
    assert {k: v for k, v in seen.items()} == {k: d for k, (d, _) in files.items()}
    # Shuffled: the first shard is not simply the first classes in order.
    with zipfile.ZipFile(paths[0]) as z:
        first = [n for n in z.namelist() if not n.endswith("/")]
    assert first != sorted(first)

    labels = _pack.read_manifest_labels(_pack.manifest_path(out))
    assert len(labels) == len(files)
    ds = db.ShardedDataset(db.zip_shards(paths), batch_size=4, shuffle=True, seed=1,
                           labels=labels, rank=0, world_size=1)
    got = {}
    for batch in ds:
        for key, data, label in zip(batch["keys"], batch["data"], batch["labels"]):
            entry = key.split("/", 1)[1]
            got[entry] = (data, int(label))
    assert got == files
    # ImageFolder names also give the labels without the manifest.
    by_dir = db.labels_from_parent_dirs(classes)
    assert all(by_dir(k) == labels[k] for k in labels if k.count("/") == 2)


def test_same_seed_same_shards(tmp_path, imagefolder):
    src, _ = imagefolder
    items, _ = _pack.imagefolder_items(str(src))
    outs = []
    for run in range(2):
        out = str(tmp_path / f"r{run}.zip")
        _pack.pack(items, out, shards=2, shuffle=True, seed=9, progress=False)
        outs.append([zipfile.ZipFile(p).namelist() for p in _pack.shard_paths(out, 2)])
    assert outs[0] == outs[1]


def test_list_file_to_tfrecord_with_labels(tmp_path, imagefolder):
    src, files = imagefolder
    listing = src / "list.txt"
    listing.write_text("# path label\n" + "".join(f"{k} {c}\n" for k, (_, c) in files.items()))
    items, classes = _pack.list_file_items(str(listing))
    assert len(items) == len(files) and classes is None  # integer labels stay integers
    out = str(tmp_path / "data.tfrecord")
    paths = _pack.pack(items, out, format="tfrecord", shards=2, progress=False)
    parser = db.RecordParser({"path": db.FixedLenFeature([], db.string),
                              "data": db.FixedLenFeature([], db.string),
                              "label": db.FixedLenFeature([], db.int64)})
    got = {}
    for p in paths:
        for rec in db.RecordReader(p):
            path, data, label = parser.parse_single_example(rec)
            got[path.item().decode()] = (data.item(), int(label))
    assert got == files


def test_list_file_with_class_names_labels_like_imagefolder(tmp_path, imagefolder):
    """``photos/cat/0001.jpg cat``: class names become the indices that
    --labels imagefolder gives the same tree, and the manifest names them."""
    src, files = imagefolder
    listing = src / "list.txt"
    lines = [f"{k} {k.split('/')[0]}" for k in reversed(sorted(files))]
    listing.write_text("\n".join(lines) + "\n")
    items, classes = _pack.list_file_items(str(listing))
    folder_items, folder_classes = _pack.imagefolder_items(str(src))
    assert classes == folder_classes == ["cat", "dog", "eel"]
    assert sorted((i.name, i.label) for i in items) == \
        sorted((i.name, i.label) for i in folder_items)
    out = str(tmp_path / "named.zip")
    paths = _pack.pack(items, out, shards=2, progress=False, classes=classes)
    manifest = open(_pack.manifest_path(out)).read().splitlines()
    assert manifest[0] == "# classes\tcat\tdog\teel"
    labels = _pack.read_manifest_labels(_pack.manifest_path(out))
    assert {k.split("/", 1)[1]: v for k, v in labels.items()} == \
        {k: c for k, (_, c) in files.items()}
    assert sorted(os.path.basename(p) for p in paths) == sorted(
        {k.split("/", 1)[0] for k in labels})


def test_split_is_even_and_never_empty():
    for n in range(1, 40):
        for shards in range(1, 12):
            groups = _pack.split([_pack.Item(str(i), str(i), None) for i in range(n)], shards)
            sizes = [len(g) for g in groups]
            assert len(groups) == min(n, shards)
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
            assert [int(i.name) for g in groups for i in g] == list(range(n))  # contiguous


def test_bad_list_file_and_empty_sources(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg\n")
    with pytest.raises(ValueError, match="bad.txt:1: expected 'name label'"):
        _pack.list_file_items(str(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subdirectories"):
        _pack.imagefolder_items(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="nothing to pack"):
        _pack.pack([], str(tmp_path / "x.zip"), progress=False)
    with pytest.raises(ValueError, match="at least 1"):
        _pack.pack([_pack.Item(str(bad), "x", None)], str(tmp_path / "x.zip"), shards=0)


def test_failed_pack_leaves_no_valid_looking_files(tmp_path, imagefolder):
    src, _ = imagefolder
    items, _ = _pack.imagefolder_items(str(src))
    items.append(_pack.Item(str(tmp_path / "vanished.jpg"), "cat/vanished.jpg", 0))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(FileNotFoundError):
        _pack.pack(items, str(out_dir / "t.zip"), shards=2, progress=False)
    # The failing shard is discarded and no manifest is written; a shard that
    # completed is a whole, valid archive.
    assert not (out_dir / "t.zip.manifest.tsv").exists()
    for p in _pack.shard_paths(str(out_dir / "t.zip"), 2):
        if os.path.exists(p):
            with zipfile.ZipFile(p) as z:
                assert z.testzip() is None
    assert [f for f in os.listdir(out_dir) if not f.endswith(".zip")] == []


def test_failed_repack_does_not_leave_the_old_manifest_beside_new_shards(tmp_path,
                                                                          imagefolder):
    # Packing again over an earlier pack: if the new pack fails after some
    # shards were replaced, the old manifest (labels, hashes) must not stay
    # to describe shards it no longer matches.
    src, _ = imagefolder
    items, classes = _pack.imagefolder_items(str(src))
    out = str(tmp_path / "t.zip")
    _pack.pack(items, out, shards=2, classes=classes, progress=False)
    assert os.path.exists(_pack.manifest_path(out))
    broken = items[:3] + [_pack.Item(str(tmp_path / "vanished.jpg"), "cat/vanished.jpg", 0)]
    with pytest.raises(FileNotFoundError):
        _pack.pack(broken, out, shards=2, classes=classes, progress=False, workers=1)
    assert not os.path.exists(_pack.manifest_path(out))


@pytest.mark.parametrize("shards", [1, 3])
def test_repack_into_the_source_folder_never_packs_earlier_output(tmp_path, shards):
    # `dareblopy pack data data/train.zip` a second time: the tree now holds
    # the first run's shards and manifest, which were packed as samples.
    src = tmp_path / "data"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.bin").write_bytes(bytes([i]) * 10)
    out = str(src / "train.zip")
    _pack.pack(_pack.tree_items(str(src)), out, shards=shards, progress=False)
    with pytest.raises(ValueError, match=r"train.*zip.*output of an earlier pack"):
        _pack.pack(_pack.tree_items(str(src)), out, shards=shards, progress=False)
    with pytest.raises(ValueError, match="output of an earlier pack"):  # another shard count
        _pack.pack(_pack.tree_items(str(src)), out, shards=shards + 1, progress=False)
    for path in _pack.shard_paths(out, shards) + [_pack.manifest_path(out)]:
        os.rename(path, tmp_path / os.path.basename(path))
    (src / "train.zip.tmp0a1b2c").write_bytes(b"PK")  # left by a killed pack
    with pytest.raises(ValueError, match="tmp0a1b2c"):
        _pack.pack(_pack.tree_items(str(src)), out, shards=shards, progress=False)
    os.remove(src / "train.zip.tmp0a1b2c")
    assert len(_pack.pack(_pack.tree_items(str(src)), out, shards=shards, progress=False)) \
        == shards


@pytest.mark.parametrize("fmt", ["zip", "tfrecord", "tar"])
def test_pack_file_names_that_are_not_utf8(tmp_path, fmt):
    # Old datasets carry Latin-1 file names (os.walk gives them with
    # surrogateescape); packing them failed with a bare UnicodeEncodeError.
    src = tmp_path / "src"
    (src / "cat").mkdir(parents=True)
    latin1 = os.fsdecode(b"caf\xe9.jpg")
    (src / "cat" / latin1).write_bytes(b"latin-1 named")
    (src / "cat" / "plain.jpg").write_bytes(b"plain")
    items, classes = _pack.imagefolder_items(str(src))
    out = str(tmp_path / f"out.{fmt}")
    paths = _pack.pack(items, out, format=fmt, classes=classes, progress=False)
    make = {"zip": db.zip_shards, "tfrecord": db.tfrecord_shards, "tar": db.tar_shards}[fmt]
    (batch,) = list(db.ShardedDataset(make(paths), 4, rank=0, world_size=1, shuffle=False))
    labels = db.read_manifest_labels(_pack.manifest_path(out))
    base = os.path.basename(paths[0])
    stem = latin1.rsplit(".", 1)[0]
    want = {"zip": f"{base}/cat/{latin1}", "tfrecord": f"cat/{latin1}",
            "tar": f"{base}/cat/{stem}"}[fmt]
    assert want in batch["keys"]
    data = batch["data"][batch["keys"].index(want)]
    assert (data["jpg"] if fmt == "tar" else data) == b"latin-1 named"
    assert labels[f"{base}/cat/{latin1}"] == 0
    assert base in db.read_manifest_hashes(_pack.manifest_path(out))


def test_list_file_naming_files_that_are_not_utf8(tmp_path):
    # A list file written by a shell tool holds the names' bytes as they are.
    name = os.fsdecode(b"caf\xe9.jpg")
    (tmp_path / name).write_bytes(b"latin-1 named")
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"caf\xe9.jpg 3\n")
    items, classes = _pack.list_file_items(str(listing))
    assert classes is None and [(i.name, i.label) for i in items] == [(name, 3)]
    assert db.read_label_file(listing) == {name: 3}


def test_cli_pack_imagefolder_and_index(tmp_path, imagefolder):
    src, files = imagefolder
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "t.tfrecord"
    run = subprocess.run([sys.executable, "-m", "dareblopy", "pack", str(src), str(out),
                          "--format", "tfrecord", "--shards", "2", "--labels", "imagefolder",
                          "--shuffle"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert f"{len(files)} files in 2 tfrecord shard(s)" in run.stdout
    shards = _pack.shard_paths(str(out), 2)
    run = subprocess.run([sys.executable, "-m", "dareblopy", "index", *shards],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    counts = [len(db.RecordReader(s)) for s in shards]
    assert sum(counts) == len(files)
    for s, n in zip(shards, counts):
        assert f"{n} records" in run.stdout
        from dareblopy._tfrecord import index_path_for
        with open(index_path_for(s)) as fh:
            lines = [line.split() for line in fh if line.strip()]
        assert len(lines) == n and int(lines[0][0]) == 0
    manifest = open(str(out) + ".manifest.tsv").read().splitlines()
    assert manifest[0] == "# classes\tcat\tdog\teel"
    assert len([l for l in manifest if not l.startswith("#")]) == len(files)


def test_tfrecord_shards_in_a_sharded_dataset(tmp_path, imagefolder):
    src, files = imagefolder
    items, _ = _pack.imagefolder_items(str(src))
    paths = _pack.pack(items, str(tmp_path / "d.tfrecord"), format="tfrecord", shards=3,
                       progress=False)
    parser = db.RecordParser({"path": db.FixedLenFeature([], db.string),
                              "data": db.FixedLenFeature([], db.string),
                              "label": db.FixedLenFeature([], db.int64)})

    def decode(record):
        path, data, label = parser.parse_single_example(record)
        return path.item().decode(), data.item(), int(label)

    shards = db.tfrecord_shards(paths, data=None)  # whole records, parsed by decode
    assert sum(len(s) for s in shards) == len(files)
    got = {}
    for rank in range(2):  # two ranks, padded: together they cover everything
        ds = db.ShardedDataset(shards, batch_size=5, seed=3, transform=decode,
                               rank=rank, world_size=2, uneven="drop")
        for batch in ds:
            for path, data, label in batch["data"]:
                assert path not in got
                got[path] = (data, label)
    dropped = len(files) % 2
    assert len(got) == len(files) - dropped
    assert all(files[k] == v for k, v in got.items())
