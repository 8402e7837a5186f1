"""Our caffe.proto: field numbers match Caffe's wire format, and the generated module works on old protobufs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.proto import caffe_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "message, field, number",
    [
        ("NetParameter", "layer", 100), ("NetParameter", "layers", 2), ("NetParameter", "input", 3),
        ("NetParameter", "input_dim", 4), ("NetParameter", "input_shape", 8),
        ("LayerParameter", "blobs", 7), ("LayerParameter", "convolution_param", 106),
        ("LayerParameter", "pooling_param", 121), ("LayerParameter", "batch_norm_param", 139),
        ("LayerParameter", "input_param", 143), ("LayerParameter", "swish_param", 147),
        ("LayerParameter", "clip_param", 148), ("LayerParameter", "permute_param", 202),
        ("LayerParameter", "prior_box_param", 203), ("LayerParameter", "detection_output_param", 204),
        ("LayerParameter", "norm_param", 206),
        ("V1LayerParameter", "name", 4), ("V1LayerParameter", "type", 5), ("V1LayerParameter", "blobs", 6),
        ("V1LayerParameter", "layer", 1), ("V1LayerParameter", "blobs_lr", 7),
        ("V0LayerParameter", "kernelsize", 8), ("V0LayerParameter", "blobs", 50), ("V0LayerParameter", "k", 22),
        ("BlobProto", "shape", 7), ("BlobProto", "data", 5), ("BlobProto", "double_data", 8),
        ("BlobProto", "num", 1), ("BlobProto", "width", 4),
        ("ConvolutionParameter", "dilation", 18), ("ConvolutionParameter", "group", 5),
        ("PoolingParameter", "round_mode", 13), ("PoolingParameter", "global_pooling", 12),
        ("LRNParameter", "k", 5), ("BatchNormParameter", "eps", 3), ("InnerProductParameter", "transpose", 6),
        ("PriorBoxParameter", "offset", 13), ("DetectionOutputParameter", "keep_top_k", 7),
        ("DetectionOutputParameter", "confidence_threshold", 9), ("NormalizeParameter", "eps", 4),
    ],
)
def test_field_numbers_match_caffe(message, field, number):
    assert getattr(pb, message).DESCRIPTOR.fields_by_name[field].number == number


def test_v1_layer_type_enum_matches_caffe():
    expected = {"NONE": 0, "ACCURACY": 1, "BNLL": 2, "CONCAT": 3, "CONVOLUTION": 4, "DATA": 5, "DROPOUT": 6,
                "EUCLIDEAN_LOSS": 7, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "IM2COL": 11,
                "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15,
                "MULTINOMIAL_LOGISTIC_LOSS": 16, "POOLING": 17, "RELU": 18, "SIGMOID": 19, "SOFTMAX": 20,
                "SOFTMAX_LOSS": 21, "SPLIT": 22, "TANH": 23, "WINDOW_DATA": 24, "ELTWISE": 25, "POWER": 26,
                "SIGMOID_CROSS_ENTROPY_LOSS": 27, "HINGE_LOSS": 28, "MEMORY_DATA": 29, "ARGMAX": 30,
                "THRESHOLD": 31, "DUMMY_DATA": 32, "SLICE": 33, "MVN": 34, "ABSVAL": 35, "SILENCE": 36,
                "CONTRASTIVE_LOSS": 37, "EXP": 38, "DECONVOLUTION": 39}
    got = {v.name: v.number for v in pb.V1LayerParameter.LayerType.DESCRIPTOR.values}
    assert got == expected


def test_generated_module_is_up_to_date():
    """caffe_pb2.py embeds the serialized schema: it must describe what caffe.proto says (regenerate if not)."""
    pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools (dev extra) regenerates the schema")
    import tempfile

    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory() as d:
        src = ROOT / "harness" / "proto"
        # protoc runs in its own process: grpc_tools bundles a libprotobuf that must not meet TensorFlow's.
        out = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{src}", f"--descriptor_set_out={d}/set.pb",
             str(src / "caffe.proto")], capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        fds = descriptor_pb2.FileDescriptorSet.FromString(Path(d, "set.pb").read_bytes())
    current = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(current)
    assert _fields(fds.file[0].message_type) == _fields(current.message_type)
    assert fds.file[0].enum_type == current.enum_type


def _fields(messages, prefix=""):
    """Every field as (message, name, number, label, type, type_name, default); float defaults compared as floats
    (the runtime prints 0.999 as 0.999000013)."""
    out = []
    for m in messages:
        for f in m.field:
            default = f.default_value
            if f.type in (f.TYPE_FLOAT, f.TYPE_DOUBLE) and default:
                default = round(float(default), 6)
            out.append((prefix + m.name, f.name, f.number, f.label, f.type, f.type_name, default))
        out.extend(_fields(m.nested_type, prefix + m.name + "."))
        out.extend((prefix + m.name, e.name, [(v.name, v.number) for v in e.value]) for e in m.enum_type)
    return out


def _compat_script():
    """benchmarks/protobuf_compat.py as a module (it installs and checks old protobuf runtimes)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("protobuf_compat", ROOT / "benchmarks" / "protobuf_compat.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


COMPAT = _compat_script()


# Protobuf runtimes the generated module must import under: the oldest with the `builder` API, and the oldest that
# TensorFlow (a runtime dependency) accepts.  The test suite never installs anything (no network): it checks the
# runtimes `python benchmarks/protobuf_compat.py` has installed (into .protobuf-sites, or
# $CAFFE_HARNESS_PROTOBUF_SITES), and says how to get them when they are absent.
@pytest.mark.parametrize("version", COMPAT.VERSIONS)
def test_generated_module_imports_under_old_protobuf(version):
    if not COMPAT.is_present(version):
        pytest.skip(f"protobuf {version} is not installed in {COMPAT.DEFAULT_DIR}; run "
                    f"`python benchmarks/protobuf_compat.py` once (it downloads it) to check this runtime")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "protobuf_compat.py"), "--offline", version],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == [f"protobuf {version}: ok: {version} 1"]
