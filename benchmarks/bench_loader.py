"""Feeding a training loop: one epoch of small files, in batches of 64.

2000 files of ~16 KB (random bytes) in 20 class directories, page cache
warm.  Contenders read every file once per epoch and hand over batches:

- a Python loop of open().read() (the baseline, one thread);
- torch's DataLoader(num_workers=2) over a map-style Dataset whose
  __getitem__ does open().read() (the usual PyTorch recipe), if torch is
  installed;
- DareBlopy 0.0.5's data_loader with a collator that calls its
  open_as_bytes (Python 3.8 helper process);
- dareblopy.data_loader with the same yielder, whose collator reads the
  batch with dareblopy.read_files (three C calls per batch);
- dareblopy.ShardedDataset (shuffled, exact split, 2 threads);
- dareblopy.torch.DataLoader(num_workers=2) over the same dataset.

The physical limit shown is open().readinto() into one preallocated buffer.
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (DATA_DIR, interleaved_medians, print_table, readinto_limit,  # noqa: E402
                     run_legacy, save_results)

import dareblopy as db  # noqa: E402

COUNT, CLASSES, BATCH = 2000, 20, 64


def make_files():
    root = os.path.join(DATA_DIR, "loader_2000x16k")
    names = [f"c{i % CLASSES:02d}/{i:05d}.bin" for i in range(COUNT)]
    if not all(os.path.exists(os.path.join(root, n)) for n in names):
        rng = random.Random(99)
        for n in names:
            os.makedirs(os.path.join(root, os.path.dirname(n)), exist_ok=True)
            with open(os.path.join(root, n), "wb") as fh:
                fh.write(rng.randbytes(rng.randint(12_000, 20_000)))
    return root, [os.path.join(root, n) for n in sorted(names)]


def batches_of(paths):
    return [paths[i:i + BATCH] for i in range(0, len(paths), BATCH)]


def main():
    root, paths = make_files()
    shards = db.directory_shards(root, files_per_shard=256)

    def python_loop():
        for batch in batches_of(paths):
            out = []
            for p in batch:
                with open(p, "rb") as fh:
                    out.append(fh.read())

    def read_batch(batch):
        return db.read_files(batch)  # one batch of C calls, the GIL released once per step

    def dbr_data_loader():
        for _ in db.data_loader(iter(batches_of(paths)), read_batch, worker_count=2,
                                queue_size=8):
            pass

    def dbr_sharded():
        for _ in db.ShardedDataset(shards, BATCH, seed=1, loader_threads=2, queue_size=8):
            pass

    fns = {"python open().read() loop": python_loop,
           "dareblopy.data_loader (2 threads)": dbr_data_loader,
           "dareblopy.ShardedDataset (2 threads)": dbr_sharded}
    try:
        import torch.utils.data as tud
        from dareblopy.torch import DataLoader, ShardedIterableDataset
    except ImportError:
        tud = None
    if tud is not None:
        class Files(tud.Dataset):
            def __len__(self):
                return len(paths)

            def __getitem__(self, i):
                with open(paths[i], "rb") as fh:
                    return fh.read()

        def torch_loader():
            for _ in tud.DataLoader(Files(), batch_size=BATCH, shuffle=True, num_workers=2,
                                    collate_fn=list):
                pass

        def dbr_torch():
            ds = ShardedIterableDataset(shards, BATCH, seed=1)
            for _ in DataLoader(ds, num_workers=2):
                pass
        fns["torch DataLoader(num_workers=2) + open()"] = torch_loader
        fns["dareblopy.torch.DataLoader(num_workers=2)"] = dbr_torch
    fns["open().readinto(prealloc) [limit]"] = readinto_limit(paths)

    t = interleaved_medians(fns, repeats=7, warmup=1)
    legacy = run_legacy(f"""
import dareblopy as db
paths = {paths!r}
B = {BATCH}
def run():
    for _ in db.data_loader(iter([paths[i:i + B] for i in range(0, len(paths), B)]),
                            lambda b: [db.open_as_bytes(p) for p in b], worker_count=2,
                            queue_size=8):
        pass
print(json.dumps({{"seconds": median_time(run, repeats=7, warmup=1)}}))
""")
    rows = [{"name": k, "seconds": v, "items": COUNT} for k, v in t.items()]
    rows.append({"name": "DareBlopy 0.0.5 data_loader (py3.8)",
                 "seconds": legacy["seconds"] if legacy else None, "items": COUNT,
                 "note": "" if legacy else "not installed: make peers"})
    size = sum(os.path.getsize(p) for p in paths)
    print_table(f"one epoch: {COUNT} files, {size / COUNT / 1024:.1f} KiB average, "
                f"batches of {BATCH}", rows, baseline="python open().read() loop",
                unit_label="per sample")
    save_results("loader", {"seconds_per_epoch": t,
                            "legacy_seconds_per_epoch": legacy["seconds"] if legacy else None,
                            "samples": COUNT})


if __name__ == "__main__":
    main()
