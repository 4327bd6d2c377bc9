"""The demo scenario, read back from the store: a support assistant whose handled rate falls after a
product launch while its latency stays flat, with feedback, implicit signals and late outcomes."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from prodloop.capture import SignalIn, TraceIn, feature_coverage, get_trace
from prodloop.demo import (
    default_end,
    generate_scenario,
    has_traces,
    launch_day,
    load_demo,
    prompt_change_day,
)
from prodloop.demo.scenario import FEATURE, RELEASES
from prodloop.server.auth import project_id
from tests.demo.conftest import END

START = END - timedelta(days=30)
DAY_NS = 86_400 * 10**9
START_NS = int(START.timestamp()) * 10**9
DAY = f"((t.start_ns - {START_NS}) / {DAY_NS})"
#: Join condition of a trace t and a signal or span s (the primary key leads with the project).
SAME_TRACE = "t.project_id = s.project_id AND t.trace_id = s.trace_id"


def rows(engine: sa.Engine, sql: str) -> list[sa.Row]:
    with engine.connect() as connection:
        return list(connection.execute(sa.text(sql)))


def by_day(engine: sa.Engine, sql: str) -> dict[int, tuple[float, int]]:
    """{day: (value, count)} from a query that selects day, value, count."""
    return {int(day): (float(value), int(count)) for day, value, count in rows(engine, sql)}


def pooled(daily: dict[int, tuple[float, int]], days: range) -> float:
    total = sum(daily[d][1] for d in days)
    return sum(daily[d][0] * daily[d][1] for d in days) / total


def test_it_stores_over_20000_traces_spread_over_30_days(store):
    engine, summary = store
    [(count, first, last, spans, features)] = rows(
        engine,
        "SELECT count(*), min(start_ns), max(start_ns), sum(span_count), count(DISTINCT feature) FROM traces",
    )
    assert count == summary["traces"] >= 20_000
    assert spans == summary["spans"] and 3 * count < spans < 4 * count
    assert features == 1 and rows(engine, "SELECT DISTINCT feature FROM traces")[0][0] == FEATURE
    assert START_NS <= first < START_NS + DAY_NS // 4
    assert START_NS + 30 * DAY_NS - DAY_NS // 4 < last < START_NS + 30 * DAY_NS
    per_day = by_day(engine, f"SELECT {DAY} AS day, 0, count(*) FROM traces t GROUP BY day")
    assert sorted(per_day) == list(range(30))
    [(signals,)] = rows(engine, "SELECT count(*) FROM signals")
    assert signals == summary["signals"] > count


def test_traffic_follows_weekdays_and_working_hours(store):
    engine, _ = store
    weekday = Counter()
    hour = Counter()
    for (start_ns,) in rows(engine, "SELECT start_ns FROM traces"):
        moment = datetime.fromtimestamp(start_ns / 1e9, tz=UTC)
        weekday[moment.weekday()] += 1
        hour[moment.hour] += 1
    assert min(weekday[d] for d in range(5)) > 1.2 * max(weekday[5], weekday[6])
    assert min(hour[h] for h in range(12, 17)) > 4 * max(hour[h] for h in range(2, 6))


def test_requests_about_the_new_product_appear_from_day_20(store):
    engine, _ = store
    share = by_day(
        engine,
        f"SELECT {DAY} AS day, avg(CASE WHEN lower(input_text) LIKE '%vault%' THEN 1.0 ELSE 0 END), count(*) "
        "FROM traces t GROUP BY day",
    )
    assert launch_day(30) == 20
    assert pooled(share, range(17)) == 0
    assert pooled(share, range(17, 20)) < 0.01  # a few pre-order questions
    assert 0.03 < share[20][0] < share[23][0] < share[26][0]
    assert 0.35 < pooled(share, range(27, 30)) < 0.48


def test_handled_rate_falls_from_70_to_50_percent(store):
    engine, _ = store
    handled = by_day(
        engine,
        f"SELECT {DAY} AS day, avg(s.value_num), count(*) FROM signals s "
        f"JOIN traces t ON {SAME_TRACE} "
        "WHERE s.name = 'resolved' GROUP BY day",
    )
    before = pooled(handled, range(20))
    after = pooled(handled, range(27, 30))
    assert abs(before - 0.70) <= 0.05
    assert abs(after - 0.50) <= 0.06
    assert pooled(handled, range(20, 24)) < before - 0.03  # the fall starts with the launch
    assert all(abs(handled[d][0] - before) < 0.08 for d in range(20))  # and not before it


def test_the_decay_comes_from_answers_that_retrieval_cannot_support(store):
    """Questions about the new product retrieve unrelated articles with low scores, and the answers
    hedge or describe other devices: the decay is in the data, not painted onto the outcomes."""
    engine, _ = store
    scores: dict[bool, list[float]] = {True: [], False: []}
    retrieval = rows(
        engine,
        "SELECT lower(t.input_text) LIKE '%vault%', s.attributes FROM spans s "
        f"JOIN traces t ON {SAME_TRACE} WHERE s.operation = 'retrieval'",
    )
    for vault, attributes in retrieval:
        document = attributes if isinstance(attributes, dict) else json.loads(attributes)
        scores[bool(vault)].append(document["retrieval.scores"][0])
    assert statistics.mean(scores[True]) < 0.6 < 0.75 < statistics.mean(scores[False])
    [(vault_handled, other_handled)] = rows(
        engine,
        "SELECT avg(CASE WHEN lower(t.input_text) LIKE '%vault%' THEN s.value_num END), "
        "avg(CASE WHEN lower(t.input_text) NOT LIKE '%vault%' THEN s.value_num END) FROM signals s "
        f"JOIN traces t ON {SAME_TRACE} WHERE s.name = 'resolved' AND {DAY} >= 20",
    )
    assert vault_handled < 0.3 and other_handled > 0.65


def test_latency_stays_flat_while_the_feature_decays(store):
    engine, _ = store
    durations: dict[int, list[float]] = {}
    for day, duration_ns in rows(engine, f"SELECT {DAY}, end_ns - start_ns FROM traces t"):
        durations.setdefault(int(day), []).append(duration_ns / 1e9)
    early = statistics.median(d for day in range(10) for d in durations[day])
    late = statistics.median(d for day in range(25, 30) for d in durations[day])
    assert 1.2 < early < 2.0
    assert abs(late - early) / early < 0.10
    p95 = [statistics.quantiles(durations[day], n=20)[-1] for day in range(30)]
    assert max(p95) < 1.5 * min(p95)


def test_explicit_feedback_covers_about_one_percent_and_follows_outcomes(store):
    engine, _ = store
    coverage = feature_coverage(engine, project_id(engine, "demo"), FEATURE)
    assert 0.005 <= coverage["explicit_share"] <= 0.02
    assert coverage["implicit_share"] > 5 * coverage["explicit_share"]
    names = {name for (name,) in rows(engine, "SELECT DISTINCT name FROM signals WHERE kind = 'explicit'")}
    assert names == {"thumbs", "rating", "correction"}
    [(up_when_handled, up_when_not)] = rows(
        engine,
        "SELECT avg(CASE WHEN r.value_num = 1 THEN f.value_num END), "
        "avg(CASE WHEN r.value_num = 0 THEN f.value_num END) FROM signals f "
        "JOIN signals r ON r.project_id = f.project_id AND r.trace_id = f.trace_id AND r.name = 'resolved' "
        "WHERE f.name = 'thumbs'",
    )
    assert up_when_handled > 0.6 > 0.4 > up_when_not


def test_implicit_signals_have_realistic_rates(store):
    engine, _ = store
    [(traces,)] = rows(engine, "SELECT count(*) FROM traces")
    counts = dict(rows(engine, "SELECT name, count(*) FROM signals WHERE kind = 'implicit' GROUP BY name"))
    assert 0.06 < counts["copy"] / traces < 0.14
    assert 0.02 < counts["regenerate"] / traces < 0.07
    assert 0.03 < counts["abandon"] / traces < 0.10
    assert 0.01 < counts["edit"] / traces < 0.05
    regenerated = dict(
        rows(
            engine,
            "SELECT r.value_num, avg(g.trace_id IS NOT NULL) FROM signals r LEFT JOIN signals g "
            "ON g.project_id = r.project_id AND g.trace_id = r.trace_id AND g.name = 'regenerate' "
            "WHERE r.name = 'resolved' AND r.trace_id IS NOT NULL GROUP BY r.value_num",
        )
    )
    assert regenerated[0.0] > 2 * regenerated[1.0]
    [(edits, measured)] = rows(
        engine,
        f"SELECT count(*), count(edit_distance) FROM signals s JOIN traces t ON {SAME_TRACE} "
        "WHERE s.name = 'edit'",
    )
    assert edits == measured > 0  # the trace output was known, so the edit distance was computed


def test_outcomes_arrive_late_and_join_their_trace_by_ticket_id(store):
    engine, _ = store
    outcomes = rows(
        engine,
        "SELECT s.join_key, s.trace_id, t.join_key, s.timestamp_ns - t.end_ns, s.timestamp_ns "
        f"FROM signals s LEFT JOIN traces t ON {SAME_TRACE} WHERE s.name = 'resolved'",
    )
    joined = [o for o in outcomes if o[1] is not None]
    assert all(re.fullmatch(r"T-\d{6}", o[0]) for o in outcomes)
    assert all(o[0] == o[2] for o in joined)
    orphans = 1 - len(joined) / len(outcomes)
    assert 0.005 < orphans < 0.025  # tickets whose trace never reached the store
    delays_h = sorted(o[3] / 3.6e12 for o in joined)
    assert delays_h[0] >= 0.5 and 8 < statistics.median(delays_h) < 30 and delays_h[-1] <= 24 * 7
    assert max(o[4] for o in outcomes) < int(END.timestamp()) * 10**9  # none from the future
    [(traces,)] = rows(engine, "SELECT count(*) FROM traces")
    assert 0.75 < len(joined) / traces < 0.88
    coverage = by_day(
        engine,
        f"SELECT {DAY} AS day, avg(s.trace_id IS NOT NULL), count(*) FROM traces t "
        f"LEFT JOIN signals s ON {SAME_TRACE} AND s.name = 'resolved' GROUP BY day",
    )
    assert coverage[29][0] < 0.6 < 0.8 < pooled(coverage, range(20, 27))  # the last outcomes are still due
    names = {n for (n,) in rows(engine, "SELECT DISTINCT name FROM signals WHERE kind = 'outcome'")}
    assert names == {"resolved", "escalated", "csat"}


def test_two_releases_switch_on_day_10(store):
    engine, _ = store
    spans = {
        release: (first, last)
        for release, first, last in rows(
            engine, "SELECT release, min(start_ns), max(start_ns) FROM traces GROUP BY release"
        )
    }
    assert set(spans) == set(RELEASES) and prompt_change_day(30) == 10
    switch = START_NS + 10 * DAY_NS
    assert spans["support-v1"][1] < switch <= spans["support-v2"][0]
    prompts = dict(
        rows(
            engine,
            "SELECT t.release, count(DISTINCT json_extract(s.input_messages, '$[0].content')) FROM spans s "
            f"JOIN traces t ON {SAME_TRACE} WHERE s.operation = 'chat' GROUP BY t.release",
        )
    )
    assert prompts == {"support-v1": 1, "support-v2": 1}  # one system prompt per release


def test_a_small_steady_share_of_traces_fail(store):
    engine, _ = store
    failed = by_day(
        engine,
        f"SELECT {DAY} AS day, avg(CASE WHEN error_count > 0 THEN 1.0 ELSE 0 END), count(*) FROM traces t"
        " GROUP BY day",
    )
    assert 0.002 < pooled(failed, range(30)) < 0.01
    assert pooled(failed, range(15)) < 0.012 and pooled(failed, range(15, 30)) < 0.012


def test_a_trace_has_retrieval_tool_and_llm_spans_nested_in_its_root(store):
    engine, _ = store
    [(trace_id,)] = rows(
        engine,
        "SELECT trace_id FROM traces WHERE span_count = 4 AND error_count = 0 ORDER BY trace_id LIMIT 1",
    )
    trace = get_trace(engine, project_id(engine, "demo"), trace_id)
    [root] = trace["spans"]
    assert root["name"] == "support.answer" and root["join_key"].startswith("T-")
    children = {child["operation"]: child for child in root["children"]}
    assert list(children) == ["retrieval", "execute_tool", "chat"]  # in start order
    assert len(children["retrieval"]["attributes"]["retrieval.document_ids"]) == 4
    llm = children["chat"]
    assert llm["provider"] == "openai" and llm["response_model"] == "gpt-4o-mini-2024-07-18"
    assert llm["sampling"]["temperature"] == 0.3
    assert llm["output"] == root["output"] and root["input"] in llm["input"]
    assert abs(llm["output_tokens"] - len(llm["output"]) / 4) < 0.15 * len(llm["output"]) / 4 + 2
    assert children["execute_tool"]["tool_name"] in {
        "lookup_order",
        "lookup_refund",
        "list_charges",
        "lookup_account",
    }
    spans = [root, *root["children"]]
    assert all(root["start_time"] <= s["start_time"] <= s["end_time"] <= root["end_time"] for s in spans)


def test_generation_is_deterministic():
    first = generate_scenario(seed=3, days=6, traces_per_day=40, end=END)
    again = generate_scenario(seed=3, days=6, traces_per_day=40, end=END)
    other = generate_scenario(seed=4, days=6, traces_per_day=40, end=END)
    assert [t.trace.model_dump() for t in first.traces] == [t.trace.model_dump() for t in again.traces]
    assert [t.root_span_id for t in first.traces] == [t.root_span_id for t in again.traces]
    assert [s.model_dump() for s in first.signals] == [s.model_dump() for s in again.signals]
    assert first.tickets == again.tickets
    assert {t.trace.trace_id for t in first.traces}.isdisjoint(t.trace.trace_id for t in other.traces)
    assert [t.trace.input for t in first.traces] != [t.trace.input for t in other.traces]


def test_generated_traces_and_signals_are_valid_api_shapes():
    scenario = generate_scenario(seed=11, days=30, traces_per_day=30, end=END)
    for item in scenario.traces:
        assert TraceIn.model_validate(item.trace.model_dump()) == item.trace
    for signal in scenario.signals:
        assert SignalIn.model_validate(signal.model_dump()) == signal
    assert len({s.id for s in scenario.signals}) == len(scenario.signals)
    assert len({t.ticket for t in scenario.tickets}) == len(scenario.tickets)


def test_the_ground_truth_explains_the_decay():
    scenario = generate_scenario(seed=5, days=30, traces_per_day=150, end=END)
    launch = [t for t in scenario.tickets if t.intent == "acme_vault" and t.day >= 20]
    known = [t for t in scenario.tickets if t.intent != "acme_vault"]
    assert not any(t.intent == "acme_vault" and t.day < 17 for t in scenario.tickets)
    assert statistics.mean(t.handled for t in launch) < 0.3 < 0.65 < statistics.mean(t.handled for t in known)
    assert Counter(t.quality for t in launch).most_common(1)[0][0] == "bad"
    assert {t.release for t in scenario.tickets if t.day < 10} == {"support-v1"}


def test_end_defaults_to_midnight_utc_and_naive_means_utc():
    scenario = generate_scenario(days=1, traces_per_day=5)
    assert scenario.end == default_end() and scenario.end.tzinfo is UTC
    assert (scenario.end.hour, scenario.end.minute, scenario.end.microsecond) == (0, 0, 0)
    naive = generate_scenario(days=1, traces_per_day=5, end=END.replace(tzinfo=None))
    assert naive.end == END


def test_reloading_stores_nothing_twice(sqlite_engine):
    assert not has_traces(sqlite_engine)
    first = load_demo(sqlite_engine, seed=1, days=3, traces_per_day=40, end=END, monitors=False)
    assert has_traces(sqlite_engine)
    assert first["traces"] > 100 and first["spans"] > 3 * first["traces"] and first["signals"] > 0
    again = load_demo(sqlite_engine, seed=1, days=3, traces_per_day=40, end=END, monitors=False)
    assert again == {"traces": 0, "spans": 0, "signals": 0}
    [(traces, spans)] = rows(sqlite_engine, "SELECT count(*), sum(span_count) FROM traces")
    [(signals,)] = rows(sqlite_engine, "SELECT count(*) FROM signals")
    assert (traces, spans, signals) == (first["traces"], first["spans"], first["signals"])


def test_load_shows_a_progress_bar(sqlite_engine, capsys):
    load_demo(sqlite_engine, project="p", days=1, traces_per_day=20, end=END, progress=True, monitors=False)
    output = capsys.readouterr()
    assert "store traces" in output.out + output.err


def test_demo_exports_a_sorted_complete_all():
    module = importlib.import_module("prodloop.demo")
    assert module.__all__ == sorted(module.__all__)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public == set(module.__all__)
