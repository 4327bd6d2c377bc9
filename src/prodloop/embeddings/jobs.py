"""Embeddings are computed by workers, never on the ingest path.

Two pieces, registered with :mod:`prodloop.jobs` when this module is imported (``prodloop worker``
imports it) and when the ``[embeddings]`` extra is installed:

- the handler ``embed.traces`` (payload ``{"feature", "since", "until", "field", "release", "by"}``;
  times in nanoseconds or ISO 8601; ``feature`` and ``release`` may be null, ``by`` is ``"start"``
  (default) or ``"ingested"``) embeds the texts of those traces that have no cached vector yet, storing
  them chunk by chunk and renewing its lock between chunks;
- the scheduler ``embeddings`` looks, at most once a minute per worker, at the traces that reached the
  store since it last looked (on a worker's first tick: in the last day), hashes their texts, and when
  some have no vector enqueues one ``embed.traces`` job per project and field for that span of
  ingestion times. Its dedup key (``embed.recent:<project>:<field>``) keeps one such job pending per
  project and field however many workers run; a span is taken as done once its job is queued, and
  looked at again only if no job could be queued for it (one was still pending).

Traces are looked at once their ingestion is :data:`SETTLE_SECONDS` old, so that a transaction still
writing them has committed. A trace whose text changes after that (its root span arrives much later
than its children) keeps its first text's vector; :func:`enqueue_trace_embedding` embeds any window on
request, and monitors use it for the traces they find without vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from prodloop.embeddings.cache import FIELDS, Field, embed_traces, text_hash, trace_texts
from prodloop.embeddings.encoder import (
    BATCH_SIZE,
    Encoder,
    default_model_id,
    embeddings_available,
    get_encoder,
)
from prodloop.errors import ValidationFailed
from prodloop.store import read_transaction
from prodloop.store.schema import embeddings, projects

if TYPE_CHECKING:
    from prodloop.jobs import JobContext

log = logging.getLogger(__name__)

#: The job kind.
KIND = "embed.traces"
#: The scheduler's name.
SCHEDULER = "embeddings"
#: Seconds between two looks of one worker's scheduler.
SCHEDULE_SECONDS = 60.0
#: How far back a worker's first look goes.
LOOKBACK_SECONDS = 86_400.0
#: Age of an ingestion before it is looked at.
SETTLE_SECONDS = 30.0
#: Input texts first: drift and coverage monitors read them most.
PRIORITY = {"input": -10, "output": -20}
_NS = 1_000_000_000
_LOOKUP_CHUNK = 900


def _payload_ns(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        from prodloop.capture.queries import to_ns

        try:
            return to_ns(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError as exc:
            raise ValidationFailed(f"{KIND} payload {key!r} is not an ISO 8601 time: {value!r}") from exc
    raise ValidationFailed(f"{KIND} payload needs {key!r}: nanoseconds since the epoch or an ISO 8601 time")


class _Counting:
    """The process's encoder, counting the texts this job has it encode (other jobs may share it)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.texts = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def encode(self, texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.encode(texts, batch_size=batch_size)


def run_embed_traces(ctx: JobContext) -> dict[str, Any]:
    """The ``embed.traces`` handler: embed the window's traces that have no vector yet."""
    payload = ctx.payload
    if ctx.project_id is None:
        raise ValidationFailed(f"an {KIND} job needs a project")
    field = payload.get("field", "input")
    encoder = _Counting(get_encoder())
    started = time.perf_counter()
    found = embed_traces(
        ctx.engine,
        ctx.project_id,
        payload.get("feature"),
        _payload_ns(payload, "since"),
        _payload_ns(payload, "until"),
        field,
        payload.get("release"),
        by=payload.get("by", "start"),
        encoder=encoder,
        progress=lambda done, total: ctx.heartbeat(),
    )
    return {
        "model": found.model,
        "field": field,
        "traces": len(found),
        "encoded": encoder.texts,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _dedup(project_id: int, payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return f"{KIND}:{project_id}:{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"


def enqueue_trace_embedding(
    engine: sa.Engine,
    project_id: int,
    feature: str | None,
    since: datetime | int,
    until: datetime | int,
    field: Field = "input",
    release: str | None = None,
    *,
    by: str = "start",
    priority: int | None = None,
) -> int | None:
    """Ask the workers to embed a window of traces; returns the job id, or None when the same request
    is already pending."""
    from prodloop.capture.queries import to_ns
    from prodloop.jobs import enqueue

    if field not in FIELDS:
        raise ValidationFailed(f"field {field!r} is not a trace text; use one of: {', '.join(FIELDS)}")
    payload = {
        "feature": feature,
        "since": to_ns(since) if isinstance(since, datetime) else int(since),
        "until": to_ns(until) if isinstance(until, datetime) else int(until),
        "field": field,
        "release": release,
        "by": by,
    }
    return enqueue(
        engine,
        KIND,
        payload,
        project_id=project_id,
        priority=PRIORITY[field] if priority is None else priority,
        dedup_key=_dedup(project_id, payload),
    )


def _missing(engine: sa.Engine, project_id: int, model: str, texts: list[str]) -> int:
    hashes = list(dict.fromkeys(text_hash(t) for t in texts))
    found = 0
    with read_transaction(engine) as connection:
        for start in range(0, len(hashes), _LOOKUP_CHUNK):
            chunk = hashes[start : start + _LOOKUP_CHUNK]
            found += connection.execute(
                sa.select(sa.func.count()).where(
                    embeddings.c.project_id == project_id,
                    embeddings.c.model == model,
                    embeddings.c.text_hash.in_(chunk),
                )
            ).scalar_one()
    return len(hashes) - found


class _Watermarks:
    """Per store, project and field: the ingestion time up to which this process saw everything
    embedded or queued; and when the scheduler last looked."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.seen: dict[tuple[str, int, str], int] = {}
        self.looked: dict[str, int] = {}


_MARKS = _Watermarks()


def schedule_embeddings(engine: sa.Engine, now_ns: int) -> int:
    """The ``embeddings`` scheduler: enqueue ``embed.traces`` for recently ingested traces that have no
    vector yet; returns how many jobs it enqueued."""
    from prodloop.jobs import enqueue

    store = engine.url.render_as_string(hide_password=True)
    with _MARKS.guard:
        last = _MARKS.looked.get(store)
        if last is not None and now_ns - last < SCHEDULE_SECONDS * _NS:
            return 0
        _MARKS.looked[store] = now_ns
    until = now_ns - int(SETTLE_SECONDS * _NS)
    first = now_ns - int(LOOKBACK_SECONDS * _NS)
    model = default_model_id()
    with read_transaction(engine) as connection:
        project_ids = list(connection.execute(sa.select(projects.c.id).order_by(projects.c.id)).scalars())
    enqueued = 0
    for project_id in project_ids:
        for field in FIELDS:
            key = (store, project_id, field)
            with _MARKS.guard:
                since = max(_MARKS.seen.get(key, first), first)
            if since >= until:
                continue
            _, texts = trace_texts(engine, project_id, None, since, until, field, by="ingested")
            if texts and _missing(engine, project_id, model, texts):
                payload = {
                    "feature": None,
                    "since": since,
                    "until": until,
                    "field": field,
                    "release": None,
                    "by": "ingested",
                }
                job = enqueue(
                    engine,
                    KIND,
                    payload,
                    project_id=project_id,
                    priority=PRIORITY[field],
                    dedup_key=f"embed.recent:{project_id}:{field}",
                )
                if job is None:
                    continue  # the previous span's job is still pending: look again next time
                enqueued += 1
            with _MARKS.guard:
                _MARKS.seen[key] = until
    return enqueued


def reset_schedule() -> None:
    """Forget what this process's scheduler has looked at (for tests)."""
    with _MARKS.guard:
        _MARKS.seen.clear()
        _MARKS.looked.clear()


def register() -> bool:
    """Register the handler and the scheduler with :mod:`prodloop.jobs`; False (nothing registered)
    when the ``[embeddings]`` extra is not installed, so that no worker takes jobs it cannot run."""
    if not embeddings_available():
        log.info("embeddings extra not installed: the %s jobs are not registered", KIND)
        return False
    from prodloop.jobs import register_handler, register_scheduler

    register_handler(KIND, run_embed_traces)
    register_scheduler(SCHEDULER, schedule_embeddings)
    return True


register()
