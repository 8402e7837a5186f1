"""How many threads the reference (NumPy's BLAS) and the Keras side (TensorFlow's pools) use: the cores actually free,
not a default that oversubscribes a busy machine.

Measured on the project's 2-core machine while other processes kept it busy: OpenBLAS with its default 2 threads was
3-10x slower per GEMM than with 1 (a reduced ResNet-50 dataset check 21.1 s vs 9.5 s; benchmarks/RESULTS.md), because
a BLAS call forks and joins its threads and waits for the slowest one, which shares its core with another process.

The rule (:func:`plan_threads`): an explicit request (``--threads N``, or ``CAFFE_HARNESS_THREADS=N``) wins; else the
cores this process may run on (``os.sched_getaffinity``) minus the load the rest of the machine puts on them (the
1-minute load average, rounded to the nearest core), at least 1.  A Dask worker always uses 1
(:mod:`harness.compare.dataset.scaleout`).  The choice and its reason are printed in ``check --timings``'s line and
written in the JSON (``threads``).  Threads change the order of float32 sums in the last bits only: the derived bounds
hold for every order, so verdicts do not depend on it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from .errors import HarnessError

ENV = "CAFFE_HARNESS_THREADS"
_BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


@dataclass(frozen=True)
class ThreadPlan:
    n: int  # threads for BLAS and for TensorFlow's intra-op pool
    cores: int  # cores this process may use
    load: float | None  # the machine's 1-minute load average when chosen (None: not read)
    reason: str  # "requested" | "free cores"

    def describe(self) -> str:
        if self.reason == "requested":
            return f"threads {self.n} (requested; {self.cores} cores)"
        return (f"threads {self.n} ({self.cores} cores, load {self.load:.1f}: {self.n} free; --threads N "
                f"overrides)")

    def to_dict(self) -> dict:
        return {"n": self.n, "cores": self.cores, "load": self.load, "reason": self.reason}


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan_threads(requested: int | str | None = None, *, cores: int | None = None,
                 load: float | None = None) -> ThreadPlan:
    """The thread count to use (see the module docstring).  ``cores``/``load`` default to this machine's."""
    cores = available_cores() if cores is None else cores
    req = requested if requested not in (None, "") else os.environ.get(ENV) or None
    if req is not None:
        try:
            n = int(req)
        except (TypeError, ValueError):
            n = 0
        if n < 1:
            raise HarnessError(f"--threads {req!r}: a whole number of threads, at least 1 (or set {ENV})")
        return ThreadPlan(n, cores, None, "requested")
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    free = int(round(cores - load))
    return ThreadPlan(max(1, min(cores, free)), cores, float(load), "free cores")


def apply_threads(plan: ThreadPlan) -> None:
    """Use ``plan.n`` threads from now on: BLAS through threadpoolctl (and the environment for libraries not loaded
    yet), TensorFlow's intra-op pool if its runtime has not started (it cannot change afterwards; then it keeps its
    own)."""
    for k in _BLAS_ENV:
        os.environ[k] = str(plan.n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(plan.n)
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency; the environment still holds
        pass
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(plan.n)
            tf.config.threading.set_inter_op_parallelism_threads(min(plan.n, 2))
        except RuntimeError:  # the runtime already started: its pools are fixed
            pass
    else:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(plan.n))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(min(plan.n, 2)))


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
