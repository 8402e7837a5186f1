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

PROCESS_BYTES = 700 * 2**20  # Python + NumPy + TensorFlow + Keras imported, a converted model's graph objects
WEIGHT_COPIES = 3.0  # the net's float32 weights, the Keras variables, the conversion's and matching's temporaries
LIVE_COPIES = 3.0  # per live float64 reference value: the record, the Keras value (float32) and the judge's work
RECORD_COPIES = 2.0  # per recorded float64 value when every record is held (a single check: both Keras passes)


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
