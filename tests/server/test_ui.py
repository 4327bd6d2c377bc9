"""The web UI, used as a person would: in a real browser (Playwright driving Debian's Chromium)
against a real server, plus a few HTTP-level checks of what a browser does not show."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from prodloop.capture import SignalIn, SpanIn, TraceIn, ingest_traces, record_signals
from prodloop.server import create_api_key, create_app
from prodloop.server.auth import project_id
from prodloop.settings import Settings
from prodloop.store import create_store_engine, upgrade
from tests.conftest import LiveServer
from tests.server.browser import log_in

RICH = "5eed" * 8  # the trace with child spans, messages and signals
NOW = datetime.now(UTC).replace(microsecond=0)
FILLERS = 56  # with RICH, 57 traces: a first page of 50 and an older page of 7
COPIED = {f"{i + 1:032x}" for i in range(FILLERS) if i % 10 == 0}  # fillers with an implicit signal


def filler(i: int) -> TraceIn:
    return TraceIn(
        trace_id=f"{i + 1:032x}",
        feature="support-bot" if i % 2 == 0 else "summarizer",
        release="v1" if i % 3 else "v2",
        model="small-model" if i % 4 else "large-model",
        name="answer",
        start_time=NOW - timedelta(days=i // 8, minutes=5 + i),  # a week of traffic
        duration_ms=200 + i,
        input=f"filler question number {i}",
        output=f"filler answer number {i}",
        input_tokens=10 + i,
        output_tokens=5,
    )


def rich_trace() -> TraceIn:
    return TraceIn(
        trace_id=RICH,
        feature="support-bot",
        release="v2",
        join_key="ticket-42",
        name="support answer",
        model="large-model",
        provider="openai",
        start_time=NOW - timedelta(minutes=1),
        duration_ms=1200,
        input="Where is my order <b>#42</b>?",
        output="It ships tomorrow.",
        attributes={"app.customer_tier": "gold", "app.region": "eu-west"},
        spans=[
            SpanIn(
                span_id="a1" * 8,
                name="retrieve order docs",
                operation="retrieval",
                start_time=NOW - timedelta(minutes=1) + timedelta(milliseconds=20),
                duration_ms=150,
                attributes={"retrieval.top_k": 5},
            ),
            SpanIn(
                span_id="b2" * 8,
                name="chat large-model",
                operation="chat",
                provider="openai",
                model="large-model",
                start_time=NOW - timedelta(minutes=1) + timedelta(milliseconds=200),
                duration_ms=900,
                input=[
                    {"role": "system", "content": "You are a helpful support agent."},
                    {"role": "user", "content": "Where is my order #42?"},
                ],
                output=[{"role": "assistant", "content": "It ships tomorrow."}],
                input_tokens=812,
                output_tokens=64,
                attributes={"gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 256},
            ),
            SpanIn(
                span_id="c3" * 8,
                parent_span_id="b2" * 8,
                name="tool lookup_order",
                operation="execute_tool",
                tool_name="lookup_order",
                start_time=NOW - timedelta(minutes=1) + timedelta(milliseconds=400),
                duration_ms=120,
                status="error",
                status_message="order service timed out",
            ),
        ],
    )


def seed(engine: sa.Engine) -> None:
    pid = project_id(engine, "default")
    ingest_traces(engine, pid, [rich_trace(), *(filler(i) for i in range(FILLERS))])
    record_signals(
        engine,
        pid,
        [
            SignalIn(trace_id=RICH, kind="explicit", name="thumbs", value="down", user_id="u-7"),
            SignalIn(trace_id=RICH, kind="explicit", name="correction", text="It ships on Monday."),
            SignalIn(join_key="ticket-42", kind="outcome", name="escalated", value=True),
            *(SignalIn(trace_id=trace_id, kind="implicit", name="copy") for trace_id in sorted(COPIED)),
            SignalIn(join_key="never-arrives", kind="outcome", name="refunded", value=False),
        ],
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sa.Engine, dict[str, str]]]:
    """One migrated SQLite store with seeded traces and a key of each role, shared by the module."""
    path = tmp_path_factory.mktemp("ui")
    engine = create_store_engine(f"sqlite:///{path / 'prodloop.db'}")
    upgrade(engine)
    keys = {role: create_api_key(engine, "default", role) for role in ("admin", "viewer", "ingest")}
    keys["other"] = create_api_key(engine, "elsewhere", "admin")
    seed(engine)
    yield engine, keys
    engine.dispose()


@pytest.fixture(scope="module")
def server(
    store: tuple[sa.Engine, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    app = create_app(store[0], Settings(home=tmp_path_factory.mktemp("home")))
    with LiveServer(app) as live:
        yield live


@pytest.fixture(scope="module")
def keys(store: tuple[sa.Engine, dict[str, str]]) -> dict[str, str]:
    return store[1]


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(5000)
    tab = context.new_page()
    yield tab
    context.close()


def settled(page: Any) -> None:
    """Wait until htmx has swapped in the answer to the last filter change or page link."""
    expect(page.locator("#results.htmx-request")).to_have_count(0)


def listed_ids(page: Any) -> list[str]:
    return page.locator("table.traces tbody tr").evaluate_all("rows => rows.map(r => r.dataset.traceId)")


def expected_ids(keep: Any) -> list[str]:
    """The seeded trace ids that ``keep(trace)`` selects, newest first."""
    chosen = [t for t in [rich_trace(), *(filler(i) for i in range(FILLERS))] if keep(t)]
    chosen.sort(key=lambda t: (t.start_time, t.trace_id), reverse=True)
    return [t.trace_id for t in chosen]


# --- in the browser ----------------------------------------------------------------------------------


def test_not_logged_in_goes_to_login_and_back(page: Any, keys: dict[str, str]) -> None:
    page.goto(f"/ui/traces/{RICH}")
    assert "/ui/login" in page.url
    assert page.get_by_role("heading", name="Sign in").is_visible()
    page.fill("input[name=key]", keys["viewer"])
    page.click("button[type=submit]")
    page.wait_for_url(f"**/ui/traces/{RICH}")
    assert page.get_by_role("heading", name=re.compile("support answer")).is_visible()


def test_wrong_key_shows_an_error(page: Any) -> None:
    log_in(page, "pl_not-a-real-key", accepted=False)
    assert "/ui/login" in page.url
    assert "not known to prodloop" in page.get_by_role("alert").inner_text()
    page.screenshot(path="/tmp/ui-login.png")


def test_ingest_key_is_refused_with_a_reason(page: Any, keys: dict[str, str]) -> None:
    log_in(page, keys["ingest"], accepted=False)
    assert "/ui/login" in page.url
    alert = page.get_by_role("alert").inner_text()
    assert "can only send data" in alert and "viewer, annotator or admin key" in alert
    page.goto("/ui/traces")
    assert "/ui/login" in page.url  # no cookie was set


def test_admin_logs_in_and_sees_newest_traces_first(page: Any, keys: dict[str, str]) -> None:
    log_in(page, keys["admin"])
    page.wait_for_url("**/ui/traces")
    assert page.locator(".topbar .who").inner_text().startswith("default · admin")
    assert listed_ids(page) == expected_ids(lambda t: True)[:50]
    first = page.locator(f"tr[data-trace-id='{RICH}']")
    text = first.inner_text()
    assert "support-bot" in text and "v2" in text and "large-model" in text
    assert "Where is my order <b>#42</b>?" in text  # shown as text, not as markup
    assert first.locator(".badge", has_text="thumbs:down").is_visible()
    assert first.locator(".badge", has_text="escalated").is_visible()
    page.screenshot(path="/tmp/ui-traces.png", full_page=True)


def test_filters_narrow_the_list(page: Any, keys: dict[str, str]) -> None:
    log_in(page, keys["viewer"])
    page.wait_for_url("**/ui/traces")

    page.select_option("select[name=release]", "v2")  # htmx swaps the table in place
    page.wait_for_url(re.compile(r"release=v2"))
    settled(page)
    assert listed_ids(page) == expected_ids(lambda t: t.release == "v2")

    page.select_option("select[name=feature]", "summarizer")
    page.wait_for_url(re.compile(r"feature=summarizer"))
    settled(page)
    assert listed_ids(page) == expected_ids(lambda t: t.release == "v2" and t.feature == "summarizer")
    coverage = page.locator(".coverage")
    assert "Signal coverage of summarizer" in coverage.inner_text()
    page.select_option("select[name=release]", "")
    page.select_option("select[name=feature]", "support-bot")
    expect(page.locator(".coverage h2")).to_contain_text("support-bot")
    # support-bot: 29 traces; RICH has explicit feedback and an outcome, 6 fillers were copied.
    meters = dict(
        zip(
            page.locator(".meter-label span").all_inner_texts(),
            page.locator(".meter-label b").all_inner_texts(),
            strict=True,
        )
    )
    assert meters["explicit feedback"] == "3.4%"
    assert meters["implicit signals"] == "21%"
    assert meters["outcomes"] == "3.4%"
    assert meters["any signal"] == "24%"
    assert meters["signals without a trace"] == "1"
    assert page.locator("svg.daily rect.vol").count() == 7
    page.locator(".coverage").screenshot(path="/tmp/ui-coverage.png")

    page.goto("/ui/traces?has_signal=with")  # a plain link with filters works without htmx
    assert listed_ids(page) == expected_ids(lambda t: t.trace_id in {RICH} | COPIED)
    assert page.locator("select[name=has_signal]").input_value() == "with"

    page.goto("/ui/traces?signal=escalated")
    assert listed_ids(page) == [RICH]
    page.goto("/ui/traces?status=error")
    assert listed_ids(page) == [RICH]
    page.goto("/ui/traces?q=number+17")
    assert listed_ids(page) == [f"{18:032x}"]
    page.goto("/ui/traces?q=nothing+says+this")
    assert "No traces match these filters" in page.locator("#results").inner_text()


def test_filters_work_without_javascript(browser: Any, server: LiveServer, keys: dict[str, str]) -> None:
    context = browser.new_context(base_url=server.url, java_script_enabled=False)
    page = context.new_page()
    try:
        log_in(page, keys["viewer"])
        page.select_option("select[name=model]", "large-model")
        page.select_option("select[name=has_signal]", "without")
        page.click("text=Filter")
        page.wait_for_url(re.compile(r"model=large-model"))
        assert listed_ids(page) == expected_ids(
            lambda t: t.model == "large-model" and t.trace_id not in {RICH} | COPIED
        )
        assert page.locator("select[name=model]").input_value() == "large-model"
    finally:
        context.close()


def test_time_range_filter(page: Any, keys: dict[str, str]) -> None:
    log_in(page, keys["viewer"])
    since = (NOW - timedelta(minutes=9, seconds=30)).strftime("%Y-%m-%dT%H:%M:%S")
    until = (NOW - timedelta(minutes=6, seconds=30)).strftime("%Y-%m-%dT%H:%M:%S")
    page.goto(f"/ui/traces?since={since}&until={until}")
    # shown again in the form; the browser drops ":00" seconds from a datetime-local value
    assert datetime.fromisoformat(page.locator("input[name=since]").input_value()) == datetime.fromisoformat(
        since
    )
    assert listed_ids(page) == expected_ids(
        lambda t: (
            NOW - timedelta(minutes=9, seconds=30) <= t.start_time < NOW - timedelta(minutes=6, seconds=30)
        )
    )
    assert len(listed_ids(page)) == 3
    page.goto(f"/ui/traces?since={since}Z&until={until}%2B00:00")  # with a zone, the same window
    assert len(listed_ids(page)) == 3
    assert datetime.fromisoformat(page.locator("input[name=until]").input_value()) == datetime.fromisoformat(
        until
    )
    page.goto("/ui/traces?since=yesterday")
    assert "is not a date and time" in page.get_by_role("alert").inner_text()


def test_older_pages_continue_without_repeats(page: Any, keys: dict[str, str]) -> None:
    log_in(page, keys["viewer"])
    page.wait_for_url("**/ui/traces")
    first = listed_ids(page)
    assert len(first) == 50
    page.click("text=Older →")
    page.wait_for_url(re.compile(r"cursor="))
    settled(page)
    second = listed_ids(page)
    assert first + second == expected_ids(lambda t: True)
    assert page.locator("text=Older →").count() == 0
    page.go_back()  # htmx pushed the older page onto the history; back shows the first page again
    expect(page.locator(f"tr[data-trace-id='{first[0]}']")).to_have_count(1)
    assert listed_ids(page) == first
    assert page.locator("select[name=feature]").count() == 1  # the whole page, not only the table

    page.goto("/ui/traces?feature=support-bot&limit=10")  # filters stay on the older pages
    seen: list[str] = []
    while True:
        seen += listed_ids(page)
        older = page.locator("a.older")
        if older.count() == 0:
            break
        assert "feature=support-bot" in (older.get_attribute("href") or "")
        older.click()
        settled(page)
        expect(page.locator(f"tr[data-trace-id='{seen[-1]}']")).to_have_count(0)
    assert seen == expected_ids(lambda t: t.feature == "support-bot")


def test_trace_page_shows_spans_messages_attributes_and_signals(page: Any, keys: dict[str, str]) -> None:
    log_in(page, keys["viewer"])
    page.wait_for_url("**/ui/traces")
    page.locator(f"tr[data-trace-id='{RICH}'] a.row-link").click()
    page.wait_for_url(f"**/ui/traces/{RICH}")

    head = page.locator(".trace-head").inner_text()
    for fact in (RICH, "support-bot", "v2", "large-model", "ticket-42", "1.20 s"):
        assert fact in head
    assert "Where is my order <b>#42</b>?" in page.locator(".io").inner_text()

    spans = page.locator("details.span")
    assert spans.count() == 4
    names = [n.strip() for n in page.locator("details.span .wf-name .name").all_inner_texts()]
    assert names == ["support answer", "retrieve order docs", "chat large-model", "tool lookup_order"]
    indents = page.locator("details.span .wf-name").evaluate_all("els => els.map(e => e.style.paddingLeft)")
    assert indents == ["0px", "16px", "16px", "32px"]  # the tool call runs inside the chat call
    bars = page.locator(".wf-bar").evaluate_all(
        "els => els.map(e => [parseFloat(e.style.left), parseFloat(e.style.width)])"
    )
    assert bars[0] == [0, 100]
    assert bars[2] == [16.67, 75]  # starts 200 ms into 1.2 s and lasts 900 ms

    chat = page.locator(f"#span-{'b2' * 8}")
    assert not chat.locator(".bubble").first.is_visible()
    chat.locator("summary").click()
    bubbles = chat.locator(".bubble")
    assert bubbles.count() == 3
    assert bubbles.nth(0).inner_text().lower().startswith("system")
    assert "Where is my order #42?" in bubbles.nth(1).inner_text()
    assert "It ships tomorrow." in bubbles.nth(2).inner_text()
    body = chat.locator(".span-body").inner_text()
    assert "temperature" in body and "0.2" in body and "812" in body
    assert "gen_ai.request.max_tokens" in body

    root = page.locator("details.span").first
    root.locator("summary").click()
    assert "app.customer_tier" in root.inner_text() and "gold" in root.inner_text()

    tool = page.locator(f"#span-{'c3' * 8}")
    tool.locator("summary").click()
    assert "order service timed out" in tool.inner_text()

    signals = page.locator(".signals-table tbody").inner_text()
    assert "thumbs" in signals and "down" in signals and "u-7" in signals
    assert "It ships on Monday." in signals and "escalated" in signals and "true" in signals
    page.screenshot(path="/tmp/ui-trace.png", full_page=True)


def test_unknown_trace_is_a_404_page(page: Any, keys: dict[str, str]) -> None:
    log_in(page, keys["viewer"])
    response = page.goto(f"/ui/traces/{'f' * 32}")
    assert response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()
    assert "not found in this project" in page.locator("main").inner_text()


def test_a_key_sees_only_its_project(page: Any, keys: dict[str, str]) -> None:
    log_in(page, keys["other"])
    page.wait_for_url("**/ui/traces")
    assert listed_ids(page) == []
    assert "No traces yet" in page.locator("main").inner_text()
    assert page.goto(f"/ui/traces/{RICH}").status == 404


def test_sign_out(page: Any, keys: dict[str, str]) -> None:
    log_in(page, keys["admin"])
    page.wait_for_url("**/ui/traces")
    page.click("text=Sign out")
    page.wait_for_url("**/ui/login")
    page.goto("/ui/traces")
    assert "/ui/login" in page.url


# --- over HTTP ---------------------------------------------------------------------------------------


@pytest.fixture
def http(store: tuple[sa.Engine, dict[str, str]], settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(store[0], settings), follow_redirects=False) as client:
        yield client


def test_pages_redirect_to_login_not_json(http: TestClient) -> None:
    for path in ("/", "/ui", "/ui/traces", f"/ui/traces/{RICH}", "/ui/nowhere"):
        response = http.get(path)
        assert response.status_code == 303, path
        assert "/ui/login" in response.headers["location"] or response.headers["location"] == "/ui/traces"
    assert http.get(f"/ui/traces/{RICH}").headers["location"] == f"/ui/login?next=%2Fui%2Ftraces%2F{RICH}"
    htmx = http.get("/ui/traces?release=v2", headers={"HX-Request": "true"})
    assert htmx.headers["HX-Redirect"].startswith("/ui/login")


def test_login_cookie_is_http_only_and_strict(http: TestClient, keys: dict[str, str]) -> None:
    response = http.post("/ui/login", data={"key": keys["viewer"], "next": "https://evil.example/"})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/traces"  # never off-site
    cookie = response.headers["set-cookie"].lower()
    assert "prodloop_key=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    page = http.get("/ui/traces")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    partial = http.get("/ui/traces?feature=summarizer", headers={"HX-Request": "true"})
    assert "<html" not in partial.text and "data-trace-id" in partial.text  # only the results


def test_static_files_are_served_and_cached(http: TestClient, keys: dict[str, str]) -> None:
    http.post("/ui/login", data={"key": keys["viewer"]})
    css = http.get("/ui/static/app.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert "max-age" in css.headers["cache-control"]
    assert http.get("/ui/static/htmx.min.js").status_code == 200
    for name in (
        "..%2F__init__.py",
        "..%2F..%2Fapp.py",
        "%2E%2E%2Fviews.py",
        "missing.js",
        "VENDORED.txt%00",
    ):
        response = http.get(f"/ui/static/{name}")
        assert response.status_code == 404, name
        assert "import" not in response.text
