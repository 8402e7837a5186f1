"""The one table of Caffe layer types the harness supports, with each type's traits.

Every registry (shape inference, reference, converter, strategies) is keyed by the canonical ``type`` strings listed
here; :mod:`harness.registry` refuses anything else at import time, and ``tests/test_registry.py`` asserts that every
registry covers exactly these types.  ``aliases`` are other spellings used by Caffe forks; they are resolved to the
canonical name by :func:`canonical_type` (the net keeps the spelling the prototxt used).

:class:`Traits` is what the rest of the harness knows about a type without a branch on its name: whether it has
learned blobs (loading, seeded weights), whether it is a linear accumulation (the derived float32 bound, the
diagnosis), which rule derives its bound (:mod:`harness.compare.engine.tolerance` keeps one function per rule name), which
Keras layer classes and activation names can stand for it (matching), whether it is a net input, its window
geometry, what completes it (BatchNorm's Scale), what an exporter fuses or folds around it (per artefact kind), when
it computes NaN by itself.  Every type states every trait: there is no default, and ``tests/test_registry.py`` names
any type whose trait is missing or names a rule nobody implements.  Facts that are code rather than data (seeded
weights, fillers, variants) are registries keyed by type beside the code, and the same test names a type they miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class Traits:
    """What the comparator, the loader and the seeded weights know about one Caffe type (no field has a default)."""

    weighted: str  # learned blobs: "yes", "no", or "one_bottom" (Scale/Bias: only without a second bottom)
    linear: bool  # y = sum_k w_k x_k (+ b): convolution, deconvolution, InnerProduct
    biased: bool  # may carry a bias blob that a port can leave out
    role: str  # "compute", "activation" (a Keras layer may fuse it), "passive" (passes data through, never needs
    #            a Keras counterpart), "relayout" (pure re-layout, never reported unmatched)
    accumulation: str  # rule for the accumulation length K (harness.compare.engine.tolerance.ACCUMULATION)
    magnitude: str  # rule for the per-element magnitude m_i (harness.compare.engine.tolerance.MAGNITUDE)
    keras: Mapping[str, tuple[str, ...]]  # variant ("" = any; Pooling "MAX"/"AVE", Eltwise "SUM"...) -> Keras
    #                                       classes a hand port may use for it (empty: Keras has none; a user class)
    activations: tuple[str, ...]  # Keras activation names (Activation("relu"), Conv2D(activation="relu"))
    source: bool  # a net input: its tops are fed from outside (both sides get the same array), it computes nothing
    window: str  # sliding-window geometry: "conv" (Caffe pads symmetrically, out = (in + 2p - k)/s + 1), "deconv"
    #              (the transpose: a port crops), "pool" (ceil rounding), "" (none)
    depthwise: bool  # group = input channels by definition (a fork's depthwise type; plain conv when group = C)
    completed_by: str  # the type that, right after this one on its only top, completes it into one Keras layer
    #                    and one exporter op (Caffe's BatchNorm has no affine: the Scale after it is its gamma/beta)
    flattens: bool  # reads or writes its blob in Caffe's C-order flat layout (a port must flatten as Caffe does)
    indices: bool  # its bottom holds integer indices into a learned table (Embed: fed in [0, input_dim))
    nonfinite: Mapping[str, str]  # variant ("" = any) -> the Caffe rule by which the layer itself yields NaN/Inf
    export_fusion: str  # what an exporter (TFLite's converter, TF's grappler for a SavedModel) does with it:
    #                     "absorbs" (its operator takes in the in-place followers after it: a CONV_2D or an ADD with
    #                     a fused RELU), "folds" (a per-channel affine folded into the operator before it, which then
    #                     absorbs as that operator), "activation" (fused into the operator before it), "" (its own op)
    fused_activation: Mapping[str, tuple[str, ...]]  # artefact kind -> the fused-activation names its exporter
    #                                                  writes on the operator before for this type (TFLite's
    #                                                  ActivationFunctionType: RELU6 for ReLU6, or a Clip to [0, 6])
    classifier_output: str  # what a net output (N, K) of this type holds for a dataset's top-k: "probabilities",
    #                         "logits" or "" (not a classifier output)

    def __post_init__(self) -> None:
        if self.weighted not in ("yes", "no", "one_bottom"):
            raise ValueError(f"Traits.weighted={self.weighted!r}: yes, no or one_bottom")
        if self.role not in ROLES:
            raise ValueError(f"Traits.role={self.role!r}: one of {', '.join(ROLES)}")
        if self.export_fusion not in EXPORT_FUSIONS:
            raise ValueError(f"Traits.export_fusion={self.export_fusion!r}: one of "
                             f"{', '.join(map(repr, EXPORT_FUSIONS))}")
        if self.window not in WINDOWS:
            raise ValueError(f"Traits.window={self.window!r}: one of {', '.join(map(repr, WINDOWS))}")
        object.__setattr__(self, "keras", MappingProxyType(dict(self.keras)))
        object.__setattr__(self, "nonfinite", MappingProxyType(dict(self.nonfinite)))
        object.__setattr__(self, "fused_activation", MappingProxyType(dict(self.fused_activation)))
        if self.classifier_output not in ("probabilities", "logits", ""):
            raise ValueError(f"Traits.classifier_output={self.classifier_output!r}: probabilities, logits or ''")


ROLES = ("compute", "activation", "passive", "relayout")
WINDOWS = ("conv", "deconv", "pool", "")
EXPORT_FUSIONS = ("absorbs", "folds", "activation", "")


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


def _t(weighted: str = "no", *, linear: bool = False, biased: bool = False, role: str = "compute", k: str,
       m: str, keras: Mapping[str, tuple[str, ...]] | tuple[str, ...] = (), acts: tuple[str, ...] = (),
       source: bool = False, window: str = "", depthwise: bool = False, completed_by: str = "",
       flattens: bool = False, indices: bool = False, nonfinite: Mapping[str, str] | str = "",
       fusion: str = "", fused: Mapping[str, tuple[str, ...]] = MappingProxyType({}),
       classifier: str = "") -> Traits:
    """One row of :data:`TRAITS` (``keras`` as a tuple: the classes for every variant; ``nonfinite`` as a string:
    the rule for every variant)."""
    kmap = keras if isinstance(keras, Mapping) else ({"": tuple(keras)} if keras else {})
    nmap = nonfinite if isinstance(nonfinite, Mapping) else ({"": nonfinite} if nonfinite else {})
    return Traits(weighted, linear, biased, role, k, m, kmap, acts, source, window, depthwise, completed_by,
                  flattens, indices, nmap, fusion, fused, classifier)


_CONV = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
_AVE_NAN = ("AVE pooling: a window lying wholly in the ceil-mode overhang has pool_size 0, and Caffe divides its sum "
            "0 by 0 (pooling_layer.cpp)")
_POW_NAN = ("{}: a result beyond the float32 range is +-inf in Caffe's float32 (the float64 reference holds its "
            "finite value); a negative base to a non-integer power is NaN")
_LOG_NAN = "Log: the log of a non-positive base (shift + scale * x) is NaN or -inf"
# accumulation rules: "conv" C_in/g*kh*kw, "deconv" C_in/g*ceil(kh/sh)*ceil(kw/sw), "inner_product" the input
# length, "pooling" the window (MAX: 1), "one" (a copy or a selection), "two"/"four" (a few roundings), "bottoms"
# (one term per bottom), "spp", "reduction", "softmax", "lrn", "normalize", "mvn" (the reduced length),
# "eight" (a handful of operations of O(1) terms: lookups, generated coordinates).  Magnitude rules: see
# harness/compare/engine/tolerance.py.
TRAITS: dict[str, Traits] = {
    "Input": _t(role="passive", k="one", m="selection", source=True),
    "Convolution": _t("yes", linear=True, biased=True, k="conv", m="accumulate", keras=_CONV, window="conv",
                      fusion="absorbs"),
    "ConvolutionDepthwise": _t("yes", linear=True, biased=True, k="conv", m="accumulate",
                               keras=("DepthwiseConv2D", "Conv2D"), window="conv", depthwise=True, fusion="absorbs"),
    "Deconvolution": _t("yes", linear=True, biased=True, k="deconv", m="accumulate", keras=("Conv2DTranspose",),
                        window="deconv", fusion="absorbs"),
    "Pooling": _t(k="pooling", m="pooling", keras={"MAX": ("MaxPooling2D", "GlobalMaxPooling2D"),
                                                  "AVE": ("AveragePooling2D", "GlobalAveragePooling2D")},
                 window="pool", nonfinite={"AVE": _AVE_NAN}),
    "SPP": _t(k="spp", m="spp"),
    "LRN": _t(k="lrn", m="normalized", keras=("Lambda",)),  # hand ports wrap tf.nn.local_response_normalization
    "MVN": _t(k="mvn", m="mvn"),
    "BatchNorm": _t("yes", k="four", m="batchnorm", keras=("BatchNormalization",), completed_by="Scale",
                    fusion="folds"),
    "Normalize": _t("yes", k="normalize", m="normalized", keras=("Lambda", "UnitNormalization")),
    "Scale": _t("one_bottom", biased=True, k="two", m="scale", keras=("BatchNormalization",), fusion="folds"),
    "Bias": _t("one_bottom", biased=True, k="two", m="scale", fusion="folds"),
    "InnerProduct": _t("yes", linear=True, biased=True, k="inner_product", m="inner_product",
                       keras=("Dense", "EinsumDense"), flattens=True, fusion="absorbs",
                       classifier="logits"),
    "Embed": _t("yes", k="eight", m="generic", indices=True),
    # relu6 / relu stand for both (the clip is then diagnosed: activation_clipped), so a MobileNet-style port pairs
    "ReLU": _t(role="activation", k="one", m="selection", keras=("ReLU", "LeakyReLU", "Activation"),
               acts=("relu", "leaky_relu", "relu6"), fusion="activation",
               fused={"tflite": ("RELU",)}),
    "ReLU6": _t(role="activation", k="one", m="selection", keras=("ReLU", "Activation"), acts=("relu6", "relu"),
                fusion="activation",
                fused={"tflite": ("RELU6",)}),
    "PReLU": _t("yes", role="activation", k="one", m="selection", keras=("PReLU",), fusion="activation"),
    "ELU": _t(role="activation", k="four", m="elementwise", keras=("ELU", "Activation"), acts=("elu",),
              fusion="activation"),
    "Sigmoid": _t(role="activation", k="four", m="elementwise", keras=("Activation",), acts=("sigmoid",),
                  fusion="activation"),
    "TanH": _t(role="activation", k="four", m="elementwise", keras=("Activation",), acts=("tanh",),
               fusion="activation",
               fused={"tflite": ("TANH",)}),
    "AbsVal": _t(role="activation", k="one", m="selection"),
    "BNLL": _t(k="four", m="elementwise"),
    "Power": _t(k="four", m="elementwise", nonfinite=_POW_NAN.format("Power")),
    "Exp": _t(k="four", m="elementwise", nonfinite=_POW_NAN.format("Exp")),
    "Log": _t(k="four", m="elementwise", nonfinite=_LOG_NAN),
    "Threshold": _t(k="one", m="selection"),
    "Clip": _t(role="activation", k="one", m="selection", fusion="activation",
               fused={"tflite": ("RELU6", "RELU_N1_TO_1")}),
    "Swish": _t(role="activation", k="four", m="elementwise", keras=("Activation",), acts=("silu", "swish"),
                fusion="activation"),
    "Dropout": _t(role="passive", k="one", m="selection"),
    "Softmax": _t(role="activation", k="softmax", m="normalized", keras=("Softmax", "Activation"),
                  acts=("softmax",),
                  classifier="probabilities"),
    "Concat": _t(k="one", m="selection", keras=("Concatenate",)),
    "Slice": _t(k="one", m="selection"),
    "Split": _t(role="passive", k="one", m="selection"),
    "Flatten": _t(role="relayout", k="one", m="selection", flattens=True),
    "Reshape": _t(role="relayout", k="one", m="selection", flattens=True),
    "Crop": _t(k="one", m="selection"),
    "Permute": _t(k="one", m="selection"),
    "Tile": _t(k="one", m="selection"),
    "ShuffleChannel": _t(k="one", m="selection"),
    "Silence": _t(role="passive", k="one", m="selection"),
    "Eltwise": _t(k="bottoms", m="eltwise", keras={"SUM": ("Add",), "PROD": ("Multiply",), "MAX": ("Maximum",)},
                  fusion="absorbs"),
    "Axpy": _t(k="bottoms", m="axpy"),
    "Reduction": _t(k="reduction", m="reduction"),
    "ArgMax": _t(k="one", m="selection"),
    "Upsample": _t(k="one", m="selection", keras=("UpSampling2D",)),
    "Interp": _t(k="eight", m="generated", keras=("Resizing",)),
    "PriorBox": _t(k="eight", m="generated"),
    "DetectionOutput": _t(k="eight", m="generated"),
}

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


def traits(caffe_type: str) -> Traits:
    """The traits of a Caffe type (canonical or alias); KeyError naming the type when the catalogue lacks it."""
    t = canonical_type(caffe_type)
    try:
        return TRAITS[t]
    except KeyError:
        raise KeyError(f"no traits for Caffe type {caffe_type!r}; add a row to harness/catalogue.py TRAITS") from None


def types_with(**want: object) -> frozenset[str]:
    """The canonical types whose traits have every given value (``types_with(linear=True)``)."""
    return frozenset(t for t, tr in TRAITS.items() if all(getattr(tr, k) == v for k, v in want.items()))


def is_source(caffe_type: str) -> bool:
    """Whether a layer of this type is a net input (False for a type the catalogue does not list: a raw prototxt
    type before the loader refuses it)."""
    t = TRAITS.get(canonical_type(caffe_type))
    return t is not None and t.source


def window(caffe_type: str) -> str:
    """The sliding-window geometry of a type (``"conv"``, ``"deconv"``, ``"pool"`` or ``""``)."""
    t = TRAITS.get(canonical_type(caffe_type))
    return t.window if t is not None else ""


def completes(first: str, then: str) -> bool:
    """Whether a layer of type ``then`` right after one of type ``first`` completes it (BatchNorm then Scale)."""
    t = TRAITS.get(canonical_type(first))
    return t is not None and bool(t.completed_by) and t.completed_by == canonical_type(then)


def fused_activations(artefact_kind: str) -> dict[str, tuple[str, ...]]:
    """``{fused-activation name: the Caffe types it computes}`` an exporter of ``artefact_kind`` writes (catalogue
    order)."""
    out: dict[str, tuple[str, ...]] = {}
    for t, tr in TRAITS.items():
        for name in tr.fused_activation.get(artefact_kind, ()):
            out[name] = out.get(name, ()) + (t,)
    return out


def has_learned_blobs(layer_kind: str, n_bottoms: int) -> bool:
    """Whether a layer of this kind reads learned blobs from the weights file (Scale/Bias only with one bottom)."""
    w = traits(layer_kind).weighted
    return w == "yes" or (w == "one_bottom" and n_bottoms == 1)


def trait_gaps() -> list[str]:
    """Catalogue types without a traits row, rows for types the catalogue does not list, and a ``completed_by``
    naming no catalogue type (empty when complete)."""
    return ([f"{t}: no traits row in harness/catalogue.py TRAITS" for t in CATALOGUE if t not in TRAITS] +
            [f"{t}: traits row for a type the catalogue does not list" for t in TRAITS if t not in CATALOGUE] +
            [f"{t}: completed_by={tr.completed_by!r} is not a catalogue type" for t, tr in TRAITS.items()
             if tr.completed_by and tr.completed_by not in TRAITS])


if trait_gaps():  # pragma: no cover - a broken table fails at import
    raise ValueError("; ".join(trait_gaps()))
