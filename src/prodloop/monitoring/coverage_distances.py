"""Nearest-neighbour distances to the eval set, and the radius beyond which an input is uncovered.

Each production input's *distance to the eval set* is the cosine distance to its nearest eval example,
computed exactly, a block of the similarity matrix at a time so that memory stays small
(:data:`BLOCK_ELEMENTS` similarities at once, whatever the sizes). An input farther than the *radius*
from every eval example is **uncovered**.

The default radius (:func:`default_radius`) is a conformal bound: the ceil((n + 1)(1 - alpha))-th smallest of
the eval set's own leave-one-out nearest-neighbour distances (alpha = 0.05; n distinct eval examples). If
production traffic were drawn from the same distribution as the eval set, a production input would be
farther than this from every eval example with probability at most alpha, so **at most about 5% of traffic
counts as uncovered by chance**; an uncovered share well above that means traffic went where the eval
set is not. The radius depends on the eval set only: a shift in traffic cannot widen it. Duplicate
eval examples are counted once (a repeated example covers nothing more, and dropping it only raises
the radius). With fewer than 19 distinct examples the bound needs more than all of them: the radius is
then the largest leave-one-out distance. A caller may give a radius instead.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from prodloop.errors import ValidationFailed

#: The share of in-distribution traffic that the default radius lets fall outside by chance.
DEFAULT_ALPHA = 0.05
#: Similarities held in memory at once when searching nearest neighbours (16 MiB in float32).
BLOCK_ELEMENTS = 1 << 22
#: Distances within this of zero count as duplicates.
_DUPLICATE_DECIMALS = 6


def _unit_rows(vectors: Any, what: str) -> np.ndarray:
    """``vectors`` as a 2-D float array with rows of unit length."""
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise ValidationFailed(f"{what} must be a 2-D array of vectors, got shape {array.shape}")
    array = array.astype(np.result_type(array.dtype, np.float32), copy=False)
    if not np.isfinite(array).all():
        raise ValidationFailed(f"{what} holds NaN or infinite values; embed the texts again")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if array.shape[0] and (norms == 0).any():
        raise ValidationFailed(f"{what} holds all-zero vectors, which have no direction to compare")
    return array / norms


def _max_dot(
    a: np.ndarray, b: np.ndarray, *, skip_self: bool = False, block_elements: int = BLOCK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``: the largest dot product with a row of ``b`` and that row's index.

    Blocks of at most ``block_elements`` products are computed at a time. With ``skip_self`` (``a`` is
    ``b``) a row is not compared with itself."""
    n, m = a.shape[0], b.shape[0]
    best = np.full(n, -np.inf, dtype=np.result_type(a.dtype, b.dtype))
    where = np.full(n, -1, dtype=np.int64)
    if n == 0 or m == 0:
        return best, where
    cols = max(1, min(m, block_elements))
    rows = max(1, block_elements // cols)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        for c0 in range(0, m, cols):
            c1 = min(m, c0 + cols)
            block = a[r0:r1] @ b[c0:c1].T
            if skip_self:
                lo, hi = max(r0, c0), min(r1, c1)
                if lo < hi:
                    diagonal = np.arange(lo, hi)
                    block[diagonal - r0, diagonal - c0] = -np.inf
            top = block.argmax(axis=1)
            value = block[np.arange(r1 - r0), top]
            better = value > best[r0:r1]
            best[r0:r1][better] = value[better]
            where[r0:r1][better] = top[better] + c0
    return best, where


def nearest_eval_distances(
    production: Any, eval_set: Any, *, block_elements: int = BLOCK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """Each production vector's cosine distance to its nearest eval vector, and that vector's index.

    Exact (no index), in blocks of at most ``block_elements`` similarities, so 100,000 by 10,000 vectors
    need a few tens of MiB besides the vectors themselves. Vectors need not be normalised."""
    return _nearest(
        _unit_rows(production, "production vectors"), _unit_rows(eval_set, "eval vectors"), block_elements
    )


def _nearest(p: np.ndarray, e: np.ndarray, block_elements: int) -> tuple[np.ndarray, np.ndarray]:
    if p.shape[1] != e.shape[1]:
        raise ValidationFailed(
            f"production vectors have {p.shape[1]} dimensions and eval vectors {e.shape[1]}: embed both "
            "with the same model"
        )
    if e.shape[0] == 0:
        raise ValidationFailed("the eval set has no vectors: nothing can cover production traffic")
    similarity, index = _max_dot(p, e, block_elements=block_elements)
    return np.clip(1.0 - similarity.astype(np.float64), 0.0, 2.0), index


def _distinct(unit: np.ndarray) -> np.ndarray:
    _, first = np.unique(np.round(unit, _DUPLICATE_DECIMALS), axis=0, return_index=True)
    return unit[np.sort(first)]


def default_radius(eval_set: Any, *, alpha: float = DEFAULT_ALPHA) -> float:
    """The conformal radius of an eval set: the ceil((n + 1)(1 - alpha))-th smallest leave-one-out
    nearest-neighbour cosine distance among its n distinct vectors (the largest when that rank is
    beyond n). Traffic like the eval set falls outside it with probability at most ``alpha``."""
    if not 0 < alpha < 1:
        raise ValidationFailed(f"alpha must be between 0 and 1, got {alpha}")
    distinct = _distinct(_unit_rows(eval_set, "eval vectors"))
    n = distinct.shape[0]
    if n < 2:
        raise ValidationFailed(
            f"the eval set has {n} distinct example(s): the default radius needs at least 2; give a radius"
        )
    similarity, _ = _max_dot(distinct, distinct, skip_self=True)
    loo = np.sort(np.clip(1.0 - similarity.astype(np.float64), 0.0, 2.0))
    rank = min(n, math.ceil((n + 1) * (1 - alpha)))
    return float(loo[rank - 1])


def mean_pairwise_distance(vectors: Any) -> float:
    """The mean cosine distance between two distinct rows (duplicates counted once), in O(n·d):
    for unit vectors the sum of all dot products is the squared norm of their sum."""
    distinct = _distinct(_unit_rows(vectors, "eval vectors")).astype(np.float64)
    n = distinct.shape[0]
    if n < 2:
        return 1.0
    total = float(np.dot(distinct.sum(axis=0), distinct.sum(axis=0)))
    return float(np.clip(1.0 - (total - n) / (n * (n - 1)), 0.0, 2.0))
