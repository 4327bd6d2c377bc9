"""The annotation workbench, used as people would: an annotator labels a queue with the keyboard, a
reviewer adjudicates, a viewer reads the dashboard; in a real browser (Playwright driving Debian's
Chromium) against a real server, plus HTTP-level checks of permissions on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from prodloop import annotation
from prodloop.annotation import ItemIn, QueueSettings, quality
from prodloop.capture import TraceIn, ingest_traces
from prodloop.server import create_api_key, create_app
from prodloop.server.auth import project_id
from prodloop.settings import Settings
from prodloop.store import create_store_engine, upgrade
from tests.conftest import LiveServer
from tests.server.browser import log_in

TRACE = "7ace" * 8
GUIDELINES = """# Support intent

Pick **billing** for invoices and charges, *refund* when money should go back.

<script>window.pwned = true</script>

| tone | when |
|---|---|
| rude | insults |
"""

SUPPORT_SCHEMA = {
    "name": "support-intent",
    "guidelines": GUIDELINES,
    "fields": [
        {
            "name": "intent",
            "type": "categorical",
            "options": ["billing", "refund", "bug", "other"],
            "help": "What does the customer want?",
        },
        {"name": "tone", "type": "ordinal", "options": ["rude", "neutral", "friendly"]},
        {"name": "tags", "type": "multi_label", "options": ["urgent", "vip", "repeat"], "required": False},
        {"name": "confidence", "type": "numeric", "minimum": 1, "maximum": 5, "required": False},
        {"name": "comment", "type": "text", "required": False},
    ],
}

TRIAGE_SCHEMA = {
    "name": "triage",
    "guidelines": "High severity: the customer **cannot** use the product.",
    "fields": [
        {"name": "severity", "type": "categorical", "options": ["low", "high"]},
        {"name": "topic", "type": "categorical", "options": ["billing", "shipping", "other"]},
        {"name": "language", "type": "categorical", "options": ["en", "de"]},
    ],
}
#: The true answer of each triage ticket; alice gives it, bob misreads one topic, carol flips severities.
TRUTH = [
    {"severity": s, "topic": t, "language": "en"}
    for s, t in [
        ("low", "billing"),
        ("high", "shipping"),
        ("low", "other"),
        ("high", "billing"),
        ("low", "shipping"),
        ("high", "other"),
        ("low", "billing"),
        ("high", "shipping"),
    ]
]
GOLD = [
    {"severity": "high", "topic": "billing", "language": "en"},
    {"severity": "low", "topic": "other", "language": "en"},
]


def answer(annotator: str, ticket: str) -> dict[str, str]:
    if ticket.startswith("gold"):
        right = dict(GOLD[int(ticket[-1])])
        if annotator == "carol":
            right["severity"] = "low" if right["severity"] == "high" else "high"
        return right
    number = int(ticket.split()[-1])
    value = dict(TRUTH[number])
    if annotator == "bob" and number == 2:
        value["topic"] = "billing"
    if annotator == "carol" and number in (0, 3, 5):
        value["severity"] = "low" if value["severity"] == "high" else "high"
    return value


def seed_support(engine: sa.Engine, pid: int) -> None:
    """Queue ``support``: four items for one annotator, the first from a trace, with a chat, retrieved
    context, metadata and a suggestion the queue does not show."""
    now = datetime.now(UTC)
    ingest_traces(
        engine,
        pid,
        [
            TraceIn(
                trace_id=TRACE, feature="support-bot", name="answer", start_time=now - timedelta(minutes=5)
            )
        ],
    )
    annotation.save_schema(engine, pid, SUPPORT_SCHEMA)
    annotation.create_queue(engine, pid, QueueSettings(name="support", schema="support-intent@1", overlap=1))
    annotation.add_items(
        engine,
        pid,
        "support",
        [
            ItemIn(
                trace_id=TRACE,
                input=[
                    {"role": "system", "content": "You are a support agent."},
                    {"role": "user", "content": "I was charged twice <b>today</b>"},
                ],
                output="Sorry! I have refunded the second charge.",
                context=[{"title": "Refund policy", "text": "Double charges are refunded at once."}],
                metadata={"customer_tier": "gold"},
                suggestion={"intent": "refund", "tone": "neutral"},
                priority=3,
            ),
            ItemIn(id="second", input="Where is my parcel?", output="On its way.", priority=2),
            ItemIn(id="third", input="Is this a bug or a feature?", output="Hard to say.", priority=1),
            ItemIn(id="fourth", input="Please cancel my plan", output="Done.", priority=0),
        ],
    )


def seed_triage(engine: sa.Engine, pid: int) -> None:
    """Queue ``triage``: eight tickets and two gold items labelled by three annotators of different
    quality; bob escalates ticket 7 instead of labelling it."""
    annotation.save_schema(engine, pid, TRIAGE_SCHEMA)
    annotation.create_queue(
        engine, pid, QueueSettings(name="triage", schema="triage@1", overlap=3, gold_share=0.25)
    )
    items = [ItemIn(id=f"t{i}", input=f"ticket {i}", output="we are on it") for i in range(len(TRUTH))]
    items += [ItemIn(id=f"gold{i}", input=f"gold {i}", output="ok", gold=g) for i, g in enumerate(GOLD)]
    annotation.add_items(engine, pid, "triage", items)
    people = {name: annotation.register_annotator(engine, pid, name) for name in ("alice", "bob", "carol")}
    working = set(people)
    while working:
        for name in sorted(working):
            leased = annotation.lease_next_item(engine, pid, "triage", people[name].id)
            if leased is None:
                working.discard(name)
                continue
            item = leased["item"]
            if name == "bob" and item["input"] == "ticket 7":
                annotation.escalate_item(
                    engine, pid, item["id"], people[name].id, "is a lost parcel shipping or other?", "topic"
                )
                continue
            annotation.submit_label(engine, pid, item["id"], people[name].id, answer(name, item["input"]))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sa.Engine, dict[str, str]]]:
    path = tmp_path_factory.mktemp("workbench")
    engine = create_store_engine(f"sqlite:///{path / 'prodloop.db'}")
    upgrade(engine)
    keys = {
        "annotator": create_api_key(engine, "default", "annotator", name="ann-1"),
        "reviewer": create_api_key(engine, "default", "reviewer", name="rev-1"),
        "viewer": create_api_key(engine, "default", "viewer"),
    }
    pid = project_id(engine, "default")
    seed_support(engine, pid)
    seed_triage(engine, pid)
    yield engine, keys
    engine.dispose()


@pytest.fixture(scope="module")
def server(
    store: tuple[sa.Engine, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    app = create_app(store[0], Settings(home=tmp_path_factory.mktemp("home")))
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(5000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: errors.append(message.text) if "Refused" in message.text else None)
    tab.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}") if r.status == 404 and "favicon" not in r.url else None
        ),
    )
    yield tab
    context.close()
    assert errors == [], errors  # no script failed, no asset is missing, the CSP refused nothing


def item_id(page: Any) -> str:
    return str(page.locator("#item").get_attribute("data-item-id"))


def checked(page: Any, field: str) -> list[str]:
    return page.locator(f"#label-form input[name='v.{field}']:checked").evaluate_all(
        "inputs => inputs.map(i => i.value)"
    )


# --- the annotator -----------------------------------------------------------------------------------


def test_annotator_labels_the_queue_with_the_keyboard(
    page: Any, store: tuple[sa.Engine, dict[str, str]]
) -> None:
    engine, keys = store
    pid = project_id(engine, "default")
    log_in(page, keys["annotator"])
    page.wait_for_url("**/ui/queues")  # annotators land on their queues
    page.locator("tr[data-queue=support]").get_by_role("link", name="Label").click()
    page.wait_for_url("**/ui/queues/support/annotate")

    # the item: conversation, retrieved context, metadata, its trace; no suggestion in this queue
    item = page.locator("#item")
    bubbles = item.locator(".bubble")
    expect(bubbles).to_have_count(3)
    assert "I was charged twice <b>today</b>" in bubbles.nth(1).inner_text()  # text, not markup
    assert "Double charges are refunded at once." in item.locator(".retrieved").inner_text()
    assert "customer_tier" in item.inner_text() and "gold" in item.inner_text()
    assert item.locator(f"a[href='/ui/traces/{TRACE}']").count() == 1
    assert page.locator(".suggestion").count() == 0
    assert "0 labelled by you" in page.locator("#progress").inner_text()
    assert "required" in (page.locator("fieldset[data-field=intent] .required").get_attribute("title") or "")
    assert "What does the customer want?" in page.locator("fieldset[data-field=intent]").inner_text()
    assert "Enter" in page.locator("#shortcuts").inner_text()

    # the guidelines, one key away; their raw HTML is shown as text, never run
    guidelines = page.locator("#guidelines")
    expect(guidelines).to_be_hidden()
    page.keyboard.press("g")
    expect(guidelines).to_be_visible()
    assert guidelines.locator("strong", has_text="billing").count() == 1
    assert guidelines.locator("table td", has_text="insults").count() == 1
    assert guidelines.locator("script").count() == 0 and "<script>" in guidelines.inner_text()
    assert page.evaluate("window.pwned") is None
    page.keyboard.press("?")
    expect(guidelines).to_be_hidden()

    # digits answer the first unanswered field, then the next; tags take several; Enter submits
    first = item_id(page)
    page.keyboard.press("1")
    assert checked(page, "intent") == ["billing"]
    page.keyboard.press("3")
    assert checked(page, "tone") == ["friendly"]
    page.keyboard.press("1")
    page.keyboard.press("2")
    assert checked(page, "tags") == ["urgent", "vip"]
    page.keyboard.press("Enter")
    expect(page.locator("#item")).not_to_have_attribute("data-item-id", first)
    assert "Saved your label of item" in page.locator(".notice").inner_text()
    assert "1 labelled by you" in page.locator("#progress").inner_text()
    assert page.url.endswith("/ui/queues/support/annotate")  # swapped in place, no page load
    page.screenshot(path="/tmp/ui-annotate.png", full_page=True)

    # S skips
    second = item_id(page)
    page.keyboard.press("s")
    expect(page.locator("#item")).not_to_have_attribute("data-item-id", second)
    assert "Skipped item" in page.locator(".notice").inner_text()

    # E escalates, with a note about one field
    third = item_id(page)
    page.keyboard.press("e")
    panel = page.locator("#escalate-panel")
    expect(panel).to_be_visible()
    panel.locator("select[name=field]").select_option("intent")
    panel.locator("textarea[name=note]").fill("bug or feature? the guidelines do not say")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#item")).not_to_have_attribute("data-item-id", third)
    assert "Escalated item" in page.locator(".notice").inner_text()
    assert "about field intent" in page.locator(".notice").inner_text()

    # a label that breaks the schema is refused inline, naming the fields, with the answers kept
    fourth = item_id(page)
    page.keyboard.press("2")
    page.locator("input[name='v.confidence']").fill("9")
    page.keyboard.press("Enter")
    tone = page.locator("fieldset[data-field=tone]")
    expect(tone.locator(".field-error")).to_contain_text("field 'tone' is required")
    confidence = page.locator("fieldset[data-field=confidence] .field-error")
    expect(confidence).to_contain_text("out of range for field 'confidence'")
    assert item_id(page) == fourth and checked(page, "intent") == ["refund"]
    page.screenshot(path="/tmp/ui-annotate-422.png", full_page=True)
    page.keyboard.press("2")  # the invalid field has the focus: its second option
    assert checked(page, "tone") == ["neutral"]
    page.locator("input[name='v.confidence']").fill("4")
    page.keyboard.press("Enter")

    # nothing left for this annotator
    done = page.locator("#done")
    expect(done).to_contain_text("Queue done for you")
    assert "2 labelled by you" in page.locator("#progress").inner_text()
    page.screenshot(path="/tmp/ui-annotate-done.png", full_page=True)

    labels = annotation.current_labels(engine, pid, "support")
    assert [(row["annotator"], row["value"]) for row in labels] == [
        (
            "ann-1",
            {
                "intent": "billing",
                "tone": "friendly",
                "tags": ["urgent", "vip"],
                "confidence": None,
                "comment": None,
            },
        ),
        ("ann-1", {"intent": "refund", "tone": "neutral", "tags": [], "confidence": 4.0, "comment": None}),
    ]
    assert [row["item_id"] for row in labels] == [int(first), int(fourth)]
    notes = annotation.escalation_summary(engine, pid, "support")["fields"]
    assert [(n["field"], n["notes"][0]["note"], n["notes"][0]["item_id"]) for n in notes] == [
        ("intent", "bug or feature? the guidelines do not say", int(third))
    ]
    skipped = annotation.item_history(engine, pid, int(second))["skips"]
    assert [s["annotator"] for s in skipped] == ["ann-1"]


# --- the reviewer ------------------------------------------------------------------------------------


def test_reviewer_adjudicates_a_disagreement(page: Any, store: tuple[sa.Engine, dict[str, str]]) -> None:
    engine, keys = store
    pid = project_id(engine, "default")
    waiting = annotation.items_for_review(engine, pid, "triage")
    log_in(page, keys["reviewer"])
    page.goto("/ui/queues/triage/review")
    assert f"{waiting['total']} items waiting" in page.locator("#waiting-count").inner_text()
    assert page.locator("#guidelines strong", has_text="cannot").is_visible()

    first = waiting["items"][0]
    assert item_id(page) == str(first["id"])
    table = page.locator(".labels-table")
    assert table.locator("thead th").all_inner_texts()[1:] == [
        label["annotator"] for label in first["labels"]
    ]
    for field in ("severity", "topic", "language"):
        row = table.locator(f"tr[data-field={field}]")
        assert ("disagree" in (row.get_attribute("class") or "")) == (field in first["disagreeing_fields"])
    assert "severity" in first["disagreeing_fields"]  # carol flipped ticket 0

    # the escalated ticket shows its note
    escalated = next(i for i in waiting["items"] if i["escalations"])
    page.locator(".waiting a", has_text=f"#{escalated['id']}").click()
    expect(page.locator("#item")).to_have_attribute("data-item-id", str(escalated["id"]))
    assert "is a lost parcel shipping or other?" in page.locator(".escalations").inner_text()
    page.screenshot(path="/tmp/ui-review.png", full_page=True)

    # a final value without a rationale is refused inline; with one it is recorded
    form = page.locator("#adjudicate-form")
    form.locator("fieldset[data-field=topic] label.option", has_text="other").click()
    form.get_by_role("button", name="Record final value").click()
    expect(page.locator("#adjudicate-form .alert")).to_contain_text("needs a rationale")
    form = page.locator("#adjudicate-form")
    assert form.locator("input[name='v.topic']:checked").get_attribute("value") == "other"
    form.locator("textarea[name=rationale]").fill("a lost parcel is a shipping problem only once it is late")
    form.locator("fieldset[data-field=topic] label.option", has_text="shipping").click()
    form.get_by_role("button", name="Record final value").click()
    expect(page.locator(".notice")).to_contain_text(f"Item {escalated['id']} adjudicated")
    assert f"{waiting['total'] - 1} items waiting" in page.locator("#waiting-count").inner_text()

    final = annotation.current_labels(engine, pid, "triage", role="adjudication")
    assert [(row["item_id"], row["value"]) for row in final] == [
        (escalated["id"], {"severity": "high", "topic": "shipping", "language": "en"})
    ]
    assert escalated["id"] not in [
        i["id"] for i in annotation.items_for_review(engine, pid, "triage")["items"]
    ]


# --- the dashboard -----------------------------------------------------------------------------------


def test_dashboard_draws_charts_and_agreement(page: Any, store: tuple[sa.Engine, dict[str, str]]) -> None:
    engine, keys = store
    pid = project_id(engine, "default")
    log_in(page, keys["viewer"])
    page.goto("/ui/queues")
    page.locator("tr[data-queue=triage]").get_by_role("link", name="Dashboard").click()
    page.wait_for_url("**/ui/queues/triage")

    for chart in ("throughput", "agreement", "per-class"):
        drawn = page.locator(f"#chart-{chart}[data-rendered=true]")
        expect(drawn).to_have_count(1)
        expect(drawn.locator("svg").first).to_be_visible()
    bars = page.locator("#chart-agreement svg .mark-rect path")
    assert bars.count() == 2  # severity and topic; language has no alpha

    expected = {f["field"]: f for f in quality.queue_agreement(engine, pid, "triage")["fields"]}
    for field in ("severity", "topic"):
        shown = page.locator(f".agreement-table tr[data-field={field}] [data-alpha]").inner_text()
        assert shown == f"{expected[field]['krippendorff_alpha']:.3f}"
    language = page.locator(".agreement-table tr[data-field=language] [data-error]").inner_text()
    assert language == expected["language"]["error"] and language

    gold = {g["annotator"]: g for g in quality.gold_accuracy(engine, pid, "triage")["annotators"]}
    assert gold["carol"]["flagged"] and not gold["alice"]["flagged"]
    carol = page.locator("#gold tr[data-annotator=carol]")
    assert "below threshold" in carol.inner_text()
    assert carol.locator("[data-accuracy]").inner_text() == f"{gold['carol']['accuracy'] * 100:.0f}%"
    assert page.locator("#gold tr[data-annotator=alice] .badge").count() == 0

    stats = page.locator("#annotators tr[data-annotator=bob]").inner_text()
    assert "human" in stats
    waiting = annotation.items_for_review(engine, pid, "triage")["total"]
    assert page.locator("[data-stat=waiting]").inner_text() == str(waiting)
    assert (
        "is a lost parcel shipping or other?"
        in page.locator("#escalations tr[data-field=topic]").inner_text()
    )
    page.screenshot(path="/tmp/ui-dashboard.png", full_page=True)


# --- over HTTP, on each store ------------------------------------------------------------------------


@pytest.fixture
def http(engine: sa.Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(engine, settings), follow_redirects=False) as client:
        yield client


def sign_in(http: TestClient, key: str) -> None:
    assert http.post("/ui/login", data={"key": key}).status_code == 303


def test_pages_follow_the_key_role(engine: sa.Engine, http: TestClient) -> None:
    viewer = create_api_key(engine, "default", "viewer")
    annotator = create_api_key(engine, "default", "annotator")
    pid = project_id(engine, "default")
    annotation.save_schema(engine, pid, TRIAGE_SCHEMA)
    annotation.create_queue(engine, pid, QueueSettings(name="triage", schema="triage@1"))
    annotation.add_items(engine, pid, "triage", [ItemIn(input="ticket", output="ok")])

    anonymous = http.get("/ui/queues/triage/annotate")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/ui/login?next=%2Fui%2Fqueues%2Ftriage%2Fannotate"

    sign_in(http, viewer)
    assert http.get("/ui/queues").status_code == 200
    assert http.get("/ui/queues/triage").status_code == 200
    refused = http.get("/ui/queues/triage/annotate")
    assert refused.status_code == 403 and "may not label items" in refused.text
    assert http.get("/ui/queues/triage/review").status_code == 403
    assert http.get("/ui/queues").status_code == 200  # still signed in after a refusal
    assert http.post("/ui/queues/triage/items/1/skip").status_code == 403

    sign_in(http, annotator)
    listing = http.get("/ui/queues").text
    assert 'href="/ui/queues/triage/annotate"' in listing and "/review" not in listing
    assert http.get("/ui/queues/triage/review").status_code == 403
    page = http.get("/ui/queues/triage/annotate")
    assert page.status_code == 200 and "ticket" in page.text
    missing = http.get("/ui/queues/nowhere/annotate")
    assert missing.status_code == 404 and "queue &#39;nowhere&#39; does not exist" in missing.text


def test_label_without_javascript_and_suggestions(engine: sa.Engine, http: TestClient) -> None:
    annotator = create_api_key(engine, "default", "annotator")
    pid = project_id(engine, "default")
    annotation.save_schema(engine, pid, TRIAGE_SCHEMA)
    annotation.create_queue(
        engine, pid, QueueSettings(name="judged", schema="triage@1", show_suggestions=True)
    )
    suggestion = {"severity": "high", "topic": "billing", "language": "en"}
    annotation.add_items(engine, pid, "judged", [ItemIn(input="ticket", output="ok", suggestion=suggestion)])
    sign_in(http, annotator)
    page = http.get("/ui/queues/judged/annotate").text
    assert "Model suggestion: <b>high</b>" in page
    found = re.search(r'data-item-id="(\d+)"', page)
    assert found is not None
    item = found.group(1)

    # an escalation needs a note, about a field the schema has; the item stays on the page
    htmx = {"HX-Request": "true"}
    empty = http.post(f"/ui/queues/judged/items/{item}/escalate", data={"note": " "}, headers=htmx)
    assert empty.status_code == 422 and "needs a note" in empty.text and "<html" not in empty.text
    unknown = http.post(
        f"/ui/queues/judged/items/{item}/escalate", data={"note": "?", "field": "mood"}, headers=htmx
    )
    assert unknown.status_code == 422 and "field &#39;mood&#39; is not in schema triage" in unknown.text
    assert f'data-item-id="{item}"' in unknown.text

    # a plain form post (no htmx): a 422 page with the problem, then a redirect to the next item
    refused = http.post(f"/ui/queues/judged/items/{item}/label", data={"v.severity": "high"})
    assert refused.status_code == 422 and "<html" in refused.text
    assert "field &#39;topic&#39; is required" in refused.text
    saved = http.post(
        f"/ui/queues/judged/items/{item}/label",
        data={"v.severity": "high", "v.topic": "billing", "v.language": "en"},
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/ui/queues/judged/annotate"
    assert "Queue done for you" in http.get("/ui/queues/judged/annotate").text
    labels = annotation.current_labels(engine, pid, "judged")
    assert [row["value"] for row in labels] == [suggestion]


def label_queue(
    engine: sa.Engine, pid: int, queue: str, name: str, values: dict[str, dict[str, str]]
) -> None:
    """Annotator ``name`` labels every item of ``queue`` it is offered, by the item's input."""
    who = annotation.register_annotator(engine, pid, name)
    while leased := annotation.lease_next_item(engine, pid, queue, who.id):
        annotation.submit_label(engine, pid, leased["item"]["id"], who.id, values[leased["item"]["input"]])


def test_a_refused_adjudication_never_moves_to_another_item(engine: sa.Engine, http: TestClient) -> None:
    """The reviewer's page shows item X; another reviewer adjudicates X; this reviewer submits X without
    a rationale. The answer must not put X's values (and rationale) into the form of the next item, where
    one more click would record them as that item's final value."""
    reviewer = create_api_key(engine, "default", "reviewer")
    pid = project_id(engine, "default")
    annotation.save_schema(engine, pid, TRIAGE_SCHEMA)
    annotation.create_queue(engine, pid, QueueSettings(name="triage", schema="triage@1", overlap=2))
    annotation.add_items(
        engine, pid, "triage", [ItemIn(input="X", output="ok", priority=1), ItemIn(input="Y", output="ok")]
    )
    label_queue(
        engine,
        pid,
        "triage",
        "alice",
        {
            "X": {"severity": "high", "topic": "shipping", "language": "en"},
            "Y": {"severity": "low", "topic": "billing", "language": "en"},
        },
    )
    label_queue(
        engine,
        pid,
        "triage",
        "bob",
        {
            "X": {"severity": "low", "topic": "shipping", "language": "en"},
            "Y": {"severity": "high", "topic": "billing", "language": "en"},
        },
    )
    waiting = annotation.items_for_review(engine, pid, "triage")["items"]
    x, y = (item["id"] for item in waiting)
    sign_in(http, reviewer)
    assert f'data-item-id="{x}"' in http.get("/ui/queues/triage/review").text

    # while X is still waiting, a refusal keeps X on the page with what the reviewer typed
    typed = {"v.severity": "high", "v.topic": "other", "v.language": "de", "rationale": "  "}
    htmx = {"HX-Request": "true"}
    kept = http.post(f"/ui/queues/triage/review/{x}", data=typed, headers=htmx)
    assert kept.status_code == 422 and "needs a rationale" in kept.text
    assert f'data-item-id="{x}"' in kept.text and 'value="de" checked' in kept.text

    # another reviewer adjudicates X meanwhile; this reviewer's refused post must not land on Y
    other = annotation.register_annotator(engine, pid, "rev-2")
    annotation.adjudicate(
        engine, pid, x, other.id, {"severity": "high", "topic": "shipping", "language": "en"}, "checked"
    )
    for headers in (htmx, {}):
        typed["rationale"] = "" if headers else "  "
        moved = http.post(f"/ui/queues/triage/review/{x}", data=typed, headers=headers)
        assert moved.status_code == 200
        assert f"Item {x} is no longer waiting for adjudication" in moved.text
        assert "Nothing was recorded for it" in moved.text
        assert f'data-item-id="{y}"' in moved.text and f"/review/{y}" in moved.text
        assert f"/review/{x}" not in moved.text
        # Y's form holds Y's own majority (topic billing, language en), none of what was typed for X
        assert 'value="de" checked' not in moved.text and 'value="other" checked' not in moved.text
        assert 'value="billing" checked' in moved.text and 'value="en" checked' in moved.text
        assert "needs a rationale" not in moved.text
    assert [
        row["item_id"] for row in annotation.current_labels(engine, pid, "triage", role="adjudication")
    ] == [x]

    # a link to an item that is no longer waiting says so, and shows the next one
    linked = http.get(f"/ui/queues/triage/review?item={x}").text
    assert f"Item {x} is no longer waiting" in linked and "Nothing was recorded" not in linked
    assert f'data-item-id="{y}"' in linked


def progress_of(page: str) -> list[str]:
    found = re.search(r'<div class="wb-progress" id="progress">(.*?)</div>', page, re.S)
    assert found is not None
    return re.sub(r"<[^>]+>|\s+", " ", found.group(1)).split()


def test_the_annotator_page_does_not_tell_gold_items_apart(engine: sa.Engine, http: TestClient) -> None:
    """Working alone on a queue, an annotator sees the same change after labelling a gold item as after
    an ordinary one: only their own count goes up. Queue-wide counters (labels still needed, items open
    or done) would move only for ordinary items and so give the gold items away."""
    annotator = create_api_key(engine, "default", "annotator")
    pid = project_id(engine, "default")
    annotation.save_schema(engine, pid, TRIAGE_SCHEMA)
    annotation.create_queue(
        engine, pid, QueueSettings(name="triage", schema="triage@1", overlap=1, gold_share=0.5)
    )
    items = [ItemIn(input=f"ticket {i}", output="ok") for i in range(3)]
    items += [ItemIn(input=f"gold {i}", output="ok", gold=g) for i, g in enumerate(GOLD)]
    annotation.add_items(engine, pid, "triage", items)
    sign_in(http, annotator)
    htmx = {"HX-Request": "true"}
    page = http.get("/ui/queues/triage/annotate").text
    seen: list[tuple[str, list[str]]] = []
    while found := re.search(r'data-item-id="(\d+)"', page):
        item = found.group(1)
        kind = "gold" if "gold " in page else "ordinary"
        before = progress_of(page)
        page = http.post(
            f"/ui/queues/triage/items/{item}/label",
            data={"v.severity": "low", "v.topic": "other", "v.language": "en"},
            headers=htmx,
        ).text
        assert f"Saved your label of item {item}" in page
        seen.append((kind, before))
    seen.append(("done", progress_of(page)))
    assert {kind for kind, _ in seen} == {"gold", "ordinary", "done"}
    assert [shown for _, shown in seen] == [[str(n), "labelled", "by", "you"] for n in range(6)]
    assert "Queue done for you" in page and "still needed" not in page
