"""Embedding drift on real texts, embedding time included, on the CPU, against the model alone.

The texts are the demo's customer messages (``prodloop.demo``, seed 7): ``--texts`` (default 5,000)
from the weeks before the Acme Vault launch as the reference, as many from the days after it as the
current side. Short texts, as support messages are (about 20 tokens).

In one run, alternating so that other work on the machine skews both alike:

1. **model alone**: ``SentenceTransformer.encode`` on all the texts, called as a user would
   (default batch size, normalised vectors), with nothing around it;
2. **prodloop, cold**: into a new SQLite store, ``embed_texts`` for each side (hash the texts, look
   them up, encode the missing ones, store them), then ``embedding_drift`` (MMD with
   ``--permutations`` permutations, the cross-validated domain classifier, distances, driving rows and
   clusters with their example texts);
3. the model alone again; its time is the mean of steps 1 and 3;
4. **prodloop, warm**: the same again, now that every vector is cached: what a monitor's next run
   costs.

Reported: texts per second of step 2 (both sides over its wall time), the model's rate, and the
share of step 2's time spent outside the model, two ways: against the model-alone runs
(``1 - model alone / prodloop``), and from the encoder's own clock (the time inside the tokenizer and
the forward passes, measured during step 2). The target is under 10%. The demo's messages repeat
(greetings, templates): the store encodes each distinct text once, so step 2 encodes fewer texts than
step 1; the encoder's rate on the distinct texts it encoded is printed too, and the seconds outside
the model split into the encoder's own work around the model, hashing + lookups + stores, and drift.
Figures go to ``benchmarks/results/embedding_drift.json``.

    .venv/bin/python benchmarks/embedding_drift.py
    .venv/bin/python benchmarks/embedding_drift.py --texts 1000 --permutations 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import numpy as np

from prodloop.demo import generate_scenario, launch_day
from prodloop.embeddings import embed_texts, get_encoder
from prodloop.monitoring.embedding_drift import embedding_drift
from prodloop.server.auth import ensure_project
from prodloop.store import create_store_engine, upgrade

END = datetime(2025, 3, 1, tzinfo=UTC)
DAYS = 30


def demo_texts(per_side: int) -> tuple[list[str], list[str], list[bool]]:
    """Customer messages before and after the launch, and which current ones are about the new product."""
    launch = launch_day(DAYS)
    per_day = max(100, int(per_side / (DAYS - launch) * 1.3))
    scenario = generate_scenario(seed=7, days=DAYS, traces_per_day=per_day, end=END)
    stored = [t for t in scenario.tickets if not t.lost]
    rows = [(t.day, t.intent, str(item.trace.input)) for t, item in zip(stored, scenario.traces, strict=True)]
    before = [text for day, _, text in rows if day < launch - 1][:per_side]
    after = [(text, intent == "acme_vault") for day, intent, text in rows if day >= launch][:per_side]
    if len(before) < per_side or len(after) < per_side:
        raise SystemExit(f"the demo gave {len(before)} and {len(after)} texts; ask for fewer")
    return before, [t for t, _ in after], [v for _, v in after]


def model_alone(texts: list[str]) -> float:
    model = get_encoder().sentence_transformer()
    started = time.perf_counter()
    model.encode(texts, normalize_embeddings=True)
    return time.perf_counter() - started


def prodloop_run(
    directory: Path, reference: list[str], current: list[str], permutations: int, engine: Any = None
) -> dict[str, Any]:
    """Embed both sides through the store, then compare them; the store is made if not given."""
    encoder = get_encoder()
    if engine is None:
        engine = create_store_engine(f"sqlite:///{directory / 'prodloop.db'}")
        upgrade(engine)
    project = ensure_project(engine, "bench")
    model0, encode0, texts0 = encoder.stats.model_seconds, encoder.stats.encode_seconds, encoder.stats.texts
    started = time.perf_counter()
    ref_vectors = embed_texts(engine, project, reference)
    cur_vectors = embed_texts(engine, project, current)
    embedded = time.perf_counter()
    result = embedding_drift(ref_vectors, cur_vectors, n_permutations=permutations, texts=current)
    finished = time.perf_counter()
    return {
        "engine": engine,
        "result": result,
        "seconds": finished - started,
        "embed_seconds": embedded - started,
        "drift_seconds": finished - embedded,
        "model_seconds": encoder.stats.model_seconds - model0,
        "encode_seconds": encoder.stats.encode_seconds - encode0,
        "encoded": encoder.stats.texts - texts0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=5000, help="texts per side (default 5,000)")
    parser.add_argument("--permutations", type=int, default=500, help="MMD permutations (default 500)")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="seconds to wait for a quiet machine")
    args = parser.parse_args()

    reference, current, about_vault = demo_texts(args.texts)
    texts = reference + current
    encoder = get_encoder()
    harness.log(f"{len(reference)} + {len(current)} texts; warming up the model ({encoder.model_id})")
    encoder.encode(texts[:64])
    encoder.sentence_transformer().encode(texts[:64])
    busy = harness.wait_for_quiet(args.quiet_wait)
    load_before = harness.load_average()

    with tempfile.TemporaryDirectory() as tmp:
        alone_1 = model_alone(texts)
        harness.log(f"model alone: {alone_1:.1f} s")
        cold = prodloop_run(Path(tmp), reference, current, args.permutations)
        harness.log(f"prodloop, cold store: {cold['seconds']:.1f} s")
        alone_2 = model_alone(texts)
        harness.log(f"model alone again: {alone_2:.1f} s")
        warm = prodloop_run(Path(tmp), reference, current, args.permutations, engine=cold["engine"])
        harness.log(f"prodloop, warm store: {warm['seconds']:.1f} s")
        cold["engine"].dispose()

    alone = (alone_1 + alone_2) / 2
    n = len(texts)
    result = cold["result"]
    drivers = result.driving_rows(100)
    figures = {
        "benchmark": "embedding_drift",
        "when": datetime.now(UTC).isoformat(),
        "revision": harness.revision(),
        "machine": harness.machine(),
        "load_average_before": load_before,
        "busy_cpus_before": busy,
        "load_average_after": harness.load_average(),
        "model": encoder.model_id,
        "torch_threads": encoder.threads,
        "texts_per_side": args.texts,
        "permutations": args.permutations,
        "model_alone_seconds": [round(alone_1, 3), round(alone_2, 3)],
        "model_alone_texts_per_second": round(n / alone, 1),
        "cold": {k: round(v, 3) for k, v in cold.items() if isinstance(v, float | int)},
        "warm": {k: round(v, 3) for k, v in warm.items() if isinstance(v, float | int)},
        "texts_per_second": round(n / cold["seconds"], 1),
        "share_outside_model_vs_model_alone": round(1 - alone / cold["seconds"], 4),
        "share_outside_model_by_encoder_clock": round(1 - cold["model_seconds"] / cold["seconds"], 4),
        "warm_texts_per_second": round(n / warm["seconds"], 1),
        "distinct_texts_encoded": cold["encoded"],
        "encoder_distinct_texts_per_second": round(cold["encoded"] / cold["encode_seconds"], 1),
        "outside_model_seconds": {
            "encoder_around_model": round(cold["encode_seconds"] - cold["model_seconds"], 3),
            "hash_lookup_store": round(cold["embed_seconds"] - cold["encode_seconds"], 3),
            "drift": round(cold["drift_seconds"], 3),
        },
        "drift": result.to_dict()
        | {
            "driving_rows": drivers[:10],
            "clusters": [{k: v for k, v in c.to_dict().items() if k != "rows"} for c in result.clusters],
        },
        "top_100_drivers_about_the_new_product": float(np.mean([about_vault[i] for i in drivers])),
    }
    path = harness.write_results("embedding_drift.json", figures)

    print()
    print(
        f"embedding drift, {args.texts:,} + {args.texts:,} demo texts, CPU ({encoder.threads} torch threads)"
    )
    print(f"  load average before/after: {load_before} / {figures['load_average_after']}")
    print(
        f"  model alone (SentenceTransformer.encode):  {figures['model_alone_texts_per_second']:>8} texts/s"
    )
    print(
        f"  prodloop, embed + drift, cold store:       {figures['texts_per_second']:>8} texts/s"
        f"  ({cold['seconds']:.1f} s: embed {cold['embed_seconds']:.1f}, drift {cold['drift_seconds']:.1f})"
    )
    print(
        f"  prodloop encoder, {cold['encoded']:,} distinct texts:  "
        f"{figures['encoder_distinct_texts_per_second']:>8} texts/s  (repeats are encoded once)"
    )
    outside = figures["outside_model_seconds"]
    print(
        f"  outside the model, seconds: encoder {outside['encoder_around_model']:.2f}, "
        f"hash + lookup + store {outside['hash_lookup_store']:.2f}, drift {outside['drift']:.2f}"
    )
    print(
        f"  prodloop, warm store (vectors cached):     {figures['warm_texts_per_second']:>8} texts/s"
        f"  ({warm['seconds']:.1f} s)"
    )
    print(
        f"  outside the model, against the model alone: {figures['share_outside_model_vs_model_alone']:.1%}"
    )
    print(
        f"  outside the model, by the encoder's clock:  {figures['share_outside_model_by_encoder_clock']:.1%}"
        "  (target < 10%)"
    )
    print(f"  verdict: {result.summary()}")
    print(f"  top 100 driving rows, new product: {figures['top_100_drivers_about_the_new_product']:.0%}")
    print(f"  figures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
