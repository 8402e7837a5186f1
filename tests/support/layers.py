"""One Caffe layer built from its prototxt text and run through the NumPy reference.

* :func:`make_layer` -- a :class:`harness.net.Layer` from the text of one ``layer { ... }`` body (parsed with
  protobuf directly, independent of the loader), blobs as float32;
* :func:`run` -- the NumPy reference of one layer on the given bottoms (cast to ``dtype``), its tops as a list.
"""

from __future__ import annotations

import numpy as np


def make_layer(text: str, blobs: tuple = ()):
    """A Layer from the text of one ``layer { ... }`` body (name/type/bottom/top/params); ``blobs`` as float32."""
    from google.protobuf import text_format

    from harness.net import Layer
    from harness.proto import caffe_pb2

    msg = text_format.Parse(text, caffe_pb2.LayerParameter())
    return Layer(msg.name, msg.type, tuple(msg.bottom), tuple(msg.top), msg,
                 tuple(np.asarray(b, dtype=np.float32) for b in blobs))


def run(layer, *xs, blobs: tuple = (), dtype=np.float64) -> list[np.ndarray]:
    """The reference's tops of ``layer`` (a Layer, or layer text for :func:`make_layer` with ``blobs``) on the
    bottoms ``xs``, each cast to ``dtype``, computed in ``dtype``."""
    from harness.reference import REFERENCE

    lay = make_layer(layer, blobs) if isinstance(layer, str) else layer
    return REFERENCE[lay.kind](lay, [np.asarray(x, dtype=dtype) for x in xs], dtype=dtype)
