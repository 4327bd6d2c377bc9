"""The words that tell current texts from reference ones, for people to read.

A domain classifier's largest weights make a poor summary: they favour words seen a handful of times
(an order number, a typo) that happen to fall on one side. Here each word is scored by its weighted
log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi and Quinn, "Fightin' Words",
*Political Analysis* 16(4), 2008): the difference of the word's log-odds in the two sets, shrunk
towards the pooled frequency and divided by its standard error, so a word counts by how surely, not
how extremely, it leans to one side. Only words of letters count (no numbers or ids), and English
stop words are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Letters only, three or more: ids, numbers and fragments are not words a person would read.
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"


def distinguishing_terms(
    reference: Sequence[str], current: Sequence[str], *, top: int = 10, min_count: int = 5
) -> dict[str, list[dict[str, Any]]]:
    """``{"current": [...], "reference": [...]}``: the ``top`` words most surely more frequent in the
    current texts (and in the reference ones), each ``{"term", "z", "current_share",
    "reference_share"}`` where a share is the fraction of texts on that side containing the word."""
    from sklearn.feature_extraction.text import CountVectorizer

    texts = [t for t in reference if t] + [t for t in current if t]
    n_ref = sum(1 for t in reference if t)
    if n_ref == 0 or n_ref == len(texts):
        return {"current": [], "reference": []}
    vectorizer = CountVectorizer(
        token_pattern=TOKEN_PATTERN, stop_words="english", lowercase=True, min_df=min(min_count, len(texts))
    )
    try:
        counts = vectorizer.fit_transform(texts)
    except ValueError:  # no word survives
        return {"current": [], "reference": []}
    words = vectorizer.get_feature_names_out()
    ref_counts = np.asarray(counts[:n_ref].sum(axis=0)).ravel().astype(float)
    cur_counts = np.asarray(counts[n_ref:].sum(axis=0)).ravel().astype(float)
    present = counts.copy()
    present.data[:] = 1
    ref_docs = np.asarray(present[:n_ref].sum(axis=0)).ravel() / n_ref
    cur_docs = np.asarray(present[n_ref:].sum(axis=0)).ravel() / (len(texts) - n_ref)
    prior = ref_counts + cur_counts  # the pooled counts, as the informative prior
    a0 = prior.sum()
    n_i, n_j = cur_counts.sum(), ref_counts.sum()
    # The rest of each side's mass; it is never below half a count, even for a corpus of one word.
    rest_i = np.maximum(n_i + a0 - cur_counts - prior, 0.5)
    rest_j = np.maximum(n_j + a0 - ref_counts - prior, 0.5)
    delta = np.log((cur_counts + prior) / rest_i) - np.log((ref_counts + prior) / rest_j)
    z = delta / np.sqrt(1.0 / (cur_counts + prior) + 1.0 / (ref_counts + prior))

    def pick(order: np.ndarray) -> list[dict[str, Any]]:
        return [
            {
                "term": str(words[i]),
                "z": float(z[i]),
                "current_share": float(cur_docs[i]),
                "reference_share": float(ref_docs[i]),
            }
            for i in order[:top]
        ]

    order = np.argsort(-z, kind="stable")
    return {"current": pick(order[z[order] > 0]), "reference": pick(order[::-1][z[order[::-1]] < 0])}
