"""Label aggregation: majority vote and Dawid-Skene, one label (and a posterior) per item.

Both take the *reliability matrix* of :mod:`prodloop.annotation.agreement`: ``ratings[annotator, item]``
holds a category code (``0 .. n_categories - 1``) and ``np.nan`` where that annotator did not rate
that item; :func:`~prodloop.annotation.agreement.reliability_matrix` builds one from label records
(pass ``categories`` to it so that the codes are indices into your categories).

Items are never dropped, so row ``i`` of every result belongs to column ``i`` of ``ratings``. An
item nobody rated has no majority: :func:`majority_vote` gives it the label ``-1`` and
``n_votes == 0``; :func:`dawid_skene` gives it the prior as its posterior (the best guess with no
evidence) and ``n_votes == 0`` says so.

:func:`dawid_skene` follows crowd-kit's ``DawidSkene`` step for step (majority-vote initialisation,
the same floor against ``log(0)``), so on the same data and the same number of iterations the two
agree to rounding; it stops on the observed-data log-likelihood instead of crowd-kit's evidence
lower bound (see :func:`dawid_skene`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from prodloop.annotation.agreement import _as_matrix
from prodloop.errors import ValidationFailed

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# Floor for confusion-matrix counts and priors before taking logs, as in crowd-kit (_EPS = 1e-10).
SMOOTHING = 1e-10


# --------------------------------------------------------------------------------------------------
# Ratings as a list of (annotator, item, code)


@dataclass(frozen=True)
class _Ratings:
    annotator: IntArray
    item: IntArray
    code: IntArray
    n_annotators: int
    n_items: int
    n_categories: int


def _ratings(ratings: ArrayLike, n_categories: int | None) -> _Ratings:
    matrix = _as_matrix(ratings)
    annotator, item = np.nonzero(~np.isnan(matrix))
    values = matrix[annotator, item]
    if values.size == 0:
        raise ValidationFailed(
            f"nothing to aggregate: the ratings ({matrix.shape[0]} annotators x {matrix.shape[1]} items) "
            "hold no rating; NaN marks a missing rating"
        )
    bad = values[(values < 0) | (values != np.round(values))]
    if bad.size:
        raise ValidationFailed(
            f"rating {bad[0]!r} is not a category code; aggregation needs codes 0, 1, 2, ... "
            "(use reliability_matrix(labels, categories) to code labels)",
            {"invalid": sorted({float(v) for v in bad})[:10]},
        )
    codes = values.astype(np.int64)
    highest = int(codes.max())
    if n_categories is None:
        n_categories = highest + 1
    elif n_categories < 1:
        raise ValidationFailed(f"n_categories must be at least 1, got {n_categories}")
    elif highest >= n_categories:
        raise ValidationFailed(
            f"rating code {highest} is out of range for n_categories={n_categories} "
            f"(codes must be 0..{n_categories - 1})"
        )
    return _Ratings(
        annotator=annotator.astype(np.int64),
        item=item.astype(np.int64),
        code=codes,
        n_annotators=matrix.shape[0],
        n_items=matrix.shape[1],
        n_categories=n_categories,
    )


def _vote_counts(r: _Ratings) -> FloatArray:
    """``counts[item, category]``: how many annotators gave ``category`` to ``item``."""
    flat = np.bincount(r.item * r.n_categories + r.code, minlength=r.n_items * r.n_categories)
    return flat.reshape(r.n_items, r.n_categories).astype(np.float64)


# --------------------------------------------------------------------------------------------------
# Majority vote


@dataclass(frozen=True)
class MajorityResult:
    """Majority vote per item.

    ``labels[i]`` is the most frequent code (the lowest of the tied codes on a tie, with
    ``tied[i]`` set; ``-1`` for an item nobody rated), ``shares[i]`` the share of the item's votes
    that went to it (``0.0`` when unrated), ``n_votes[i]`` the number of ratings of the item.
    """

    labels: IntArray
    shares: FloatArray
    tied: BoolArray
    n_votes: IntArray

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape the CLI and API print."""
        return {
            "labels": self.labels.tolist(),
            "shares": self.shares.tolist(),
            "tied": self.tied.tolist(),
            "n_votes": self.n_votes.tolist(),
        }


def majority_vote(ratings: ArrayLike, n_categories: int | None = None) -> MajorityResult:
    """The most frequent code of each item of ``ratings[annotator, item]`` (NaN = missing).

    Ties go to the lowest code and are flagged in ``tied``, so that a caller can send those items
    for another label instead of trusting an arbitrary winner.
    """
    counts = _vote_counts(_ratings(ratings, n_categories))
    n_votes = counts.sum(axis=1)
    top = counts.max(axis=1)
    rated = n_votes > 0
    labels = np.where(rated, np.argmax(counts, axis=1), -1).astype(np.int64)
    shares = np.divide(top, n_votes, out=np.zeros_like(top), where=rated)
    tied = rated & ((counts == top[:, None]).sum(axis=1) > 1)
    return MajorityResult(labels=labels, shares=shares, tied=tied, n_votes=n_votes.astype(np.int64))


# --------------------------------------------------------------------------------------------------
# Dawid-Skene


@dataclass(frozen=True)
class DawidSkeneResult:
    """Dawid-Skene estimates.

    ``posteriors[item, category]`` is the probability that the item's true label is ``category``
    (rows sum to 1); ``labels`` its argmax (lowest code on a tie). ``confusion[annotator, true,
    observed]`` is the probability that the annotator answers ``observed`` when the truth is ``true``
    (each row sums to 1; its diagonal is the annotator's per-class accuracy). ``priors[category]`` is
    the estimated share of each true class. ``n_iter`` counts the EM iterations run and ``converged``
    says whether the log-likelihood settled before ``max_iter``. ``log_likelihood`` is the
    observed-data log-likelihood per rating at the last E-step. ``n_votes[i]`` is the number of
    ratings of item ``i`` (``0``: its posterior is the prior).
    """

    posteriors: FloatArray
    labels: IntArray
    confusion: FloatArray
    priors: FloatArray
    n_iter: int
    converged: bool
    log_likelihood: float
    n_votes: IntArray

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape the CLI and API print."""
        return {
            "posteriors": self.posteriors.tolist(),
            "labels": self.labels.tolist(),
            "confusion": self.confusion.tolist(),
            "priors": self.priors.tolist(),
            "n_iter": self.n_iter,
            "converged": self.converged,
            "log_likelihood": self.log_likelihood,
            "n_votes": self.n_votes.tolist(),
        }


def _m_step(r: _Ratings, posteriors: FloatArray, rated: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Priors and confusion matrices from the posteriors.

    ``counts[a, t, k]`` is the expected number of items of true class ``t`` that annotator ``a``
    labelled ``k``; it is floored at :data:`SMOOTHING` (so that no log is ``-inf``) and each row
    ``counts[a, t, :]`` is normalised. Priors are the mean posterior of the rated items.
    """
    k = r.n_categories
    by_observed = np.zeros((r.n_annotators, k, k))
    # by_observed[a, code, :] += posteriors[item] for every rating, without a loop over items.
    np.add.at(by_observed, (r.annotator, r.code), posteriors[r.item])
    counts = np.maximum(by_observed.transpose(0, 2, 1), SMOOTHING)
    confusion = counts / counts.sum(axis=2, keepdims=True)
    priors = posteriors[rated].mean(axis=0)
    return priors, confusion


def _e_step(r: _Ratings, priors: FloatArray, confusion: FloatArray) -> tuple[FloatArray, float]:
    """Posteriors ``p(true | ratings)`` and the observed-data log-likelihood, summed in log space."""
    log_joint = np.tile(np.log(np.maximum(priors, SMOOTHING)), (r.n_items, 1))
    # log_joint[item, t] += log confusion[a, t, code] for every rating of the item.
    np.add.at(log_joint, r.item, np.log(confusion[r.annotator, :, r.code]))
    top = log_joint.max(axis=1, keepdims=True)
    scaled = np.exp(log_joint - top)
    total = scaled.sum(axis=1, keepdims=True)
    posteriors = scaled / total
    rated = np.bincount(r.item, minlength=r.n_items) > 0
    log_likelihood = float((np.log(total[:, 0]) + top[:, 0])[rated].sum())
    return posteriors, log_likelihood


def dawid_skene(
    ratings: ArrayLike, n_categories: int | None = None, max_iter: int = 100, tol: float = 1e-6
) -> DawidSkeneResult:
    """Dawid-Skene (1979) latent-class model of ``ratings[annotator, item]`` (NaN = missing), by EM.

    Each annotator has a confusion matrix, each item a latent true class drawn from the priors.
    Start: the posteriors are the majority-vote shares of each item, and a first M-step turns them
    into priors and confusion matrices. Then each iteration runs an E-step (posteriors from priors
    and confusion matrices, summed in log space) and an M-step (priors and confusion matrices from
    the posteriors), so the returned confusion matrices and priors belong to the returned posteriors.
    All sums run over the list of ratings at once (``np.add.at``); nothing loops over items.

    ``n_categories`` defaults to the highest code + 1. EM stops when an iteration raises the
    observed-data log-likelihood per rating by less than ``tol``, or after ``max_iter`` iterations.
    This matches crowd-kit's ``DawidSkene`` (same start, same order of steps, and the same guard
    against ``log(0)``: counts and priors are floored at :data:`SMOOTHING` = 1e-10, a floor rather
    than an additive pseudo-count, so estimates are not pulled towards uniform), and the two agree to
    rounding after the same number of iterations. Only the stopping rule differs: crowd-kit compares
    its evidence lower bound, which counts the log-prior once per rating rather than once per item
    and need not rise every step, so for the same ``tol`` the two may stop at different iterations.
    EM converges slowly near a fixed point: lower ``tol`` (say 1e-9) when posteriors must be final
    to several digits rather than only the labels.
    """
    if max_iter < 1:
        raise ValidationFailed(f"max_iter must be at least 1, got {max_iter}")
    r = _ratings(ratings, n_categories)
    counts = _vote_counts(r)
    n_votes = counts.sum(axis=1)
    rated = n_votes > 0
    posteriors = counts / np.where(rated, n_votes, 1.0)[:, None]
    priors, confusion = _m_step(r, posteriors, rated)

    previous = -np.inf
    converged = False
    n_iter = 0
    log_likelihood = -np.inf
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (read after the loop)
        posteriors, total = _e_step(r, priors, confusion)
        priors, confusion = _m_step(r, posteriors, rated)
        log_likelihood = total / r.code.size
        if log_likelihood - previous < tol:
            converged = True
            break
        previous = log_likelihood

    return DawidSkeneResult(
        posteriors=posteriors,
        labels=np.argmax(posteriors, axis=1).astype(np.int64),
        confusion=confusion,
        priors=priors,
        n_iter=n_iter,
        converged=converged,
        log_likelihood=float(log_likelihood),
        n_votes=n_votes.astype(np.int64),
    )
