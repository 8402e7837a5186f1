"""What a check holds in memory, estimated from Caffe's shape rules before anything runs (no TensorFlow here).

A streaming judge (:func:`harness.compare.dataset.batch.stream_batch`) holds the live activations of the float64
reference -- the blobs some later layer still reads, and the tops of the layer running -- not every record, so its
peak grows with :func:`live_activation_bytes`, not with the depth of the net (:func:`activation_bytes` of every
record).  :func:`estimate` turns both into the peak resident memory of a check or of a dataset batch: a fixed
process size (Python, NumPy, TensorFlow and Keras imported), the weights (the net's float32 blobs and the Keras
model's copy of them), and a multiple of the activations; the multiples are fitted to peak RSS measured with
``benchmarks/bench_dataset.py`` (ResNet-50 and VGG16 at batch 4 and 8, benchmarks/RESULTS.md) and rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...shapes import count

# Fitted to peak RSS (benchmarks/RESULTS.md, issue 22: ResNet-50 and VGG16 at 224x224, dataset batches of 4 and 8
# streamed and whole, single checks at batch 1; the streamed VGG16 batches are over-estimated by 20-30 %):
PROCESS_BYTES = 600 * 2**20  # Python + NumPy + TensorFlow + Keras imported, a converted model's graph objects
WEIGHT_COPIES = 2.5  # the net's float32 weights, the Keras variables, the conversion's and matching's temporaries
LIVE_COPIES = 8.5  # per live float64 reference value: the records still read, the Keras values, the judge's work
RECORD_COPIES = 3.0  # per recorded float64 value when every record is held (a single check: both Keras passes)


@dataclass(frozen=True)
class Estimate:
    """A peak-memory estimate in bytes, with the parts it was made of."""

    peak: int
    weights: int
    records: int  # float64 bytes of every record
    live: int  # float64 bytes of the largest live set of the reference
    streaming: bool  # whether the estimate is of the streaming (live set) judge


def live_activation_bytes(net_shapes, itemsize: int = 8) -> int:
    """The largest number of bytes the reference holds at once when a blob is dropped after its last reader: at each
    layer, the blobs still to be read later plus the layer's new tops (an in-place top is a new array beside its
    bottom until the layer returns)."""
    last: dict[str, int] = {}
    for i, ls in enumerate(net_shapes.layers):
        for b in ls.bottoms:
            last[b] = i
    live: dict[str, int] = {}
    peak = 0
    for i, ls in enumerate(net_shapes.layers):
        tops = {t: itemsize * count(s) for t, s in zip(ls.tops, ls.top_shapes)}
        peak = max(peak, sum(live.values()) + sum(tops.values()))
        live.update(tops)
        for b in [b for b in live if last.get(b, -1) <= i]:
            del live[b]
    return peak


def estimate(net_shapes, *, streaming: bool) -> Estimate:
    """The peak resident memory of a check of ``net_shapes``'s net at its input shapes: ``streaming`` (a chained
    dataset batch, judged layer by layer) or every record held (a single ``check``)."""
    weights = 4 * int(net_shapes.param_count)
    records = net_shapes.activation_bytes(8)
    live = live_activation_bytes(net_shapes, 8)
    acts = LIVE_COPIES * live if streaming else RECORD_COPIES * records
    peak = int(PROCESS_BYTES + WEIGHT_COPIES * weights + acts)
    return Estimate(peak, weights, records, live, streaming)


def estimate_net(net, batch: int | None, *, streaming: bool) -> Estimate:
    """:func:`estimate` of ``net`` with every input's batch axis ``batch`` (None: as the net declares it)."""
    from ...shapes import infer_shapes

    return estimate(infer_shapes(net if batch is None else with_batch(net, batch)), streaming=streaming)


def with_batch(net, batch: int):
    """``net`` with every input's batch axis ``batch``, in ``net.inputs`` and in its Input layers' ``input_param``
    (which the shape rules read)."""
    import dataclasses

    from ...catalogue import is_source

    inputs = {k: (batch, *v[1:]) for k, v in net.inputs.items()}
    layers = []
    for lay in net.layers:
        if is_source(lay.kind) and all(t in inputs for t in lay.tops):
            param = type(lay.param)()
            param.CopyFrom(lay.param)
            del param.input_param.shape[:]
            for t in lay.tops:
                param.input_param.shape.add().dim.extend(inputs[t])
            lay = dataclasses.replace(lay, param=param)
        layers.append(lay)
    return dataclasses.replace(net, inputs=inputs, layers=tuple(layers))


def memory_budget() -> tuple[int, str]:
    """(bytes a dataset run may hold, where that figure comes from): ``CAFFE_HARNESS_MEMORY_BUDGET`` when set, else
    the memory available now (``MemAvailable`` of /proc/meminfo) plus what this process already holds."""
    import os

    from ...shapes import parse_bytes

    env = os.environ.get("CAFFE_HARNESS_MEMORY_BUDGET")
    if env:
        return parse_bytes(env), "CAFFE_HARNESS_MEMORY_BUDGET"
    avail = _meminfo("MemAvailable")
    if avail is None:
        return 1 << 62, "no /proc/meminfo: not limited"
    return avail + (_rss() or 0), "the memory available"


def _meminfo(field: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _rss() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def fitting_batch(net, batch: int, *, streaming: bool, processes: int = 1,
                  budget: tuple[int, str] | None = None) -> tuple[int, str | None]:
    """The largest batch size up to ``batch`` (halving) whose estimated peak, times ``processes`` (Dask workers on
    this machine), fits the budget, and the notice saying so (None when ``batch`` fits).  Refuses
    (:class:`~harness.errors.ResourceError`, one line) when one sample does not fit."""
    from ...errors import ResourceError
    from ...shapes._budget import _human

    limit, source = budget or memory_budget()
    first = need = processes * estimate_net(net, batch, streaming=streaming).peak
    b = batch
    while need > limit:
        if b == 1:
            raise ResourceError(f"{net.source or net.name}: one sample of a dataset batch needs about {_human(need)} "
                                f"(estimated from the shapes, before running) but {source} is {_human(limit)}; "
                                f"free memory, reduce the input size or set CAFFE_HARNESS_MEMORY_BUDGET")
        b = max(1, b // 2)
        need = processes * estimate_net(net, b, streaming=streaming).peak
    if b == batch:
        return b, None
    return b, (f"notice: a batch of {batch} samples would need about {_human(first)} (estimated before "
               f"running) of {_human(limit)} ({source}): run in batches of {b}")
