"""Text drift: the TF-IDF domain classifier against scikit-learn and recorded Evidently 0.7.23 outputs.

The Evidently numbers below (``EVIDENTLY``) were recorded with Evidently 0.7.23 and scikit-learn 1.9.1 in
Evidently's own environment (``benchmarks/.venv-evidently``), on the texts that :func:`_demo_inputs`
builds. To record them again, dump those texts from the project's environment::

    .venv/bin/python -c "import json; from tests.monitoring.test_text import _demo_inputs; \
        json.dump(_demo_inputs(), open('/tmp/pairs.json', 'w'))"

and run, with ``benchmarks/.venv-evidently/bin/python``::

    import json, pandas as pd
    from evidently.legacy.utils.data_drift_utils import calculate_text_drift_score, get_text_data_for_plots
    for case, (ref, cur) in json.load(open("/tmp/pairs.json")).items():
        ref, cur = pd.Series(ref), pd.Series(cur)
        auc, abs_drift = calculate_text_drift_score(ref, cur, bootstrap=False, threshold=0.55)
        _, perc_drift = calculate_text_drift_score(ref, cur, bootstrap=True, p_value=1 - 0.95)
        _, _, words_current, words_reference = get_text_data_for_plots(ref, cur)
        print(case, auc, abs_drift, perc_drift, words_current[:10], words_reference[:10])
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from prodloop.errors import ValidationFailed
from prodloop.monitoring.stattests import get_stattest, stattest_names
from prodloop.monitoring.text import (
    domain_classifier_auc,
    random_auc_null,
    text_content_drift,
    text_drift_explanation,
)

OLD_TOPICS = {
    "billing": "refund invoice charged twice card payment billing statement overcharge receipt",
    "account": "password login reset account locked email verification username sign",
    "shipping": "shipping delivery package tracking courier late parcel address arrived",
}
NEW_TOPICS = {
    "vault": "vault smart lock pairing keypad firmware fingerprint deadbolt bluetooth hub",
    "battery": "lock battery drains charging cable low warning replace batteries door",
}


def _texts(
    rng: np.random.Generator, topics: dict[str, str], n: int, weights: list[float] | None = None
) -> list[str]:
    names = list(topics)
    picks = rng.choice(len(names), size=n, p=weights)
    return [
        "please help, " + " ".join(rng.choice(topics[names[i]].split(), size=rng.integers(4, 9)))
        for i in picks
    ]


def _evidently_auc(reference: list[str], current: list[str]) -> float:
    """Evidently 0.7's recipe, written out with scikit-learn: the reference the AUC must equal."""
    texts = np.array(reference + current, dtype=object)
    labels = np.array([0] * len(reference) + [1] * len(current))
    x_train, x_test, y_train, y_test = train_test_split(
        texts, labels, test_size=0.5, random_state=42, shuffle=True
    )
    vectorizer = TfidfVectorizer(sublinear_tf=True, max_df=0.5, stop_words="english")
    classifier = SGDClassifier(
        alpha=0.0001, max_iter=50, penalty="l1", loss="modified_huber", random_state=42
    )
    with warnings.catch_warnings():  # SGD stops after 50 epochs, converged or not
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(vectorizer.fit_transform(x_train), y_train)
    return float(roc_auc_score(y_test, classifier.predict_proba(vectorizer.transform(x_test))[:, 1]))


def _demo_inputs() -> dict[str, tuple[list[str], list[str]]]:
    """Customer messages of the demo (seed 7, 30 days, 60 a day, ending 2025-01-31): days 0-4 against
    days 5-9 (same traffic), and days 0-9 against days 20-29 (after the Acme Vault launch)."""
    from prodloop.demo.scenario import generate_scenario

    scenario = generate_scenario(seed=7, days=30, traces_per_day=60, end=datetime(2025, 1, 31, tzinfo=UTC))
    days = [((t.trace.start_time - scenario.start).days, t.trace.input) for t in scenario.traces]
    return {
        "stable": ([x for d, x in days if d < 5], [x for d, x in days if 5 <= d < 10]),
        "launch": ([x for d, x in days if d < 10], [x for d, x in days if d >= 20]),
    }


# Evidently 0.7.23 on _demo_inputs(); see the module docstring.
EVIDENTLY = {
    "stable": {
        "auc": 0.4836111111111111,
        "abs_drift": False,
        "perc_drift": False,
        "words_current": [
            "21", "16", "kowalski", "itme", "mateo", "4448979", "8074464", "141", "8796808", "org",
        ],
        "words_reference": [
            "6707299", "34", "3224332", "1778699", "9189733", "8360815", "9080440", "7864692", "denver", "89",
        ],
    },
    "launch": {
        "auc": 0.593365173751687,
        "abs_drift": True,
        "perc_drift": True,
        "words_current": [
            "does", "vault", "2807788", "syas", "orom", "4516621", "3590187", "45", "84", "8290590",
        ],
        "words_reference": [
            "8796808", "21", "3481976", "3419880", "8105685", "2559662", "4964048", "doees", "3629906", "144",
        ],
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def demo() -> dict[str, tuple[list[str], list[str]]]:
    return _demo_inputs()


@pytest.mark.parametrize("case", ["stable", "launch"])
def test_matches_recorded_evidently_outputs(demo: dict[str, tuple[list[str], list[str]]], case: str) -> None:
    reference, current = demo[case]
    expected = EVIDENTLY[case]
    absolute = get_stattest("abs_text_content_drift")(np.array(reference), np.array(current), "text")
    percentile = get_stattest("perc_text_content_drift")(np.array(reference), np.array(current), "text")
    assert absolute.statistic == pytest.approx(expected["auc"], abs=1e-12)
    assert percentile.statistic == pytest.approx(expected["auc"], abs=1e-12)
    assert (absolute.drift, percentile.drift) == (expected["abs_drift"], expected["perc_drift"])
    assert (absolute.threshold, percentile.threshold) == (0.55, 0.95)
    explanation = text_drift_explanation(reference, current, top_terms=10, min_texts=1)
    assert explanation["auc"] == absolute.statistic
    assert [t["term"] for t in explanation["terms"]] == expected["words_current"]
    assert [t["term"] for t in explanation["reference_terms"]] == expected["words_reference"]


def test_after_the_launch_the_most_confident_rows_are_about_the_new_product(
    demo: dict[str, tuple[list[str], list[str]]],
) -> None:
    reference, current = demo["launch"]
    explanation = text_drift_explanation(reference, current, top_rows=30)
    about_vault = [("vault" in current[i].lower()) for i, _ in explanation["rows"]]
    base_rate = np.mean(["vault" in text.lower() for text in current])
    assert base_rate < 0.35
    assert np.mean(about_vault) > 0.9
    assert "vault" in [t["term"] for t in explanation["terms"][:3]]
    scores = [score for _, score in explanation["rows"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


def test_auc_is_roc_auc_score_of_the_same_split() -> None:
    rng = np.random.default_rng(3)
    reference = _texts(rng, OLD_TOPICS, 300)
    current = _texts(rng, {**OLD_TOPICS, **NEW_TOPICS}, 260)
    assert domain_classifier_auc(reference, current) == pytest.approx(
        _evidently_auc(reference, current), abs=1e-12
    )


def test_random_null_is_evidentlys_loop_of_roc_auc_scores() -> None:
    labels = np.random.default_rng(5).integers(0, 2, size=301)
    # Evidently's roc_auc_random_classifier_percentile, one roc_auc_score per seeded draw.
    seeds = np.random.RandomState(42).randint(0, 2000, size=200)
    expected = [roc_auc_score(labels, np.random.RandomState(s).rand(len(labels))) for s in seeds]
    np.testing.assert_allclose(random_auc_null(labels, iterations=200), expected, rtol=0, atol=1e-12)


def test_a_clear_topic_shift_is_drift_for_both_tests() -> None:
    rng = np.random.default_rng(11)
    reference = _texts(rng, OLD_TOPICS, 400)
    current = _texts(rng, {**OLD_TOPICS, **NEW_TOPICS}, 400, weights=[0.2, 0.2, 0.2, 0.2, 0.2])
    for bootstrap in (False, True):
        result = text_content_drift(reference, current, bootstrap=bootstrap)
        assert result.drift is True
        assert result.statistic > 0.65
        assert result.p_value is not None and result.p_value < 0.01
    explanation = text_drift_explanation(reference, current, top_terms=8)
    new_words = set(" ".join(NEW_TOPICS.values()).split())
    assert {t["term"] for t in explanation["terms"]} <= new_words
    assert all(t["weight"] > 0 for t in explanation["terms"])


def test_identical_texts_are_no_drift() -> None:
    rng = np.random.default_rng(2)
    texts = _texts(rng, OLD_TOPICS, 300)
    for bootstrap in (False, True):
        same = text_content_drift(texts, list(texts), bootstrap=bootstrap)
        assert same.drift is False
        assert abs(same.statistic - 0.5) < 0.06
    # One text repeated: no term survives max_df, nothing tells the sides apart.
    constant = text_content_drift(["my order is late"] * 20, ["my order is late"] * 30, bootstrap=True)
    assert (constant.statistic, constant.drift) == (0.5, False)


def test_the_percentile_test_flags_about_five_percent_of_samples_without_drift() -> None:
    trials = 150
    flagged = 0
    p_values = []
    for seed in range(trials):
        rng = np.random.default_rng(1000 + seed)
        result = text_content_drift(_texts(rng, OLD_TOPICS, 80), _texts(rng, OLD_TOPICS, 80), bootstrap=True)
        flagged += result.drift
        p_values.append(result.p_value)
    # Consistent with a 5% false-positive rate (the test's design), not with 1% or 15%.
    assert binomtest(flagged, trials, 0.05).pvalue > 0.01
    assert 0.35 < np.mean(p_values) < 0.65


def test_results_are_deterministic_and_missing_texts_are_left_out() -> None:
    rng = np.random.default_rng(8)
    reference = _texts(rng, OLD_TOPICS, 150)
    current = _texts(rng, NEW_TOPICS, 150)
    with_gaps = np.array([None, *current[:70], float("nan"), *current[70:]], dtype=object)
    first = text_content_drift(reference, current, bootstrap=True)
    assert text_content_drift(reference, with_gaps, bootstrap=True) == first
    assert text_content_drift(reference, current, bootstrap=True) == first
    explanation = text_drift_explanation(reference, with_gaps, top_rows=200)
    indices = [i for i, _ in explanation["rows"]]
    assert sorted(indices) == [i for i in range(len(with_gaps)) if isinstance(with_gaps[i], str)]


def test_registered_with_evidentlys_names_and_defaults() -> None:
    assert {"abs_text_content_drift", "perc_text_content_drift"} <= set(stattest_names())
    for name, threshold in (("abs_text_content_drift", 0.55), ("perc_text_content_drift", 0.95)):
        test = get_stattest(name)
        assert (test.default_threshold, test.column_types) == (threshold, frozenset({"text"}))
    rng = np.random.default_rng(4)
    texts = np.array(_texts(rng, OLD_TOPICS, 60), dtype=object)
    assert (
        get_stattest("abs_text_content_drift")(texts[:30], texts[30:], "text", threshold=0.99).threshold
        == 0.99
    )


def test_bad_inputs_are_clear_errors() -> None:
    test = get_stattest("abs_text_content_drift")
    with pytest.raises(ValidationFailed, match="compares texts, not a numeric column"):
        test(np.array([1.0, 2.0]), np.array([1.0, 2.0]), "numeric")
    with pytest.raises(ValidationFailed, match="at least 2 texts on each side"):
        text_content_drift(["just one", None], ["a b c", "d e f"], bootstrap=False)
    with pytest.raises(ValidationFailed, match="percentile of the null between 0 and 1"):
        text_content_drift(["a b", "c d"], ["e f", "g h"], bootstrap=True, threshold=95)
