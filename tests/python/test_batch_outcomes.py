"""Batch calls report each item's outcome once (dbr.h's statuses/messages
shape): errors="return" gives every failed item its own exception, made
from libdbr's per-item message, and nothing is read twice to learn it."""
import zipfile

import numpy as np
import pytest

import dareblopy as db
import dareblopy._files as files_mod
from dareblopy._zip import Archive


def _corrupt_zip(path, names, bad):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for n in names:
            z.writestr(n, n.encode() * 100)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(bad)
    raw[info.header_offset + 30 + len(bad) + 5] ^= 0xFF  # a byte of its data
    path.write_bytes(bytes(raw))


@pytest.fixture
def no_rereads(monkeypatch):
    """Counts every single-item read that an old-style fallback would make."""
    calls = []
    for owner, attr in ((Archive, "open_as_bytes"), (files_mod, "open_as_bytes"),
                        (db.FileSystem, "open_as_bytes")):
        real = getattr(owner, attr)

        def counted(*args, _real=real, **kwargs):
            calls.append(args)
            return _real(*args, **kwargs)
        monkeypatch.setattr(owner, attr, counted)
    return calls


def test_archive_read_many_returns_each_failure(tmp_path, no_rereads):
    names = [f"n{i}.txt" for i in range(6)]
    path = tmp_path / "bad.zip"
    _corrupt_zip(path, names, "n3.txt")
    with db.open_zip_archive(path) as a:
        got = a.read_many(names + ["missing.txt", "n0.txt"], threads=2, errors="return")
        with pytest.raises(db.CorruptDataError, match="n3.txt"):
            a.read_many(names)
    for i, n in enumerate(names):
        if i != 3:
            assert got[i] == n.encode() * 100
    assert isinstance(got[3], db.CorruptDataError) and isinstance(got[3], ValueError)
    assert "CRC-32 mismatch" in str(got[3]) and "n3.txt" in str(got[3])
    assert isinstance(got[6], db.NotFoundError) and "missing.txt" in str(got[6])
    assert got[7] == b"n0.txt" * 100
    assert no_rereads == []
    with pytest.raises(ValueError, match="errors must be"):
        db.open_zip_archive(path).read_many(names, errors="skip")


def test_read_files_returns_each_failure_without_rereading(tmp_path, no_rereads):
    (tmp_path / "ok.bin").write_bytes(b"fine")
    (tmp_path / "dir").mkdir()
    fs = db.FileSystem()
    fs.push_search_path(tmp_path)
    for source in (None, fs):
        prefix = "" if source is fs else str(tmp_path) + "/"
        got = db.read_files([prefix + "gone.bin", prefix + "ok.bin", prefix + "dir"],
                            filesystem=source, threads=2, errors="return")
        assert isinstance(got[0], FileNotFoundError) and "gone.bin" in str(got[0])
        assert got[1] == b"fine"
        assert isinstance(got[2], IsADirectoryError) and "dir" in str(got[2])
    assert no_rereads == []


def test_tfrecord_batch_parse_returns_each_failure(tmp_path):
    path = tmp_path / "r.tfrecord"
    with db.TFRecordWriter(str(path)) as w:
        for i in range(6):
            w.write(db.serialize_example({"x": np.full(4, i, np.int64), "s": b"s%d" % i}))
    index = db.load_index(str(path))
    raw = bytearray(path.read_bytes())
    raw[int(index[2, 0]) + 14] ^= 0xFF  # a data byte of record 2: its CRC fails
    path.write_bytes(bytes(raw))
    f = db.File.open(path)
    for features in ({"x": db.FixedLenFeature([4], db.int64)},
                     {"x": db.FixedLenFeature([4], db.int64), "s": db.FixedLenFeature([], db.string)}):
        parser = db.RecordParser(features)
        h = f._h()
        with pytest.raises(db.CorruptDataError, match="offset %d" % index[2, 0]):
            parser._parse_at([h] * 6, index[:, 0].copy(), index[:, 1].copy())
        batch, failures = parser._parse_at([h] * 6, index[:, 0].copy(), index[:, 1].copy(),
                                           errors="return")
        assert list(failures) == [2]
        assert isinstance(failures[2], db.CorruptDataError)
        assert "CRC-32C" in str(failures[2]) and str(index[2, 0]) in str(failures[2])
        assert [int(r[0]) for r in batch[0]] == [0, 1, 0, 3, 4, 5]
        if len(features) == 2:
            assert list(batch[1]) == [b"s0", b"s1", b"", b"s3", b"s4", b"s5"]
