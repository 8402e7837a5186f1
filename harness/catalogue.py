"""The one table of Caffe layer types the harness supports.

Every registry (shape inference, reference, converter, strategies) is keyed by the canonical ``type`` strings listed
here; :mod:`harness.registry` refuses anything else at import time, and ``tests/test_registry.py`` asserts that every
registry covers exactly these types.  ``aliases`` are other spellings used by Caffe forks; they are resolved to the
canonical name by :func:`canonical_type` (the net keeps the spelling the prototxt used).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerSpec:
    type: str
    param_field: str | None  # the LayerParameter field holding this type's parameters
    family: str  # reference/converter module family, for docs
    aliases: tuple[str, ...] = ()
    fork: str | None = None  # None: BVLC Caffe; else the fork that introduced the layer


_SPECS: tuple[LayerSpec, ...] = (
    LayerSpec("Input", "input_param", "io"),
    LayerSpec("Convolution", "convolution_param", "conv"),
    LayerSpec("ConvolutionDepthwise", "convolution_param", "conv", ("DepthwiseConvolution",), "MobileNet forks"),
    LayerSpec("Deconvolution", "convolution_param", "conv"),
    LayerSpec("Pooling", "pooling_param", "pooling"),
    LayerSpec("SPP", "spp_param", "pooling"),
    LayerSpec("LRN", "lrn_param", "norm"),
    LayerSpec("MVN", "mvn_param", "norm"),
    LayerSpec("BatchNorm", "batch_norm_param", "norm"),
    LayerSpec("Normalize", "norm_param", "norm", (), "SSD"),
    LayerSpec("Scale", "scale_param", "affine"),
    LayerSpec("Bias", "bias_param", "affine"),
    LayerSpec("InnerProduct", "inner_product_param", "affine"),
    LayerSpec("Embed", "embed_param", "affine"),
    LayerSpec("ReLU", "relu_param", "activation"),
    LayerSpec("ReLU6", None, "activation", (), "MobileNet forks"),
    LayerSpec("PReLU", "prelu_param", "activation"),
    LayerSpec("ELU", "elu_param", "activation"),
    LayerSpec("Sigmoid", "sigmoid_param", "activation"),
    LayerSpec("TanH", "tanh_param", "activation"),
    LayerSpec("AbsVal", None, "activation"),
    LayerSpec("BNLL", None, "activation"),
    LayerSpec("Power", "power_param", "activation"),
    LayerSpec("Exp", "exp_param", "activation"),
    LayerSpec("Log", "log_param", "activation"),
    LayerSpec("Threshold", "threshold_param", "activation"),
    LayerSpec("Clip", "clip_param", "activation"),
    LayerSpec("Swish", "swish_param", "activation"),
    LayerSpec("Dropout", "dropout_param", "activation"),
    LayerSpec("Softmax", "softmax_param", "activation"),
    LayerSpec("Concat", "concat_param", "shape"),
    LayerSpec("Slice", "slice_param", "shape"),
    LayerSpec("Split", None, "shape"),
    LayerSpec("Flatten", "flatten_param", "shape"),
    LayerSpec("Reshape", "reshape_param", "shape"),
    LayerSpec("Crop", "crop_param", "shape"),
    LayerSpec("Permute", "permute_param", "shape", (), "SSD"),
    LayerSpec("Tile", "tile_param", "shape"),
    LayerSpec("ShuffleChannel", "shuffle_channel_param", "shape", (), "ShuffleNet forks"),
    LayerSpec("Silence", None, "shape"),
    LayerSpec("Eltwise", "eltwise_param", "eltwise"),
    LayerSpec("Axpy", None, "eltwise", (), "SENet forks"),
    LayerSpec("Reduction", "reduction_param", "reduce"),
    LayerSpec("ArgMax", "argmax_param", "reduce"),
    LayerSpec("Upsample", "upsample_param", "resize", (), "YOLOv3 forks (nearest)"),
    LayerSpec("Interp", "interp_param", "resize", (), "deeplab/PSPNet"),
    LayerSpec("PriorBox", "prior_box_param", "detection", (), "SSD"),
    LayerSpec("DetectionOutput", "detection_output_param", "detection", (), "SSD"),
)

CATALOGUE: dict[str, LayerSpec] = {}
_ALIASES: dict[str, str] = {}
for _spec in _SPECS:
    if _spec.type in CATALOGUE:
        raise ValueError(f"duplicate catalogue entry {_spec.type!r}")
    CATALOGUE[_spec.type] = _spec
    for _a in _spec.aliases:
        _ALIASES[_a] = _spec.type

# Layers that only make sense while training: dropped at load (with their label inputs) in TEST phase.
TRAINING_ONLY_TYPES: frozenset[str] = frozenset(
    {
        "Accuracy", "SoftmaxWithLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss",
        "SigmoidCrossEntropyLoss", "ContrastiveLoss", "MultiBoxLoss", "SmoothL1Loss",
    }
)
# Data-source layers: replaced at load by an Input layer of the shape the user gives (their label tops dropped).
DATA_TYPES: frozenset[str] = frozenset(
    {"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData", "AnnotatedData"}
)


def canonical_type(caffe_type: str) -> str:
    """Resolve a fork alias (``DepthwiseConvolution``) to its canonical catalogue type."""
    return _ALIASES.get(caffe_type, caffe_type)


def supported_types() -> list[str]:
    return sorted(CATALOGUE)
