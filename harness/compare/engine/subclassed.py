"""Subclassed Keras models (``keras.Model`` with its own ``call()``, as most published ports are) made comparable
layer by layer.

Keras records a subclassed model called on a symbolic tensor as *one* operation: its sublayers leave no nodes, so no
Caffe layer can pair with them (and a user's wrap ``keras.Model(i, port(i))`` holds a single layer).  Calling the
model's own ``call()`` on symbolic inputs instead runs the user's Python once with every sublayer called on symbolic
tensors: each sublayer leaves its node, and the result is a functional graph of the *same* layer objects (same
weights), which the matcher pairs like any port.  ``keras.ops`` functions called in ``call()`` (``keras.ops.relu(x)``)
leave bare operations, not layers; the activations among them become ``Activation`` layers of the same function and
name (:data:`OP_ACTIVATIONS`), so that a Caffe ReLU or Softmax has a Keras layer to pair with.

Nothing here loads code: the model object is the user's own (a live object through the API or the plugin, or a
``.keras`` file whose classes the user opted into with ``--custom-objects``).
"""

from __future__ import annotations

from typing import Any, Sequence

# keras.ops operation classes (as Keras names them) that are an activation function: rebuilt as
# keras.layers.Activation(<name>) so that matching sees a layer
OP_ACTIVATIONS = {"Relu": "relu", "Relu6": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax",
                  "Elu": "elu", "Selu": "selu", "Softplus": "softplus", "Silu": "silu", "Gelu": "gelu",
                  "HardSigmoid": "hard_sigmoid", "Exp": "exponential", "LogSoftmax": "log_softmax"}


def is_subclassed(op: Any) -> bool:
    """A ``keras.Model`` with a ``call()`` of its own and no functional graph."""
    import keras

    return isinstance(op, keras.Model) and not hasattr(op, "_run_through_graph") and \
        not isinstance(op, keras.Sequential)


def build_shapes(model: Any) -> list[tuple]:
    """The input shapes the model was built with (batch axis free), from Keras's build config."""
    cfg = (model.get_build_config() or {}) if hasattr(model, "get_build_config") else {}
    shape = cfg.get("input_shape")
    if shape is None:
        return []
    shapes = list(shape.values()) if isinstance(shape, dict) else \
        [shape] if shape and not isinstance(shape[0], (list, tuple)) else list(shape)
    return [(None,) + tuple(s[1:]) for s in shapes]


def symbolic_call(model: Any, inputs: Any) -> Any:
    """The model's own ``call()`` on symbolic tensors (inference: ``training=False`` when it takes one)."""
    import inspect

    params = inspect.signature(model.call).parameters
    return model.call(inputs, training=False) if "training" in params else model.call(inputs)


def trace_subclassed(model: Any, shapes: Sequence[tuple], names: Sequence[str]) -> Any:
    """A functional ``keras.Model`` of the subclassed ``model``'s sublayers, on inputs of ``shapes`` (batch free)
    named ``names``."""
    import keras

    inputs = [keras.Input(batch_shape=s, name=n) for s, n in zip(shapes, names)]
    outputs = symbolic_call(model, inputs[0] if len(inputs) == 1 else inputs)
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs, name=model.name)


def activation_layer(op: Any) -> Any:
    """An ``Activation`` layer for a bare ``keras.ops`` activation (same function, same name), else None."""
    import keras

    fn = OP_ACTIVATIONS.get(type(op).__name__)
    if fn is None or isinstance(op, keras.layers.Layer):
        return None
    if fn == "softmax" and getattr(op, "axis", -1) not in (-1, None):
        return None  # another axis: Activation("softmax") would compute something else
    return keras.layers.Activation(fn, name=op.name)
