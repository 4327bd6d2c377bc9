"""The inputs of the Evidently parity cases, rebuilt the same way wherever they are needed.

``benchmarks/record_evidently.py`` builds them inside Evidently's environment and records what
Evidently 0.7.23 says about them in ``evidently_0_7_23.json``; ``test_evidently_parity.py`` builds
them again and asks prodloop. Only numpy and scikit-learn's bundled data sets are used (no
download), and each column's checksum is recorded, so a difference in the inputs shows as such and
not as a difference in the statistics.

Real data: breast cancer (569 rows), wine (178), diabetes (442) and digits (1,797), split by a label
(large shifts) or at random (little or none). Generated data, seeded: numbers, categories, a
category seen on one side only, missing values, ±inf, integers and booleans, with references of
800 rows (p-value tests) and 5,000 rows (distances).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from sklearn import datasets

Columns = dict[str, np.ndarray]

# The tests that the explicit-test runs ask for, and the column types Evidently allows each on.
METHODS_ALL_TYPES = ("psi", "jensenshannon", "hellinger", "kl_div")
METHODS_NUMERIC = ("ks", "wasserstein")
METHODS_CATEGORICAL = ("chisquare", "z")


@dataclass
class Case:
    """Two samples of the same columns, and what Evidently is asked to use on them."""

    name: str
    description: str
    reference: Columns
    current: Columns
    method: str | None = None  # one test for every column
    num_method: str | None = None  # one test for the numeric columns
    cat_method: str | None = None  # one test for the categorical columns
    per_column_threshold: dict[str, float] = field(default_factory=dict)
    drift_share: float = 0.5


def checksum(values: np.ndarray) -> str:
    """A digest of a column's dtype and values, the same in any environment."""
    digest = hashlib.sha256(str(values.dtype).encode())
    if values.dtype == object:
        digest.update("\x1f".join(repr(value) for value in values.tolist()).encode())
    else:
        digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()[:16]


def _labels(values: np.ndarray, edges: np.ndarray, names: list[str]) -> np.ndarray:
    return np.array([names[i] for i in np.searchsorted(edges, values, side="right")], dtype=object)


def _split(columns: Columns, mask: np.ndarray) -> tuple[Columns, Columns]:
    return {k: v[mask] for k, v in columns.items()}, {k: v[~mask] for k, v in columns.items()}


def _breast_cancer() -> tuple[Columns, np.ndarray]:
    data = datasets.load_breast_cancer()
    x = data.data
    names = [str(name) for name in data.feature_names]
    columns: Columns = {names[i]: x[:, i].copy() for i in range(10)}
    area, texture, concavity, symmetry = x[:, 3], x[:, 1], x[:, 6], x[:, 8]
    size = _labels(area, np.quantile(area, [0.25, 0.5, 0.75]), ["S", "M", "L", "XL"])
    size[::11] = None  # missing categories
    columns["size band"] = size
    columns["smooth flag"] = np.where(x[:, 4] > np.median(x[:, 4]), "high", "low").astype(object)
    columns["texture code"] = np.searchsorted(np.quantile(texture, [0.25, 0.5, 0.75]), texture).astype(
        np.int64
    )
    columns["concavity level"] = np.searchsorted(np.quantile(concavity, [0.4, 0.8]), concavity).astype(float)
    columns["symmetry high"] = (symmetry > np.median(symmetry)).astype(float)
    perimeter = columns["mean perimeter"]
    perimeter[::7] = np.nan
    return columns, data.target


def _wine() -> tuple[Columns, np.ndarray]:
    data = datasets.load_wine()
    columns: Columns = {str(name): data.data[:, i].copy() for i, name in enumerate(data.feature_names)}
    columns["cultivar"] = np.array(["barolo", "grignolino", "barbera"], dtype=object)[data.target]
    return columns, data.target


def _diabetes() -> Columns:
    data = datasets.load_diabetes(scaled=False)
    return {str(name): data.data[:, i].copy() for i, name in enumerate(data.feature_names)}


def _digits(as_integers: bool) -> tuple[Columns, np.ndarray]:
    data = datasets.load_digits()
    pixels = data.data.astype(np.int64) if as_integers else data.data.copy()
    columns: Columns = {f"pixel {i}": pixels[:, i].copy() for i in range(0, 64, 3)}
    columns["digit"] = np.array([f"d{t}" for t in data.target], dtype=object)
    return columns, data.target


def _generated(n_reference: int, n_current: int, seed: int) -> tuple[Columns, Columns]:
    rng = np.random.default_rng(seed)

    def both(make_ref, make_cur) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        return make_ref(n_reference), make_cur(n_current)

    def choice(values: list[str], p: list[float]):  # type: ignore[no-untyped-def]
        return lambda n: rng.choice(np.array(values, dtype=object), n, p=p)

    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "num same": both(lambda n: rng.normal(0, 1, n), lambda n: rng.normal(0, 1, n)),
        "num small shift": both(lambda n: rng.normal(0, 1, n), lambda n: rng.normal(0.05, 1, n)),
        "num large shift": both(lambda n: rng.normal(0, 1, n), lambda n: rng.normal(0.5, 1.2, n)),
        "num lognormal": both(lambda n: rng.lognormal(0, 1, n), lambda n: rng.lognormal(0.1, 1.1, n)),
        "num with gaps": both(lambda n: rng.normal(10, 2, n), lambda n: rng.normal(10.3, 2, n)),
        "num three values": both(
            lambda n: rng.choice([1.0, 2.0, 3.0], n, p=[0.5, 0.3, 0.2]),
            lambda n: rng.choice([1.0, 2.0, 3.0], n, p=[0.3, 0.3, 0.4]),
        ),
        "num fifteen values": both(
            lambda n: rng.binomial(14, 0.5, n).astype(float),
            lambda n: rng.binomial(14, 0.55, n).astype(float),
        ),
        "cat same": both(choice(list("abcdefgh"), [0.125] * 8), choice(list("abcdefgh"), [0.125] * 8)),
        "cat shift": both(
            choice(["red", "green", "blue"], [0.5, 0.3, 0.2]),
            choice(["red", "green", "blue"], [0.4, 0.3, 0.3]),
        ),
        "cat slight shift": both(
            choice(["red", "green", "blue"], [0.5, 0.3, 0.2]),
            choice(["red", "green", "blue"], [0.48, 0.31, 0.21]),
        ),
        "cat one side only": both(
            choice(["a", "b", "c", "d", "e", "f"], [0.3, 0.2, 0.2, 0.1, 0.1, 0.1]),
            choice(["b", "c", "d", "e", "f", "g"], [0.2, 0.2, 0.2, 0.1, 0.1, 0.2]),
        ),
        "cat with missing": both(
            choice(["x", "y", "z"], [0.2, 0.4, 0.4]), choice(["x", "y", "z"], [0.25, 0.4, 0.35])
        ),
        "cat binary": both(choice(["yes", "no"], [0.7, 0.3]), choice(["yes", "no"], [0.6, 0.4])),
        "int codes": both(lambda n: rng.integers(0, 7, n), lambda n: rng.integers(0, 7, n)),
        "flag": both(lambda n: rng.random(n) < 0.3, lambda n: rng.random(n) < 0.33),
    }
    reference = {name: ref for name, (ref, _) in pairs.items()}
    current = {name: cur for name, (_, cur) in pairs.items()}
    for side in (reference, current):
        gaps = side["num with gaps"]
        gaps[rng.random(gaps.size) < 0.1] = np.nan
        gaps[:3] = [np.inf, -np.inf, np.nan]
        missing = side["cat with missing"]
        missing[rng.random(missing.size) < 0.2] = None
    return reference, current


def _explicit_runs(base: Case) -> list[Case]:
    """The same data with each test asked for explicitly, on the column types Evidently allows."""
    runs = []
    for method in METHODS_ALL_TYPES:
        runs.append(
            Case(
                f"{base.name} / {method}",
                f"{base.description}; {method} on every column",
                base.reference,
                base.current,
                method=method,
            )
        )
    for method in METHODS_NUMERIC:
        runs.append(
            Case(
                f"{base.name} / {method}",
                f"{base.description}; {method} on numeric columns",
                base.reference,
                base.current,
                num_method=method,
            )
        )
    for method in METHODS_CATEGORICAL:
        runs.append(
            Case(
                f"{base.name} / {method}",
                f"{base.description}; {method} on categorical columns",
                base.reference,
                base.current,
                cat_method=method,
            )
        )
    return runs


def cases() -> list[Case]:
    """Every parity case, in a fixed order."""
    result: list[Case] = []
    columns, target = _breast_cancer()
    ref, cur = _split(columns, target == 1)
    by_diagnosis = Case(
        "breast cancer by diagnosis", "569 rows: benign (357) against malignant (212)", ref, cur
    )
    order = np.random.default_rng(7).permutation(target.size)
    halves = np.zeros(target.size, dtype=bool)
    halves[order[:300]] = True
    ref, cur = _split(columns, halves)
    result += [
        by_diagnosis,
        Case("breast cancer random halves", "569 rows split at random, 300 / 269", ref, cur),
    ]

    columns, target = _wine()
    ref, cur = _split(columns, target != 2)
    result.append(
        Case(
            "wine by cultivar", "178 wines: cultivars 0 and 1 against 2 (a category one side only)", ref, cur
        )
    )

    columns = _diabetes()
    ref, cur = _split(columns, columns["sex"] == 1)
    result.append(Case("diabetes by sex", "442 patients split by sex", ref, cur))
    odd = np.arange(next(iter(columns.values())).size) % 2 == 1
    ref, cur = _split(columns, odd)
    result.append(Case("diabetes odd and even rows", "442 patients, odd rows against even rows", ref, cur))

    columns, target = _digits(as_integers=False)
    first = np.arange(target.size) < 1100
    ref, cur = _split(columns, first)
    digits_halves = Case("digits first 1100 rows", "1,797 digits: rows 0-1099 against 1100-1796", ref, cur)
    zeros_ones = {k: v[~first & (target <= 1)] for k, v in columns.items()}
    result += [
        digits_halves,
        Case("digits zeros and ones", "rows 0-1099 against the 0s and 1s of rows 1100-1796", ref, zeros_ones),
    ]
    columns, target = _digits(as_integers=True)
    ref, cur = _split(columns, first)
    result.append(Case("digits as integers", "the digits split, pixels as int64", ref, cur))

    ref, cur = _generated(800, 600, seed=20260101)
    small = Case("generated 800 / 600", "seeded generated columns, reference of 800 rows", ref, cur)
    ref, cur = _generated(5000, 4000, seed=20260102)
    large = Case("generated 5000 / 4000", "seeded generated columns, reference of 5,000 rows", ref, cur)
    result += [small, large]
    result.append(
        Case(
            "generated 5000 / 4000 / thresholds",
            "custom thresholds and drift share",
            ref,
            cur,
            per_column_threshold={"num small shift": 0.04, "cat shift": 0.5, "num three values": 0.01},
            drift_share=0.3,
        )
    )
    for base in (by_diagnosis, digits_halves, small, large):
        result += _explicit_runs(base)
    return result


def type_columns() -> Columns:
    """Columns whose inferred type is recorded on its own (text among them: its drift test is not
    part of these cases)."""
    rng = np.random.default_rng(11)
    words = np.array("drift model label queue trace signal alert release snapshot".split(), dtype=object)
    sentences = np.array([" ".join(rng.choice(words, 6)) + f" #{i}" for i in range(200)], dtype=object)
    half = np.array([f"v{i % 100}" for i in range(200)], dtype=object)  # 100 distinct of 200: categorical
    over_half = half.copy()
    over_half[0] = "v-extra"  # 101 distinct of 200: text
    none_first = sentences.copy()
    none_first[0] = None
    return {
        "sentences": sentences,
        "sentences after a missing one": none_first,
        "half distinct": half,
        "just over half distinct": over_half,
        "ints ten values": np.arange(200, dtype=np.int64) % 10,
        "ints eleven values": np.arange(200, dtype=np.int64) % 11,
        "floats two values": (np.arange(200) % 2).astype(float),
        "booleans": np.arange(200) % 3 == 0,
        "objects that are numbers": np.array([i % 4 for i in range(200)], dtype=object),
        "all missing objects": np.array([None] * 200, dtype=object),
        "dates": np.arange(200).astype("datetime64[D]"),
    }
