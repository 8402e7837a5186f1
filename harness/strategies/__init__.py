"""Public Hypothesis strategies: random, valid Caffe layers and nets, with inputs and weights, renderable as prototxt.

Use them to test a converter, a custom layer or a hand-written port against the reference::

    from hypothesis import given
    from harness.reference import forward
    from harness.strategies import layer_cases

    @given(layer_cases(["Convolution", "Pooling"]))
    def test_my_port(case):
        net = case.load()                      # harness.net.Net (prototxt + weights through harness.caffe)
        expected = forward(net, case.inputs)   # {"<layer>/<top>": NCHW float64 array}
        ...

Every strategy is *constructive* (no ``filter``/``assume`` for validity): parameters are drawn in an order that makes
each later draw valid for the earlier ones -- kernel, then pad (< kernel), then stride, then an input at least as large
as the padded (dilated) kernel.  The draws are biased toward what breaks ports: every axis a distinct size (so a
transposed axis cannot hide), ``pad_h != pad_w``, stride 2 over an even input with an odd kernel (TF ``same`` pads
asymmetrically there), pooling sizes where ceil and floor rounding differ and the last window is clipped, pads up to
``kernel - 1``, groups and depthwise multipliers, dilation, negative (even all-negative) inputs into MAX pooling,
BatchNorm scale factors outside {0, 1}, LRN ``k != 1`` and WITHIN_CHANNEL, Flatten then InnerProduct and the implicit
flatten of InnerProduct, Eltwise coefficients, softmax axes.

A drawn case (:class:`NetCase`, :class:`LayerCase`) renders to a self-contained, pasteable prototxt
(:meth:`NetCase.to_prototxt`) and writes ``net.prototxt``, ``weights.caffemodel``, ``weights.npz`` (keys
``"<layer>/<i>"``) and ``inputs.npz`` with :meth:`NetCase.write`, so a failing example can be replayed in real Caffe or
with ``caffe-harness check net.prototxt --weights weights.caffemodel --inputs inputs.npz``.

Public functions take keyword-only options; bounds are validated when the strategy is *defined* and raise
:class:`hypothesis.errors.InvalidArgument`, as :mod:`hypothesis.extra.numpy` does.  This module imports Hypothesis (a
test extra), so ``import harness`` never imports it.

Layout (one module per catalogue family, as :mod:`harness.reference` and :mod:`harness.convert`): ``io``, ``conv``,
``pooling``, ``norm``, ``affine``, ``activation``, ``shape``, ``eltwise``, ``reduce``, ``resize``, ``detection``
register one strategy per Caffe type in :data:`STRATEGIES` (``registry``); ``_render`` holds the case classes and
the prototxt rendering, ``_arrays`` the drawing helpers and :class:`Limits`, ``_entry`` :func:`layer_case` /
:func:`layer_cases`, ``_nets`` :func:`nets`.  This module only re-exports.
"""

from __future__ import annotations

# importing the family modules registers their strategies
from . import (activation, affine, conv, detection, eltwise, io, norm, pooling, reduce,  # noqa: F401
               resize, shape)
from ._arrays import Limits, nchw_shapes
from ._entry import layer_case, layer_cases
from ._nets import HEADS, NET_OPS, nets
from ._render import Enum, Items, LayerCase, LayerDef, NetCase
from .conv import ConvParams, conv_params
from .pooling import PoolParams, pool_params
from .registry import STRATEGIES

__all__ = [
    "STRATEGIES", "Limits", "LayerDef", "NetCase", "LayerCase", "ConvParams", "PoolParams",
    "layer_cases", "layer_case", "conv_params", "pool_params", "nchw_shapes", "nets",
    "Enum", "Items", "NET_OPS", "HEADS",
]
