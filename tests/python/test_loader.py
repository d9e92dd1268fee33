"""data_loader: DareBlopy-compatible threaded loading, ordering, bounds,
errors and shutdown."""
import gc
import random
import threading
import time

import pytest

import dareblopy as db


def loader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("dareblopy-loader-")]


@pytest.fixture(autouse=True)
def no_leaked_threads():
    yield
    gc.collect()
    deadline = time.monotonic() + 5
    while loader_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loader_threads() == []


def jitter(x):
    time.sleep(random.random() * 0.002)
    return x * 10


def test_dareblopy_call_shape_single_worker_keeps_order():
    # DareBlopy 0.0.5's positional signature: yielder, collator, iteration_count, ...
    it = db.data_loader(iter(range(50)), lambda b: b + 1, 50)
    assert len(it) == 50
    assert list(it) == list(range(1, 51))


@pytest.mark.parametrize("workers", [2, 4])
def test_ordered_with_several_workers(workers):
    out = list(db.data_loader(iter(range(200)), jitter, worker_count=workers, queue_size=3))
    assert out == [x * 10 for x in range(200)]


def test_unordered_delivers_everything_once():
    out = list(db.data_loader(range(200), jitter, worker_count=4, ordered=False))
    assert sorted(out) == [x * 10 for x in range(200)]


def test_iterable_and_callable_yielders():
    assert list(db.data_loader([1, 2, 3])) == [1, 2, 3]
    items = iter([5, 6, 7])
    assert list(db.data_loader(lambda: next(items, None), worker_count=2)) == [5, 6, 7]


def test_empty_yielder():
    assert list(db.data_loader(iter([]), worker_count=3)) == []


def test_collator_exception_is_raised_at_its_batch_and_stops():
    def collate(x):
        if x == 7:
            raise KeyError("bad batch 7")
        return x

    it = db.data_loader(iter(range(100)), collate, worker_count=3, queue_size=4)
    got = []
    with pytest.raises(KeyError, match="bad batch 7"):
        for b in it:
            got.append(b)
    assert got == list(range(7))
    assert list(it) == []  # stopped for good


def test_yielder_exception_is_raised():
    def gen():
        yield 1
        yield 2
        raise OSError("disk gone")

    it = db.data_loader(gen(), worker_count=2)
    assert next(it) == 1 and next(it) == 2
    with pytest.raises(OSError, match="disk gone"):
        next(it)


def test_in_flight_batches_are_bounded_by_queue_size():
    state = {"pulled": 0, "taken": 0, "worst": 0}
    lock = threading.Lock()

    def gen():
        for i in range(300):
            with lock:
                state["pulled"] += 1
                state["worst"] = max(state["worst"], state["pulled"] - state["taken"])
            yield i

    for _ in db.data_loader(gen(), jitter, worker_count=4, queue_size=5):
        time.sleep(0.0005)  # a slow consumer lets the workers run ahead
        with lock:
            state["taken"] += 1
    # The consumer counts a batch just after its ticket was returned: +1.
    assert state["worst"] <= 5 + 1
    assert state["taken"] == 300


def test_break_and_garbage_collection_stop_the_threads():
    def forever():
        i = 0
        while True:
            yield i
            i += 1

    for b in db.data_loader(forever(), worker_count=3, queue_size=2):
        if b == 10:
            break
    gc.collect()
    # the autouse fixture checks that every worker thread has ended

    it = db.data_loader(forever(), worker_count=2)
    assert next(it) == 0
    del it


def test_close_and_context_manager():
    with db.data_loader(iter(range(1000)), worker_count=2) as it:
        assert next(it) == 0
    assert list(it) == []
    assert loader_threads() == []


def test_bad_arguments():
    with pytest.raises(ValueError):
        db.data_loader([1], worker_count=0)
    with pytest.raises(ValueError):
        db.data_loader([1], queue_size=0)
    with pytest.raises(TypeError):
        db.data_loader(42)
    with pytest.raises(TypeError):
        len(db.data_loader([1]))
