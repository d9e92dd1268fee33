"""dareblopy._atomic: files appear whole or not at all, follow the umask,
and never leave a temporary file behind."""
import os

import pytest

from dareblopy._atomic import AtomicFile, atomic_write


@pytest.fixture
def umask():
    old = os.umask(0o022)
    try:
        yield lambda m: os.umask(m)
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_mode_follows_umask(tmp_path, umask, mask):
    umask(mask)
    target = tmp_path / "out.txt"
    with atomic_write(target, "w") as fh:
        fh.write("hello")
    assert target.read_text() == "hello"
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~mask
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert os.stat(plain).st_mode & 0o777 == os.stat(target).st_mode & 0o777


def test_exception_in_block_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyError):
        with atomic_write(target) as fh:
            fh.write(b"new, half written")
            raise KeyError("boom")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["keep.bin"]


def test_failed_commit_removes_temp(tmp_path):
    target = tmp_path / "is_a_dir"
    target.mkdir()
    (target / "child").write_bytes(b"")
    af = AtomicFile(target)
    af.file.write(b"data")
    assert os.path.exists(af.temp_path)
    with pytest.raises(OSError):
        af.commit()
    assert not os.path.exists(af.temp_path)
    assert sorted(os.listdir(tmp_path)) == ["is_a_dir"]
    assert af.closed
    af.commit()  # a second close after failure does nothing


def test_replace_is_atomic_and_temp_is_beside_target(tmp_path):
    target = tmp_path / "t.bin"
    af = AtomicFile(target)
    assert os.path.dirname(af.temp_path) == str(tmp_path)
    af.file.write(b"abc")
    assert not target.exists()
    af.commit()
    assert target.read_bytes() == b"abc"
    assert sorted(os.listdir(tmp_path)) == ["t.bin"]


def test_discard_and_gc_remove_temp(tmp_path):
    af = AtomicFile(tmp_path / "a")
    af.discard()
    af2 = AtomicFile(tmp_path / "b")
    tmp2 = af2.temp_path
    del af2
    assert not os.path.exists(tmp2)
    assert os.listdir(tmp_path) == []


def test_missing_folder_raises_without_litter(tmp_path):
    with pytest.raises(FileNotFoundError):
        AtomicFile(tmp_path / "nope" / "x")


def test_bad_mode():
    with pytest.raises(ValueError):
        AtomicFile("x", "ab")
