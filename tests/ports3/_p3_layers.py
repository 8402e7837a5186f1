"""A user's own weight-free preprocessing layer, as a port would write it instead of a Lambda: RGB -> BGR.

Given to the harness with ``--custom-objects _p3_layers:ChannelReverse`` (tests/ports3 is on sys.path).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="ports3")
class ChannelReverse(keras.layers.Layer):
    """x[..., ::-1] on the channels-last axis (what `img[..., ::-1]` does in NumPy)."""

    def call(self, x):
        return keras.ops.flip(x, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape
