"""Sharded datasets: determinism, exact sharding over ranks and workers,
resumption, labels, the corrupt-sample policy and bounded memory."""
import collections
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dareblopy as db

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASSES = ["cat", "dog", "emu"]


@pytest.fixture
def tree(tmp_path):
    """3 class directories of 23 files each (69 samples); each file holds its
    own relative name, so contents can be checked against keys."""
    root = tmp_path / "data"
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(23):
            rel = f"{c}/{i:03d}.bin"
            (root / rel).write_bytes(rel.encode())
    return root


def all_keys(tree):
    return sorted(f"{c}/{i:03d}.bin" for c in CLASSES for i in range(23))


def keys_of(batches):
    return [k for b in batches for k in b["keys"]]


def make(tree, batch_size=4, files_per_shard=10, **kw):
    return db.ShardedDataset(db.directory_shards(tree, files_per_shard), batch_size, **kw)


# ---- the permutation


def test_permutation_is_pinned_and_a_permutation():
    p = db.permutation(10, 1, 0)
    assert p.dtype == np.int64
    # Pinned: the order must never change between versions or machines.
    assert p.tolist() == [2, 5, 9, 3, 6, 1, 8, 7, 0, 4]
    big = db.permutation(1000, 7, 3)
    assert sorted(big.tolist()) == list(range(1000))
    assert big.tolist() == db.permutation(1000, 7, 3).tolist()
    assert big.tolist() != db.permutation(1000, 7, 4).tolist()
    assert big.tolist() != db.permutation(1000, 8, 3).tolist()
    assert db.permutation(0, 1).tolist() == [] and db.permutation(1, 1).tolist() == [0]


# ---- reading and order


def test_directory_shards_and_contents(tree):
    shards = db.directory_shards(tree, files_per_shard=10)
    assert [len(s) for s in shards] == [10] * 6 + [9]
    ds = db.ShardedDataset(shards, 5, shuffle=False)
    batches = list(ds)
    assert keys_of(batches) == all_keys(tree)  # unshuffled: sorted walk order
    for b in batches:
        assert [d.decode() for d in b["data"]] == b["keys"]
    assert [b["index"] for b in batches] == list(range(len(ds))) and len(ds) == 14


def test_same_seed_same_order_other_epoch_or_seed_differs(tree):
    a = keys_of(make(tree, seed=5))
    assert a == keys_of(make(tree, seed=5))
    assert sorted(a) == all_keys(tree)
    assert a != all_keys(tree)
    b = keys_of(make(tree, seed=5, epoch=1))
    assert sorted(b) == all_keys(tree) and b != a
    assert keys_of(make(tree, seed=6)) != a


def test_shuffle_buffer_bounds_how_far_samples_move(tree):
    ds = make(tree, shuffle_buffer=8, files_per_shard=69, seed=3)
    got = keys_of(ds)
    # One shard: the shard-major order is the sorted order, and each
    # sample stays inside its window of 8 positions.
    ref = all_keys(tree)
    for pos, key in enumerate(got):
        assert ref.index(key) // 8 == pos // 8
    assert got != ref


def test_worker_threads_do_not_change_the_order(tree):
    one = keys_of(make(tree, seed=2))
    assert keys_of(make(tree, seed=2, loader_threads=3, queue_size=2)) == one


# ---- exact sharding


def partition_keys(tree, world, workers, **kw):
    """Keys per rank, each rank's batches collected from its workers in
    round-robin order (as torch's DataLoader does)."""
    per_rank = []
    for rank in range(world):
        ds = make(tree, rank=rank, world_size=world, seed=11, **kw)
        parts = [list(ds.iter_partition(0, 0, w, workers)) for w in range(workers)]
        merged = []
        for i in range(max(len(p) for p in parts)):
            merged += [p[i] for p in parts if i < len(p)]
        assert [b["index"] for b in merged] == list(range(len(ds)))
        per_rank.append(merged)
    return per_rank


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_exact_sharding_pad_and_drop(tree, world, workers):
    n = 69
    for uneven in ("pad", "drop"):
        ranks = partition_keys(tree, world, workers, uneven=uneven)
        counts = [len(r) for r in ranks]
        assert len(set(counts)) == 1, "every rank gets the same number of batches"
        keys = [k for r in ranks for k in keys_of(r)]
        seen = collections.Counter(keys)
        if uneven == "pad":
            assert set(seen) == set(all_keys(tree))
            assert len(keys) == -(-n // world) * world
            assert sum(c - 1 for c in seen.values()) == len(keys) - n
        else:
            assert max(seen.values()) == 1
            assert len(keys) == (n // world) * world
        if n % world == 0:
            assert sorted(keys) == all_keys(tree)  # exactly once


def test_drop_last_and_equal_batches(tree):
    ranks = partition_keys(tree, 2, 2, batch_size=4, drop_last=True)
    assert [len(r) for r in ranks] == [8, 8]  # ceil(69/2)=35 samples -> 8 full batches
    assert all(len(b["keys"]) == 4 for r in ranks for b in r)


def test_rank_from_arguments_is_validated(tree):
    with pytest.raises(ValueError):
        make(tree, rank=2, world_size=2)
    with pytest.raises(ValueError):
        make(tree, rank=0)


# ---- resumption


@pytest.mark.parametrize("threads", [1, 3])
def test_resume_mid_epoch_at_the_next_unseen_batch(tree, threads):
    full = keys_of(make(tree, seed=9, epoch=2))
    ds = make(tree, seed=9, epoch=2, loader_threads=threads)
    seen = []
    for b in ds:
        seen += b["keys"]
        if b["index"] == 5:
            state = json.loads(json.dumps(ds.state_dict()))  # survives JSON
            break
    assert state["epoch"] == 2 and state["position"] == 6
    fresh = make(tree, seed=9, loader_threads=threads)
    fresh.load_state_dict(state)
    fresh.set_epoch(2)  # the same epoch keeps the resumed position
    rest = keys_of(fresh)
    assert seen + rest == full
    # a completed epoch rolls over to the next one
    assert fresh.state_dict()["epoch"] == 3 and fresh.position == 0
    assert keys_of(fresh) == keys_of(make(tree, seed=9, epoch=3))


def test_break_keeps_position_and_state_checks_the_setup(tree):
    ds = make(tree, seed=1)
    it = iter(ds)
    first = next(it)["keys"]
    del it
    assert ds.position == 1
    state = ds.state_dict()
    assert keys_of(ds) == keys_of(make(tree, seed=1))[len(first):]
    with pytest.raises(ValueError, match="seed"):
        make(tree, seed=2).load_state_dict(state)
    # another batch size continues with exactly the samples not yet read
    other = make(tree, batch_size=5, seed=1)
    other.load_state_dict(state)
    # (the same samples; within a batch they are grouped by shard)
    assert sorted(keys_of(other)) == sorted(keys_of(make(tree, seed=1))[len(first):])
    ds.set_epoch(7)
    assert ds.state_dict()["epoch"] == 7 and ds.position == 0


# ---- labels and transforms


def test_labels_from_map_file_and_parent_dirs(tree, tmp_path):
    label_file = tmp_path / "labels.txt"
    label_file.write_text("# name label\n" + "".join(
        f"{k} {CLASSES.index(k.split('/')[0])}\n" for k in all_keys(tree)))
    from_file = db.read_label_file(label_file)
    for labels in (from_file, db.labels_from_parent_dirs(CLASSES)):
        for b in make(tree, labels=labels):
            assert b["labels"].dtype == np.int64
            assert b["labels"].tolist() == [CLASSES.index(k.split("/")[0]) for k in b["keys"]]
    bad = tmp_path / "bad.txt"
    bad.write_text("no-label-here\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        db.read_label_file(bad)
    # A name listed twice (merged label files) keeps one label only when
    # both lines agree; otherwise which one won was silent.
    twice = tmp_path / "twice.txt"
    twice.write_text("cat/1.jpg 0\ndog/2.jpg 1\ncat/1.jpg 0\n")
    assert db.read_label_file(twice) == {"cat/1.jpg": 0, "dog/2.jpg": 1}
    twice.write_text("cat/1.jpg 0\ndog/2.jpg 1\ncat/1.jpg 1\n")
    with pytest.raises(ValueError, match=r"twice.txt:3: 'cat/1.jpg' has label 1 here .* 0 "
                                         r"on line 1"):
        db.read_label_file(twice)


def test_batch_transform_gets_the_batch_and_a_stable_seed(tree):
    calls = []

    def batch_transform(raws, seed):
        calls.append(seed)
        return np.array([len(r) for r in raws])

    for threads in (1, 3):
        calls.clear()
        out = list(make(tree, seed=4, batch_transform=batch_transform, loader_threads=threads))
        assert all(b["data"].tolist() == [len(k) for k in b["keys"]] for b in out)
        seeds = sorted(calls)
        if threads == 1:
            first = seeds
    assert seeds == first and len(set(first)) == len(first)


# ---- corrupt samples


def corrupt(tree):
    """Deletes one file after listing and makes one transform fail."""
    shards = db.directory_shards(tree, 10)
    os.unlink(tree / "dog" / "005.bin")

    def transform(raw):
        if raw == b"emu/017.bin":
            raise ValueError("cannot decode")
        return raw
    return shards, transform


def test_corrupt_sample_raises_by_default(tree):
    shards, transform = corrupt(tree)
    with pytest.raises(FileNotFoundError) as info:
        list(db.ShardedDataset(shards, 4, shuffle=False))
    assert isinstance(info.value, db.NotFoundError)
    assert "dog/005.bin" in str(info.value)
    relisted = db.directory_shards(tree, 10)  # without the deleted file
    with pytest.raises(ValueError, match="cannot decode"):
        list(db.ShardedDataset(relisted, 4, shuffle=False, transform=transform,
                               loader_threads=2))


def test_corrupt_samples_skipped_and_reported(tree):
    shards, transform = corrupt(tree)
    ds = db.ShardedDataset(shards, 4, seed=3, transform=transform, on_error="skip",
                           loader_threads=2)
    batches = list(ds)
    bad = {"dog/005.bin", "emu/017.bin"}
    assert sorted(keys_of(batches)) == sorted(set(all_keys(tree)) - bad)
    assert sorted(n for b in batches for n in b["skipped"]) == sorted(bad)
    assert sorted(n for n, _ in ds.skipped) == sorted(bad)
    assert any("NotFoundError" in msg for _, msg in ds.skipped)
    assert len(batches) == len(ds)  # skipping never changes the batch count


def test_batch_transform_failure_is_narrowed_to_the_sample(tree):
    def batch_transform(raws, seed):
        if b"cat/003.bin" in raws:
            raise ValueError("bad jpeg")
        return list(raws)

    ds = make(tree, batch_transform=batch_transform, on_error="skip", shuffle=False)
    got = keys_of(ds)
    assert "cat/003.bin" not in got and len(got) == 68
    assert [n for n, _ in ds.skipped] == ["cat/003.bin"]


# ---- other readers


def test_indexed_samples_reads_by_global_index(tree):
    samples = db.IndexedSamples(db.directory_shards(tree, 10), labels=db.labels_from_parent_dirs(CLASSES))
    assert len(samples) == 69
    got = samples.get_many([68, 0, 10, 11, -1])
    assert [g[0] for g in got] == [all_keys(tree)[i] for i in (68, 0, 10, 11, 68)]
    assert all(g[1] == g[0].encode() for g in got)
    assert got[0][2] == 2 and got[1][2] == 0
    with pytest.raises(IndexError):
        samples[69]


def test_import_does_not_import_torch():
    out = subprocess.run([sys.executable, "-c",
                          "import sys, dareblopy; print('torch' in sys.modules)"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- bounded memory

RSS_SCRIPT = textwrap.dedent("""
    import sys
    import dareblopy as db

    def vm(field):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024

    class Synthetic(db.ShardReader):
        # samples made on the fly, so the dataset can be far larger than RAM
        def __init__(self, n, size):
            self.n, self.size = n, size
        def __len__(self):
            return self.n
        def name(self, i):
            return str(i)
        def read(self, idx):
            return [bytes([i % 251]) * self.size for i in idx]

    sample, per_shard, shards, batch, queue, workers, limit = map(int, sys.argv[1:])
    ds = db.ShardedDataset([Synthetic(per_shard, sample) for _ in range(shards)], batch,
                           seed=1, queue_size=queue, loader_threads=workers)
    base = vm("VmRSS")
    streamed = 0
    for b in ds:
        streamed += sum(len(x) for x in b["data"])
        if streamed >= limit:
            break
    print(streamed, vm("VmHWM") - base)
""")


@pytest.mark.parametrize("sample,per_shard,shards,batch,queue,workers", [
    (512 * 1024, 100, 4, 2, 4, 2),        # 200 MiB through 4 batches of 1 MiB
    (1024 * 1024, 50, 4, 4, 2, 3),        # 200 MiB, 4 MiB batches, more workers than queue
    (1024, 1_000_000, 1000, 256, 4, 2),   # 1e9 samples (~1 TB): no per-sample tables
])
def test_peak_rss_is_bounded(tmp_path, sample, per_shard, shards, batch, queue, workers):
    script = tmp_path / "rss.py"
    script.write_text(RSS_SCRIPT)
    limit = 200 * 2**20
    out = subprocess.run([sys.executable, str(script), str(sample), str(per_shard), str(shards),
                          str(batch), str(queue), str(workers), str(limit)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    streamed, growth = map(int, out.stdout.split())
    assert streamed >= limit
    batch_bytes = sample * batch
    # The documented bound (dareblopy/_dataset.py, "Bounded memory").
    bound = (queue + workers + 2) * batch_bytes + 16 * 2**20
    assert growth <= bound, f"peak RSS grew {growth / 2**20:.1f} MiB > {bound / 2**20:.1f} MiB"


# ---- many shards, few open: eviction never costs a sample


@pytest.fixture(scope="module")
def many_zips(tmp_path_factory):
    """300 zip shards of 4 entries; each entry holds its sample name."""
    root = tmp_path_factory.mktemp("zips")
    paths = []
    for s in range(300):
        path = root / f"shard{s:03d}.zip"
        with db.ZipWriter(path, method="stored") as w:
            for e in range(4):
                w.write(f"e{e}.bin", f"shard{s:03d}.zip/e{e}.bin".encode())
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("max_open", [16, 2])
@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_lru_eviction_with_threads_delivers_every_sample(many_zips, max_open, on_error):
    ds = db.ShardedDataset(db.zip_shards(many_zips), 8, seed=1, shuffle_buffer=64,
                           max_open_shards=max_open, loader_threads=2, queue_size=4,
                           on_error=on_error)
    expected = sorted(f"{os.path.basename(p)}/e{e}.bin" for p in many_zips for e in range(4))
    for epoch in range(3):
        ds.set_epoch(epoch)
        batches = list(ds)
        assert sorted(keys_of(batches)) == expected
        assert all(d.decode() == k for b in batches for d, k in zip(b["data"], b["keys"]))
        assert ds.skipped == []
    assert len(ds._leases.open) <= max_open  # idle readers were closed


def test_a_reader_closed_by_its_owner_reopens(many_zips):
    shard = db.ZipShard(many_zips[0])
    assert shard.read([0]) == [b"shard000.zip/e0.bin"]
    shard.close()
    assert shard.read([3]) == [b"shard000.zip/e3.bin"]


# ---- the canonical shard order


def test_the_order_of_the_shard_list_does_not_change_the_epoch(many_zips, tree):
    subset = many_zips[:40]
    first = keys_of(db.ShardedDataset(db.zip_shards(subset), 16, seed=3, shuffle_buffer=32))
    for perm in (subset[::-1], [subset[i] for i in db.permutation(40, 9)]):
        assert keys_of(db.ShardedDataset(db.zip_shards(perm), 16, seed=3,
                                         shuffle_buffer=32)) == first
    shards = db.directory_shards(tree, 10)
    assert keys_of(db.ShardedDataset(shards[::-1], 4, seed=3)) == \
        keys_of(db.ShardedDataset(shards, 4, seed=3))


# ---- renamed keywords


def test_deprecated_names_still_work(tree):
    with pytest.warns(DeprecationWarning, match="loader_threads"):
        ds = make(tree, seed=2, worker_count=3)
    assert ds.loader_threads == 3 and ds.worker_count == 3
    assert keys_of(ds) == keys_of(make(tree, seed=2))
    with pytest.warns(DeprecationWarning, match="partition"):
        old = list(make(tree, seed=2).iter_partition(0, 0, worker=1, num_workers=2))
    assert keys_of(old) == keys_of(make(tree, seed=2).iter_partition(0, 0, 1, 2))
    with pytest.raises(TypeError), pytest.warns(DeprecationWarning):
        make(tree, worker_count=2, loader_threads=2)


def test_thread_budget_is_handed_to_shard_reads(tree):
    seen = []

    class Counting(db.DirectoryShard):
        def read(self, indices, threads=1):
            seen.append(threads)
            return super().read(indices, threads)

    shards = [Counting(s.files, s.root) for s in db.directory_shards(tree, 10)]
    list(db.ShardedDataset(shards, 4, threads=3))
    assert seen and set(seen) == {3}
    assert db.ShardedDataset(shards, 4).threads == len(os.sched_getaffinity(0))


# ---- damage costs only what is damaged


def write_records(path, count, prefix):
    with db.TFRecordWriter(path) as w:
        for i in range(count):
            w.write(db.serialize_example({"path": f"{prefix}/{i:03d}", "data": b"x" * (50 + i),
                                          "label": i % 7}))


def break_framing_at(path, record):
    """Overwrites the length field of one record (its header CRC no longer
    matches): everything from there on is unreadable as framing."""
    offset = int(db.build_index(str(path))[record, 0])
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 8)
    return offset


def test_a_broken_tfrecord_keeps_its_first_records_and_spares_its_neighbour(tmp_path):
    broken, healthy = tmp_path / "a-broken.tfrecord", tmp_path / "b-healthy.tfrecord"
    write_records(broken, 150, "broken")
    write_records(healthy, 150, "healthy")
    offset = break_framing_at(broken, 60)
    # TensorFlow's reader, the peer, also reads exactly the 60 records first.
    with pytest.raises(db.CorruptDataError) as info:
        db.ShardedDataset(db.tfrecord_shards([broken, healthy]), 10, rank=0, world_size=1)
    assert str(broken) in str(info.value) and str(offset) in str(info.value)
    ds = db.ShardedDataset(db.tfrecord_shards([healthy, broken]), 10, on_error="skip",
                           rank=0, world_size=1)
    for epoch in range(2):
        ds.set_epoch(epoch)
        batches = list(ds)
        keys = keys_of(batches)
        assert len(keys) == 210 and len(set(keys)) == 210
        assert sorted(keys) == sorted([f"broken/{i:03d}" for i in range(60)] +
                                      [f"healthy/{i:03d}" for i in range(150)])
        labels = np.concatenate([b["labels"] for b in batches])
        assert labels.tolist() == [int(k[-3:]) % 7 for k in keys]
        assert all(d == b"x" * (50 + int(k[-3:])) for b in batches
                   for d, k in zip(b["data"], b["keys"]))
    assert len(ds.skipped) == 1  # one counted, named reason
    name, reason = ds.skipped[0]
    assert str(broken) in name and str(offset) in reason and "60 samples" in reason


def test_a_zip_that_cannot_be_opened_costs_only_its_own_samples(many_zips, tmp_path):
    bad = tmp_path / "garbage.zip"
    bad.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(db.CorruptDataError, match="garbage.zip"):
        db.ShardedDataset(db.zip_shards([bad, *many_zips[:3]]), 4)
    ds = db.ShardedDataset(db.zip_shards([bad, *many_zips[:3]]), 4, on_error="skip")
    assert len(keys_of(ds)) == 12
    assert len(ds.skipped) == 1 and "garbage.zip" in ds.skipped[0][0]


def test_errors_name_the_sample_its_shard_and_the_epoch(many_zips, tmp_path):
    path = tmp_path / "crc.zip"
    with db.ZipWriter(path, method="stored") as w:
        w.write("good.bin", b"fine")
        w.write("bad.bin", b"will be damaged")
    data = path.read_bytes()
    at = data.index(b"will be damaged")
    path.write_bytes(data[:at] + b"W" + data[at + 1:])  # a CRC mismatch
    ds = db.ShardedDataset(db.zip_shards([path]), 2, shuffle=False, epoch=4)
    with pytest.raises(db.CorruptDataError) as info:
        list(ds)
    msg = str(info.value)
    assert "crc.zip/bad.bin" in msg and str(path) in msg and "epoch 4" in msg
    ds = db.ShardedDataset(db.zip_shards([path]), 2, shuffle=False, epoch=4, on_error="skip")
    assert keys_of(ds) == ["crc.zip/good.bin"]
    assert [n for n, _ in ds.skipped] == ["crc.zip/bad.bin"]
    assert "CRC" in ds.skipped[0][1] and "epoch 4" in ds.skipped[0][1]


def test_one_seed_derivation_shared_with_libdbr():
    from dareblopy._shuffle import SplitMix64, derive_seed, derive_seed_reference
    rng = np.random.default_rng(0)
    for count in range(5):
        for _ in range(50):
            seed, *parts = (int(v) for v in rng.integers(0, 2**63, count + 1, dtype=np.int64))
            assert derive_seed(seed, *parts) == derive_seed_reference(seed, *parts)
    # Pinned (tests/c/test_tfrecord.c checks the same values in C), and
    # one step is the first draw of the permutation's stream.
    assert derive_seed(7, 3) == 0x94C90E5239685A5D == SplitMix64(7, 3).next()
    assert derive_seed(7, 3, 1, 2) == 0xC2B2E97574B5C6F6
    assert derive_seed(-1, -2) == derive_seed(2**64 - 1, 2**64 - 2)


def test_a_zip_entry_whose_size_overlaps_the_next_costs_only_that_entry(tmp_path):
    """zipfile is the peer: every entry it reads, the dataset delivers."""
    import struct
    import zipfile
    path = tmp_path / "overlap.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for i in range(200):
            z.writestr(f"{i:03d}.bin", f"entry {i}".encode() * 5)
    data = bytearray(path.read_bytes())
    record = [m for m in range(len(data)) if data[m:m + 4] == b"PK\x01\x02"][50]
    size = struct.unpack_from("<I", data, record + 20)[0]
    struct.pack_into("<II", data, record + 20, size + 100, size + 100)  # into entry 51
    path.write_bytes(bytes(data))
    readable = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            try:
                readable[name] = z.read(name)
            except Exception:
                pass
    assert len(readable) == 199 and "050.bin" not in readable
    with pytest.raises(db.CorruptDataError, match="050.bin"):
        list(db.ShardedDataset(db.zip_shards([path]), 16, shuffle=False))
    ds = db.ShardedDataset(db.zip_shards([path]), 16, seed=2, on_error="skip")
    got = {k.split("/", 1)[1]: d for b in ds for k, d in zip(b["keys"], b["data"])}
    assert got == readable
    assert [n for n, _ in ds.skipped] == ["overlap.zip/050.bin"]


TRUNCATE_SCRIPT = textwrap.dedent("""
    import os, sys
    import dareblopy as db
    path = sys.argv[1]
    ds = db.ShardedDataset(db.zip_shards([path], mmap=False), 8, shuffle=False,
                           on_error="skip", loader_threads=2, queue_size=2)
    keys = []
    for batch in ds:
        if batch["index"] == 0:
            os.truncate(path, os.path.getsize(path) // 2)  # cut in place while open
        keys += batch["keys"]
    print(len(keys), len(ds.skipped), ds.skipped[0][1] if ds.skipped else "")
""")


def test_truncating_a_zip_shard_in_place_while_reading_is_survivable(tmp_path):
    path = tmp_path / "cut.zip"
    with db.ZipWriter(path, method="stored") as w:
        for i in range(64):
            w.write(f"{i:02d}.bin", bytes([i]) * 4096)
    script = tmp_path / "cut.py"
    script.write_text(TRUNCATE_SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr  # not killed by SIGBUS
    delivered, skipped, reason = out.stdout.split(" ", 2)
    assert int(delivered) + int(skipped) == 64
    assert 8 <= int(delivered) <= 40 and int(skipped) >= 24  # about half the data is gone
    assert "cut.zip" in reason


def test_no_samples_left_after_skipping_says_why(tmp_path):
    # In skip mode a shard that cannot be opened is left out; when that
    # leaves nothing, the error must carry the reasons, not just "no samples".
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip archive at all")
    empty = tmp_path / "empty.zip"
    import zipfile
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(ValueError) as err:
        db.ShardedDataset(db.zip_shards([bad, empty]), 4, on_error="skip")
    assert "bad.zip" in str(err.value) and "not a ZIP archive" in str(err.value)
    with pytest.raises(ValueError, match="hold no samples"):
        db.ShardedDataset(db.zip_shards([empty]), 4)


def _replace_archive(path, kind, entries):
    """Writes an archive of (name, bytes) beside path, renames it over path."""
    import io
    import tarfile
    import zipfile
    tmp = str(path) + ".new"
    if kind == "tfrecord":
        with db.TFRecordWriter(tmp) as w:
            for name, data in entries:
                w.write(db.serialize_example({"path": name, "data": data}))
    elif kind == "zip":
        with zipfile.ZipFile(tmp, "w") as z:
            for name, data in entries:
                z.writestr(name, data)
    else:
        with tarfile.open(tmp, "w") as t:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)


@pytest.mark.parametrize("kind", ["zip", "tar", "tfrecord"])
def test_shard_replaced_during_the_run_is_refused_not_misread(tmp_path, kind):
    # A shard reopened (after eviction, or in a worker) once its file was
    # replaced - a repack renames new shards over old ones - used to pair the
    # old listing's names with the new file's bytes: silently wrong labels.
    first, second = tmp_path / f"a.{kind}", tmp_path / f"b.{kind}"
    _replace_archive(first, kind, [("cat1.jpg", b"cat1"), ("cat2.jpg", b"cat2")])
    _replace_archive(second, kind, [("dog1.jpg", b"dog1")])
    make = {"zip": db.zip_shards, "tar": db.tar_shards, "tfrecord": db.tfrecord_shards}[kind]

    def run(on_error):
        ds = db.ShardedDataset(make([first, second]), 8, rank=0, world_size=1, shuffle=False,
                               max_open_shards=1, on_error=on_error)
        return ds, [b for b in ds]

    ds, batches = run("raise")
    _replace_archive(first, kind, [("eel1.jpg", b"EEL1")])  # (a TFRecord index: 1 record)
    with pytest.raises(db.ShardChangedError, match=rf"a\.{kind}.*changed"):
        list(ds)
    ds.shards[0].close()
    ds.on_error = "skip"
    (batch,) = list(ds)
    assert len(batch["skipped"]) == 2 and all("changed" in why for _, why in ds.skipped)
    assert [len(b["skipped"]) for b in run("skip")[1]] == [0]  # a new dataset lists anew


def test_a_dataset_that_yields_no_batch_is_refused(tree):
    # drop_last with a batch larger than a rank's share of the data, or
    # uneven="drop" with more ranks than samples, made every epoch empty: a
    # training loop then ran on nothing without a word.
    shards = db.directory_shards(tree, files_per_shard=4)
    total = sum(len(s) for s in shards)
    with pytest.raises(ValueError, match=rf"no batch.*{total} samples.*batch_size {total + 1}"):
        db.ShardedDataset(shards, total + 1, rank=0, world_size=1, drop_last=True)
    with pytest.raises(ValueError, match="no batch"):
        db.ShardedDataset(shards, 1, rank=0, world_size=total + 1, uneven="drop")
    (batch,) = list(db.ShardedDataset(shards, total + 1, rank=0, world_size=1))
    assert len(batch["keys"]) == total  # without drop_last: one short batch
