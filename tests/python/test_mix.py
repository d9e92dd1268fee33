"""mix(): batches drawn from several datasets by weight, exactly split over
ranks and workers, resumable (elastically too)."""
import collections
import itertools
import json

import numpy as np
import pytest

import dareblopy as db


class MemoryShard(db.ShardReader):
    """Samples held in memory: name i is f"{prefix}{i}", data its bytes."""

    def __init__(self, prefix, count):
        self.prefix, self.count = prefix, count

    def __len__(self):
        return self.count

    def name(self, index):
        return f"{self.prefix}{index}"

    def read(self, indices, threads=1):
        return [self.name(i).encode() for i in indices]

    @property
    def sort_key(self):
        return self.prefix


def source(prefix, count, rank=0, world=1, **kw):
    shards = [MemoryShard(f"{prefix}{k}-", count // 10) for k in range(10)]
    return db.ShardedDataset(shards, 50, seed=3, rank=rank, world_size=world, **kw)


def make(rank=0, world=1, web=7000, curated=3000, seed=0, batch_size=100, **kw):
    return db.mix([source("web", web, rank, world), source("cur", curated, rank, world)],
                  [0.7, 0.3], seed=seed, batch_size=batch_size, **kw)


def keys(ds):
    return [k for b in ds for k in b["keys"]]


def test_shares_within_one_point_over_ten_thousand_samples():
    ds = make()
    got = keys(ds)
    assert len(got) == 10_000 and len(set(got)) == 10_000  # exactly one epoch, no repeats
    web = sum(k.startswith("web") for k in got)
    assert abs(web / len(got) - 0.7) <= 0.01
    for b in make():  # every batch is within one sample of its share too
        assert abs(int((b["sources"] == 0).sum()) - 70) <= 1
        assert len(b["keys"]) == 100


def test_epoch_ends_when_the_first_source_runs_out():
    ds = make(web=7000, curated=1500)  # curated runs out after 5000 samples
    got = keys(ds)
    assert len(got) == 5000 and sum(k.startswith("cur") for k in got) == 1500
    assert ds.epoch == 1


def test_same_seed_same_batches_and_the_seed_moves_the_rounding():
    assert keys(make(seed=4)) == keys(make(seed=4))
    # 0.7 of 64 is 44.8 per batch: which batches get 45 depends on the seed
    compositions = {seed: tuple(int((b["sources"] == 0).sum())
                                for b in make(seed=seed, batch_size=64))
                    for seed in range(8)}
    assert len(set(compositions.values())) > 1
    assert set(compositions[4]) == {44, 45}


def test_torch_dataloader_carries_the_mix_and_its_state():
    pytest.importorskip("torch")
    from dareblopy.torch import DataLoader, ShardedIterableDataset
    loader = DataLoader(ShardedIterableDataset(make()), num_workers=2)
    got, state = [], None
    for n, b in enumerate(loader):
        got += b["keys"]
        if n == 39:
            state = loader.state_dict()
            break
    again = DataLoader(ShardedIterableDataset(make()), num_workers=2)
    again.load_state_dict(state)
    got += [k for b in again for k in b["keys"]]
    assert got == keys(make())


def test_two_ranks_disjoint_samples_same_batch_count():
    ranks = [make(rank, 2) for rank in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 50
    got = [keys(ds) for ds in ranks]
    assert not set(got[0]) & set(got[1])
    assert len(got[0]) == len(got[1]) == 5000
    for g in got:
        assert abs(sum(k.startswith("web") for k in g) / len(g) - 0.7) <= 0.01


def test_workers_partition_batches_round_robin():
    ds = make()
    whole = [b["keys"] for b in make()]
    parts = [list(ds.iter_partition(0, 0, p, 3)) for p in range(3)]
    assert sorted(b["index"] for part in parts for b in part) == list(range(len(whole)))
    for part in parts:
        for b in part:
            assert b["keys"] == whole[b["index"]]


def test_mid_epoch_state_resumes_to_exactly_the_remaining_keys():
    ds = make()
    it = iter(ds)
    head = [k for _ in range(23) for k in next(it)["keys"]]
    del it
    state = json.loads(json.dumps(ds.state_dict()))
    again = make()
    again.load_state_dict(state)
    rest = keys(again)
    everything = keys(make())
    assert sorted(head + rest) == sorted(everything)
    assert head == everything[:len(head)]


def test_elastic_mix_resume_from_two_ranks_to_three():
    first = [make(rank, 2) for rank in range(2)]
    seen = []
    for ds in first:
        it = iter(ds)
        seen += [k for _ in range(10) for k in next(it)["keys"]]
        del it
    state = first[0].state_dict()
    assert state == first[1].state_dict()
    second = [make(rank, 3) for rank in range(3)]
    for ds in second:
        ds.load_state_dict(state)
    assert len({len(ds) for ds in second}) == 1
    for ds in second:
        seen += keys(ds)
    counts = collections.Counter(seen)
    assert max(counts.values()) == 1  # nothing read twice
    # the run after the resume ends when a source runs out on some rank: at
    # most one batch per rank's worth of samples of the epoch is left unread
    assert 10_000 - len(counts) < 3 * 100


def test_bad_mixes_are_refused():
    with pytest.raises(ValueError, match="weights"):
        db.mix([source("a", 100)], [0.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        db.mix([source("a", 100), source("b", 100)], [float("nan"), 1])
    with pytest.raises(ValueError, match="less than one sample per batch"):
        db.mix([source("a", 100), source("b", 100)], [0.999, 0.001], batch_size=100)
    with pytest.raises(ValueError, match="rank"):
        db.mix([source("a", 100, 0, 2), source("b", 100, 0, 1)], [1, 1])
    ds = make()
    with pytest.raises(ValueError, match="weights"):
        db.mix(ds.sources, [0.5, 0.5], batch_size=100).load_state_dict(ds.state_dict())


def test_weights_in_other_units_are_the_same_mix():
    """[3, 1] and [0.75, 0.25] draw the same batches, so each loads the
    other's state."""
    ds = db.mix([source("web", 7000), source("cur", 3000)], [3, 1], batch_size=100)
    it = iter(ds)
    first = [next(it)["keys"] for _ in range(3)]
    state = ds.state_dict()
    same = db.mix([source("web", 7000), source("cur", 3000)], [0.75, 0.25], batch_size=100)
    assert [b["keys"] for b in itertools.islice(iter(same), 3)] == first
    resumed = db.mix([source("web", 7000), source("cur", 3000)], [0.75, 0.25], batch_size=100)
    resumed.load_state_dict(state)
    rest = keys(resumed)
    assert not set(rest) & {k for b in first for k in b}
    assert len(rest) + 300 == len(keys(db.mix([source("web", 7000), source("cur", 3000)],
                                              [3, 1], batch_size=100)))


def test_a_mix_with_no_whole_batch_is_refused():
    """A source too small for one batch would end every epoch before its
    first batch: the other sources' samples would never be read, silently."""
    with pytest.raises(ValueError, match="source 1 has 1 samples? for rank 0.*no batch"):
        db.mix([source("web", 700), db.ShardedDataset([MemoryShard("one-", 1)], 50)],
               [0.5, 0.5], batch_size=100)
