"""The feature health page in a real browser (Playwright driving Debian's Chromium) against a real
server: a reviewer finds the decaying feature, sees its charts drawn, and sends the outcome alert's
slice to a queue with one click; the card says so in place, and the queue holds the traces."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from prodloop.monitoring import get_alert, list_alerts
from prodloop.server import create_app
from prodloop.settings import Settings
from prodloop.store import create_store_engine, upgrade
from tests.conftest import LiveServer
from tests.server.browser import log_in
from tests.server.test_feature_ui import FEATURE, linked_items, seed_decay


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sa.Engine, dict[str, Any]]]:
    path = tmp_path_factory.mktemp("feature-browser")
    engine = create_store_engine(f"sqlite:///{path / 'prodloop.db'}")
    upgrade(engine)
    yield engine, seed_decay(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def server(
    store: tuple[sa.Engine, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with LiveServer(create_app(store[0], Settings(home=tmp_path_factory.mktemp("home")))) as live:
        yield live


def _console(errors: list[str], message: Any) -> None:
    """Script errors, and Vega's warnings about a specification it could not follow. (Responses that
    failed are the response listener's: a refused form's 422 is expected, a missing asset is not.)"""
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        errors.append(message.text)
    if message.type == "warning" and "WARN" in message.text:
        errors.append(message.text)


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: _console(errors, message))
    tab.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 500 or (r.status == 404 and "favicon" not in r.url)
            else None
        ),
    )
    yield tab
    context.close()
    assert errors == [], errors  # no script failed, no chart warned, the CSP refused nothing


def test_a_reviewer_sees_the_decay_and_sends_its_slice_to_a_queue(
    page: Any, store: tuple[sa.Engine, dict[str, Any]]
) -> None:
    engine, seeded = store
    pid = seeded["pid"]
    alerts = {a["key"]: a for a in list_alerts(engine, pid, status="unresolved")}
    outcome = alerts["outcome:handled_rate"]

    log_in(page, seeded["keys"]["reviewer"])
    page.goto("/ui/features")
    page.locator(f"tr[data-feature={FEATURE}]").get_by_role("link", name=FEATURE).click()
    page.wait_for_url(f"**/ui/features/{FEATURE}")
    expect(page.locator("[data-headline]")).to_contain_text("Handled rate fell")
    expect(page.locator("[data-headline]")).to_contain_text(f"since {outcome['slice']['since'][:10]}")

    # every chart is drawn (as SVG), none failed
    charts = page.locator("[data-vega-spec]")
    count = charts.count()
    drawn = set(charts.evaluate_all("charts => charts.map(chart => chart.id)"))
    assert {
        "chart-outcome-handled_rate",
        "chart-outcome-error_rate",
        "chart-outcome-latency_p95",
        "chart-shift-support-route",
        "chart-history-support-decay-ui_text-input",
        "chart-clusters-support-decay-ui_coverage",
        "chart-cluster-trend-support-decay-ui_coverage",
    } <= drawn
    expect(page.locator("[data-vega-spec][data-rendered=true]")).to_have_count(count)
    for i in range(count):
        expect(charts.nth(i).locator("svg").first).to_be_visible()
    handled = page.locator("#chart-outcome-handled_rate svg")
    expect(handled.locator(".mark-rect.role-mark path")).to_have_count(1)  # the alert's window, shaded
    expect(handled.locator(".mark-text.role-mark text")).to_have_text(["v1", "v2"])  # the releases, labelled
    shift = page.locator("#chart-shift-support-route svg .mark-rect.role-mark path")
    expect(shift).to_have_count(2 * 5)  # each route (four and the new one), reference and current

    # one click sends the outcome alert's slice to the queue
    card = page.locator(f"#alert-{outcome['id']}")
    card.locator("select[name=queue]").select_option(label="triage")
    card.locator("input[name=items]").fill("10")
    card.get_by_role("button", name="Send to queue").click()
    expect(page.locator(f"#alert-{outcome['id']} .notice")).to_have_text("Sent 10 items to queue triage.")
    expect(page.locator(f"#alert-{outcome['id']} [data-routed]")).to_contain_text(
        "10 items sent to queue triage"
    )
    assert page.url.endswith(f"/ui/features/{FEATURE}")  # swapped in place
    items = linked_items(engine, outcome["id"])
    assert len(items) == 10 and set(items) <= set(outcome["slice"]["trace_ids"])
    assert get_alert(engine, pid, outcome["id"])["routed_items"] == 10
    page.screenshot(path="/tmp/ui-feature.png", full_page=True)

    # a refusal shows in the card (the number field would not let a person type it; a script can)
    card = page.locator(f"#alert-{outcome['id']}")
    card.locator("input[name=items]").evaluate(
        "input => { input.removeAttribute('min'); input.value = '0'; }"
    )
    card.get_by_role("button", name="Send to queue").click()
    expect(page.locator(f"#alert-{outcome['id']} [role=alert]")).to_contain_text(
        "must be a whole number from 1"
    )
    assert len(linked_items(engine, outcome["id"])) == 10

    # an uncovered cluster goes to the queue the same way
    cluster = page.locator("[data-cluster='1']")
    cluster.locator("input[name=items]").fill("4")
    cluster.get_by_role("button", name="Send cluster to queue").click()
    expect(cluster.locator(".notice")).to_have_text("Sent 4 traces of cluster #1 to queue triage.")

    # resolving an alert turns its card into a record, without the forms
    coverage = page.locator(f"#alert-{alerts['coverage:cluster-1']['id']}")
    coverage.get_by_role("button", name="Resolve").click()
    resolved = page.locator(f"#alert-{alerts['coverage:cluster-1']['id']}")
    expect(resolved).to_have_class("card alert-card sev-warning status-resolved")
    expect(resolved.locator("form")).to_have_count(0)
    expect(resolved).to_contain_text("resolved by reviewer-1")
