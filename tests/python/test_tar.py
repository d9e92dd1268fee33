"""Tar archives and WebDataset shards: differential against CPython's tarfile
(names and bytes in ustar, GNU and pax formats) and the webdataset package
(TarWriter shards read back with the same keys, fields and labels; shards
from `pack --format tar` read back identically by webdataset), the index
cache, damaged tars, the VFS mount, and every ShardedDataset feature on tar
shards."""
import io
import os
import pickle
import sys
import tarfile

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "benchmarks"))
import photos  # noqa: E402  (benchmarks/photos.py: real photos, seeded)

import dareblopy as db  # noqa: E402
from dareblopy import _pack, _tar  # noqa: E402

wds = pytest.importorskip("webdataset")

SIZE = 48


def write_tar(path, members, fmt=tarfile.PAX_FORMAT):
    """members: (name, bytes) files, or (name, None) directories."""
    with tarfile.open(path, "w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return str(path)


def wds_samples(path):
    """webdataset's own samples of a shard, raw (no decoding)."""
    out = []
    for s in wds.WebDataset(str(path), shardshuffle=False):
        out.append({k: v for k, v in s.items() if k == "__key__" or not k.startswith("__")})
    return out


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_names_and_bytes_match_tarfile(tmp_path, fmt):
    rng = np.random.default_rng(fmt)
    members = [("top.txt", b"hello"), ("d", None), ("d/e/f.bin", rng.bytes(70000)),
               ("empty", b""), ("\u00fcml\u00e4ut/\u6f22\u5b57.cls", b"7")]
    if fmt == tarfile.USTAR_FORMAT:  # ustar: long names through the 155-byte prefix
        members.append(("p" * 120 + "/" + "n" * 90 + ".json", b"{}"))
    else:  # GNU long name records, pax path records
        members.append(("q" * 300 + "/long.json", b"{}"))
    path = write_tar(tmp_path / "a.tar", members, fmt)
    with tarfile.open(path) as ref, db.TarArchive(path, cache_index=False) as arc:
        want = [m.name for m in ref.getmembers() if m.isreg() or m.isdir()]
        assert arc.namelist() == want
        entries = arc.entries()
        for i, m in enumerate(m for m in ref.getmembers() if m.isreg() or m.isdir()):
            assert bool(entries["is_dir"][i]) == m.isdir()
            assert entries["mtime"][i] == m.mtime
            if m.isreg():
                data = ref.extractfile(m).read()
                assert arc.read(m.name) == data and entries["size"][i] == len(data)
                assert m.name in arc
        regular = [m.name for m in ref.getmembers() if m.isreg()]
        assert arc.read_many(regular, threads=2) == [ref.extractfile(n).read() for n in regular]
        assert "nope" not in arc
        with pytest.raises(db.NotFoundError, match="nope"):
            arc.read("nope")
        with pytest.raises(KeyError):
            arc["nope"]
        assert arc.exists("d/e") and arc.list_directory("d") == ["e/"]
        with arc.open("d/e/f.bin") as f:
            assert f.pread(10, 5) == ref.extractfile("d/e/f.bin").read()[5:15]
    assert arc.closed


def test_links_and_devices_are_not_members(tmp_path):
    path = tmp_path / "l.tar"
    with tarfile.open(path, "w") as t:
        info = tarfile.TarInfo("000.jpg")
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
        for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE):
            info = tarfile.TarInfo(f"000.link{kind.decode()}")
            info.type, info.linkname = kind, "000.jpg"
            t.addfile(info)
    arc = db.TarArchive(path, cache_index=False)
    assert arc.namelist() == ["000.jpg"]
    assert len(db.TarShard(path)) == 1 and wds_samples(path) == db.TarShard(path).read([0])


def test_webdataset_tarwriter_shards_read_back_identically(tmp_path):
    rng = np.random.default_rng(5)
    paths = []
    for s in range(3):
        path = str(tmp_path / f"shard-{s:06d}.tar")
        with wds.TarWriter(path) as w:
            for i in range(7):
                key = f"{s * 100 + i:06d}"
                w.write({"__key__": key, "jpg": rng.bytes(int(rng.integers(1, 5000))),
                         "cls": (s * 7 + i) % 5, "json": {"i": i}, "txt": f"caption {i}"})
        paths.append(path)
    shards = db.tar_shards(paths)
    for path, shard in zip(paths, shards):
        theirs = wds_samples(path)
        ours = shard.read(range(len(shard)))
        assert ours == theirs and len(theirs) == 7
        assert shard.labels_of(range(7)) == [int(s["cls"]) for s in theirs]
        samples = shard.read_samples([4, 1])
        assert [(x.name, x.data, x.label) for x in samples] == \
            [(shard.name(i), theirs[i], int(theirs[i]["cls"])) for i in (4, 1)]
        assert [shard.name(i) for i in range(7)] == \
            [f"{os.path.basename(path)}/{s['__key__']}" for s in theirs]
    only = db.TarShard(paths[0], extensions=["jpg", "cls"]).read([2])[0]
    assert sorted(only) == ["__key__", "cls", "jpg"]


def test_key_and_extension_rules_follow_webdataset(tmp_path):
    names = ["a/b/000.seg.png", "a/b/000.JPG", "a/b/000.x.y.z", "__meta__", "sub/__skip__/x.txt",
             "noext", "c.d/001.jpg", "c.d/001.cls", "002.jpg", "003.jpg", "002.cls",
             "./004.jpg", "004.cls", ".hidden.txt"]
    path = write_tar(tmp_path / "rules.tar", [(n, n.encode()) for n in names])
    theirs = wds_samples(path)
    shard = db.TarShard(path)
    assert shard.read(range(len(shard))) == theirs
    for name in names:
        assert _tar.split_key(name) == wds.tariterators.base_plus_ext(name)


def test_duplicate_extension_in_a_sample_is_an_error(tmp_path):
    path = write_tar(tmp_path / "dup.tar", [("000.jpg", b"a"), ("000.JPG", b"b")])
    with pytest.raises(ValueError):
        wds_samples(path)
    with pytest.raises(db.CorruptDataError, match=r"dup.tar.*000.JPG"):
        len(db.TarShard(path))


def test_index_is_cached_beside_the_shard_and_rebuilt_when_it_changes(tmp_path):
    path = write_tar(tmp_path / "c.tar", [("000.jpg", b"one"), ("000.cls", b"1")])
    cache = path + _tar.INDEX_SUFFIX
    assert db.TarArchive(path).read("000.jpg") == b"one" and os.path.exists(cache)
    first = open(cache, "rb").read()
    assert db.TarArchive(path).namelist() == ["000.jpg", "000.cls"]
    assert open(cache, "rb").read() == first
    # The shard is replaced: the saved index is stale and is rebuilt.
    write_tar(path, [("000.jpg", b"one"), ("000.cls", b"1"), ("001.jpg", b"two!")])
    os.utime(path, ns=(os.stat(cache).st_mtime_ns + 10**9,) * 2)
    assert db.TarArchive(path).read("001.jpg") == b"two!"
    assert open(cache, "rb").read() != first
    # A damaged cache is never trusted: the shard is scanned again.
    with open(cache, "r+b") as fh:
        fh.seek(60)
        fh.write(b"\xff" * 8)
    assert db.TarArchive(path).read("001.jpg") == b"two!"
    other = tmp_path / "elsewhere"
    arc = db.TarArchive(path, cache_dir=str(other))
    assert len(arc) == 3 and len(os.listdir(other)) == 1


def test_read_only_folder_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    path = write_tar(tmp_path / "ro.tar", [("000.jpg", b"x")])
    monkeypatch.setenv("DAREBLOPY_CACHE_DIR", str(tmp_path / "usercache"))
    real_open = _tar._write_atomically

    def refuse_beside(target, data):  # root ignores chmod, so refuse by path
        if os.path.dirname(target) == str(tmp_path):
            raise PermissionError(target)
        real_open(target, data)
    monkeypatch.setattr(_tar, "_write_atomically", refuse_beside)
    assert db.TarArchive(path).read("000.jpg") == b"x"
    assert not os.path.exists(path + _tar.INDEX_SUFFIX)
    assert len(os.listdir(tmp_path / "usercache" / "index")) == 1


def damaged(tmp_path, how):
    good = write_tar(tmp_path / "good.tar", [("000.jpg", b"j" * 1000), ("000.cls", b"3"),
                                             ("001.jpg", b"k" * 600)], tarfile.USTAR_FORMAT)
    data = bytearray(open(good, "rb").read())
    # layout: 000.jpg header 0, data 512; 000.cls header 1536; 001.jpg header 2560
    if how == "truncated":
        data = data[:3072 + 100]  # inside 001.jpg's data
    elif how == "checksum":
        data[1536 + 10] ^= 0x01  # the name in 000.cls's header
    elif how == "size":
        data[124:136] = b"%011o\0" % (1 << 30)
        data[148:156] = b"        "
        data[148:156] = b"%06o\0 " % sum(data[:512])
    elif how == "dotdot":
        data[1536:1536 + 100] = b"../000.cls".ljust(100, b"\0")
        data[1536 + 148:1536 + 156] = b"        "
        data[1536 + 148:1536 + 156] = b"%06o\0 " % sum(data[1536:2048])
    path = tmp_path / f"{how}.tar"
    path.write_bytes(bytes(data))
    return str(path)


@pytest.mark.parametrize("how,member,text", [
    ("truncated", "001.jpg", "past the end"),
    ("checksum", "000.cls", "checksum"),
    ("size", "000.jpg", "past the end"),
    ("dotdot", "../000.cls", "'..'"),
])
def test_damaged_tars_give_clear_errors(tmp_path, how, member, text):
    path = damaged(tmp_path, how)
    with pytest.raises(db.CorruptDataError) as err:
        db.TarArchive(path)
    assert path in str(err.value) and member in str(err.value) and text in str(err.value)
    # keep_intact_prefix: the members before the break, and the same reason
    # (a tar broken in its first member has none to keep).
    if how == "size":
        with pytest.raises(db.CorruptDataError, match=text):
            db.TarArchive(path, keep_intact_prefix=True)
    else:
        kept = db.TarArchive(path, keep_intact_prefix=True)
        assert str(kept.damage) == str(err.value)
        assert kept.namelist() == ["000.jpg", "000.cls"][:1 if member.endswith("cls") else 2]
        assert kept.read("000.jpg") == b"j" * 1000
    assert not os.path.exists(path + _tar.INDEX_SUFFIX)  # a damaged tar's index is never kept
    assert db.TarArchive(write_tar(tmp_path / "ok.tar", [("a.b", b"1")])).damage is None


@pytest.mark.parametrize("where", ["mid-jpg", "mid-cls-header", "mid-next-jpg"])
def test_truncated_shard_keeps_what_webdataset_reads(tmp_path, where):
    """A shard cut off part-way (an interrupted download): the samples
    before the cut are read exactly as webdataset reads them (its
    warn_and_continue handler), the partial last sample included; the image
    pipeline delivers every complete image and names the cut."""
    path, images = jpeg_tar(tmp_path, count=10)
    with tarfile.open(path) as t:
        info = {m.name: m for m in t.getmembers()}
    jpg6, cls7 = info["00006.jpg"], info["00007.cls"]
    cut = {"mid-jpg": jpg6.offset_data + jpg6.size // 2,
           "mid-cls-header": cls7.offset + 100,
           "mid-next-jpg": info["00007.jpg"].offset_data + 10}[where]
    data = open(path, "rb").read()
    cut_path = str(tmp_path / "cut.tar")
    with open(cut_path, "wb") as fh:
        fh.write(data[:cut])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = [{k: v for k, v in s.items() if k == "__key__" or not k.startswith("__")}
                  for s in wds.WebDataset(cut_path, shardshuffle=False,
                                          handler=wds.warn_and_continue)]
    shard = db.TarShard(cut_path)
    ours = shard.read(range(len(shard)))
    assert ours == theirs and len(ours) in (7, 8)
    assert "cut.tar" in str(shard.damage) and "truncated" in str(shard.damage)
    kw = dict(batch_size=4, size=SIZE, rank=0, world_size=1, shuffle=False)
    ds = db.image_classification_dataset(db.tar_shards([cut_path]), on_error="skip", **kw)
    keys = [k for b in ds for k in b["keys"]]
    assert keys == [f"cut.tar/{s['__key__']}" for s in theirs if "jpg" in s]
    assert any("cut.tar" in reason and "samples before it are kept" in reason
               for _, reason in ds.skipped)
    with pytest.raises(db.CorruptDataError, match="truncated"):
        db.image_classification_dataset(db.tar_shards([cut_path]), **kw)


def test_truncated_tars_never_accepted_where_tarfile_refuses(tmp_path):
    # A shard cut short at any byte: whatever dareblopy opens, tarfile opens
    # with the same members.  A cut inside the last member's padding used to
    # be accepted, quietly losing every member after it.
    whole = tmp_path / "whole.tar"
    write_tar(whole, [("a.jpg", b"x" * 3), ("a.cls", b"1"), ("b.jpg", b"y" * 512),
                      ("b.cls", b""), ("\u00fc" * 120 + ".jpg", b"z" * 700)])
    data = whole.read_bytes()
    path = tmp_path / "cut.tar"
    accepted = 0
    for cut in sorted(set(range(0, len(data) + 1, 7)) | set(range(0, len(data) + 1, 512))):
        path.write_bytes(data[:cut])
        try:
            got = db.TarArchive(path, cache_index=False).namelist()
        except db.CorruptDataError as err:
            assert str(path) in str(err)
            continue
        accepted += 1
        with tarfile.open(path) as t:
            assert got == t.getnames(), cut
    assert accepted >= 4  # the end blocks and whole members may be cut off


def test_limits_on_declared_sizes(tmp_path):
    path = write_tar(tmp_path / "long.tar", [("x" * 5000 + ".jpg", b"a")], tarfile.GNU_FORMAT)
    with pytest.raises(db.LimitExceededError, match="max_header_size"):
        db.TarArchive(path, max_header_size=4096, cache_index=False)
    with pytest.raises(db.LimitExceededError, match="max_members"):
        db.TarArchive(path, max_members=0, cache_index=False)
    assert len(db.TarArchive(path, cache_index=False, mmap=False)) == 1


def jpeg_tar(tmp_path, count=24, classes=3, name="img.tar", missing=()):
    images = list(photos.photo_set(count, (80, 60), seed=11))
    path = str(tmp_path / name)
    with wds.TarWriter(path) as w:
        for i, data in enumerate(images):
            sample = {"__key__": f"{i:05d}", "cls": i % classes}
            if i not in missing:
                sample["jpg"] = data
            w.write(sample)
    return path, images


def test_tar_mounted_in_a_filesystem(tmp_path):
    path, images = jpeg_tar(tmp_path, count=4)
    arc = db.TarArchive(path)
    fs = db.FileSystem()
    fs.mount_archive(arc)
    arc.close()  # the mount keeps the archive alive
    assert fs.open_as_bytes("00002.jpg") == images[2]
    assert fs.exists("00003.cls") and not fs.exists("00009.jpg")
    assert "00001.jpg" in fs.list_directory("")
    batch = db.decode_jpeg_files(["00000.jpg", "00003.jpg"], filesystem=fs, size=(32, 32),
                                 crop="resize")
    want = db.decode_jpeg_batch([images[0], images[3]], size=(32, 32), crop="resize")
    assert np.array_equal(batch, want)


@pytest.mark.parametrize("mmap", [False, True])
def test_image_pipeline_on_tar_equals_zip(tmp_path, mmap):
    path, images = jpeg_tar(tmp_path)
    zpath = str(tmp_path / "img.zip")
    with db.ZipWriter(zpath, method="stored") as z:
        for i, data in enumerate(images):
            z.write(f"{i:05d}.jpg", data)
    zlabels = {f"img.zip/{i:05d}.jpg": i % 3 for i in range(len(images))}
    kw = dict(batch_size=5, size=SIZE, seed=4, rank=0, world_size=1)
    tar_ds = db.image_classification_dataset(db.tar_shards([path], mmap=mmap), **kw)
    zip_ds = db.image_classification_dataset(db.zip_shards([zpath]), labels=zlabels, **kw)
    for t, z in zip(tar_ds, zip_ds):
        assert np.array_equal(t["data"], z["data"])
        assert t["labels"].tolist() == z["labels"].tolist()
        assert [k.replace(".tar/", ".zip/") + ".jpg" for k in t["keys"]] == z["keys"]
    assert t["data"].std() > 10


def test_sharded_dataset_features_on_tar_shards(tmp_path):
    paths = []
    for s in range(3):
        path = str(tmp_path / f"s{s}.tar")
        with wds.TarWriter(path) as w:
            for i in range(10 + s):
                w.write({"__key__": f"{s}_{i:03d}", "txt": f"{s}-{i}", "cls": i})
        paths.append(path)
    total = 33
    kw = dict(shuffle=True, seed=9, shuffle_buffer=8, transform=lambda s: s["txt"])
    seen = []
    for rank in range(3):  # exact split over ranks: every sample once
        ds = db.ShardedDataset(db.tar_shards(paths), 4, rank=rank, world_size=3, **kw)
        seen += [k for b in ds for k in b["keys"]]
    assert sorted(seen) == sorted(f"s{s}.tar/{s}_{i:03d}" for s in range(3)
                                  for i in range(10 + s)) and len(seen) == total
    ds = db.ShardedDataset(db.tar_shards(paths), 4, rank=0, world_size=1, **kw)
    full = [b["data"] for b in ds]
    again = db.ShardedDataset(db.tar_shards(paths), 4, rank=0, world_size=1, **kw)
    it = iter(again)
    head = [next(it)["data"] for _ in range(3)]
    state = again.state_dict()
    resumed = db.ShardedDataset(db.tar_shards(paths), 4, rank=0, world_size=1, **kw)
    resumed.load_state_dict(state)
    assert head + [b["data"] for b in resumed] == full  # resume
    plain = db.ShardedDataset(db.tar_shards(paths), 64, rank=0, world_size=1, shuffle=False,
                              transform=lambda s: s["txt"])
    assert next(iter(plain))["data"][:2] == [b"0-0", b"0-1"]
    assert full != [plain_batch for plain_batch in [next(iter(plain))["data"]]]
    # labels from the cls members (the shards carry them)
    labelled = db.ShardedDataset(db.tar_shards(paths), 64, shuffle=False, rank=0, world_size=1)
    batch = next(iter(labelled))
    assert batch["labels"].tolist() == [int(k.rsplit("_", 1)[1]) for k in batch["keys"]]
    shard = pickle.loads(pickle.dumps(db.tar_shards(paths)[1]))
    assert shard.read([3])[0]["txt"] == b"1-3"


def test_skip_mode_names_samples_without_an_image(tmp_path):
    path, _ = jpeg_tar(tmp_path, count=9, missing={4})
    kw = dict(batch_size=3, size=SIZE, rank=0, world_size=1, shuffle=False)
    ds = db.image_classification_dataset(db.tar_shards([path]), on_error="skip", **kw)
    keys = [k for b in ds for k in b["keys"]]
    assert len(keys) == 8 and ds.skipped[0][0] == "img.tar/00004"
    assert "jpg" in ds.skipped[0][1]
    with pytest.raises(db.NotFoundError, match="00004"):
        list(db.image_classification_dataset(db.tar_shards([path]), **kw))


def test_missing_or_bad_cls_labels(tmp_path):
    path = str(tmp_path / "nocls.tar")
    with wds.TarWriter(path) as w:
        w.write({"__key__": "a", "jpg": b"x", "cls": 1})
        w.write({"__key__": "b", "jpg": b"y"})
    assert db.TarShard(path).labels_of([0, 1]) == [1, None]
    path2 = write_tar(tmp_path / "badcls.tar", [("a.jpg", b"x"), ("a.cls", b"dog")])
    bad = db.TarShard(path2).labels_of([0])[0]
    assert isinstance(bad, db.CorruptDataError) and "not an integer" in str(bad)
    assert "badcls.tar" in str(bad)
    ds = db.ShardedDataset(db.tar_shards([path2]), 1, rank=0, world_size=1, on_error="skip")
    assert list(ds)[0]["keys"] == [] and "not an integer" in ds.skipped[0][1]


def test_pack_format_tar_is_read_back_identically_by_webdataset(tmp_path):
    src = tmp_path / "train"
    files = {}
    for c, cls in enumerate(["cat", "dog"]):
        (src / cls / "deep").mkdir(parents=True)
        for i, base in enumerate(["0.jpg", "v1.2.jpg", "UP.JPG", "deep/3.jpeg", "noext"]):
            data = os.urandom(50 + 10 * i + c)
            (src / cls / base).write_bytes(data)
            files[f"{cls}/{base}"] = (data, c)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    out = tmp_path / "out" / "wds.tar"
    out.parent.mkdir()
    import subprocess
    run = subprocess.run([sys.executable, "-m", "dareblopy", "pack", str(src), str(out),
                          "--format", "tar", "--shards", "2", "--labels", "imagefolder",
                          "--shuffle"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    paths = _pack.shard_paths(str(out), 2)
    got = {}
    for path in paths:
        theirs = wds_samples(path)
        shard = db.TarShard(path)
        assert shard.read(range(len(shard))) == theirs  # same keys, fields, bytes
        assert shard.labels_of(range(len(shard))) == [int(s["cls"]) for s in theirs]
        for s in theirs:
            exts = sorted(k for k in s if k != "__key__")
            assert len(exts) == 2 and "cls" in exts
            data = s[next(e for e in exts if e != "cls")]
            got[s["__key__"]] = (data, int(s["cls"]))
    # keys: the relative name without its extension, dots made '_'
    want = {"cat/0": files["cat/0.jpg"], "cat/v1_2": files["cat/v1.2.jpg"],
            "cat/UP": files["cat/UP.JPG"], "cat/deep/3": files["cat/deep/3.jpeg"],
            "cat/noext": files["cat/noext"]}
    assert {k: v for k, v in got.items() if k.startswith("cat/")} == want
    assert len(got) == len(files)
    assert sorted(f for f in os.listdir(out.parent) if not f.endswith(".dbridx")) == \
        sorted([os.path.basename(p) for p in paths] + ["wds.tar.manifest.tsv"])


def test_pack_tar_refuses_colliding_keys_and_is_atomic(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"1")
    (src / "a.png").write_bytes(b"2")
    with pytest.raises(ValueError, match="a.jpg.*a.png.*key 'a'"):
        _pack.pack(_pack.tree_items(str(src)), str(tmp_path / "x.tar"), format="tar",
                   progress=False)
    (src / "a.png").unlink()
    items = _pack.tree_items(str(src)) + [_pack.Item(str(src / "gone.jpg"), "gone.jpg", None)]
    out = tmp_path / "o"
    out.mkdir()
    with pytest.raises(FileNotFoundError):
        _pack.pack(items, str(out / "y.tar"), format="tar", progress=False)
    assert os.listdir(out) == []  # no partial shard, no temporary file, no manifest


@pytest.mark.parametrize("mmap", [True, False])
def test_decode_jpeg_members_equals_decoding_the_bytes(tmp_path, mmap):
    path, images = jpeg_tar(tmp_path, count=6)
    arc = db.TarArchive(path, mmap=mmap)
    names = arc.namelist()
    members = [names.index(f"{i:05d}.jpg") for i in (5, 0, 3)]
    got = db.decode_jpeg_members(arc, members, size=(40, 30), crop="random", flip="random",
                                 seed=8, threads=2)
    want = db.decode_jpeg_batch([images[5], images[0], images[3]], size=(40, 30),
                                crop="random", flip="random", seed=8)
    assert np.array_equal(got, want)
    cls = names.index("00001.cls")
    out, errors = db.decode_jpeg_members(arc, [members[0], cls], size=(40, 30), crop="resize",
                                         errors="return")
    assert errors[0] is None and np.array_equal(out[0], db.decode_jpeg_batch(
        [images[5]], size=(40, 30), crop="resize")[0])
    assert isinstance(errors[1], db.CorruptDataError) and "00001.cls" in str(errors[1])
    assert path in str(errors[1]) and not out[1].any()


def test_skip_mode_leaves_out_a_damaged_shard_with_its_reason(tmp_path):
    bad = damaged(tmp_path, "truncated")
    good = write_tar(tmp_path / "fine.tar", [("a.txt", b"1"), ("b.txt", b"2")])
    ds = db.ShardedDataset(db.tar_shards([good, bad]), 8, shuffle=False, rank=0, world_size=1,
                           on_error="skip")
    # the sample before the cut is kept; the cut one is skipped with its reason
    assert [k for b in ds for k in b["keys"]] == ["fine.tar/a", "fine.tar/b",
                                                  "truncated.tar/000"]
    assert any(bad in reason and "001.jpg" in reason for _, reason in ds.skipped)
    with pytest.raises(db.CorruptDataError, match="truncated"):
        db.ShardedDataset(db.tar_shards([good, bad]), 8, rank=0, world_size=1)


# ---- compressed shards (.tgz, .tar.bz2, .tar.xz), as webdataset reads them

def compressed(path, kind, out):
    """The tar at path, compressed with kind's stdlib module into out."""
    import bz2
    import gzip
    import lzma
    opener = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}[kind]
    with open(path, "rb") as src, opener(out, "wb") as dst:
        dst.write(src.read())
    return str(out)


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz"])
def test_compressed_shards_read_as_webdataset_reads_them(tmp_path, kind, monkeypatch):
    monkeypatch.setenv("DAREBLOPY_CACHE_DIR", str(tmp_path / "usercache"))
    plain, _ = jpeg_tar(tmp_path, count=12)
    packed = compressed(plain, kind, tmp_path / f"img.tar.{kind}")
    shard = db.TarShard(packed)
    assert shard.read(range(len(shard))) == wds_samples(packed) == wds_samples(plain)
    assert shard.damage is None
    kw = dict(batch_size=5, size=SIZE, rank=0, world_size=1, shuffle=True, seed=3)
    ours = list(db.image_classification_dataset(db.tar_shards([packed]), **kw))
    ref = list(db.image_classification_dataset(db.tar_shards([plain]), **kw))
    assert [b["labels"].tolist() for b in ours] == [b["labels"].tolist() for b in ref]
    assert all(np.array_equal(a["data"], b["data"]) for a, b in zip(ours, ref))
    # decompressed once, into the user cache, and reused by the next open
    copies = [p for p in os.listdir(tmp_path / "usercache" / "tar") if p.endswith(".tar")]
    assert len(copies) == 1 and copies[0].startswith(f"img.tar.{kind}-")
    copy = str(tmp_path / "usercache" / "tar" / copies[0])
    stamp = os.stat(copy).st_mtime_ns
    assert db.TarArchive(packed).path == copy and os.stat(copy).st_mtime_ns == stamp
    # a changed shard gets a fresh copy, and the old one goes
    compressed(write_tar(tmp_path / "other.tar", [("k.txt", b"new")]), kind, packed)
    os.utime(packed, ns=(stamp + 10**9, stamp + 10**9))
    assert db.TarArchive(packed).read("k.txt") == b"new"
    assert not os.path.exists(copy)


def test_cut_off_compressed_shard_keeps_the_samples_before_the_cut(tmp_path):
    plain, _ = jpeg_tar(tmp_path, count=10)
    packed = compressed(plain, "gz", tmp_path / "img.tgz")
    data = open(packed, "rb").read()
    cut = str(tmp_path / "cut.tgz")
    with open(cut, "wb") as fh:
        fh.write(data[:len(data) * 2 // 3])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = [{k: v for k, v in s.items() if k == "__key__" or not k.startswith("__")}
                  for s in wds.WebDataset(cut, shardshuffle=False,
                                          handler=wds.warn_and_continue)]
    cache = tmp_path / "cache"
    shard = db.TarShard(cut, cache_dir=str(cache))
    ours = shard.read(range(len(shard)))
    assert 3 <= len(ours) < 10
    assert ours == theirs[:len(ours)]  # webdataset may add a partial last sample
    assert "cut.tgz" in str(shard.damage) and "cut off" in str(shard.damage)
    assert not [p for p in os.listdir(cache) if p.endswith(".tar")]  # never cached
    with pytest.raises(db.CorruptDataError, match="cut off"):
        db.TarArchive(cut, cache_dir=str(cache))
    ds = db.ShardedDataset(db.tar_shards([cut], cache_dir=str(cache)), 4, rank=0,
                           world_size=1, shuffle=False, on_error="skip",
                           transform=lambda s: s["__key__"])
    assert [k for b in ds for k in b["data"]] == [s["__key__"] for s in ours]
    assert "cut.tgz" in ds.skipped[0][1]


def test_damaged_or_unsupported_compressed_shards(tmp_path):
    plain = write_tar(tmp_path / "a.tar", [(f"{i}.txt", os.urandom(3000)) for i in range(20)])
    packed = compressed(plain, "gz", tmp_path / "a.tgz")
    data = bytearray(open(packed, "rb").read())
    data[len(data) // 2] ^= 0xFF  # inside the deflate stream
    (tmp_path / "bad.tgz").write_bytes(bytes(data))
    cache = str(tmp_path / "cache")
    with pytest.raises(db.CorruptDataError, match="bad.tgz.*damaged"):
        db.TarArchive(str(tmp_path / "bad.tgz"), cache_dir=cache, keep_intact_prefix=True)
    (tmp_path / "z.tar.zst").write_bytes(b"\x28\xb5\x2f\xfd" + bytes(600))
    with pytest.raises(db.UnsupportedError, match="zstd"):
        db.TarArchive(str(tmp_path / "z.tar.zst"), cache_dir=cache)
    # libdbr alone says why it cannot read a compressed tar in place
    from dareblopy._ffi import ffi, lib
    raw = ffi.new("dbr_tar **")
    assert lib.dbr_tar_open(packed.encode(), ffi.NULL, raw) == lib.DBR_E_UNSUPPORTED
    assert b"gzip-compressed" in ffi.string(lib.dbr_last_error())


def _open_and_count(args):
    path, cache = args
    archive = db.TarArchive(path, cache_dir=cache)
    # the copy's inode: a second decompression would have renamed a new one in
    return (archive.path, os.stat(archive.path).st_ino, len(archive),
            archive.read(archive.namelist()[-1]))


def test_processes_opening_one_compressed_shard_decompress_it_once(tmp_path):
    plain = write_tar(tmp_path / "a.tar", [(f"{i}.bin", os.urandom(200_000)) for i in range(40)])
    packed = compressed(plain, "gz", tmp_path / "a.tgz")
    cache = str(tmp_path / "cache")
    import multiprocessing
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        got = pool.map(_open_and_count, [(packed, cache)] * 4)
    with tarfile.open(plain) as t:  # the last member's bytes, through tarfile
        last = t.extractfile(t.getmembers()[-1]).read()
    assert len({g[:2] for g in got}) == 1 and all(g[2:] == (40, last) for g in got)
    names = os.listdir(cache)
    assert [n for n in names if n.endswith(".tar")] == [os.path.basename(got[0][0])]
    assert not [n for n in names if n.endswith(".part")]  # no half-made copy left
