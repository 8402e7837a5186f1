"""Property: random whole nets (chains, branches joined by Concat/Eltwise, residual sums, in-place layers, several
inputs, classifier heads) converted to Keras compute every reference record."""

from __future__ import annotations

from hypothesis import given, settings

from harness.strategies import nets

from ._props import examples
from .test_layers import check_case


@settings(max_examples=examples(2.0))
@given(case=nets())
def test_converted_net_matches_reference(case):
    check_case(case, comparator="always")


@settings(max_examples=examples(0.5))
@given(case=nets(max_layers=10, max_inputs=3, ops=("residual", "branch_concat", "branch_eltwise", "act", "bn_scale",
                                                   "pool", "slice"),
                 heads=("flatten_ip", "ip_implicit", "gap_ip_softmax")))
def test_converted_dag_with_joins_matches_reference(case):
    check_case(case)


@settings(max_examples=examples(0.5))
@given(case=nets(max_layers=8, ops=("bn_scale", "conv", "act", "residual", "pool")))
def test_folded_batchnorm_scale_matches_reference(case):
    """convert(fold_batchnorm=True): each BatchNorm + in-place Scale becomes one BatchNormalization; every record,
    the folded Scale's included, still matches."""
    check_case(case, comparator="always", fold_batchnorm=True)
