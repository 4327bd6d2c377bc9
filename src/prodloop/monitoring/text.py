"""Text drift: a TF-IDF domain classifier, the same test as Evidently 0.7's ``text_content_drift``.

The reference texts are labelled 0 and the current texts 1; the two are shuffled together and split in
half (``train_test_split(test_size=0.5, random_state=42)``). A linear classifier learns, on one half, to
tell current from reference by their TF-IDF terms (``TfidfVectorizer(sublinear_tf=True, max_df=0.5,
stop_words="english")`` and ``SGDClassifier(loss="modified_huber", penalty="l1", alpha=1e-4, max_iter=50,
random_state=42)``) and is scored by its ROC AUC on the other half. An AUC near 0.5 means the classifier
cannot tell the two apart: the texts did not drift. Two tests are registered, named as Evidently names
them:

``abs_text_content_drift``
    drift when the AUC is above the threshold (default 0.55). Evidently's default for references of
    more than 1,000 rows. Evidently gives it no p-value; ours is the one-sided Mann-Whitney U test of
    the held-out scores (whose U statistic over ``n0 * n1`` is the AUC), for reading only: the verdict is
    the threshold's.
``perc_text_content_drift``
    drift when the AUC is above the ``threshold`` percentile (default 0.95, the 95th) of the AUCs that
    1,000 classifiers guessing at random reach on the same held-out labels (a bootstrap null; for scores
    without ties this is the null of a label permutation). Evidently's default for references of at most
    1,000 rows. Its p-value is the share of null AUCs at least as high as the observed one, counted as
    ``(1 + k) / (1 + 1000)`` like ``scipy.stats.permutation_test`` so that it is never 0.

Both are deterministic: the split, the classifier and the null have fixed seeds (Evidently's), so the
same texts give the same AUC and verdict as Evidently 0.7.23. Missing texts (None, NaN) are left out.
When no term is left after the vectoriser's pruning (all texts identical, or only stop words) nothing
tells the two sides apart: the AUC is 0.5.

:func:`text_drift_explanation` says what drives the drift: the current rows the classifier is most
confident came from the current data (each scored by a classifier that did not train on it) and the
terms that separate current from reference. Alerts route those rows to an annotation queue.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from prodloop.errors import ValidationFailed
from prodloop.monitoring.stattests import DriftTestResult, register_stattest

#: The seed of Evidently's split, classifier and null, so that verdicts match Evidently's.
SEED = 42
#: How many random classifiers make the null of ``perc_text_content_drift``.
NULL_ITERATIONS = 1000
#: The fewest texts each side needs for a classifier to be trained and scored.
MIN_TEXTS = 2


def _texts(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """The non-missing texts of ``values`` as an object array of str, with their positions."""
    array = np.asarray(values, dtype=object).ravel()
    keep = np.fromiter(
        (v is not None and not (isinstance(v, float) and v != v) for v in array),
        dtype=bool,
        count=len(array),
    )
    positions = np.flatnonzero(keep)
    return np.array([str(v) for v in array[positions]], dtype=object), positions


def _tokens(texts: np.ndarray) -> np.ndarray:
    """Each text as its list of terms, as Evidently's vectoriser reads it (lower case, words of two or
    more letters or digits, English stop words out), made once and reused by every fit and score."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    analyze = TfidfVectorizer(stop_words="english").build_analyzer()
    tokens = np.empty(len(texts), dtype=object)
    for i, text in enumerate(texts):
        tokens[i] = analyze(text)
    return tokens


def _as_given(tokens: list[str]) -> list[str]:
    return tokens


@dataclass
class _Classifier:
    """Evidently's pipeline (TF-IDF, then SGD) fitted on texts already split into terms."""

    vectorizer: Any
    model: Any
    matrix: Any  # the TF-IDF of the texts it learned from

    def scores(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(current) of each text, and the margin (which still orders texts whose P is clipped at 1)."""
        x = self.vectorizer.transform(tokens)
        return self.model.predict_proba(x)[:, 1], self.model.decision_function(x)


def _fit(tokens: np.ndarray, labels: np.ndarray) -> _Classifier | None:
    """The classifier fitted on ``tokens``; None when no term survives the pruning or a side is missing."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier

    if len(np.unique(labels)) < 2:
        return None
    vectorizer = TfidfVectorizer(analyzer=_as_given, sublinear_tf=True, max_df=0.5)
    try:
        matrix = vectorizer.fit_transform(tokens)
    except ValueError as exc:
        # "empty vocabulary" / "After pruning, no terms remain": nothing tells the sides apart.
        if "vocabulary" in str(exc) or "no terms remain" in str(exc):
            return None
        raise
    model = SGDClassifier(alpha=0.0001, max_iter=50, penalty="l1", loss="modified_huber", random_state=SEED)
    with warnings.catch_warnings():
        # Evidently stops after 50 epochs whether or not SGD converged; so do we, quietly.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(matrix, labels)
    return _Classifier(vectorizer, model, matrix)


@dataclass
class _Split:
    """The shuffled, halved domain data and the classifier fitted on the first half."""

    tokens: np.ndarray  # reference texts then current texts, as lists of terms
    labels: np.ndarray  # 0 reference, 1 current
    train: np.ndarray  # positions in tokens
    test: np.ndarray
    classifier: _Classifier | None  # None when no term survived the vectoriser's pruning
    test_scores: np.ndarray  # P(current) of each test row
    test_margins: np.ndarray
    auc: float


def _split(reference: np.ndarray, current: np.ndarray, what: str = "text drift") -> _Split:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    if len(reference) < MIN_TEXTS or len(current) < MIN_TEXTS:
        raise ValidationFailed(
            f"{what} needs at least {MIN_TEXTS} texts on each side (the reference has {len(reference)}, "
            f"the current data {len(current)}); compare more rows",
            {"reference": len(reference), "current": len(current)},
        )
    tokens = _tokens(np.concatenate([reference, current]))
    labels = np.concatenate([np.zeros(len(reference), dtype=int), np.ones(len(current), dtype=int)])
    train, test = train_test_split(np.arange(len(tokens)), test_size=0.5, random_state=SEED, shuffle=True)
    if len(np.unique(labels[test])) < 2:
        raise ValidationFailed(
            f"{what}: the held-out half holds texts of one side only, so no AUC can be computed "
            f"(reference {len(reference)}, current {len(current)} texts); compare more rows",
            {"reference": len(reference), "current": len(current)},
        )
    classifier = _fit(tokens[train], labels[train])
    if classifier is None:
        scores, margins = np.full(len(test), 0.5), np.zeros(len(test))
    else:
        scores, margins = classifier.scores(tokens[test])
    auc = float(roc_auc_score(labels[test], scores))
    return _Split(tokens, labels, train, test, classifier, scores, margins, auc)


def domain_classifier_auc(
    reference: Sequence[Any] | np.ndarray, current: Sequence[Any] | np.ndarray
) -> float:
    """ROC AUC of the TF-IDF domain classifier on the held-out half (0.5: no drift, 1: fully apart)."""
    return _split(_texts(reference)[0], _texts(current)[0]).auc


def random_auc_null(labels: np.ndarray, iterations: int = NULL_ITERATIONS, seed: int = SEED) -> np.ndarray:
    """The AUCs of ``iterations`` classifiers that score ``labels`` at random (uniform scores).

    The same draws as Evidently's ``roc_auc_random_classifier_percentile`` (one legacy ``RandomState`` per
    iteration, seeded from a ``RandomState(seed)``), computed from rank sums instead of one
    ``roc_auc_score`` call per iteration.
    """
    labels = np.asarray(labels).astype(bool)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    seeds = np.random.RandomState(seed).randint(0, iterations * 10, size=iterations)
    aucs = np.empty(iterations)
    chunk = max(1, 4_000_000 // max(len(labels), 1))
    positions = np.arange(1, len(labels) + 1, dtype=np.float64)
    draws = np.random.RandomState()
    for start in range(0, iterations, chunk):
        block = seeds[start : start + chunk]
        scores = np.empty((len(block), len(labels)))
        for row, s in enumerate(block):
            draws.seed(s)  # reseeding one generator: the same stream as a new RandomState(s), 70x faster
            scores[row] = draws.rand(len(labels))
        order = np.argsort(scores, axis=1, kind="stable")
        rank_sum = (labels[order] * positions).sum(axis=1)
        aucs[start : start + len(block)] = (rank_sum - positives * (positives + 1) / 2) / (
            positives * negatives
        )
    return aucs


def _rank_p_value(split: _Split) -> float:
    """One-sided Mann-Whitney U p-value of the held-out scores (U / (n0 * n1) is the AUC)."""
    from scipy.stats import mannwhitneyu

    labels = split.labels[split.test]
    scores = split.test_scores
    if np.ptp(scores) == 0:
        return 1.0
    return float(mannwhitneyu(scores[labels == 1], scores[labels == 0], alternative="greater").pvalue)


def text_content_drift(
    reference: Sequence[Any] | np.ndarray,
    current: Sequence[Any] | np.ndarray,
    *,
    bootstrap: bool,
    threshold: float | None = None,
) -> DriftTestResult:
    """The domain-classifier test: ``bootstrap`` False is ``abs_text_content_drift``, True is
    ``perc_text_content_drift`` (see the module docstring)."""
    test = PERC_TEXT_CONTENT_DRIFT if bootstrap else ABS_TEXT_CONTENT_DRIFT
    threshold = test.default_threshold if threshold is None else float(threshold)
    if bootstrap and not 0 < threshold < 1:
        raise ValidationFailed(
            f"the threshold of perc_text_content_drift is a percentile of the null between 0 and 1 "
            f"(0.95: the 95th), not {threshold}"
        )
    split = _split(_texts(reference)[0], _texts(current)[0], test.name)
    if bootstrap:
        null = random_auc_null(split.labels[split.test])
        p_value = float((1 + np.count_nonzero(null >= split.auc)) / (1 + len(null)))
        # Evidently's arithmetic, to the last bit: p_value = 1 - threshold, percentile 100 * (1 - p_value).
        drift = split.auc > float(np.percentile(null, 100 * (1 - (1 - threshold))))
    else:
        p_value = _rank_p_value(split)
        drift = split.auc > threshold
    return DriftTestResult(
        test=test.name, statistic=split.auc, p_value=p_value, threshold=threshold, drift=bool(drift)
    )


@dataclass
class TextContentDrift:
    """A registered text drift test (see the module docstring)."""

    name: str
    bootstrap: bool
    default_threshold: float
    kind: Literal["p_value", "distance"] = "distance"
    column_types: frozenset[str] = frozenset({"text"})

    def __call__(
        self, reference: Any, current: Any, column_type: str, threshold: float | None = None
    ) -> DriftTestResult:
        if column_type != "text":
            raise ValidationFailed(
                f"{self.name} compares texts, not a {column_type} column; pick a test for {column_type} "
                f"columns or declare the column as text"
            )
        return text_content_drift(reference, current, bootstrap=self.bootstrap, threshold=threshold)


ABS_TEXT_CONTENT_DRIFT = TextContentDrift("abs_text_content_drift", bootstrap=False, default_threshold=0.55)
PERC_TEXT_CONTENT_DRIFT = TextContentDrift("perc_text_content_drift", bootstrap=True, default_threshold=0.95)
register_stattest(ABS_TEXT_CONTENT_DRIFT)
register_stattest(PERC_TEXT_CONTENT_DRIFT)


def text_drift_explanation(
    reference_texts: Sequence[Any] | np.ndarray,
    current_texts: Sequence[Any] | np.ndarray,
    *,
    top_rows: int = 50,
    top_terms: int = 20,
    min_texts: int = 2,
) -> dict[str, Any]:
    """What drives the drift between two sets of texts.

    Returns ``{"auc", "rows", "terms", "reference_terms"}``: ``auc`` is the domain classifier's held-out
    AUC (the statistic of the text tests); ``rows`` are ``(index, score)`` pairs, the ``top_rows``
    current texts most confidently recognised as current, ``index`` their position in
    ``current_texts`` and ``score`` the classifier's probability that the text is current. Every current
    row is scored by a classifier that did not see it (the two halves of the split take turns).
    ``terms`` are the ``top_terms`` terms that most mark a text as current (``{"term", "weight"}``,
    the classifier's coefficient, highest first); ``reference_terms`` those that most mark it as
    reference (lowest weight first). Only terms found in at least ``min_texts`` of the texts the
    classifier learned from count: a term of one text (a ticket number, a name) marks that text, not a
    trend. ``min_texts=1`` gives Evidently's "typical words".
    """
    current, positions = _texts(current_texts)
    reference, _ = _texts(reference_texts)
    split = _split(reference, current, "text drift")
    n_reference = len(reference)
    scores = np.full(len(split.tokens), np.nan)
    margins = np.zeros(len(split.tokens))
    scores[split.test], margins[split.test] = split.test_scores, split.test_margins
    # The other turn: train on the held-out half, score the training half.
    turn = _fit(split.tokens[split.test], split.labels[split.test])
    if turn is not None:
        scores[split.train], margins[split.train] = turn.scores(split.tokens[split.train])
    current_rows = np.arange(n_reference, len(split.tokens))
    current_rows = current_rows[~np.isnan(scores[current_rows])]
    # Highest probability first; the margin breaks the ties of probabilities clipped at 1.
    ranked = current_rows[np.lexsort((margins[current_rows], scores[current_rows]))[::-1]]
    rows = [(int(positions[i - n_reference]), float(scores[i])) for i in ranked[: max(top_rows, 0)]]
    terms: list[dict[str, Any]] = []
    reference_terms: list[dict[str, Any]] = []
    if split.classifier is not None:
        weights = split.classifier.model.coef_[0]
        vocabulary = split.classifier.vectorizer.get_feature_names_out()
        if min_texts > 1:
            in_texts = np.asarray((split.classifier.matrix > 0).sum(axis=0)).ravel()
            weights = np.where(in_texts >= min_texts, weights, 0.0)
        order = np.argsort(-weights, kind="stable")
        terms = [{"term": str(vocabulary[i]), "weight": float(weights[i])} for i in order if weights[i] > 0][
            : max(top_terms, 0)
        ]
        reference_terms = [
            {"term": str(vocabulary[i]), "weight": float(weights[i])} for i in order[::-1] if weights[i] < 0
        ][: max(top_terms, 0)]
    return {"auc": split.auc, "rows": rows, "terms": terms, "reference_terms": reference_terms}
