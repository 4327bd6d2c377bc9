"""Real embeddings: all-MiniLM-L6-v2 on the CPU, vectors cached in the store by model and text, computed
by background workers (``embed.traces`` jobs), never on the ingest path."""

from prodloop.embeddings.cache import (
    TraceVectors,
    cached_vectors,
    embed_texts,
    embed_traces,
    text_hash,
    trace_texts,
)
from prodloop.embeddings.encoder import (
    EmbeddingsUnavailable,
    Encoder,
    EncodeStats,
    MiniLMEncoder,
    default_model_id,
    embeddings_available,
    encode,
    get_encoder,
    model_fingerprint,
)
from prodloop.embeddings.jobs import enqueue_trace_embedding

__all__ = [
    "EmbeddingsUnavailable",
    "EncodeStats",
    "Encoder",
    "MiniLMEncoder",
    "TraceVectors",
    "cached_vectors",
    "default_model_id",
    "embed_texts",
    "embed_traces",
    "embeddings_available",
    "encode",
    "enqueue_trace_embedding",
    "get_encoder",
    "model_fingerprint",
    "text_hash",
    "trace_texts",
]
