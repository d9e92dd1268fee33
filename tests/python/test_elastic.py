"""Elastic resumption: a state saved on any rank continues the epoch on any
number of ranks, DataLoader partitions and batch sizes, with no sample lost
or repeated beyond what uneven= defines (see dareblopy/_split.py)."""
import collections
import itertools
import json

import numpy as np
import pytest

import dareblopy as db
from dareblopy._split import RunSplit
from test_mix import MemoryShard


@pytest.fixture
def tree(tmp_path):
    for i in range(60):
        p = tmp_path / f"c{i % 3}" / f"{i:03d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(bytes([i]) * (i + 1))
    return tmp_path


def make(tree, rank, world, batch_size=3, **kw):
    return db.ShardedDataset(db.directory_shards(tree, 7), batch_size, seed=5, rank=rank,
                             world_size=world, **kw)


def read_part(datasets, partitions, batches):
    """Each rank reads its first `batches` batches through `partitions`
    round-robin partitions (as DataLoader workers do), then returns the keys
    and every rank's state."""
    keys = []
    for ds in datasets:
        parts = [ds.iter_partition(ds.epoch, ds.position, p, partitions)
                 for p in range(partitions)]
        for n in range(batches):
            batch = next(parts[n % partitions])
            ds._advance(batch["index"])
            keys += batch["keys"]
    return keys, [ds.state_dict() for ds in datasets]


@pytest.mark.parametrize("uneven", ["pad", "drop"])
@pytest.mark.parametrize("before,after", [((2, 2), (3, 1)), ((3, 1), (2, 4)), ((4, 2), (1, 1)),
                                          ((1, 1), (5, 2))])
def test_resume_on_another_world(tree, before, after, uneven):
    world, parts = before
    first = [make(tree, r, world, uneven=uneven) for r in range(world)]
    keys, states = read_part(first, parts, 2)
    assert all(s == states[0] for s in states)  # the state is the same on every rank
    state = json.loads(json.dumps(states[0]))
    world, parts = after
    second = [make(tree, r, world, batch_size=4, uneven=uneven) for r in range(world)]
    for ds in second:
        ds.load_state_dict(state)
    assert len({len(ds) for ds in second}) == 1  # the same number of batches everywhere
    rest, _ = read_part(second, parts, len(second[0]))
    assert all(ds.epoch == 1 and ds.position == 0 for ds in second)  # epoch finished
    seen = collections.Counter(keys + rest)
    everything = {f"c{i % 3}/{i:03d}.bin" for i in range(60)}
    if uneven == "pad":
        assert set(seen) == everything
        # only the last run pads, by less than one sample per rank
        assert sum(seen.values()) - 60 < world
    else:
        assert max(seen.values()) == 1
        assert 60 - len(seen) < before[0] + after[0]  # at most W - 1 dropped per run


def test_same_world_resume_repeats_the_uninterrupted_run(tree):
    """Resumed in the same setup, batches (and their augmentation seeds) are
    exactly those of a run that was never interrupted."""
    seeds = []

    def transform(raws, seed):
        seeds.append(seed)
        return raws
    whole = [b["keys"] for b in make(tree, 1, 2, batch_transform=transform)]
    whole_seeds, seeds[:] = list(seeds), []
    ds = make(tree, 1, 2, batch_transform=transform)
    it = iter(ds)
    head = [next(it)["keys"] for _ in range(4)]
    del it
    resumed = make(tree, 1, 2, batch_transform=transform)
    resumed.load_state_dict(ds.state_dict())
    seeds[:] = []  # (the interrupted run may have built a batch ahead)
    assert head + [b["keys"] for b in resumed] == whole
    assert seeds == whole_seeds[4:]


def test_old_format_state_loads_into_the_same_setup_only(tree):
    ds = make(tree, 0, 2)
    old = {"epoch": 0, "position": 3, "num_samples": 60, "num_shards": ds.state_dict()["num_shards"],
           "world_size": 2, "batch_size": 3, "seed": 5, "shuffle": True,
           "shuffle_buffer": 16384, "uneven": "pad", "drop_last": False}
    ds.load_state_dict(old)
    reference = make(tree, 0, 2)
    assert [b["keys"] for b in ds] == [b["keys"] for b in reference][3:]
    with pytest.raises(ValueError, match="world_size: saved 2, now 3.*same world size"):
        make(tree, 0, 3).load_state_dict(old)


def test_bad_states_are_refused(tree):
    ds = make(tree, 0, 1)
    state = ds.state_dict()
    with pytest.raises(ValueError, match="outside"):
        ds.load_state_dict({**state, "remaining": [[0, 61]]})
    with pytest.raises(ValueError, match="num_samples"):
        ds.load_state_dict({**state, "num_samples": 59})


def test_run_split_never_loses_or_repeats_positions():
    """Random sequences of runs on random world sizes, checked exhaustively."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        n, uneven = int(rng.integers(1, 50)), ["pad", "drop"][int(rng.integers(2))]
        remaining, seen, padding = [(0, n)], [], 0
        runs = int(rng.integers(1, 5))
        for run in range(runs):
            world = int(rng.integers(1, 6))
            splits = [RunSplit(remaining, r, world, uneven) for r in range(world)]
            last = run == runs - 1
            consumed = splits[0].per_rank if last else int(rng.integers(0, n + 1))
            for s in splits:
                seen += s.positions(0, consumed).tolist()
            padding += max(0, world * splits[0].per_rank - splits[0].total)
            if last:
                dropped = max(0, splits[0].total - world * splits[0].per_rank)
                break
            after = {tuple(map(tuple, s.after(consumed))) for s in splits}
            assert len(after) == 1
            remaining = list(next(iter(after)))
        counts = np.bincount(seen, minlength=n)
        if uneven == "pad":  # each run pads by less than one sample per rank
            assert counts.min() >= 1 and counts.sum() - n <= padding
        else:  # the runs before the last drop nothing: their tails carry over
            assert counts.max() <= 1 and n - counts.sum() == dropped


def _tree(root, names):
    for i, name in enumerate(names):
        p = root / f"c{i % 3}" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes([i]))
    return root


def test_a_state_for_other_shards_is_refused(tree, tmp_path_factory):
    """Same sample count, shard count and seed, other files: the positions
    would name other samples, so the state is refused, naming why."""
    state = make(tree, 0, 1).state_dict()
    other = _tree(tmp_path_factory.mktemp("other"), [f"{i:03d}.jpg" for i in range(60)])
    with pytest.raises(ValueError, match="shards' names"):
        make(other, 0, 1).load_state_dict(state)


def test_a_state_for_shards_of_other_sizes_is_refused():
    """The same shard names and total, the samples spread differently (a
    shard rewritten): positions would name other samples."""
    def ds(counts):
        return db.ShardedDataset([MemoryShard(f"s{k}-", n) for k, n in enumerate(counts)], 4)
    state = ds([10, 10, 10]).state_dict()
    with pytest.raises(ValueError, match="sample counts"):
        ds([9, 11, 10]).load_state_dict(state)


def test_a_state_follows_the_same_files_to_another_folder(tree, tmp_path_factory):
    ds = make(tree, 0, 1)
    first = next(iter(ds))["keys"]
    state = json.loads(json.dumps(ds.state_dict()))
    copy = tmp_path_factory.mktemp("copy")
    for p in tree.rglob("*.bin"):
        (copy / p.relative_to(tree)).parent.mkdir(exist_ok=True)
        (copy / p.relative_to(tree)).write_bytes(p.read_bytes())
    resumed = make(copy, 0, 1)
    resumed.load_state_dict(state)
    rest = [k for b in resumed for k in b["keys"]]
    assert sorted(first + rest) == sorted(str(p.relative_to(tree)) for p in tree.rglob("*.bin"))


def test_a_state_saved_before_shard_fingerprints_still_loads(tree):
    state = make(tree, 0, 1).state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("shard_")}
    make(tree, 0, 1).load_state_dict(state)


def test_malformed_states_are_refused_clearly(tree):
    ds = make(tree, 0, 1)
    state = ds.state_dict()
    with pytest.raises(ValueError, match=r"\[20, 10\] is not an interval"):
        ds.load_state_dict({**state, "remaining": [[0, 5], [20, 10]]})
    with pytest.raises(ValueError, match="'x' is not an interval"):
        ds.load_state_dict({**state, "remaining": ["x"]})
    with pytest.raises(ValueError, match="a mix's state"):
        ds.load_state_dict(db.mix([make(tree, 0, 1), make(tree, 0, 1)], [1, 1]).state_dict())
