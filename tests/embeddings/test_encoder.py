"""The real all-MiniLM-L6-v2 encoder: offline, deterministic, unit vectors, the model's own numbers."""

from __future__ import annotations

import importlib.util
import re
import socket
from pathlib import Path

import numpy as np
import pytest

from prodloop.embeddings import (
    EmbeddingsUnavailable,
    MiniLMEncoder,
    default_model_id,
    encode,
    get_encoder,
    model_fingerprint,
)
from prodloop.embeddings import encoder as encoder_module
from prodloop.embeddings import jobs as embedding_jobs
from prodloop.embeddings.encoder import DIMENSION
from tests.embeddings import demo_messages


def test_vectors_are_unit_length_float32_and_the_same_every_time() -> None:
    texts = ["Where is my order?", "My Acme Cam 2 keeps going offline.", "", "refund pls"]
    first = encode(texts)
    again = encode(list(reversed(texts)))[::-1]
    assert first.dtype == np.float32
    assert first.shape == (4, DIMENSION)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    # Another batch (other padding, other order) gives the same vectors.
    np.testing.assert_allclose(first, again, atol=1e-5)
    assert encode([]).shape == (0, DIMENSION)


def test_vectors_match_the_models_own_pipeline() -> None:
    """Tokenizing once, sorting by length and pooling by hand gives what SentenceTransformer.encode
    (mean pooling and normalisation modules of the model) gives."""
    texts = [m.input for m in demo_messages()[:80]] + ["x " * 400]  # one text beyond 256 tokens
    ours = get_encoder().encode(texts, batch_size=16)
    reference = get_encoder().sentence_transformer().encode(texts, batch_size=32, normalize_embeddings=True)
    np.testing.assert_allclose(ours, reference, atol=2e-5)


def test_similar_requests_are_closer_than_unrelated_ones() -> None:
    lost, forgot, weather, tracking = encode(
        [
            "I can't log in, I forgot my password.",
            "How do I reset my password? I'm locked out of my account.",
            "The weather in Lisbon is sunny and warm today.",
            "Where is my package? The tracking link hasn't changed in a week.",
        ]
    )
    assert lost @ forgot > 0.6
    assert lost @ forgot > lost @ weather + 0.4
    assert lost @ forgot > lost @ tracking + 0.2


def test_the_model_id_names_the_model_and_its_files() -> None:
    model_id = get_encoder().model_id
    assert re.fullmatch(r"all-MiniLM-L6-v2@[0-9a-f]{12}", model_id)
    assert default_model_id() == model_id  # known from the files, without loading the model


def test_the_fingerprint_changes_with_the_weights_not_with_the_model_card(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"\x01" * 1000)
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (tmp_path / "README.md").write_text("a model card")
    before = model_fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("a longer model card, edited")
    assert model_fingerprint(tmp_path) == before
    (tmp_path / "model.safetensors").write_bytes(b"\x01" * 999 + b"\x02")
    changed = model_fingerprint(tmp_path)
    assert changed != before
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert model_fingerprint(tmp_path) not in {before, changed}


def test_loading_and_encoding_touch_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    fresh = MiniLMEncoder()
    vectors = fresh.encode(["offline is fine"])
    assert attempts == []
    np.testing.assert_allclose(vectors, encode(["offline is fine"]), atol=1e-5)


def test_without_the_extra_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        return None if name == "sentence_transformers" else real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(encoder_module.importlib.util, "find_spec", find_spec)
    with pytest.raises(EmbeddingsUnavailable, match=r"pip install 'prodloop\[embeddings\]'") as caught:
        MiniLMEncoder()
    assert caught.value.detail == {"missing": ["sentence_transformers"]}
    assert embedding_jobs.register() is False  # a worker without the extra takes no embedding jobs


def test_stats_keep_the_time_inside_the_model_apart() -> None:
    fresh = MiniLMEncoder()
    fresh.encode([m.input for m in demo_messages()[:64]])
    stats = fresh.stats
    assert stats.texts == 64 and stats.batches == 1
    assert 0 < stats.model_seconds <= stats.encode_seconds
