"""Krippendorff's alpha: prodloop against the ``krippendorff`` package on the same data, in one run.

The data are simulated with a seeded generator: ``--items`` items (default 100,000), each with a true
class out of ``--categories`` (default 5, with skewed shares 1 : 1/2 : 1/3 ...), rated by
``--annotators`` annotators (default 5) whose accuracy runs evenly from 90% down to 70%; a wrong
answer lands on a neighbouring class more often than on a far one (weight 1 / distance). Then
``--missing`` (default 20%) of the ratings are removed at random. The reliability matrix
``ratings[annotator, item]`` holds the class codes 0, 1, ... and NaN where a rating is missing.

For each level of measurement (``--levels``, default nominal and interval) both
``prodloop.annotation.krippendorff_alpha(matrix, level)`` and
``krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)`` run once untimed and then
``--repeat`` times timed, alternating; the benchmark prints the median and best time of each, the
ratio krippendorff / prodloop of the medians, and the absolute difference of the two alphas. It exits
with status 1 when a difference exceeds ``--max-diff`` (1e-9). Results go to
``benchmarks/results/agreement.json``.

    .venv/bin/python benchmarks/agreement.py
    .venv/bin/python benchmarks/agreement.py --levels nominal,ordinal,interval,ratio --repeat 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import harness
import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from prodloop.annotation import Level

T = TypeVar("T")
LEVELS = ("nominal", "ordinal", "interval", "ratio")


def simulated_ratings(
    n_items: int, n_annotators: int, n_categories: int, missing: float, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``(ratings, truth)``: a reliability matrix (annotators x items, NaN = missing) and each item's
    true class, drawn as the module docstring describes."""
    rng = np.random.default_rng(seed)
    shares = 1.0 / np.arange(1, n_categories + 1)
    truth = rng.choice(n_categories, size=n_items, p=shares / shares.sum())
    accuracy = np.linspace(0.9, 0.7, n_annotators)
    classes = np.arange(n_categories)
    distance = np.abs(classes[:, None] - classes[None, :])
    wrong = np.where(distance > 0, 1.0 / np.maximum(distance, 1), 0.0)
    cumulative = np.cumsum(wrong / wrong.sum(axis=1, keepdims=True), axis=1)[truth]
    ratings = np.empty((n_annotators, n_items))
    for annotator in range(n_annotators):
        correct = rng.random(n_items) < accuracy[annotator]
        # Inverse-CDF draw of a wrong class from the row of the item's true class.
        mistaken = (rng.random(n_items)[:, None] > cumulative).sum(axis=1)
        ratings[annotator] = np.where(correct, truth, np.minimum(mistaken, n_categories - 1))
    ratings[rng.random(ratings.shape) < missing] = np.nan
    return ratings, truth.astype(np.int64)


def timed(functions: dict[str, Callable[[], T]], repeat: int) -> tuple[dict[str, list[float]], dict[str, T]]:
    """Call each function once untimed (warm-up), then ``repeat`` times timed, the functions taking
    turns so that a slow spell of the machine hits all of them. Returns the times and the results of
    the warm-up calls."""
    results = {name: function() for name, function in functions.items()}
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeat):
        for name, function in functions.items():
            t0 = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - t0)
    return times, results


def summary(times: list[float]) -> dict[str, Any]:
    """Median and best of a list of seconds, and the list itself."""
    return {"median_s": statistics.median(times), "best_s": min(times), "runs_s": times}


def measure_level(ratings: NDArray[np.float64], level: Level, repeat: int) -> dict[str, Any]:
    import krippendorff

    from prodloop.annotation import krippendorff_alpha

    times, alphas = timed(
        {
            "prodloop": lambda: krippendorff_alpha(ratings, level),
            "krippendorff": lambda: float(
                krippendorff.alpha(reliability_data=ratings, level_of_measurement=level)
            ),
        },
        repeat,
    )
    prodloop, reference = summary(times["prodloop"]), summary(times["krippendorff"])
    return {
        "level": level,
        "alpha_prodloop": alphas["prodloop"],
        "alpha_krippendorff": alphas["krippendorff"],
        "abs_diff": abs(alphas["prodloop"] - alphas["krippendorff"]),
        "prodloop": prodloop,
        "krippendorff": reference,
        "ratio": reference["median_s"] / prodloop["median_s"],
    }


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'level':<9} {'alpha':>10} {'|diff|':>9} {'prodloop med/best':>19} "
        f"{'krippendorff med/best':>23} {'ratio':>7}"
    ]
    for r in results:
        p, k = r["prodloop"], r["krippendorff"]
        lines.append(
            f"{r['level']:<9} {r['alpha_prodloop']:>10.6f} {r['abs_diff']:>9.1e} "
            f"{p['median_s'] * 1e3:>9.1f} / {p['best_s'] * 1e3:>4.0f} ms "
            f"{k['median_s'] * 1e3:>11.1f} / {k['best_s'] * 1e3:>4.0f} ms {r['ratio']:>6.1f}x"
        )
    return "\n".join(lines)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The options of the simulated ratings, shared with ``aggregation.py``."""
    parser.add_argument("--items", type=int, default=100_000, help="Items (columns of the matrix).")
    parser.add_argument("--annotators", type=int, default=5, help="Annotators (rows of the matrix).")
    parser.add_argument("--categories", type=int, default=5, help="Classes, coded 0 .. categories - 1.")
    parser.add_argument("--missing", type=float, default=0.2, help="Share of ratings removed at random.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data generator.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_options(parser)
    parser.add_argument(
        "--levels", default="nominal,interval", help=f"Comma-separated levels: {', '.join(LEVELS)}."
    )
    parser.add_argument("--repeat", type=int, default=5, help="Timed runs of each function per level.")
    parser.add_argument(
        "--max-diff", type=float, default=1e-9, help="Fail when the two alphas differ by more than this."
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30,
        help="Before measuring, wait up to this many seconds for other work on the machine to stop.",
    )
    parser.add_argument("--output", default="agreement.json", help="File name under benchmarks/results/.")
    args = parser.parse_args(argv)
    levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    for level in levels:
        if level not in LEVELS:
            parser.error(f"unknown level {level!r}; use some of: {', '.join(LEVELS)}")
    if args.categories < 2 or args.annotators < 2 or args.repeat < 1 or not 0 <= args.missing < 1:
        parser.error("need --categories >= 2, --annotators >= 2, --repeat >= 1 and 0 <= --missing < 1")

    harness.log(
        f"simulating {args.items:,} items x {args.annotators} annotators, {args.categories} classes, "
        f"{args.missing:.0%} missing (seed {args.seed})"
    )
    ratings, _ = simulated_ratings(args.items, args.annotators, args.categories, args.missing, args.seed)
    busy = harness.wait_for_quiet(args.quiet_wait)
    results = []
    for level in levels:
        harness.log(f"{level}: 1 warm-up + {args.repeat} timed runs of each")
        results.append(measure_level(ratings, cast("Level", level), args.repeat))

    print()
    print(_table(results))
    failed = [r["level"] for r in results if not r["abs_diff"] <= args.max_diff]
    for level in failed:
        print(f"FAILED {level}: the two alphas differ by more than {args.max_diff:g}")
    document = {
        "benchmark": "agreement",
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
            "max_diff": args.max_diff,
        },
        "results": results,
    }
    path = harness.write_results(args.output, document)
    print(f"results written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
