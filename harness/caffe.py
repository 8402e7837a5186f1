"""Loading Caffe nets: ``.prototxt`` architecture + ``.caffemodel`` / ``.npz`` weights -> :class:`harness.net.Net`.

What happens at load, in order (each step mirrors what Caffe does in ``Net::Init`` / ``ReadNetParamsFromTextFile``):

1. Parse the prototxt with our schema (syntax errors are reported as ``file:line:column``), and find where each
   layer block starts (:mod:`harness.locations`: ``Layer.location``, file, line and column).
2. Upgrade legacy nets once (:mod:`harness.upgrade`): V0 -> V1 -> V2, legacy ``input*`` -> ``Input`` layer.
3. Fold the fork spelling ``ceil_mode`` of pooling into BVLC's ``round_mode`` (same field number, inverted meaning).
4. Apply ``include``/``exclude`` phase rules (``StateMeetsRule``) for ``phase`` (TEST by default) and ``stages``.
5. Make a train_val net usable for inference: data layers (Data, ImageData, ...) become ``Input`` layers of the shape
   the user gives (or the shape the layer itself states, e.g. MemoryData/DummyData); loss and accuracy layers are
   dropped together with the label blobs; Dropout stays (identity at TEST).
6. Check the graph: known layer types (``Python`` layers are refused, never imported), every bottom produced earlier,
   a blob rewritten only in place.
7. Attach weights by layer name, as ``Net::CopyTrainedLayersFrom`` does (the architecture always comes from the
   prototxt; extra source layers are ignored), normalising Caffe's legacy 4-D blob shapes, then check every blob
   against the shape the layer expects (:func:`harness.shapes.check_blob_shapes`).
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from .catalogue import CATALOGUE, DATA_TYPES, TRAINING_ONLY_TYPES, canonical_type, is_source, supported_types
from .errors import HarnessError, LoadWarning, ProtoError, ShapeError, UnsupportedLayer, UnsupportedParam
from .locations import layer_locations
from .net import Layer, Location, Net
from .proto import caffe_pb2 as pb
from .upgrade import upgrade_net

PathLike = str | os.PathLike

__all__ = [
    "load_net", "load_net_text", "parse_prototxt", "read_weights", "attach_weights", "blob_to_array",
    "net_to_prototxt", "write_caffemodel",
]


# ---------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------

def _read_text(path: PathLike) -> str:
    p = Path(path)
    if not p.exists():
        raise ProtoError(f"{p}: no such file")
    if p.is_dir():
        raise ProtoError(f"{p}: is a directory, expected a .prototxt file")
    data = p.read_bytes()
    if b"\x00" in data[:4096]:
        raise ProtoError(f"{p}: looks like a binary file (a .caffemodel?), expected a text .prototxt")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtoError(f"{p}: not UTF-8 text at byte {e.start}; expected a text .prototxt") from None


def parse_prototxt(text: str, source: str = "<string>") -> pb.NetParameter:
    """Parse prototxt text into a (possibly legacy) NetParameter; errors give ``source:line:column``."""
    net = pb.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as e:
        line = getattr(e, "GetLine", lambda: None)()
        col = getattr(e, "GetColumn", lambda: None)()
        msg = str(e)
        msg = re.sub(r"^\d+:\d+\s*:\s*", "", msg)
        where = f"{source}:{line}:{col}" if line is not None else source
        msg = msg.replace("caffe_harness.", "")
        raise ProtoError(f"{where}: {msg}") from None
    return net


# ---------------------------------------------------------------------------------------------------------------
# Net construction
# ---------------------------------------------------------------------------------------------------------------

def _state_meets_rule(rule: pb.NetStateRule, phase: int, level: int, stages: frozenset[str]) -> bool:
    """StateMeetsRule (net.cpp): phase, level range and stages must all match."""
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def _included(lay: pb.LayerParameter, phase: int, level: int, stages: frozenset[str], source: str) -> bool:
    """FilterNet (net.cpp): include rules (any met -> kept) or exclude rules (any met -> dropped), not both."""
    if len(lay.include) and len(lay.exclude):
        raise ProtoError(f"{source}: layer {lay.name!r} specifies both include and exclude rules")
    if len(lay.include):
        return any(_state_meets_rule(r, phase, level, stages) for r in lay.include)
    return not any(_state_meets_rule(r, phase, level, stages) for r in lay.exclude)


def _fold_ceil_mode(lay: pb.LayerParameter, source: str) -> None:
    pp = lay.pooling_param
    if pp.HasField("ceil_mode"):
        want = pb.PoolingParameter.CEIL if pp.ceil_mode else pb.PoolingParameter.FLOOR
        if pp.HasField("round_mode") and pp.round_mode != want:
            raise UnsupportedParam(
                f"{source}: Pooling {lay.name!r}: ceil_mode={str(pp.ceil_mode).lower()} contradicts "
                f"round_mode={pb.PoolingParameter.RoundMode.Name(pp.round_mode)}"
            )
        pp.round_mode = want
        pp.ClearField("ceil_mode")


# fork parameters folded into BVLC Caffe's at load, per type (the forks' pooling ceil_mode into round_mode)
LOAD_FOLDS = {"Pooling": _fold_ceil_mode}


def _parse_shape(dims: Iterable[int], what: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in dims)
    if not shape:
        raise ShapeError(f"{what}: empty shape")
    for d in shape:
        if d <= 0:
            raise ShapeError(f"{what}: dimension {d} in shape {list(shape)} must be positive")
    return shape


def _data_layer_shape(lay: pb.LayerParameter) -> list[tuple[int, ...] | None]:
    """The shapes a data layer states about its tops, where the prototxt alone defines them."""
    if lay.type == "MemoryData":
        m = lay.memory_data_param
        if m.batch_size and m.channels and m.height and m.width:
            return [(m.batch_size, m.channels, m.height, m.width)] + [(m.batch_size,)] * (len(lay.top) - 1)
    if lay.type == "DummyData":
        d = lay.dummy_data_param
        if len(d.shape):
            return [tuple(s.dim) for s in d.shape] * (len(lay.top) if len(d.shape) == 1 else 1)
        if len(d.num):
            return [(d.num[i], d.channels[i], d.height[i], d.width[i]) for i in range(len(d.num))]
    return [None] * len(lay.top)


@dataclass
class _Build:
    """What :func:`_build_layers` has read so far."""

    source: str
    phase: int
    input_shapes: Mapping[str, Sequence[int]]
    all_names: set[str]
    layers: list[Layer] = field(default_factory=list)
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dropped_blobs: set[str] = field(default_factory=set)
    produced: dict[str, str] = field(default_factory=dict)  # blob -> last layer that wrote it
    names: set[str] = field(default_factory=set)
    seen: dict[str, int] = field(default_factory=dict)  # Caffe name -> how many layers of that name so far
    used_input_shapes: set[str] = field(default_factory=set)


def _build_layers(
    netp: pb.NetParameter, source: str, phase: int, stages: frozenset[str], level: int,
    input_shapes: Mapping[str, Sequence[int]], notes: list[str], locations: Sequence[Location | None] = (),
) -> tuple[list[Layer], dict[str, tuple[int, ...]]]:
    st = _Build(source, phase, input_shapes, {lp.name for lp in netp.layer})
    for index, lp in enumerate(netp.layer):
        if not _included(lp, phase, level, stages, source):
            continue
        notes.extend(_mirror_notes(lp, source))
        lp = _copy(lp)
        name = _named(lp, st)
        if lp.type in TRAINING_ONLY_TYPES:
            st.dropped_blobs.update(lp.top)
            continue
        if lp.type in DATA_TYPES:
            lp = _data_as_input(lp, name, st)
        kind = canonical_type(lp.type)
        if kind not in CATALOGUE:
            raise UnsupportedLayer(
                f"{source}: layer {name!r} has unsupported type {lp.type!r}; supported: {', '.join(supported_types())}"
            )
        _check_blobs(lp, name, st)
        if kind in LOAD_FOLDS:
            LOAD_FOLDS[kind](lp, source)
        if is_source(kind):
            _input_shapes(lp, name, st)
        blobs = [blob_to_array(b, f"{source}: layer {name!r} blob {j}") for j, b in enumerate(lp.blobs)]
        lp.ClearField("blobs")
        at = locations[index] if index < len(locations) else None
        st.layers.append(Layer(name, lp.type, tuple(lp.bottom), tuple(lp.top), lp, tuple(_freeze(b) for b in blobs),
                               at))
        for t in lp.top:
            st.produced[t] = name
    unknown = set(input_shapes) - st.used_input_shapes
    if unknown:
        names = ", ".join(repr(u) for u in sorted(unknown))
        raise ShapeError(f"{source}: {names} {'is' if len(unknown) == 1 else 'are'} not an input of the net "
                         f"(inputs: {', '.join(repr(i) for i in st.inputs)})")
    return st.layers, st.inputs


def _named(lp: pb.LayerParameter, st: _Build) -> str:
    """The layer's harness name, after refusing a layer without a name or a type, and a Python layer."""
    source = st.source
    if not lp.name:
        raise ProtoError(f"{source}: a layer of type {lp.type!r} has no name")
    name = _unique_name(lp.name, st.names, st.all_names, st.seen)
    if not lp.type:
        raise ProtoError(f"{source}: layer {name!r} has no type")
    if lp.type == "Python":
        mod = f"{lp.python_param.module}.{lp.python_param.layer}" if lp.HasField("python_param") else "?"
        raise UnsupportedLayer(
            f"{source}: layer {name!r} is a Python layer ({mod}); Python layers are never imported or run by "
            f"the harness: replace it with a supported layer"
        )
    return name


def _data_as_input(lp: pb.LayerParameter, name: str, st: _Build) -> pb.LayerParameter:
    """A data-source layer replaced by an Input layer of the stated (or given) shape; its label tops dropped."""
    source = st.source
    stated = _data_layer_shape(lp)
    tops = list(lp.top)
    if not tops:
        raise ProtoError(f"{source}: data layer {name!r} has no top")
    shape = st.input_shapes.get(tops[0])
    if shape is None:
        shape = stated[0]
    if shape is None:
        raise ShapeError(
            f"{source}: {lp.type} layer {name!r} does not state the shape of {tops[0]!r}; give it "
            f"(Python: input_shapes={{{tops[0]!r}: (N, C, H, W)}}; CLI: --input-shape {tops[0]}=N,C,H,W)"
        )
    st.used_input_shapes.add(tops[0])
    shape = _parse_shape(shape, f"{source}: input {tops[0]!r}")
    st.dropped_blobs.update(tops[1:])  # labels
    new = pb.LayerParameter(name=name, type="Input")
    new.top.append(tops[0])
    new.input_param.shape.add().dim.extend(shape)
    return new


def _check_blobs(lp: pb.LayerParameter, name: str, st: _Build) -> None:
    """Every bottom produced earlier (not a dropped label), every top new or written in place, none twice."""
    source, produced = st.source, st.produced
    for b in lp.bottom:
        if b not in produced:
            if b in st.dropped_blobs:
                raise ProtoError(
                    f"{source}: layer {name!r} reads {b!r}, a label/training-only blob dropped in "
                    f"{pb.Phase.Name(st.phase)} phase"
                )
            raise ProtoError(f"{source}: layer {name!r}: unknown bottom blob {b!r} (no earlier layer produces it)")
    for i, t in enumerate(lp.top):
        if t in produced and not (i < len(lp.bottom) and lp.bottom[i] == t):
            raise ProtoError(
                f"{source}: layer {name!r}: top {t!r} is already produced by layer {produced[t]!r}; only an "
                f"in-place layer (top == bottom) may rewrite a blob"
            )
        if list(lp.top).count(t) > 1:
            raise ProtoError(f"{source}: layer {name!r} lists top {t!r} twice")


def _input_shapes(lp: pb.LayerParameter, name: str, st: _Build) -> None:
    """An input layer's top shapes (given ones first), recorded in ``st.inputs`` and in the layer itself, so that
    downstream code sees one truth."""
    source = st.source
    ip = lp.input_param
    if len(ip.shape) not in (0, 1, len(lp.top)):
        raise ShapeError(f"{source}: Input {name!r}: {len(ip.shape)} shapes for {len(lp.top)} tops "
                         f"(give 1 or {len(lp.top)})")
    for i, t in enumerate(lp.top):
        if t in st.input_shapes:
            shape = _parse_shape(st.input_shapes[t], f"{source}: input {t!r}")
            st.used_input_shapes.add(t)
        elif len(ip.shape) == 0:
            raise ShapeError(f"{source}: Input {name!r}: no shape for top {t!r}; give input_param.shape "
                             f"or --input-shape {t}=N,C,H,W")
        else:
            s = ip.shape[0] if len(ip.shape) == 1 else ip.shape[i]
            shape = _parse_shape(s.dim, f"{source}: Input {name!r} top {t!r}")
        st.inputs[t] = shape
    del ip.shape[:]
    for t in lp.top:
        ip.shape.add().dim.extend(st.inputs[t])


def _unique_name(name: str, names: set[str], all_names: set[str], seen: dict[str, int]) -> str:
    """The harness name of a layer: its Caffe name, or for the k-th layer of a name already used (Caffe accepts
    duplicate names, net.cpp) ``"<name>#<k>"`` (``conv#2``), skipping spellings some layer already has, so that every
    record key ``"<layer>/<top>"`` stays unique.  ``Layer.param.name`` keeps the Caffe name."""
    seen[name] = seen.get(name, 0) + 1
    out = name
    k = seen[name]
    while out in names or (k > 1 and out in all_names):
        out = f"{name}#{k}"
        k += 1
    names.add(out)
    return out


def _copy(lp: pb.LayerParameter) -> pb.LayerParameter:
    out = pb.LayerParameter()
    out.CopyFrom(lp)
    return out


def _freeze(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _outputs(layers: Sequence[Layer]) -> tuple[str, ...]:
    """Blobs still available after the last layer (Net::Init's available_blobs), in order of first production."""
    available: dict[str, None] = {}
    for lay in layers:
        for b in lay.bottoms:
            available.pop(b, None)
        for t in lay.tops:
            available[t] = None
    order: dict[str, int] = {}
    for lay in layers:
        for t in lay.tops:
            order.setdefault(t, len(order))
    return tuple(sorted(available, key=order.__getitem__))


def load_net_text(
    text: str,
    weights: PathLike | Mapping[str, Sequence[np.ndarray]] | None = None,
    phase: str = "TEST",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    stages: Iterable[str] = (),
    level: int = 0,
    source: str = "<string>",
    check: bool = True,
) -> Net:
    """Load a net from prototxt text. See :func:`load_net`.  Every layer gets its ``location`` in ``source`` (the
    line and column of its block, :mod:`harness.locations`)."""
    netp = parse_prototxt(text, source)
    return _net_from_param(netp, weights, phase, input_shapes, stages=stages, level=level, source=source, check=check,
                           locations=layer_locations(netp, text, source))


def load_net(
    prototxt: PathLike,
    weights: PathLike | Mapping[str, Sequence[np.ndarray]] | None = None,
    phase: str = "TEST",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    stages: Iterable[str] = (),
    level: int = 0,
    check: bool = True,
) -> Net:
    """Load ``prototxt`` (and optionally weights) into an immutable :class:`~harness.net.Net`.

    ``weights`` is a ``.caffemodel`` (binary NetParameter, V0/V1/V2), an ``.npz`` with keys ``"<layer>/<i>"``, or a
    mapping ``{layer: [arrays]}``.  ``input_shapes`` overrides or supplies the NCHW shape of net inputs (needed for
    train_val prototxts whose Data layers do not state one).  ``check`` runs shape inference, which validates every
    layer's parameters and every weight blob's shape.
    """
    source = str(prototxt)
    text = _read_text(prototxt)
    return load_net_text(text, weights, phase, input_shapes, stages=stages, level=level, source=source, check=check)


def _net_from_param(
    netp: pb.NetParameter, weights, phase: str, input_shapes, *, stages, level, source: str, check: bool,
    locations: Sequence[Location | None] = (),
) -> Net:
    if phase not in ("TEST", "TRAIN"):
        raise HarnessError(f"phase={phase!r} is not supported (TEST, TRAIN)")
    if netp.HasField("state") and netp.state.HasField("phase"):
        pass  # Caffe: the phase passed to the Net constructor wins over the prototxt's state
    netp = upgrade_net(netp, source, given_shapes=tuple(input_shapes or ()))
    if not len(netp.layer):
        raise ProtoError(f"{source}: the net has no layers")
    notes: list[str] = []
    layers, inputs = _build_layers(
        netp, source, pb.Phase.Value(phase), frozenset(stages), level, dict(input_shapes or {}), notes, locations
    )
    if not layers:
        raise ProtoError(f"{source}: no layers are left in {phase} phase")
    net = Net(
        name=netp.name or (Path(source).stem if not source.startswith("<") else "net"),
        layers=tuple(layers),
        inputs=MappingProxyType(dict(inputs)),
        outputs=_outputs(layers),
        has_weights=any(lay.blobs for lay in layers),
        source=source,
        meta=MappingProxyType({"load_notes": tuple(notes)}) if notes else MappingProxyType({}),
    )
    if weights is not None:
        wsource = str(weights) if not isinstance(weights, Mapping) else "<weights>"
        net = attach_weights(net, read_weights(weights) if not isinstance(weights, Mapping) else weights,
                             source=wsource)
        # so that shape errors about blobs name the weights file (harness.shapes.check_blob_shapes)
        net = replace(net, meta=MappingProxyType({**net.meta, "weights": wsource}))
    if check:
        _check(net)
    for msg in _load_warnings(net, weights is not None):
        warnings.warn(LoadWarning(msg), stacklevel=3)
    return net


def _load_warnings(net: Net, weighted: bool) -> list[str]:
    """One warning per duplicate layer name (Caffe accepts them, net.cpp; usually a copy-paste accident) and per
    random mirror (:func:`_mirror_notes`, kept in ``net.meta["load_notes"]``)."""
    groups: dict[str, list[str]] = {}
    for lay in net.layers:
        groups.setdefault(lay.param.name, []).append(lay.name)
    out = []
    for caffe_name, spelled in groups.items():
        if len(spelled) < 2:
            continue
        later = ", ".join(repr(n) for n in spelled[1:])
        what = ("they get Caffe's (constant) filler values" if weighted
                else "without weights every layer gets seeded random ones anyway")
        out.append(f"{net.source}: duplicate layer name {caffe_name!r} ({len(spelled)} layers; usually a copy-paste "
                   f"accident): Caffe accepts it and copies a weights file's {caffe_name!r} into the first layer of "
                   f"that name only; the later ones are recorded as {later} and keep their fillers ({what})")
    return out + list(net.meta.get("load_notes", ()))


_MIRROR_FIELDS = ("transform_param", "data_param", "image_data_param", "window_data_param")


def _mirror_notes(lp: pb.LayerParameter, source: str) -> list[str]:
    """``mirror: true`` (``transform_param``, or the legacy ``data_param``/``image_data_param``/``window_data_param``
    spelling that Caffe's upgrade moves there) flips each image at random in *every* phase (data_transformer.cpp:
    ``do_mirror = mirror() && Rand(2)``).  The harness reads no images and never mirrors: say so, by name."""
    out = []
    for fld in _MIRROR_FIELDS:
        if lp.HasField(fld) and getattr(lp, fld).mirror:
            out.append(f"{source}: layer {lp.name!r}: {fld}.mirror=true makes Caffe flip each image left-right at "
                       f"random even in TEST phase (mirror() && Rand(2)); the harness never mirrors (it reads no "
                       f"images: the inputs given are used as they are), so Caffe's own outputs of this layer are "
                       f"not reproducible")
    return out


def _check(net: Net) -> Net:
    from . import shapes

    shapes.infer_shapes(net)
    if net.has_weights:
        shapes.check_blob_shapes(net)
    return net


# ---------------------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------------------

def blob_to_array(blob: pb.BlobProto, what: str = "blob") -> np.ndarray:
    """A BlobProto as a float32 array of its shape (``shape`` field, else legacy num/channels/height/width).

    Legacy 4-D shapes are kept as stored; :func:`attach_weights` normalises them against what the layer expects.
    """
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    elif any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = (len(blob.data) or len(blob.double_data),)
    if any(d < 0 for d in shape):
        raise ShapeError(f"{what}: negative dimension in shape {list(shape)}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(blob.double_data):
        data = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    else:
        data = np.asarray(blob.data, dtype=np.float32)
    if data.size != count:
        raise ShapeError(f"{what}: holds {data.size} values but its shape {list(shape)} needs {count}")
    return data.reshape(shape)


def _blob_is_legacy(blob: pb.BlobProto) -> bool:
    return not blob.HasField("shape")


class Weights(dict):
    """``{layer name: [blobs]}`` plus ``legacy``: the (layer, index) pairs stored with legacy 4-D shapes, and
    ``repeats``: every source layer's blobs per name (a caffemodel saved from a net with duplicate names holds each)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.legacy: set[tuple[str, int]] = set()
        self.repeats: dict[str, list[list[np.ndarray]]] = {}  # every source layer of each name, in file order


def read_weights(path: PathLike) -> Weights:
    """Read ``{layer name: [blobs]}`` from a ``.caffemodel`` (V0/V1/V2) or an ``.npz`` (keys ``"<layer>/<i>"``)."""
    p = Path(path)
    if not p.exists():
        raise ProtoError(f"{p}: no such weights file")
    if p.is_dir():
        raise ProtoError(f"{p}: is a directory, expected a .caffemodel or .npz file")
    data = p.read_bytes()
    if data[:2] == b"PK" or p.suffix == ".npz":
        return _read_npz(p)
    if not data:
        raise ProtoError(f"{p}: empty weights file")
    head = data[:4096]
    if re.match(rb"\s*(#|name\s*:|layers?\s*\{|input\s*:)", head):
        raise ProtoError(f"{p}: looks like a text prototxt, not a binary .caffemodel (pass it as the net, "
                         f"and the trained weights as --weights)")
    wn = pb.WeightsNet()
    try:
        wn.ParseFromString(data)
    except DecodeError as e:
        raise ProtoError(f"{p}: not a valid .caffemodel (truncated or corrupt protobuf: {e})") from None
    out = Weights()
    entries: list[tuple[str, Sequence[pb.BlobProto]]] = []
    for lw in wn.layer:
        entries.append((lw.name, lw.blobs))
    for v1 in wn.layers:
        if v1.HasField("layer"):
            entries.append((v1.layer.name, v1.layer.blobs))
        else:
            entries.append((v1.name, v1.blobs))
    if not entries or not any(name for name, _ in entries):
        raise ProtoError(f"{p}: not a valid .caffemodel (it decodes to no named layers)")
    for name, blobs in entries:
        if not name:
            raise ProtoError(f"{p}: not a valid .caffemodel (a layer without a name)")
        arrays = [blob_to_array(b, f"{p}: layer {name!r} blob {j}") for j, b in enumerate(blobs)]
        # Net::CopyTrainedLayersFrom copies every source layer of a name, in order, into the first target layer of
        # that name: the last one wins (attach_weights checks that the earlier ones would have fitted too)
        out.repeats.setdefault(name, []).append(arrays)
        out[name] = arrays
        out.legacy = {x for x in out.legacy if x[0] != name}
        out.legacy.update((name, j) for j, b in enumerate(blobs) if _blob_is_legacy(b))
    return out


def _read_npz(p: Path) -> Weights:
    try:
        with np.load(p, allow_pickle=False) as z:
            items = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ProtoError(f"{p}: not a valid .npz weights file ({e})") from None
    out: dict[str, dict[int, np.ndarray]] = {}
    for key, arr in items.items():
        layer, sep, idx = key.rpartition("/")
        if not sep or not idx.isdigit() or not layer:
            raise ProtoError(f"{p}: weights key {key!r} is not of the form '<layer>/<blob index>' (e.g. 'conv1/0')")
        if arr.dtype.kind not in "fiu":
            raise ProtoError(f"{p}: weights {key!r} has dtype {arr.dtype}; expected floating point")
        out.setdefault(layer, {})[int(idx)] = np.asarray(arr, dtype=np.float32)
    result = Weights()
    for layer, blobs in out.items():
        idxs = sorted(blobs)
        if idxs != list(range(len(idxs))):
            raise ProtoError(f"{p}: layer {layer!r} has blob indices {idxs}; expected 0..{len(idxs) - 1}")
        result[layer] = [blobs[i] for i in idxs]
    return result


def attach_weights(net: Net, weights: Mapping[str, Sequence[np.ndarray]], source: str = "<weights>") -> Net:
    """Copy blobs onto the net's layers by name (Net::CopyTrainedLayersFrom); source layers not in the net are
    ignored, as Caffe ignores them.  Legacy 4-D blob shapes are normalised to the layer's expected shape when they
    are equal up to leading ones (Blob::ShapeEquals)."""
    expected = _expected_param_shapes(net)
    legacy_ids = getattr(weights, "legacy", set())
    new_layers = []
    matched = 0
    for lay in net.layers:
        if lay.name != lay.param.name:  # a later layer of a duplicate name: Caffe leaves its filler values
            new_layers.append(_with_fillers(lay, expected, net.source))
            continue
        src = weights.get(lay.name)
        if src is None:
            new_layers.append(lay)
            continue
        matched += 1
        exp = expected.get(lay.name)
        for earlier in getattr(weights, "repeats", {}).get(lay.name, [])[:-1]:
            _check_repeat(lay, earlier, exp, source)
        blobs = []
        for j, arr in enumerate(src):
            arr = np.array(arr, dtype=np.float32, copy=True)
            if exp is not None and j < len(exp) and arr.shape != tuple(exp[j]):
                arr = _normalise_legacy(arr, tuple(exp[j]), (lay.name, j) in legacy_ids)
            blobs.append(_freeze(arr))
        new_layers.append(replace(lay, blobs=tuple(blobs)))
    if matched == 0 and any(_needs_weights(lay) for lay in net.layers):
        raise ProtoError(f"{source}: none of its layer names match the net's layers "
                         f"(net layers: {', '.join(lay.name for lay in net.layers[:8])}...)")
    return replace(net, layers=tuple(new_layers), has_weights=True)


def _with_fillers(lay: Layer, expected: Mapping[str, Sequence[Sequence[int]]], source: str) -> Layer:
    """A later layer of a duplicate name with the blobs Caffe's fillers give it (:mod:`harness.fillers`)."""
    from .fillers import filler_blobs

    shapes = expected.get(lay.name, [])
    if not shapes:
        return replace(lay, blobs=())
    return replace(lay, blobs=tuple(_freeze(b) for b in filler_blobs(lay, shapes, source)))


def _check_repeat(lay: Layer, blobs: Sequence[np.ndarray], exp, source: str) -> None:
    """A weights file holding several layers of one name: Caffe copies every one of them, in turn, into the first
    layer of that name (the last copy wins), and aborts when one does not fit ("Incompatible number of blobs",
    "shape mismatch")."""
    if exp is None:
        return
    if len(blobs) != len(exp):
        raise ShapeError(f"{source}: a layer {lay.name!r} holds {len(blobs)} blob(s); the net's layer {lay.name!r} "
                         f"has {len(exp)} (Caffe copies every source layer of a name into the first layer of that "
                         f"name and refuses this: incompatible number of blobs)")
    for j, (arr, want) in enumerate(zip(blobs, exp)):
        if int(np.asarray(arr).size) != int(np.prod(want)):
            raise ShapeError(f"{source}: a layer {lay.name!r} blob {j} has shape {tuple(np.shape(arr))}, the net's "
                             f"layer {lay.name!r} expects {tuple(want)} (Caffe copies every source layer of a name "
                             f"into the first layer of that name and refuses this: shape mismatch)")


def _needs_weights(lay: Layer) -> bool:
    """Whether the layer has learned blobs (Scale/Bias take theirs from a second bottom when they have one)."""
    from .catalogue import has_learned_blobs

    return has_learned_blobs(lay.kind, len(lay.bottoms))


def _normalise_legacy(arr: np.ndarray, want: tuple[int, ...], legacy: bool) -> np.ndarray:
    """Blob::ShapeEquals for legacy blobs: (1,1,N,K) matches (N,K), (1,1,1,N) matches (N,)."""
    if not legacy:
        return arr
    squeezed = arr.shape
    while len(squeezed) > len(want) and squeezed[0] == 1:
        squeezed = squeezed[1:]
    if squeezed == want:
        return arr.reshape(want)
    return arr


def _expected_param_shapes(net: Net) -> dict[str, list[tuple[int, ...]]]:
    from . import shapes

    try:
        return shapes.expected_param_shapes(net)
    except HarnessError:
        return {}


# ---------------------------------------------------------------------------------------------------------------
# Writing (tests, fixtures, the strategies' pasteable cases)
# ---------------------------------------------------------------------------------------------------------------

def array_to_blob(arr: np.ndarray) -> pb.BlobProto:
    b = pb.BlobProto()
    b.shape.dim.extend(int(d) for d in arr.shape)
    b.data.extend(np.asarray(arr, dtype=np.float32).ravel().tolist())
    return b


def net_to_prototxt(net: Net) -> str:
    """Serialise a loaded net (V2, weights not included) back to prototxt text."""
    netp = pb.NetParameter(name=net.name)
    for lay in net.layers:
        netp.layer.add().CopyFrom(lay.param)
    return text_format.MessageToString(netp)


def write_caffemodel(net: Net, path: PathLike) -> None:
    """Write the net's weights as a binary V2 .caffemodel (layer names, types and blobs)."""
    netp = pb.NetParameter(name=net.name)
    for lay in net.layers:
        lp = netp.layer.add()
        lp.name = lay.param.name or lay.name  # Caffe's name: a later duplicate ('conv#2') is written as 'conv'
        lp.type = lay.type
        for a in lay.blobs:
            lp.blobs.add().CopyFrom(array_to_blob(a))
    from ._atomic import atomic_write

    atomic_write(path, netp.SerializeToString())
