"""The Caffe side's setup: the net (seeded weights where it has none) and the one input preparer both sides use."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...catalogue import traits, window
from ...errors import HarnessError
from ...net import Net


def given_shapes(inputs: Any) -> dict[str, tuple[int, ...]] | None:
    """NCHW shapes of the input arrays the user gave by name (they size the net, as Caffe's Reshape does)."""
    if isinstance(inputs, Mapping) and inputs and all(hasattr(v, "shape") for v in inputs.values()):
        return {str(k): tuple(int(d) for d in np.shape(v)) for k, v in inputs.items()}
    return None


def refuse_nhwc_inputs(prototxt: Any, shapes: Mapping[str, Sequence[int]] | None) -> None:
    """An input array whose shape is the NHWC order of the prototxt's declared NCHW input is refused by name before
    it resizes the net (it would otherwise end in a kernel-size or blob-shape error far from the cause).  Nets that
    declare no input shape (train_val) are sized by the arrays as given."""
    if not shapes:
        return
    from ...caffe import load_net

    try:
        declared = load_net(prototxt).inputs
    except HarnessError:
        return
    for name, got in shapes.items():
        want = tuple(declared.get(name, ()))
        got = tuple(got)
        # NHWC of the declared shape, or -- a fully convolutional net checked at another size -- the declared
        # channel count last and not first
        nhwc = got[1:] == (want[2], want[3], want[1]) if len(want) == 4 and len(got) == 4 else False
        other_size = len(want) == 4 and len(got) == 4 and got[1] != want[1] and got[3] == want[1]
        if got != want and (nhwc or other_size):
            raise HarnessError(f"input {name!r} has shape {got}, which looks NHWC; the Caffe input is {want} "
                               f"(NCHW{', any size' if other_size and not nhwc else ''}): give it NCHW "
                               f"(x.transpose(0, 3, 1, 2))")


def load_caffe_net(net_or_prototxt: Any, weights: Any, seed: int,
                   input_shapes: Mapping[str, Sequence[int]] | None = None) -> Net:
    """The Caffe net to compare (a Net or a prototxt path); a net without weights gets seeded random ones."""
    return load_seeded_net(net_or_prototxt, weights, seed, input_shapes)[0]


def load_seeded_net(net_or_prototxt: Any, weights: Any, seed: int,
                    input_shapes: Mapping[str, Sequence[int]] | None = None) -> tuple[Net, bool]:
    """:func:`load_caffe_net`, and whether the net got seeded random weights (:func:`needs_seeded_weights`: a caller
    comparing a model of its own says that such a model cannot agree)."""
    if isinstance(net_or_prototxt, Net):
        net = net_or_prototxt
        if weights is not None:
            from ...caffe import load_net

            if not net.source or net.source == "<string>":
                raise HarnessError("weights= given with an already loaded Net; load the net with its weights")
            net = load_net(net.source, weights=weights)
    else:
        from ...caffe import load_net

        net = load_net(net_or_prototxt, weights=weights, input_shapes=input_shapes or None)
    if not needs_seeded_weights(net):
        return net, False
    from ...weights import random_weights

    return random_weights(net, seed), True


def needs_seeded_weights(net: Net) -> bool:
    """Whether the net has layers with learned blobs but was loaded without weights."""
    return not net.has_weights and any(traits(lay.kind).weighted != "no" for lay in net.layers)


def prepare_inputs(net: Net, inputs: Any, seed: int) -> dict[str, np.ndarray]:
    """The data both sides get: NCHW float32 per Caffe input (``inputs``: a dict by input blob or one array), the
    rest seeded as the reference seeds them (standard normal; integer indices for an input an Embed layer reads)."""
    if inputs is None:
        inputs = {}
    elif isinstance(inputs, np.ndarray):
        if len(net.inputs) != 1:
            raise HarnessError(f"one array given but the net has {len(net.inputs)} inputs ({', '.join(net.inputs)})")
        inputs = {next(iter(net.inputs)): inputs}
    elif not isinstance(inputs, Mapping):
        raise HarnessError(f"inputs: expected a dict of NCHW arrays or one array, got {type(inputs).__name__}")
    unknown = [k for k in inputs if k not in net.inputs]
    if unknown:
        raise HarnessError(f"input {unknown[0]!r} is not an input of net {net.name!r} "
                           f"(inputs: {', '.join(net.inputs)})")
    from ...reference import prepare_inputs as reference_inputs

    return reference_inputs(net, inputs, np.float32, seed)


def nan_warnings(net: Net) -> list[str]:
    """The layers whose Caffe output holds NaN by construction (:func:`harness.shapes.nan_by_construction`).  Only AVE
    pooling can, so a net without one is not inferred again (loading already checked its shapes)."""
    from ...params import pool_geometry
    from ...shapes import infer_shapes, nan_by_construction

    if not any(window(lay.kind) == "pool" and pool_geometry(lay).method == "AVE" for lay in net.layers):
        return []
    return nan_by_construction(infer_shapes(net))
