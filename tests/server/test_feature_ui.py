"""The feature health pages over HTTP: a store where a support assistant decays over its last three
days (a new kind of question, which it fails), watched by a monitor that runs the real outcome and
column checks, plus checks in the shapes of text drift and eval coverage. The page must say what
happened and since when, show what changed, and let a reviewer send an alert's slice to a queue, with
the alert linked on every item (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from prodloop.annotation import QueueSettings, create_queue, save_schema
from prodloop.capture import SignalIn, TraceIn, ingest_traces, record_signals
from prodloop.errors import ValidationFailed
from prodloop.monitoring import list_alerts, register_check, run_monitor, save_monitor
from prodloop.monitoring.checks import CheckContext, CheckResult
from prodloop.monitoring.findings import Finding
from prodloop.server import create_api_key, create_app
from prodloop.server.auth import project_id
from prodloop.server.ui.health_charts import epoch_ms
from prodloop.settings import Settings
from prodloop.store import create_store_engine, upgrade
from prodloop.store.schema import queue_items

FEATURE = "support-assistant"
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAYS = 21
PER_DAY = 40
LATE = 3  # the last days, when warranty questions arrive and the assistant fails them
ROUTES = ("billing", "refund", "bug_report", "order_status")
#: An example text that must reach the page escaped.
HOSTILE = "<script>window.pwned = 1</script> is my warranty still valid?"


class NoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShapedCheck:
    """A check that returns the results and findings it was given: the shapes of text drift and eval
    coverage, which the real checks would need far more data (and embeddings) to produce."""

    arguments = NoArguments

    def __init__(self, name: str, results: dict[str, Any], findings: list[Finding] | Exception) -> None:
        self.name = name
        self.results = results
        self.findings = findings

    def run(self, context: CheckContext, arguments: Any) -> CheckResult:
        if isinstance(self.findings, Exception):
            raise self.findings
        return CheckResult(self.results, list(self.findings))


def decay_data() -> tuple[list[TraceIn], list[SignalIn]]:
    """Three weeks of traffic up to today's midnight, release v2 from day 10; in the last three days a
    third of the questions are about warranties, and most of those go unresolved."""
    rng = random.Random(11)
    traces, signals = [], []
    for day in range(DAYS):
        late = day >= DAYS - LATE
        for i in range(PER_DAY):
            start = TODAY - timedelta(days=DAYS - day) + timedelta(minutes=30 * i)
            route = "warranty" if late and i % 3 == 0 else ROUTES[i % len(ROUTES)]
            trace_id = f"{day:04x}{i:04x}" + "ab" * 12
            text = (
                HOSTILE if route == "warranty" and i == 0 else f"a {route} question number {i} on day {day}"
            )
            traces.append(
                TraceIn(
                    trace_id=trace_id,
                    feature=FEATURE,
                    release="v1" if day < 10 else "v2",
                    name="answer",
                    status="error" if i == 7 else "ok",
                    start_time=start,
                    duration_ms=800 + rng.random() * 400,
                    input=text,
                    output="an answer",
                    attributes={"support.route": route},
                )
            )
            handled = rng.random() < (0.15 if route == "warranty" else 0.75)
            signals.append(
                SignalIn(
                    trace_id=trace_id,
                    kind="outcome",
                    name="resolved",
                    value=handled,
                    timestamp=start + timedelta(minutes=5),
                )
            )
    return traces, signals


def warranty_ids(traces: list[TraceIn]) -> list[str]:
    return [str(t.trace_id) for t in traces if t.attributes.get("support.route") == "warranty"]


def shaped_checks(traces: list[TraceIn]) -> list[ShapedCheck]:
    """Text drift and coverage results (and their findings) about the warranty questions, and a check
    that fails."""
    ids = warranty_ids(traces)
    window = {
        "feature": FEATURE,
        "since": (TODAY - timedelta(days=LATE)).isoformat(),
        "until": TODAY.isoformat(),
    }
    text = {
        "field": "input",
        "n_reference": 14 * PER_DAY,
        "n_current": LATE * PER_DAY,
        "result": {
            "test": "abs_text_content_drift",
            "statistic": 0.81,
            "p_value": 0.001,
            "threshold": 0.55,
            "drift": True,
        },
        "explanation": {
            "auc": 0.81,
            "terms": [{"term": "warranty", "weight": 4.1}, {"term": "valid", "weight": 2.2}],
            "reference_terms": [{"term": "refund", "weight": -1.5}],
            "examples": [{"trace_id": ids[0], "text": HOSTILE, "score": 0.99}],
        },
    }
    coverage = {  # as prodloop.monitoring.coverage reports it
        "feature": FEATURE,
        "field": "input",
        "snapshot": {"id": "sha256:0f0f", "name": "golden"},
        "n_production": LATE * PER_DAY,
        "n_eval": 40,
        "radius": 0.31,
        "uncovered_share": len(ids) / (LATE * PER_DAY),
        "scattered_share": 0.0,
        "clusters": [
            {
                "id": 1,
                "size": len(ids),
                "share": len(ids) / (LATE * PER_DAY),
                "label": "warranty, valid",
                "terms": ["warranty", "valid"],
                "examples": [{"trace_id": ids[0], "text": HOSTILE, "distance": 0.52}],
                "daily": [
                    {"date": (TODAY - timedelta(days=d)).date().isoformat(), "count": len(ids) // LATE}
                    for d in range(LATE, 0, -1)
                ],
                "growth": 0.02,
                "trace_ids": ids,
            }
        ],
    }
    embedding = {  # as the embedding check reports it
        "field": "input",
        "n_reference": 14 * PER_DAY,
        "n_current": LATE * PER_DAY,
        "result": {
            "test": "embedding_domain_classifier",
            "statistic": 0.74,
            "p_value": 0.002,
            "threshold": 0.6,
            "drift": True,
        },
        "details": {"mmd2": 0.0123, "p_value": 0.002, "mean_cosine_distance": 0.081},
        "clusters": [
            {"size": len(ids), "share": 0.35, "score": 0.9, "examples": [HOSTILE], "trace_ids": ids}
        ],
    }
    return [
        ShapedCheck("ui_embedding", embedding, []),
        ShapedCheck(
            "ui_text",
            text,
            [
                Finding(
                    "text:input", "input texts drifted (ROC AUC 0.81); new: warranty", "warning", {}, window
                )
            ],
        ),
        ShapedCheck(
            "ui_coverage",
            coverage,
            [
                Finding(
                    "coverage:cluster-1",
                    "a cluster of traffic outside eval coverage: warranty, valid",
                    "warning",
                    {"terms": ["warranty", "valid"]},
                    {**window, "trace_ids": ids},
                )
            ],
        ),
        ShapedCheck("ui_broken", {}, ValidationFailed("the eval snapshot 'golden@9' does not exist")),
    ]


MONITOR = {
    "name": "support-decay",
    "feature": FEATURE,
    "reference": {"window": "14d"},
    "current": {"window": f"{LATE}d"},
    "checks": [
        {"type": "outcome", "metric": "handled_rate", "breakdown": "support.route"},
        {"type": "columns", "attributes": ["support.route"]},
        {"type": "ui_text"},
        {"type": "ui_embedding"},
        {"type": "ui_coverage"},
        {"type": "ui_broken"},
    ],
}

ROLES = ("admin", "reviewer", "viewer", "annotator", "ingest")
HTMX = {"HX-Request": "true"}
TRIAGE = {"name": "triage", "fields": [{"name": "resolved", "type": "categorical", "options": ["yes", "no"]}]}


def seed_decay(engine: sa.Engine) -> dict[str, Any]:
    """The decaying feature, a queue, and the monitor run once a day over the last three days."""
    keys = {role: create_api_key(engine, "default", role, name=f"{role}-1") for role in ROLES}
    pid = project_id(engine, "default")
    traces, signals = decay_data()
    ingest_traces(engine, pid, traces)
    record_signals(engine, pid, signals)
    for check in shaped_checks(traces):
        register_check(check)
    save_schema(engine, pid, TRIAGE)
    create_queue(engine, pid, QueueSettings(name="triage", schema="triage@1", overlap=1))
    save_monitor(engine, pid, MONITOR)
    for back in (2, 1, 0):
        run_monitor(engine, pid, "support-decay", as_of=TODAY - timedelta(days=back))
    return {"pid": pid, "keys": keys, "traces": traces, "signals": signals}


def specs_of(page: str) -> dict[str, Any]:
    """The Vega-Lite specifications a page embeds, by chart id."""
    return {
        name: json.loads(body)
        for name, body in re.findall(
            r'<script type="application/json" id="spec-([^"]+)">(.*?)</script>', page, re.S
        )
    }


def text_of(page: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", page)).split())


# --- a decayed feature, read by each role ------------------------------------------------------------


@pytest.fixture(scope="module")
def decayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    path = tmp_path_factory.mktemp("feature-ui")
    engine = create_store_engine(f"sqlite:///{path / 'prodloop.db'}")
    upgrade(engine)
    seeded = seed_decay(engine)
    app = create_app(engine, Settings(home=path / "home"))
    with TestClient(app, follow_redirects=False) as client:
        yield {**seeded, "engine": engine, "client": client}
    engine.dispose()


def sign_in(client: TestClient, key: str) -> None:
    assert client.post("/ui/login", data={"key": key}).status_code == 303


def test_the_page_says_what_fell_since_when_and_what_changed(decayed: dict[str, Any]) -> None:
    client, engine, pid = decayed["client"], decayed["engine"], decayed["pid"]
    sign_in(client, decayed["keys"]["viewer"])
    response = client.get(f"/ui/features/{FEATURE}")
    assert response.status_code == 200
    page = response.text
    text = text_of(page)
    alerts = list_alerts(engine, pid, status="unresolved", feature=FEATURE)
    assert {a["key"] for a in alerts} == {
        "outcome:handled_rate",
        "column:support.route",
        "text:input",
        "coverage:cluster-1",
    }
    outcome = next(a for a in alerts if a["key"] == "outcome:handled_rate")
    test = outcome["detail"]["window_test"]
    points = abs(test["current"] - test["reference"]) * 100
    headline = re.search(r"data-headline>([^<]*)<", page)
    assert headline is not None
    assert unescape(headline.group(1)) == (
        f"Handled rate fell {points:.0f} points since {outcome['slice']['since'][:10]}: "
        f"{test['reference'] * 100:.1f}% → {test['current'] * 100:.1f}%"
    )
    critical = sum(1 for a in alerts if a["severity"] == "critical")
    assert critical >= 1 and f"4 open alerts ({critical} critical)" in text
    # what changed: the new intent, text drift with its terms, the uncovered cluster, the failed check
    share = len(warranty_ids(decayed["traces"])) / (LATE * PER_DAY)  # all warranty questions are late
    assert f"support.route shifted: warranty 0% → {share * 100:.0f}%" in text
    assert "A classifier tells current input texts from reference ones apart with ROC AUC 0.81" in text
    assert "A classifier tells current input embeddings from reference ones apart with ROC AUC 0.74" in text
    assert "MMD² 0.0123 (permutation p = 0.002); cosine distance between the mean vectors 0.081." in text
    assert "40 eval examples of golden" in text
    assert f"{share * 100:.0f}% of production traffic is farther than 0.310" in text
    assert "#1 warranty, valid" in text
    assert "Check ui_broken failed in this run: the eval snapshot 'golden@9' does not exist" in text
    # user text is escaped wherever it shows (examples of the text drift and of the cluster)
    assert "<script>window.pwned" not in page
    assert page.count("&lt;script&gt;window.pwned = 1&lt;/script&gt;") == 3
    # a viewer reads, and is offered no action
    assert len(re.findall(r'class="card alert-card', page)) == 4
    assert "Send to queue" not in page and "/acknowledge" not in page


def test_the_outcome_chart_marks_the_release_and_shades_the_alert(decayed: dict[str, Any]) -> None:
    client, engine, pid = decayed["client"], decayed["engine"], decayed["pid"]
    sign_in(client, decayed["keys"]["viewer"])
    specs = specs_of(client.get(f"/ui/features/{FEATURE}").text)
    outcome = next(
        a for a in list_alerts(engine, pid, status="unresolved") if a["key"] == "outcome:handled_rate"
    )
    layers = specs["outcome-handled_rate"]["layer"]
    line = next(layer for layer in layers if layer["mark"]["type"] == "line")
    by_day = {v["when"]: v for v in line["data"]["values"]}
    signals = decayed["signals"]
    day = (TODAY - timedelta(days=1)).date().isoformat()
    handled = [s.value for s in signals if s.timestamp and s.timestamp.date().isoformat() == day]
    assert by_day[day]["n"] == len(handled) == PER_DAY
    assert by_day[day]["value"] == pytest.approx(sum(handled) / len(handled))
    shaded = next(layer for layer in layers if layer["mark"]["type"] == "rect")["data"]["values"]
    assert shaded == [
        {
            "from": epoch_ms(outcome["slice"]["since"]),
            "to": epoch_ms(outcome["slice"]["until"]),
            "alert": outcome["title"],
        }
    ]
    rules = next(
        layer for layer in layers if layer["mark"]["type"] == "rule" and layer["mark"].get("opacity") != 0
    )
    v1, v2 = TODAY - timedelta(days=DAYS), TODAY - timedelta(days=DAYS - 10)
    assert rules["data"]["values"] == [
        {"at": epoch_ms(v1), "release": "v1"},
        {"at": epoch_ms(v2), "release": "v2"},
    ]
    # the drifted intents: reference against current share of each route
    shares = {
        (row["value"], row["window"]): row["share"] for row in specs["shift-support-route"]["data"]["values"]
    }
    current = [t for t in decayed["traces"] if t.start_time and t.start_time >= TODAY - timedelta(days=LATE)]
    warranty = sum(1 for t in current if t.attributes["support.route"] == "warranty")
    assert shares[("warranty", "reference")] == 0
    assert shares[("warranty", "current")] == pytest.approx(warranty / len(current))


def test_the_breakdown_names_the_new_route_and_errors_latency_stay_in_view(decayed: dict[str, Any]) -> None:
    client = decayed["client"]
    sign_in(client, decayed["keys"]["viewer"])
    page = client.get(f"/ui/features/{FEATURE}").text
    row = re.search(r'<tr data-value="warranty"[^>]*>(.*?)</tr>', page, re.S)
    assert row is not None and ">new<" in row.group(1)
    for metric in ("error_rate", "latency_p95"):
        assert f'data-metric="{metric}"' in page and f'id="chart-outcome-{metric}"' in page
    # one trace in 40 fails every day: 2.5% a day, so the error rate is flat
    assert re.search(r'data-metric="error_rate">.*?data-range>2\.5% to 2\.5% a day<', page, re.S)


def test_the_feature_list_shows_open_alerts_and_the_handled_rate(decayed: dict[str, Any]) -> None:
    client = decayed["client"]
    sign_in(client, decayed["keys"]["annotator"])
    page = client.get("/ui/features").text
    row = re.search(rf'<tr data-feature="{FEATURE}">(.*?)</tr>', page, re.S)
    assert row is not None
    assert f'href="/ui/features/{FEATURE}"' in row.group(1)
    assert re.search(r"data-open-alerts><a [^>]*>4</a>", row.group(1))
    week = [s.value for s in decayed["signals"] if s.timestamp and s.timestamp >= TODAY - timedelta(days=6)]
    assert f"{sum(week) / len(week) * 100:.1f}%" in row.group(1)
    assert '<path d="M' in row.group(1)  # the sparkline


def test_roles_and_mistakes(decayed: dict[str, Any]) -> None:
    client, keys = decayed["client"], decayed["keys"]
    client.cookies.clear()
    anonymous = client.get(f"/ui/features/{FEATURE}")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == f"/ui/login?next=%2Fui%2Ffeatures%2F{FEATURE}"
    assert client.post("/ui/login", data={"key": keys["ingest"]}).status_code == 403
    alert_id = list_alerts(decayed["engine"], decayed["pid"], status="unresolved")[0]["id"]

    sign_in(client, keys["annotator"])
    page = client.get(f"/ui/features/{FEATURE}")
    assert page.status_code == 200 and "Send to queue" not in page.text
    refused = client.post(f"/ui/alerts/{alert_id}/route", data={"queue": "triage", "items": "5"})
    assert refused.status_code == 403 and "may not acknowledge, resolve or route alerts" in refused.text
    assert client.post(f"/ui/alerts/{alert_id}/resolve").status_code == 403
    assert client.get("/ui/features").status_code == 200  # still signed in after a refusal

    sign_in(client, keys["reviewer"])
    page = client.get(f"/ui/features/{FEATURE}").text
    assert page.count("Send to queue") == 4 and re.search(r'<option value="\d+"\s*>triage</option>', page)
    missing = client.get("/ui/features/no-such-feature")
    assert (
        missing.status_code == 404 and "no feature &#39;no-such-feature&#39; in this project" in missing.text
    )
    odd = client.get(f"/ui/features/{FEATURE}?days=many")
    assert odd.status_code == 200 and "days &#39;many&#39; must be a whole number from 1 to 365" in odd.text
    assert client.post("/ui/alerts/abc/route", data={"queue": "triage"}).status_code == 400
    unknown = client.post("/ui/alerts/999999/route", data={"queue": "triage"})
    assert unknown.status_code == 404 and "no alert 999999" in unknown.text
    # a week ago nothing had fallen yet; the page of then has no shaded window
    earlier = client.get(f"/ui/features/{FEATURE}?days=7&until={(TODAY - timedelta(days=8)).date()}")
    assert earlier.status_code == 200
    assert not any(
        layer["mark"]["type"] == "rect" for layer in specs_of(earlier.text)["outcome-handled_rate"]["layer"]
    )


def test_a_reviewer_sends_an_uncovered_cluster_to_a_queue(decayed: dict[str, Any]) -> None:
    client, engine = decayed["client"], decayed["engine"]
    sign_in(client, decayed["keys"]["reviewer"])
    page = client.get(f"/ui/features/{FEATURE}").text
    action = re.search(r'hx-post="(/ui/runs/\d+/checks/\d+/clusters/1/route)"', page)
    assert action is not None and "Send cluster to queue" in page
    queue = re.search(r'<option value="(\d+)"\s*>triage</option>', page)
    assert queue is not None
    sent = client.post(action.group(1), data={"queue": queue.group(1), "items": "5"}, headers=HTMX)
    assert sent.status_code == 200 and "Sent 5 traces of cluster #1 to queue triage." in sent.text
    with engine.connect() as connection:
        routed = connection.execute(
            sa.select(queue_items.c.trace_id).where(queue_items.c.source == "coverage")
        ).scalars()
        assert len(set(routed) & set(warranty_ids(decayed["traces"]))) == 5
    assert (
        client.post(
            action.group(1).replace("/clusters/1/", "/clusters/7/"), data={"queue": "triage"}
        ).status_code
        == 404
    )
    refused = client.post(action.group(1), data={"queue": "nope"}, headers=HTMX)
    assert refused.status_code == 404 and "queue &#39;nope&#39; does not exist" in refused.text
    sign_in(client, decayed["keys"]["viewer"])
    assert "Send cluster to queue" not in client.get(f"/ui/features/{FEATURE}").text
    assert client.post(action.group(1), data={"queue": "triage"}).status_code == 403


# --- acting on an alert, on each store ---------------------------------------------------------------


class SliceCheck:
    """A check that finds one outcome drop whose slice ranks the given traces."""

    name = "ui_slice"
    arguments = NoArguments
    trace_ids: list[str] = []

    def run(self, context: CheckContext, arguments: Any) -> CheckResult:
        finding = Finding(
            "outcome:handled_rate",
            "handled rate fell from 70% to 40%",
            "critical",
            {},
            context.slice(trace_ids=self.trace_ids),
        )
        return CheckResult({}, [finding])


@pytest.fixture
def acting(engine: sa.Engine, settings: Settings) -> Iterator[dict[str, Any]]:
    """Thirty traces, a queue, an alert that ranks twenty of them, and a reviewer signed in."""
    reviewer = create_api_key(engine, "default", "reviewer", name="rita")
    pid = project_id(engine, "default")
    traces = [
        TraceIn(
            trace_id=f"{i + 1:032x}",
            feature=FEATURE,
            name="answer",
            start_time=TODAY - timedelta(hours=i + 1),
            input=f"question {i}",
            output=f"answer {i}",
        )
        for i in range(30)
    ]
    ingest_traces(engine, pid, traces)
    check = SliceCheck()
    check.trace_ids = [str(t.trace_id) for t in traces[:20]]
    register_check(check)
    save_schema(engine, pid, TRIAGE)
    queue = create_queue(engine, pid, QueueSettings(name="triage", schema="triage@1", overlap=1))
    save_monitor(engine, pid, {"name": "drop", "feature": FEATURE, "checks": [{"type": "ui_slice"}]})
    run_monitor(engine, pid, "drop", as_of=TODAY)
    alert = list_alerts(engine, pid)[0]
    with TestClient(create_app(engine, settings), follow_redirects=False) as client:
        sign_in(client, reviewer)
        yield {
            "client": client,
            "engine": engine,
            "alert": alert,
            "ranked": check.trace_ids,
            "queue": queue["id"],
        }


def linked_items(engine: sa.Engine, alert_id: int) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(queue_items.c.trace_id).where(queue_items.c.alert_id == alert_id)
            ).scalars()
        )


def test_the_route_form_sends_the_slice_with_the_alert_linked(acting: dict[str, Any]) -> None:
    client, engine, alert = acting["client"], acting["engine"], acting["alert"]
    response = client.post(
        f"/ui/alerts/{alert['id']}/route", data={"queue": "triage", "items": "6"}, headers=HTMX
    )
    assert response.status_code == 200
    card = response.text
    assert card.lstrip().startswith(
        f'<article class="card alert-card sev-critical status-open" id="alert-{alert["id"]}"'
    )
    assert "Sent 6 items to queue triage." in card
    assert re.search(r"data-routed>6 items sent to queue\s+<a href=\"/ui/queues/triage\">triage</a>", card)
    items = linked_items(engine, alert["id"])
    assert len(items) == 6 and set(items) <= set(acting["ranked"])
    # again, for more: only traces not in the queue yet are added, and the card says how many were
    more = client.post(
        f"/ui/alerts/{alert['id']}/route", data={"queue": "triage", "items": "12"}, headers=HTMX
    )
    after = linked_items(engine, alert["id"])
    added = len(after) - 6
    assert len(after) == len(set(after)) and set(after) <= set(acting["ranked"]) and added >= 6
    skipped = 12 - added
    already = f" ({skipped} {'was' if skipped == 1 else 'were'} in it already)" if skipped else ""
    assert f"Sent {added} items to queue triage{already}." in more.text
    # without JavaScript the form posts and comes back to the feature page; a queue's name works too
    plain = client.post(f"/ui/alerts/{alert['id']}/route", data={"queue": "triage", "items": "20"})
    assert plain.status_code == 303
    assert plain.headers["location"] == f"/ui/features/{FEATURE}#alert-{alert['id']}"
    after = linked_items(engine, alert["id"])
    assert sorted(after) == sorted(acting["ranked"])
    page = client.get(f"/ui/features/{FEATURE}").text
    assert f"{len(after)} items sent to queue" in text_of(page)


REFUSED = [
    ({"queue": "triage", "items": "0"}, 422, "items &#39;0&#39; must be a whole number from 1 to 10,000"),
    ({"queue": "triage", "items": "lots"}, 422, "items &#39;lots&#39; must be a whole number"),
    ({"queue": "", "items": "5"}, 422, "choose a queue to send the traces to"),
    ({"queue": "nope", "items": "5"}, 404, "queue &#39;nope&#39; does not exist"),
    ({"queue": "987654", "items": "5"}, 404, "queue &#39;987654&#39; does not exist"),
]


def test_a_refused_route_says_why_in_the_card(acting: dict[str, Any]) -> None:
    client, alert = acting["client"], acting["alert"]
    for form, status, message in REFUSED:
        response = client.post(f"/ui/alerts/{alert['id']}/route", data=form, headers=HTMX)
        assert response.status_code == status, form
        assert f'id="alert-{alert["id"]}"' in response.text and 'role="alert"' in response.text
        assert message in response.text, form
    assert linked_items(acting["engine"], alert["id"]) == []


def test_acknowledge_then_resolve(acting: dict[str, Any]) -> None:
    client, alert = acting["client"], acting["alert"]
    acked = client.post(f"/ui/alerts/{alert['id']}/acknowledge", headers=HTMX)
    assert acked.status_code == 200
    assert "status-acknowledged" in acked.text and "acknowledged by rita" in acked.text
    assert "/acknowledge" not in acked.text and "Send to queue" in acked.text
    resolved = client.post(f"/ui/alerts/{alert['id']}/resolve", headers=HTMX)
    assert resolved.status_code == 200 and "status-resolved" in resolved.text
    assert "Send to queue" not in resolved.text and "resolved by rita" in resolved.text
    again = client.post(f"/ui/alerts/{alert['id']}/resolve", headers=HTMX)
    assert again.status_code == 409 and "is resolved already" in again.text
    page = client.get(f"/ui/features/{FEATURE}").text
    assert "No open alerts." in page and f'id="alert-{alert["id"]}"' not in page


class SlidingDrop:
    """An outcome drop found again at every run, its slice the run's current window (as the outcome
    check's slice moves with its window)."""

    name = "ui_sliding"
    arguments = NoArguments

    def run(self, context: CheckContext, arguments: Any) -> CheckResult:
        detail = {
            "metric": {
                "name": "handled_rate",
                "label": "handled rate",
                "kind": "proportion",
                "worse": "lower",
            },
            "window_test": {"alert": True, "reference": 0.7, "current": 0.4},
        }
        finding = Finding("outcome:handled_rate", "handled rate fell", "critical", detail, context.slice())
        return CheckResult({}, [finding])


def test_the_headline_dates_the_drop_from_the_first_run_that_found_it(
    sqlite_engine: sa.Engine, settings: Settings
) -> None:
    viewer = create_api_key(sqlite_engine, "default", "viewer")
    pid = project_id(sqlite_engine, "default")
    traces, signals = decay_data()
    recent = [t for t in traces if t.start_time and t.start_time >= TODAY - timedelta(days=10)]
    ingest_traces(sqlite_engine, pid, recent)
    record_signals(sqlite_engine, pid, [s for s in signals if s.trace_id in {t.trace_id for t in recent}])
    register_check(SlidingDrop())
    save_monitor(
        sqlite_engine,
        pid,
        {
            "name": "slide",
            "feature": FEATURE,
            "current": {"window": "3d"},
            "checks": [{"type": "ui_sliding"}],
        },
    )
    for back in (4, 2, 0):  # current windows from 7, 5 and 3 days ago
        run_monitor(sqlite_engine, pid, "slide", as_of=TODAY - timedelta(days=back))
    began = TODAY - timedelta(days=7)
    with TestClient(create_app(sqlite_engine, settings), follow_redirects=False) as client:
        sign_in(client, viewer)
        page = client.get(f"/ui/features/{FEATURE}").text
    headline = re.search(r"data-headline>([^<]*)<", page)
    assert headline is not None
    assert unescape(headline.group(1)) == f"Handled rate fell 30 points since {began.date()}: 70.0% → 40.0%"
    layers = specs_of(page)["outcome-handled_rate"]["layer"]
    shaded = next(layer for layer in layers if layer["mark"]["type"] == "rect")["data"]["values"]
    assert [(w["from"], w["to"]) for w in shaded] == [(epoch_ms(began), epoch_ms(TODAY))]
    # the card still names the slice that routing sends: the latest run's window
    assert (
        f"traces from {(TODAY - timedelta(days=3)).date()} 00:00:00 to {TODAY.date()} 00:00:00 UTC"
        in text_of(page)
    )


def test_a_feature_nobody_monitors_says_how_to_start(sqlite_engine: sa.Engine, settings: Settings) -> None:
    viewer = create_api_key(sqlite_engine, "default", "viewer")
    pid = project_id(sqlite_engine, "default")
    with TestClient(create_app(sqlite_engine, settings), follow_redirects=False) as client:
        sign_in(client, viewer)
        assert "No features yet" in client.get("/ui/features").text
        ingest_traces(sqlite_engine, pid, decay_data()[0][-PER_DAY:])
        listing = client.get("/ui/features").text
        assert f'<tr data-feature="{FEATURE}">' in listing and "no handled-rate signals" in listing
        page = client.get(f"/ui/features/{FEATURE}")
    assert page.status_code == 200
    assert "No monitor watches this feature yet" in page.text
    assert "prodloop monitor create FILE" in page.text and "No open alerts." in page.text
    assert "No outcome of this feature has values in this window" not in page.text  # errors and latency do
    assert "outcome-error_rate" in specs_of(page.text)
