"""One string is one entry, whatever lists it (issue #12): match, counts and balance per distinct string.

MetaCLIP's metadata is a set of strings and its metadata.json already holds WordNet lemmas, so a lake
built from both must curate exactly what the union list given once curates; per-qid counts count
entities over all their surviving names; a lake in the old per-(source, entry, qid) layout is refused.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict

import pytest
from pyspark.sql import functions as F

from helpers import execute
from kgcurate import balancing, lake, tables
from kgcurate.cli import main
from kgcurate.metadata import kg, wordnet
from kgcurate.stages import balance as balance_stage
from kgcurate.stages import build_metadata
from kgcurate.stages import match as match_stage
from test_match_balance_spark import META_DDL, append_pairs, cfg_for
from test_matching import ref_match

pytestmark = pytest.mark.spark

FILLERS = ["photo", "of", "my", "the", "in", "with", "and", ",", ".", "DSC_0042.JPG", "nice"]


def _captions(rng: random.Random, names: list[str], n: int) -> list[str]:
    return [" ".join(rng.choice(names) if rng.random() < 0.5 else rng.choice(FILLERS)
                     for _ in range(rng.randint(1, 7))) for _ in range(n)]


def _by_string(spark, root: str):
    """matches as (pair_id, string), counts as {string: count}, curated as {pair_id: [strings]}."""
    meta = lake.read(spark, root, tables.METADATA).select("entry_id", "entry")
    name = {r["entry_id"]: r["entry"] for r in meta.collect()}
    matches = [(r[0], name[r[1]]) for r in lake.read(spark, root, tables.MATCHES).collect()]
    counts = [(name[r[0]], r[1]) for r in lake.read(spark, root, tables.ENTRY_COUNTS).collect()]
    curated = {r["pair_id"]: sorted(name[e] for e in r["entry_ids"])
               for r in lake.read(spark, root, tables.CURATED).collect()}
    return matches, counts, curated, {v: k for k, v in name.items()}


def test_wordnet_plus_repeating_metaclip_curates_as_the_union_once(spark, tmp_path, fixtures) -> None:
    lemmas = wordnet.read_dir(str(fixtures / "wordnet")).entries
    repeated = lemmas[::2] + ["kitchen", "hot dog"]  # metadata.json holds WordNet lemmas again (as MetaCLIP's does)
    both_file, union_file = tmp_path / "repeats.json", tmp_path / "union.json"
    both_file.write_text(json.dumps(repeated))
    union = sorted(set(lemmas) | set(repeated))
    union_file.write_text(json.dumps(union))
    captions = _captions(random.Random(3), union, 1500)
    t, seed = 6.0, 4
    results = []
    for name, md in (("both", {"metaclip_metadata": str(both_file)}),
                     ("once", {"wordnet": False, "metaclip_metadata": str(union_file)})):
        root = str(tmp_path / name)
        cfg = cfg_for(root)
        cfg["metadata"].update(wordnet_dir=str(fixtures / "wordnet"), **md)
        execute(build_metadata, spark, cfg)
        append_pairs(spark, root, captions, 0)
        execute(match_stage, spark, cfg_for(root))
        run = execute(balance_stage, spark, cfg_for(root, balance__t=t, balance__seed=seed))
        results.append((*_by_string(spark, root), run.pairs_out))
    (m_a, c_a, cur_a, id_a, n_a), (m_b, c_b, cur_b, id_b, n_b) = results
    assert len(m_a) == len(set(m_a)), "a string listed twice is matched once"
    assert sorted(c_a) == sorted(c_b) and len(c_a) == len({e for e, _ in c_a})
    assert sorted(m_a) == sorted(m_b) and cur_a == cur_b and n_a == n_b
    assert id_a == id_b  # entry_id hashes the string alone
    meta = {r["entry"]: r["sources"] for r in lake.read(spark, str(tmp_path / "both"), tables.METADATA).collect()}
    assert meta[lemmas[0]] == ["metaclip", "wordnet"] and meta[lemmas[1]] == ["wordnet"]

    # plain reference over distinct strings: MetaCLIP's counts and keep rule, string by string
    pairs = lake.read(spark, str(tmp_path / "once"), tables.PAIRS).select("pair_id", "text").collect()
    entries = [(i, e) for i, e in enumerate(union)]
    per_pair = {p["pair_id"]: {union[i] for i in ref_match(p["text"], entries)} for p in pairs}
    per_pair = {p: s for p, s in per_pair.items() if s}
    count = Counter(s for ss in per_pair.values() for s in ss)
    assert dict(c_a) == dict(count)
    keep = {p for p, ss in per_pair.items()
            if min(balancing.coin(p, id_a[s], seed) * count[s] for s in ss) < t}
    assert set(cur_a) == keep and all(cur_a[p] == sorted(per_pair[p]) for p in keep)
    prob = {p: 1 - math.prod(1 - min(1.0, t / count[s]) for s in ss) for p, ss in per_pair.items()}
    sigma = math.sqrt(sum(q * (1 - q) for q in prob.values()))
    assert abs(len(keep) - sum(prob.values())) <= 4.5 * sigma + 1


def test_lowercase_folds_case_variants_into_one_entry(spark, tmp_path) -> None:
    root = str(tmp_path / "lake")
    rows = [("Kitchen", "wordnet", None), ("kitchen", "metaclip", None), ("KITCHEN", "kg", "Q1"),
            ("kitchen", "kg", "Q2"), ("sink", "wordnet", None)]
    meta = build_metadata.derive(spark.createDataFrame(rows, META_DDL))
    lake.overwrite(spark, root, tables.METADATA, meta)
    eid = {r["entry"]: r["entry_id"] for r in meta.collect()}
    append_pairs(spark, root, ["a Kitchen sink", "kitchen kitchen", "the KITCHEN", "nothing"], 0)

    execute(match_stage, spark, cfg_for(root))
    counts = {r[0]: r[1] for r in lake.read(spark, root, tables.ENTRY_COUNTS).collect()}
    assert counts == {eid["Kitchen"]: 1, eid["kitchen"]: 1, eid["KITCHEN"]: 1, eid["sink"]: 1}
    assert {r[0]: r[1] for r in lake.read(spark, root, tables.QID_COUNTS).collect()} == {"Q1": 1, "Q2": 1}

    s = execute(match_stage, spark, cfg_for(root, match__lowercase=True))
    assert s.entries == 2 and s.mode == "full"
    one = min(eid["Kitchen"], eid["kitchen"], eid["KITCHEN"])  # the group's smallest id stands for it
    counts = {r[0]: r[1] for r in lake.read(spark, root, tables.ENTRY_COUNTS).collect()}
    assert counts == {one: 3, eid["sink"]: 1}
    assert {r[0]: r[1] for r in lake.read(spark, root, tables.QID_COUNTS).collect()} == {"Q1": 3, "Q2": 3}
    assert lake.read(spark, root, tables.MATCHES).count() == 4  # one (pair, entry) per caption and string
    # balance per entity reads the folded groups too: every matched pair is a unit member
    execute(balance_stage, spark, cfg_for(root, balance__t=100.0, balance__per_qid=True))
    assert lake.read(spark, root, tables.CURATED).count() == 3
    hist = balance_stage.count_hist(spark, root, match_stage.completed_versions(spark, root), True)
    assert sorted(hist) == [(1, 1), (3, 2)]  # units: Q1 and Q2 (3 pairs each), "sink" without a qid


def test_per_qid_counts_on_real_wikidata(spark, tmp_path, shared_data) -> None:
    """qid_counts = pairs matching any surviving name of the entity, against a plain-Python reference."""
    from kgcurate.wikidata.json_entity import parse_lines

    lines = (shared_data / "wikidata" / "latest-all-2017-head50.json").read_bytes().split(b"\n")
    real = [{**r, "source_file": "head50"} for r in parse_lines(lines, ["en"]).rows]
    root = str(tmp_path / "lake")
    ents = spark.createDataFrame([tuple(r[f.name] for f in tables.schema(tables.ENTITIES).fields) for r in real],
                                 tables.schema(tables.ENTITIES))
    lake.overwrite(spark, root, tables.ENTITIES, ents)
    sets = spark.createDataFrame([("head50", r["qid"], 0) for r in real], tables.schema(tables.ENTITY_SETS))
    lake.overwrite(spark, root, tables.ENTITY_SETS, sets)
    # names shared by several entities are kept for all of them: strings that name several qids
    guards = kg.Guards(shared_alias_min_qids=1000)
    kept, _ = kg.build_entries([(r["qid"], r["label"], r["aliases"], r["common_names"], r["taxon_name"],
                                 r["sitelinks"]) for r in real], guards)
    names = sorted({e for e, _ in kept})
    cfg = cfg_for(root)
    mc_file = tmp_path / "metadata.json"
    mc_file.write_text(json.dumps(names[::3] + ["photo"]))  # MetaCLIP repeating some KG names
    cfg["metadata"].update(wordnet=False, entity_sets=["head50"], shared_alias_min_qids=1000,
                           metaclip_metadata=str(mc_file))
    execute(build_metadata, spark, cfg)
    qids_of: dict[str, set[str]] = defaultdict(set)
    for e, q in kept:
        qids_of[e].add(q)
    assert any(len(q) > 1 for q in qids_of.values())

    append_pairs(spark, root, _captions(random.Random(11), names, 2000), 0)
    execute(match_stage, spark, cfg_for(root))
    strings = sorted(set(names) | {"photo"})
    entries = list(enumerate(strings))
    want: Counter[str] = Counter()
    for p in lake.read(spark, root, tables.PAIRS).select("text").collect():
        want.update({q for i in ref_match(p["text"], entries) for q in qids_of.get(strings[i], ())})
    got = {r[0]: r[1] for r in lake.read(spark, root, tables.QID_COUNTS).collect()}
    assert got == dict(want) and len(got) > 10
    # per-qid balance runs on these units: each qid's weight is its count above
    s = execute(balance_stage, spark, cfg_for(root, balance__t=5.0, balance__per_qid=True))
    assert 0 < s.pairs_out <= s.matched_pairs


def test_old_layout_is_refused_in_one_line(spark, tmp_path, fixtures, capsys) -> None:
    root = str(tmp_path / "lake")
    old = spark.createDataFrame([(1, "dog", "wordnet", None), (2, "dog", "kg", "Q144")],
                                "entry_id long, entry string, source string, qid string")
    old.write.format("delta").save(lake.table_path(root, tables.METADATA))
    append_pairs(spark, root, ["a dog"], 0)
    for name in (tables.MATCHES, tables.ENTRY_COUNTS, tables.QID_COUNTS):
        lake.ensure(spark, root, name)
    match_stage.record_state(spark, root, lake.version(spark, root, tables.METADATA), "old", False,
                             lake.version(spark, root, tables.PAIRS))  # a match completed on the old layout
    wn = ["--wordnet-dir", str(fixtures / "wordnet")]
    assert main(["match", "--lake", root]) == 2
    assert main(["balance", "--lake", root, "--t", "5"]) == 2
    assert main(["build-metadata", "--lake", root, *wn]) == 2
    assert main(["report", "--lake", root, "--out", str(tmp_path / "report")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and len(set(errors)) == 1
    assert f"kgcurate build-metadata --lake {root} --replace-all" in errors[0]
    assert f"kgcurate match --lake {root} --full" in errors[0]
    assert lake.read(spark, root, tables.METADATA).count() == 2 and not lake.exists(spark, root, tables.CURATED)

    # the migration named in the line works
    assert main(["build-metadata", "--lake", root, *wn, "--replace-all"]) == 0
    assert main(["match", "--lake", root, "--full"]) == 0
    meta = lake.read(spark, root, tables.METADATA)
    assert "sources" in meta.columns and meta.where(F.col("entry_id") != F.xxhash64("entry")).count() == 0
    assert main(["balance", "--lake", root, "--t", "5"]) == 0
