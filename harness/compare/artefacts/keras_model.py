"""The Keras kind (``check --keras MODEL``, manifest ``keras``; none: the harness's own conversion): a Keras model
loaded in safe mode (no code from the file runs) and compared by :func:`harness.compare.engine.comparison.compare`,
chained and isolated.  The kind seam of :mod:`.kinds`.  ``compare()`` runs the preamble's steps itself
(:mod:`harness.compare.engine.inputs`: it must know whether it seeded the net's weights to say that a model of your
own cannot agree with them), so :attr:`ArtefactKind.own_preamble` is set and :func:`judge` gets the request."""

from __future__ import annotations

import os
from typing import Any, Mapping


def open_artefact(path: Any, options: Mapping[str, Any]) -> Any:
    """The model as given: a path (loaded in safe mode by ``compare()``, ``options["custom_objects"]``: the port's
    own layer classes), a model object, or None (convert the net)."""
    return path


def describe(model: Any) -> list[tuple[str, str]]:
    """``[(layer name, class name)]`` of the model's layers (a path is loaded in safe mode)."""
    if isinstance(model, (str, os.PathLike)):
        from ..engine.loading import load_keras_model

        model = load_keras_model(model)
    return [(lay.name, type(lay).__name__) for lay in getattr(model, "layers", [])]


def judge(pre: Any, model: Any, options: Mapping[str, Any], **kw: Any) -> Any:
    """:func:`~harness.compare.engine.comparison.compare` of the request's net and inputs with ``model`` (None:
    converted); ``options``: compare()'s own keywords (mode, user_map, progress, session_hook, keras_inputs,
    custom_objects)."""
    from ..engine.comparison import compare

    r = pre.request
    return compare(r.net_or_prototxt, model, r.inputs, weights=r.weights, seed=r.seed, input_shapes=r.input_shapes,
                   **dict(options), **kw)
