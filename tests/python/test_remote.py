"""Shards at URLs through a node-local cache, against real servers started
here on 127.0.0.1: moto's S3 server and a Range-honouring HTTP server (see
remote_servers.py).  Nothing in the remote path is mocked."""
import hashlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

import dareblopy as db
from dareblopy._remote import RemoteObject

sys.path.insert(0, os.path.dirname(__file__))
from remote_servers import RangeHTTPServer, S3Server  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUCKET = "shards"


def make_zip(shard: int, entries: int = 40, size: int = 2000, method=zipfile.ZIP_STORED):
    """A zip archive and {sample name: bytes} as ZipShard names them."""
    buf = io.BytesIO()
    samples = {}
    with zipfile.ZipFile(buf, "w", method) as z:
        for j in range(entries):
            data = hashlib.sha256(f"{shard}/{j}".encode()).digest() * (size // 32 + j % 3)
            z.writestr(f"s{shard}/e{j:03d}.bin", data)
            samples[f"e{j:03d}.bin"] = data
    return buf.getvalue(), samples


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    server.client.create_bucket(Bucket=BUCKET)
    expected = {}
    for i in range(8):
        blob, samples = make_zip(i, entries=120, size=500)
        server.put(BUCKET, f"train-{i:05d}.zip", blob)
        expected.update({f"train-{i:05d}.zip/s{i}/{k}": v for k, v in samples.items()})
    server.expected = expected
    server.shard_size = max(server.client.head_object(Bucket=BUCKET, Key=f"train-{i:05d}.zip")
                            ["ContentLength"] for i in range(8))
    yield server
    server.stop()


@pytest.fixture
def http(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = RangeHTTPServer(str(root))
    server.root_path = root
    yield server
    server.stop()


class PeakSampler:
    """Samples the cache's usage in a thread, as often as it can."""

    def __init__(self, cache):
        self.cache, self.peak, self._stop = cache, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.cache.usage())
            time.sleep(0.001)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


# ---- URLs

@pytest.mark.parametrize("pattern", ["train-{00000..00011}.zip", "a{1..3}b{x,y}", "x{3..1}",
                                     "s3://b/{a,b,c}-{08..10}", "plain", "{}", "x{a}y{1..2}",
                                     "a{001..10}", "a{00..-2}", "t-{0000..0020..5}.tar",
                                     "a{10..1..-3}", "a{x,{y,z}}b", "s{a..e}.zip", "a{b{1..2}}",
                                     "a{b{1..2}", "a{,b}c", "{a,b}{c}d"])
def test_brace_expansion_matches_bash(pattern):
    out = subprocess.run(["bash", "-c", f"printf '%s\\n' {pattern}"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert db.expand_braces(pattern) == out


# ---- an epoch from S3 through a bounded cache

def test_epoch_over_s3_through_a_three_shard_cache(s3, tmp_path):
    limit = 3 * s3.shard_size
    cache = db.ShardCache(str(tmp_path / "cache"), limit)
    shards = db.zip_shards(f"s3://{BUCKET}/train-{{00000..00007}}.zip", cache=cache,
                           storage_options=s3.storage_options())
    assert len(shards) == 8
    # A window smaller than a shard: a batch reads at most two shards.
    ds = db.ShardedDataset(shards, batch_size=8, seed=3, shuffle_buffer=48, loader_threads=2,
                           queue_size=2)
    sampler = PeakSampler(cache)
    try:
        for epoch in range(2):
            seen = []
            for batch in ds:
                for key, data in zip(batch["keys"], batch["data"]):
                    assert data == s3.expected[key], key
                seen.extend(batch["keys"])
            assert sorted(seen) == sorted(k for k in s3.expected if k.startswith("train-")), \
                f"epoch {epoch}"
    finally:
        peak = sampler.stop()
        ds.close()
        cache.stop()
    assert 0 < peak <= limit
    assert cache.usage() <= limit
    assert not [n for n in os.listdir(cache.directory) if n.endswith(".part")]


def test_schedule_covers_every_batch_of_every_rank(s3):
    """The shards a batch reads lie inside the spans the schedule gives
    (else the cache would evict a shard still needed)."""
    shards = [db.ZipShard(f"train-{i}.zip") for i in range(5)]
    for s, n in zip(shards, [30, 7, 50, 1, 22]):
        s._names = [f"e{j}" for j in range(n)]
    for world, shuffle, window, uneven in [(1, True, 16, "pad"), (3, True, 40, "pad"),
                                           (4, False, 1, "drop"), (7, True, 200, "pad")]:
        for rank in range(world):
            ds = db.ShardedDataset(shards, 8, shuffle=shuffle, shuffle_buffer=window, seed=5,
                                   rank=rank, world_size=world, uneven=uneven)
            spans = {sid: (fb, lb) for sid, fb, lb in ds.shard_schedule(2)}
            for index, shard_ids, *_ in ds.batch_plan(2):
                for sid in set(shard_ids.tolist()):
                    fb, lb = spans[sid]
                    assert fb <= index <= lb, (world, rank, index, sid)


def test_prefetch_without_room_gives_way_and_demand_names_the_pins(s3, tmp_path):
    urls = [f"s3://{BUCKET}/train-0000{i}.zip" for i in range(2)]
    objs = [RemoteObject(u, s3.storage_options()) for u in urls]
    cache = db.ShardCache(str(tmp_path), s3.shard_size + 10, stall_timeout=5)
    path, pin = cache.acquire(objs[0])
    for _ in range(3):  # the lock file stays usable after each refusal
        assert cache.acquire(objs[1], demand=False) is None
    with pytest.raises(db.CacheLimitError) as err:  # only this process pins: no waiting
        cache.acquire(objs[1])
    assert urls[1] in str(err.value) and "train-00000.zip" in str(err.value)
    cache.release(pin)
    path, pin = cache.acquire(objs[1])  # the unpinned shard is evicted for it
    cache.release(pin)
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".shard")) == \
        [os.path.basename(path)]


def test_limit_smaller_than_a_shard_is_refused_naming_both_sizes(s3, tmp_path):
    cache = db.ShardCache(str(tmp_path), s3.shard_size - 1)
    with pytest.raises(ValueError) as err:
        db.zip_shards(f"s3://{BUCKET}/train-00000.zip", cache=cache,
                      storage_options=s3.storage_options())
    assert str(s3.shard_size - 1) in str(err.value) and str(s3.shard_size) in str(err.value)
    assert f"s3://{BUCKET}/train-00000.zip" in str(err.value)


def test_missing_bucket_and_missing_object_name_the_url(s3, tmp_path):
    cache = db.ShardCache(str(tmp_path), 10 * s3.shard_size)
    for url in ["s3://no-such-bucket/train-00000.zip", f"s3://{BUCKET}/missing.zip"]:
        with pytest.raises(db.RemoteNotFoundError) as err:
            db.zip_shards(url, cache=cache, storage_options=s3.storage_options())
        assert url in str(err.value)


def test_wrong_credentials_are_refused_not_retried(s3):
    s3.require_auth(True)
    try:
        t0 = time.monotonic()
        with pytest.raises(db.RemoteAccessError) as err:
            db.zip_shards(f"s3://{BUCKET}/train-00001.zip",
                          storage_options=s3.storage_options(key="wrong", secret="wrong"))
        assert f"s3://{BUCKET}/train-00001.zip" in str(err.value)
        assert time.monotonic() - t0 < 10
    finally:
        s3.require_auth(False)


def test_a_shard_changed_on_the_server_is_detected(s3, tmp_path):
    blob, _ = make_zip(50)
    s3.put(BUCKET, "changing.zip", blob)
    url = f"s3://{BUCKET}/changing.zip"
    cache = db.ShardCache(str(tmp_path), 10 * len(blob))
    obj = RemoteObject(url, s3.storage_options())
    path, pin = cache.acquire(obj)
    cache.release(pin)
    assert open(path, "rb").read() == blob
    # Same size, new content: a new ETag.  During this run: an error, not a mix.
    blob2 = bytes(b ^ 0xFF for b in blob[:100]) + blob[100:]
    s3.put(BUCKET, "changing.zip", blob2)
    with pytest.raises(db.ShardChangedError):
        RemoteObject.stat(obj)
    # A later run (a fresh identity) finds the cached copy outdated and replaces it.
    path, pin = cache.acquire(RemoteObject(url, s3.storage_options()))
    cache.release(pin)
    assert open(path, "rb").read() == blob2


def test_hash_from_the_manifest_is_checked(s3, tmp_path):
    blob, _ = make_zip(60)
    s3.put(BUCKET, "hashed.zip", blob)
    good = hashlib.sha256(blob).hexdigest()
    manifest = tmp_path / "m.tsv"
    cache = db.ShardCache(str(tmp_path / "c"), 10 * len(blob))
    url = f"s3://{BUCKET}/hashed.zip"
    for digest, ok in [("0" * 64, False), (good, True)]:
        manifest.write_text(f"# sha256\thashed.zip\t{len(blob)}\t{digest}\n")
        (shard,) = db.zip_shards(url, cache=cache, storage_options=s3.storage_options(),
                                 manifest=str(manifest))
        if ok:
            assert len(shard.read([0])[0]) > 0
        else:
            (err,) = shard.read([0])
            assert isinstance(err, db.RemoteError) and "sha256" in str(err) and url in str(err)
            assert not [n for n in os.listdir(cache.directory) if n.endswith((".shard", ".part"))]
        shard.close()


# ---- random access without the whole shard

def test_one_entry_of_a_remote_zip_fetches_only_its_bytes(http):
    blob, samples = make_zip(7, entries=200, size=5000)
    (http.root_path / "big.zip").write_bytes(blob)
    archive = db.RemoteArchive(RemoteObject(f"{http.url}/big.zip"))
    ref = zipfile.ZipFile(io.BytesIO(blob))
    assert archive.namelist() == ref.namelist()
    listing = sum(n for _, _, n in http.log)
    assert listing < len(blob) // 4
    assert archive.read("s7/e123.bin") == samples["e123.bin"]
    info = ref.getinfo("s7/e123.bin")
    entry_bytes = sum(n for _, _, n in http.log) - listing
    assert entry_bytes < info.compress_size + 200  # the local header and data only
    assert archive.read_many(["s7/e000.bin", "s7/e199.bin"]) == [samples["e000.bin"],
                                                                  samples["e199.bin"]]
    archive.close()


def test_zip_shards_without_a_cache_read_by_ranges(http):
    blob, samples = make_zip(3, entries=100, size=5000)
    (http.root_path / "r.zip").write_bytes(blob)
    (shard,) = db.zip_shards(f"{http.url}/r.zip")
    got = db.IndexedSamples([shard])[5]
    assert got[0] == "r.zip/s3/e005.bin" and got[1] == samples["e005.bin"]
    assert http.bytes_sent("/r.zip") < len(blob)


# ---- faults

def test_truncated_responses_are_retried(http, tmp_path):
    blob = os.urandom(300_000)
    (http.root_path / "t.bin").write_bytes(blob)
    obj = RemoteObject(f"{http.url}/t.bin", retries=3, backoff=0.01)
    obj.stat()
    http.truncate = 2
    assert obj.read_range(0, len(blob)) == blob
    http.truncate = 10
    with pytest.raises(db.RemoteError) as err:
        obj.read_range(0, len(blob))
    assert f"{http.url}/t.bin" in str(err.value) and "4 attempts" in str(err.value)


def test_server_dying_mid_transfer_gives_an_error_naming_the_url(http, tmp_path):
    blob = os.urandom(3_000_000)
    (http.root_path / "d.zip").write_bytes(blob)
    cache = db.ShardCache(str(tmp_path / "c"), 10 << 20, chunk_bytes=1 << 20)
    obj = RemoteObject(f"{http.url}/d.zip", retries=2, backoff=0.01)
    obj.stat()
    http.die_after = 1_500_000
    t0 = time.monotonic()
    with pytest.raises(db.RemoteError) as err:
        cache.acquire(obj)
    assert f"{http.url}/d.zip" in str(err.value)
    assert time.monotonic() - t0 < 30
    assert not [n for n in os.listdir(cache.directory) if n.endswith((".shard", ".part"))]


def test_wrong_http_credentials(http):
    (http.root_path / "a.bin").write_bytes(b"x")
    http.token = "secret"
    with pytest.raises(db.RemoteAccessError):
        RemoteObject(f"{http.url}/a.bin").stat()
    good = RemoteObject(f"{http.url}/a.bin",
                        {"headers": {"Authorization": "Bearer secret"}})
    assert good.read_range(0, 1) == b"x"


def test_full_cache_disk(http, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        blob = os.urandom(2_000_000)
        (http.root_path / "f.bin").write_bytes(blob)
        cache = db.ShardCache(str(mnt), 10 << 20)
        with pytest.raises(db.CacheDiskFullError) as err:
            cache.acquire(RemoteObject(f"{http.url}/f.bin"))
        assert f"{http.url}/f.bin" in str(err.value)
        assert not [n for n in os.listdir(mnt) if n.endswith((".shard", ".part"))]
    finally:
        subprocess.run(["umount", str(mnt)])


def test_unreachable_shard_in_skip_mode_is_counted_and_named(s3, tmp_path):
    blob, _ = make_zip(70, entries=10)
    for name in ("keep.zip", "gone.zip"):
        s3.put(BUCKET, name, blob)
    cache = db.ShardCache(str(tmp_path), 10 * len(blob))
    shards = db.zip_shards(f"s3://{BUCKET}/{{keep,gone}}.zip", cache=cache,
                           storage_options=s3.storage_options())
    ds = db.ShardedDataset(shards, batch_size=4, on_error="skip")
    s3.client.delete_object(Bucket=BUCKET, Key="gone.zip")  # lost after the listing
    keys = [k for batch in ds for k in batch["keys"]]
    cache.stop()
    assert sorted(keys) == sorted(f"keep.zip/s70/e{j:03d}.bin" for j in range(10))
    assert len(ds.skipped) == 10
    assert all(name.startswith("gone.zip/") and f"s3://{BUCKET}/gone.zip" in msg
               for name, msg in ds.skipped)


# ---- several processes, and a process killed mid-download

def _spawn(code: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _fetch_code(cache_dir, url, limit):
    return f"""
        import time, dareblopy as db
        from dareblopy._remote import RemoteObject
        cache = db.ShardCache({cache_dir!r}, {limit})
        path, pin = cache.acquire(RemoteObject({url!r}))
        print(path, time.monotonic())
    """


def _wait_for(pred, timeout=30):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_one_download_per_node_the_second_process_waits(http, tmp_path):
    blob = os.urandom(1_000_000)
    (http.root_path / "s.bin").write_bytes(blob)
    http.rate = 1_000_000  # about a second
    cache_dir = str(tmp_path / "c")
    url = f"{http.url}/s.bin"
    first = _spawn(_fetch_code(cache_dir, url, 4 << 20))
    _wait_for(lambda: os.path.isdir(cache_dir) and any(
        n.endswith(".part") for n in os.listdir(cache_dir)))
    second = _spawn(_fetch_code(cache_dir, url, 4 << 20))
    outs = [p.communicate(timeout=60) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    paths = {o.split()[0] for o, _ in outs}
    assert len(paths) == 1 and open(paths.pop(), "rb").read() == blob
    assert http.bytes_sent("/s.bin") == len(blob)  # downloaded once


def test_kill_mid_download_leaves_a_cache_the_next_run_uses(http, tmp_path):
    blob = os.urandom(2_000_000)
    (http.root_path / "k.bin").write_bytes(blob)
    http.rate = 400_000
    cache_dir = str(tmp_path / "c")
    url = f"{http.url}/k.bin"
    victim = _spawn(_fetch_code(cache_dir, url, 4 << 20))
    _wait_for(lambda: http.sent > 300_000)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    names = os.listdir(cache_dir)
    assert not [n for n in names if n.endswith(".shard")]  # nothing taken for complete
    assert [n for n in names if n.endswith(".part")]
    http.rate = None
    cache = db.ShardCache(cache_dir, 4 << 20)
    path, pin = cache.acquire(RemoteObject(url))
    cache.release(pin)
    assert open(path, "rb").read() == blob
    assert not [n for n in os.listdir(cache_dir) if n.endswith(".part")]
    assert cache.usage() == len(blob)


# ---- the command line on URLs

def _cli(*args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "dareblopy", *map(str, args)],
                          capture_output=True, env=env)


def _s3_env(s3):
    return {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def test_cli_ls_cat_verify_on_urls(s3, http):
    url = f"s3://{BUCKET}/train-00002.zip"
    blob = s3.client.get_object(Bucket=BUCKET, Key="train-00002.zip")["Body"].read()
    ref = zipfile.ZipFile(io.BytesIO(blob))
    out = _cli("ls", url, env_extra=_s3_env(s3))
    assert out.returncode == 0, out.stderr
    assert [line.split()[-1] for line in out.stdout.decode().splitlines()] == ref.namelist()
    out = _cli("cat", url, "s2/e007.bin", env_extra=_s3_env(s3))
    assert out.returncode == 0 and out.stdout == ref.read("s2/e007.bin")
    out = _cli("verify", url, env_extra=_s3_env(s3))
    assert out.returncode == 0 and b"120 of 120 entries OK" in out.stdout
    # A damaged entry at an HTTP URL is reported like a local one.
    bad = bytearray(blob)
    info = ref.getinfo("s2/e003.bin")
    bad[info.header_offset + 30 + len(info.filename) + 5] ^= 0xFF
    (http.root_path / "bad.zip").write_bytes(bytes(bad))
    out = _cli("verify", f"{http.url}/bad.zip")
    assert out.returncode == 1 and b"BAD  s2/e003.bin" in out.stdout
    out = _cli("cat", f"s3://{BUCKET}/nothing.zip", "x", env_extra=_s3_env(s3))
    assert out.returncode == 1 and f"s3://{BUCKET}/nothing.zip".encode() in out.stderr


def test_cli_pack_uploads_to_a_url_and_the_manifest_hashes_are_checked(s3, tmp_path):
    src = tmp_path / "src"
    for c in range(2):
        (src / f"class{c}").mkdir(parents=True)
        for j in range(5):
            (src / f"class{c}" / f"{j}.bin").write_bytes(os.urandom(3000 + j))
    out = _cli("pack", src, f"s3://{BUCKET}/packed/train.zip", "--shards", "2",
               "--labels", "imagefolder", env_extra=_s3_env(s3))
    assert out.returncode == 0, out.stderr
    keys = sorted(o["Key"] for o in s3.client.list_objects_v2(
        Bucket=BUCKET, Prefix="packed/")["Contents"])
    assert keys == ["packed/train-00000-of-00002.zip", "packed/train-00001-of-00002.zip",
                    "packed/train.zip.manifest.tsv"]
    manifest = f"s3://{BUCKET}/packed/train.zip.manifest.tsv"
    hashes = db.read_manifest_hashes(manifest, s3.storage_options())
    for name in ("train-00000-of-00002.zip", "train-00001-of-00002.zip"):
        blob = s3.client.get_object(Bucket=BUCKET, Key=f"packed/{name}")["Body"].read()
        assert hashes[name] == hashlib.sha256(blob).hexdigest()
    cache = db.ShardCache(str(tmp_path / "cache"), 1 << 20)
    shards = db.zip_shards(f"s3://{BUCKET}/packed/train-{{00000..00001}}-of-00002.zip",
                           cache=cache, storage_options=s3.storage_options(), manifest=manifest)
    got = {k: v for b in db.ShardedDataset(shards, 4) for k, v in zip(b["keys"], b["data"])}
    want = {f"train-0000{i // 5}-of-00002.zip/class{i // 5}/{i % 5}.bin":
            (src / f"class{i // 5}" / f"{i % 5}.bin").read_bytes() for i in range(10)}
    assert got == want
    cache.stop()


def test_torch_workers_share_one_download_per_shard(http, tmp_path):
    """DataLoader worker processes of one rank read the same shards: the
    node's cache downloads each once (the locks are between processes)."""
    dbt = pytest.importorskip("dareblopy.torch")
    expected = {}
    for i in range(4):
        blob, samples = make_zip(100 + i, entries=60, size=4000)
        (http.root_path / f"w{i}.zip").write_bytes(blob)
        expected.update({f"w{i}.zip/s{100 + i}/{k}": v for k, v in samples.items()})
    size = len(blob)
    cache = db.ShardCache(str(tmp_path / "cache"), 4 * size)
    shards = db.zip_shards(f"{http.url}/w{{0..3}}.zip", cache=cache)
    ds = dbt.ShardedIterableDataset(shards, 10, seed=2, shuffle_buffer=30)
    listing = {}  # the central directories, read once here to count the samples
    for p, _, n in http.log:
        listing[p] = listing.get(p, 0) + n
    seen = {}
    for batch in dbt.DataLoader(ds, num_workers=2):
        for key, data in zip(batch["keys"], batch["data"]):
            assert key not in seen
            seen[key] = bytes(data)
    assert seen == expected
    for i in range(4):
        path = f"/w{i}.zip"
        assert http.bytes_sent(path) - listing[path] == size, path  # one download


def test_tar_and_tfrecord_shards_at_urls_through_the_cache(http, tmp_path):
    import tarfile
    want_tar, want_tf = {}, {}
    for i in range(3):
        with tarfile.open(http.root_path / f"t{i}.tar", "w") as tar:
            for j in range(20):
                data = os.urandom(2000 + j)
                info = tarfile.TarInfo(f"s{i}_{j:03d}.bin")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                want_tar[f"t{i}.tar/s{i}_{j:03d}"] = data
        with db.TFRecordWriter(str(http.root_path / f"r{i}.tfrecord")) as w:
            for j in range(20):
                data = os.urandom(1500 + j)
                w.write(db.serialize_example({"path": f"r{i}/{j}", "data": data}))
                want_tf[f"r{i}/{j}"] = data
    tar_size = max(os.path.getsize(http.root_path / f"t{i}.tar") for i in range(3))
    cache = db.ShardCache(str(tmp_path / "c"), 2 * tar_size)  # 2 of 3 shards
    shards = db.tar_shards(f"{http.url}/t{{0..2}}.tar", cache=cache)
    got = {}
    for batch in db.ShardedDataset(shards, 8, seed=1, shuffle_buffer=10):
        for key, sample in zip(batch["keys"], batch["data"]):
            got[key] = sample["bin"]
    assert got == want_tar
    assert cache.usage() <= cache.limit_bytes
    cache.stop()
    cache = db.ShardCache(str(tmp_path / "c2"), 1 << 20)
    shards = db.tfrecord_shards(f"{http.url}/r{{0..2}}.tfrecord", cache=cache)
    got = {k: d for b in db.ShardedDataset(shards, 8) for k, d in zip(b["keys"], b["data"])}
    assert got == want_tf
    cache.stop()
    with pytest.raises(ValueError, match="needs a cache"):
        db.ShardedDataset(db.tfrecord_shards(f"{http.url}/r0.tfrecord"), 4)


# ---- hostile archives and servers (what real object stores and CDNs do)

def _zip_with(entries, comment=b""):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries:
            z.writestr(name, data)
        z.comment = comment
    return buf.getvalue()


@pytest.mark.parametrize("entries", [5, 65540], ids=["zip", "zip64"])
def test_zip_with_the_longest_comment_reads_by_ranges(http, entries):
    """A comment of up to 65535 bytes follows the end record (and, in
    zip64, the locator and zip64 record precede it): zipfile reads these."""
    blob = _zip_with([(f"{j}", os.urandom(j % 7)) for j in range(entries)], b"c" * 65535)
    (http.root_path / "long-comment.zip").write_bytes(blob)
    ref = zipfile.ZipFile(io.BytesIO(blob))
    names = ref.namelist()[:3] + ref.namelist()[-3:]
    with db.RemoteArchive(RemoteObject(f"{http.url}/long-comment.zip")) as archive:
        assert len(archive.namelist()) == entries
        assert archive.read_many(names) == [ref.read(n) for n in names]


def test_ranges_answered_in_parts_are_read_whole(http, tmp_path):
    """A valid 206 may carry less than asked (its Content-Range says so,
    as some CDNs cap a range): the rest is asked for, never lost or
    retried as an error.  (fsspec's cat_file returns the short part.)"""
    blob, samples = make_zip(7, entries=30, size=3000)
    (http.root_path / "parts.zip").write_bytes(blob)
    http.max_range = 5000
    url = f"{http.url}/parts.zip"
    ref = zipfile.ZipFile(io.BytesIO(blob))
    with db.RemoteArchive(RemoteObject(url, retries=0)) as archive:
        assert archive.read_many(ref.namelist()) == [ref.read(n) for n in ref.namelist()]
    cache = db.ShardCache(str(tmp_path / "c"), 1 << 20)
    path, pin = cache.acquire(RemoteObject(url, retries=0))
    cache.release(pin)
    assert open(path, "rb").read() == blob


def test_a_server_ignoring_range(http, tmp_path):
    """A 200 with the whole body instead of a range: a download through the
    cache uses that body; range reads stop at once with a clear error
    (retrying cannot help, and every entry would cost the whole object)."""
    blob, _ = make_zip(8, entries=30, size=3000)
    (http.root_path / "norange.zip").write_bytes(blob)
    http.ignore_range = True
    url = f"{http.url}/norange.zip"
    cache = db.ShardCache(str(tmp_path / "c"), 1 << 20, chunk_bytes=10_000)
    path, pin = cache.acquire(RemoteObject(url, retries=0))
    cache.release(pin)
    assert open(path, "rb").read() == blob
    assert http.bytes_sent("/norange.zip") == len(blob)  # one whole body, not one per chunk
    gets = len(http.log)
    with pytest.raises(db.RemoteError, match=r"norange\.zip: .*ignores Range.*ShardCache"):
        db.RemoteArchive(RemoteObject(url))
    assert len(http.log) == gets + 1  # not retried


def _compressed_tar(path, shard: int, members: int = 20):
    """A gzip-compressed tar of compressible members; {sample key: bytes}."""
    import tarfile
    want = {}
    with tarfile.open(path, "w:gz") as tar:
        for j in range(members):
            data = hashlib.sha256(f"{shard}/{j}".encode()).digest() * 400
            info = tarfile.TarInfo(f"s{shard}_{j:03d}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            want[f"{os.path.basename(path)}/s{shard}_{j:03d}"] = data
    return want


def _bytes_on_disk(directory):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(directory)
               for f in files)


def test_compressed_tar_shards_stay_inside_the_cache_limit(http, tmp_path):
    """A .tgz at a URL is decompressed once beside its download: those
    bytes count against the limit and go when the shard is evicted, so
    the cache directory never holds more than the limit (plus locks and
    indexes) however many shards an epoch reads."""
    want = {}
    for i in range(6):
        want.update(_compressed_tar(http.root_path / f"c{i}.tgz", i))
    plain = 20 * (12800 + 512) + 1024  # one shard decompressed, about 267 KB
    cache = db.ShardCache(str(tmp_path / "c"), 3 * plain)  # 2 shards and their copies
    shards = db.tar_shards(f"{http.url}/c{{0..5}}.tgz", cache=cache)
    sampler = PeakSampler(cache)
    got = {}
    try:
        for epoch in range(2):
            for batch in db.ShardedDataset(shards, 8, seed=epoch, shuffle_buffer=10):
                for key, sample in zip(batch["keys"], batch["data"]):
                    got[key] = sample["bin"]
            assert got == want
    finally:
        peak = sampler.stop()
        cache.stop()
    assert plain < peak <= cache.limit_bytes  # the decompressed copies are counted
    small = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(cache.directory)
                for f in files if f.endswith((".lock", ".dbridx")))
    assert _bytes_on_disk(cache.directory) - small <= cache.limit_bytes
    assert not [n for n in os.listdir(cache.directory) if "part" in n]


def test_a_compressed_tar_cut_short_on_the_server(http, tmp_path):
    """A .tgz cut off on the server keeps the samples before the cut, as
    webdataset does; the rest costs one named reason; the kept prefix lives
    inside the cache's limit and is reused by the next run."""
    want = _compressed_tar(http.root_path / "whole.tgz", 9)
    blob = (http.root_path / "whole.tgz").read_bytes()
    (http.root_path / "cut.tgz").write_bytes(blob[:len(blob) // 2])
    want = {k.replace("whole.tgz", "cut.tgz"): v for k, v in want.items()}
    cache_dir = str(tmp_path / "c")
    for run in range(2):
        cache = db.ShardCache(cache_dir, 1 << 20)
        ds = db.ShardedDataset(db.tar_shards(f"{http.url}/cut.tgz", cache=cache), 4,
                               on_error="skip")
        got = {k: s["bin"] for b in ds for k, s in zip(b["keys"], b["data"])}
        assert got and all(want[k] == v for k, v in got.items()) and len(got) < len(want)
        assert len(ds.skipped) == 1 and "cut.tgz" in ds.skipped[0][0], ds.skipped
        assert "gzip stream is cut off" in ds.skipped[0][1]
        assert 300_000 > cache.usage() > len(got) * 12800  # the prefix is counted
        cache.stop()
    assert http.bytes_sent("/cut.tgz") == len(blob) // 2  # downloaded once


def test_a_zip_replaced_between_listing_and_reading_by_ranges(http):
    """Range reads of a zip whose object was replaced after the listing (or
    after the archive opened) raise ShardChangedError, never the new
    version's entries under the old version's names."""
    old = _zip_with([(f"e{j}.bin", bytes([j]) * 3000) for j in range(10)])
    new = _zip_with([("inserted.bin", b"x" * 10)] +
                    [(f"e{j}.bin", bytes([100 + j]) * 3000) for j in range(10)])
    path = http.root_path / "moving.zip"
    path.write_bytes(old)
    url = f"{http.url}/moving.zip"
    shards = db.zip_shards(url)  # lists the old version
    assert len(shards[0]) == 10
    time.sleep(0.01)
    path.write_bytes(new)
    with pytest.raises(db.ShardChangedError, match="moving.zip"):
        for batch in db.ShardedDataset(shards, 4, shuffle=False):
            assert all(d[0] < 100 for d in batch["data"])  # never the new bytes
    path.write_bytes(old)
    archive = db.RemoteArchive(RemoteObject(url))
    time.sleep(0.01)
    path.write_bytes(_zip_with([(f"e{j}.bin", bytes([50 + j]) * 3000) for j in range(10)]))
    with pytest.raises(db.ShardChangedError, match="moving.zip"):
        archive.read_many(["e1.bin", "e2.bin"])


@pytest.fixture
def silent_server():
    """Accepts connections and never answers (a hung proxy or server)."""
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held = []

    def accept():
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize("scheme", ["http", "s3"])
def test_a_server_that_never_answers_fails_within_the_timeout(silent_server, scheme):
    """Every network wait is bounded: a silent server costs `timeout`
    seconds per attempt (aiohttp alone would wait 5 minutes)."""
    if scheme == "http":
        obj = RemoteObject(f"http://{silent_server}/x.zip", retries=1, backoff=0.1, timeout=1)
    else:
        obj = RemoteObject("s3://bucket/x.zip", {
            "key": "k", "secret": "s", "skip_instance_cache": True,
            "client_kwargs": {"endpoint_url": f"http://{silent_server}",
                              "region_name": "us-east-1"}},
            retries=1, backoff=0.1, timeout=1)
    start = time.monotonic()
    with pytest.raises(db.RemoteError, match="x.zip: stat failed after 2 attempts"):
        obj.stat()
    assert time.monotonic() - start < 30


def test_a_slow_download_is_not_taken_for_a_stalled_one(http, tmp_path):
    """A process waiting for another's download gives up only when that
    download stops moving, not while one long range read is still arriving
    (a slow link, or a server answering retries slowly)."""
    blob = os.urandom(600_000)
    (http.root_path / "slow.bin").write_bytes(blob)
    http.rate = 200_000  # one range read (the whole shard) takes about 3 s
    url = f"{http.url}/slow.bin"
    cache_dir = str(tmp_path / "c")
    first = _spawn(_fetch_code(cache_dir, url, 4 << 20))
    _wait_for(lambda: os.path.isdir(cache_dir) and any(
        n.endswith(".part") for n in os.listdir(cache_dir)))
    cache = db.ShardCache(cache_dir, 4 << 20, stall_timeout=1)
    path, pin = cache.acquire(RemoteObject(url))
    cache.release(pin)
    assert open(path, "rb").read() == blob
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert http.bytes_sent("/slow.bin") == len(blob)  # downloaded once


def test_a_signed_url_names_its_samples_by_the_file_alone(http, tmp_path):
    """A presigned URL's query (signature, expiry) is no part of the shard's
    file name: samples are named as for the bare URL, and the manifest's
    hash for that file name is checked."""
    blob, samples = make_zip(61, entries=3)
    (http.root_path / "signed.zip").write_bytes(blob)
    url = f"{http.url}/signed.zip?X-Amz-Signature=deadbeef&X-Amz-Expires=3600"
    want = sorted(f"signed.zip/s61/{k}" for k in samples)
    assert sorted(k for b in db.ShardedDataset(db.zip_shards(url), 4) for k in b["keys"]) == want
    manifest = tmp_path / "m.tsv"
    manifest.write_text(f"# sha256\tsigned.zip\t{len(blob)}\t{'0' * 64}\n")
    cache = db.ShardCache(str(tmp_path / "c"), 1 << 20)
    (shard,) = db.zip_shards(url, cache=cache, manifest=str(manifest))
    (err,) = shard.read([0])
    assert isinstance(err, db.RemoteError) and "sha256" in str(err)
    shard.close()
