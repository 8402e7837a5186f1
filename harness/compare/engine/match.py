"""Matching Caffe blob records (``"<layer>/<top>"``) to Keras layer outputs.

Order of precedence (later steps never undo earlier ones):

1. ``user``: ``--map caffe=keras`` pairs or a mapping file (``caffe`` is a Caffe layer name or a ``layer/top`` key,
   ``keras`` a Keras layer name, optionally ``name:index`` for a multi-output layer).
2. ``mapping``: the mapping a converted model carries (``model.harness_mapping``: ``{"<layer>/<top>": (keras_layer,
   output_index, layout)}``), or the ``mapping=`` argument.
3. ``name``: a Keras layer named exactly like a Caffe layer (``/`` written as ``.``, or as ``_`` when the kinds
   agree: ``conv1_bn`` for ``conv1/bn``).
4. ``position``: the remaining compute layers of both graphs, walked in execution order, paired by layer kind (a
   Caffe ``Convolution`` with a Keras ``Conv2D``, ``Pooling`` MAX with ``MaxPooling2D`` ..., a ``Convolution``
   producing a 1x1 map also with a ``Dense``), first among Keras layers fed by the same matched ancestors, preferring
   a candidate whose output shape agrees (NCHW or NHWC); among several that agree, the one whose parameters agree
   (ReLU slope, ELU alpha, weight statistics that a transpose, reshape or flip keeps: branches written in another
   order).  A candidate whose shape disagrees is taken only when matched layers feed it through helpers alone (a
   pooling of the wrong size right after its convolution: a bug to diagnose); otherwise the Caffe layer stays
   unmatched (a port that left an LRN out must not take the next LRN for it).  When a layer's own output disagrees
   with the Caffe shape, a chain of single-consumer ``Cropping2D``/``Reshape``/``Permute`` after it is followed and
   the pair compares that output (``Pair.via``: ``Conv2DTranspose`` + ``Cropping2D`` for Caffe's deconvolution pad).
5. ``position`` (pass-through): a Caffe ``Dropout`` not matched yet, with the one unused Keras pass-through layer
   (``PASS_KERAS``: ``Dropout``, ``Identity`` ...) that consumes the Keras tensor of its bottom; an ``Input`` record
   that is a net output, with its Keras input.

Pass-through layers are compared like any other (:func:`pairable`): every record a layer computes is a pair when it
has a Keras counterpart (a Dropout with ``scale_train: false`` scales at TEST; a Split copies), an ``Input`` record
only when its blob is a net output (elsewhere it is the value fed to both sides).  A pair's Keras tensor may be the
model input itself (``--map drop=data`` for a port that left the Dropout out).

Hand-written ports: a Keras layer with a fused activation (``Conv2D(..., activation="relu")``) is matched to the key
of the Caffe activation that follows the convolution (``relu1/conv1``), and a ``BatchNormalization`` with
center/scale to the ``Scale`` that follows Caffe's ``BatchNorm`` (``scale1/conv1``); the folded Caffe layers are the
pair's ``segment``.  Keras helper layers with no Caffe counterpart (``ZeroPadding2D``, ``Flatten``, ``Permute``,
``Reshape``, ``InputLayer``, ``Dropout``) are never matched by name or position to a computing Caffe layer (a
Keras pass-through layer only to a Caffe Dropout/Split, by its exact name or step 5) nor reported as unmatched, and Caffe's
pure re-layouts (``Flatten``, ``Reshape``) are not reported as unmatched: an NHWC port flattens in another order and
compensates in the next layer's weights, which the next pair checks.  Layout (``nhwc`` or ``caffe``, i.e.
Caffe's own axis order, or ``nc11``: a Caffe ``(N, C, 1, 1)`` blob held as ``(N, C)`` by a global pooling) is detected
from the shapes: NHWC wins a tie, as in the layout contract.  A user-defined Keras layer class is a positional
candidate for a Caffe layer that Keras has no layer for (LRN, Normalize, fork layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from ...catalogue import canonical_type, completes, is_source, traits, types_with, window
from ...errors import HarnessError
from ...net import Layer, Net
from ...params import relu_form, variant

HELPER_KERAS = {"InputLayer", "ZeroPadding2D", "Flatten", "Permute", "Reshape", "Dropout", "Cropping2D",
                "Identity", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ActivityRegularization"}
# The per-type facts come from the catalogue (harness.catalogue.TRAITS): what never needs a Keras counterpart,
# pure re-layouts (matched when a mapping or --map names them, never reported as unmatched: a correct NHWC port
# flattens in another order and compensates in the next layer's weights), activations a Keras layer may fuse, and
# the Keras classes / activation names that can stand for each type.
PASSIVE_CAFFE = set(types_with(role="passive"))
RELAYOUT_CAFFE = set(types_with(role="relayout"))
ACTIVATIONS = set(types_with(role="activation"))


@dataclass(frozen=True)
class Pair:
    key: str  # "<caffe layer>/<top>" compared
    caffe_layer: str
    caffe_top: str
    keras_layer: str
    output_index: int
    layout: str  # "nhwc" | "caffe"
    matched_by: str  # "mapping" | "name" | "position" | "user"
    segment: tuple[str, ...] = ()  # Caffe layers computed by this Keras layer, in order (last = caffe_layer)
    via: tuple[str, ...] = ()  # Keras helper layers after keras_layer whose output is compared (Cropping2D ...)


@dataclass
class Matching:
    pairs: list[Pair]
    unmatched_caffe: list[str]  # keys
    unmatched_keras: list[str]  # layer names
    folded: dict[str, str] = field(default_factory=dict)  # caffe key -> the pair key that covers it


def graph_model(model: Any) -> Any:
    """The functional graph of ``model`` (a Sequential's inner functional model)."""
    fn = getattr(model, "_functional", None)
    if fn is not None:
        return fn
    if not hasattr(model, "inputs") or model.inputs is None:
        raise HarnessError(f"Keras model {getattr(model, 'name', '?')!r} is not built (give it an Input)")
    return model


def keras_layers(model: Any) -> list[Any]:
    return list(graph_model(model).layers)


def layer_output_tensors(layer: Any) -> list[Any]:
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        raise HarnessError(f"Keras layer {layer.name!r} was never called in the model graph")
    return list(nodes[-1].outputs) if len(nodes) else []


def _kshape(t: Any) -> tuple:
    return tuple(t.shape)


def layout_for(caffe_shape: Sequence[int] | None, keras_shape: Sequence[Any], prefer: str = "nhwc") -> tuple[str, bool]:
    """(layout, shapes agree).  ``caffe_shape`` is NCHW (with N), ``keras_shape`` the tensor shape (batch None)."""
    if caffe_shape is None:
        return ("nhwc" if len(keras_shape) == 4 else "caffe"), True
    cs = tuple(int(d) for d in caffe_shape[1:])
    ks = tuple(keras_shape[1:])

    def same(a, b):
        return len(a) == len(b) and all(y is None or int(x) == int(y) for x, y in zip(a, b))

    if len(cs) == 3 and cs[1:] == (1, 1) and same((cs[0],), ks):
        return "nc11", True  # a global pooling without keepdims: (N, C) holds Caffe's (N, C, 1, 1)
    if len(cs) == 3:
        nhwc = (cs[1], cs[2], cs[0])
        if prefer == "nhwc" and same(nhwc, ks):
            return "nhwc", True
        if same(cs, ks):
            return "caffe", True
        if same(nhwc, ks):
            return "nhwc", True
        return ("caffe" if prefer == "caffe" else "nhwc"), False
    return "caffe", same(cs, ks)


# helper layers a port puts right after a compute layer to reach Caffe's shape (Cropping2D after Conv2DTranspose for
# Caffe's deconvolution pad, a Reshape or Permute back to Caffe's axes): followed when the layer's own output does not
# agree with the Caffe blob's shape
FOLLOW_KERAS = {"Cropping2D", "Reshape", "Permute"}


def _consumers(klayers: Sequence[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for kl in klayers:
        for node in getattr(kl, "_inbound_nodes", []):
            for t in node.input_tensors:
                out.setdefault(id(t), []).append(kl)
    return out


def follow_helpers(t: Any, caffe_shape: Sequence[int] | None, consumers: Mapping[int, list[Any]],
                   prefer: str = "nhwc") -> tuple[Any, tuple[str, ...], str, bool]:
    """(tensor, helper layers followed, layout, shapes agree): ``t`` itself when its shape agrees with the Caffe
    blob's, else the output of the chain of single-consumer helper layers (``FOLLOW_KERAS``) after it that agrees."""
    layout, ok = layout_for(caffe_shape, _kshape(t), prefer)
    if ok or caffe_shape is None:
        return t, (), layout, ok
    cur, via = t, []
    for _ in range(3):
        cs = consumers.get(id(cur), [])
        if len(cs) != 1 or type(cs[0]).__name__ not in FOLLOW_KERAS:
            break
        cur = layer_output_tensors(cs[0])[0]
        via.append(cs[0].name)
        lay2, ok2 = layout_for(caffe_shape, _kshape(cur), prefer)
        if ok2:
            return cur, tuple(via), lay2, True
    return t, (), layout, ok


def _keras_classes(layer: Layer) -> tuple[str, ...]:
    """The Keras classes that can stand for this Caffe layer (its type's variant: Pooling MAX/AVE, Eltwise op)."""
    kmap = traits(layer.kind).keras
    if "" in kmap:
        return kmap[""]
    return kmap.get(variant(layer), ()) if kmap else ()


def _act_names(kind: str) -> tuple[str, ...]:
    return traits(kind).activations


def _keras_activation(kl: Any) -> str | None:
    act = getattr(kl, "activation", None)
    if act is None or type(kl).__name__ in ("Activation",):
        return None
    name = getattr(act, "__name__", str(act))
    return None if name in ("linear", "identity") else name


def _is_custom(kl: Any) -> bool:
    """A user-defined Keras layer class (not one of Keras' own)."""
    return not type(kl).__module__.startswith(("keras.", "keras_", "tf_keras.", "tensorflow."))


def _keras_kind_ok(caffe_layer: Layer, kl: Any, out_shape: Sequence[int] | None = None) -> bool:
    cls = type(kl).__name__
    if cls == "Dense" and window(caffe_layer.kind) == "conv" and not traits(caffe_layer.kind).depthwise:
        # a classifier convolution on a 1x1 map (MobileNet's fc7 after global pooling) ported as a Dense
        return out_shape is not None and len(out_shape) == 4 and tuple(out_shape[2:]) == (1, 1)
    allowed = _keras_classes(caffe_layer)
    if _is_custom(kl) and ("Lambda" in allowed or not allowed):
        # Keras has no layer for it (LRN, Normalize, fork layers): a hand port writes its own layer class
        return True
    if cls not in allowed:
        return False
    if cls == "Activation":
        name = getattr(kl.activation, "__name__", "")
        return name in _act_names(caffe_layer.kind)
    return True


def _next_consumer(net: Net, idx: int, blob: str) -> int | None:
    for j in range(idx + 1, len(net.layers)):
        if blob in net.layers[j].bottoms:
            return j
    return None


def parse_user_map(items: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["conv1=conv2d", ...]`` or a dict -> {caffe: keras}."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    out = {}
    for it in items:
        if "=" not in it:
            raise HarnessError(f"--map {it!r}: expected CAFFE=KERAS (a Caffe layer name or layer/top, a Keras layer)")
        c, k = it.split("=", 1)
        if not c or not k:
            raise HarnessError(f"--map {it!r}: expected CAFFE=KERAS")
        out[c.strip()] = k.strip()
    return out


def normalize_mapping(mapping: Mapping[str, Any] | None) -> tuple[dict[str, tuple[str, int, str | None]],
                                                                   dict[str, str]]:
    """Accept the converter's mapping (``{"keys": {key: {"layer", "index", "layout"}}, "folded": {scale: bn}}``) or
    a plain ``{key: (keras_layer, index, layout)}``; returns ({key: (layer, index, layout)}, {folded layer: into})."""
    if not mapping:
        return {}, {}
    raw = mapping.get("keys") if isinstance(mapping.get("keys"), Mapping) else mapping
    folded = {}
    if isinstance(mapping.get("folded"), Mapping):
        folded = {str(bn): str(scale) for scale, bn in mapping["folded"].items()}
    out: dict[str, tuple[str, int, str | None]] = {}
    for key, spec in raw.items():
        if not isinstance(key, str) or "/" not in key:
            continue
        if isinstance(spec, Mapping):
            out[key] = (str(spec["layer"]), int(spec.get("index", 0)), spec.get("layout"))
        elif isinstance(spec, (list, tuple)) and spec:
            out[key] = (str(spec[0]), int(spec[1]) if len(spec) > 1 else 0, spec[2] if len(spec) > 2 else None)
        elif isinstance(spec, str):
            out[key] = (spec, 0, None)
    return out, folded


# Keras layers that pass data through at inference: the counterpart of a Caffe Dropout (or an identity Split top)
PASS_KERAS = {"Dropout", "Identity", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
              "GaussianNoise", "AlphaDropout", "ActivityRegularization"}


def pairable(net: Net, lay: Layer, key: str) -> bool:
    """Whether Caffe record ``key`` of ``lay`` is compared when it has a Keras counterpart: every record a layer
    computes (pass-through layers included: a Dropout with ``scale_train: false`` scales at TEST, a Split copies),
    and an ``Input`` record only when its blob is a net output (an input is fed to both sides, so comparing it
    elsewhere tests the feed, not the model; as the output of a net that computes nothing it is what the user
    sees)."""
    if not is_source(lay.kind):
        return True
    return any(k == key and t in net.outputs and _last_record(net, t) == key for t, k in zip(lay.tops, lay.keys()))


def _last_record(net: Net, blob: str) -> str | None:
    recs = [k for lay in net.layers for t, k in zip(lay.tops, lay.keys()) if t == blob]
    return recs[-1] if recs else None


def match(net: Net, model: Any, *, mapping: Mapping[str, Any] | None = None,
          user_map: Mapping[str, str] | None = None, shapes: Mapping[str, tuple[int, ...]] | None = None,
          prefer_layout: str = "nhwc") -> Matching:
    """Pair Caffe keys with Keras layer outputs.  ``shapes``: reference NCHW shape of every key (used for layout and
    positional matching)."""
    st = _Pairing(net, model, dict(shapes or {}), prefer_layout)
    st.by_user(user_map or {})  # 1. user
    st.by_mapping(mapping)  # 2. saved mapping
    if not mapping:  # 3/4. names and positions (5. pass-through layers after the layer feeding them)
        _match_structural(net, model, st.klayers, st.kby, st.pairs, st.used_keras, st.add, st.shapes, prefer_layout,
                          st.key_parts, st.consumers)
    st.user_spans(model)  # 6. a user-mapped Keras layer that computes a span of Caffe layers
    return st.matching()


class _Pairing:
    """The pairs found so far and the Keras outputs they use (state shared by the steps of :func:`match`)."""

    def __init__(self, net: Net, model: Any, shapes: dict[str, tuple[int, ...]], prefer_layout: str) -> None:
        self.net, self.shapes, self.prefer = net, shapes, prefer_layout
        self.klayers = keras_layers(model)
        self.kby = {kl.name: kl for kl in self.klayers}
        self.key_index = {k: i for i, k in enumerate(net.keys())}
        # layer names may contain "/" (inception_3a/1x1): never split a key, look it up
        self.key_parts = {f"{lay.name}/{t}": (lay.name, t) for lay in net.layers for t in lay.tops}
        self.layer_index = {lay.name: i for i, lay in enumerate(net.layers)}
        self.pairs: dict[str, Pair] = {}
        self.used_keras: set[tuple[str, int]] = set()
        self.folded: dict[str, str] = {}
        self.consumers = _consumers(self.klayers)
        self.bottoms = bottom_keys(net)  # for the walk up from a user-mapped span (step 6)
        self.layer_of = {k: lay for lay in net.layers for k in lay.keys()}

    def add(self, key: str, kname: str, oi: int, by: str, layout: str | None = None,
            segment: tuple[str, ...] = ()) -> None:
        lname, top = self.key_parts[key]
        outs = layer_output_tensors(self.kby[kname])
        if oi >= len(outs):
            raise HarnessError(f"Keras layer {kname!r} has {len(outs)} output(s); output index {oi} requested")
        via: tuple[str, ...] = ()
        if layout is None:
            _, via, layout, _ = follow_helpers(outs[oi], self.shapes.get(key), self.consumers, self.prefer)
        self.pairs[key] = Pair(key, lname, top, kname, oi, layout, by, segment or (lname,), via)
        self.used_keras.add((kname, oi))
        for v in via:
            self.used_keras.add((v, 0))
        for s in segment[:-1]:
            for k2 in self.net.layer(s).keys():
                self.folded[k2] = key

    def resolve_caffe(self, c: str) -> list[str]:
        if c in self.key_index:
            return [c]
        if c in self.layer_index:
            return self.net.layers[self.layer_index[c]].keys()
        raise HarnessError(f"--map: {c!r} is neither a Caffe layer nor a layer/top record of the net "
                           f"(layers like {', '.join(lay.name for lay in self.net.layers[:4])})")

    def by_user(self, user_map: Mapping[str, str]) -> None:
        """Step 1: ``--map caffe=keras``.  A Keras layer that fuses the activation after the mapped Caffe layer
        (``Conv2D(activation="softmax")`` for a conv followed by a Softmax) computes both: the pair is the
        activation's record, its segment both layers."""
        net, kby = self.net, self.kby
        for c, k in user_map.items():
            kname, _, oi = k.partition(":")
            if kname not in kby:
                raise HarnessError(f"--map {c}={k}: the Keras model has no layer {kname!r} "
                                   f"(layers: {', '.join(list(kby)[:12])}{' ...' if len(kby) > 12 else ''})")
            keys, segment = self.resolve_caffe(c), ()
            base = int(oi) if oi else 0
            seq = _fold(net, self.layer_index[c], kby[kname]) if c in self.layer_index and not oi else []
            if len(seq) > 1:
                keys, segment = net.layers[seq[-1]].keys(), tuple(net.layers[j].name for j in seq)
            for i, key in enumerate(keys):
                self.add(key, kname, base + i, "user", None, segment)

    def by_mapping(self, mapping: Mapping[str, Any] | None) -> None:
        entries, folded_layers = normalize_mapping(mapping)
        layer_by_name = {lay.name: lay for lay in self.net.layers}
        for key, (kname, oi, layout) in entries.items():
            if key in self.pairs or key not in self.key_index or kname not in self.kby:
                continue
            lname = self.key_parts[key][0]
            if not pairable(self.net, layer_by_name[lname], key):
                continue
            segment = tuple(b for b, s in folded_layers.items() if s == lname) + (lname,)
            self.add(key, kname, oi, "mapping", layout, segment)

    def user_spans(self, model: Any) -> None:
        """Step 6: a Keras layer the user mapped to Caffe layer C may compute more than C (a custom block whose call()
        runs conv + ReLU + pool, a wrapped sub-model): the Caffe layers between the records feeding that Keras layer
        (the pairs, or the net inputs, its inputs come from) and C, when no other pair computes them, are the pair's
        span, judged with the bound propagated through it and covered by it (not "unmatched")."""
        for key, p in list(self.pairs.items()):
            if p.matched_by != "user":
                continue
            feeds = self._keras_feeds(model, self.kby[p.keras_layer])
            inside = self._caffe_between(p.segment[0] if p.segment else p.caffe_layer, feeds)
            if not inside:
                continue
            segment = tuple(sorted(inside | set(p.segment or (p.caffe_layer,)), key=self.layer_index.__getitem__))
            self.pairs[key] = replace(p, segment=segment)
            for s in segment[:-1]:
                for k2 in self.net.layer(s).keys():
                    self.folded[k2] = key

    def _keras_feeds(self, model: Any, kl: Any) -> set[str]:
        """The Caffe records paired with the tensors ``kl`` is computed from (the nearest paired Keras outputs up
        its graph, helper layers passed through; a model input stands for its Caffe input record)."""
        by_out = {(p.keras_layer, p.output_index): p.key for p in self.pairs.values()}
        by_out.update({(v, 0): p.key for p in self.pairs.values() for v in p.via})
        inputs = {id(t): blob for blob, t in pair_inputs(self.net, model)}
        source_key = {t: k for lay in self.net.layers if is_source(lay.kind) for t, k in zip(lay.tops, lay.keys())}
        feeds: set[str] = set()

        def visit(t: Any, op: Any, ni: int) -> str:
            hit = by_out.get((op.name, t._keras_history[2]))
            if hit is None and id(t) in inputs:
                hit = source_key.get(inputs[id(t)])
            if hit is not None:
                feeds.add(hit)
                return "stop"
            return "up"

        nodes = getattr(kl, "_inbound_nodes", [])
        walk_keras_up(nodes[-1].input_tensors if nodes else [], visit)
        return feeds

    def _caffe_between(self, first: str, feeds: set[str]) -> set[str]:
        """The Caffe layers on the paths from the records ``feeds`` down to layer ``first`` (exclusive), when the
        walk up from ``first`` reaches every one of ``feeds`` and passes no record another pair computes; else
        none."""
        if not feeds:
            return set()
        passed: list[str] = []

        def stop(k: str) -> bool:
            if k in feeds or k in self.pairs or k in self.folded:
                return True
            passed.append(k)
            return False

        reached = walk_up(self.bottoms[first], self.bottoms, self.layer_of, stop)
        if set(reached) != feeds:
            return set()
        return {self.key_parts[k][0] for k in passed if k in self.key_parts and
                not is_source(self.net.layer(self.key_parts[k][0]).kind)}

    def matching(self) -> Matching:
        net = self.net
        covered = set(self.pairs) | set(self.folded)
        unmatched_caffe = [k for lay in net.layers if lay.kind not in PASSIVE_CAFFE | RELAYOUT_CAFFE
                           for k in lay.keys() if k not in covered]
        used_names = {n for n, _ in self.used_keras}
        caffe_knames = {lay.name.replace("/", ".") for lay in net.layers} | {lay.name for lay in net.layers} | \
            {lay.name.replace("/", "_") for lay in net.layers}
        unmatched_keras = [kl.name for kl in self.klayers if kl.name not in used_names and
                           type(kl).__name__ not in HELPER_KERAS and
                           not ("__" in kl.name and kl.name.split("__", 1)[0] in caffe_knames)]
        ordered = sorted(self.pairs.values(), key=lambda p: self.key_index[p.key])
        return Matching(ordered, unmatched_caffe, unmatched_keras, self.folded)


def _fold(net: Net, idx: int, kl: Any) -> list[int]:
    """Indices of the Caffe layers a Keras layer computes, starting at Caffe layer ``idx``: the layer itself, then a
    Scale after a BatchNorm (Keras BatchNormalization with center/scale) and an activation fused into the Keras
    layer."""
    seq = [idx]
    lay = net.layers[idx]
    cls = type(kl).__name__
    top = lay.tops[0] if lay.tops else None
    if top is None:
        return seq
    if cls == "BatchNormalization" and traits(lay.kind).completed_by and (getattr(kl, "scale", False) or
                                                                          getattr(kl, "center", False)):
        j = _next_consumer(net, seq[-1], top)
        if j is not None and completes(lay.kind, net.layers[j].kind) and len(net.layers[j].bottoms) == 1:
            seq.append(j)
            top = net.layers[j].tops[0]
    act = _keras_activation(kl)
    if act is not None:
        j = _next_consumer(net, seq[-1], top)
        if j is not None and net.layers[j].kind in ACTIVATIONS and act in _act_names(net.layers[j].kind):
            seq.append(j)
    return seq


def _match_structural(net, model, klayers, kby, pairs, used_keras, add, shapes, prefer_layout, key_parts,
                      consumers) -> None:
    """Steps 3 and 4 of the module docstring: names, then positions."""
    m = _Structural(net, klayers, kby, pairs, used_keras, add, shapes, prefer_layout, key_parts, consumers, model)
    m.by_name()
    m.by_position()
    m.deferred_names()
    m.passthrough()


class _Structural:
    """Name and position matching over the Caffe layers not matched yet (state shared by the two walks)."""

    def __init__(self, net, klayers, kby, pairs, used_keras, add, shapes, prefer_layout, key_parts,
                 consumers, model) -> None:
        self.model = model
        self.net, self.klayers, self.kby, self.pairs, self.used_keras = net, klayers, kby, pairs, used_keras
        self.add, self.shapes, self.prefer, self.key_parts, self.consumers = (add, shapes, prefer_layout, key_parts,
                                                                              consumers)
        index_of = {lay.name: i for i, lay in enumerate(net.layers)}
        self.taken_caffe: set[int] = {index_of[key_parts[k][0]] for k in pairs}
        self.deferred: list[tuple[int, Any]] = []  # name pairs whose shapes disagree (by_name -> deferred_names)

    def take(self, idx: int, kl: Any, by: str) -> None:
        net = self.net
        seq = _fold(net, idx, kl)
        last = net.layers[seq[-1]]
        segment = tuple(net.layers[i].name for i in seq)
        outs = layer_output_tensors(kl)
        for oi, key in enumerate(last.keys()):
            if oi < len(outs) and key not in self.pairs:
                self.add(key, kl.name, oi, by, None, segment)
        self.taken_caffe.update(seq)

    def by_name(self) -> None:
        for i, lay in enumerate(self.net.layers):
            if i in self.taken_caffe or is_source(lay.kind) or not lay.tops:
                continue
            kl = self.kby.get(lay.name) or self.kby.get(lay.name.replace("/", "."))
            if kl is not None and lay.kind in PASSIVE_CAFFE:  # a pass-through layer named like its Caffe layer
                if type(kl).__name__ in PASS_KERAS and not any(n == kl.name for n, _ in self.used_keras):
                    self.take(i, kl, "name")
                continue
            if kl is None and "/" in lay.name:  # Keras names cannot hold "/": users write "conv1_bn" for "conv1/bn"
                kl = self.kby.get(lay.name.replace("/", "_"))
                if kl is not None and not _keras_kind_ok(lay, kl, self.shapes.get(lay.keys()[0])):
                    kl = None  # a look-alike name must also fit the kind
            if kl is not None and type(kl).__name__ not in HELPER_KERAS and \
                    not any(n == kl.name for n, _ in self.used_keras):
                j = self._batchnorm_before(i, kl)
                if self.shape_ok(i if j is None else j, kl):
                    self.take(i if j is None else j, kl, "name")
                else:  # a name is a hint, a shape that cannot fit is proof: positions first (heads named the
                    self.deferred.append((i if j is None else j, kl))  # other way round), then the name (a bug)

    def deferred_names(self) -> None:
        """The name pairs whose shapes disagree, for the Caffe layers and Keras layers position matching left: a
        layer of the wrong size is still paired by its name, so the divergence is diagnosed there."""
        for i, kl in self.deferred:
            if i not in self.taken_caffe and kl.name not in self.used_names:
                self.take(i, kl, "name")
                self.used_names.add(kl.name)

    def _batchnorm_before(self, i: int, kl: Any) -> int | None:
        """A Keras BatchNormalization named after Caffe's Scale computes the BatchNorm before it too: the index of
        that BatchNorm (not matched yet), so the pair's span is BatchNorm + Scale, as when it is named after the
        BatchNorm."""
        lay = self.net.layers[i]
        if type(kl).__name__ != "BatchNormalization" or len(lay.bottoms) != 1:
            return None
        j = next((j for j in range(i - 1, -1, -1) if lay.bottoms[0] in self.net.layers[j].tops), None)
        if j is None or j in self.taken_caffe or not completes(self.net.layers[j].kind, lay.kind):
            return None
        return j if i in _fold(self.net, j, kl) else None

    # ------------------------------------------------------------------ positions

    def caffe_anc(self, idx: int) -> frozenset:
        """The Keras layers (or inputs) matched to the nearest matched Caffe ancestors of layer ``idx``."""
        folded = {k2: p.key for p in self.pairs.values() for s_ in p.segment[:-1] for k2 in self.net.layer(s_).keys()}
        out: set[str] = set()
        for k in walk_up(self.bottom_keys[self.net.layers[idx].name], self.bottom_keys, self.layer_of,
                         lambda k: k in self.pairs or k in folded):
            if k in self.pairs or k in folded:
                out.add(self.pairs[self.pairs[k].key if k in self.pairs else folded[k]].keras_layer)
            else:
                blob = self.key_parts[k][1] if k in self.key_parts else k
                out.add("input:" + self.input_names.get(blob, blob))
        return frozenset(out)

    def upstream(self, kl: Any) -> tuple[list[Any], list[Any]]:
        """Walk the Keras graph up from ``kl``: the layers where the walk stops (matched layers and inputs) and the
        unmatched layers it passed through."""
        nodes = getattr(kl, "_inbound_nodes", [])
        stops: list[Any] = []
        passed: list[Any] = []

        def visit(t: Any, op: Any, ni: int) -> str:
            if op.name in self.used_names or type(op).__name__ == "InputLayer":
                stops.append(op)
                return "stop"
            passed.append(op)
            return "up"

        walk_keras_up(nodes[-1].input_tensors if nodes else [], visit)
        return stops, passed

    def keras_anc(self, kl: Any) -> frozenset:
        via_of = {v: p.keras_layer for p in self.pairs.values() for v in p.via}
        return frozenset(via_of.get(op.name, op.name) if op.name in self.used_names else "input:" + op.name
                         for op in self.upstream(kl)[0])

    def direct(self, kl: Any) -> bool:
        """Whether only helper layers lie between ``kl`` and the matched layers (or inputs) feeding it."""
        return all(type(op).__name__ in HELPER_KERAS for op in self.upstream(kl)[1])

    def shape_ok(self, i: int, kl: Any) -> bool:
        seq = _fold(self.net, i, kl)
        key = self.net.layers[seq[-1]].keys()[0]
        outs = layer_output_tensors(kl)
        return key in self.shapes and follow_helpers(outs[0], self.shapes[key], self.consumers, self.prefer)[3]

    def by_position(self) -> None:
        """Structural first (same matched ancestors on both sides), then the sequential walk."""
        net = self.net
        self.compute = [kl for kl in self.klayers if type(kl).__name__ not in HELPER_KERAS]
        self.kpos = 0
        self.used_names = {n for n, _ in self.used_keras}
        self.input_names = {blob: t._keras_history[0].name for blob, t in pair_inputs(net, self.model)}
        self.bottom_keys = bottom_keys(net)
        self.layer_of = {k: lay for lay in net.layers for k in lay.keys()}
        for i, lay in enumerate(net.layers):
            if i in self.taken_caffe or lay.kind in PASSIVE_CAFFE:
                continue
            chosen = self._structural_choice(i, lay)
            if chosen is None:
                chosen = self._sequential_choice(i, lay)
            if chosen is None or chosen < 0:
                continue
            kl = self.compute[chosen]
            self.take(i, kl, "position")
            self.used_names.add(kl.name)
            self.kpos = max(self.kpos, chosen + 1)

    def passthrough(self) -> None:
        """Step 5: a Caffe Dropout not matched yet is paired with the one unused Keras pass-through layer
        (``PASS_KERAS``) that consumes the Keras tensor of its bottom; an ``Input`` record that is a net output with
        its Keras input (by name, else by position)."""
        net = self.net
        inputs = {kl.name: kl for kl in self.klayers if type(kl).__name__ == "InputLayer"}
        for i, lay in enumerate(net.layers):
            if i in self.taken_caffe or not lay.keys():
                continue
            if is_source(lay.kind):
                for key, top in zip(lay.keys(), lay.tops):
                    kname = self.input_names.get(top)
                    if kname in inputs and key not in self.pairs and pairable(net, lay, key):
                        self.add(key, kname, 0, "position")
                continue
            # Dropout alone, not a trait: the one passive type a Keras port writes as a layer of its own (a Split is
            # a fan-out Keras has no layer for; Input and Silence compute nothing)
            if lay.kind != "Dropout" or len(lay.bottoms) != 1:
                continue
            t = self.tensor_of(self.bottom_keys[lay.name][0], inputs)
            cands = [kl for kl in self.consumers.get(id(t), []) if type(kl).__name__ in PASS_KERAS and
                     kl.name not in self.used_names] if t is not None else []
            if len(cands) == 1:
                self.take(i, cands[0], "position")
                self.used_names.add(cands[0].name)

    def tensor_of(self, key: str, inputs: Mapping[str, Any]) -> Any:
        """The Keras tensor holding Caffe record ``key``: its pair's (or the pair covering it), or a Keras input."""
        folded = {k2: p.key for p in self.pairs.values() for s_ in p.segment[:-1] for k2 in self.net.layer(s_).keys()}
        p = self.pairs.get(key) or self.pairs.get(folded.get(key, ""))
        if p is not None:
            t = layer_output_tensors(self.kby[p.keras_layer])[p.output_index]
            for v in p.via:
                t = layer_output_tensors(self.kby[v])[0]
            return t
        lay = self.layer_of.get(key)
        if lay is not None and is_source(lay.kind):
            kname = self.input_names.get(self.key_parts[key][1])
            return layer_output_tensors(inputs[kname])[0] if kname in inputs else None
        return None

    def _structural_choice(self, i: int, lay: Layer) -> int | None:
        """A Keras layer of the right kind fed by the same matched ancestors (None: no such candidate; -1: there
        are candidates but none can be trusted)."""
        anc = self.caffe_anc(i)
        structural = [j for j, kl in enumerate(self.compute)
                      if kl.name not in self.used_names and _keras_kind_ok(lay, kl, self.shapes.get(lay.keys()[0]))
                      and self.keras_anc(kl) == anc]
        if not structural:
            return None
        oks = [self.shape_ok(i, self.compute[j]) for j in structural]
        if not any(oks) and lay.keys() and lay.keys()[0] in self.shapes:
            # no shape agrees: trust only a candidate fed straight by the matched ancestors (a pooling of the
            # wrong size right after its convolution), not one reached past unmatched compute layers
            structural = [j for j in structural if self.direct(self.compute[j])]
            if not structural:
                return -1
            oks = [False] * len(structural)
        return _best(lay, structural, oks, self.compute)

    def _sequential_choice(self, i: int, lay: Layer) -> int | None:
        """The next unused Keras layers of the right kind in execution order (up to 4), by shape and parameters."""
        cands = []
        for j in range(self.kpos, len(self.compute)):
            kl = self.compute[j]
            if kl.name in self.used_names or not _keras_kind_ok(lay, kl, self.shapes.get(lay.keys()[0])):
                continue
            cands.append(j)
            if len(cands) >= 4:
                break
        if not cands:
            return None
        oks = [self.shape_ok(i, self.compute[j]) for j in cands]
        if not any(oks) and lay.keys() and lay.keys()[0] in self.shapes:
            # neither the graph position nor the shape says it is this layer: the port probably left the
            # Caffe layer out (an LRN); taking a later layer of that kind would shift every match after it
            return None
        return _best(lay, cands, oks, self.compute)


def _best(lay: Layer, cands: list[int], shape_oks: list[bool], compute: Sequence[Any]) -> int:
    """The candidate for Caffe layer ``lay``: the first whose output shape agrees; when several agree (parallel
    branches of one shape written in another order than Caffe's), the one whose parameters agree best."""
    oks = [j for j, ok in zip(cands, shape_oks) if ok]
    if not oks:
        return cands[0]
    if len(oks) == 1:
        return oks[0]
    return min(oks, key=lambda j: (_param_distance(lay, compute[j]), oks.index(j)))


def weight_distance(lay: Layer, kl: Any) -> float:
    """0 when the Keras layer's first weight has the Caffe layer's first blob's statistics (sum of squares, sum of
    |w|, min, max: kept by any transpose, reshape or flip), up to 1 when not (or when there is nothing to compare)."""
    import numpy as np

    ws = kl.get_weights() if lay.blobs else []
    if not ws or np.size(ws[0]) != np.size(lay.blobs[0]):
        return 1.0
    sa, sb = _weight_stats(lay.blobs[0]), _weight_stats(ws[0])
    return float(min(1.0, np.max(np.abs(sa - sb) / np.maximum(np.abs(sa), 1e-30))))


def _param_distance(lay: Layer, kl: Any) -> float:
    """0 when the Keras layer's parameters look like the Caffe layer's, up to 1 when not.  Weights are compared by
    statistics a transposition, reshape or flip keeps (sum of squares, sum of |w|, min, max), so a port with a
    layout bug still finds its layer."""
    import numpy as np

    fn = _PARAM_DISTANCE.get(canonical_type(lay.kind))
    try:
        return fn(lay, kl) if fn is not None else 0.0
    except Exception:
        return 1.0


def _slope_distance(lay: Layer, kl: Any) -> float:
    import numpy as np

    ks = getattr(kl, "negative_slope", None)
    ks = 0.0 if ks is None else float(np.asarray(ks))
    return min(1.0, abs(relu_form(lay)[0] - ks))


def _alpha_distance(lay: Layer, kl: Any) -> float:
    ka = getattr(kl, "alpha", None)
    return 0.0 if ka is None else min(1.0, abs(float(lay.p("elu_param").alpha) - float(ka)))


def _weights_distance(lay: Layer, kl: Any) -> float:
    return weight_distance(lay, kl) if lay.blobs else 0.0


_STATS_BLOCK = 1 << 20
# the parameter that tells two candidates apart, per type: a leaky slope, an alpha, or one weight blob a port may
# lay out another way (compared by statistics a transpose keeps); a type not listed has nothing to compare
_PARAM_DISTANCE = {"ReLU": _slope_distance, "ELU": _alpha_distance,
                   **{t: _weights_distance for t in types_with(linear=True) | {"PReLU"}}}


def _weight_stats(w: Any) -> Any:
    """(sum of squares, sum of |w|, min, max) of a weight in float64, a block of 1M elements at a time: VGG16's fc6
    (102M elements) as one float64 copy, squared, took 1.6 GB to choose between two Dense layers."""
    import numpy as np

    flat = np.asarray(w).reshape(-1)
    acc = np.array([0.0, 0.0, np.inf, -np.inf])
    for o in range(0, flat.size, _STATS_BLOCK):
        blk = flat[o:o + _STATS_BLOCK].astype(np.float64)
        acc += (float(np.dot(blk, blk)), float(np.abs(blk).sum()), 0.0, 0.0)
        acc[2], acc[3] = min(acc[2], float(blk.min())), max(acc[3], float(blk.max()))
    return acc


def walk_keras_up(start: Iterable[Any], visit: Any) -> None:
    """The one walk up the Keras functional graph: from tensors ``start``, depth first, each tensor once, through
    the inputs of the node that produced it.  ``visit(tensor, layer, node index)`` answers per tensor: ``"up"``
    (walk on through the layer's inputs), ``"stop"`` (not above this tensor) or ``"end"`` (stop the walk)."""
    stack = list(start)
    seen: set[int] = set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        op, ni, _ = t._keras_history
        step = visit(t, op, ni)
        if step == "end":
            return
        if step == "up":
            stack.extend(op._inbound_nodes[ni].input_tensors)


def walk_up(start: Iterable[str], bottoms: Mapping[str, Sequence[str]], layer_of: Mapping[str, Layer],
            stop: Any) -> list[str]:
    """The one walk up the Caffe graph: from records ``start`` through each record's layer's bottom records
    (``bottoms``: :func:`bottom_keys`), the records where it stops, in the order reached: those ``stop(key)`` holds
    for, net inputs, and records no layer computes."""
    out: list[str] = []
    seen: set[str] = set()
    stack = list(start)
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        lay = layer_of.get(k)
        if stop(k) or lay is None or is_source(lay.kind):
            out.append(k)
        else:
            stack.extend(bottoms[lay.name])
    return out


def bottom_keys(net: Net) -> dict[str, list[str]]:
    """Caffe layer -> the records (``"<layer>/<top>"``) its bottoms hold when it runs."""
    current: dict[str, str] = {}
    out: dict[str, list[str]] = {}
    for lay in net.layers:
        out[lay.name] = [current.get(b, b) for b in lay.bottoms] if not is_source(lay.kind) else []
        for t in lay.tops:
            current[t] = f"{lay.name}/{t}"
    return out


def pair_inputs(net: Net, model: Any) -> list[tuple[str, Any]]:
    """The one pairing of Caffe input blobs with Keras model inputs: ``[(caffe blob, keras input tensor)]``, by name
    when the two sets of names agree, else by position (the model's input order)."""
    kin = list(graph_model(model).inputs)
    knames = [t._keras_history[0].name for t in kin]
    names = list(net.inputs)
    if set(knames) == set(names):
        return [(n, t) for n, t in zip(knames, kin)]
    return list(zip(names, kin))

