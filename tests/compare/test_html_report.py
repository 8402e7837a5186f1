"""The HTML report as a user reads it: the net drawn as a DAG (inline SVG, nodes linked to table rows, coloured by
the isolated bound ratio, the first divergence outlined), plots that fit the page, a notice without matplotlib."""

from __future__ import annotations

import base64
import re
import struct

import numpy as np


def _bad_report():
    from support.nets import small_net
    from support.ports import keras_port

    from harness.compare import compare

    net = small_net()
    x = np.random.default_rng(3).standard_normal((2, 3, 13, 11)).astype(np.float32)
    return compare(net, keras_port(net, bug="reshape"), x)


def test_the_graph_draws_every_layer_links_its_row_and_marks_the_first_divergence():
    from harness.compare.reports.report import to_html

    rep = _bad_report()
    page = to_html(rep)
    svg = page[page.index("<svg"):page.index("</svg>")]
    nodes = re.findall(r'<rect class="node" data-layer="([^"]+)"[^>]*fill="([^"]+)"([^>]*)>', svg)
    assert [n for n, _, _ in nodes] == [lay for lay, *_ in rep.graph]  # every Caffe layer, execution order
    by = {n: (fill, rest) for n, fill, rest in nodes}
    assert by["conv1"][0] == "#f4a0a0" and 'stroke-width="3"' in by["conv1"][1]  # failing, the first divergence
    assert by["fc"][0] in ("#c8e6c9", "#ffe08a")  # passes in isolation
    assert by["data"][0] == "#e0e0e0"  # the input: nothing compared
    rows = {lr.key: i for i, lr in enumerate(rep.layers)}
    assert f'<a href="#row-{rows["fc/fc"]}"><rect class="node" data-layer="fc"' in svg
    assert f'id="row-{rows["fc/fc"]}"' in page
    assert svg.count("<line ") == 7  # data-conv1-relu1-pool1-bn1-scale1-fc-prob: one edge per consumer
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched


def test_the_error_plot_fits_the_page_for_a_deep_net():
    from harness.compare.reports.report import Report, to_html
    from harness.compare.reports.result import BlobResult, LayerResult

    layers = []
    for i in range(230):  # ResNet-50 size
        lr = LayerResult(f"layer{i}", f"layer{i}", f"layer{i}/layer{i}", f"k{i}", "name", (1, 3, 5, 7), "ReLU")
        lr.isolated = BlobResult(f"layer{i}", "isolated", True, "t", (1, 3, 5, 7), max_abs=1e-7, scale=1.0,
                                 bound_ratio=0.1)
        lr.chained = BlobResult(f"layer{i}", "chained", True, "t", (1, 3, 5, 7), max_abs=1e-6, scale=1.0)
        layers.append(lr)
    page = to_html(Report("deep", "port", "both", layers, [], []))
    png = base64.b64decode(re.search(r'alt="error per layer" src="data:image/png;base64,([^"]+)"', page)[1])
    width, height = struct.unpack(">II", png[16:24])
    assert width <= 1200 and height < 600, (width, height)
    assert "white-space:pre-wrap" in page and "img{max-width:100%" in page


def test_a_visible_notice_when_matplotlib_is_missing(monkeypatch):
    import builtins

    from harness.compare.reports.report import to_html

    rep = _bad_report()
    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib here")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    page = to_html(rep)
    assert 'pip install "caffe-keras-harness[report]"' in page and 'alt="error per layer"' not in page
