"""The match and balance Spark jobs on small real lakes, checked against plain-Python references."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest
from pyspark.sql import functions as F

from helpers import execute
from kgcurate import balancing, config, ids, lake, tables
from kgcurate.stages import balance as balance_stage
from kgcurate.stages import build_metadata
from kgcurate.stages import match as match_stage
from test_matching import make_captions, make_entries, ref_match

pytestmark = pytest.mark.spark

SOURCES = ["wordnet", "metaclip", "kg"]


META_DDL = "entry string, source string, qid string"


def write_metadata(spark, root: str, entries: list[tuple[int, str]]) -> list[tuple[int, str, list[str]]]:
    """Metadata as build-metadata derives it: one row per distinct string, whatever lists it. KG entries
    get qids, one qid owns several names, and a string listed twice ("dog") keeps both lists' provenance."""
    rows = []
    for i, (_, entry) in enumerate(entries):
        source = SOURCES[i % 3]
        qid = f"Q{100 + i % 40}" if source == "kg" else None
        rows.append((entry, source, qid))
    df = build_metadata.derive(spark.createDataFrame(rows, META_DDL))
    lake.overwrite(spark, root, tables.METADATA, df)
    return [(r["entry_id"], r["entry"], list(r["qids"])) for r in df.collect()]


def ref_groups(meta: list[tuple[int, str, list[str]]], lowercase: bool = False) -> list[tuple[int, str, list[str]]]:
    """The entries matching uses: with lowercase, strings equal after lower() are one entry, the smallest
    id standing for all, holding every qid of the group."""
    if not lowercase:
        return meta
    groups: dict[str, list[tuple[int, str, list[str]]]] = defaultdict(list)
    for m in meta:
        groups[m[1].lower()].append(m)
    return [(min(g)[0], min(g)[1], sorted({q for m in g for q in m[2]})) for g in groups.values()]


def append_pairs(spark, root: str, captions: list[str], start: int) -> None:
    rows = [(f"http://img.example/{start + i}.jpg", c, "alt", f"http://page.example/{start + i}")
            for i, c in enumerate(captions)]
    df = (spark.createDataFrame(rows, "image_url string, text string, text_source string, page_url string")
          .withColumn("pair_id", ids.pair_id())
          .withColumn("crawl", F.lit("CC-TEST")).withColumn("source_file", F.lit("test.wat.gz"))
          .withColumn("run_id", F.lit(f"r{start}")))
    lake.append(spark, root, tables.PAIRS, df)


def reference(spark, root: str, meta: list[tuple[int, str, list[str]]], lowercase: bool = False):
    groups = ref_groups(meta, lowercase)
    entries = [(eid, e) for eid, e, _ in groups]
    qids_of = {eid: q for eid, _, q in groups}
    pairs = lake.read(spark, root, tables.PAIRS).select("pair_id", "text").collect()
    matches = {(p["pair_id"], e) for p in pairs for e in ref_match(p["text"], entries, lowercase)}
    entry_counts = Counter(e for _, e in matches)
    per_pair_qids = defaultdict(set)
    for p, e in matches:
        per_pair_qids[p].update(qids_of[e])
    qid_counts = Counter(q for qs in per_pair_qids.values() for q in qs)
    return matches, dict(entry_counts), dict(qid_counts)


def lake_state(spark, root: str):
    matches = [(r[0], r[1]) for r in lake.read(spark, root, tables.MATCHES).collect()]
    entry_counts = {r[0]: r[1] for r in lake.read(spark, root, tables.ENTRY_COUNTS).collect()}
    qid_counts = {r[0]: r[1] for r in lake.read(spark, root, tables.QID_COUNTS).collect()}
    return matches, entry_counts, qid_counts


def cfg_for(root: str, **sections) -> dict:
    cfg = config.load(None)
    cfg["lake"] = root
    for dotted, value in sections.items():
        config.set_if_given(cfg, dotted.replace("__", "."), value)
    return cfg


@pytest.fixture(scope="module")
def corpus():
    rng = random.Random(99)
    entries = make_entries(rng)
    return entries, make_captions(rng, entries, 10_000)


def test_full_then_incremental_match_equals_reference(spark, tmp_path, corpus) -> None:
    root = str(tmp_path / "lake")
    entries, captions = corpus
    meta = write_metadata(spark, root, entries)
    half = len(captions) // 2
    append_pairs(spark, root, captions[:half], 0)

    s1 = execute(match_stage, spark, cfg_for(root))
    assert s1.mode == "full"
    assert s1.pairs_matched == half

    append_pairs(spark, root, captions[half:], half)
    s2 = execute(match_stage, spark, cfg_for(root))
    assert s2.mode == "incremental"
    assert s2.pairs_matched == len(captions) - half  # old pairs were not matched again

    want_m, want_e, want_q = reference(spark, root, meta)
    got_m, got_e, got_q = lake_state(spark, root)
    assert len(got_m) == len(set(got_m)), "no duplicate (pair, entry) rows"
    assert set(got_m) == want_m
    assert got_e == want_e
    assert got_q == want_q
    assert s1.matches + s2.matches == len(want_m)

    # nothing new: up to date, nothing rewritten
    v = lake.version(spark, root, tables.MATCHES)
    s3 = execute(match_stage, spark, cfg_for(root))
    assert s3.up_to_date and lake.version(spark, root, tables.MATCHES) == v

    # a full re-run gives the same tables as incremental
    s4 = execute(match_stage, spark, cfg_for(root, match__full=True))
    assert s4.mode == "full"
    full_m, full_e, full_q = lake_state(spark, root)
    assert set(full_m) == want_m and full_e == want_e and full_q == want_q


def test_incremental_recovers_from_a_run_that_died_after_writing_matches(spark, tmp_path, corpus) -> None:
    root = str(tmp_path / "lake")
    entries, captions = corpus
    meta = write_metadata(spark, root, entries[:120])
    append_pairs(spark, root, captions[:1500], 0)
    execute(match_stage, spark, cfg_for(root))
    append_pairs(spark, root, captions[1500:3000], 1500)
    # simulate a run killed after its matches append: garbage rows appended, counts overwritten
    junk = spark.createDataFrame([(1, 2), (3, 4)], tables.schema(tables.MATCHES))
    lake.append(spark, root, tables.MATCHES, junk)
    bogus = spark.createDataFrame([(5, 99)], tables.schema(tables.ENTRY_COUNTS))
    lake.overwrite(spark, root, tables.ENTRY_COUNTS, bogus)
    s = execute(match_stage, spark, cfg_for(root))
    assert s.mode == "incremental"
    want_m, want_e, want_q = reference(spark, root, meta)
    got_m, got_e, got_q = lake_state(spark, root)
    assert sorted(got_m) == sorted(want_m) and got_e == want_e and got_q == want_q


def test_changed_metadata_or_options_rematch_everything(spark, tmp_path, corpus) -> None:
    root = str(tmp_path / "lake")
    entries, captions = corpus
    write_metadata(spark, root, entries[:80])
    append_pairs(spark, root, captions[:800], 0)
    execute(match_stage, spark, cfg_for(root))
    meta = write_metadata(spark, root, entries[40:160])
    s = execute(match_stage, spark, cfg_for(root))
    assert s.mode == "full" and "metadata changed" in s.reason
    want_m, want_e, _ = reference(spark, root, meta)
    got_m, got_e, _ = lake_state(spark, root)
    assert set(got_m) == want_m and got_e == want_e
    s = execute(match_stage, spark, cfg_for(root, match__lowercase=True))
    assert s.mode == "full" and "lowercase" in s.reason
    want_m, want_e, want_q = reference(spark, root, meta, lowercase=True)
    assert (set(lake_state(spark, root)[0]), *lake_state(spark, root)[1:]) == (want_m, want_e, want_q)


def test_unmatchable_entries_go_to_bad_records(spark, tmp_path) -> None:
    root = str(tmp_path / "lake")
    write_metadata(spark, root, [(0, "dog"), (1, "   "), (2, "cat")])
    append_pairs(spark, root, ["a dog", "a cat and a dog", "nothing"], 0)
    s = execute(match_stage, spark, cfg_for(root))
    assert s.entries_skipped == 1 and s.pairs_with_match == 2 and s.matches == 3
    bad = lake.read(spark, root, tables.BAD_RECORDS).collect()
    assert len(bad) == 1 and bad[0]["job"] == "match" and "empty" in bad[0]["reason"]


def test_metadata_without_kg_entries_gives_empty_qid_counts(spark, tmp_path) -> None:
    """WordNet-only metadata: entry counts as usual, qid_counts written and empty, also incrementally."""
    root = str(tmp_path / "lake")
    df = build_metadata.derive(spark.createDataFrame([("dog", "wordnet", None), ("cat", "metaclip", None)], META_DDL))
    lake.overwrite(spark, root, tables.METADATA, df)
    eid = {r["entry"]: r["entry_id"] for r in df.collect()}
    append_pairs(spark, root, ["a dog", "a cat and a dog", "nothing"], 0)
    assert execute(match_stage, spark, cfg_for(root)).mode == "full"
    append_pairs(spark, root, ["dog dog"], 10)
    assert execute(match_stage, spark, cfg_for(root)).mode == "incremental"
    counts = {r["entry_id"]: r["count"] for r in lake.read(spark, root, tables.ENTRY_COUNTS).collect()}
    assert counts == {eid["dog"]: 3, eid["cat"]: 1}
    assert lake.read(spark, root, tables.QID_COUNTS).count() == 0


# --- balance -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [{"balance__target_size": 10}, {"balance__t": 5.0}])
def test_balance_of_a_lake_where_nothing_matched_is_one_clear_error(spark, tmp_path, mode) -> None:
    """Captions that match no entry: balance says so in one line (``--target-size`` used to raise a
    TypeError on the empty frame's null threshold range) and writes no curated set."""
    from kgcurate.errors import UserError

    root = str(tmp_path / "lake")
    write_metadata(spark, root, [(0, "dog")])
    append_pairs(spark, root, ["a cat", "nothing at all"], 0)
    assert execute(match_stage, spark, cfg_for(root)).matches == 0
    if "balance__t" in mode:  # a plain cut of nothing: an empty set, as before
        assert execute(balance_stage, spark, cfg_for(root, **mode)).pairs_out == 0
        return
    with pytest.raises(UserError, match="no matched pairs in lake .*: nothing to balance"):
        execute(balance_stage, spark, cfg_for(root, **mode))
    assert lake.version(spark, root, tables.CURATION_RUNS) is None


def build_matched_lake(spark, root: str, n_pairs: int, n_entries: int, seed: int, single: bool = False):
    """pairs/metadata/matches/counts written directly: Zipf-like entry popularity, 1-3 entries a pair."""
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) for i in range(n_entries)]
    meta_rows = [(f"entry{i}", "kg" if i % 2 else "wordnet", f"Q{i // 4}" if i % 2 else None) for i in range(n_entries)]
    meta = build_metadata.derive(spark.createDataFrame(meta_rows, META_DDL))
    lake.overwrite(spark, root, tables.METADATA, meta)
    eids = {r["entry"]: r["entry_id"] for r in meta.collect()}
    qid_of = {eids[e]: q for e, _, q in meta_rows}
    names = [f"entry{i}" for i in range(n_entries)]
    pair_rows, match_rows = [], []
    for i in range(n_pairs):
        text = f"caption {i}"
        url = f"http://img.example/{i}.jpg"
        pair_rows.append((url, text, "alt"))
        k = 1 if single else rng.choice([1, 1, 2, 3])
        for e in set(rng.choices(names, weights=weights, k=k)):
            match_rows.append((url, text, eids[e]))
    for j in range(n_pairs // 10):  # pairs that match nothing
        pair_rows.append((f"http://img.example/u{j}.jpg", f"nothing {j}", "alt"))
    pairs = spark.createDataFrame(pair_rows, "image_url string, text string, text_source string").withColumn(
        "pair_id", ids.pair_id())
    lake.overwrite(spark, root, tables.PAIRS, pairs.select(
        "pair_id", "image_url", "text", "text_source", *[F.lit(None).cast("string").alias(c) for c in
                                                         ("page_url", "crawl", "source_file", "run_id")]))
    m = (spark.createDataFrame(match_rows, "image_url string, text string, entry_id long")
         .withColumn("pair_id", ids.pair_id()).select("pair_id", "entry_id"))
    lake.overwrite(spark, root, tables.MATCHES, m)
    lake.overwrite(spark, root, tables.ENTRY_COUNTS, match_stage.entry_delta(m))
    lake.overwrite(spark, root, tables.QID_COUNTS, match_stage.qid_delta(m, meta))
    match_stage.record_state(spark, root, lake.version(spark, root, tables.METADATA), "direct", False,
                             lake.version(spark, root, tables.PAIRS))  # as a completed match would
    per_pair: dict[int, list[int]] = defaultdict(list)
    for r in m.collect():
        per_pair[r["pair_id"]].append(r["entry_id"])
    return per_pair, qid_of


def curated_ids(spark, root: str, run_id: str | None = None) -> set[int]:
    """The pair_ids of one curated set (default: the newest run; every run is kept side by side)."""
    return {r[0] for r in balance_stage.latest_curated(spark, root, run_id).select("pair_id").collect()}


@pytest.fixture(scope="module")
def matched_lake(spark, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bal") / "lake")
    per_pair, qid_of = build_matched_lake(spark, root, 4000, 150, seed=5)
    return root, per_pair, qid_of


def py_thresholds(per_pair: dict[int, list[int]], counts: dict, seed: int, key_of=None) -> dict[int, float]:
    out = {}
    for p, es in per_pair.items():
        units = {key_of(e) if key_of else e for e in es}
        out[p] = balancing.pair_threshold((balancing.coin(p, u, seed), counts[u]) for u in units)
    return out


def test_balance_t_equals_python_coins_and_sets_are_nested(spark, matched_lake) -> None:
    root, per_pair, _ = matched_lake
    counts = Counter(e for es in per_pair.values() for e in es)
    th = py_thresholds(per_pair, counts, seed=7)
    previous: set[int] = set()
    for t in (3.0, 10.0, 40.0):
        s = execute(balance_stage, spark, cfg_for(root, balance__t=t, balance__seed=7))
        got = curated_ids(spark, root)
        assert got == {p for p, v in th.items() if v < t}  # Spark coins == Python coins, bit for bit
        assert previous <= got and len(got) > len(previous)
        previous = got
        assert s.pairs_out == len(got) and s.matched_pairs == len(per_pair)
        assert s.unmatched_pairs == 400
    row = lake.read(spark, root, tables.CURATION_RUNS).where(F.col("t") == 40.0).first()
    assert row["pairs_in"] == len(per_pair) + 400 and row["seed"] == 7
    assert set(row["input_versions"]) >= {"pairs", "matches", "entry_counts", "metadata", "curated"}
    cur = balance_stage.latest_curated(spark, root).first()
    assert cur["run_id"] == row["run_id"] and sorted(cur["entry_ids"]) == sorted(per_pair[cur["pair_id"]])


def test_target_size_is_exact_and_reproducible_across_partitionings(spark, matched_lake, tmp_path) -> None:
    root, per_pair, _ = matched_lake
    s = execute(balance_stage, spark, cfg_for(root, balance__target_size=1234, balance__seed=3))
    first = curated_ids(spark, root)
    assert len(first) == 1234 == s.pairs_out
    counts = Counter(e for es in per_pair.values() for e in es)
    th = py_thresholds(per_pair, counts, seed=3)
    assert first == {p for p, v in th.items() if v < s.t}  # the reported t reproduces the set
    assert sorted(th.values())[1233] < s.t <= sorted(th.values())[1234]
    # same tables, written with very different file/partition layouts
    other = str(tmp_path / "other")
    for name, parts in ((tables.PAIRS, 7), (tables.MATCHES, 11), (tables.ENTRY_COUNTS, 3), (tables.METADATA, 1),
                        (tables.QID_COUNTS, 2)):
        lake.overwrite(spark, other, name, lake.read(spark, root, name).repartition(parts))
    match_stage.record_state(spark, other, lake.version(spark, other, tables.METADATA), "copied", False,
                             lake.version(spark, other, tables.PAIRS))  # the copy is a completed match
    execute(balance_stage, spark, cfg_for(other, balance__target_size=1234, balance__seed=3))
    assert curated_ids(spark, other) == first
    rows_a = sorted(tuple(r) for r in balance_stage.latest_curated(spark, root).drop("run_id").collect())
    rows_b = sorted(tuple(r) for r in balance_stage.latest_curated(spark, other).drop("run_id").collect())
    assert rows_a == rows_b
    # a larger target contains the smaller one; a target above the matched pairs keeps them all
    execute(balance_stage, spark, cfg_for(root, balance__target_size=2000, balance__seed=3))
    assert first < curated_ids(spark, root)
    s = execute(balance_stage, spark, cfg_for(root, balance__target_size=10**6, balance__seed=3))
    assert s.pairs_out == len(per_pair)


def test_target_size_with_histogram_passes(spark, matched_lake, monkeypatch) -> None:
    root, per_pair, _ = matched_lake
    monkeypatch.setattr(balance_stage, "FETCH_LIMIT", 50)
    monkeypatch.setattr(balance_stage, "BUCKETS", 8)
    s = execute(balance_stage, spark, cfg_for(root, balance__target_size=777, balance__seed=11))
    assert s.selection_passes >= 3 and s.pairs_out == 777
    counts = Counter(e for es in per_pair.values() for e in es)
    th = sorted(py_thresholds(per_pair, counts, seed=11).values())
    assert th[776] < s.t <= th[777]


def test_tail_share_uses_metaclip_p_to_t(spark, matched_lake) -> None:
    root, per_pair, _ = matched_lake
    counts = Counter(e for es in per_pair.values() for e in es)
    s = execute(balance_stage, spark, cfg_for(root, balance__tail_share=0.3))
    np = pytest.importorskip("numpy")
    c = np.sort(np.array(list(counts.values())))
    want = c[np.abs(np.cumsum(c) / c.sum() - 0.3).argmin()]
    assert s.t == float(want)


def test_per_qid_balances_entities(spark, matched_lake) -> None:
    root, per_pair, qid_of = matched_lake
    # units: a qid for KG entries, the entry itself otherwise; counts = pairs naming the unit
    key_of = {e: (qid_of[e] if qid_of[e] is not None else e) for es in per_pair.values() for e in es}
    unit_counts = Counter(u for es in per_pair.values() for u in {key_of[e] for e in es})
    t = 12.0
    execute(balance_stage, spark, cfg_for(root, balance__t=t, balance__seed=2, balance__per_qid=True))
    got = curated_ids(spark, root)
    # qid coins hash a string (not reproduced in Python): check the integer-keyed part exactly and the rest
    # statistically via the kept fraction per unit
    plain_only = {p for p, es in per_pair.items() if all(qid_of[e] is None for e in es)}
    th = {p: balancing.pair_threshold((balancing.coin(p, e, 2), unit_counts[e]) for e in set(per_pair[p]))
          for p in plain_only}
    assert got & plain_only == {p for p, v in th.items() if v < t}
    run = lake.read(spark, root, tables.CURATION_RUNS).where("per_qid").first()
    assert run is not None and run["t"] == t
    # pairs naming one entity by two names get one coin: big qids are thinned to about t pairs
    big = [q for q, c in unit_counts.items() if isinstance(q, str) and c > 150]
    assert big
    for q in big:
        with_q = [p for p, es in per_pair.items() if q in {key_of[e] for e in es}]
        only_q = [p for p in with_q if {key_of[e] for e in per_pair[p]} == {q}]
        if len(only_q) > 100:
            frac = sum(p in got for p in only_q) / len(only_q)
            assert abs(frac - t / unit_counts[q]) < 4.5 * (t / unit_counts[q] / len(only_q)) ** 0.5 + 0.01


def test_kept_fraction_per_entry(spark, tmp_path) -> None:
    root = str(tmp_path / "lake")
    per_pair, _ = build_matched_lake(spark, root, 6000, 30, seed=8, single=True)
    counts = Counter(e for es in per_pair.values() for e in es)
    t = 60.0
    execute(balance_stage, spark, cfg_for(root, balance__t=t, balance__seed=1))
    got = curated_ids(spark, root)
    kept = Counter(e for p, es in per_pair.items() if p in got for e in es)
    for e, c in counts.items():
        p = balancing.entry_probability(c, t)
        sigma = (c * p * (1 - p)) ** 0.5
        assert abs(kept[e] - c * p) <= 4.5 * sigma + 1e-9, (c, kept[e])


def test_lowercase_pair_texts_carry_every_qid_of_the_case_folded_group(spark, tmp_path) -> None:
    """With --lowercase a pair's entry_id is its case-folded group's smallest id, here the WordNet
    string's: pair_texts must hold the texts of every entity the group's strings name, as
    qid_counts counts them (it held only the alt text: the raw metadata gave that id no qid)."""
    from kgcurate.kg_texts import KG_ALIAS, KG_DESCRIPTION, KG_LABEL

    root = str(tmp_path / "lake")
    meta = build_metadata.derive(spark.createDataFrame(
        [("Kitchen", "wordnet", None), ("kitchen", "kg", "Q43164"), ("KITCHEN", "kg", "Q99")], META_DDL))
    lake.overwrite(spark, root, tables.METADATA, meta)
    ids = {r["entry"]: r["entry_id"] for r in meta.collect()}
    assert ids["Kitchen"] == min(ids.values())  # the group's head is the string that names no entity
    lake.overwrite(spark, root, tables.ENTITIES, spark.createDataFrame([
        ("Q43164", "kitchen", "room for cooking", ["cookroom"], [], None, 10, [], [], [], False, "x"),
        ("Q99", "KITCHEN", "a band", [], [], None, 1, [], [], [], False, "x"),
    ], tables.schema(tables.ENTITIES)))
    append_pairs(spark, root, ["my new kitchen"], 0)
    execute(match_stage, spark, cfg_for(root, match__lowercase=True))
    counts = {r["qid"]: r["count"] for r in lake.read(spark, root, tables.QID_COUNTS).collect()}
    assert counts == {"Q43164": 1, "Q99": 1}
    execute(balance_stage, spark, cfg_for(root, balance__t=100.0, balance__per_qid=True))
    texts = {(r["text"], r["text_source"], r["qid"]) for r in lake.read(spark, root, tables.PAIR_TEXTS).collect()}
    assert {("room for cooking", KG_DESCRIPTION, "Q43164"), ("a band", KG_DESCRIPTION, "Q99"),
            ("cookroom", KG_ALIAS, "Q43164"), ("kitchen", KG_LABEL, "Q43164")} <= texts, texts
