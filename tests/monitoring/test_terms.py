"""The words that tell current texts from reference ones: Monroe et al.'s weighted log-odds with an
informative Dirichlet prior, computed by hand on a small corpus, and what is left out."""

from __future__ import annotations

import math

import pytest

from prodloop.monitoring.terms import distinguishing_terms

REFERENCE = ["where is my order"] * 6 + ["refund my order please"] * 4
CURRENT = ["my vault lock will not pair 4417"] * 5 + ["where is my order"] * 5


def _z(word_cur: float, word_ref: float, n_cur: float, n_ref: float, prior: float, a0: float) -> float:
    delta = math.log((word_cur + prior) / (n_cur + a0 - word_cur - prior)) - math.log(
        (word_ref + prior) / (n_ref + a0 - word_ref - prior)
    )
    return delta / math.sqrt(1 / (word_cur + prior) + 1 / (word_ref + prior))


def test_scores_are_the_weighted_log_odds_with_the_pooled_prior() -> None:
    words = distinguishing_terms(REFERENCE, CURRENT, top=10, min_count=1)
    # Counted words (stop words such as "please" and short words out): order, refund, vault, lock, pair.
    ref = {"order": 10, "refund": 4}
    cur = {"vault": 5, "lock": 5, "pair": 5, "order": 5}
    n_ref, n_cur = sum(ref.values()), sum(cur.values())
    a0 = n_ref + n_cur
    expected = {
        w: _z(cur.get(w, 0), ref.get(w, 0), n_cur, n_ref, cur.get(w, 0) + ref.get(w, 0), a0)
        for w in set(ref) | set(cur)
    }
    got = {t["term"]: t["z"] for t in words["current"] + words["reference"]}
    assert got == pytest.approx(expected)
    assert {t["term"] for t in words["current"]} == {"vault", "lock", "pair"}
    assert words["reference"][0]["term"] == "order"
    vault = next(t for t in words["current"] if t["term"] == "vault")
    assert (vault["current_share"], vault["reference_share"]) == (0.5, 0.0)


def test_numbers_ids_and_stop_words_are_not_terms() -> None:
    reference = [f"order {n} is late" for n in range(40)]
    current = [f"order A{n}x99 is late 12345" for n in range(40)]
    words = distinguishing_terms(reference, current, min_count=1)
    terms = {t["term"] for t in words["current"] + words["reference"]}
    assert not any(ch.isdigit() for term in terms for ch in term)
    assert "is" not in terms


def test_nothing_to_tell_apart_gives_no_terms() -> None:
    assert distinguishing_terms([], ["a text"]) == {"current": [], "reference": []}
    same = distinguishing_terms(["where is my order"] * 5, ["where is my order"] * 5, min_count=1)
    assert all(abs(t["z"]) < 1e-9 for t in same["current"] + same["reference"]) or same == {
        "current": [],
        "reference": [],
    }
