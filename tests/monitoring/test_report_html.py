"""The standalone HTML drift report: a chart per column from the right numbers, user strings escaped,
nothing loaded from the network, and every chart drawn by a real browser from the file alone."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from prodloop.monitoring.drift import dataset_drift
from prodloop.monitoring.report_html import drift_report_html

NASTY = '</script><img src=x onerror="alert(1)">'


def _data() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    words = "refund invoice password login parcel courier late broken screen battery".split()

    def texts(n: int, extra: list[str]) -> np.ndarray:
        vocabulary = words + extra
        return np.array([" ".join(rng.choice(vocabulary, size=6)) + f" #{i}" for i in range(n)], dtype=object)

    reference = {
        "latency": rng.normal(100, 10, 300),
        "channel": rng.choice(np.array(["web", "app", NASTY], dtype=object), 300, p=[0.6, 0.3, 0.1]),
        "message": texts(300, []),
        "stable": rng.normal(0, 1, 300),
    }
    current = {
        "latency": rng.normal(120, 10, 250),
        "channel": rng.choice(np.array(["web", "app", NASTY], dtype=object), 250, p=[0.3, 0.6, 0.1]),
        "message": texts(250, ["vault", "keypad", "firmware"] * 3),
        "stable": rng.permutation(reference["stable"][:250]),
    }
    reference[NASTY] = reference.pop("stable")
    current[NASTY] = current.pop("stable")
    return reference, current


@pytest.fixture(scope="module")
def rendered() -> tuple[str, Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    reference, current = _data()
    report = dataset_drift(reference, current)
    page = drift_report_html(
        report,
        reference,
        current,
        reference_name="jan<b>.csv",
        current_name="feb.csv",
        skipped={"when": "dates"},
    )
    return page, report, reference, current


def _specs(page: str) -> dict[str, dict[str, Any]]:
    """The Vega-Lite specification of each chart, by the column its section is about."""
    specs = {}
    for section in re.findall(r'<section class="card column".*?</section>', page, flags=re.S):
        column = html.unescape(re.search(r'data-column="([^"]*)"', section).group(1))
        spec = re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', section, flags=re.S)
        if spec:
            specs[column] = json.loads(spec.group(1))
    return specs


def test_a_chart_per_column_drifted_first(rendered: Any) -> None:
    page, report, _, _ = rendered
    specs = _specs(page)
    assert set(specs) == {c.column for c in report.columns}
    order = [
        html.unescape(c) for c in re.findall(r'<section class="card column"[^>]*data-column="([^"]*)"', page)
    ]
    drifted = {c.column for c in report.columns if c.drift}
    assert drifted == {"latency", "channel", "message"}
    assert set(order[:3]) == drifted and order[3] == NASTY
    assert page.count("<tr data-column=") == len(report.columns)


def test_the_verdict_and_each_tests_numbers_are_shown(rendered: Any) -> None:
    page, report, _, _ = rendered
    verdict = re.search(r'<div class="verdict[^"]*" id="verdict"[^>]*>(.*?)</div>', page, flags=re.S).group(1)
    assert "Dataset drift detected." in verdict
    assert "3 of 4 columns drifted (75.0%)" in " ".join(verdict.split())
    latency = next(c for c in report.columns if c.column == "latency").result
    assert latency.test == "ks"
    assert f"p-value {latency.p_value:.2e} &lt; 0.05: drift" in page
    message = next(c for c in report.columns if c.column == "message").result
    assert f"domain classifier ROC AUC {message.statistic:.3g}, above the 95th percentile" in page


def test_numeric_histograms_share_their_bins_and_show_shares(rendered: Any) -> None:
    page, _, reference, current = rendered
    rows = _specs(page)["latency"]["data"]["values"]
    sides = {}
    for row in rows:
        sides.setdefault(row["side"], []).append(row)
    assert set(sides) == {"jan<b>.csv", "feb.csv"}
    ref_bins = [(r["start"], r["end"]) for r in sides["jan<b>.csv"]]
    assert ref_bins == [(r["start"], r["end"]) for r in sides["feb.csv"]]
    edges = np.array([start for start, _ in ref_bins] + [ref_bins[-1][1]])
    expected = np.histogram(current["latency"], bins=edges)[0] / len(current["latency"])
    np.testing.assert_allclose([r["share"] for r in sides["feb.csv"]], expected)
    assert edges[0] == min(reference["latency"].min(), current["latency"].min())
    assert edges[-1] == max(reference["latency"].max(), current["latency"].max())


def test_categorical_bars_are_the_category_shares(rendered: Any) -> None:
    page, _, reference, _ = rendered
    rows = _specs(page)["channel"]["data"]["values"]
    shares = {r["category"]: r["share"] for r in rows if r["side"] == "jan<b>.csv"}
    for category in ("web", "app", NASTY):
        assert shares[category] == pytest.approx(np.mean(reference["channel"] == category))


def test_text_columns_show_the_separating_terms_and_new_examples(rendered: Any) -> None:
    page, _, _, current = rendered
    rows = _specs(page)["message"]["data"]["values"]
    current_terms = {r["term"] for r in rows if r["weight"] > 0}
    assert current_terms & {"vault", "keypad", "firmware"}
    section = re.search(
        r'<section class="card column" id="[^"]+" data-column="message".*?</section>', page, re.S
    )
    examples = re.findall(r"<li>(.*?)</li>", section.group(0))
    assert len(examples) == 5
    assert all(html.unescape(e) in set(current["message"]) for e in examples)


def test_user_strings_are_escaped(rendered: Any) -> None:
    page, _, _, _ = rendered
    assert NASTY not in page
    ours = re.sub(r"<script>.*?</script>", "", page, flags=re.S)  # the vendored Vega scripts left out
    assert "<img" not in ours
    headings = re.findall(r"<h2>(.*?)</h2>", ours)
    nasty = [h for h in headings if html.unescape(h) == NASTY]
    assert len(nasty) == 1 and nasty[0].startswith("&lt;/script&gt;&lt;img src=x onerror=")
    assert "jan&lt;b&gt;.csv" in page
    # Inside the JSON of a chart the category is escaped too, and still parses back to itself.
    assert "\\u003c/script\\u003e\\u003cimg" in page


def test_nothing_is_loaded_from_elsewhere(rendered: Any) -> None:
    page, _, _, _ = rendered
    assert not re.search(r"<script[^>]*\ssrc=", page)
    assert not re.search(r"<link\b", page)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "default-src 'none'" in page  # the page's CSP forbids any request
    assert "sourceMappingURL" not in page
    assert "vega-lite" in page.lower() and "vegaEmbed" in page


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from tests.server.browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("browser tests need Chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_a_browser_draws_every_chart_offline(rendered: Any, browser: Any, tmp_path: Path) -> None:
    page_html, report, _, _ = rendered
    path = tmp_path / "report.html"
    path.write_text(page_html, encoding="utf-8")
    page = browser.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_function(
        "document.querySelectorAll('[data-vega-spec]').length === "
        "document.querySelectorAll('[data-vega-spec][data-rendered]').length",
        timeout=20_000,
    )
    states = page.eval_on_selector_all("[data-vega-spec]", "els => els.map(e => e.dataset.rendered)")
    assert states == ["true"] * len(report.columns)
    assert page.locator("[data-vega-spec] svg").count() == len(report.columns)
    assert [url for url in requests if not url.startswith("file://")] == []
    assert errors == []
    assert page.get_by_role("heading", name=NASTY).count() == 1  # shown as text, not run
    # A click on a header sorts the table by that column.
    page.get_by_role("columnheader", name="column").click()
    names = page.eval_on_selector_all("#columns tbody tr", "rows => rows.map(r => r.dataset.column)")
    assert names == sorted(names, key=lambda n: n.lower()) or names == sorted(names)
    page.close()
