"""The Input case."""

from __future__ import annotations


from hypothesis import strategies as st

from ._arrays import Limits, _choice, _layer_case, _rng, _shape
from ._render import LayerCase, LayerDef
from .registry import _case, _inputs


@_case("Input")
def _input_case(draw, lim: Limits) -> LayerCase:
    """One or two Input layers of rank 4 or 2 (the net is the inputs themselves)."""
    rng = _rng(draw)
    n_in = draw(st.integers(1, 2))
    shapes = {}
    n = draw(st.integers(1, lim.max_batch))
    for i in range(n_in):
        shapes["data" if i == 0 else f"data{i + 1}"] = _shape(draw, lim, _choice(draw, [4, 2]), batch=n)
    inputs = _inputs(rng, draw, shapes)
    # The case's layer under test is the last Input layer (NetCase.input_layers skips it; it is rendered as a layer).
    last = list(inputs)[-1]
    lay = LayerDef(last, "Input", (), (last,), [("input_param", [("shape", [("dim", d) for d in inputs[last].shape])])])
    return _layer_case("input_case", inputs, lay)
