"""Dawid-Skene: prodloop against crowd-kit's ``DawidSkene`` on the same data, in one run.

The data are those of ``agreement.py``: ``--items`` items (default 100,000) with a true class out of
``--categories`` (default 5), rated by ``--annotators`` annotators (default 5, accuracy 90% down to
70%), ``--missing`` (default 20%) of the ratings removed at random. prodloop takes the reliability
matrix (annotators x items, NaN = missing); crowd-kit takes the same ratings as a long pandas
DataFrame with columns ``task``, ``worker``, ``label``, built once beforehand (its build time is
printed but not part of the comparison).

Two Dawid-Skene measurements, each run once untimed and then ``--repeat`` times timed, alternating:

- **to convergence**: both with at most ``--max-iter`` iterations (default 100) and their own default
  stopping rule: prodloop stops when the observed-data log-likelihood per rating rises by less than
  1e-6, crowd-kit when its evidence lower bound per rating rises by less than 1e-5, so they may stop
  at different iterations; ``n_iter`` of each is reported.
- **fixed iterations**: both run exactly ``--fixed-iter`` iterations (default 20; the tolerance of
  both is -inf), the same work step for step, so the time per iteration compares like with like and
  the posteriors should agree to rounding (their largest difference is reported).

For each: median and best times, the ratio crowd-kit / prodloop of the medians, and the share of items
where the two give the same label (over the items that have a rating; crowd-kit does not see the
others). The exit status is 1 when a share is below ``--min-agreement`` (0.999). As a side figure,
majority vote: ``prodloop.annotation.majority_vote`` against crowd-kit's ``MajorityVote`` (ties may
go to different labels; the share is printed but not checked). Results go to
``benchmarks/results/aggregation.json``.

    .venv/bin/python benchmarks/aggregation.py
    .venv/bin/python benchmarks/aggregation.py --repeat 5 --fixed-iter 50
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import harness
import numpy as np
import pandas as pd
from agreement import add_data_options, simulated_ratings, summary, timed
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@contextlib.contextmanager
def quiet_pandas() -> Iterator[None]:
    """crowd-kit 1.4 calls pandas APIs that pandas 3 deprecates (``inplace=``, ``copy=``); each call
    warns. The warnings say nothing about the figures, so they are hidden around crowd-kit's calls."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def long_format(ratings: FloatArray) -> pd.DataFrame:
    """The ratings as crowd-kit takes them: one row per rating, columns task, worker, label."""
    annotator, item = np.nonzero(~np.isnan(ratings))
    return pd.DataFrame(
        {"task": item, "worker": annotator, "label": ratings[annotator, item].astype(np.int64)}
    )


def _crowdkit_labels(labels: pd.Series) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``(items, labels)`` of a crowd-kit ``labels_`` series indexed by task."""
    return labels.index.to_numpy(dtype=np.int64), labels.to_numpy(dtype=np.int64)


def measure_dawid_skene(
    ratings: FloatArray,
    frame: pd.DataFrame,
    n_categories: int,
    max_iter: int,
    tol: float | None,
    repeat: int,
) -> dict[str, Any]:
    """Both Dawid-Skenes, at most ``max_iter`` iterations; ``tol`` None: each its default rule."""
    from crowdkit.aggregation import DawidSkene

    from prodloop.annotation import dawid_skene

    options: dict[str, Any] = {} if tol is None else {"tol": tol}

    def crowdkit() -> Any:
        with quiet_pandas():
            return DawidSkene(n_iter=max_iter, **options).fit(frame)

    times, fitted = timed(
        {
            "prodloop": lambda: dawid_skene(ratings, n_categories, max_iter=max_iter, **options),
            "crowdkit": crowdkit,
        },
        repeat,
    )
    ours, theirs = fitted["prodloop"], fitted["crowdkit"]
    items, labels = _crowdkit_labels(theirs.labels_)
    probas = theirs.probas_.reindex(columns=range(n_categories), fill_value=0.0)
    posterior_diff = float(np.abs(ours.posteriors[probas.index.to_numpy()] - probas.to_numpy()).max())
    prodloop, reference = summary(times["prodloop"]), summary(times["crowdkit"])
    return {
        "max_iter": max_iter,
        "tol": "each its default" if tol is None else tol,
        "n_iter_prodloop": ours.n_iter,
        "n_iter_crowdkit": len(theirs.loss_history_),
        "items_compared": int(items.size),
        "same_label_share": float((ours.labels[items] == labels).mean()),
        "max_posterior_diff": posterior_diff,
        "prodloop": prodloop,
        "crowdkit": reference,
        "ratio": reference["median_s"] / prodloop["median_s"],
    }


def measure_majority_vote(
    ratings: FloatArray, frame: pd.DataFrame, n_categories: int, repeat: int
) -> dict[str, Any]:
    from crowdkit.aggregation import MajorityVote

    from prodloop.annotation import majority_vote

    def crowdkit() -> Any:
        with quiet_pandas():
            return MajorityVote().fit(frame)

    times, fitted = timed(
        {"prodloop": lambda: majority_vote(ratings, n_categories), "crowdkit": crowdkit}, repeat
    )
    ours = fitted["prodloop"]
    items, labels = _crowdkit_labels(fitted["crowdkit"].labels_)
    same = ours.labels[items] == labels
    untied = ~ours.tied[items]
    prodloop, reference = summary(times["prodloop"]), summary(times["crowdkit"])
    return {
        "items_compared": int(items.size),
        "same_label_share": float(same.mean()),
        "same_label_share_untied": float(same[untied].mean()),
        "tied_share": float((~untied).mean()),
        "prodloop": prodloop,
        "crowdkit": reference,
        "ratio": reference["median_s"] / prodloop["median_s"],
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    lines = [
        f"{'run':<26} {'n_iter p/ck':>11} {'prodloop med/best':>21} {'crowd-kit med/best':>21} "
        f"{'ratio':>7} {'same label':>11}"
    ]
    for name, r in rows:
        p, c = r["prodloop"], r["crowdkit"]
        n_iter = f"{r['n_iter_prodloop']}/{r['n_iter_crowdkit']}" if "n_iter_prodloop" in r else "-"
        lines.append(
            f"{name:<26} {n_iter:>11} {_ms(p['median_s']) + ' / ' + _ms(p['best_s']):>21} "
            f"{_ms(c['median_s']) + ' / ' + _ms(c['best_s']):>21} {r['ratio']:>6.1f}x "
            f"{r['same_label_share']:>10.4%}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_options(parser)
    parser.add_argument("--repeat", type=int, default=3, help="Timed runs of each function per measurement.")
    parser.add_argument(
        "--max-iter", type=int, default=100, help="Most EM iterations of both in the run to convergence."
    )
    parser.add_argument(
        "--fixed-iter", type=int, default=20, help="EM iterations of both in the fixed run (0: skip it)."
    )
    parser.add_argument("--skip-majority", action="store_true", help="Do not time majority vote.")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.999,
        help="Fail when the two Dawid-Skenes give the same label to a smaller share of items.",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30,
        help="Before measuring, wait up to this many seconds for other work on the machine to stop.",
    )
    parser.add_argument("--output", default="aggregation.json", help="File name under benchmarks/results/.")
    args = parser.parse_args(argv)
    if args.categories < 2 or args.annotators < 2 or args.repeat < 1 or not 0 <= args.missing < 1:
        parser.error("need --categories >= 2, --annotators >= 2, --repeat >= 1 and 0 <= --missing < 1")
    if args.max_iter < 1 or args.fixed_iter < 0:
        parser.error("need --max-iter >= 1 and --fixed-iter >= 0")

    harness.log(
        f"simulating {args.items:,} items x {args.annotators} annotators, {args.categories} classes, "
        f"{args.missing:.0%} missing (seed {args.seed})"
    )
    ratings, truth = simulated_ratings(args.items, args.annotators, args.categories, args.missing, args.seed)
    t0 = time.perf_counter()
    frame = long_format(ratings)
    frame_s = time.perf_counter() - t0
    harness.log(f"long-format DataFrame for crowd-kit: {len(frame):,} rows in {_ms(frame_s)}")
    busy = harness.wait_for_quiet(args.quiet_wait)

    rows: list[tuple[str, dict[str, Any]]] = []
    harness.log(f"Dawid-Skene to convergence (max {args.max_iter}): 1 warm-up + {args.repeat} timed runs")
    converged = measure_dawid_skene(ratings, frame, args.categories, args.max_iter, None, args.repeat)
    rows.append(("Dawid-Skene, converged", converged))
    if args.fixed_iter:
        harness.log(f"Dawid-Skene, {args.fixed_iter} iterations: 1 warm-up + {args.repeat} timed runs")
        fixed = measure_dawid_skene(ratings, frame, args.categories, args.fixed_iter, -np.inf, args.repeat)
        rows.append((f"Dawid-Skene, {args.fixed_iter} iterations", fixed))
    majority = None
    if not args.skip_majority:
        harness.log(f"majority vote: 1 warm-up + {args.repeat} timed runs")
        majority = measure_majority_vote(ratings, frame, args.categories, args.repeat)
        rows.append(("majority vote (side)", majority))

    from prodloop.annotation import dawid_skene

    accuracy = float((dawid_skene(ratings, args.categories).labels == truth).mean())
    print()
    print(_table(rows))
    print(f"crowd-kit's DataFrame took {_ms(frame_s)} to build (not timed above)")
    for name, r in rows[: 2 if args.fixed_iter else 1]:
        print(f"{name}: largest posterior difference {r['max_posterior_diff']:.1e}")
    if majority:
        print(
            f"majority vote: {majority['tied_share']:.2%} of items tied; same label on "
            f"{majority['same_label_share_untied']:.4%} of the untied ones"
        )
    print(f"prodloop Dawid-Skene labels match the simulated truth on {accuracy:.2%} of items")
    failed = [
        name for name, r in rows if "n_iter_prodloop" in r and r["same_label_share"] < args.min_agreement
    ]
    for name in failed:
        print(f"FAILED {name}: the same label on fewer than {args.min_agreement:.1%} of items")
    document = {
        "benchmark": "aggregation",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": harness.machine(),
        "revision": harness.revision(),
        "busy_cpus_before": busy,
        "settings": {
            "items": args.items,
            "annotators": args.annotators,
            "categories": args.categories,
            "missing": args.missing,
            "seed": args.seed,
            "repeat": args.repeat,
            "max_iter": args.max_iter,
            "fixed_iter": args.fixed_iter,
            "min_agreement": args.min_agreement,
        },
        "dataframe_build_s": frame_s,
        "dawid_skene_truth_accuracy": accuracy,
        "results": {name: r for name, r in rows},
    }
    path = harness.write_results(args.output, document)
    print(f"results written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
