"""Training from a bucket: epochs over zip shards of JPEGs served by a local
S3 server, through a ShardCache limited to 3 of the 8 shards, beside the
same shards on local disk.

The S3 server is moto's (``moto_server``, the S3 API that s3fs tests
against), started as its own process on 127.0.0.1.  Each epoch decodes
every photo (``image_batch_transform``: random crop to 160x160) in batches
of 32 with 2 threads, shuffled, as training would.  Contenders:

- local disk: ``zip_shards(paths)``;
- S3, cold first epoch: a fresh, empty cache; the epoch waits for its
  first shard, then downloads overlap decoding (prefetch in the epoch's
  order);
- S3, warm epochs: later epochs of the same run.  The cache holds 3 of 8
  shards, so these still download 5 or more shards each; the look-ahead
  into the next epoch's order lets the first ones arrive early.

The cache's usage is sampled every millisecond; its peak is printed beside
the limit.  Pass ``--quick`` for one round.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "python"))
from _common import DATA_DIR, print_table, save_results  # noqa: E402
from photos import photo_set  # noqa: E402

import dareblopy as db  # noqa: E402

SHARDS, PER_SHARD, BATCH, SIZE = 8, 240, 32, (320, 240)
BUCKET = "bench"


def make_shards():
    folder = os.path.join(DATA_DIR, "remote_zip_shards")
    paths = [os.path.join(folder, f"train-{i:05d}.zip") for i in range(SHARDS)]
    if not all(os.path.exists(p) for p in paths):
        os.makedirs(folder, exist_ok=True)
        photos = photo_set(SHARDS * PER_SHARD, SIZE, seed=12)
        for i, path in enumerate(paths):
            tmp = path + ".tmp"
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
                for j in range(PER_SHARD):
                    z.writestr(f"{i}/{j:05d}.jpg", photos[i * PER_SHARD + j])
            os.replace(tmp, path)
    return paths


def start_s3():
    from remote_servers import free_port
    port = free_port()
    server = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable),
                                                         "moto_server")
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    import boto3
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    for _ in range(200):
        try:
            client.list_buckets()
            break
        except Exception:
            time.sleep(0.05)
    options = {"key": "bench", "secret": "bench",
               "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    return proc, client, options


# Samples a folder's usage the way ShardCache.usage() counts it, every
# millisecond, in its own process (no GIL shared with the epoch); it runs
# through local and remote epochs alike, so its CPU cost hits both.
SAMPLER = """
import os, sys, time
from dareblopy._cache import ShardCache
folder, peak = sys.argv[1], 0
cache = ShardCache.__new__(ShardCache)
cache.directory = folder
while not os.path.exists(os.path.join(folder, "stop")):
    peak = max(peak, cache.usage())
    time.sleep(0.001)
print(peak)
"""


def start_sampler(folder):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    return subprocess.Popen([sys.executable, "-c", SAMPLER, folder], stdout=subprocess.PIPE,
                            text=True, env=env)


def stop_sampler(proc, folder) -> int:
    open(os.path.join(folder, "stop"), "w").close()
    return int(proc.communicate()[0])


def epoch_seconds(ds) -> float:
    start = time.perf_counter()
    n = 0
    for batch in ds:
        n += len(batch["keys"])
    assert n == SHARDS * PER_SHARD, n
    return time.perf_counter() - start


def dataset(shards):
    return db.ShardedDataset(shards, BATCH, seed=7, shuffle_buffer=PER_SHARD // 2,
                             loader_threads=2, queue_size=2,
                             batch_transform=db.image_batch_transform(size=160, threads=2))


def main():
    rounds, warm_epochs = (1, 2) if "--quick" in sys.argv else (3, 3)
    paths = make_shards()
    shard_size = max(os.path.getsize(p) for p in paths)
    limit = 3 * shard_size
    proc, client, options = start_s3()
    try:
        client.create_bucket(Bucket=BUCKET)
        for p in paths:
            client.upload_file(p, BUCKET, os.path.basename(p))
        pattern = f"s3://{BUCKET}/train-{{00000..{SHARDS - 1:05d}}}.zip"
        cold_pairs, warm_pairs, peaks, setup = [], [], [], []
        for _ in range(rounds):
            folder = tempfile.mkdtemp(prefix="dareblopy-bench-cache-")
            sampler = start_sampler(folder)
            try:
                local = dataset(db.zip_shards(paths))
                cache = db.ShardCache(folder, limit)
                t0 = time.perf_counter()
                remote = dataset(db.zip_shards(pattern, cache=cache, storage_options=options))
                setup.append(time.perf_counter() - t0)  # listing: range reads of the tails
                # Interleaved, local then remote, so machine noise hits both.
                cold_pairs.append((epoch_seconds(local), epoch_seconds(remote)))
                for _ in range(warm_epochs):
                    warm_pairs.append((epoch_seconds(local), epoch_seconds(remote)))
                cache.stop()
            finally:
                peaks.append(stop_sampler(sampler, folder))
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        proc.terminate()
        proc.wait()
    med = {"local": statistics.median([a for a, _ in cold_pairs + warm_pairs]),
           "cold": statistics.median([b for _, b in cold_pairs]),
           "warm": statistics.median([b for _, b in warm_pairs]),
           "setup": statistics.median(setup)}
    ratio = {"cold": statistics.median([a / b for a, b in cold_pairs]),
             "warm": statistics.median([a / b for a, b in warm_pairs])}
    peak = max(peaks)
    n = SHARDS * PER_SHARD
    rows = [{"name": "local disk: zip_shards(paths)", "seconds": med["local"], "items": n},
            {"name": "dareblopy S3, warm epochs (cache 3/8 shards)", "seconds": med["warm"],
             "items": n, "note": f"paired ratio {ratio['warm']:.2f}x"},
            {"name": "dareblopy S3, cold first epoch", "seconds": med["cold"], "items": n,
             "note": f"paired ratio {ratio['cold']:.2f}x; + {med['setup'] * 1e3:.0f} ms to "
                     f"list {SHARDS} shards"}]
    total = sum(os.path.getsize(p) for p in paths)
    print_table(f"epochs of {n} JPEGs ({total / 2**20:.1f} MiB in {SHARDS} zip shards) "
                f"decoded to 160x160, from moto's S3 server through a cache of 3 shards",
                rows, baseline="local disk: zip_shards(paths)", unit_label="per sample")
    print(f"cache limit {limit} bytes (3 shards); peak usage measured {peak} bytes "
          f"({peak / limit:.3f} of the limit)")
    print(f"paired ratios to local disk: warm {ratio['warm']:.2f}x, cold {ratio['cold']:.2f}x "
          f"(median of {len(warm_pairs)} and {len(cold_pairs)} local/remote epoch pairs)")
    save_results("bench_remote", {"local_s": med["local"], "warm_s": med["warm"],
                                  "cold_s": med["cold"], "setup_s": med["setup"],
                                  "limit_bytes": limit, "peak_bytes": peak,
                                  "warm_ratio": ratio["warm"], "cold_ratio": ratio["cold"]})


if __name__ == "__main__":
    main()
