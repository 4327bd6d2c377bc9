"""Vectors cached in the store: each text is encoded once per model and project, then reused.

The table ``embeddings`` keys a vector by ``(project_id, model, text_hash)``: ``model`` is the encoder's
model id (name and fingerprint, :mod:`prodloop.embeddings.encoder`), ``text_hash`` the sha256 of the
text's UTF-8 bytes, and ``vector`` its float32 values, little-endian. The same text in many traces (a
greeting, a canned question) is stored and encoded once.

:func:`embed_texts` reads what is cached, encodes only the rest, and stores it in chunks as it goes, so
an interrupted job keeps what it did. Two writers that encode the same text at once both insert it;
the second insert is ignored (``ON CONFLICT DO NOTHING``), and both return the same vector. Readers that
must not compute (a monitor run, a page) use :func:`cached_vectors` or ``embed_traces(compute=False)``
and get only what is there; the background job (:mod:`prodloop.embeddings.jobs`) fills the rest.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa

from prodloop.embeddings.encoder import DIMENSION, Encoder, default_model_id, get_encoder
from prodloop.errors import ValidationFailed
from prodloop.store import dialect_insert, read_transaction, run_write
from prodloop.store.schema import embeddings, traces

#: Hashes per lookup query (well inside SQLite's and PostgreSQL's limits on bound parameters).
READ_CHUNK = 900
#: Texts encoded, then stored, at a time: what an interrupted job loses at most, and how often
#: ``progress`` is called.
ENCODE_CHUNK = 512
Field = Literal["input", "output"]
#: The trace texts that can be embedded.
FIELDS: tuple[Field, ...] = ("input", "output")
Progress = Callable[[int, int], None]


def text_hash(text: str) -> str:
    """sha256 (hex) of the text's UTF-8 bytes: the key of its vector."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def vector_bytes(vector: np.ndarray) -> bytes:
    """A vector as the store keeps it: float32, little-endian."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _read(connection: sa.Connection, project_id: int, model: str, hashes: Sequence[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for start in range(0, len(hashes), READ_CHUNK):
        chunk = list(hashes[start : start + READ_CHUNK])
        rows = connection.execute(
            sa.select(embeddings.c.text_hash, embeddings.c.dim, embeddings.c.vector).where(
                embeddings.c.project_id == project_id,
                embeddings.c.model == model,
                embeddings.c.text_hash.in_(chunk),
            )
        )
        for row in rows:
            found[row.text_hash] = bytes(row.vector)
    return found


def _read_cached(engine: sa.Engine, project_id: int, model: str, hashes: Sequence[str]) -> dict[str, bytes]:
    with read_transaction(engine) as connection:
        return _read(connection, project_id, model, hashes)


def _store(engine: sa.Engine, project_id: int, model: str, rows: list[tuple[str, bytes]], dim: int) -> None:
    if not rows:
        return
    now = time.time_ns()
    values = [
        {"project_id": project_id, "model": model, "text_hash": h, "dim": dim, "vector": v, "created_ns": now}
        for h, v in rows
    ]

    def write(connection: sa.Connection) -> None:
        statement = dialect_insert(connection, embeddings).on_conflict_do_nothing(
            index_elements=[embeddings.c.project_id, embeddings.c.model, embeddings.c.text_hash]
        )
        connection.execute(statement, values)

    run_write(engine, write)


def _stack(found: dict[str, bytes], hashes: Sequence[str], dim: int) -> np.ndarray:
    if not hashes:
        return np.empty((0, dim), dtype=np.float32)
    parts = [found[h] for h in hashes]
    if any(len(part) != 4 * dim for part in parts):
        raise ValueError(f"stored vectors do not all have {dim} values; the cache for this model is damaged")
    return np.frombuffer(b"".join(parts), dtype="<f4").astype(np.float32).reshape(len(hashes), dim)


def embed_texts(
    engine: sa.Engine,
    project_id: int,
    texts: Sequence[str],
    *,
    encoder: Encoder | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Vectors of ``texts`` in the order given, shape ``(len(texts), dim)``: cached ones read, the others
    encoded (each distinct text once) and stored.

    ``progress(done, total)`` is called after each stored chunk of newly encoded texts (a job renews
    its lock there).
    """
    encoder = get_encoder() if encoder is None else encoder
    model, dim = encoder.model_id, encoder.dimension
    hashes = [text_hash(t) for t in texts]
    distinct = list(dict.fromkeys(hashes))
    found = _read_cached(engine, project_id, model, distinct)
    first_text = dict(zip(hashes, texts, strict=True))
    missing = [h for h in distinct if h not in found]
    for start in range(0, len(missing), ENCODE_CHUNK):
        chunk = missing[start : start + ENCODE_CHUNK]
        vectors = np.asarray(encoder.encode([first_text[h] for h in chunk]), dtype=np.float32)
        if vectors.shape != (len(chunk), dim):
            raise ValueError(
                f"encoder {model} returned shape {vectors.shape} for {len(chunk)} texts, "
                f"not ({len(chunk)}, {dim})"
            )
        rows = [(h, vector_bytes(v)) for h, v in zip(chunk, vectors, strict=True)]
        _store(engine, project_id, model, rows, dim)
        found.update(rows)
        if progress is not None:
            progress(min(start + len(chunk), len(missing)), len(missing))
    return _stack(found, hashes, dim)


def cached_vectors(
    engine: sa.Engine,
    project_id: int,
    texts: Sequence[str],
    *,
    model: str | None = None,
    dim: int = DIMENSION,
) -> tuple[np.ndarray, np.ndarray]:
    """What is cached for ``texts``, computing nothing: ``(positions, vectors)``, where ``positions``
    are the indices (ascending) of the texts that have a vector and ``vectors`` their rows.

    ``model`` defaults to the model id of the process-wide encoder (read from its files; the model is
    not loaded).
    """
    model = default_model_id() if model is None else model
    hashes = [text_hash(t) for t in texts]
    found = _read_cached(engine, project_id, model, list(dict.fromkeys(hashes)))
    positions = np.array([i for i, h in enumerate(hashes) if h in found], dtype=np.int64)
    return positions, _stack(found, [hashes[i] for i in positions], dim)


def _ns(value: datetime | int) -> int:
    if isinstance(value, datetime):
        from prodloop.capture.queries import to_ns

        return to_ns(value)
    return int(value)


def trace_texts(
    engine: sa.Engine,
    project_id: int,
    feature: str | None,
    since: datetime | int,
    until: datetime | int,
    field: Field = "input",
    release: str | None = None,
    *,
    by: Literal["start", "ingested"] = "start",
    sample: int | None = None,
) -> tuple[list[str], list[str]]:
    """``(trace_ids, texts)`` of the traces of ``feature`` (every feature when None) that started (or, with
    ``by="ingested"``, reached the store) in ``[since, until)`` and have a non-empty ``field`` text.

    Times are datetimes (UTC when naive) or integer nanoseconds. With ``sample``, at most that many
    traces: those with the smallest trace ids, a uniform sample since trace ids are random, and the
    same one each time. Rows come in time order.
    """
    if field not in FIELDS:
        raise ValidationFailed(f"field {field!r} is not a trace text; use one of: {', '.join(FIELDS)}")
    if by not in ("start", "ingested"):
        raise ValidationFailed(f"by={by!r}: choose 'start' (when the trace started) or 'ingested'")
    if sample is not None and sample < 1:
        raise ValidationFailed(f"sample is a number of traces, at least 1, not {sample}")
    column = traces.c.input_text if field == "input" else traces.c.output_text
    at = traces.c.start_ns if by == "start" else traces.c.ingested_ns
    conditions = [
        traces.c.project_id == project_id,
        at >= _ns(since),
        at < _ns(until),
        column.is_not(None),
        column != "",
    ]
    if feature is not None:
        conditions.append(traces.c.feature == feature)
    if release is not None:
        conditions.append(traces.c.release == release)
    query = sa.select(traces.c.trace_id, column.label("text"), at.label("at")).where(*conditions)
    if sample is not None:
        query = query.order_by(traces.c.trace_id).limit(sample)
    else:
        query = query.order_by(at, traces.c.trace_id)
    with read_transaction(engine) as connection:
        rows: list[Any] = list(connection.execute(query))
    if sample is not None:
        rows.sort(key=lambda row: (row.at, row.trace_id))
    return [row.trace_id for row in rows], [row.text for row in rows]


@dataclass(frozen=True)
class TraceVectors:
    """Traces with their texts and vectors (rows aligned), and how many had no vector yet."""

    model: str
    trace_ids: list[str]
    texts: list[str]
    vectors: np.ndarray
    #: Traces in the window with text but no cached vector (always 0 when vectors were computed).
    missing: int

    def __len__(self) -> int:
        return len(self.trace_ids)


def embed_traces(
    engine: sa.Engine,
    project_id: int,
    feature: str | None,
    since: datetime | int,
    until: datetime | int,
    field: Field = "input",
    release: str | None = None,
    *,
    by: Literal["start", "ingested"] = "start",
    sample: int | None = None,
    compute: bool = True,
    encoder: Encoder | None = None,
    progress: Progress | None = None,
) -> TraceVectors:
    """Vectors of the traces :func:`trace_texts` selects.

    With ``compute=False`` nothing is encoded: only the traces whose text is cached come back, and
    ``missing`` counts the others (a monitor reports them, or enqueues ``embed.traces``).
    """
    trace_ids, texts = trace_texts(
        engine, project_id, feature, since, until, field, release, by=by, sample=sample
    )
    if compute:
        encoder = get_encoder() if encoder is None else encoder
        vectors = embed_texts(engine, project_id, texts, encoder=encoder, progress=progress)
        return TraceVectors(encoder.model_id, trace_ids, texts, vectors, 0)
    model = default_model_id() if encoder is None else encoder.model_id
    dim = DIMENSION if encoder is None else encoder.dimension
    positions, vectors = cached_vectors(engine, project_id, texts, model=model, dim=dim)
    kept = positions.tolist()
    return TraceVectors(
        model,
        [trace_ids[i] for i in kept],
        [texts[i] for i in kept],
        vectors,
        len(trace_ids) - len(kept),
    )
