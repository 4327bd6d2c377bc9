"""Vectors cached in the store (SQLite and PostgreSQL): computed once per text, reused, never mixed
between models, safe under concurrent writers; and the background job that computes them."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from prodloop.capture import native_span_records, write_spans
from prodloop.capture.shapes import TraceIn
from prodloop.embeddings import (
    cached_vectors,
    embed_texts,
    embed_traces,
    enqueue_trace_embedding,
    get_encoder,
    text_hash,
    trace_texts,
)
from prodloop.embeddings import jobs as embedding_jobs
from prodloop.errors import ValidationFailed
from prodloop.jobs import claim_jobs, get_job, run_job
from prodloop.server.auth import ensure_project
from prodloop.store import create_store_engine, read_transaction
from prodloop.store.schema import embeddings
from tests.embeddings import CountingEncoder, HashEncoder, demo_messages

NS = 1_000_000_000
T0 = 1_740_000_000 * NS  # 2025-02-19 21:20 UTC


def stored_rows(engine: sa.Engine) -> list[Any]:
    with read_transaction(engine) as connection:
        return list(connection.execute(sa.select(embeddings).order_by(embeddings.c.text_hash)))


def texts_with_repeats() -> list[str]:
    messages = [m.input for m in demo_messages()[:40]]
    return [*messages, messages[3], "Hi,", messages[3], "Hi,"]


def test_second_call_reads_the_store_and_encodes_nothing(engine: sa.Engine) -> None:
    project = ensure_project(engine, "cache")
    texts = texts_with_repeats()
    counting = CountingEncoder(get_encoder())
    first = embed_texts(engine, project, texts, encoder=counting)
    assert counting.texts == list(dict.fromkeys(texts))  # each distinct text encoded once
    np.testing.assert_array_equal(first[40], first[42])
    np.testing.assert_allclose(first, get_encoder().encode(texts), atol=1e-5)

    counting.texts.clear()
    again = embed_texts(engine, project, texts, encoder=counting)
    assert counting.texts == []
    np.testing.assert_array_equal(again, first)  # bit for bit: read back as stored

    more = [*texts[:5], "A new question about the Acme Vault"]
    embed_texts(engine, project, more, encoder=counting)
    assert counting.texts == ["A new question about the Acme Vault"]


def test_vectors_are_stored_as_float32_little_endian_under_the_model_and_text_hash(engine: sa.Engine) -> None:
    project = ensure_project(engine, "bytes")
    vectors = embed_texts(engine, project, ["Where is my order?"])
    [row] = stored_rows(engine)
    assert row.project_id == project
    assert row.model == get_encoder().model_id
    assert row.text_hash == text_hash("Where is my order?")
    assert row.dim == 384
    np.testing.assert_array_equal(np.frombuffer(bytes(row.vector), dtype="<f4"), vectors[0])


def test_text_hash_is_sha256_of_utf8() -> None:
    # sha256("abc"), FIPS 180-2 appendix B.1
    assert text_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert text_hash("é") == hashlib.sha256(b"\xc3\xa9").hexdigest()  # the UTF-8 bytes, not Latin-1


def test_vectors_of_two_models_never_mix(engine: sa.Engine) -> None:
    project = ensure_project(engine, "models")
    texts = ["reset my password", "cancel my subscription"]
    real = embed_texts(engine, project, texts)
    other = HashEncoder(model_id="other-model@abcdef012345", dimension=384)
    theirs = embed_texts(engine, project, texts, encoder=other)
    assert other.calls == 1  # not served from the real model's cache
    assert not np.allclose(real, theirs)
    assert sorted({r.model for r in stored_rows(engine)}) == sorted([get_encoder().model_id, other.model_id])
    positions, vectors = cached_vectors(engine, project, [*texts, "never seen"])
    assert positions.tolist() == [0, 1]
    np.testing.assert_array_equal(vectors, real)
    # Another project has its own cache.
    elsewhere = ensure_project(engine, "elsewhere")
    assert cached_vectors(engine, elsewhere, texts)[0].tolist() == []


def test_two_threads_embedding_the_same_texts_store_each_once(engine: sa.Engine) -> None:
    project = ensure_project(engine, "threads")
    texts = [m.input for m in demo_messages()[100:130]]
    barrier = threading.Barrier(2)  # both have read the empty cache and encode before either stores
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(
                embed_texts(engine, project, texts, encoder=CountingEncoder(get_encoder(), barrier=barrier))
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)
    assert len(stored_rows(engine)) == len(set(texts))


def _embed_in_process(url: str, project: int, texts: list[str], barrier: Any, queue: Any) -> None:
    engine = create_store_engine(url)
    try:
        vectors = embed_texts(engine, project, texts, encoder=HashEncoder(barrier=barrier))
        queue.put(vectors.tobytes())
    except BaseException as exc:
        queue.put(repr(exc))
    finally:
        engine.dispose()


def test_two_processes_embedding_the_same_texts_store_each_once(engine: sa.Engine) -> None:
    """This process and a child each embed the same texts into one store, encoding at the same time."""
    project = ensure_project(engine, "processes")
    texts = [f"question {i} about order A-{i:07d}" for i in range(300)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    queue = context.Queue()
    url = engine.url.render_as_string(hide_password=False)
    child = context.Process(target=_embed_in_process, args=(url, project, texts, barrier, queue))
    child.start()
    here = embed_texts(engine, project, texts, encoder=HashEncoder(barrier=barrier))
    answer = queue.get(timeout=120)
    child.join(30)
    assert isinstance(answer, bytes), answer
    assert answer == here.tobytes()
    assert len(stored_rows(engine)) == 300


# --------------------------------------------------------------------------------------------------
# Traces and the background job


def ingest(
    engine: sa.Engine, project: int, items: list[tuple[str, str, int, str]], feature: str = "support"
) -> list[str]:
    """Store traces of (input, output, start_ns, release); returns their trace ids."""
    records: list[dict[str, Any]] = []
    ids = []
    for text, answer, start, release in items:
        trace_id = uuid.uuid4().hex
        ids.append(trace_id)
        trace = TraceIn.model_validate(
            {
                "trace_id": trace_id,
                "feature": feature,
                "release": release,
                "start_time": datetime.fromtimestamp(start / NS, UTC),
                "end_time": datetime.fromtimestamp(start / NS + 1, UTC),
                "input": text,
                "output": answer,
            }
        )
        records.extend(native_span_records(trace)[1])
    write_spans(engine, project, records)
    return ids


def test_trace_texts_select_by_feature_window_release_and_field(engine: sa.Engine) -> None:
    project = ensure_project(engine, "traces")
    ids = ingest(engine, project, [("first", "one", T0, "v1"), ("second", "two", T0 + 10 * NS, "v2")])
    ingest(engine, project, [("elsewhere", "three", T0, "v1")], feature="other")
    ingest(engine, project, [("", "empty input", T0 + NS, "v1")])
    assert trace_texts(engine, project, "support", T0, T0 + 20 * NS) == (ids, ["first", "second"])
    assert trace_texts(engine, project, "support", T0, T0 + 10 * NS, "output")[1] == ["one", "empty input"]
    assert trace_texts(engine, project, "support", T0, T0 + 20 * NS, release="v2") == ([ids[1]], ["second"])
    every, _ = trace_texts(engine, project, None, T0, T0 + 20 * NS)
    assert len(every) == 3
    # A sample: the traces with the smallest ids (random ids: a uniform sample), still in time order.
    smallest = sorted(every)[:2]
    sampled, _ = trace_texts(engine, project, None, T0, T0 + 20 * NS, sample=2)
    assert sampled == [i for i in every if i in smallest]


def test_embed_traces_without_computing_reports_what_is_missing(engine: sa.Engine) -> None:
    project = ensure_project(engine, "missing")
    items = [(m.input, m.output, T0 + i * NS, "v1") for i, m in enumerate(demo_messages()[:12])]
    ids = ingest(engine, project, items)
    embed_texts(engine, project, [m.input for m in demo_messages()[:5]])
    partial = embed_traces(engine, project, "support", T0, T0 + 60 * NS, compute=False)
    assert (len(partial), partial.missing) == (5, 7)
    assert partial.trace_ids == ids[:5]
    full = embed_traces(engine, project, "support", T0, T0 + 60 * NS)
    assert (len(full), full.missing) == (12, 0)
    np.testing.assert_array_equal(full.vectors[:5], partial.vectors)


def claim_and_run(engine: sa.Engine) -> list[dict[str, Any]]:
    jobs = claim_jobs(engine, "test-worker", limit=10, kinds=[embedding_jobs.KIND])
    for job in jobs:
        assert run_job(engine, job, "test-worker") == "done", get_job(engine, job.id)["error"]
    return [get_job(engine, job.id) for job in jobs]


@pytest.fixture
def scheduler(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The scheduler with a fresh memory, looking at every call and at ingestions up to the call's time
    (in production: once a minute, at ingestions 30 s old)."""
    embedding_jobs.reset_schedule()
    monkeypatch.setattr(embedding_jobs, "SCHEDULE_SECONDS", 0.0)
    monkeypatch.setattr(embedding_jobs, "SETTLE_SECONDS", 0.0)
    yield
    embedding_jobs.reset_schedule()


def schedule(engine: sa.Engine) -> int:
    return embedding_jobs.schedule_embeddings(engine, time.time_ns())


def test_the_scheduler_enqueues_recent_traces_and_workers_embed_them(
    engine: sa.Engine, scheduler: None
) -> None:
    project = ensure_project(engine, "scheduled")
    messages = demo_messages()[200:230]
    ingest(engine, project, [(m.input, m.output, T0 + i * NS, "v1") for i, m in enumerate(messages)])
    assert schedule(engine) == 2  # input and output
    assert schedule(engine) == 0  # nothing new since
    done = claim_and_run(engine)
    assert sorted(job["result"]["field"] for job in done) == ["input", "output"]
    distinct = {m.input for m in messages} | {m.output for m in messages}
    assert sum(job["result"]["encoded"] for job in done) == len(distinct)
    assert embed_traces(engine, project, None, T0, T0 + 60 * NS, "output", compute=False).missing == 0

    # New traces: only their texts are encoded.
    fresh = demo_messages()[230:235]
    ingest(engine, project, [(m.input, m.output, T0 + 100 * NS, "v1") for m in fresh])
    assert schedule(engine) == 2
    done = claim_and_run(engine)
    new_inputs = {m.input for m in fresh} - {m.input for m in messages}
    assert [j["result"]["encoded"] for j in done if j["result"]["field"] == "input"] == [len(new_inputs)]
    # Everything is embedded: a worker that starts now finds nothing to do.
    embedding_jobs.reset_schedule()
    assert schedule(engine) == 0


def test_the_scheduler_keeps_one_pending_job_per_project_and_field(
    engine: sa.Engine, scheduler: None
) -> None:
    project = ensure_project(engine, "pending")
    ingest(engine, project, [("first batch", "a", T0, "v1")])
    assert schedule(engine) == 2
    ingest(engine, project, [("second batch", "b", T0, "v1")])
    # This worker, and another one (its own memory), look while the first jobs are still queued.
    assert schedule(engine) == 0
    embedding_jobs.reset_schedule()
    assert schedule(engine) == 0
    done = claim_and_run(engine)
    assert [job["result"]["traces"] for job in done] == [1, 1]  # the span they were queued for
    assert schedule(engine) == 2
    assert [job["result"]["traces"] for job in claim_and_run(engine)] == [2, 2]  # the span since: both
    assert embed_traces(engine, project, None, T0, T0 + NS, compute=False).missing == 0


def test_a_monitor_can_ask_for_a_window_once(engine: sa.Engine) -> None:
    project = ensure_project(engine, "window")
    ingest(engine, project, [("asked for", "by a monitor", T0, "v1")])
    first = enqueue_trace_embedding(engine, project, "support", T0, T0 + NS, "input")
    assert first is not None
    assert enqueue_trace_embedding(engine, project, "support", T0, T0 + NS, "input") is None  # pending
    [job] = claim_and_run(engine)
    assert job["result"]["traces"] == 1 and job["result"]["encoded"] == 1


def test_an_unknown_field_is_refused(sqlite_engine: sa.Engine) -> None:
    with pytest.raises(ValidationFailed, match="field 'question' is not a trace text"):
        trace_texts(sqlite_engine, 1, None, T0, T0 + NS, "question")  # type: ignore[arg-type]
