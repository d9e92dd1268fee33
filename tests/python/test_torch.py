"""The PyTorch adapter inside torch's DataLoader with worker processes, and
across two torch.distributed (gloo) processes."""
import collections
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")

import dareblopy as db  # noqa: E402
from dareblopy.torch import DataLoader, ShardedIterableDataset, ShardMapDataset  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def tree(tmp_path):
    """70 files in 2 class directories; each file holds its relative name."""
    root = tmp_path / "data"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(35):
            (root / c / f"{i:02d}").write_bytes(f"{c}/{i:02d}".encode())
    return root


def keys_of(batches):
    return [k for b in batches for k in b["keys"]]


def make(tree, **kw):
    return ShardedIterableDataset(db.directory_shards(tree, 8), 4, seed=5, **kw)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [0, 2, 3])
def test_dataloader_workers_match_in_process_order(tree, workers):
    expected = keys_of(db.ShardedDataset(db.directory_shards(tree, 8), 4, seed=5))
    loader = DataLoader(make(tree), num_workers=workers)
    batches = list(loader)
    assert keys_of(batches) == expected  # exactly once, in batch order
    assert [int(b["index"]) for b in batches] == list(range(len(loader)))
    assert loader.state_dict()["epoch"] == 1  # rolled over after a full epoch


def test_resume_inside_dataloader(tree):
    full = keys_of(DataLoader(make(tree), num_workers=2))
    loader = DataLoader(make(tree), num_workers=2)
    seen = []
    for b in loader:
        seen += b["keys"]
        if len(seen) >= 28:
            state = loader.state_dict()
            break
    again = DataLoader(make(tree), num_workers=2)
    again.load_state_dict(state)
    assert seen + keys_of(again) == full
    with pytest.raises(ValueError):
        DataLoader(make(tree), num_workers=2, persistent_workers=True)


def test_skipped_samples_are_reported_from_workers(tree):
    def transform(raw):
        if raw.endswith(b"/07"):
            raise ValueError("corrupt")
        return np.frombuffer(raw, np.uint8).copy()

    loader = DataLoader(make(tree, transform=transform, on_error="skip"), num_workers=2)
    got = keys_of(loader)
    assert sorted(loader.skipped) == ["a/07", "b/07"]
    assert len(got) == 68 and not set(got) & {"a/07", "b/07"}


def test_map_style_dataset_with_distributed_sampler(tree):
    ds = ShardMapDataset(db.directory_shards(tree, 8),
                         transform=lambda raw: np.frombuffer(raw, np.uint8).copy(),
                         labels=db.labels_from_parent_dirs(["a", "b"]))
    assert len(ds) == 70
    item = ds[40]
    assert item["key"] == "b/05" and bytes(item["data"]) == b"b/05" and item["label"] == 1
    seen = []
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=rank, seed=1)
        loader = torch.utils.data.DataLoader(ds, batch_size=8, sampler=sampler, num_workers=2)
        for batch in loader:
            assert batch["data"].shape[1:] == (4,) and batch["label"].dtype == torch.int64
            assert all(bytes(row.tolist()).decode() == k
                       for row, k in zip(batch["data"], batch["key"]))
            seen += batch["key"]
    assert sorted(seen) == sorted(ds.samples.get_many(range(70))[i][0] for i in range(70))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_gloo_ranks(tree, out, world, *args):
    """Runs dist_worker.py as `world` gloo ranks; returns what rank 0 gathered."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": str(world), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "dist_worker.py"),
                               str(tree), str(out), *map(str, args)],
                              env={**env, "RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for r in range(world)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * world, "\n".join(logs)
    return json.loads(out.read_text())


def test_two_gloo_ranks_read_the_dataset_exactly_once(tree, tmp_path):
    ranks = run_gloo_ranks(tree, tmp_path / "gathered.json", 2)
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world"] for r in ranks} == {2}
    assert ranks[0]["batches"] == ranks[1]["batches"] == ranks[0]["len"] == 9
    counts = collections.Counter(k for r in ranks for k in r["keys"])
    assert sorted(counts) == sorted(f"{c}/{i:02d}" for c in "ab" for i in range(35))
    assert set(counts.values()) == {1}
    assert ranks[0]["state"] == ranks[1]["state"]


def test_elastic_resume_from_2x2_to_3x1_gloo_ranks(tree, tmp_path):
    """2 ranks x 2 DataLoader workers read part of an epoch and save; 3 ranks
    x 1 worker load that state and finish the epoch: every sample of the
    epoch is seen exactly once across the two runs."""
    first = run_gloo_ranks(tree, tmp_path / "first.json", 2, 2, 3)  # 3 batches of 4
    assert [r["batches"] for r in first] == [3, 3]
    assert first[0]["state"] == first[1]["state"]
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(first[0]["state"]))
    second = run_gloo_ranks(tree, tmp_path / "second.json", 3, 1, 0, state_path)
    assert len({r["batches"] for r in second}) == 1  # every rank the same count
    assert second[0]["state"]["epoch"] == 1  # the epoch was finished
    seen = collections.Counter(k for run in (first, second) for r in run for k in r["keys"])
    # 70 samples: 24 read first, 46 left for 3 ranks = 16 each with 2 padded
    expected = sorted(f"{c}/{i:02d}" for c in "ab" for i in range(35))
    assert sorted(seen) == expected
    assert sum(seen.values()) == 24 + 3 * 16
    repeated = [k for k, n in seen.items() if n > 1]
    assert len(repeated) == 2 and all(seen[k] == 2 for k in repeated)
    second_keys = [k for r in second for k in r["keys"]]
    assert all(k in second_keys[:2] for k in repeated)  # padding repeats the run's start
