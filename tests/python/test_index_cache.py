"""Index files go beside the data when its folder is writable, else into
the per-user cache directory ($XDG_CACHE_HOME/dareblopy/index)."""
import os
import stat

import pytest

import dareblopy as db
from dareblopy import _index_cache


def _tfrecord(path, count):
    with db.TFRecordWriter(path) as w:
        for i in range(count):
            w.write(b"record %d" % i)


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    home = tmp_path / "xdg-cache"
    monkeypatch.delenv("DAREBLOPY_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "dareblopy" / "index"


def test_beside_the_data_when_writable(tmp_path, cache_home):
    path = tmp_path / "a.tfrecord"
    _tfrecord(path, 5)
    assert len(db.RecordReader(path)) == 5
    assert (tmp_path / "a.tfrecord.idx").exists() and not cache_home.exists()


def test_user_cache_when_the_index_cannot_go_beside(tmp_path, cache_home):
    """Writing FILE.idx fails (here a directory holds that name, which
    stops root too); the index lands in the cache and is found there."""
    path = tmp_path / "b.tfrecord"
    _tfrecord(path, 7)
    (tmp_path / "b.tfrecord.idx").mkdir()
    assert len(db.RecordReader(path)) == 7
    (cached,) = os.listdir(cache_home)
    assert cached.startswith("b.tfrecord-") and cached.endswith(".idx")
    assert len(db.read_index(cache_home / cached)) == 7
    _tfrecord(path, 9)  # rewritten: the cached index is stale and is rebuilt
    os.utime(path, (os.stat(cache_home / cached).st_mtime + 5,) * 2)
    assert len(db.RecordReader(path)) == 9
    assert len(db.read_index(cache_home / cached)) == 9


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_user_cache_for_a_read_only_folder(tmp_path, cache_home):
    data = tmp_path / "ro"
    data.mkdir()
    _tfrecord(data / "c.tfrecord", 3)
    data.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert len(db.RecordReader(data / "c.tfrecord")) == 3
        assert os.listdir(data) == ["c.tfrecord"]
        assert len(os.listdir(cache_home)) == 1
    finally:
        data.chmod(stat.S_IRWXU)


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("DAREBLOPY_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _index_cache.user_cache_dir() == str(tmp_path / "home" / ".cache" / "dareblopy")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _index_cache.user_cache_dir() == str(tmp_path / "xdg" / "dareblopy")
    monkeypatch.setenv("DAREBLOPY_CACHE_DIR", str(tmp_path / "own"))
    assert _index_cache.user_cache_dir() == str(tmp_path / "own")
    # Same file name in two folders: two cache entries.
    a = _index_cache.cached_path(tmp_path / "x" / "s.tfrecord", ".idx", "c")
    b = _index_cache.cached_path(tmp_path / "y" / "s.tfrecord", ".idx", "c")
    assert a != b and os.path.basename(a).startswith("s.tfrecord-")


def test_store_index_reports_when_nowhere_is_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where folders would have to be made
    written = []
    assert _index_cache.store_index([str(blocker / "a" / "x.idx"), str(blocker / "b.idx")],
                                    written.append) is None
    assert written == []


def test_index_command_says_where_the_index_went(tmp_path, cache_home, capsys):
    from dareblopy.__main__ import main
    path = tmp_path / "d.tfrecord"
    _tfrecord(path, 4)
    (tmp_path / "d.tfrecord.idx").mkdir()
    assert main(["index", str(path)]) == 0
    (cached,) = os.listdir(cache_home)
    assert f"4 records -> {cache_home / cached}" in capsys.readouterr().out
