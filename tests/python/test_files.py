"""The Python surface of the file layer and the VFS."""
import os
import pathlib
import threading

import numpy as np
import pytest

import dareblopy as db


@pytest.fixture()
def tree(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "b" / "x.bin").write_bytes(b"shadowed")
    (tmp_path / "b" / "y.txt").write_bytes(b"hello")
    (tmp_path / "a" / "sub" / "z.txt").write_bytes(b"zzz")
    (tmp_path / "secret.txt").write_bytes(b"outside the mounts")
    return tmp_path


def test_version_is_one_story():
    # meson.build's project() version is the one source: the library and the
    # header report it (meson setup refuses a dbr.h that differs).
    import re
    meson = (pathlib.Path(__file__).parents[2] / "meson.build").read_text()
    assert db.__version__ == re.search(r"version: '([0-9.]+)'", meson).group(1)
    assert db.libdbr_version == db._lib.DBR_VERSION_NUMBER
    # A newer library of the same major serves an older header; nothing else does.
    from dareblopy._ffi import compatible
    assert compatible(200, 200) and compatible(200, 201) and compatible(200, 1500)
    assert not compatible(200, 199) and not compatible(200, 10200)
    assert not compatible(10200, 200)


def test_open_as_bytes_matches_python(tree):
    path = tree / "a" / "x.bin"
    data = db.open_as_bytes(path)
    assert type(data) is bytes
    assert data == path.read_bytes()
    assert db.open_as_bytes(str(path)) == data
    assert db.open_as_bytes(os.fsencode(str(path))) == data


def test_open_as_bytes_results_are_independent(tree):
    # Each call must return a fresh object: we write into it in place.
    one = tree / "one"
    one.write_bytes(b"1")
    two = tree / "two"
    two.write_bytes(b"2")
    a, b = db.open_as_bytes(one), db.open_as_bytes(two)
    assert (a, b) == (b"1", b"2")
    assert b"1" == bytes([49]) and b"2" == bytes([50])
    empty = tree / "empty"
    empty.write_bytes(b"")
    assert db.open_as_bytes(empty) == b""


def test_open_as_numpy_ubyte_shapes(tree):
    path = tree / "a" / "x.bin"
    flat = db.open_as_numpy_ubyte(path)
    assert flat.dtype == np.uint8 and flat.shape == (1024,)
    assert flat.tobytes() == path.read_bytes()
    assert db.open_as_numpy_ubyte(path, shape=(4, 256)).shape == (4, 256)
    assert db.open_as_numpy_ubyte(path, shape=(-1, 16)).shape == (64, 16)
    with pytest.raises(ValueError, match="cannot be reshaped"):
        db.open_as_numpy_ubyte(path, shape=(-1, 1000))
    with pytest.raises(ValueError, match="do not fill shape"):
        db.open_as_numpy_ubyte(path, shape=(10, 10))
    with pytest.raises(ValueError, match="more than one -1"):
        db.open_as_numpy_ubyte(path, shape=(-1, -1))


def test_out_and_readinto_fill_caller_arrays(tree):
    path = tree / "a" / "x.bin"
    out = np.zeros((32, 32), dtype=np.uint8)
    result = db.open_as_numpy_ubyte(path, out=out)
    assert result is out
    assert out.tobytes() == path.read_bytes()
    buf = bytearray(2000)
    assert db.readinto(path, buf) == 1024
    assert bytes(buf[:1024]) == path.read_bytes()
    with pytest.raises(db.BufferTooSmallError, match="needs 1024 bytes"):
        db.readinto(path, bytearray(10))
    with pytest.raises(ValueError, match="dtype uint8"):
        db.open_as_numpy_ubyte(path, out=np.zeros(1024, dtype=np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):
        db.open_as_numpy_ubyte(path, out=np.zeros((64, 32), dtype=np.uint8)[:, ::2])
    with pytest.raises(ValueError, match="holds 1000 bytes but 1024"):
        db.open_as_numpy_ubyte(path, out=np.zeros(1000, dtype=np.uint8))
    readonly = np.zeros(1024, dtype=np.uint8)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        db.open_as_numpy_ubyte(path, out=readonly)


def test_file_object_read_seek_tell(tree):
    path = tree / "a" / "x.bin"
    expected = path.read_bytes()
    with db.File.open(path) as f:
        assert f.size() == len(f) == 1024
        assert f.path == str(path)
        assert abs(f.get_last_write_time() - int(path.stat().st_mtime)) <= 1
        assert f.read(10) == expected[:10]
        assert f.tell() == 10
        assert f.seek(-24, os.SEEK_END) == 1000
        assert f.read() == expected[1000:]
        assert f.read() == b""
        assert f.seek(5) == 5
        assert f.seek(5, os.SEEK_CUR) == 10
        buf = bytearray(6)
        assert f.readinto(buf) == 6 and bytes(buf) == expected[10:16]
        assert f.pread(4, 100) == expected[100:104]
        assert f.tell() == 16  # pread does not move the position
        assert f.read_all() == expected
        arr = f.read_as_numpy_ubyte((-1, 4))
        assert arr.shape == (256, 4)
        with pytest.raises(ValueError, match="out of range"):
            f.seek(-5000, os.SEEK_CUR)
        with pytest.raises(ValueError, match="whence 9"):
            f.seek(0, 9)
    assert f.closed
    with pytest.raises(ValueError, match="closed"):
        f.read()


def test_missing_and_bad_paths_raise_builtin_compatible_errors(tree):
    with pytest.raises(FileNotFoundError) as info:
        db.open_as_bytes(tree / "nope.bin")
    assert isinstance(info.value, db.NotFoundError)
    assert isinstance(info.value, db.DbrError)
    assert info.value.code == db._lib.DBR_E_NOT_FOUND
    assert "nope.bin" in str(info.value) and "No such file" in str(info.value)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        db.open_as_bytes(tree / "a")
    with pytest.raises(ValueError, match="NUL byte"):
        db.open_as_bytes(str(tree / "a" / "x.bin") + "\0.txt")
    with pytest.raises(ValueError, match="not int"):
        db.open_as_bytes(42)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_permission_error(tree):
    locked = tree / "locked"
    locked.write_bytes(b"x")
    locked.chmod(0)
    with pytest.raises(PermissionError):
        db.open_as_bytes(locked)


def test_filesystem_search_paths_in_order(tree):
    fs = db.FileSystem()
    fs.push_search_path(tree / "a")
    fs.push_search_path(str(tree / "b"))
    assert fs.mount_count == 2
    assert fs.open_as_bytes("x.bin") == (tree / "a" / "x.bin").read_bytes()
    assert fs.open("y.txt").read() == b"hello"
    assert fs.open(db.Location("sub/z.txt")).read() == b"zzz"
    assert fs.open(pathlib.PurePosixPath("/sub/./z.txt")).read() == b"zzz"
    assert fs.exists("y.txt") and fs.exists("sub") and not fs.exists("nothing")
    assert fs.list_directory("") == ["sub/", "x.bin", "y.txt"]
    assert fs.list_directory("sub") == ["z.txt"]
    assert fs.open_as_numpy_ubyte("y.txt").tobytes() == b"hello"

    fs.pop_search_path()  # removes b
    assert not fs.exists("y.txt")
    fs.push_search_path(tree / "b")
    fs.clear_search_paths()
    assert fs.mount_count == 0
    with pytest.raises(IndexError):
        fs.pop_search_path()


def test_filesystem_never_escapes_a_mount(tree):
    fs = db.FileSystem()
    fs.push_search_path(tree / "a")
    with pytest.raises(ValueError, match="climbs above the root"):
        fs.open("../secret.txt")
    with pytest.raises(ValueError, match="climbs above the root"):
        fs.exists("sub/../../secret.txt")
    assert fs.open(str(tree / "secret.txt")) is None  # absolute paths are mount-relative
    with pytest.raises(FileNotFoundError):
        fs.open_as_bytes(str(tree / "secret.txt"))
    with pytest.raises(ValueError, match="NUL byte"):
        fs.open("x.bin\0../../secret.txt")
    assert fs.open("missing.txt") is None  # DareBlopy 0.0.5's answer for a missing file
    with pytest.raises(FileNotFoundError, match="not found in any of the 1 mounted"):
        fs.open_as_bytes("missing.txt")
    with pytest.raises(FileNotFoundError, match="not found in any mount"):
        fs.list_directory("nodir")


def test_filesystem_without_mounts_uses_os_paths(tree):
    fs = db.FileSystem()
    assert fs.open(tree / "secret.txt").read() == b"outside the mounts"
    assert fs.exists(tree / "secret.txt")
    assert "secret.txt" in fs.list_directory(tree)
    with pytest.raises(NotImplementedError, match="reading only"):
        fs.open(tree / "secret.txt", db.Mode.write)
    with pytest.raises(FileNotFoundError):
        fs.push_search_path(tree / "does-not-exist")
    with pytest.raises(NotImplementedError, match="not an archive"):
        fs.mount_archive("not an archive")


def test_file_survives_its_filesystem(tree):
    fs = db.FileSystem()
    fs.push_search_path(tree / "b")
    f = fs.open("y.txt")
    fs.close()
    del fs
    assert f.read() == b"hello"


def test_concurrent_reads_are_identical(tree):
    path = tree / "big.bin"
    payload = os.urandom(1 << 20)
    path.write_bytes(payload)
    fs = db.FileSystem()
    fs.push_search_path(tree)
    shared = db.File.open(path)
    errors = []

    def worker(seed):
        try:
            for i in range(30):
                off = (seed * 7919 + i * 104729) % (len(payload) - 4096)
                assert shared.pread(4096, off) == payload[off:off + 4096]
                assert fs.open_as_bytes("big.bin") == payload
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_errors_map_every_status_code():
    from dareblopy._errors import error_from_code
    lib = db._lib
    expected = {
        lib.DBR_E_ARG: ValueError, lib.DBR_E_NOMEM: MemoryError, lib.DBR_E_IO: OSError,
        lib.DBR_E_NOT_FOUND: FileNotFoundError, lib.DBR_E_CORRUPT: ValueError,
        lib.DBR_E_UNSUPPORTED: NotImplementedError, lib.DBR_E_TOO_SMALL: ValueError,
        lib.DBR_E_LIMIT: ValueError, lib.DBR_E_IS_DIR: IsADirectoryError,
        lib.DBR_E_PERMISSION: PermissionError, lib.DBR_E_EOF: EOFError,
    }
    for code, builtin in expected.items():
        err = error_from_code(code, "detail")
        assert isinstance(err, builtin) and isinstance(err, db.DbrError)
        assert err.code == code and str(err) == "detail"
    assert str(error_from_code(lib.DBR_E_CORRUPT, "")) == "corrupt data"
    assert type(error_from_code(-12345, "x")) is db.DbrError


def test_cdefs_come_from_the_header():
    from dareblopy._ffi import cdefs_from_header
    text = "#define X 1\n/* DBR_CDEF_BEGIN */\n#define DBR_A 3\n#if 0\nDBR_API int f(void);\n/* DBR_CDEF_END */"
    out = cdefs_from_header(text)
    assert "#define DBR_A 3" in out and "int f(void);" in out
    assert "#if" not in out and "DBR_API" not in out and "#define X" not in out
    with pytest.raises(ImportError, match="markers"):
        cdefs_from_header("int f(void);")


def test_read_files_batches_os_and_vfs_paths(tree):
    paths = [tree / "a" / "x.bin", tree / "b" / "y.txt", tree / "a" / "sub" / "z.txt"]
    expected = [p.read_bytes() for p in paths]
    assert db.read_files(paths) == expected
    assert db.read_files(paths, threads=2) == expected
    assert db.read_files([]) == []
    fs = db.FileSystem()
    fs.push_search_path(tree / "a")
    fs.push_search_path(tree / "b")
    assert fs.read_many(["x.bin", "y.txt", "sub/z.txt"]) == expected
    # Failures: the first raises, or each is returned in its place.
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        db.read_files([paths[0], tree / "missing.bin"])
    got = db.read_files([tree / "missing.bin", paths[1], tree / "a"], errors="return")
    assert isinstance(got[0], FileNotFoundError) and "missing.bin" in str(got[0])
    assert got[1] == expected[1]
    assert isinstance(got[2], IsADirectoryError)
    with pytest.raises(ValueError, match="climbs above the root"):
        fs.read_many(["../secret.txt"])
    with pytest.raises(ValueError, match="errors must be"):
        db.read_files(paths, errors="ignore")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_in_a_data_folder_fails_alone_instead_of_hanging(tmp_path):
    # directory_shards lists every name os.walk finds, FIFOs included; opening
    # one without a writer used to block the loader forever.
    (tmp_path / "a.bin").write_bytes(b"data")
    os.mkfifo(tmp_path / "pipe.bin")
    shards = db.directory_shards(tmp_path)
    got = {}
    worker = threading.Thread(target=lambda: got.update(batches=list(db.ShardedDataset(
        shards, 4, rank=0, world_size=1, on_error="skip"))), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "reading a FIFO blocked"
    (batch,) = got["batches"]
    assert batch["keys"] == ["a.bin"] and batch["data"] == [b"data"]
    assert batch["skipped"] == ["pipe.bin"]
    with pytest.raises(db.UnsupportedError, match=r"pipe\.bin.*it is a FIFO"):
        db.read_files([tmp_path / "pipe.bin"])
    fs = db.FileSystem()
    fs.push_search_path(tmp_path)
    with pytest.raises(db.UnsupportedError, match="not a regular file"):
        fs.open_as_bytes("pipe.bin")
