"""The HTML report as a user sees it: the page of a failing and of a passing check, rendered by headless Chromium
(Debian's ``chromium``, driven by Playwright's Python driver against the system browser; no downloaded browser).

Asserted on each page, at a 1280x900 viewport: the graph is an SVG with one node per Caffe layer, and clicking a node
navigates to its table row (``location.hash == "#row-i"`` and that row is the ``:target``); the table has one row per
compared pair; the plots (and, for the failing check, the heat map) are decoded images (``naturalWidth > 0``); the
console shows no error; the screenshot is not one flat colour; nothing overflows horizontally.

Skipped, with the reason, when /usr/bin/chromium or playwright is not installed (``.ci/run`` installs both).
``CAFFE_HARNESS_SCREENSHOTS=DIR`` also writes the two screenshots there (docs/screenshots/ holds the README's).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("CAFFE_HARNESS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}

if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed (it comes with the report extra)")


def _report(bug):
    from support.nets import small_net
    from support.ports import keras_port

    from harness.compare import compare

    net = small_net()
    x = np.random.default_rng(3).standard_normal((2, 3, 13, 11)).astype(np.float32)
    return compare(net, keras_port(net, bug=bug), x)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.parametrize("case", ["failing", "passing"])
def test_the_report_renders_in_chromium(case, browser, tmp_path):
    from harness.compare.reports.report import to_html

    rep = _report("reshape" if case == "failing" else None)
    assert bool(rep) is (case == "passing")
    html_path = tmp_path / "report.html"
    html_path.write_text(to_html(rep), encoding="utf-8")

    page = browser.new_page(viewport=VIEWPORT)
    errors = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(html_path.as_uri(), wait_until="load")

    # The graph: one node per Caffe layer, in execution order.
    assert page.locator("svg[aria-label='net graph']").count() == 1
    nodes = page.locator("svg rect.node")
    assert nodes.evaluate_all("ns => ns.map(n => n.dataset.layer)") == [name for name, *_ in rep.graph]
    box = page.locator("svg[aria-label='net graph']").bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0

    # The table: a header and one row per compared pair.
    assert page.locator("table tr[id^='row-']").count() == len(rep.layers) > 0

    # Every node of a compared layer links to its row; clicking it makes that row the :target.
    row_of = {}
    for i, lr in enumerate(rep.layers):
        for n in lr.segment or (lr.caffe_layer,):
            row_of[n] = i
    assert row_of, "no node links to a row"
    for name, i in row_of.items():
        page.locator(f"svg a:has(rect.node[data-layer='{name}'])").click()
        page.wait_for_function("h => location.hash === h", arg=f"#row-{i}", timeout=5_000)
        assert page.evaluate("() => document.querySelector('tr:target') && document.querySelector('tr:target').id") \
            == f"row-{i}", name
        assert page.locator(f"#row-{i}").is_visible()
    page.evaluate("() => { history.replaceState(null, '', location.pathname); window.scrollTo(0, 0); }")

    # The plots are drawn: each image decoded to a non-empty bitmap.
    wanted = ["error per layer"] + (["error heat map"] if case == "failing" else [])
    imgs = page.evaluate("() => [...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    assert sorted(a for a, *_ in imgs) == sorted(wanted), imgs
    for alt, complete, w, h in imgs:
        assert complete and w > 0 and h > 0, (alt, w, h)

    # Nothing wider than the viewport.
    sw, iw = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert sw <= iw == VIEWPORT["width"], f"horizontal overflow: scrollWidth {sw} > innerWidth {iw}"

    # The screenshot is not blank.
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    assert shot.size == (VIEWPORT["width"], VIEWPORT["height"])
    lo_hi = shot.getextrema()
    assert any(lo != hi for lo, hi in lo_hi), f"the screenshot is one flat colour {lo_hi}"
    colours = shot.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 10, "the screenshot has almost nothing drawn"

    assert errors == [], errors
    page.close()

    out = os.environ.get("CAFFE_HARNESS_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        small = shot.resize((960, 675), Image.LANCZOS).quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(Path(out) / f"report-{case}.png", optimize=True)


def test_long_layer_names_do_not_widen_the_page(browser, tmp_path):
    """SSD/GoogLeNet-style names (``inception_4e/5x5_reduce/...``) once pushed the table to 1,460 px at a 1280 px
    viewport; the name cells now wrap and the table scrolls inside its own box."""
    from harness.compare.reports.report import Report, to_html
    from harness.compare.reports.result import BlobResult, LayerResult

    layers = []
    for i in range(30):
        n = f"inception_4e/5x5_reduce_{i}_mbox_conf_flat"
        lr = LayerResult(n, n, f"{n}/{n}", n.replace("/", ".") + "__helper", "name", (1, 384, 19, 19), "Convolution")
        lr.isolated = BlobResult(n, "isolated", False, "t", (1, 384, 19, 19), max_abs=1.2345e-3, scale=1.0,
                                 bound_ratio=10.1)
        lr.chained = BlobResult(n, "chained", False, "t", (1, 384, 19, 19), max_abs=1.2345e-2, scale=1.0, growth=1.234)
        layers.append(lr)
    html_path = tmp_path / "long.html"
    html_path.write_text(to_html(Report("deep", "port", "both", layers, [], [])), encoding="utf-8")
    page = browser.new_page(viewport=VIEWPORT)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(html_path.as_uri(), wait_until="load")
    sw, iw = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert sw <= iw, f"horizontal overflow: scrollWidth {sw} > innerWidth {iw}"
    assert page.locator("table tr[id^='row-']").count() == 30
    assert errors == [], errors
    page.close()
