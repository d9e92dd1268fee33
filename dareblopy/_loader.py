"""``data_loader``: batches pulled from a yielder, collated by worker threads
and handed to the consumer through a bounded queue.

Threads rather than processes: libdbr releases the GIL on every call, so
reading and decoding in collators scale over cores, and a collator may
upload tensors to a GPU.

The bound is on batches *in flight*: a worker takes a ticket before it pulls
from the yielder and the ticket is returned when the consumer takes the
batch, so at most ``queue_size`` batches exist at once (pulled, being
collated, or waiting), however slow the consumer is.  That bound also makes
ordered delivery safe: the batch the consumer waits for is always one that a
worker holds a ticket for, so waiting for it never deadlocks.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Iterable, Iterator, Optional

__all__ = ["data_loader", "DataLoaderIterator"]


class _Failure:
    """An exception raised by the yielder or collator, delivered in the
    batch's place so the consumer re-raises it."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


class _State:
    """Everything the worker threads share.  Workers hold only this, never
    the iterator, so dropping the iterator lets it be collected (and its
    finalizer stop the threads)."""

    def __init__(self, source: Iterator, collator, queue_size: int, ordered: bool):
        self.source = source
        self.collator = collator
        self.queue_size = queue_size
        self.ordered = ordered
        self.cv = threading.Condition()
        self.pull_lock = threading.Lock()  # Python iterators are not thread-safe
        self.results = {}        # sequence number -> batch or _Failure
        self.in_flight = 0       # tickets taken and not yet returned
        self.pulled = 0          # next sequence number
        self.delivered = 0       # batches handed to the consumer
        self.end = None          # total number of batches, once known
        self.closed = False

    def finish(self, end: int) -> None:
        with self.cv:
            if self.end is None or end < self.end:
                self.end = end
            self.cv.notify_all()

    def worker(self) -> None:
        cv = self.cv
        while True:
            with cv:
                while not self.closed and self.end is None and self.in_flight >= self.queue_size:
                    cv.wait()
                if self.closed or self.end is not None:
                    return
                self.in_flight += 1
            with self.pull_lock:
                if self.end is not None or self.closed:
                    self._return_ticket()
                    return
                seq = self.pulled
                try:
                    item = next(self.source)
                except StopIteration:
                    self._return_ticket()
                    self.finish(seq)
                    return
                except BaseException as exc:  # delivered to the consumer
                    self._put(seq, _Failure(exc))
                    self.finish(seq + 1)
                    return
                self.pulled = seq + 1
            if self.collator is not None:
                try:
                    item = self.collator(item)
                except BaseException as exc:
                    item = _Failure(exc)
            self._put(seq, item)
            del item

    def _return_ticket(self) -> None:
        with self.cv:
            self.in_flight -= 1
            self.cv.notify_all()

    def _put(self, seq: int, item) -> None:
        with self.cv:
            if self.closed:
                self.in_flight -= 1
            else:
                self.results[seq] = item
            self.cv.notify_all()

    def take(self):
        """The next batch, or raises StopIteration."""
        cv = self.cv
        with cv:
            while True:
                if self.ordered:
                    if self.delivered in self.results:
                        item = self.results.pop(self.delivered)
                        break
                elif self.results:
                    # dicts keep insertion order: the oldest finished batch
                    item = self.results.pop(next(iter(self.results)))
                    break
                if self.closed or (self.end is not None and self.delivered >= self.end):
                    raise StopIteration
                cv.wait()
            self.delivered += 1
            self.in_flight -= 1
            cv.notify_all()
        return item

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.results.clear()
            self.cv.notify_all()


def _stop(state: _State, threads) -> None:
    """Finalizer: stops and joins the workers (each finishes the batch it is
    collating first).  Never joins the calling thread itself."""
    state.close()
    me = threading.current_thread()
    for t in threads:
        if t is not me:
            t.join()


def _as_iterator(yielder) -> Iterator:
    if hasattr(yielder, "__next__"):
        return yielder
    if hasattr(yielder, "__iter__"):
        return iter(yielder)
    if callable(yielder):  # a function returning batches, None at the end
        return iter(yielder, None)
    raise TypeError(f"data_loader: yielder must be an iterator, an iterable or a callable, "
                    f"not {type(yielder).__name__}")


class DataLoaderIterator:
    """What :func:`data_loader` returns: an iterator of collated batches.

    Stop it early with :meth:`close`, ``with``, ``break`` (once the object
    is dropped) or garbage collection: the worker threads end and are
    joined.  An exception in the yielder or collator is raised here, in
    place of its batch, and the loader stops."""

    def __init__(self, yielder, collator: Optional[Callable[[Any], Any]] = None,
                 iteration_count: Optional[int] = None, worker_count: int = 1,
                 queue_size: int = 16, ordered: bool = True):
        worker_count = int(worker_count)
        queue_size = int(queue_size)
        if worker_count < 1:
            raise ValueError(f"data_loader: worker_count must be >= 1, not {worker_count}")
        if queue_size < 1:
            raise ValueError(f"data_loader: queue_size must be >= 1, not {queue_size}")
        self.iteration_count = iteration_count
        self._state = _State(_as_iterator(yielder), collator, queue_size, bool(ordered))
        self._threads = [threading.Thread(target=self._state.worker, daemon=True,
                                          name=f"dareblopy-loader-{i}")
                         for i in range(worker_count)]
        self._finalizer = weakref.finalize(self, _stop, self._state, self._threads)
        for t in self._threads:
            t.start()

    def __iter__(self):
        return self

    def __next__(self):
        item = self._state.take()
        if type(item) is _Failure:
            self.close()
            raise item.error
        return item

    def __len__(self) -> int:
        if self.iteration_count is None:
            raise TypeError("data_loader: len() needs iteration_count")
        return self.iteration_count

    def close(self) -> None:
        """Stops the workers and joins them; further ``next`` calls raise
        StopIteration."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def data_loader(yielder: Iterable, collator: Optional[Callable[[Any], Any]] = None,
                iteration_count: Optional[int] = None, worker_count: int = 1,
                queue_size: int = 16, ordered: bool = True) -> DataLoaderIterator:
    """DareBlopy's asynchronous, buffered loader, on threads.

    ``yielder`` gives batches: an iterator, an iterable, or a callable that
    returns the next batch and None at the end.  Worker threads pull from it
    (one at a time) and pass each batch through ``collator``; the result is
    an iterator of collated batches.  At most ``queue_size`` batches are in
    flight, so memory stays within ``queue_size`` batches however slow the
    consumer is.

    ``ordered=True`` (new; the default) delivers batches in the yielder's
    order with any number of workers; ``ordered=False`` delivers them as
    they finish (DareBlopy's behaviour with several workers).
    ``iteration_count`` only answers ``len()``, as in DareBlopy.
    """
    return DataLoaderIterator(yielder, collator, iteration_count, worker_count,
                              queue_size, ordered)


def build_in_order(plan: Iterable, build: Callable[[Any], Any], threads: int,
                   queue_size: int) -> Iterator[Any]:
    """``build(item)`` for every item of ``plan``, in plan order, on
    ``threads`` threads with at most ``queue_size`` results in flight; the
    threads stop when the caller stops iterating."""
    loader = data_loader(plan, build, worker_count=max(1, threads),
                         queue_size=max(1, queue_size), ordered=True)
    try:
        yield from loader
    finally:
        loader.close()
