"""Scale-out of a dataset run on Dask (``check --dataset ... --workers N`` / ``--scheduler ADDRESS``).

``--workers N`` starts an embedded ``distributed.LocalCluster``: N worker processes with one thread each, every one
pinned to one BLAS / TensorFlow thread (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``TF_NUM_INTRAOP_THREADS``, ``TF_NUM_INTEROP_THREADS`` set before the worker starts, and
``tf.config.threading`` set in the worker before TensorFlow runs anything).  ``--scheduler ADDRESS`` sends the
batches to an existing cluster (start its workers with ``--nthreads 1``; the prototxt, weights and model paths must
be readable there at the same paths).

The calling process reads the dataset one batch at a time and keeps at most two batches per worker in flight (memory
stays bounded); each worker loads the net and the Keras model once per check (:data:`_CACHE`, keyed by
:meth:`~.sweep.Check.identity`) and returns only the batch's statistics (:class:`~.sweep.BatchStats`).  A batch is
computed by the same function as in a single-process run, and the statistics are folded order-independently
(:mod:`.aggregate`), so ``--workers 1`` and ``--workers 2`` agree bit for bit.

Dask is an optional extra: ``pip install 'caffe-keras-harness[dask]'``.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from ...errors import HarnessError
from .batch import BatchStats, Check, Sides, evaluate_batch

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
_CACHE: dict[str, Sides] = {}  # per worker process: check identity -> the loaded sides (the last two checks)
_PINNED: list[bool] = []


def require_dask(flag: str) -> Any:
    try:
        import distributed
    except ImportError:
        raise HarnessError(f"{flag} needs Dask's distributed scheduler, which is not installed: pip install "
                           f"'caffe-keras-harness[dask]' (or pip install 'dask[distributed]')") from None
    return distributed


def pin_threads() -> None:
    """One BLAS and one TensorFlow thread in this (worker) process, TensorFlow imported quietly (its C++ start-up
    banner off, its Python logger at ERROR, as the CLI does); a no-op after the first call."""
    if _PINNED:
        return
    for k, v in ONE_THREAD.items():
        os.environ.setdefault(k, v)
    _quiet_import()
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except (ImportError, RuntimeError):  # TF absent, or already initialised in this worker (then it keeps its own)
        pass
    _PINNED.append(True)


def _quiet_import() -> None:
    from ..._stdio import quiet_tensorflow_import

    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        quiet_tensorflow_import()
    else:
        import logging

        logging.getLogger("tensorflow").setLevel(logging.ERROR)


class _PinPlugin:
    """A Dask worker plugin: :func:`pin_threads` when the worker starts, before any task imports TensorFlow."""

    name = "caffe-harness-pin-threads"

    def setup(self, worker: Any) -> None:
        pin_threads()


def batch_on_worker(check: Check, arrays: dict, start: int, keras_arrays: dict | None = None) -> BatchStats:
    """The task a worker runs: one batch of ``check`` (the sides loaded once per worker and check)."""
    pin_threads()
    key = check.identity()
    sides = _CACHE.get(key)
    if sides is None:
        while len(_CACHE) >= 2:
            _CACHE.pop(next(iter(_CACHE)))
        sides = _CACHE[key] = Sides.load(check)
    return evaluate_batch(sides, arrays, start, keras_arrays)


def _unpack(check: Check, data: tuple, start: int) -> BatchStats:
    return batch_on_worker(check, data[0], start, data[1])


def run_on_dask(check: Check, batches: Any, on_batch: Callable[[BatchStats], None], *, workers: int | None = None,
                scheduler: str | None = None) -> None:
    """Run every ``(start, arrays)`` of ``batches`` on the cluster, calling ``on_batch`` with each result as it comes
    back.  A ``KeyboardInterrupt`` cancels what is in flight and closes the cluster before it goes on."""
    require_dask("--scheduler" if scheduler else "--workers")
    client, cluster = _connect(workers, scheduler)
    try:
        from distributed import WorkerPlugin, as_completed

        client.register_plugin(type("PinThreads", (_PinPlugin, WorkerPlugin), {})())
        feed = _Feed(client, check, iter(batches))
        pending = as_completed()
        for _ in range(2 * max(1, len(feed.busy))):
            if not feed.submit(pending):
                break
        for fut in pending:
            stats = fut.result()
            feed.done(fut)
            on_batch(stats)
            feed.submit(pending)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class _Feed:
    """Sends the batches one at a time, each to the worker with the fewest in flight (its data scattered there, so
    the task runs where its data is and every worker gets its share)."""

    def __init__(self, client: Any, check: Check, it: Any) -> None:
        self.client, self.check, self.it = client, check, it
        self.busy = {w: 0 for w in client.scheduler_info().get("workers", {})}
        self.where: dict[str, str] = {}

    def submit(self, pending: Any) -> bool:
        nxt = next(self.it, None)
        if nxt is None:
            return False
        start, arrays, keras = nxt
        if not self.busy:
            self.busy = {w: 0 for w in self.client.scheduler_info().get("workers", {})}
        target = min(self.busy, key=lambda w: (self.busy[w], w)) if self.busy else None
        kw = {"workers": [target]} if target else {}
        [data] = self.client.scatter([(arrays, keras)], hash=False, **kw)
        fut = self.client.submit(_unpack, self.check, data, start, pure=False, allow_other_workers=True, **kw)
        if target:
            self.busy[target] += 1
            self.where[fut.key] = target
        pending.add(fut)
        return True

    def done(self, fut: Any) -> None:
        w = self.where.pop(fut.key, None)
        if w in self.busy:
            self.busy[w] -= 1
        fut.release()


def _connect(workers: int | None, scheduler: str | None) -> tuple[Any, Any]:
    import logging

    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError) as e:
            raise HarnessError(f"--scheduler {scheduler!r}: cannot connect ({type(e).__name__}: {e})") from None
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}, **ONE_THREAD)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env, "distributed.worker.daemon": False}):
        cluster = LocalCluster(n_workers=int(workers or 1), threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR, env=dict(ONE_THREAD))
    try:
        return Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise
