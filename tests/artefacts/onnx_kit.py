"""Small ONNX graphs written at test time with ``onnx.helper`` from a seeded Caffe net's weights (no binaries):
an exporter of this file's own for Convolution, ReLU, Pooling, LRN, InnerProduct, BatchNorm, Scale and Softmax, with
one deliberate bug on request.  Independent of the harness's converter: each Caffe rule is written here from
Caffe's documentation (OIHW weights, ceil-rounded pooling, LRN's alpha / n, BatchNorm's blobs divided by the
scale factor)."""

from __future__ import annotations

import numpy as np

# conv / relu / pool (ceil rounding matters: (14 - 3) / 2 = 5.5) / LRN / conv / ip / softmax; input 2x3x14x11
CONV_NET = """name: "small"
input: "data" input_shape { dim: 2 dim: 3 dim: 14 dim: 11 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
        lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2"
        convolution_param { num_output: 5 kernel_size: 3 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "ip1" type: "InnerProduct" bottom: "conv2" top: "ip1" inner_product_param { num_output: 6 } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
"""

# the same without the InnerProduct (a pooling rounded the other way leaves the graph runnable): input 2x3x14x11
POOL_NET = CONV_NET.split('layer { name: "ip1"')[0]

# conv / BatchNorm / Scale / ReLU / ip; input 2x3x7x5
BN_NET = """name: "bn"
input: "data" input_shape { dim: 2 dim: 3 dim: 7 dim: 5 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { use_global_stats: true } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1" inner_product_param { num_output: 6 } }
"""

BUGS = ("lrn_alpha", "bn_epsilon", "conv_axes", "pool_floor")


def seeded_net(text: str, tmp_path, seed: int = 3):
    """The net of ``text`` (written to ``tmp_path/net.prototxt``) with seeded random weights, and that path."""
    from harness.caffe import load_net
    from harness.weights import random_weights

    p = tmp_path / "net.prototxt"
    p.write_text(text)
    return random_weights(load_net(p), seed), p


def export(net, path, bug: str | None = None, *, batch: int | None = None, opset: int = 13, scale_as_mul=False):
    """Write ``net`` as an ONNX model to ``path`` (``bug``: one of :data:`BUGS`; ``batch``: a fixed batch axis,
    default free; ``scale_as_mul``: a Scale after a BatchNorm written as Mul + Add instead of fused)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    cur: dict[str, str] = {}  # blob -> the tensor holding it now
    pending_bn = None
    for lay in net.layers:
        if lay.type == "Input":
            continue
        x = cur.get(lay.bottoms[0], lay.bottoms[0]) if lay.bottoms else None
        out = f"{lay.name}_out"
        t = lay.type
        if t == "Convolution":
            w, b = lay.blobs[0], lay.blobs[1]
            if bug == "conv_axes" and lay.name == "conv1":
                w = w.transpose(0, 1, 3, 2)
            cp = lay.p("convolution_param")
            k, pad = cp.kernel_size[0], (cp.pad[0] if cp.pad else 0)
            nodes.append(helper.make_node("Conv", [x, const(f"{lay.name}_w", w), const(f"{lay.name}_b", b)], [out],
                                          name=lay.name, kernel_shape=[k, k], pads=[pad] * 4))
        elif t == "ReLU":
            nodes.append(helper.make_node("Relu", [x], [out], name=lay.name))
        elif t == "Pooling":
            pp = lay.p("pooling_param")
            nodes.append(helper.make_node("MaxPool", [x], [out], name=lay.name, kernel_shape=[pp.kernel_size] * 2,
                                          strides=[pp.stride] * 2, ceil_mode=0 if bug == "pool_floor" else 1))
        elif t == "LRN":
            lp = lay.p("lrn_param")
            alpha = lp.alpha * (lp.local_size if bug == "lrn_alpha" else 1)  # ONNX divides alpha by size itself
            nodes.append(helper.make_node("LRN", [x], [out], name=lay.name, size=lp.local_size, alpha=alpha,
                                          beta=lp.beta, bias=lp.k))
        elif t == "InnerProduct":
            flat = f"{lay.name}_flat"
            nodes.append(helper.make_node("Flatten", [x], [flat], name=f"{lay.name}_flatten", axis=1))
            nodes.append(helper.make_node("Gemm", [flat, const(f"{lay.name}_w", lay.blobs[0]),
                                                   const(f"{lay.name}_b", lay.blobs[1])], [out], name=lay.name,
                                          transB=1))
        elif t == "Softmax":
            nodes.append(helper.make_node("Softmax", [x], [out], name=lay.name, axis=1))
        elif t == "BatchNorm":
            s = float(lay.blobs[2].reshape(-1)[0])
            f = 0.0 if s == 0 else 1.0 / s
            pending_bn = (lay, x, lay.blobs[0] * f, lay.blobs[1] * f)
            cur[lay.tops[0]] = None
            continue
        elif t == "Scale":
            bn, bx, mean, var = pending_bn
            eps = 1e-3 if bug == "bn_epsilon" else bn.p("batch_norm_param").eps
            c = mean.shape[0]
            if scale_as_mul:
                mid = f"{bn.name}_out"
                nodes.append(helper.make_node("BatchNormalization", [bx, const("bn_g", np.ones(c)),
                                                                     const("bn_b", np.zeros(c)), const("bn_m", mean),
                                                                     const("bn_v", var)], [mid], name=bn.name,
                                              epsilon=eps))
                mul = f"{lay.name}_mul"
                nodes.append(helper.make_node("Mul", [mid, const("sc_g", lay.blobs[0].reshape(c, 1, 1))], [mul],
                                              name=f"{lay.name}_mul"))
                nodes.append(helper.make_node("Add", [mul, const("sc_b", lay.blobs[1].reshape(c, 1, 1))], [out],
                                              name=lay.name))
            else:  # fused: one BatchNormalization computes BatchNorm + Scale
                nodes.append(helper.make_node("BatchNormalization", [bx, const("bn_g", lay.blobs[0]),
                                                                     const("bn_b", lay.blobs[1]),
                                                                     const("bn_m", mean), const("bn_v", var)],
                                              [out], name=bn.name, epsilon=eps))
        else:
            raise ValueError(f"onnx_kit: no export for {t}")
        cur[lay.tops[0]] = out
    (inp, shape), = net.inputs.items()
    dims = [batch if batch is not None else "N", *shape[1:]]
    last = cur[net.outputs[0]]
    graph = helper.make_graph(nodes, net.name, [helper.make_tensor_value_info("data", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
