"""Balancing maths without Spark: coins, thresholds, exact k-th selection, MetaCLIP's p <-> t."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from kgcurate import balancing


def test_coin_is_uniform_and_deterministic() -> None:
    us = [balancing.coin(p, e, 0) for p in range(200) for e in range(50)]
    assert all(0.0 <= u < 1.0 for u in us)
    assert abs(np.mean(us) - 0.5) < 0.01
    assert abs(np.var(us) - 1 / 12) < 0.003
    hist, _ = np.histogram(us, bins=10, range=(0, 1))
    assert hist.min() > 900 and hist.max() < 1100
    assert balancing.coin(123, 456, 7) == balancing.coin(123, 456, 7)
    assert balancing.coin(123, 456, 7) != balancing.coin(123, 456, 8)
    assert balancing.coin(-5, 2**62, 0) != balancing.coin(-5, 2**62 + 1, 0)


def test_spark_hash_of_longs_is_a_signed_long() -> None:
    h = [balancing.spark_xxhash64_longs(i, -i) for i in range(1000)]
    assert all(-(2**63) <= x < 2**63 for x in h)
    assert any(x < 0 for x in h) and any(x > 0 for x in h)


def test_threshold_rule_equals_independent_coins() -> None:
    """Keeping when t > min_e u_e * count_e is exactly 'some coin u_e < min(1, t/count_e) succeeds'."""
    rng = random.Random(3)
    for pid in range(3000):
        entries = rng.sample(range(1000), rng.randint(1, 4))
        counts = {e: rng.choice([1, 3, 10, 100, 5000]) for e in entries}
        t = rng.choice([0.5, 2.0, 10.0, 77.0, 1e4])
        coins = {e: balancing.coin(pid, e, 9) for e in entries}
        by_coins = any(coins[e] < balancing.entry_probability(counts[e], t) for e in entries)
        by_threshold = t > balancing.pair_threshold((coins[e], counts[e]) for e in entries)
        assert by_coins == by_threshold


def test_kept_fraction_matches_keep_probability() -> None:
    rng = random.Random(4)
    pairs = [[rng.choice([5, 50, 500, 5000]) for _ in range(rng.randint(1, 3))] for _ in range(20_000)]
    t = 40.0
    kept = 0
    expected = 0.0
    for pid, counts in enumerate(pairs):
        th = balancing.pair_threshold((balancing.coin(pid, j, 1), c) for j, c in enumerate(counts))
        kept += t > th
        expected += balancing.keep_probability(counts, t)
    var = sum(balancing.keep_probability(c, t) * (1 - balancing.keep_probability(c, t)) for c in pairs)
    assert abs(kept - expected) < 4.5 * math.sqrt(var)


def test_locate_kth() -> None:
    assert balancing.locate_kth([3, 0, 2, 5], 1) == (0, 1)
    assert balancing.locate_kth([3, 0, 2, 5], 3) == (0, 3)
    assert balancing.locate_kth([3, 0, 2, 5], 4) == (2, 1)
    assert balancing.locate_kth([3, 0, 2, 5], 10) == (3, 5)
    with pytest.raises(ValueError):
        balancing.locate_kth([3, 0, 2, 5], 11)
    with pytest.raises(ValueError):
        balancing.locate_kth([3], 0)


def test_cut_in_sorted_breaks_ties_by_pair_id() -> None:
    rows = [(0.1, 9), (0.2, 1), (0.2, 4), (0.2, 7), (0.5, 2)]
    assert balancing.cut_in_sorted(rows, 1) == (0.1, None)
    assert balancing.cut_in_sorted(rows, 3) == (0.2, 4)  # two of the three tied rows, the lower pair ids
    assert balancing.cut_in_sorted(rows, 4) == (0.2, None)  # every tie inside: threshold <= 0.2 keeps 4
    assert balancing.cut_in_sorted(rows, 5) == (0.5, None)


def test_t_above_keeps_the_threshold_itself() -> None:
    for th in [0.0, 1e-300, 0.3, 12.5, 1e12]:
        t = balancing.t_above(th)
        assert t > th and not (t > balancing.t_above(t) or th >= t)
        assert math.nextafter(t, -math.inf) == th


def metaclip_p_to_t(counts: np.ndarray, p: float) -> int:
    """MetaCLIP curation/curate.py p_to_t, written plainly."""
    c = np.sort(counts)
    portion = np.cumsum(c) / c.sum()
    return int(c[np.abs(portion - p).argmin()])


@pytest.mark.parametrize("seed", range(8))
def test_p_to_t_matches_metaclip_on_random_counts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    counts = np.maximum(1, rng.zipf(1.6, size=rng.integers(5, 3000))).astype(np.int64)
    counts = np.minimum(counts, 10**7)
    values, mult = np.unique(counts, return_counts=True)
    hist = list(zip(values.tolist(), mult.tolist(), strict=True))
    for p in [0.01, 0.1, 0.3, 0.5, 0.9, 1.0]:
        assert balancing.p_to_t(hist, p) == metaclip_p_to_t(counts, p), p


def test_t_to_p_and_validation() -> None:
    hist = [(1, 10), (10, 3), (100, 1)]  # 10 + 30 + 100 = 140 matches
    assert balancing.t_to_p(hist, 5) == pytest.approx(10 / 140)
    assert balancing.t_to_p(hist, 10) == balancing.t_to_p(hist, 99) == pytest.approx(40 / 140)  # up to t
    assert balancing.t_to_p(hist, 100) == pytest.approx(1.0)
    assert balancing.t_to_p(hist, balancing.p_to_t(hist, 0.3)) == pytest.approx(40 / 140)
    # t picked part-way through the count-10 group (1 of 3 entries: 20/140 is nearest 0.15), all of it counted
    assert balancing.p_to_t(hist, 0.15) == 10 and balancing.t_to_p(hist, 10) == pytest.approx(40 / 140)
    with pytest.raises(ValueError):
        balancing.p_to_t(hist, 0.0)
    with pytest.raises(ValueError):
        balancing.p_to_t([], 0.5)
    assert balancing.expected_counts_after(hist, 10) == [(1.0, 10), (10.0, 3), (10.0, 1)]


def _pool(rng: random.Random, n: int, start: int, entries: int) -> dict[int, list[int]]:
    """n pairs (ids from start), each naming 1-3 entries drawn with a heavy head."""
    return {start + i: sorted({int(entries * rng.random() ** 3) for _ in range(rng.randint(1, 3))}) for i in range(n)}


def _thresholds(pool: dict[int, list[int]], seed: int) -> dict[int, float]:
    counts: dict[int, int] = {}
    for es in pool.values():
        for e in es:
            counts[e] = counts.get(e, 0) + 1
    return {p: balancing.pair_threshold((balancing.coin(p, e, seed), counts[e]) for e in es) for p, es in pool.items()}


def _target_set(th: dict[int, float], n: int) -> set[int]:
    """The n pairs with the smallest thresholds, ties broken on pair_id (the stage's rule)."""
    return {p for _, p in sorted((v, p) for p, v in th.items())[:n]}


@pytest.mark.parametrize("trial", range(12))
def test_a_run_built_on_a_recorded_one_selects_what_all_matches_give(trial: int) -> None:
    """Grow a pool, select from (the recorded run's kept pairs + the new ones) whenever ``builds_on``
    allows it: the same set as selecting from every pair, for --t and --target-size."""
    rng = random.Random(trial)
    seed, entries = trial * 7 + 1, rng.choice([20, 200])
    pool = _pool(rng, 3000, 0, entries)
    th = _thresholds(pool, seed)
    by_t = rng.random() < 0.5
    if by_t:
        t0 = float(rng.choice([2, 8, 30]))
        kept = {p for p, v in th.items() if v < t0}
        bound = balancing.basis_bound(t0, None, len(kept), len(pool))
    else:
        n0 = rng.choice([300, 1500, 3000])
        kept = _target_set(th, n0)
        tau = max(th[p] for p in kept)
        bound = balancing.basis_bound(balancing.t_above(tau), n0, len(kept), len(pool))
    assert all(v >= bound for p, v in th.items() if p not in kept)
    pool.update(_pool(rng, rng.choice([100, 1500]), 10_000, entries))
    th = _thresholds(pool, seed)
    assert all(v >= bound for p, v in th.items() if p < 10_000 and p not in kept), "thresholds only rise"
    candidates = {p: v for p, v in th.items() if p in kept or p >= 10_000}
    built = 0
    for t in (1.0, 4.0, 16.0, 64.0):
        if balancing.builds_on(bound, t, None, 0):
            built += 1
            assert {p for p, v in candidates.items() if v < t} == {p for p, v in th.items() if v < t}
    for n in (100, 600, 2000, 4000):
        below = sum(v < bound for v in candidates.values())
        if balancing.builds_on(bound, None, n, below):
            built += 1
            assert _target_set(candidates, n) == _target_set(th, n)
    assert built or not kept


def test_basis_bound_and_builds_on() -> None:
    assert balancing.basis_bound(5.0, None, 10, 100) == 5.0
    assert balancing.basis_bound(5.0, 10, 10, 100) == math.nextafter(5.0, -math.inf)
    assert balancing.basis_bound(5.0, 10, 100, 100) == math.inf  # kept every matched pair
    assert balancing.builds_on(5.0, 5.0, None, 0) and not balancing.builds_on(5.0, 5.5, None, 0)
    assert balancing.builds_on(5.0, None, 10, 10) and not balancing.builds_on(5.0, None, 11, 10)
    assert balancing.builds_on(math.inf, None, 10**9, 0)


def test_a_run_id_does_not_depend_on_how_t_is_spelled() -> None:
    """YAML's `t: 20` is an int, --t 20 a float: one run, or a rerun wrote a second identical partition."""
    from kgcurate.stages.balance import run_id_for

    versions = {"matches": 3, "entry_counts": 3}
    base = {"target_size": None, "tail_share": None, "seed": 0, "per_qid": False}
    assert run_id_for({**base, "t": 20}, versions) == run_id_for({**base, "t": 20.0}, versions)
    assert run_id_for({**base, "t": 20}, versions) != run_id_for({**base, "t": 21}, versions)
    share = {**base, "t": None}
    assert run_id_for({**share, "tail_share": 1}, versions) == run_id_for({**share, "tail_share": 1.0}, versions)
