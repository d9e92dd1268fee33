"""Directory mounts keep paths inside them: a symlink that leads out is
refused unless the mount follows symlinks; links inside keep working.
Files that report size 0 but hold content (procfs) read whole."""
import os

import pytest

import dareblopy as db


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(b"secret")
    m = tmp_path / "m"
    (m / "sub").mkdir(parents=True)
    (m / "sub" / "f.txt").write_bytes(b"inside")
    os.symlink("sub/f.txt", m / "in")
    os.symlink("sub", m / "dirlink")
    os.symlink("../outside/secret.txt", m / "escape")
    os.symlink("../outside", m / "escdir")
    os.symlink("/etc/hostname", m / "hostname")
    return m


def test_symlinks_out_of_a_mount_are_refused(tree):
    fs = db.FileSystem()
    fs.push_search_path(tree)
    assert fs.open_as_bytes("in") == b"inside"
    assert fs.open_as_bytes("dirlink/f.txt") == b"inside"
    assert "dirlink/" in fs.list_directory("")
    for path in ("escape", "escdir/secret.txt", "hostname"):
        with pytest.raises(PermissionError, match="leads out of the directory mount"):
            fs.open_as_bytes(path)
        with pytest.raises(PermissionError):
            fs.open(path)
        got = db.read_files([path], filesystem=fs, errors="return")
        assert isinstance(got[0], PermissionError)
    with pytest.raises(PermissionError):
        fs.exists("escdir")


def test_following_symlinks_is_an_option_of_the_mount(tree):
    fs = db.FileSystem()
    fs.mount_directory(tree, follow_symlinks=True)
    assert fs.open_as_bytes("escape") == b"secret"
    assert fs.open_as_bytes("escdir/secret.txt") == b"secret"
    assert fs.open_as_bytes("in") == b"inside"
    # one FileSystem may mix both kinds: each mount keeps its own rule
    fs.push_search_path(tree.parent / "outside")
    strict = db.FileSystem()
    strict.push_search_path(tree)
    strict.push_search_path(tree.parent / "outside")
    assert strict.open_as_bytes("secret.txt") == b"secret"  # a mount of its own
    with pytest.raises(PermissionError):
        strict.open_as_bytes("escape")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs procfs")
def test_procfs_files_read_their_content():
    assert os.stat("/proc/self/status").st_size == 0
    assert db.open_as_bytes("/proc/self/status").startswith(b"Name:")
    with db.File.open("/proc/self/status") as f:
        assert f.size() > 100
        assert f.read().startswith(b"Name:")
    got = db.read_files(["/proc/self/status", "/proc/self/cmdline"])
    assert got[0].startswith(b"Name:") and len(got[1]) > 0
    fs = db.FileSystem()
    fs.push_search_path("/proc/self")
    assert fs.open_as_bytes("status").startswith(b"Name:")
