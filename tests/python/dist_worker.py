"""One rank of the torch.distributed (gloo) test in test_torch.py.

Usage: dist_worker.py DATA_DIR OUT_JSON [WORKERS [STOP_AFTER [STATE_IN]]],
with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in the environment.
Reads one epoch through dareblopy.torch.DataLoader with WORKERS worker
processes (default 2), or only its first STOP_AFTER batches, after loading
the state saved in STATE_IN if given; gathers every rank's sample keys,
batch count and final state, and rank 0 writes them to OUT_JSON."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch.distributed as dist  # noqa: E402

import dareblopy as db  # noqa: E402
from dareblopy.torch import DataLoader, ShardedIterableDataset  # noqa: E402


def main():
    data_dir, out_path = sys.argv[1], sys.argv[2]
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    stop_after = int(sys.argv[4]) if len(sys.argv) > 4 else None
    dist.init_process_group("gloo")
    ds = ShardedIterableDataset(db.directory_shards(data_dir, 8), 4, seed=21)
    loader = DataLoader(ds, num_workers=workers)
    if len(sys.argv) > 5:
        with open(sys.argv[5]) as fh:
            loader.load_state_dict(json.load(fh))
    keys, batches = [], 0
    for batch in loader:
        keys += batch["keys"]
        batches += 1
        if batches == stop_after:
            break
    mine = {"rank": ds.dataset.rank, "world": ds.dataset.world_size, "keys": keys,
            "batches": batches, "len": len(loader), "state": loader.state_dict()}
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    if dist.get_rank() == 0:
        with open(out_path, "w") as fh:
            json.dump(gathered, fh)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
