"""Closing an object while other threads use it (issue: lifetimes held in C).

Each race runs many rounds: reader threads loop on one object while the
main thread closes it at a random moment.  Every read either returns the
right bytes or raises ValueError (closed); nothing crashes.  CI also runs
this file against the ASan build of libdbr, where a use-after-free in any
round fails the run."""
import os
import io
import random
import tarfile
import threading
import time
import zipfile

import pytest

import dareblopy as db

ROUNDS = int(os.environ.get("DAREBLOPY_RACE_ROUNDS", "25"))
THREADS = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("race")
    rng = random.Random(7)
    blobs = {f"e{i}.bin": rng.randbytes(rng.choice([16, 200_000])) for i in range(12)}
    zpath = root / "a.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as z:
        for name, blob in blobs.items():
            z.writestr(name, blob)
    tree = root / "tree"
    tree.mkdir()
    for name, blob in blobs.items():
        (tree / name).write_bytes(blob)
    tarpath = root / "a.tar"
    with tarfile.open(tarpath, "w") as t:
        for name, blob in blobs.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    records = [rng.randbytes(rng.choice([10, 50_000])) for _ in range(40)]
    tpath = root / "r.tfrecord"
    with db.TFRecordWriter(str(tpath)) as w:
        for r in records:
            w.write(r)
    return {"zip": str(zpath), "tar": str(tarpath), "tree": str(tree), "blobs": blobs, "tfrecord": str(tpath),
            "records": records}


def race(make, use, rounds=ROUNDS):
    """Per round: make() an object, THREADS threads call use(obj) until it
    raises ValueError, the main thread closes obj meanwhile.  Returns how
    many calls succeeded in all."""
    done = [0] * THREADS
    problems = []

    def worker(obj, k, started):
        started.set()
        try:
            while True:
                use(obj)
                done[k] += 1
        except ValueError as exc:
            if "closed" not in str(exc):
                problems.append(exc)
        except BaseException as exc:  # noqa: BLE001 - reported below
            problems.append(exc)

    for _ in range(rounds):
        obj = make()
        events = [threading.Event() for _ in range(THREADS)]
        threads = [threading.Thread(target=worker, args=(obj, k, events[k]))
                   for k in range(THREADS)]
        for t in threads:
            t.start()
        for e in events:
            e.wait()
        time.sleep(random.uniform(0, 0.003))
        obj.close()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
    assert not problems, problems[:3]
    return sum(done)


def test_archive_close_during_reads(data):
    names = list(data["blobs"])

    def use(a):
        name = random.choice(names)
        assert a.open_as_bytes(name) == data["blobs"][name]
        batch = a.read_many(names[:4], threads=2)
        assert batch == [data["blobs"][n] for n in names[:4]]

    # mmap=False: a freed archive is heap memory, which ASan watches
    assert race(lambda: db.open_zip_archive(data["zip"], mmap=random.random() < 0.5), use) > 0


def test_tar_archive_close_during_reads(data):
    names = list(data["blobs"])

    def use(t):
        name = random.choice(names)
        assert t.read(name) == data["blobs"][name]
        assert t.read_many(names[:4], threads=2) == [data["blobs"][n] for n in names[:4]]

    assert race(lambda: db.TarArchive(data["tar"], cache_index=False,
                                      mmap=random.random() < 0.5), use) > 0


def test_filesystem_close_during_lookups(data):
    names = list(data["blobs"])

    def make():
        fs = db.FileSystem()
        fs.push_search_path(data["tree"])
        fs.mount_archive(db.open_zip_archive(data["zip"]))
        return fs

    def use(fs):
        name = random.choice(names)
        assert fs.open_as_bytes(name) == data["blobs"][name]
        assert fs.exists(name)
        assert fs.list_directory("") == sorted(names)
        assert db.read_files(names[:3], filesystem=fs) == [data["blobs"][n] for n in names[:3]]

    assert race(make, use) > 0


def test_file_close_during_preads(data):
    name = max(data["blobs"], key=lambda n: len(data["blobs"][n]))
    blob = data["blobs"][name]

    def make():
        fs = db.FileSystem()
        fs.mount_archive(db.open_zip_archive(data["zip"]))
        return fs.open(name)  # the archive and the VFS are already dropped

    def use(f):
        assert f.pread(4096, 1000) == blob[1000:5096]
        assert f.read_all() == blob

    assert race(make, use) > 0


def test_record_reader_file_closed_mid_iteration(data):
    for round_ in range(ROUNDS):
        archive_backed = round_ % 2 == 1
        if archive_backed:
            fs = db.FileSystem()
            fs.push_search_path(os.path.dirname(data["tfrecord"]))
            f = fs.open(os.path.basename(data["tfrecord"]))
            fs.close()
        else:
            f = db.File.open(data["tfrecord"])
        reader = db.RecordReader(f)
        it = iter(reader)
        got = [next(it) for _ in range(round_ % 5 + 1)]
        f.close()  # the C reader holds the file
        with pytest.raises(ValueError, match="closed"):
            f.pread(1, 0)
        got.extend(it)
        assert got == data["records"]
        with pytest.raises(ValueError, match="closed"):
            list(reader)  # a new iteration needs the (closed) file


def test_record_reader_file_closed_by_another_thread(data):
    for _ in range(ROUNDS):
        f = db.File.open(data["tfrecord"])
        it = iter(db.RecordReader(f))
        first = next(it)
        closer = threading.Thread(target=f.close)
        closer.start()
        rest = list(it)
        closer.join()
        assert [first] + rest == data["records"]


def test_calls_after_close_raise_value_error(data):
    a = db.open_zip_archive(data["zip"])
    fs = db.FileSystem()
    fs.push_search_path(data["tree"])
    f = fs.open("e0.bin")
    for obj in (a, fs, f):
        obj.close()
        obj.close()  # twice is fine
    for call in (lambda: len(a), lambda: a.open_as_bytes("e0.bin"), lambda: a.read_many(["e0.bin"]),
                 lambda: a.namelist(), lambda: fs.open_as_bytes("e0.bin"), lambda: fs.exists("x"),
                 lambda: f.read(), lambda: f.size(), lambda: db.read_files(["e0.bin"], fs)):
        with pytest.raises(ValueError, match="closed"):
            call()


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_close_releases_at_once_when_nothing_runs(data):
    before = _open_fds()
    a = db.open_zip_archive(data["zip"], mmap=False)
    fs = db.FileSystem()
    fs.push_search_path(data["tree"])
    f = fs.open("e1.bin")
    assert _open_fds() == before + 3
    a.close()
    fs.close()
    f.close()
    assert _open_fds() == before


def test_things_made_from_a_closed_object_stay_usable(data):
    a = db.open_zip_archive(data["zip"])
    fs = db.FileSystem()
    fs.mount_archive(a)
    f = a.open("e2.bin")
    a.close()
    assert f.read_all() == data["blobs"]["e2.bin"]
    assert fs.open_as_bytes("e3.bin") == data["blobs"]["e3.bin"]
    fs.close()
    assert f.read_all() == data["blobs"]["e2.bin"]
