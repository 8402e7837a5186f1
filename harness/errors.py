"""The harness's exceptions.

Every error a user can trigger with bad input is a :class:`HarnessError`; the CLI prints its message on one line and
exits with status 2.  Messages name the file, the layer, the field and the value, and list the alternatives.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class: bad input or an unsupported construct (CLI exit code 2)."""


class ProtoError(HarnessError):
    """A prototxt or caffemodel that cannot be parsed (syntax, truncation, wrong file kind)."""


class UnsupportedLayer(HarnessError):
    """A layer type the harness does not implement (or refuses, such as ``Python``)."""


class UnsupportedParam(HarnessError):
    """A parameter value the harness does not implement; never silently ignored."""


class ShapeError(HarnessError):
    """A blob shape Caffe would reject (bad kernel, mismatched concat, wrong weight blob shape, ...)."""


class InvalidParam(ShapeError, UnsupportedParam):
    """A parameter value Caffe's own setup ``CHECK`` rejects (``max_size <= min_size``, two spellings of one field).

    One class for one fault, whichever side reads the parameter first (:mod:`harness.params`); it is both a
    :class:`ShapeError` and an :class:`UnsupportedParam`, so callers catching either keep working."""


class ResourceError(HarnessError):
    """A net whose activations or weights exceed the memory budget; refused before allocating."""


class ConversionError(HarnessError):
    """A layer that cannot be converted to Keras exactly."""


class KerasModelError(HarnessError):
    """A user Keras model that cannot be loaded safely or used."""


class LoadWarning(UserWarning):
    """A net Caffe accepts but that is usually a mistake or that Caffe runs non-reproducibly (duplicate layer names,
    ``transform_param { mirror: true }``); the net still loads.  The CLI prints it as one ``caffe-harness: warning:``
    line."""
