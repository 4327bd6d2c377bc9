"""Helpers of the embedding tests: demo customer messages and an encoder that counts its work."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np

from prodloop.demo import generate_scenario
from prodloop.embeddings import Encoder

END = datetime(2025, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Message:
    day: int
    intent: str
    input: str
    output: str


@lru_cache(maxsize=4)
def demo_messages(traces_per_day: int = 40, seed: int = 7) -> tuple[Message, ...]:
    """The demo's customer messages and answers over 30 days (the Acme Vault launches on day 20), with
    the intent each was generated from, which the store never sees."""
    scenario = generate_scenario(seed=seed, days=30, traces_per_day=traces_per_day, end=END)
    stored = [ticket for ticket in scenario.tickets if not ticket.lost]  # one per trace, in order
    return tuple(
        Message(ticket.day, ticket.intent, str(item.trace.input), str(item.trace.output))
        for ticket, item in zip(stored, scenario.traces, strict=True)
    )


class CountingEncoder:
    """Wraps an encoder: counts the texts it is asked to encode, can wait at a barrier before encoding
    (to make two callers encode at once), and can claim another model id."""

    def __init__(self, inner: Encoder, model_id: str | None = None, barrier: threading.Barrier | None = None):
        self.inner = inner
        self._model_id = model_id or inner.model_id
        self.barrier = barrier
        self.calls = 0
        self.texts: list[str] = []
        self.guard = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        with self.guard:
            self.calls += 1
            self.texts.extend(texts)
        if self.barrier is not None:
            self.barrier.wait(timeout=60)
        return self.inner.encode(texts, batch_size=batch_size)


class HashEncoder:
    """A stand-in encoder for tests about storage, not meaning: each text's vector is random but fixed
    by the text. It can wait at a barrier (threads' or processes') before it answers."""

    def __init__(
        self, model_id: str = "hash-encoder@000000000000", dimension: int = 16, barrier: object = None
    ):
        self.model_id = model_id
        self.dimension = dimension
        self.barrier = barrier
        self.calls = 0

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        import hashlib

        self.calls += 1
        if self.barrier is not None:
            self.barrier.wait(60)  # type: ignore[attr-defined]
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            row = np.random.default_rng(seed).normal(size=self.dimension)
            rows.append(row / np.linalg.norm(row))
        return np.array(rows, dtype=np.float32).reshape(len(texts), self.dimension)
