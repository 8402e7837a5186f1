"""Legacy net upgrades, applied once at load: V0 -> V1 -> V2, legacy ``input*`` fields -> an ``Input`` layer.

The rules follow Caffe's ``src/caffe/util/upgrade_proto.cpp``:

* ``UpgradeV0Net``: V0 layers (``layers { layer { ... } }``) become V1 layers; the V0 ``padding`` layer is folded
  into the following convolution or pooling layer (its ``pad`` moves there).
* ``UpgradeV1Net``: ``layers`` (V1, enum types) become ``layer`` (V2, string types via ``UpgradeV1LayerType``);
  ``blobs_lr``/``weight_decay``/``param`` become ``ParamSpec`` ``lr_mult``/``decay_mult``/``name``.
* ``UpgradeNetInput``: ``input`` + ``input_shape``/``input_dim`` (in groups of 4) become one ``Input`` layer named
  ``input``, placed first, with one top per legacy input.  A legacy ``input`` with neither is dropped by Caffe, whose
  net then fails with "Unknown bottom blob"; the harness refuses it the same way (naming the input and the fix),
  unless the caller gives the shape of every such input (``input_shapes`` of :func:`harness.caffe.load_net`, CLI
  ``--input-shape``, which overrides the prototxt): then the ``Input`` layer is made with those shapes.
* ``UpgradeNetBatchNorm``: BatchNorm layers with three ``param`` specs get ``lr_mult = decay_mult = 0`` (cosmetic
  here: the harness never trains).
"""

from __future__ import annotations

from typing import Collection, Mapping

from .errors import ProtoError, UnsupportedLayer
from .proto import caffe_pb2 as pb

# UpgradeV1LayerType: V1 enum name -> V2 type string.
V1_TYPE_NAMES: dict[str, str] = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DATA": "Data",
    "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# V1 parameter fields that carry over to V2 under the same name.
_V1_PARAM_FIELDS = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param", "convolution_param", "data_param",
    "dropout_param", "dummy_data_param", "eltwise_param", "exp_param", "hdf5_data_param", "hdf5_output_param",
    "hinge_loss_param", "image_data_param", "infogain_loss_param", "inner_product_param", "lrn_param",
    "memory_data_param", "mvn_param", "pooling_param", "power_param", "relu_param", "sigmoid_param",
    "softmax_param", "slice_param", "tanh_param", "threshold_param", "window_data_param", "transform_param",
    "loss_param",
)

# V0 type string -> V1 enum name (UpgradeV0LayerType).
_V0_TYPES: dict[str, str] = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION", "data": "DATA",
    "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS", "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT", "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN", "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING", "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT", "tanh": "TANH", "window_data": "WINDOW_DATA",
}


def needs_upgrade(net: pb.NetParameter) -> bool:
    return len(net.layers) > 0 or len(net.input) > 0


def upgrade_net(net: pb.NetParameter, source: str = "<net>", given_shapes: Collection[str] = ()) -> pb.NetParameter:
    """Return a V2 copy of ``net`` (``net`` itself is not modified).  ``given_shapes``: the blobs whose shape the
    caller supplies (a legacy ``input`` without ``input_shape``/``input_dim`` needs one)."""
    out = pb.NetParameter()
    out.CopyFrom(net)
    if len(out.layers) and len(out.layer):
        raise ProtoError(f"{source}: the net mixes V1 'layers' and V2 'layer' fields; Caffe refuses such nets")
    if any(v1.HasField("layer") for v1 in out.layers):
        _upgrade_v0(out, source)
    if len(out.layers):
        _upgrade_v1(out, source)
    if len(out.input):
        _upgrade_input(out, source, frozenset(given_shapes))
    for lay in out.layer:
        # one type by name, not a trait: Caffe's own upgrade rule (UpgradeNetBatchNorm) names BatchNorm alone
        if lay.type == "BatchNorm" and len(lay.param) == 3:
            for ps in lay.param:
                ps.lr_mult = 0
                ps.decay_mult = 0
    return out


def _upgrade_v0(net: pb.NetParameter, source: str) -> None:
    """V0 -> V1 (UpgradeV0Net + UpgradeV0PaddingLayers + UpgradeV0LayerParameter)."""
    old = list(net.layers)
    del net.layers[:]
    pending_pad: dict[str, tuple[int, str]] = {}  # padded top -> (pad, original bottom)
    for v1_old in old:
        v0 = v1_old.layer
        if v0.type == "padding":
            if len(v1_old.bottom) != 1 or len(v1_old.top) != 1:
                raise ProtoError(f"{source}: V0 padding layer {v0.name!r} must have one bottom and one top")
            pending_pad[v1_old.top[0]] = (v0.pad, v1_old.bottom[0])
            continue
        v1 = net.layers.add()
        v1.bottom.extend(v1_old.bottom)
        v1.top.extend(v1_old.top)
        v1.name = v0.name if v0.HasField("name") else v1_old.name
        t = _V0_TYPES.get(v0.type)
        if t is None:
            raise UnsupportedLayer(f"{source}: V0 layer {v0.name!r} has unknown type {v0.type!r} "
                                   f"(known: {', '.join(sorted(_V0_TYPES))})")
        v1.type = pb.V1LayerParameter.LayerType.Value(t)
        v1.blobs.extend(v0.blobs)
        v1.blobs_lr.extend(v0.blobs_lr)
        v1.weight_decay.extend(v0.weight_decay)
        _absorb_v0_padding(v1, v0, t, pending_pad, source)
        if t in _V0_PARAMS:
            _copy_v0(v1, v0, *_V0_PARAMS[t])


def _absorb_v0_padding(v1: pb.V1LayerParameter, v0: pb.V0LayerParameter, t: str,
                       pending_pad: Mapping[str, tuple[int, str]], source: str) -> None:
    """A V0 padding layer feeding a conv or pool layer becomes that layer's pad (UpgradeV0PaddingLayers)."""
    for i, b in enumerate(v1.bottom):
        if b in pending_pad:
            pad, orig = pending_pad[b]
            if t not in ("CONVOLUTION", "POOLING"):
                raise ProtoError(f"{source}: V0 padding feeds layer {v1.name!r} of type {v0.type!r}; "
                                 f"only conv and pool layers can absorb padding")
            v1.bottom[i] = orig
            if t == "CONVOLUTION":
                v1.convolution_param.pad.append(pad)
            else:
                v1.pooling_param.pad = pad


def _copy_v0(v1: pb.V1LayerParameter, v0: pb.V0LayerParameter, param: str, fields: tuple[tuple[str, str], ...]) -> None:
    """Each V0 field that is set, into ``v1.<param>``: a repeated field appended, a message copied, a scalar
    assigned; a field already set (a pad absorbed from a V0 padding layer) is kept."""
    msg = getattr(v1, param)
    for src, dst in fields:
        if not v0.HasField(src):
            continue
        fd = msg.DESCRIPTOR.fields_by_name[dst]
        value = getattr(v0, src)
        if fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED:  # protobuf >= 6 / older
            if not len(getattr(msg, dst)):
                getattr(msg, dst).append(value)
        elif msg.HasField(dst):
            continue
        elif fd.message_type is not None:
            getattr(msg, dst).CopyFrom(value)
        else:
            setattr(msg, dst, value)


def _same(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((n, n) for n in names)


# UpgradeV0LayerParameter's per-type field copies, keyed by the V1 LayerType name (the other types have no fields):
# the V1 parameter message and (V0 field, V1 field) pairs
_V0_PARAMS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "CONVOLUTION": ("convolution_param", (("num_output", "num_output"), ("biasterm", "bias_term"), ("pad", "pad"),
                                          ("kernelsize", "kernel_size"), ("group", "group"), ("stride", "stride"),
                                          ("weight_filler", "weight_filler"), ("bias_filler", "bias_filler"))),
    "INNER_PRODUCT": ("inner_product_param", (("num_output", "num_output"), ("biasterm", "bias_term"))),
    "POOLING": ("pooling_param", (("pool", "pool"), ("kernelsize", "kernel_size"), ("stride", "stride"),
                                  ("pad", "pad"))),
    "LRN": ("lrn_param", _same("local_size", "alpha", "beta", "k")),
    "DROPOUT": ("dropout_param", _same("dropout_ratio")),
    "CONCAT": ("concat_param", _same("concat_dim")),
}


def _upgrade_v1(net: pb.NetParameter, source: str) -> None:
    """V1 -> V2 (UpgradeV1Net / UpgradeV1LayerParameter / UpgradeV1LayerType)."""
    for v1 in net.layers:
        lay = net.layer.add()
        lay.name = v1.name
        enum_name = pb.V1LayerParameter.LayerType.Name(v1.type)
        if enum_name == "NONE":
            raise ProtoError(f"{source}: V1 layer {v1.name!r} has no type")
        lay.type = V1_TYPE_NAMES[enum_name]
        lay.bottom.extend(v1.bottom)
        lay.top.extend(v1.top)
        lay.include.extend(v1.include)
        lay.exclude.extend(v1.exclude)
        lay.loss_weight.extend(v1.loss_weight)
        lay.blobs.extend(v1.blobs)
        n_specs = max(len(v1.param), len(v1.blobs_lr), len(v1.weight_decay))
        for i in range(n_specs):
            ps = lay.param.add()
            if i < len(v1.param):
                ps.name = v1.param[i]
            if i < len(v1.blob_share_mode):
                ps.share_mode = v1.blob_share_mode[i]
            if i < len(v1.blobs_lr):
                ps.lr_mult = v1.blobs_lr[i]
            if i < len(v1.weight_decay):
                ps.decay_mult = v1.weight_decay[i]
        for f in _V1_PARAM_FIELDS:
            if v1.HasField(f):
                getattr(lay, f).CopyFrom(getattr(v1, f))
    del net.layers[:]


def _upgrade_input(net: pb.NetParameter, source: str, given: frozenset[str]) -> None:
    """Legacy ``input``/``input_shape``/``input_dim`` -> an ``Input`` layer named ``input`` (UpgradeNetInput).
    Without shapes the ``Input`` layer states none: every legacy input must be in ``given`` (its shape comes from the
    caller, see :func:`harness.caffe.load_net`)."""
    n = len(net.input)
    shapes: list[list[int]] = []
    if len(net.input_shape):
        if len(net.input_dim):
            raise ProtoError(f"{source}: give legacy input shapes as input_shape or input_dim, not both")
        if len(net.input_shape) not in (1, n):
            raise ProtoError(f"{source}: {len(net.input_shape)} input_shape entries for {n} inputs")
        shapes = [list(s.dim) for s in net.input_shape]
    elif len(net.input_dim):
        if len(net.input_dim) != 4 * n:
            raise ProtoError(f"{source}: input_dim has {len(net.input_dim)} values; need 4 per input "
                             f"({4 * n} for {n} inputs)")
        dims = list(net.input_dim)
        shapes = [dims[4 * i: 4 * i + 4] for i in range(n)]
    else:
        missing = [b for b in net.input if b not in given]
        if missing:
            b = missing[0]
            raise ProtoError(
                f"{source}: legacy input {b!r} has no input_shape or input_dim; Caffe drops such an input during the "
                f"upgrade and then fails with \"Unknown bottom blob\"; give its shape (CLI: --input-shape "
                f"{b}=N,C,H,W; Python: input_shapes={{{b!r}: (N, C, H, W)}})")
    inp = pb.LayerParameter(name="input", type="Input")
    inp.top.extend(net.input)
    for s in shapes:
        inp.input_param.shape.add().dim.extend(s)
    layers = list(net.layer)
    del net.layer[:]
    net.layer.add().CopyFrom(inp)
    for lay in layers:
        net.layer.add().CopyFrom(lay)
    del net.input[:]
    del net.input_shape[:]
    del net.input_dim[:]
