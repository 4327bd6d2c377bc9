"""Eval coverage: nearest-neighbour distances against scikit-learn, the conformal radius, clusters of
uncovered traffic, their trend, and the store-level report on real traces, snapshots and embeddings."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from pydantic import ValidationError as PydanticValidationError
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from prodloop.annotation import (
    ItemIn,
    QueueSettings,
    add_items,
    create_queue,
    lease_next_item,
    register_annotator,
    save_schema,
    submit_label,
)
from prodloop.capture import TraceIn, ingest_traces
from prodloop.datasets import snapshot_queue
from prodloop.demo.catalog import TOPICS, Topic
from prodloop.demo.conversation import customer_message
from prodloop.demo.launch import VAULT_TOPICS
from prodloop.demo.slots import Slots
from prodloop.errors import NotFound, ValidationFailed
from prodloop.monitoring.coverage import (
    CoverageArguments,
    coverage_findings,
    coverage_gap,
    default_radius,
    eval_coverage,
    mean_pairwise_distance,
    nearest_eval_distances,
    send_cluster_to_queue,
)
from prodloop.server.auth import ensure_project
from prodloop.store.schema import queue_items
from tests.datasets.support import SCHEMA

DAY_NS = 86_400 * 10**9
START = datetime(2026, 3, 1, tzinfo=UTC)


def _circle(degrees: list[float]) -> np.ndarray:
    radians = np.radians(degrees)
    return np.column_stack([np.cos(radians), np.sin(radians)])


def _blobs(rng: np.random.Generator, centers: np.ndarray, counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Points around each center (noise 0.1 per dimension), and the blob of each point."""
    which = np.repeat(np.arange(len(counts)), counts)
    return centers[which] + rng.normal(scale=0.1, size=(len(which), centers.shape[1])), which


def _centers(rng: np.random.Generator, k: int, dims: int = 32) -> np.ndarray:
    return np.linalg.qr(rng.normal(size=(dims, k)))[0].T * 1.0


# --------------------------------------------------------------------------------------------------
# Nearest neighbours


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("block_elements", [7, 1000, 1 << 22])
def test_nearest_distances_equal_scikit_learn(dtype: type, block_elements: int) -> None:
    rng = np.random.default_rng(3)
    production = rng.normal(size=(301, 24)).astype(dtype)
    eval_set = rng.normal(size=(57, 24)).astype(dtype)
    distances, nearest = nearest_eval_distances(production, eval_set, block_elements=block_elements)
    reference = NearestNeighbors(n_neighbors=1, metric="cosine", algorithm="brute").fit(eval_set)
    ref_distances, ref_nearest = reference.kneighbors(production)
    tolerance = 1e-12 if dtype is np.float64 else 2e-6
    np.testing.assert_allclose(distances, ref_distances[:, 0], atol=tolerance)
    np.testing.assert_array_equal(nearest, ref_nearest[:, 0])


def test_vectors_of_two_models_or_no_direction_are_refused() -> None:
    with pytest.raises(ValidationFailed, match="same model"):
        nearest_eval_distances(np.ones((3, 4)), np.ones((2, 5)))
    with pytest.raises(ValidationFailed, match="all-zero"):
        nearest_eval_distances(np.zeros((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValidationFailed, match="no vectors"):
        nearest_eval_distances(np.ones((3, 4)), np.ones((0, 4)))


# --------------------------------------------------------------------------------------------------
# The radius


def test_default_radius_on_a_hand_example() -> None:
    """Eval examples at 0°, 10°, 30°, 60° and 100° on a circle: leave one out, each one's nearest
    neighbour is 10°, 10°, 20°, 30° and 40° away. With n = 5 and alpha = 0.05 the conformal rank
    ceil(6 * 0.95) = 6 is beyond n: the radius is the largest, 1 - cos 40°. With alpha = 0.5 it is the
    ceil(6 * 0.5) = 3rd smallest, 1 - cos 20°. A duplicate example changes nothing."""
    eval_set = _circle([0, 10, 30, 60, 100])
    assert default_radius(eval_set) == pytest.approx(1 - math.cos(math.radians(40)))
    assert default_radius(eval_set, alpha=0.5) == pytest.approx(1 - math.cos(math.radians(20)))
    doubled = np.vstack([eval_set, eval_set[2:3] * 3.0])  # the same direction, another length
    assert default_radius(doubled, alpha=0.5) == pytest.approx(1 - math.cos(math.radians(20)))
    with pytest.raises(ValidationFailed, match="give a radius"):
        default_radius(_circle([5, 5]))


def test_traffic_like_the_eval_set_is_uncovered_at_most_alpha_of_the_time() -> None:
    """The radius's promise: production drawn from the eval set's distribution falls outside it with
    probability at most alpha (and not far below: the radius is not vacuous)."""
    rng = np.random.default_rng(0)
    scales = np.linspace(0.2, 1.5, 16)
    shares = []
    for _ in range(30):
        eval_set = rng.normal(size=(100, 16)) * scales + 1.0
        production = rng.normal(size=(400, 16)) * scales + 1.0
        distances, _ = nearest_eval_distances(production, eval_set)
        shares.append(float((distances > default_radius(eval_set)).mean()))
    assert 0.03 < np.mean(shares) < 0.06


def test_mean_pairwise_distance_equals_the_pairwise_matrix() -> None:
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(40, 8)) + 0.5
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    pairwise = 1 - unit @ unit.T
    expected = pairwise[np.triu_indices(40, 1)].mean()
    assert mean_pairwise_distance(vectors) == pytest.approx(expected)
    assert mean_pairwise_distance(np.vstack([vectors, vectors[:5]])) == pytest.approx(expected)


# --------------------------------------------------------------------------------------------------
# Uncovered share and clusters


def test_a_blob_the_eval_set_misses_is_the_uncovered_share_and_its_cluster() -> None:
    """The eval set covers blobs A and B; production adds blob C (20% of it). With a radius between
    the blobs' own spread and their distance, exactly C is uncovered, as one cluster; with the default
    radius C is uncovered too, plus at most about 5% of A and B, whose stray points make their own
    small clusters apart from C."""
    rng = np.random.default_rng(1)
    centers = _centers(rng, 3)
    eval_set, _ = _blobs(rng, centers[:2], [150, 150])
    production, blob = _blobs(rng, centers, [400, 400, 200])
    texts = [f"{['order', 'refund', 'vault lock'][b]} question {i}" for i, b in enumerate(blob)]

    given = coverage_gap(production, eval_set, radius=0.35, texts=texts)
    assert given.uncovered_share == pytest.approx(0.2)
    assert given.radius_rule == {"rule": "given"}
    assert len(given.clusters) == 1
    (cluster,) = given.clusters
    assert sorted(cluster.members) == list(np.flatnonzero(blob == 2))
    assert cluster.share == pytest.approx(0.2)
    assert cluster.terms[:2] == ["lock", "vault"]
    assert cluster.label.startswith("lock, vault")

    report = coverage_gap(production, eval_set, texts=texts)
    assert report.radius_rule["rule"] == "conformal"
    assert 0.2 <= report.uncovered_share <= 0.2 + 0.05 * 0.8
    assert report.uncovered[blob == 2].all()
    labels = np.full(len(blob), -1)
    for found in report.clusters:
        labels[found.members] = found.id
    uncovered = report.uncovered
    assert adjusted_rand_score(blob[uncovered], labels[uncovered]) > 0.99
    largest = report.clusters[0]
    assert adjusted_rand_score(blob == 2, labels == largest.id) > 0.99
    assert largest.size == 200 and largest.label.startswith("lock, vault")


def test_clusters_rank_members_most_central_first_and_measure_their_distance() -> None:
    rng = np.random.default_rng(2)
    centers = _centers(rng, 3)
    eval_set, _ = _blobs(rng, centers[:2], [50, 50])
    production, _ = _blobs(rng, centers[2:], [60])
    report = coverage_gap(production, eval_set)
    (cluster,) = report.clusters
    unit = production / np.linalg.norm(production, axis=1, keepdims=True)
    mean = unit.mean(axis=0)
    similarity = unit[cluster.members] @ mean
    assert (np.diff(similarity) <= 1e-12).all()
    centroid = mean / np.linalg.norm(mean)
    eval_unit = eval_set / np.linalg.norm(eval_set, axis=1, keepdims=True)
    assert cluster.centroid_distance == pytest.approx(1 - (eval_unit @ centroid).max())
    assert cluster.mean_distance == pytest.approx(report.distances.mean())


def test_more_clusters_than_asked_leave_the_smallest_scattered() -> None:
    rng = np.random.default_rng(4)
    centers = _centers(rng, 5)
    eval_set, _ = _blobs(rng, centers[:2], [40, 40])
    production, _ = _blobs(rng, centers[1:], [50, 40, 30, 20])
    report = coverage_gap(production, eval_set, radius=0.35, max_clusters=2)
    assert [cluster.size for cluster in report.clusters] == [40, 30]
    summary = report.to_dict()
    assert summary["uncovered_share"] == pytest.approx(90 / 140)
    assert summary["scattered_share"] == pytest.approx(20 / 140)


def test_trend_per_day() -> None:
    """Day 1: 10 inputs, none uncovered; day 2: 10, 2 uncovered; day 3: 20, 10 uncovered. The cluster's
    daily share grows: 0, 0.2, 0.5 (least-squares slope 0.25 a day)."""
    rng = np.random.default_rng(6)
    centers = _centers(rng, 3)
    eval_set, _ = _blobs(rng, centers[:2], [30, 30])
    new = [0] * 10 + [0] * 8 + [1] * 2 + [0] * 10 + [1] * 10
    covered, _ = _blobs(rng, centers[:1], [new.count(0)])
    fresh, _ = _blobs(rng, centers[2:], [new.count(1)])
    pools = iter(covered), iter(fresh)
    production = np.array([next(pools[k]) for k in new])
    days = [0] * 10 + [1] * 10 + [2] * 20
    stamps = [START + timedelta(days=d, hours=3 + i % 12) for i, d in enumerate(days)]
    ids = [f"{i + 1:032x}" for i in range(len(days))]
    report = coverage_gap(production, eval_set, radius=0.35, timestamps=stamps, ids=ids)
    assert [(d["date"], d["n"], d["uncovered"]) for d in report.daily] == [
        ("2026-03-01", 10, 0),
        ("2026-03-02", 10, 2),
        ("2026-03-03", 20, 10),
    ]
    assert [d["covered_share"] for d in report.daily] == [1.0, 0.8, 0.5]
    (cluster,) = report.clusters
    assert [(d["date"], d["count"]) for d in cluster.daily] == [
        ("2026-03-01", 0),
        ("2026-03-02", 2),
        ("2026-03-03", 10),
    ]
    assert cluster.growth == pytest.approx(0.25)
    as_dict = report.to_dict()["clusters"][0]
    assert set(as_dict["trace_ids"]) == {ids[i] for i in np.flatnonzero(np.asarray(new) == 1)}
    assert as_dict["strata"] == {ids[i]: ("2026-03-02" if i < 20 else "2026-03-03") for i in cluster.members}
    # The same instants as nanoseconds since the epoch give the same days.
    in_ns = [round(s.timestamp() * 1e9) for s in stamps]
    assert coverage_gap(production, eval_set, radius=0.35, timestamps=in_ns).daily == report.daily


def test_check_arguments_take_a_snapshot_and_refuse_impossible_values() -> None:
    arguments = CoverageArguments(snapshot="support-eval")
    assert (arguments.field, arguments.radius, arguments.max_clusters, arguments.min_share) == (
        "input",
        None,
        8,
        0.05,
    )
    for wrong in ({"radius": 2.5}, {"field": "context"}, {"max_clusters": 0}, {"min_share": 0}, {"k": 1}):
        with pytest.raises(PydanticValidationError):
            CoverageArguments(snapshot="support-eval", **wrong)


def test_everything_covered_gives_no_cluster() -> None:
    rng = np.random.default_rng(7)
    centers = _centers(rng, 1)
    eval_set, _ = _blobs(rng, centers, [50])
    production, _ = _blobs(rng, centers, [30])
    report = coverage_gap(production, eval_set, radius=1.0)
    assert report.uncovered_share == 0 and report.clusters == []
    assert report.to_dict()["clusters"] == []


# --------------------------------------------------------------------------------------------------
# On the store: demo support traffic, a labelled eval snapshot, the Acme Vault launch


class WordsEncoder:
    """A deterministic stand-in for the model: each word (but stop words) gets a fixed random direction
    and a text is the sum of its words', so texts that share words are near. Counts what it encodes."""

    model_id = "test-words@1"
    dimension = 256

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        self.encoded += len(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in set(re.findall(r"[a-z]+", text.lower())) - ENGLISH_STOP_WORDS:
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
                out[row] += np.random.default_rng(seed).normal(size=self.dimension)
        out += 1e-6  # no all-zero rows
        return out / np.linalg.norm(out, axis=1, keepdims=True)


#: Production traffic per day of the window, and how many of those requests are about the Vault.
PER_DAY = 20
VAULT_PER_DAY = [2, 5, 8, 11, 14]
FEATURE = "support-assistant"


def _messages(topics: tuple[Topic, ...], n: int, rng: random.Random) -> list[str]:
    return [customer_message(topic, Slots(rng), rng) for topic in rng.choices(topics, k=n)]


@dataclass
class Store:
    engine: sa.Engine
    pid: int
    production: list[TraceIn]
    vault: set[str]


def _trace(number: int, text: str, at: datetime) -> TraceIn:
    return TraceIn.model_validate(
        {
            "trace_id": f"{number:032x}",
            "feature": FEATURE,
            "input": text,
            "output": "Happy to help.",
            "start_time": at,
            "duration_ms": 900,
        }
    )


def _store(engine: sa.Engine, n_eval: int = 100) -> Store:
    """``n_eval`` pre-launch requests labelled by one annotator and snapshot as ``support-eval``; then
    five days of production (20 requests a day from 2026-03-01) in which the Vault grows from 2 to 14."""
    rng = random.Random(11)
    pid = ensure_project(engine, "acme")
    eval_traces = [
        _trace(n + 1, text, START - timedelta(days=20, minutes=-n))
        for n, text in enumerate(_messages(TOPICS, n_eval, rng))
    ]
    production: list[TraceIn] = []
    vault: set[str] = set()
    for day, n_vault in enumerate(VAULT_PER_DAY):
        texts = _messages(VAULT_TOPICS, n_vault, rng) + _messages(TOPICS, PER_DAY - n_vault, rng)
        for n, text in enumerate(texts):
            trace = _trace(10_000 + len(production), text, START + timedelta(days=day, minutes=30 * n))
            production.append(trace)
            if n < n_vault:
                vault.add(str(trace.trace_id))
    ingest_traces(engine, pid, [*eval_traces, *production])
    save_schema(engine, pid, SCHEMA)
    create_queue(engine, pid, QueueSettings(name="eval-intents", schema="support-intent@1"))
    add_items(engine, pid, "eval-intents", [ItemIn(trace_id=t.trace_id) for t in eval_traces])
    alice = register_annotator(engine, pid, "alice")
    while (leased := lease_next_item(engine, pid, "eval-intents", alice.id)) is not None:
        submit_label(engine, pid, leased["item"]["id"], alice.id, {"intent": "other"})
    snapshot_queue(engine, pid, "eval-intents", "support-eval")
    return Store(engine, pid, production, vault)


def test_store_report_finds_the_cluster_and_sends_it_to_a_queue(engine: sa.Engine) -> None:
    store = _store(engine)
    encoder = WordsEncoder()
    window = {"since": START, "until": START + timedelta(days=5)}
    report = eval_coverage(engine, store.pid, FEATURE, "support-eval", **window, encoder=encoder)
    assert report["n_production"] == 100 and report["n_eval"] == 100
    assert report["snapshot"]["name"] == "support-eval" and report["model"] == "test-words@1"
    assert report["missing"] == {"production": 0, "eval": 0}
    assert [day["n"] for day in report["daily"]] == [PER_DAY] * 5
    largest = report["clusters"][0]
    members = set(largest["trace_ids"])
    assert len(members & store.vault) >= 0.9 * len(members)
    assert "vault" in largest["terms"][:3]
    assert largest["growth"] > 0
    assert largest["daily"][-1]["count"] > largest["daily"][0]["count"]
    assert json.loads(json.dumps(report)) == report  # JSON-ready as it is

    # Vectors are cached: a second report encodes nothing, and without computing sees them all.
    seen = encoder.encoded
    again = eval_coverage(
        engine, store.pid, FEATURE, "support-eval", **window, encoder=encoder, compute=False
    )
    assert encoder.encoded == seen
    assert again["clusters"][0]["trace_ids"] == largest["trace_ids"]

    findings = coverage_findings(report)
    vault_finding = next(f for f in findings if "vault" in f.key)
    assert vault_finding.key.startswith("coverage:input:")
    assert vault_finding.title.startswith(f"{largest['share']:.1%} of traffic (")
    assert "far from every eval example of 'support-eval'" in vault_finding.title
    assert vault_finding.slice["trace_ids"][:5] == [e["trace_id"] for e in largest["examples"]]
    assert set(vault_finding.slice["strata"].values()) <= {f"2026-03-0{d}" for d in range(1, 6)}
    assert all(f.detail["share"] >= 0.05 for f in findings)

    growth = create_queue(engine, store.pid, QueueSettings(name="eval-growth", schema="support-intent@1"))
    sent = send_cluster_to_queue(engine, store.pid, report, "eval-growth", items=10)
    assert sent["added"] == 10 and sent["queue"] == "eval-growth"
    assert len(sent["strata"]) >= 3  # sampled across the days of the window
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(queue_items.c.trace_id, queue_items.c.source).where(
                queue_items.c.queue_id == growth["id"]
            )
        ).all()
    assert {row.source for row in rows} == {"coverage"}
    assert {row.trace_id for row in rows} <= members
    again_sent = send_cluster_to_queue(engine, store.pid, largest, "eval-growth", items=10)
    assert again_sent["skipped"] >= 1  # traces already in the queue are not added twice


def test_snapshot_names_windows_and_fields(engine: sa.Engine) -> None:
    store = _store(engine, n_eval=30)
    encoder = WordsEncoder()
    day_two = {"since": START + timedelta(days=1), "until": START + timedelta(days=2)}
    report = eval_coverage(engine, store.pid, FEATURE, "support-eval", **day_two, encoder=encoder)
    assert report["n_production"] == PER_DAY and [d["date"] for d in report["daily"]] == ["2026-03-02"]
    by_id = eval_coverage(
        engine, store.pid, FEATURE, report["snapshot"]["id"][:10], **day_two, encoder=encoder
    )
    assert by_id["uncovered_share"] == report["uncovered_share"]
    outputs = eval_coverage(
        engine, store.pid, FEATURE, "support-eval", **day_two, field="output", radius=0.1, encoder=encoder
    )
    assert outputs["uncovered_share"] == 0  # every answer is "Happy to help."
    with pytest.raises(NotFound, match="no snapshot is named 'nope'"):
        eval_coverage(engine, store.pid, FEATURE, "nope", **day_two, encoder=encoder)
    with pytest.raises(ValidationFailed, match="field must be one of"):
        eval_coverage(engine, store.pid, FEATURE, "support-eval", **day_two, field="context", encoder=encoder)
    empty = eval_coverage(engine, store.pid, "other-feature", "support-eval", **day_two, encoder=encoder)
    assert empty["n_production"] == 0 and empty["clusters"] == [] and coverage_findings(empty) == []


class MemoEncoder:
    """The real model, remembering what it encoded so that the second backend's store, whose cache
    starts empty, does not wait for the model again."""

    def __init__(self) -> None:
        from prodloop.embeddings import get_encoder

        self.model = get_encoder()
        self.model_id = self.model.model_id
        self.dimension = self.model.dimension
        self.known: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        new = [text for text in dict.fromkeys(texts) if text not in self.known]
        if new:
            self.known.update(zip(new, self.model.encode(new, batch_size=batch_size), strict=True))
        return np.stack([self.known[text] for text in texts])


@pytest.fixture(scope="module")
def minilm() -> MemoEncoder:
    from prodloop.embeddings import embeddings_available

    if not embeddings_available():
        pytest.skip("the real model needs the [embeddings] extra")
    return MemoEncoder()


def test_the_real_model_finds_the_vault_launch(engine: sa.Engine, minilm: MemoEncoder) -> None:
    """all-MiniLM-L6-v2 on 200 demo messages: 100 pre-launch requests make the eval set; five days of
    production add the Acme Vault, growing from 10% to 70% of a day's requests. The report's largest
    cluster is the Vault, it grows, and it becomes a finding; familiar requests stay covered."""
    store = _store(engine)
    window = {"since": START, "until": START + timedelta(days=5)}
    report = eval_coverage(engine, store.pid, FEATURE, "support-eval", **window, encoder=minilm)
    assert report["model"].startswith("all-MiniLM-L6-v2@")
    largest = report["clusters"][0]
    members = set(largest["trace_ids"])
    assert len(members & store.vault) >= 0.9 * len(members) and len(members) >= 0.5 * len(store.vault)
    assert largest["terms"][0] == "vault"
    assert largest["growth"] > 0
    uncovered = {t for c in report["clusters"] for t in c["trace_ids"]}
    familiar = {str(t.trace_id) for t in store.production} - store.vault
    assert len(uncovered & familiar) <= 0.1 * len(familiar)
    (finding,) = [f for f in coverage_findings(report) if "vault" in f.key]
    assert finding.severity == "critical"  # more than 20% of the traffic
