"""build-metadata on Spark: KG guards match the pure spec, stable ids, idempotent re-runs, source keeping."""

from __future__ import annotations

import copy
import json
import sys
import types

import pytest
from pyspark.sql import functions as F

from helpers import execute
from kgcurate import config, lake, tables
from kgcurate.cli import main
from kgcurate.metadata import kg
from kgcurate.stages import build_metadata
from test_metadata_kg_rules import ENTITIES

pytestmark = pytest.mark.spark

OUTSIDER = ("Q5", "human", ["man", "person"], None, "Homo sapiens", 300)  # in no set: never an entry


def _entity_rows(rows):
    return [(q, label, None, aliases, common, taxon, links, None, None, None, None, "fixture.json")
            for q, label, aliases, common, taxon, links in rows]


@pytest.fixture(scope="module")
def kg_lake(spark, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("kg") / "lake")
    ents = spark.createDataFrame(_entity_rows([*ENTITIES, OUTSIDER]), tables.schema(tables.ENTITIES))
    lake.append(spark, root, tables.ENTITIES, ents)
    members = [("organisms", q, 1) for q, *_ in ENTITIES] + [("mammals", "Q144", 2), ("mammals", "Q830", 2)]
    lake.append(spark, root, tables.ENTITY_SETS, spark.createDataFrame(members, tables.schema(tables.ENTITY_SETS)))
    return root


def _cfg(root, fixtures, **metadata):
    cfg = copy.deepcopy(config.DEFAULTS)
    cfg["lake"] = root
    cfg["metadata"].update(wordnet_dir=str(fixtures / "wordnet"), **metadata)
    return cfg


@pytest.mark.parametrize("mode", kg.SHARED_MODES)
def test_kg_frames_agree_with_the_pure_spec(spark, kg_lake, mode):
    guards = kg.Guards(shared_alias=mode)
    rows = kg.kg_frames(spark, kg_lake, ["organisms", "mammals"], guards).collect()
    kept = {(r["entry"], r["qid"]) for r in rows if r["reason"] is None}
    dropped = sorted((r["entry"], r["qid"], r["reason"]) for r in rows if r["reason"] is not None)
    want_kept, want_dropped = kg.build_entries(ENTITIES, guards)
    assert kept == want_kept and dropped == sorted(want_dropped)
    assert len(rows) == len(kept) + len(dropped)  # one row per (entry, qid): sets overlap, names repeat


def test_build_metadata_end_to_end(spark, kg_lake, fixtures, capsys):
    """One lake through the stage's lifecycle: build, re-run, drop a source's input, add a source, replace all."""
    root = kg_lake
    s1 = execute(build_metadata, spark, _cfg(root, fixtures, entity_sets=["organisms"]))
    assert (s1.entries["wordnet"], s1.entries["metaclip"], s1.entries["kg"]) == (67, 0, 19)
    assert (s1.dropped["empty"], s1.dropped["too_short"], s1.dropped["stop_word"], s1.dropped["shared_alias"]) == (
        1, 1, 1, 2)
    assert s1.rebuilt == "wordnet,kg" and s1.bad_records == 0
    meta = lake.read(spark, root, tables.METADATA)
    # entry_id = xxhash64(entry) alone: recomputed independently here; one row per string
    assert meta.where(F.col("entry_id") != F.xxhash64("entry")).count() == 0
    assert meta.count() == meta.select("entry").distinct().count() == _check_derived(spark, root)
    src = lake.read(spark, root, tables.METADATA_SOURCES)
    assert src.where("source = 'wordnet' AND qid IS NOT NULL").count() == 0
    cat = meta.where("entry = 'cat'").first()
    assert "kg" in cat["sources"] and cat["qids"] == ["Q146"]
    assert meta.where(F.array_contains("qids", "Q5")).count() == 0
    drops = {(r["entry"], r["reason"]) for r in lake.read(spark, root, tables.METADATA_DROPS).collect()}
    assert drops == {("", "empty"), ("ox", "too_short"), ("The", "stop_word"), ("cat", "shared_alias"),
                     ("puma", "shared_alias")}
    ids1 = _ids(spark, root)  # per (source, entry, qid) provenance row: the string's id
    assert len(ids1) == 86 and len(set(ids1.values())) == meta.count()

    # same inputs again: same rows, same ids (idempotent)
    execute(build_metadata, spark, _cfg(root, fixtures, entity_sets=["organisms"]))
    assert _ids(spark, root) == ids1

    # add MetaCLIP: nothing renumbered, 80 rows more
    s3 = execute(build_metadata, spark, _cfg(root, fixtures, entity_sets=["organisms"],
                                            metaclip_metadata=str(fixtures / "metaclip" / "metadata.json")))
    ids3 = _ids(spark, root)
    assert s3.entries["metaclip"] == 80 and len(ids3) == 166
    # a string MetaCLIP repeats from WordNet is still one entry, listing both sources
    both = {e for (src_, e, _) in ids3 if src_ == "wordnet"} & {e for (src_, e, _) in ids3 if src_ == "metaclip"}
    assert both and s3.rows_total == len({e for (_, e, _) in ids3}) == _check_derived(spark, root)
    assert {k: v for k, v in ids3.items() if k[0] != "metaclip"} == ids1

    # no metaclip file and no entity sets this time: their previous rows are kept; wordnet rebuilt
    s4 = execute(build_metadata, spark, _cfg(root, fixtures))
    assert s4.rebuilt == "wordnet" and _ids(spark, root) == ids3
    assert lake.read(spark, root, tables.METADATA_DROPS).count() == 5

    # --replace-all through the CLI: only this run's sources remain (here: WordNet only)
    assert main(["build-metadata", "--lake", root, "--wordnet-dir", str(fixtures / "wordnet"), "--replace-all"]) == 0
    out = capsys.readouterr().out
    assert "metadata: 67 entries (distinct strings; listed by wordnet=67, metaclip=0, kg=0)" in out
    assert "kg names dropped: 0" in out
    assert {k for k in _ids(spark, root)} == {k for k in ids1 if k[0] == "wordnet"}
    assert lake.read(spark, root, tables.METADATA_DROPS).count() == 0


def _ids(spark, root):
    """(source, entry, qid) -> entry_id: the provenance rows, each with its string's id."""
    ids = {r["entry"]: r["entry_id"] for r in lake.read(spark, root, tables.METADATA).collect()}
    rows = lake.read(spark, root, tables.METADATA_SOURCES).collect()
    return {(r["source"], r["entry"], r["qid"]): ids[r["entry"]] for r in rows}


def _check_derived(spark, root) -> int:
    """metadata == the plain-Python grouping of metadata_sources by string; returns its size."""
    want: dict[str, tuple[set, set]] = {}
    for r in lake.read(spark, root, tables.METADATA_SOURCES).collect():
        srcs, qids = want.setdefault(r["entry"], (set(), set()))
        srcs.add(r["source"])
        if r["qid"] is not None:
            qids.add(r["qid"])
    got = {r["entry"]: (r["sources"], r["qids"]) for r in lake.read(spark, root, tables.METADATA).collect()}
    assert got == {e: (sorted(s), sorted(q)) for e, (s, q) in want.items()}
    return len(got)


def test_entity_set_yaml_is_computed_first(spark, kg_lake, fixtures, monkeypatch, tmp_path):
    """A YAML path goes through kgcurate.entity_sets (stubbed here) before the KG entries are built."""
    calls = []
    spec_file = tmp_path / "cats.yaml"
    spec_file.write_text("name: cats\n")

    def load_spec(path):
        return types.SimpleNamespace(name="cats", path=path)

    def write_entity_set(spark_, root, spec):
        calls.append((root, spec.path))
        rows = [("cats", "Q146", 0), ("cats", "Q228283", 1)]
        frame = spark_.createDataFrame(rows, tables.schema(tables.ENTITY_SETS))
        lake.overwrite(spark_, root, tables.ENTITY_SETS, frame, replace_where="set_name = 'cats'")
        return len(rows)

    monkeypatch.setitem(sys.modules, "kgcurate.entity_sets",
                        types.SimpleNamespace(load_spec=load_spec, write_entity_set=write_entity_set))
    root = str(tmp_path / "lake")
    lake.append(spark, root, tables.ENTITIES, lake.read(spark, kg_lake, tables.ENTITIES))
    summary = execute(build_metadata, spark, _cfg(root, fixtures, wordnet=False, entity_sets=[str(spec_file)]))
    assert calls == [(root, str(spec_file))] and summary.sets["cats"] == 2
    kept = {(r["entry"], r["qid"]) for r in lake.read(spark, root, tables.METADATA_SOURCES).collect()}
    assert lake.read(spark, root, tables.METADATA).where("entry = 'cat'").first()["qids"] == ["Q146"]
    assert ("cat", "Q146") in kept and ("cat", "Q228283") not in kept and ("cats", "Q228283") in kept
    assert summary.entries["kg"] == 7 and summary.dropped["stop_word"] == 1 and summary.dropped["shared_alias"] == 1


def test_bad_inputs_fail_before_any_write(spark, fixtures, tmp_path, capsys):
    root = str(tmp_path / "lake")
    bad_json = tmp_path / "metadata.json"
    bad_json.write_text('["dog", "cat",')
    wn = ["--wordnet-dir", str(fixtures / "wordnet")]
    assert main(["build-metadata", "--lake", root, *wn, "--metaclip-metadata", str(bad_json)]) == 2
    assert main(["build-metadata", "--lake", root, "--wordnet-dir", str(tmp_path / "nowhere")]) == 2
    assert main(["build-metadata", "--lake", root, *wn, "--entity-set", "organisms"]) == 2  # no entities table
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("kgcurate: error: ") for e in errors)
    assert "not valid JSON" in errors[0] and "wordnet-base" in errors[1] and "ingest-wikidata" in errors[2]
    assert not lake.exists(spark, root, tables.METADATA)

    # bad items inside a usable file: reported as bad records (list index as offset), idempotently
    mixed = tmp_path / "mixed.json"
    mixed.write_text('["dog", 42, " ", "cat"]')
    args = ["build-metadata", "--lake", root, "--no-wordnet", "--metaclip-metadata", str(mixed)]
    assert main(args) == 0 and main(args) == 0
    bad = sorted((r["offset"], r["reason"]) for r in lake.read(spark, root, tables.BAD_RECORDS).collect())
    assert bad == [(1, "item is a JSON int, not a string"), (2, "empty entry after whitespace normalization")]
    assert lake.read(spark, root, tables.METADATA).count() == 2


def _versions(spark, root):
    names = (tables.METADATA, tables.METADATA_SOURCES, tables.METADATA_DROPS, tables.ENTITIES, tables.ENTITY_SETS)
    return {n: lake.version(spark, root, n) for n in names}


def test_unchanged_inputs_are_not_rebuilt(spark, kg_lake, fixtures, tmp_path, capsys):
    """A re-run with the same entries, specs and options over the same tables writes nothing (the note on
    the metadata commit), past maintain's OPTIMIZE; any change of an input or of a table it read rebuilds."""
    root = str(tmp_path / "lake")
    for name in (tables.ENTITIES, tables.ENTITY_SETS):
        lake.append(spark, root, name, lake.read(spark, kg_lake, name))
    mc = tmp_path / "metadata.json"
    mc.write_text('["dog", "red fox", "kitchen"]')
    cfg = _cfg(root, fixtures, entity_sets=["organisms"], metaclip_metadata=str(mc))
    first = execute(build_metadata, spark, cfg)
    assert first.done_by is None and first.rows_total > 0
    assert build_metadata.run_notes.read(lake.last_data_note(spark, root, tables.METADATA),
                                         build_metadata.NOTE_KEY)[0] == first.run_id

    lake.optimize(spark, root, tables.METADATA)  # what maintain does between runs
    lake.optimize(spark, root, tables.ENTITIES)
    before = _versions(spark, root)
    again = execute(build_metadata, spark, cfg)
    assert again.done_by == first.run_id and _versions(spark, root) == before
    assert (again.entries, again.dropped, again.rows_total, again.rebuilt) == (
        first.entries, first.dropped, first.rows_total, "")
    assert main(["build-metadata", "--lake", root, "--wordnet-dir", str(fixtures / "wordnet"),
                 "--entity-set", "organisms", "--metaclip-metadata", str(mc)]) == 0
    assert f"nothing to do: inputs unchanged since run {first.run_id}" in capsys.readouterr().out
    assert _versions(spark, root) == before

    def rebuilds(changed_cfg, why):
        got = execute(build_metadata, spark, changed_cfg)
        assert got.done_by is None, why
        assert execute(build_metadata, spark, changed_cfg).done_by == got.run_id, why  # and then it is done
        return got

    rebuilds(_cfg(root, fixtures, entity_sets=["organisms"], metaclip_metadata=str(mc), min_length=2), "a guard")
    mc.write_text('["dog", "red fox", "kitchen", "sofa"]')
    assert rebuilds(cfg, "the MetaCLIP list").entries["metaclip"] == 4
    lake.append(spark, root, tables.ENTITY_SETS, spark.createDataFrame([("mammals", "Q146", 1)],
                                                                      tables.schema(tables.ENTITY_SETS)))
    rebuilds(cfg, "entity_sets written since (another set)")
    lake.append(spark, root, tables.ENTITIES, spark.createDataFrame(_entity_rows([("Q7", "wolf", [], None, None, 9)]),
                                                                    tables.schema(tables.ENTITIES)))
    rebuilds(cfg, "entities ingested since")
    rebuilds(_cfg(root, fixtures, entity_sets=["organisms", "mammals"], metaclip_metadata=str(mc)), "another set")

    # a run that died after writing metadata_sources: the next one repairs metadata
    cfg = _cfg(root, fixtures, entity_sets=["organisms", "mammals"], metaclip_metadata=str(mc))
    lake.append(spark, root, tables.METADATA_SOURCES, spark.createDataFrame([("orphan", "metaclip", None)],
                                                                            build_metadata.ENTRY_DDL))
    rebuilds(cfg, "metadata_sources written since")
    assert lake.read(spark, root, tables.METADATA).where("entry = 'orphan'").count() == 0
    assert _check_derived(spark, root) > 0

    forced = execute(build_metadata, spark, {**cfg, "metadata": {**cfg["metadata"], "force": True}})
    assert forced.done_by is None and lake.version(spark, root, tables.METADATA) > before[tables.METADATA]

    # a dead run's list for a source the next run does not rebuild: undone, not published by that run (it was:
    # the WordNet-only run below re-derived metadata from the dead run's MetaCLIP rows)
    lake.append(spark, root, tables.METADATA_SOURCES, spark.createDataFrame([("wrong list entry", "metaclip", None)],
                                                                            build_metadata.ENTRY_DDL))
    lake.append(spark, root, tables.METADATA_DROPS, spark.createDataFrame(
        [("stale drop", "kg", "Q1", "stop_word")], tables.schema(tables.METADATA_DROPS)))
    wordnet_only = execute(build_metadata, spark, _cfg(root, fixtures))
    assert wordnet_only.done_by is None and wordnet_only.rebuilt == "wordnet"
    for name in (tables.METADATA, tables.METADATA_SOURCES, tables.METADATA_DROPS):
        assert lake.read(spark, root, name).where("entry IN ('wrong list entry', 'stale drop')").count() == 0, name
    assert lake.read(spark, root, tables.METADATA).where("entry = 'sofa'").first()["sources"] == ["metaclip"]
    assert _check_derived(spark, root) > 0


def test_a_first_run_that_died_after_its_sources_leaves_nothing_for_the_next(spark, fixtures, tmp_path):
    """No run completed (no metadata) but metadata_sources holds rows: the next run replaces them all."""
    root = str(tmp_path / "lake")
    lake.append(spark, root, tables.METADATA_SOURCES, spark.createDataFrame([("wrong list entry", "metaclip", None)],
                                                                            build_metadata.ENTRY_DDL))
    execute(build_metadata, spark, _cfg(root, fixtures))
    assert lake.read(spark, root, tables.METADATA_SOURCES).where("source != 'wordnet'").count() == 0
    assert lake.read(spark, root, tables.METADATA).where("entry = 'wrong list entry'").count() == 0


def test_a_mistyped_set_name_leaves_entity_sets_as_it_was(spark, kg_lake, fixtures, tmp_path, capsys):
    """A YAML spec before an unknown name was computed and written, then the run exited 2."""
    root = str(tmp_path / "lake")
    lake.append(spark, root, tables.ENTITIES, lake.read(spark, kg_lake, tables.ENTITIES))
    spec = tmp_path / "cats.yaml"
    spec.write_text("name: cats\nroots: [Q146]\nrules: [P279*]\n")
    assert main(["build-metadata", "--lake", root, "--no-wordnet", "--entity-set", str(spec),
                 "--entity-set", "nosuchset"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "entity set 'nosuchset' is neither a YAML file" in err
    assert not lake.exists(spark, root, tables.ENTITY_SETS) and not lake.exists(spark, root, tables.METADATA)


def test_the_inputs_record_reads_back_from_a_note_and_sees_each_input():
    spec = types.SimpleNamespace(name="cats", roots=("Q146",), rules=("P279*",), source="conf/cats.yaml")
    rows = [("dog", "wordnet", None), ("cat", "wordnet", None), ("sofa", "metaclip", None)]
    record = build_metadata.inputs_record(rows, ["wordnet", "metaclip"], [spec, "mammals"], kg.Guards(), False)
    note = build_metadata.run_notes.write(build_metadata.NOTE_KEY, "r1", {**record, "tables": {"entities": 3}})
    run_id, noted = build_metadata.run_notes.read(note, build_metadata.NOTE_KEY)
    assert run_id == "r1" and noted.pop("tables") == {"entities": 3} and noted == record
    assert record["entity_sets"] == [{"name": "cats", "roots": ["Q146"], "rules": ["P279*"]}, "mammals"]
    others = [
        build_metadata.inputs_record([*rows, ("cow", "wordnet", None)], ["wordnet", "metaclip"], [spec, "mammals"],
                                     kg.Guards(), False),
        build_metadata.inputs_record(rows, ["wordnet"], [spec, "mammals"], kg.Guards(), False),
        build_metadata.inputs_record(rows, ["wordnet", "metaclip"], ["mammals"], kg.Guards(), False),
        build_metadata.inputs_record(rows, ["wordnet", "metaclip"], [types.SimpleNamespace(**{
            **vars(spec), "roots": ("Q729",)}), "mammals"], kg.Guards(), False),
        build_metadata.inputs_record(rows, ["wordnet", "metaclip"], [spec, "mammals"],
                                     kg.Guards(shared_alias="drop"), False),
        build_metadata.inputs_record(rows, ["wordnet", "metaclip"], [spec, "mammals"], kg.Guards(), True),
    ]
    assert all(o != record for o in others) and len({json.dumps(o, sort_keys=True) for o in others}) == len(others)
    moved = types.SimpleNamespace(**{**vars(spec), "source": "elsewhere/cats.yaml"})  # where the file is: not an input
    assert build_metadata.inputs_record(rows, ["wordnet", "metaclip"], [moved, "mammals"], kg.Guards(), False) == record
    assert build_metadata.inputs_record(rows[::-1], ["metaclip", "wordnet"], [spec, "mammals"], kg.Guards(),
                                        False) == record  # the lists' order is not an input


def test_the_spark_guards_agree_with_row_reason_outside_the_bmp(spark):
    """Spark's rlike (Java regex) and Python's re read CJK_PATTERN alike, supplementary planes included."""
    g = kg.Guards()
    names = ["猫", "\U00020000", "\U00029E3D", "\U00030000", "\U0001F600", "ox", "", "The", "eel", "北京"]
    got = {r["entry"]: r["reason"] for r in spark.createDataFrame([(n,) for n in names], "entry string")
           .withColumn("reason", kg.reason_column(g)).collect()}
    assert got == {n: kg.row_reason(n, g) for n in names}
    assert got["\U00029E3D"] is None and got["\U0001F600"] == "too_short"
