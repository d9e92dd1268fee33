"""The dareblopy command line: pack, ls, cat, verify and index, run as a user
would (python -m dareblopy), checked against zipfile and Info-ZIP."""
import os
import shutil
import stat
import subprocess
import sys
import warnings
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
CLI = [sys.executable, "-m", "dareblopy"]


def cli(*args, check=True, umask=None):
    out = subprocess.run([*CLI, *map(str, args)], capture_output=True, env=ENV,
                         preexec_fn=None if umask is None else lambda: os.umask(umask))
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


@pytest.mark.parametrize("method", ["auto", "stored", "deflate", "lz4"])
def test_pack_then_cat_ls_verify(tmp_path, tree, method):
    out = tmp_path / "out.zip"
    cli("pack", tree, out, "--method", method)
    files = {"a.txt", "sub/b.bin", "sub/deeper/c.txt"}
    for name in files:
        assert cli("cat", out, name).stdout == (tree / name).read_bytes()
    listing = cli("ls", out).stdout.decode().splitlines()
    assert {line.split()[-1] for line in listing} == files  # no directory entries
    result = cli("verify", out)
    assert b"3 of 3 entries OK" in result.stdout
    if method != "lz4":
        with zipfile.ZipFile(out) as z:
            assert z.testzip() is None
            assert sorted(z.namelist()) == sorted(files)
            assert z.read("sub/b.bin") == (tree / "sub" / "b.bin").read_bytes()
        if shutil.which("unzip"):
            subprocess.run(["unzip", "-tq", str(out)], check=True, stdout=subprocess.DEVNULL)


def test_default_method_stores_compressed_files_and_deflates_the_rest(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    compressed = ["a.jpg", "b.JPEG", "c.png", "d.webp", "e.gif", "f.zip", "g.gz", "h.bz2",
                  "i.xz", "j.zst", "k.lz4", "l.mp3", "m.mp4"]
    plain = ["n.txt", "o.json", "p", "q.bmp", "r.d/noext"]
    (src / "r.d").mkdir()
    for name in compressed + plain:
        (src / name).write_bytes(b"0123456789" * 300)
    out = tmp_path / "auto.zip"
    cli("pack", src, out)
    with zipfile.ZipFile(out) as z:
        methods = {i.filename: i.compress_type for i in z.infolist()}
    assert methods == {**{n: zipfile.ZIP_STORED for n in compressed},
                       **{n: zipfile.ZIP_DEFLATED for n in plain}}
    for forced, code in [("deflate", zipfile.ZIP_DEFLATED), ("stored", zipfile.ZIP_STORED)]:
        cli("pack", src, tmp_path / f"{forced}.zip", "--method", forced)
        with zipfile.ZipFile(tmp_path / f"{forced}.zip") as z:
            assert {i.compress_type for i in z.infolist()} == {code}


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


@pytest.mark.parametrize("damaged", [0, 1])
def test_verify_checks_each_of_two_entries_with_one_name(tmp_path, damaged):
    """A name lookup finds only one of two equal names (zipfile.testzip
    has that blind spot too); verify goes by index."""
    path = tmp_path / "dup.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("same.txt", b"first copy " * 20)
            z.writestr("same.txt", b"second copy " * 20)
    data = bytearray(path.read_bytes())
    data[data.find(b"first copy" if damaged == 0 else b"second copy")] ^= 1
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as z:  # the peer, reading by ZipInfo, agrees
        assert [i for i, info in enumerate(z.infolist()) if not _reads(z, info)] == [damaged]
    result = cli("verify", path, check=False)
    assert result.returncode == 1
    assert f"BAD  same.txt (entry {damaged})".encode() in result.stdout
    assert b"1 of 2 entries OK" in result.stdout


def _reads(z, info):
    try:
        z.read(info)
        return True
    except zipfile.BadZipFile:
        return False


def _many_entries(tmp_path, count=5000):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(count):
            z.writestr(f"dir/entry-{i:06d}.txt", b"x")
    return path


@pytest.mark.parametrize("command", ["ls", "cat"])
def test_a_closed_pipe_ends_the_command_quietly(tmp_path, command):
    """`dareblopy ls shard.zip | head`: the reader leaves early; like
    coreutils, the command stops without a word."""
    if command == "ls":
        args = ["ls", _many_entries(tmp_path)]
    else:
        path = tmp_path / "big.zip"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("big.bin", os.urandom(4 << 20))
        args = ["cat", path, "big.bin"]
    proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)
    assert proc.stdout.read(100)  # head read a little, then went away
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141  # 128 + SIGPIPE, as a shell reports for ls | head
    assert err == b""


def test_pipeline_through_head_prints_only_heads_output(tmp_path):
    if not shutil.which("sh") or not shutil.which("head"):
        pytest.skip("needs sh and head")
    archive = _many_entries(tmp_path)
    cmd = " ".join(map(str, CLI)) + f" ls {archive} | head -3"
    run = subprocess.run(["sh", "-c", cmd], capture_output=True, env=ENV)
    assert run.returncode == 0 and run.stderr == b""
    assert len(run.stdout.splitlines()) == 3


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
@pytest.mark.parametrize("fmt", ["zip", "tfrecord"])
def test_every_file_pack_writes_follows_the_umask(tmp_path, tree, umask, fmt):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cli("pack", tree, out_dir / f"t.{fmt}", "--format", fmt, "--shards", "2", umask=umask)
    written = sorted(os.listdir(out_dir))
    assert written == [f"t-00000-of-00002.{fmt}", f"t-00001-of-00002.{fmt}",
                       f"t.{fmt}.manifest.tsv"]
    for name in written:
        assert stat.S_IMODE(os.stat(out_dir / name).st_mode) == 0o666 & ~umask, name


def test_never_more_shards_than_files(tmp_path, tree):
    src = tmp_path / "many"
    src.mkdir()
    for i in range(18):
        (src / f"{i:02d}.txt").write_bytes(b"%d" % i)
    out = tmp_path / "s.zip"
    cli("pack", src, out, "--shards", "8")
    sizes = []
    for i in range(8):
        with zipfile.ZipFile(tmp_path / f"s-{i:05d}-of-00008.zip") as z:
            sizes.append(len(z.namelist()))
    assert sum(sizes) == 18 and set(sizes) == {2, 3}  # 18 // 8 files, or one more
    # Three files cannot fill eight shards: three are written, and pack says why.
    result = cli("pack", tree, tmp_path / "t.zip", "--shards", "8")
    assert b"3 files make 3 shards, not 8" in result.stderr
    made = sorted(f for f in os.listdir(tmp_path) if f.startswith("t-"))
    assert made == [f"t-{i:05d}-of-00003.zip" for i in range(3)]
    for name in made:
        with zipfile.ZipFile(tmp_path / name) as z:
            assert len(z.namelist()) == 1


def test_list_file_with_class_names(tmp_path):
    photos = tmp_path / "photos"
    for cls in ["dog", "cat", "eel"]:
        (photos / cls).mkdir(parents=True)
        for i in range(2):
            (photos / cls / f"{i:04d}.jpg").write_bytes(f"{cls}{i}".encode())
    listing = tmp_path / "list.txt"
    lines = [f"photos/{cls}/{i:04d}.jpg {cls}" for cls in ["dog", "cat", "eel"] for i in range(2)]
    listing.write_text("\n".join(lines) + "\n")
    cli("pack", listing, tmp_path / "named.zip")
    manifest = (tmp_path / "named.zip.manifest.tsv").read_text().splitlines()
    assert manifest[0] == "# classes\tcat\tdog\teel"
    rows = [line.split("\t") for line in manifest if not line.startswith("#")]
    assert {(r[1], r[2]) for r in rows} == {
        (f"photos/{cls}/{i:04d}.jpg", str(["cat", "dog", "eel"].index(cls)))
        for cls in ["dog", "cat", "eel"] for i in range(2)}


def _one_line_error(result, *needles):
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_user_errors_are_one_line_messages(tmp_path, tree):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all" * 10)
    _one_line_error(cli("ls", junk, check=False), "dareblopy ls:", "junk.zip", "not a ZIP")
    _one_line_error(cli("ls", tmp_path / "nope.zip", check=False), "nope.zip",
                    "No such file")
    _one_line_error(cli("verify", tmp_path, check=False), "is a directory")
    out = tmp_path / "ok.zip"
    cli("pack", tree, out)
    _one_line_error(cli("cat", out, "missing.txt", check=False), "missing.txt",
                    f"dareblopy ls {out}")
    _one_line_error(cli("pack", tmp_path / "missing", tmp_path / "o.zip", check=False),
                    "neither a directory nor a list file")
    _one_line_error(cli("pack", tree, tmp_path / "no" / "such" / "o.zip", check=False),
                    "does not exist; create it first")
    bad_list = tmp_path / "bad.txt"
    bad_list.write_text("photos/a.jpg\n")
    _one_line_error(cli("pack", bad_list, tmp_path / "o.zip", check=False),
                    "bad.txt:1: expected 'name label'")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(cli("pack", empty, tmp_path / "o.zip", check=False), "nothing to pack")
    _one_line_error(cli("pack", empty, tmp_path / "o.zip", "--labels", "imagefolder",
                        check=False), "no class subdirectories")
    _one_line_error(cli("index", junk, check=False), "junk.zip", "TFRecord")
    usage = cli("pack", tree, tmp_path / "o.zip", "--shards", "0", check=False)
    assert usage.returncode == 2 and b"must be at least 1" in usage.stderr
    assert b"Traceback" not in usage.stderr
