"""SavedModels written by hand with ``tf.Module``/``tf.function`` and raw ``tf.nn`` ops (no Keras, no name scopes;
_handrolled.py), checked with ``caffe-harness check NET --weights W --saved-model DIR --json``: a correct port is
EQUIVALENT with pairing coverage >= 95% (issue 20: pairing from the graph's structure, shapes and order, whoever
wrote it), a port with one bug names its layer and cause.  No third-party converter needed: these run everywhere."""

from __future__ import annotations

import pytest

from . import _handrolled as H
from . import _judge as J

DEFAULT = {"plain", "plain_nchw", "bn", "plain_floor"}
# variant -> (Caffe layer, cause) of its bug
BUGS = {"plain_floor": ("pool1", "pool_rounding"), "lrn_alpha": ("norm1", "lrn_alpha_scaling"),
        "bn_eps": ("bn2", "bn_epsilon"), "res_axes": ("conv2a", "kernel_axes_swapped")}


def _param(v: str):
    return pytest.param(v, id=v, marks=[] if v in DEFAULT else [pytest.mark.slow])


@pytest.fixture(scope="session")
def handrolled(workdir):
    saved: dict = {}

    def get(variant: str):
        if variant not in saved:
            saved[variant] = H.save(variant, workdir / "handrolled")
        return saved[variant]

    return get


@pytest.mark.parametrize("variant", [_param(v) for v in H.VARIANTS if v not in BUGS])
def test_handrolled_saved_model_is_equivalent(handrolled, check, variant):
    net = H.VARIANTS[variant][0]
    J.assert_equivalent(*check(net, "--saved-model", handrolled(variant)), "saved_model")


@pytest.mark.parametrize("variant", [_param(v) for v in BUGS])
def test_handrolled_bug_is_named(handrolled, check, variant):
    net = H.VARIANTS[variant][0]
    J.assert_named(*check(net, "--saved-model", handrolled(variant)), *BUGS[variant])
