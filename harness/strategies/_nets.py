"""Whole random nets (:func:`nets`): chains and DAGs built block by block."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ..catalogue import has_learned_blobs
from ._arrays import (Limits, _check_int, _choice, _composite, _data, _distinct, _normal, _pick, _rng, _uniform,
                      _weights)
from ._entry import _limits
from ._render import Enum, Items, LayerDef, NetCase
from .conv import ConvParams
from .pooling import PoolParams

# the activations a drawn net uses, with their parameters (plain ReLU twice as likely; a leaky ReLU of slope 0.1)
_ACTS: tuple[tuple[str, Items], ...] = (("ReLU", []), ("ReLU", []), ("PReLU", []), ("Sigmoid", []), ("TanH", []),
                                       ("ELU", []), ("ReLU", [("relu_param", [("negative_slope", 0.1)])]))


NET_OPS = ("conv", "dwconv", "deconv", "pool", "act", "bn_scale", "lrn", "residual", "branch_concat",
           "branch_eltwise", "slice", "dropout")
HEADS = ("none", "ip_implicit", "flatten_ip", "gap_ip_softmax")


class _NetBuilder:
    def __init__(self, draw, rng: np.random.Generator, lim: Limits) -> None:
        self.draw, self.rng, self.lim = draw, rng, lim
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.layers: list[LayerDef] = []
        self.counts: dict[str, int] = {}

    def name(self, prefix: str) -> str:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}{self.counts[prefix]}"

    def add(self, lay: LayerDef, *shapes: tuple[int, ...]) -> LayerDef:
        self.layers.append(lay)
        for t, s in zip(lay.tops, shapes):
            self.shapes[t] = s
        return lay

    def four_d(self) -> list[str]:
        return [b for b, s in self.shapes.items() if len(s) == 4]

    def pick_bottom(self, min_side: int = 1) -> str | None:
        cands = [b for b in self.four_d() if min(self.shapes[b][2:]) >= min_side]
        if not cands:
            return None
        # prefer the most recent blob (chains) but allow any (branches)
        latest = cands[-1]
        return latest if self.draw(st.integers(0, 2)) else _choice(self.draw, cands)

    # -- ops -----------------------------------------------------------------------------------------------------
    def conv(self, bottom: str, *, same: bool = False, num_output: int | None = None, depthwise: bool = False
             ) -> str:
        draw, rng = self.draw, self.rng
        n, c, h, w = self.shapes[bottom]
        if same:
            k = _choice(draw, [1, 3])
            kh, kw = (k, k) if draw(st.booleans()) else (k, _choice(draw, [1, 3]))
            cp = ConvParams((kh, kw), (1, 1), ((kh - 1) // 2, (kw - 1) // 2), (1, 1))
        else:
            kern, pad, dil = [], [], []
            for side in (h, w):
                k = draw(st.integers(1, min(5, side + 2)))
                p = draw(st.integers(0, k - 1))
                d = 2 if (k > 1 and 2 * (k - 1) + 1 <= side + 2 * p and draw(st.integers(0, 3)) == 0) else 1
                if d * (k - 1) + 1 > side + 2 * p:
                    k, p, d = 1, 0, 1
                kern.append(k), pad.append(p), dil.append(d)
            stride = tuple(draw(st.integers(1, 2)) for _ in range(2))
            cp = ConvParams(tuple(kern), stride, tuple(pad), tuple(dil),  # type: ignore[arg-type]
                            (_choice(draw, ["pair", "hw"]), "omit", "omit", "omit"))
        oh, ow = cp.conv_out(h, w)
        if depthwise:
            g = c
            cout = c * draw(st.integers(1, max(1, self.lim.max_channels // c)))
        else:
            g = 1
            if num_output is None and c % 2 == 0 and draw(st.integers(0, 3)) == 0:
                g = 2
            per_group = max(1, self.lim.max_channels // g)
            cout = num_output if num_output is not None else g * draw(st.integers(1, per_group))
            if cout % g:
                g = 1
        name = self.name("convdw" if depthwise else "conv")
        kh, kw = cp.kernel
        blobs = (_weights(rng, (cout, c // g, kh, kw), (c // g) * kh * kw), _normal(rng, (cout,), 0.3))
        items: Items = [("num_output", cout)] + ([("group", g)] if g > 1 or depthwise else []) + cp.items()
        self.add(LayerDef(name, "ConvolutionDepthwise" if depthwise else "Convolution", (bottom,), (name,),
                          [("convolution_param", items)], blobs), (n, cout, oh, ow))
        return name

    def deconv(self, bottom: str) -> str:
        draw, rng = self.draw, self.rng
        n, c, h, w = self.shapes[bottom]
        k = draw(st.integers(2, 4))
        cp = ConvParams((k, k), (2, 2), (draw(st.integers(0, (k - 1) // 2)),) * 2, (1, 1))
        oh, ow = cp.deconv_out(h, w)
        cout = draw(st.integers(1, self.lim.max_channels))
        name = self.name("deconv")
        blobs = (_weights(rng, (c, cout, k, k), c * k * k / 4), _normal(rng, (cout,), 0.3))
        self.add(LayerDef(name, "Deconvolution", (bottom,), (name,),
                          [("convolution_param", [("num_output", cout)] + cp.items())], blobs), (n, cout, oh, ow))
        return name

    def pool(self, bottom: str) -> str:
        draw = self.draw
        n, c, h, w = self.shapes[bottom]
        method = _choice(draw, ["MAX", "AVE"])
        kern, pad, stride = [], [], []
        for side in (h, w):
            k = draw(st.integers(1, min(3, side)))
            p = draw(st.integers(0, k - 1))
            s = draw(st.integers(1, 2 if p > 0 else min(2, k)))
            kern.append(k), pad.append(p), stride.append(s)
        pp = PoolParams(method, tuple(kern), tuple(stride), tuple(pad), draw(st.booleans()),  # type: ignore[arg-type]
                        "round_mode", ("pair", "pair", "pair"))
        oh, ow = pp.out(h, w)
        name = self.name("pool")
        self.add(LayerDef(name, "Pooling", (bottom,), (name,), [("pooling_param", pp.items())]), (n, c, oh, ow))
        return name

    def act(self, bottom: str) -> str:
        draw, rng = self.draw, self.rng
        kind, params = _choice(draw, _ACTS)
        name = self.name(kind.lower())
        inplace = draw(st.booleans())
        top = bottom if inplace else name
        shape = self.shapes[bottom]
        blobs: tuple = (_uniform(rng, (shape[1],), 0.0, 0.5),) if has_learned_blobs(kind, 1) else ()
        self.add(LayerDef(name, kind, (bottom,), (top,), list(params), blobs), shape)
        return top

    def bn_scale(self, bottom: str) -> str:
        rng = self.rng
        shape = self.shapes[bottom]
        c = shape[1]
        f = np.float32(_choice(self.draw, [999.98, 1.0, 3.5]))
        mean, var = _normal(rng, (c,), 0.5), _uniform(rng, (c,), 0.3, 2.0)
        bn = self.name("bn")
        self.add(LayerDef(bn, "BatchNorm", (bottom,), (bottom,), [("batch_norm_param", [("use_global_stats", True)])],
                          ((mean * f).astype(np.float32), (var * f).astype(np.float32), np.array([f], np.float32))),
                 shape)
        sc = self.name("scale")
        self.add(LayerDef(sc, "Scale", (bottom,), (bottom,), [("scale_param", [("bias_term", True)])],
                          (_uniform(rng, (c,), 0.5, 1.5), _normal(rng, (c,), 0.2))), shape)
        return bottom

    def lrn(self, bottom: str) -> str:
        draw = self.draw
        region = _choice(draw, ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
        name = self.name("norm")
        items: Items = [("local_size", 3), ("alpha", _choice(draw, [1e-4, 0.5])), ("beta", 0.75),
                        ("norm_region", Enum(region))]
        if region == "ACROSS_CHANNELS":
            items.append(("k", 2.0))
        self.add(LayerDef(name, "LRN", (bottom,), (name,), [("lrn_param", items)]), self.shapes[bottom])
        return name

    def dropout(self, bottom: str) -> str:
        name = self.name("drop")
        self.add(LayerDef(name, "Dropout", (bottom,), (bottom,), [("dropout_param", [("dropout_ratio", 0.5)])]),
                 self.shapes[bottom])
        return bottom

    def residual(self, bottom: str) -> str:
        """conv (same geometry, same channels) -> ReLU, then Eltwise SUM (sometimes with coeff) with the bottom."""
        c = self.shapes[bottom][1]
        a = self.conv(bottom, same=True, num_output=c)
        a = self.act(a)
        name = self.name("res")
        items: Items = []
        if self.draw(st.booleans()):
            items = [("coeff", 1.0), ("coeff", _choice(self.draw, [0.5, -1.0]))]
        self.add(LayerDef(name, "Eltwise", (bottom, a), (name,), [("eltwise_param", items)] if items else []),
                 self.shapes[bottom])
        return name

    def branches(self, bottom: str, join: str) -> str:
        """2-3 branches from one blob (same spatial size), joined by Concat (channels may differ) or Eltwise."""
        draw = self.draw
        k = draw(st.integers(2, 3))
        cout = draw(st.integers(1, self.lim.max_channels))
        tops = []
        for _ in range(k):
            t = self.conv(bottom, same=True, num_output=cout if join == "eltwise" else None)
            if draw(st.booleans()):
                t = self.act(t)
            tops.append(t)
        shapes = [self.shapes[t] for t in tops]
        if join == "concat":
            name = self.name("concat")
            out = (shapes[0][0], sum(s[1] for s in shapes), *shapes[0][2:])
            self.add(LayerDef(name, "Concat", tuple(tops), (name,)), out)
        else:
            name = self.name("elt")
            op = _choice(draw, ["SUM", "PROD", "MAX"])
            items: Items = [("operation", Enum(op))]
            if op == "SUM" and draw(st.booleans()):
                items += [("coeff", _choice(draw, [1.0, -0.5, 2.0])) for _ in tops]
            self.add(LayerDef(name, "Eltwise", tuple(tops), (name,), [("eltwise_param", items)]), shapes[0])
        return name

    def slice(self, bottom: str) -> str:
        n, c, h, w = self.shapes[bottom]
        if c < 2:
            return self.act(bottom)
        p = self.draw(st.integers(1, c - 1))
        name = self.name("slice")
        tops = (f"{name}_a", f"{name}_b")
        self.add(LayerDef(name, "Slice", (bottom,), tops, [("slice_param", [("axis", 1), ("slice_point", p)])]),
                 (n, p, h, w), (n, c - p, h, w))
        return tops[self.draw(st.integers(0, 1))]

    def head(self, bottom: str, kind: str) -> None:
        rng = self.rng
        shape = self.shapes[bottom]
        nout = self.draw(st.integers(2, self.lim.max_channels + 1))
        if kind == "gap_ip_softmax":
            pool = self.name("pool")
            self.add(LayerDef(pool, "Pooling", (bottom,), (pool,),
                              [("pooling_param", [("pool", Enum("AVE")), ("global_pooling", True)])]),
                     (shape[0], shape[1], 1, 1))
            bottom, shape = pool, self.shapes[pool]
        if kind == "flatten_ip":
            fl = self.name("flatten")
            self.add(LayerDef(fl, "Flatten", (bottom,), (fl,)), (shape[0], int(np.prod(shape[1:]))))
            bottom = fl
        k = int(np.prod(shape[1:]))
        fc = self.name("fc")
        self.add(LayerDef(fc, "InnerProduct", (bottom,), (fc,), [("inner_product_param", [("num_output", nout)])],
                          (_weights(rng, (nout, k), k), _normal(rng, (nout,), 0.3))), (shape[0], nout))
        if kind == "gap_ip_softmax" or self.draw(st.booleans()):
            prob = self.name("prob")
            self.add(LayerDef(prob, "Softmax", (fc,), (prob,)), (shape[0], nout))


def _draw_net(draw, max_layers: int, max_inputs: int, lim: Limits, ops: tuple[str, ...], heads: tuple[str, ...]
              ) -> NetCase:
    rng = _rng(draw)
    b = _NetBuilder(draw, rng, lim)
    n_in = draw(st.integers(1, max_inputs))
    n = draw(st.integers(1, lim.max_batch))
    h, w = _distinct(draw, [(3, lim.max_side), (3, lim.max_side)], (n,))
    inputs: dict[str, np.ndarray] = {}
    for i in range(n_in):
        c = _pick(draw, range(1, lim.max_channels + 1), [lambda v: v not in (n, h, w)])
        name = "data" if i == 0 else f"data{i + 1}"
        inputs[name] = _data(draw, rng, (n, c, h, w))
        b.shapes[name] = (n, c, h, w)
    if n_in > 1:  # join the inputs: Concat on channels (several inputs feeding one graph)
        cat = b.name("concat_in")
        tops = tuple(inputs)
        b.add(LayerDef(cat, "Concat", tops, (cat,)), (n, sum(b.shapes[t][1] for t in tops), h, w))
    target = draw(st.integers(1, max_layers))
    head = _choice(draw, list(heads))
    while len(b.layers) < target:
        op = _choice(draw, list(ops))
        bottom = b.pick_bottom()
        if bottom is None:
            break
        bh, bw = b.shapes[bottom][2:]
        if op == "conv":
            b.conv(bottom)
        elif op == "dwconv":
            b.conv(bottom, depthwise=True)
        elif op == "deconv" and max(bh, bw) <= lim.max_side:
            b.deconv(bottom)
        elif op == "pool":
            b.pool(bottom)
        elif op == "bn_scale":
            b.bn_scale(bottom)
        elif op == "lrn":
            b.lrn(bottom)
        elif op == "residual":
            b.residual(bottom)
        elif op == "branch_concat":
            b.branches(bottom, "concat")
        elif op == "branch_eltwise":
            b.branches(bottom, "eltwise")
        elif op == "slice":
            b.slice(bottom)
        elif op == "dropout":
            b.dropout(bottom)
        else:
            b.act(bottom)
    if head != "none":
        last = b.four_d()[-1] if b.four_d() else None
        if last is not None:
            b.head(last, head)
    return NetCase(name="random_net", inputs=inputs, layers=tuple(b.layers),
                   note=f"{len(b.layers)} layers, head={head}")


def nets(*, max_layers: int = 6, max_inputs: int = 2, max_side: int = 9, max_channels: int = 6, max_batch: int = 2,
         ops: Sequence[str] = NET_OPS, heads: Sequence[str] = HEADS) -> st.SearchStrategy[NetCase]:
    """Random nets: chains and DAGs (branches joined by Concat or Eltwise, residual Eltwise SUM with coeff), in-place
    activations/BatchNorm/Scale/Dropout, several inputs (joined by a Concat), and a classifier head (InnerProduct on a
    4-D blob, Flatten + InnerProduct, or global AVE pooling + InnerProduct + Softmax).

    ``max_layers`` bounds the number of drawn building blocks (a block is 1-8 layers); ``ops`` and ``heads`` choose
    from :data:`NET_OPS` and :data:`HEADS`."""
    _check_int("max_layers", max_layers, 1, 200)
    _check_int("max_inputs", max_inputs, 1, 8)
    lim = _limits(max_side, max_channels, max_batch)
    bad = [o for o in ops if o not in NET_OPS]
    if bad or not ops:
        raise InvalidArgument(f"ops={list(ops)!r}: each must be one of {', '.join(NET_OPS)} (and at least one)")
    bad = [h for h in heads if h not in HEADS]
    if bad or not heads:
        raise InvalidArgument(f"heads={list(heads)!r}: each must be one of {', '.join(HEADS)} (and at least one)")
    return _composite(_draw_net, max_layers, max_inputs, lim, tuple(ops), tuple(heads))
