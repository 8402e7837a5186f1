"""Differential property tests: the NumPy reference against OpenCV's Caffe importer (``cv2.dnn.readNetFromCaffe``).

Each example is a random single-layer net (hypothesis: distinct sizes on every axis, strides, pads, kernels, groups,
dilations, ceil/floor pooling, both LRN regions, ...) with seeded weights.  The prototxt and a V2 caffemodel (layer
name, type, blobs) go to OpenCV with its plain C++ backend (``DNN_BACKEND_OPENCV``, float32); the same text and weights
go through our loader and ``harness.reference.forward`` in float64.  Agreement: max|ref - cv| <= 2e-5 x max|ref|
(float32 arithmetic of one layer lands near 1e-6).

OpenCV is a second implementation, not Caffe: where it is known to differ from Caffe the test says so and keeps to
the common ground (or xfails with the reason); the real-Caffe golden cases (tests/reference/test_golden.py) decide.
Layer types OpenCV 4.x cannot import at all (Threshold, Clip, Tile, Upsample, ArgMax, Reduction, Bias, Embed, SPP)
are covered by hand tables and loop oracles in the per-family test files instead.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

cv2 = pytest.importorskip("cv2")

from harness.caffe import load_net_text  # noqa: E402
from harness.proto import caffe_pb2  # noqa: E402
from harness.reference import forward  # noqa: E402
from support import assert_blob_close, net_text  # noqa: E402

REL_TOL = 2e-5
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------------------------
# Running one single-layer net both ways
# ---------------------------------------------------------------------------------------------------------------


def _prototxt(inputs: dict[str, tuple[int, ...]], layer_body: str, n_tops: int = 1) -> str:
    text = net_text("", inputs, name="oracle")
    bottoms = " ".join(f'bottom: "{b}"' for b in inputs)
    tops = " ".join(f'top: "{t}"' for t in _tops(n_tops))
    return text + f'layer {{ name: "l" {bottoms} {tops} {layer_body} }}\n'


def _tops(n: int) -> list[str]:
    return ["l"] if n == 1 else [f"l{i}" for i in range(n)]


def _caffemodel(layer_type: str, blobs: list[np.ndarray]) -> bytes:
    netp = caffe_pb2.NetParameter(name="oracle")
    lp = netp.layer.add()
    lp.name, lp.type = "l", layer_type
    for b in blobs:
        bp = lp.blobs.add()
        bp.shape.dim.extend(int(d) for d in b.shape)
        bp.data.extend(np.asarray(b, np.float32).ravel().tolist())
    return netp.SerializeToString()


def run_both(layer_type: str, body: str, inputs: dict[str, np.ndarray], blobs: list[np.ndarray] = (),
             n_tops: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """(reference float64, OpenCV float32) for every top of layer ``l``; inputs are float32-representable."""
    inputs = {k: np.asarray(v, np.float32) for k, v in inputs.items()}
    blobs = [np.asarray(b, np.float32) for b in blobs]
    text = _prototxt({k: v.shape for k, v in inputs.items()}, f'type: "{layer_type}" {body}', n_tops)
    net = load_net_text(text, weights={"l": blobs} if blobs else None)
    ref = forward(net, {k: v.astype(np.float64) for k, v in inputs.items()}, dtype=np.float64)
    with tempfile.TemporaryDirectory() as d:
        proto, model = os.path.join(d, "net.prototxt"), os.path.join(d, "net.caffemodel")
        with open(proto, "w") as f:
            f.write(text)
        with open(model, "wb") as f:
            f.write(_caffemodel(layer_type, blobs))
        cvnet = cv2.dnn.readNetFromCaffe(proto, model)
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for k, v in inputs.items():
        cvnet.setInput(v, k)
    tops = _tops(n_tops)
    (outs,) = cvnet.forwardAndRetrieve(["l"])  # every output of layer "l", in top order
    # OpenCV's MAX pooling adds its argmax mask as a second output; Caffe's tops come first.
    assert len(outs) >= n_tops, f"OpenCV produced {len(outs)} outputs for {n_tops} tops"
    return [(ref[f"l/{t}"], np.asarray(o)) for t, o in zip(tops, outs)]


def assert_tops_close(pairs, rel_tol: float = REL_TOL, what: str = "") -> None:
    """Each (reference, OpenCV) top: same size (OpenCV's array is read in the reference's shape), a finite reference,
    and ``support.assert_blob_close(cv, ref, rtol=rel_tol)``: max|ref - cv| <= rel_tol * max|ref|."""
    for i, (ref, cv) in enumerate(pairs):
        assert ref.size == cv.size, f"{what} top {i}: reference shape {ref.shape} vs OpenCV {cv.shape}"
        assert np.isfinite(ref).all(), f"{what} top {i}: the reference is not finite"
        assert_blob_close(np.asarray(cv).reshape(ref.shape), ref, f"{what} top {i} (OpenCV vs reference)",
                          rtol=rel_tol)


# ---------------------------------------------------------------------------------------------------------------
# Strategies (constructive: distinct sizes by construction, no filtering)
# ---------------------------------------------------------------------------------------------------------------


def distinct(k: int, lo: int, hi: int):
    """k distinct integers in [lo, hi], in random order."""
    return st.lists(st.integers(lo, hi), min_size=k, max_size=k, unique=True)


@st.composite
def nchw(draw, *, c_multiple: int = 1, min_hw: int = 1, max_hw: int = 9):
    """An NCHW shape with N in 1..3 and every axis size distinct; C a multiple of ``c_multiple``."""
    n = draw(st.integers(1, 3))
    c = c_multiple * draw(st.integers(1, 4))
    h, w = draw(distinct(2, min_hw, max_hw))
    while len({n, c, h, w}) < 4:  # bump to distinctness deterministically (never rejects)
        if c in (n, h, w):
            c += c_multiple
        elif h in (n, w):
            h += 1
        else:
            w += 1
    return n, c, h, w


def distinctify(shape, *, fixed=()) -> tuple[int, ...]:
    """Bump the sizes of axes not in ``fixed`` upward until every axis size differs (never rejects an example;
    bigger spatial or channel sizes keep every layer valid)."""
    out = list(shape)
    for i in range(len(out)):
        if i in fixed:
            continue
        while out[i] in out[:i] + out[i + 1:]:
            out[i] += 1
    return tuple(out)


def data(shape, seed: int, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(np.float32)


SEEDS = st.integers(0, 2**31 - 1)


# ---------------------------------------------------------------------------------------------------------------
# Reference B: element-wise and data-movement layers
# ---------------------------------------------------------------------------------------------------------------


@st.composite
def activation_cases(draw):
    kind = draw(st.sampled_from(["ReLU", "ReLU6", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log",
                                 "Swish", "Dropout", "PReLU"]))
    f = lambda lo, hi: round(draw(st.floats(lo, hi)), 3)  # noqa: E731
    body, lo, blobs = "", -3.0, []
    if kind == "ReLU":
        body = f"relu_param {{ negative_slope: {f(0, 0.5)} }}"
    elif kind == "ELU":
        body = f"elu_param {{ alpha: {f(0.1, 2)} }}"
    elif kind == "Power":
        body = f"power_param {{ power: {draw(st.sampled_from([0.5, 1, 2, 3]))} scale: {f(0.2, 2)} shift: {f(-1, 1)} }}"
        lo = 0.0  # keep (shift + scale x) >= 0 for fractional powers: shift may be negative, so make x large
    elif kind == "Exp":
        body = f"exp_param {{ base: {draw(st.sampled_from([-1, 2, 10]))} scale: {f(-1, 1)} shift: {f(-1, 1)} }}"
    elif kind == "Log":
        body = f"log_param {{ base: {draw(st.sampled_from([-1, 2, 10]))} scale: {f(0.2, 2)} shift: {f(0.1, 1)} }}"
        lo = 0.0
    elif kind == "Swish":
        body = "swish_param { beta: 1 }"  # OpenCV's Swish is x * sigmoid(x): it has no beta (see below)
    elif kind == "Dropout":
        body = f"dropout_param {{ dropout_ratio: {f(0.1, 0.9)} }}"
    shape = draw(nchw())
    if kind == "PReLU":
        shared = draw(st.booleans())
        body = f"prelu_param {{ channel_shared: {str(shared).lower()} }}"
        blobs = [np.random.default_rng(shape[1]).uniform(-0.5, 0.5, size=1 if shared else shape[1])]
    return kind, body, shape, lo, blobs


@SETTINGS
@given(case=activation_cases(), seed=SEEDS)
def test_activations(case, seed):
    kind, body, shape, lo, blobs = case
    x = data(shape, seed, lo=lo, hi=3.0)
    if kind == "Power" and "power: 0.5" in body:
        x = x + 1.0  # (shift >= -1) + (scale >= 0.2) * (x >= 1) can still be negative: NaN on both sides is fine
    pairs = run_both(kind, f'{body}', {"x": x}, blobs)
    ref, cv = pairs[0]
    mask = ~np.isnan(ref)
    assert np.array_equal(mask, ~np.isnan(cv.reshape(ref.shape))), "NaN pattern differs"
    assert_tops_close([(np.where(mask, ref, 0), np.where(mask, cv.reshape(ref.shape), 0))], what=kind)


def test_opencv_swish_ignores_beta():
    """Known OpenCV deviation: Caffe's Swish is x * sigmoid(beta x); OpenCV's SwishLayer has no beta (uses 1)."""
    x = data((2, 3, 4, 5), 1)
    (ref, cv), = run_both("Swish", "swish_param { beta: 2 }", {"x": x})
    np.testing.assert_allclose(cv.reshape(ref.shape), x / (1 + np.exp(-x.astype(np.float64))), rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(ref - cv)) > 1e-3  # the reference keeps Caffe's beta


@SETTINGS
@given(shape=nchw(), axis=st.integers(-4, 3), seed=SEEDS)
def test_softmax(shape, axis, seed):
    assert_tops_close(run_both("Softmax", f"softmax_param {{ axis: {axis} }}", {"x": data(shape, seed)}))


@SETTINGS
@given(shape=nchw(), axis=st.integers(0, 3), extra=distinct(2, 1, 5), seed=SEEDS)
def test_concat(shape, axis, extra, seed):
    a = data(shape, seed)
    b_shape = list(shape)
    b_shape[axis] = extra[0]
    b_shape = distinctify(b_shape, fixed=[i for i in range(4) if i != axis])
    assert_tops_close(run_both("Concat", f"concat_param {{ axis: {axis} }}", {"a": a, "b": data(b_shape, seed + 1)}))


@SETTINGS
@given(shape=nchw(), axis=st.integers(1, 3), n_tops=st.integers(2, 3), seed=SEEDS)
def test_slice(shape, axis, n_tops, seed):
    """slice_point only: OpenCV 4.14 asserts on Caffe's equal split (no slice_point) even when the axis divides
    (``splits > 0 && inpShape[axis] % splits == 0`` fails: it counts requested outputs, not tops); the equal split is
    covered by the hand tables in test_shape.py."""
    shape_ = list(shape)
    shape_[axis] += n_tops  # room for n_tops non-empty pieces
    shape_ = list(distinctify(shape_, fixed=(axis,)))
    dim = shape_[axis]
    points = np.random.default_rng(seed).choice(np.arange(1, dim), size=n_tops - 1, replace=False)
    body = " ".join(f"slice_point: {p}" for p in sorted(points))
    assert_tops_close(run_both("Slice", f"slice_param {{ axis: {axis} {body} }}", {"x": data(shape_, seed)}, n_tops=n_tops))


@SETTINGS
@given(shape=nchw(), axes=st.lists(st.integers(1, 3), min_size=2, max_size=2).map(sorted), seed=SEEDS)
def test_flatten(shape, axes, seed):
    assert_tops_close(run_both("Flatten", f"flatten_param {{ axis: {axes[0]} end_axis: {axes[1]} }}",
                          {"x": data(shape, seed)}))


@SETTINGS
@given(shape=nchw(), seed=SEEDS, variant=st.integers(0, 2))
def test_reshape(shape, seed, variant):
    n, c, h, w = shape
    body = ["shape { dim: 0 dim: -1 }", f"shape {{ dim: 0 dim: {c * h} dim: -1 }}",
            f"shape {{ dim: {w} dim: 1 }} axis: 3 num_axes: 1"][variant]
    assert_tops_close(run_both("Reshape", f"reshape_param {{ {body} }}", {"x": data(shape, seed)}))


@SETTINGS
@given(shape=nchw(min_hw=3), axis=st.integers(1, 3), per_axis=st.booleans(), seed=SEEDS)
def test_crop(shape, axis, per_axis, seed):
    rng = np.random.default_rng(seed)
    ref_shape = list(shape)
    offsets = []
    for i in range(axis, 4):
        # a size not yet used by another axis of the reference blob, where one exists
        free = [v for v in range(1, shape[i] + 1) if v not in ref_shape[:i]] or list(range(1, shape[i] + 1))
        ref_shape[i] = int(rng.choice(free))
        offsets.append(int(rng.integers(0, shape[i] - ref_shape[i] + 1)))
    if not per_axis:
        m = min(shape[i] - ref_shape[i] for i in range(axis, 4))
        offsets = [int(rng.integers(0, m + 1))]
    body = f"crop_param {{ axis: {axis} " + " ".join(f"offset: {o}" for o in offsets) + " }"
    assert_tops_close(run_both("Crop", body, {"x": data(shape, seed), "r": np.zeros(ref_shape, np.float32)}))


@SETTINGS
@given(shape=nchw(), order=st.permutations(range(4)), seed=SEEDS)
def test_permute(shape, order, seed):
    body = "permute_param { " + " ".join(f"order: {o}" for o in order) + " }"
    assert_tops_close(run_both("Permute", body, {"x": data(shape, seed)}))


@SETTINGS
@given(group=st.integers(2, 4), shape=nchw(), seed=SEEDS)
def test_shuffle_channel(group, shape, seed):
    n, c, h, w = shape
    shape = distinctify((n, c * group, h, w), fixed=(1,))
    assert_tops_close(run_both("ShuffleChannel", f"shuffle_channel_param {{ group: {group} }}", {"x": data(shape, seed)}))


@SETTINGS
@given(shape=nchw(), op=st.sampled_from(["SUM", "PROD", "MAX"]), n_in=st.integers(2, 3), seed=SEEDS,
       coeff=st.booleans())
def test_eltwise(shape, op, n_in, seed, coeff):
    body = f"eltwise_param {{ operation: {op} "
    if op == "SUM" and coeff:
        body += " ".join(f"coeff: {c}" for c in (0.5, -2.0, 1.5)[:n_in])
    body += " }"
    inputs = {f"x{i}": data(shape, seed + i) for i in range(n_in)}
    assert_tops_close(run_both("Eltwise", body, inputs))


@SETTINGS
@given(shape=nchw(min_hw=2, max_hw=7), seed=SEEDS, spec=st.sampled_from(["zoom_factor: 3", "zoom_factor: 2",
                                                                        "height: 11 width: 6", "height: 4 width: 9"]))
def test_interp(shape, seed, spec):
    """Zoom alone or an explicit size, without pads: OpenCV 4.14's Interp ignores pad_beg/pad_end (deeplab crops
    H_eff = H + pad_beg + pad_end first), ignores shrink_factor when zoom_factor is also given (deeplab shrinks, then
    zooms) and fails its shape check on shrink_factor alone.  Those rules are covered in test_resize.py."""
    assert_tops_close(run_both("Interp", f"interp_param {{ {spec} }}", {"x": data(shape, seed)}))


@pytest.mark.parametrize("spec,ref_hw,opencv_hw", [("zoom_factor: 2 pad_beg: -1", (7, 11), (9, 13)),
                                                   ("zoom_factor: 2 shrink_factor: 2", (5, 7), (9, 13))])
def test_interp_opencv_deviations(spec, ref_hw, opencv_hw):
    """Known OpenCV deviations from deeplab's interp_layer.cpp, pinned so a change in either side is noticed:
    pads crop 5x7 to 4x6 -> zoom 2 -> 7x11 (OpenCV zooms the uncropped 5x7 to 9x13); shrink 2 then zoom 2:
    5x7 -> 3x4 -> 5x7 (OpenCV drops the shrink)."""
    (ref, cv), = run_both("Interp", f"interp_param {{ {spec} }}", {"x": data((2, 3, 5, 7), 0)})
    assert ref.shape[2:] == ref_hw and cv.shape[2:] == opencv_hw


@SETTINGS
@given(feat=distinct(2, 5, 12), img=distinct(2, 20, 60), mins=st.lists(st.integers(4, 12), min_size=1, max_size=2),
       with_max=st.booleans(), ars=st.lists(st.sampled_from([2.0, 3.0, 0.5]), max_size=2), flip=st.booleans(),
       clip=st.booleans(), four_var=st.booleans(), step=st.sampled_from([None, 4.0, (3.0, 5.0)]),
       offset=st.sampled_from([0.5, 0.0, 0.25]))
def test_prior_box(feat, img, mins, with_max, ars, flip, clip, four_var, step, offset):
    """Integer min/max sizes only: the SSD fork truncates them to int (``int min_size_ = min_sizes_[s]``), OpenCV
    keeps the float, so non-integer sizes are a known difference decided by the golden ssd_ops case."""
    body = " ".join(f"min_size: {m}" for m in mins)
    if with_max:
        body += " " + " ".join(f"max_size: {m + 7}" for m in mins)
    body += " " + " ".join(f"aspect_ratio: {a}" for a in ars)
    body += f" flip: {str(flip).lower()} clip: {str(clip).lower()} offset: {offset} "
    body += "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2" if four_var else "variance: 0.15"
    if isinstance(step, tuple):
        body += f" step_h: {step[0]} step_w: {step[1]}"
    elif step is not None:
        body += f" step: {step}"
    inputs = {"f": np.zeros((1, 4, *feat), np.float32), "i": np.zeros((1, 3, *img), np.float32)}
    assert_tops_close(run_both("PriorBox", f"prior_box_param {{ {body} }}", inputs), rel_tol=1e-6)


def test_prior_box_opencv_keeps_float_sizes():
    """Known OpenCV deviation, pinned: the SSD fork truncates sizes (``int min_size_ = min_sizes_[s]``): min_size 6.5
    gives a 6-pixel box, centre (5, 5) in a 30x20 image -> [2/30, 2/20, 8/30, 8/20]; OpenCV uses 6.5."""
    (ref, cv), = run_both("PriorBox", "prior_box_param { min_size: 6.5 max_size: 13.7 variance: 0.1 }",
                          {"f": np.zeros((1, 4, 2, 3), np.float32), "i": np.zeros((1, 3, 20, 30), np.float32)})
    np.testing.assert_allclose(ref[0, 0, :4], [2 / 30, 2 / 20, 8 / 30, 8 / 20], rtol=1e-6)
    np.testing.assert_allclose(cv.reshape(ref.shape)[0, 0, :4], [1.75 / 30, 1.75 / 20, 8.25 / 30, 8.25 / 20], rtol=1e-5)


@SETTINGS
@given(n=st.integers(1, 2), n_priors=st.integers(3, 12), n_classes=st.integers(2, 4), seed=SEEDS,
       share=st.booleans(), code=st.sampled_from(["CORNER", "CENTER_SIZE"]),
       keep_top_k=st.sampled_from([3, 50]), top_k=st.sampled_from([None, 2, 100]),
       nms=st.sampled_from([0.3, 0.45, 0.7]), background=st.sampled_from([0, 1]))
def test_detection_output(n, n_priors, n_classes, seed, share, code, keep_top_k, top_k, nms, background):
    """Detections compared as row sets (sorted): OpenCV orders its output rows by its own rule, and Caffe's order of
    equal-score rows under keep_top_k is unspecified (std::sort).  Scores are distinct by construction.

    Kept to OpenCV's safe ground: OpenCV 4.14 corrupts its heap (glibc abort, killing the test process) when
    keep_top_k is -1 (Caffe: keep everything), and its caffe.proto lacks CORNER_SIZE; both are covered by the hand
    tables in test_detection.py."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2, 0.8, size=(n_priors, 2))
    sizes = rng.uniform(0.1, 0.4, size=(n_priors, 2))
    priors = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    var = np.tile([0.1, 0.1, 0.2, 0.2], (n_priors, 1))
    prior = np.stack([priors.reshape(-1), var.reshape(-1)])[None].astype(np.float32)
    n_loc = 1 if share else n_classes
    loc = rng.normal(0, 0.5, size=(n, n_priors * n_loc * 4)).astype(np.float32)
    conf = rng.permutation(n * n_priors * n_classes).reshape(n, -1) / (n * n_priors * n_classes)  # distinct scores
    nms_body = f"nms_threshold: {nms}" + (f" top_k: {top_k}" if top_k is not None else "")
    body = (f"detection_output_param {{ num_classes: {n_classes} share_location: {str(share).lower()} "
            f"background_label_id: {background} code_type: {code} keep_top_k: {keep_top_k} "
            f"confidence_threshold: 0.3 nms_param {{ {nms_body} }} }}")
    (ref, cv), = run_both("DetectionOutput", body, {"loc": loc, "conf": conf.astype(np.float32), "prior": prior})
    r = ref.reshape(-1, 7)
    c = cv.reshape(-1, 7).astype(np.float64)
    # OpenCV 4.14 sometimes appends an all-zero row (label 0, score 0): not a detection (every real one has a
    # score > confidence_threshold 0.3); Caffe never emits it.
    c = c[np.any(c[:, 1:] != 0, axis=1)]
    key = lambda a: a[np.lexsort((a[:, 2], a[:, 1], a[:, 0]))]  # noqa: E731
    assert r.shape == c.shape, f"{r.shape[0]} reference detections vs {c.shape[0]} OpenCV"
    np.testing.assert_allclose(key(r), key(c), rtol=0, atol=2e-6)


# ---------------------------------------------------------------------------------------------------------------
# Reference A: convolution, pooling, normalisation and affine layers
# ---------------------------------------------------------------------------------------------------------------


@st.composite
def conv_cases(draw, deconv: bool = False):
    group = draw(st.sampled_from([1, 1, 2, 3]))
    c_in = group * draw(st.integers(1, 3))
    c_out = group * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    if deconv:  # Caffe dilates deconvolution kernels too, but OpenCV's importer is not trusted there: d = 1
        dh = dw = 1
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    h = draw(st.integers(max(1, ekh - 2 * ph), max(1, ekh - 2 * ph) + 6))
    w = draw(st.integers(max(1, ekw - 2 * pw), max(1, ekw - 2 * pw) + 6))
    bias = draw(st.booleans())
    n = draw(st.sampled_from([v for v in (1, 2, 3) if v != c_in]))
    n, c_in, h, w = distinctify((n, c_in, h, w), fixed=(0, 1))  # bigger inputs stay valid
    if deconv:  # output s(H-1) + k - 2p must stay positive
        ph = min(ph, (sh * (h - 1) + ekh - 1) // 2)
        pw = min(pw, (sw * (w - 1) + ekw - 1) // 2)
    return dict(group=group, n=n, c_in=c_in, c_out=c_out, k=(kh, kw), s=(sh, sw), d=(dh, dw), p=(ph, pw), hw=(h, w),
                bias=bias, seed=draw(SEEDS))


def _conv_body(c, deconv: bool) -> str:
    return (f"convolution_param {{ num_output: {c['c_out']} kernel_h: {c['k'][0]} kernel_w: {c['k'][1]} "
            f"stride_h: {c['s'][0]} stride_w: {c['s'][1]} pad_h: {c['p'][0]} pad_w: {c['p'][1]} "
            f"dilation: {c['d'][0]} dilation: {c['d'][1]} group: {c['group']} "
            f"bias_term: {str(c['bias']).lower()} }}")


@SETTINGS
@given(c=conv_cases())
def test_convolution(c):
    rng = np.random.default_rng(c["seed"])
    wshape = (c["c_out"], c["c_in"] // c["group"], *c["k"])
    blobs = [rng.normal(size=wshape)] + ([rng.normal(size=c["c_out"])] if c["bias"] else [])
    x = data((c["n"], c["c_in"], *c["hw"]), c["seed"])
    assert_tops_close(run_both("Convolution", _conv_body(c, False), {"x": x}, blobs), rel_tol=1e-5)


@SETTINGS
@given(c=conv_cases(deconv=True))
def test_deconvolution(c):
    """OpenCV's deconvolution is only checked without dilation: Caffe dilates deconvolution kernels (rarely used);
    OpenCV 4.x's Caffe importer path for dilated Deconvolution is not a trusted oracle."""
    rng = np.random.default_rng(c["seed"])
    wshape = (c["c_in"], c["c_out"] // c["group"], *c["k"])
    blobs = [rng.normal(size=wshape)] + ([rng.normal(size=c["c_out"])] if c["bias"] else [])
    x = data((c["n"], c["c_in"], *c["hw"]), c["seed"])
    body = _conv_body(c, True).replace("dilation: 1 dilation: 1 ", "")
    assert_tops_close(run_both("Deconvolution", body, {"x": x}, blobs), rel_tol=1e-5)


def caffe_pooled(size: int, k: int, s: int, p: int, ceil: bool, any_pad: bool) -> int:
    """pooling_layer.cpp output size, derived here for the test: ceil/floor((size + 2p - k) / s) + 1, minus one when
    the net has any padding (pad_h || pad_w) and the last window would start at or beyond size + p."""
    o = (-(-(size + 2 * p - k) // s) if ceil else (size + 2 * p - k) // s) + 1
    if any_pad and (o - 1) * s >= size + p:
        o -= 1
    return o


@st.composite
def pool_cases(draw):
    """Configurations where Caffe and OpenCV agree by design (the two known differences have pinned tests below):
    pads both zero or both positive, and no window starting outside an unpadded input."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if kh > 1 and kw > 1 and draw(st.booleans()):
        ph, pw = draw(st.integers(1, kh - 1)), draw(st.integers(1, kw - 1))
    else:
        ph = pw = 0
    ceil = draw(st.booleans())
    h = draw(st.integers(kh, kh + 7))
    w = draw(st.integers(kw, kw + 7))
    c = draw(st.integers(1, 4))
    n = draw(st.sampled_from([v for v in (1, 2, 3) if v != c]))
    while True:
        n, c, h, w = distinctify((n, c, h, w), fixed=(0, 1))
        if ph or not ceil:
            break
        bad_h = (caffe_pooled(h, kh, sh, 0, True, False) - 1) * sh >= h
        bad_w = (caffe_pooled(w, kw, sw, 0, True, False) - 1) * sw >= w
        if not (bad_h or bad_w):
            break
        h, w = h + bad_h, w + bad_w
    return dict(k=(kh, kw), s=(sh, sw), p=(ph, pw), hw=(h, w), n=n, c=c,
                pool=draw(st.sampled_from(["MAX", "AVE"])), ceil=ceil, seed=draw(SEEDS))


def _pool_body(pool, k, s, p, ceil) -> str:
    return (f"pooling_param {{ pool: {pool} kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {s[0]} stride_w: {s[1]} "
            f"pad_h: {p[0]} pad_w: {p[1]} ceil_mode: {str(ceil).lower()} }}")


@SETTINGS
@given(c=pool_cases())
def test_pooling(c):
    """``ceil_mode`` (the fork spelling OpenCV's importer reads; our loader folds it into round_mode)."""
    x = data((c["n"], c["c"], *c["hw"]), c["seed"])
    (ref, cv), = run_both("Pooling", _pool_body(c["pool"], c["k"], c["s"], c["p"], c["ceil"]), {"x": x})
    assert ref.shape[2:] == tuple(caffe_pooled(c["hw"][i], c["k"][i], c["s"][i], c["p"][i], c["ceil"], any(c["p"]))
                                  for i in range(2))
    assert_tops_close([(ref, cv)], rel_tol=1e-5)


def test_pooling_opencv_clips_per_axis():
    """Known OpenCV deviation, pinned: Caffe drops the last window on *both* axes when the net has any padding
    (``if (pad_h_ || pad_w_)``); with pad (1, 0), W=4, k_w=1, s_w=2, ceil: (3-1)*2 >= 4+0 so Caffe's width is 2,
    OpenCV keeps 3."""
    (ref, cv), = run_both("Pooling", _pool_body("MAX", (2, 1), (1, 2), (1, 0), True), {"x": data((2, 1, 3, 4), 5)})
    assert ref.shape == (2, 1, 4, 2) and cv.shape == (2, 1, 4, 3)


def test_pooling_window_outside_input():
    """Ceil mode without pads can start a window past the input (k=1, s_w=2, W=4: windows at 0, 2, 4).  Caffe leaves
    MAX at its -FLT_MAX fill and divides AVE by a zero pool size (NaN); the reference does the same.  OpenCV gives 0
    for MAX (a known deviation) and NaN for AVE."""
    x = data((2, 1, 3, 4), 6)
    (ref, cv), = run_both("Pooling", _pool_body("MAX", (1, 1), (1, 2), (0, 0), True), {"x": x})
    assert np.all(ref[..., 2] == -np.finfo(np.float32).max) and np.all(cv[..., 2] == 0)
    np.testing.assert_allclose(ref[..., :2], x[..., ::2])
    (ref, cv), = run_both("Pooling", _pool_body("AVE", (1, 1), (1, 2), (0, 0), True), {"x": x})
    assert np.all(np.isnan(ref[..., 2])) and np.all(np.isnan(cv[..., 2]))


@SETTINGS
@given(shape=nchw(), pool=st.sampled_from(["MAX", "AVE"]), seed=SEEDS)
def test_global_pooling(shape, pool, seed):
    body = f"pooling_param {{ pool: {pool} global_pooling: true }}"
    assert_tops_close(run_both("Pooling", body, {"x": data(shape, seed)}))


@SETTINGS
@given(shape=nchw(), region=st.sampled_from(["ACROSS_CHANNELS", "WITHIN_CHANNEL"]), size=st.sampled_from([1, 3, 5]),
       alpha=st.sampled_from([1e-4, 0.5, 2.0]), beta=st.sampled_from([0.75, 0.5]), seed=SEEDS)
def test_lrn(shape, region, size, alpha, beta, seed):
    """k = 1 only: OpenCV 4.14's Caffe importer drops LRN's k (uses bias 1) -- see test_lrn_opencv_ignores_k;
    Caffe's WITHIN_CHANNEL ignores k anyway (its Power layer adds 1)."""
    k = 1.0
    body = f"lrn_param {{ norm_region: {region} local_size: {size} alpha: {alpha} beta: {beta} k: {k} }}"
    assert_tops_close(run_both("LRN", body, {"x": data(shape, seed)}), rel_tol=1e-5)


def test_lrn_opencv_ignores_k():
    """Known OpenCV deviation, pinned: Caffe ACROSS_CHANNELS uses scale = k + alpha/n sum x^2 (k = 2 here: y ~ x/2^0.75
    for a tiny alpha); OpenCV computes with k = 1."""
    x = data((2, 3, 4, 5), 3)
    (ref, cv), = run_both("LRN", "lrn_param { local_size: 3 alpha: 1e-6 beta: 0.75 k: 2 }", {"x": x})
    np.testing.assert_allclose(ref, x / 2 ** 0.75, rtol=1e-5)
    np.testing.assert_allclose(cv.reshape(ref.shape), x, rtol=1e-5)


@SETTINGS
@given(shape=nchw(), eps=st.sampled_from([1e-5, 1e-3]), factor=st.sampled_from([1.0, 0.5, 999.0]), seed=SEEDS)
def test_batch_norm(shape, eps, factor, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    blobs = [rng.normal(size=c) * factor, rng.uniform(0.5, 2, size=c) * factor, np.array([factor])]
    assert_tops_close(run_both("BatchNorm", f"batch_norm_param {{ eps: {eps} }}", {"x": data(shape, seed)}, blobs),
                 rel_tol=1e-5)


@SETTINGS
@given(shape=nchw(), bias=st.booleans(), seed=SEEDS)
def test_scale(shape, bias, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    blobs = [rng.normal(size=c)] + ([rng.normal(size=c)] if bias else [])
    assert_tops_close(run_both("Scale", f"scale_param {{ bias_term: {str(bias).lower()} }}", {"x": data(shape, seed)},
                          blobs))


@SETTINGS
@given(shape=nchw(), n_out=st.integers(1, 6), axis=st.integers(1, 3), bias=st.booleans(), seed=SEEDS)
def test_inner_product(shape, n_out, axis, bias, seed):
    rng = np.random.default_rng(seed)
    k = int(np.prod(shape[axis:]))
    blobs = [rng.normal(size=(n_out, k))] + ([rng.normal(size=n_out)] if bias else [])
    body = f"inner_product_param {{ num_output: {n_out} axis: {axis} bias_term: {str(bias).lower()} }}"
    assert_tops_close(run_both("InnerProduct", body, {"x": data(shape, seed)}, blobs), rel_tol=1e-5)


@SETTINGS
@given(shape=nchw(), across=st.booleans(), variance=st.booleans(), seed=SEEDS)
def test_mvn(shape, across, variance, seed):
    body = f"mvn_param {{ across_channels: {str(across).lower()} normalize_variance: {str(variance).lower()} }}"
    assert_tops_close(run_both("MVN", body, {"x": data(shape, seed)}), rel_tol=1e-5)


@SETTINGS
@given(shape=nchw(), case=st.sampled_from([(True, True), (False, True), (False, False)]), seed=SEEDS)
def test_normalize(shape, case, seed):
    """Not across_spatial=true with a per-channel scale: OpenCV 4.14 asserts ``scale.total() == numPlanes`` there."""
    across, shared = case
    scale = np.random.default_rng(seed).uniform(1, 20, size=1 if shared else shape[1])
    body = f"norm_param {{ across_spatial: {str(across).lower()} channel_shared: {str(shared).lower()} }}"
    assert_tops_close(run_both("Normalize", body, {"x": data(shape, seed)}, [scale]), rel_tol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# A whole SSD head: conv -> Permute -> Flatten, conf Reshape -> Softmax -> Flatten, PriorBox, DetectionOutput
# ---------------------------------------------------------------------------------------------------------------

SSD_HEAD = """name: "ssd_head"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 20 dim: 28 } } }
layer { name: "feat" type: "Convolution" bottom: "data" top: "feat"
        convolution_param { num_output: 5 kernel_size: 3 stride: 4 pad: 1 } }
layer { name: "loc" type: "Convolution" bottom: "feat" top: "loc"
        convolution_param { num_output: 16 kernel_size: 3 pad: 1 } }
layer { name: "loc_perm" type: "Permute" bottom: "loc" top: "loc_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "loc_flat" type: "Flatten" bottom: "loc_perm" top: "loc_flat" }
layer { name: "conf" type: "Convolution" bottom: "feat" top: "conf"
        convolution_param { num_output: 12 kernel_size: 3 pad: 1 } }
layer { name: "conf_perm" type: "Permute" bottom: "conf" top: "conf_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "conf_flat" type: "Flatten" bottom: "conf_perm" top: "conf_flat" }
layer { name: "conf_resh" type: "Reshape" bottom: "conf_flat" top: "conf_resh" reshape_param { shape { dim: 0 dim: -1 dim: 3 } } }
layer { name: "conf_soft" type: "Softmax" bottom: "conf_resh" top: "conf_soft" softmax_param { axis: 2 } }
layer { name: "conf_out" type: "Flatten" bottom: "conf_soft" top: "conf_out" }
layer { name: "prior" type: "PriorBox" bottom: "feat" bottom: "data" top: "prior"
        prior_box_param { min_size: 6 max_size: 14 aspect_ratio: 2 flip: true clip: true
                          variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }
layer { name: "det" type: "DetectionOutput" bottom: "loc_flat" bottom: "conf_out" bottom: "prior" top: "det"
        detection_output_param { num_classes: 3 share_location: true background_label_id: 0 code_type: CENTER_SIZE
                                 keep_top_k: 20 confidence_threshold: 0.35
                                 nms_param { nms_threshold: 0.45 top_k: 50 } } }
"""


@settings(max_examples=5, deadline=None)
@given(seed=SEEDS)
def test_ssd_head_end_to_end(seed):
    """Every intermediate blob of a small SSD head, and its detections (compared as a row set), against OpenCV."""
    rng = np.random.default_rng(seed)
    weights = {
        "feat": [rng.normal(0, 0.3, (5, 3, 3, 3)), rng.normal(0, 0.1, 5)],
        "loc": [rng.normal(0, 0.2, (16, 5, 3, 3)), rng.normal(0, 0.1, 16)],
        "conf": [rng.normal(0, 0.6, (12, 5, 3, 3)), rng.normal(0, 0.1, 12)],
    }
    weights = {k: [np.asarray(a, np.float32) for a in v] for k, v in weights.items()}
    x = data((2, 3, 20, 28), seed, 0.0, 1.0)
    net = load_net_text(SSD_HEAD, weights=weights)
    ref = forward(net, {"data": x.astype(np.float64)}, dtype=np.float64)
    with tempfile.TemporaryDirectory() as d:
        proto, model = os.path.join(d, "net.prototxt"), os.path.join(d, "net.caffemodel")
        with open(proto, "w") as f:
            f.write(SSD_HEAD)
        netp = caffe_pb2.NetParameter(name="ssd_head")
        for name, blobs in weights.items():
            netp.layer.add().CopyFrom(caffe_pb2.NetParameter.FromString(_caffemodel("Convolution", blobs)).layer[0])
            netp.layer[-1].name = name
        with open(model, "wb") as f:
            f.write(netp.SerializeToString())
        cvnet = cv2.dnn.readNetFromCaffe(proto, model)
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setInput(x, "data")
    names = ["loc_flat", "conf_out", "prior", "det"]
    outs = dict(zip(names, cvnet.forward(names)))
    for name in names[:3]:
        assert_tops_close([(ref[f"{name}/{name}"], outs[name])], rel_tol=1e-5, what=name)
    r = ref["det/det"].reshape(-1, 7)
    c = outs["det"].reshape(-1, 7).astype(np.float64)
    c = c[np.any(c[:, 1:] != 0, axis=1)]  # OpenCV's all-zero padding row (see test_detection_output)
    key = lambda a: a[np.lexsort((a[:, 2], a[:, 1], a[:, 0]))]  # noqa: E731
    assert r.shape == c.shape, f"{r.shape[0]} reference detections vs {c.shape[0]} OpenCV"
    np.testing.assert_allclose(key(r), key(c), rtol=0, atol=1e-5)
