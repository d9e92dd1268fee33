"""The dareblopy command line: pack, ls, cat and verify, run as a user would
(python -m dareblopy), checked against zipfile and Info-ZIP."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args, check=True):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "dareblopy", *map(str, args)],
                         capture_output=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(out.stderr.decode())
    return out


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha\n" * 100)
    (src / "sub" / "b.bin").write_bytes(os.urandom(5000))
    (src / "sub" / "deeper" / "c.txt").write_bytes(b"c" * 3000)
    return src


@pytest.mark.parametrize("method", ["stored", "deflate", "lz4"])
def test_pack_then_cat_ls_verify(tmp_path, tree, method):
    out = tmp_path / "out.zip"
    cli("pack", tree, out, "--method", method)
    files = {"a.txt", "sub/b.bin", "sub/deeper/c.txt"}
    for name in files:
        assert cli("cat", out, name).stdout == (tree / name).read_bytes()
    listing = cli("ls", out).stdout.decode()
    for name in files | {"sub/", "sub/deeper/"}:
        assert name in listing
    result = cli("verify", out)
    assert b"3 of 3 entries OK" in result.stdout
    if method != "lz4":
        with zipfile.ZipFile(out) as z:
            assert z.testzip() is None
            assert {n for n in z.namelist() if not n.endswith("/")} == files
            assert z.read("sub/b.bin") == (tree / "sub" / "b.bin").read_bytes()
        if shutil.which("unzip"):
            subprocess.run(["unzip", "-tq", str(out)], check=True, stdout=subprocess.DEVNULL)


def test_verify_reports_damage(tmp_path, tree):
    out = tmp_path / "out.zip"
    cli("pack", tree, out, "--method", "stored")
    data = bytearray(out.read_bytes())
    at = data.find(b"alpha")
    data[at] ^= 1
    out.write_bytes(bytes(data))
    result = cli("verify", out, check=False)
    assert result.returncode == 1
    assert b"BAD  a.txt" in result.stdout and b"CRC" in result.stdout
    assert b"2 of 3 entries OK" in result.stdout


def test_errors_are_messages_not_tracebacks(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all" * 10)
    result = cli("ls", junk, check=False)
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    assert b"junk.zip" in result.stderr
    result = cli("cat", junk, "x", check=False)
    assert result.returncode == 1
    result = cli("pack", tmp_path / "missing", tmp_path / "o.zip", check=False)
    assert result.returncode == 2
