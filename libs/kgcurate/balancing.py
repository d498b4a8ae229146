"""Balanced sampling maths, pure Python (no Spark): coins, thresholds, t from a target size or tail share.

MetaCLIP keeps a pair with probability ``1 - prod_e (1 - p_e)``, ``p_e = min(1, t / count_e)``. With
deterministic coins ``u_e = u(pair_id, entry_id, seed)`` the coin of e succeeds when ``u_e < p_e``,
i.e. when ``u_e * count_e < t``; so a pair is kept exactly when ``t > threshold = min_e u_e * count_e``.
That makes the curated sets for growing t nested, and lets a target size N be met exactly by taking
t just above the N-th smallest threshold.

``coin`` reproduces Spark's ``xxhash64(pair_id, entry_id, seed)`` (all three as bigint) bit for bit,
so a run can be re-checked outside Spark: u = (hash & (2^53 - 1)) / 2^53, uniform in [0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

MASK53 = (1 << 53) - 1
TWO53 = float(1 << 53)
_M64 = (1 << 64) - 1
_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5
SPARK_HASH_SEED = 42  # Spark's xxhash64 starts from seed 42 and chains the columns


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def xxh64_long(value: int, seed: int) -> int:
    """XXH64 of one 8-byte little-endian long (Spark's ``XXH64.hashLong``), as an unsigned 64-bit int."""
    h = (seed + _P5 + 8) & _M64
    h ^= (_rotl((value * _P2) & _M64, 31) * _P1) & _M64
    h = (_rotl(h, 27) * _P1 + _P4) & _M64
    h ^= h >> 33
    h = (h * _P2) & _M64
    h ^= h >> 29
    h = (h * _P3) & _M64
    h ^= h >> 32
    return h


def spark_xxhash64_longs(*values: int) -> int:
    """Spark's ``xxhash64(c1, c2, ...)`` over bigint columns, as the signed long Spark returns."""
    h = SPARK_HASH_SEED
    for v in values:
        h = xxh64_long(v & _M64, h)
    return h - (1 << 64) if h >= 1 << 63 else h


def coin(pair_id: int, key: int, seed: int) -> float:
    """u(pair, entry, seed) in [0, 1): 53 hash bits, exactly what the Spark job computes."""
    return (spark_xxhash64_longs(pair_id, key, seed) & MASK53) / TWO53


def pair_threshold(coins_and_counts: Iterable[tuple[float, int]]) -> float:
    """min_e u_e * count_e: the pair is kept for every t above this."""
    return min(u * c for u, c in coins_and_counts)


def entry_probability(count: int, t: float) -> float:
    return min(1.0, t / count)


def keep_probability(counts: Iterable[int], t: float) -> float:
    """1 - prod_e (1 - p_e): the chance a pair with these entry counts is kept."""
    miss = 1.0
    for c in counts:
        miss *= 1.0 - entry_probability(c, t)
    return 1.0 - miss


def t_above(threshold: float) -> float:
    """The smallest t that keeps a pair with this threshold (kept means t > threshold)."""
    return math.nextafter(threshold, math.inf)


def locate_kth(bucket_counts: Sequence[int], k: int) -> tuple[int, int]:
    """(bucket, rank inside it) of the k-th smallest value (1-based) given counts per ordered bucket."""
    if k < 1:
        raise ValueError("k must be >= 1")
    seen = 0
    for b, n in enumerate(bucket_counts):
        if seen + n >= k:
            return b, k - seen
        seen += n
    raise ValueError(f"k={k} exceeds the {seen} values in the histogram")


def cut_in_sorted(rows: Sequence[tuple[float, int]], k: int) -> tuple[float, int | None]:
    """From the rows (threshold, pair_id) of the final bucket, sorted, the cut that keeps exactly k of them.

    Returns (tau, tie_pair_id): keep rows with threshold < tau, plus, when rows tie at tau across the cut,
    those at tau with pair_id <= tie_pair_id (ties are broken by pair_id, so the size is exact and the rule
    is the same on any cluster). tie_pair_id is None when no tie straddles the cut.
    """
    tau, pid = rows[k - 1]
    straddles = k < len(rows) and rows[k][0] == tau
    return tau, (pid if straddles else None)


def p_to_t(hist: Iterable[tuple[int, int]], p: float) -> float:
    """MetaCLIP's tail share -> t, from a histogram of (count, number of entries with that count).

    MetaCLIP sorts the entry counts, takes the cumulative share of all matches after each entry and
    picks the count of the entry whose cumulative share is closest to p (first one on a tie):
    entries with counts up to t then hold about the share p of all matches. Entries with count 0 are not
    in the histogram (they hold no matches and cannot be the answer of a sensible p).
    """
    if not 0.0 < p <= 1.0:
        raise ValueError("tail share must be in (0, 1]")
    groups = sorted((int(c), int(n)) for c, n in hist if c > 0 and n > 0)
    total = sum(c * n for c, n in groups)
    if total == 0:
        raise ValueError("no matches: nothing to balance")
    best_t, best_d = float(groups[0][0]), math.inf
    before = 0
    for c, n in groups:
        # the entry j (1..n) in this group whose cumulative share (before + j*c)/total is closest to p
        j = min(n, max(1, round((p * total - before) / c)))
        for cand in {max(1, j - 1), j, min(n, j + 1)}:
            d = abs((before + cand * c) / total - p)
            if d < best_d:
                best_t, best_d = float(c), d
        before += c * n
    return best_t


def t_to_p(hist: Iterable[tuple[int, int]], t: float) -> float:
    """MetaCLIP's t -> tail share: the share of all matches held by all entries with count up to t (``<= t``,
    the tail as the report counts it). ``p_to_t`` may pick t part-way through the entries sharing that
    count, so ``t_to_p(h, p_to_t(h, p))`` can exceed ``p`` when many entries share t."""
    groups = [(int(c), int(n)) for c, n in hist]
    total = sum(c * n for c, n in groups)
    return sum(c * n for c, n in groups if c <= t) / total if total else 0.0


def expected_counts_after(hist: Iterable[tuple[int, int]], t: float) -> list[tuple[float, int]]:
    """Per-entry expected count after balancing if each pair named one entry: min(count, t)."""
    return [(min(float(c), t), n) for c, n in hist]


def basis_bound(t: float, target_size: int | None, pairs_out: int, matched: int) -> float:
    """A bound every matched pair a recorded run did NOT keep has its threshold at or above.

    Thresholds only rise while ``matches`` only grows (a pair's entries stay, counts only increase), so
    the bound still holds for those pairs at any later version: a later run whose cut lies below it
    needs only the recorded run's kept pairs and the pairs matched since. A ``--t`` run kept
    threshold < t; a ``--target-size`` run kept threshold <= tau (ties at tau broken on pair_id) and
    recorded t just above tau, so tau is the bound; a run that kept every matched pair leaves none out.
    """
    if pairs_out >= matched:
        return math.inf
    if target_size is not None:
        return math.nextafter(t, -math.inf)
    return t


def builds_on(bound: float, t: float | None, target: int | None, below_bound: int) -> bool:
    """Whether a run can take its cut from a recorded run's kept pairs plus the newly matched ones.

    ``--t``: every pair left out before stays out when ``t <= bound``. ``--target-size``: the N-th
    smallest threshold is among the candidates when at least N of them lie strictly below the bound
    (``below_bound``), or when the recorded run left nothing out (an infinite bound)."""
    if t is not None:
        return t <= bound
    assert target is not None
    return math.isinf(bound) or below_bound >= target
