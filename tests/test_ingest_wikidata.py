"""ingest-wikidata end to end on a local Spark: rows, bad records, log, idempotent re-runs."""

from __future__ import annotations

import json
import os

import pytest
from pyspark.sql import functions as F

from helpers import execute
from kgcurate import cli, config, tables
from kgcurate import lake as lk
from kgcurate.errors import UserError
from kgcurate.stages import ingest_wikidata as stage
from kgcurate.wikidata.json_entity import parse_lines
from kgcurate.wikidata.ntriples import parse_nt_lines

pytestmark = pytest.mark.spark

FIELDS = [f.name for f in tables.schema(tables.ENTITIES).fields if f.name != "source_file"]


def _cfg(lake_root: str, inputs: list, **wikidata) -> dict:
    cfg = config.load(None)
    cfg["lake"] = lake_root
    cfg["wikidata"].update(input=[str(p) for p in inputs], **wikidata)
    return cfg


def _entities(spark, lake_root: str) -> dict[str, dict]:
    rows = lk.read(spark, lake_root, tables.ENTITIES).collect()
    return {r["qid"]: r.asDict() for r in rows}


def test_json_and_nt_dumps_with_bad_lines_idempotent(spark, lake, fixtures, tmp_path):
    lines = (fixtures / "wikidata" / "sample.json").read_text().splitlines()
    lines.insert(3, '{"type":"item","id":"Q999","labels":{')  # cut line
    lines.insert(10, "not json at all")
    dump = tmp_path / "dump.json"
    dump.write_text("\n".join(lines) + "\n")
    nt = fixtures / "wikidata" / "sample-truthy.nt"
    expected = {r["qid"]: r for r in parse_lines(lines, ["en"]).rows}

    s1 = execute(stage, spark, _cfg(lake, [dump, nt]))
    got = _entities(spark, lake)
    assert sorted(got) == sorted(expected) and len(got) == 30
    for qid, row in expected.items():
        assert {k: got[qid][k] for k in FIELDS} == row, qid
    assert (s1.files, s1.bad_records, s1.skipped, s1.inserted) == (2, 2, 4, 30)

    bad = lk.read(spark, lake, tables.BAD_RECORDS).orderBy("offset").collect()
    assert [(b["offset"], b["job"]) for b in bad] == [(3, "ingest-wikidata"), (10, "ingest-wikidata")]
    assert bad[0]["source_file"].endswith("dump.json") and "invalid JSON" in bad[0]["reason"]
    assert bad[1]["sample"] == "not json at all"
    log = {r["source_file"].rsplit("/", 1)[-1]: r for r in lk.read(spark, lake, tables.INGEST_LOG).collect()}
    assert (log["dump.json"]["records"], log["dump.json"]["rows_out"], log["dump.json"]["bad_records"],
            log["dump.json"]["filtered"], log["dump.json"]["status"]) == (34, 30, 2, 2, "ok")
    assert log["sample-truthy.nt"]["records"] == 117 and log["sample-truthy.nt"]["rows_out"] == 8

    # the same files again: nothing read, no table gets a new version
    versions = {t: lk.version(spark, lake, t) for t in (tables.ENTITIES, tables.INGEST_LOG, tables.BAD_RECORDS)}
    again = execute(stage, spark, _cfg(lake, [dump, nt]))
    assert again.done_by == s1.run_id and (again.files, again.ok, again.records, again.updated) == (2, 2, 0, 0)
    assert {t: lk.version(spark, lake, t) for t in versions} == versions

    # --force: entities replaced in place, no duplicate bad records, one more log row per file
    s2 = execute(stage, spark, _cfg(lake, [dump, nt], force=True))
    assert s2.done_by is None and s2.inserted == 0 and s2.updated == 30
    assert lk.read(spark, lake, tables.ENTITIES).count() == 30
    assert lk.read(spark, lake, tables.BAD_RECORDS).count() == 2
    assert lk.read(spark, lake, tables.INGEST_LOG).where(F.col("status") == "ok").count() == 4


def test_a_dump_is_read_again_only_when_it_or_the_options_changed(spark, lake, fixtures, tmp_path, capsys):
    """Skip-if-done keys on the files as listed (a new dump keeps the name latest-all.json.bz2, not its
    size and modification time) and on the languages; maintenance commits do not hide the note."""
    dump = tmp_path / "latest-all.json"
    dump.write_bytes((fixtures / "wikidata" / "sample.json").read_bytes())
    first = execute(stage, spark, _cfg(lake, [dump]))
    assert first.done_by is None and first.inserted == 30
    note = lk.last_data_note(spark, lake, tables.ENTITIES)
    assert stage.noted_run(note, {**json.loads(note)[stage.NOTE_KEY], "run_id": None}) is None
    assert json.loads(note)[stage.NOTE_KEY]["run_id"] == first.run_id

    lk.optimize(spark, lake, tables.ENTITIES)  # what maintain does between refreshes
    assert cli.main(["ingest-wikidata", "--lake", lake, str(dump)]) == 0
    assert f"nothing to do: 1 files, already ingested unchanged by run {first.run_id}" in capsys.readouterr().out

    touched = execute(stage, spark, _cfg(lake, [dump]))  # touched: a new dump under the same name
    assert touched.done_by == first.run_id
    os.utime(dump, ns=(dump.stat().st_atime_ns, dump.stat().st_mtime_ns + 10**9))
    touched = execute(stage, spark, _cfg(lake, [dump]))
    assert touched.done_by is None and touched.updated == 30
    assert execute(stage, spark, _cfg(lake, [dump])).done_by == touched.run_id

    other_languages = execute(stage, spark, _cfg(lake, [dump], languages=["de", "en"]))
    assert other_languages.done_by is None and other_languages.updated == 30

    # a run with a failed file is not done: the next one reads every file again
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    failed = execute(stage, spark, _cfg(lake, [dump, empty]))
    assert failed.ok == 1 and failed.done_by is None
    assert execute(stage, spark, _cfg(lake, [dump, empty])).done_by is None


def test_noted_run_needs_the_same_record():
    rec = {"version": "1", "languages": ["en", "mul"], "files": [["file:/d.json", 10, 5, "json"]]}
    note = stage.commit_note("r1", rec)
    assert stage.noted_run(note, rec) == "r1"
    assert stage.noted_run(note, {**rec, "languages": ["de", "mul"]}) is None
    assert stage.noted_run(note, {**rec, "files": [["file:/d.json", 10, 6, "json"]]}) is None
    assert stage.noted_run(note, {**rec, "version": "2"}) is None
    for other in (None, "", "not json", "[]", '{"x": 1}', json.dumps({stage.NOTE_KEY: {"run_id": 3, **rec}}),
                  json.dumps({stage.NOTE_KEY: "r1"})):
        assert stage.noted_run(other, rec) is None, other


def test_spark_grouping_of_nt_facts_equals_json(spark, fixtures):
    """The distributed assembly (built-in aggregates, sitelinks joined via schema:about) gives the
    JSON reader's rows for the same entities."""
    langs = ("de", "en", "mul")
    res = parse_nt_lines((fixtures / "wikidata" / "sample-truthy.nt").read_text().splitlines(), langs)
    facts = spark.createDataFrame(
        [(s, k, v, r, "f.nt") for s, k, v, r in res.facts],
        "subject string, fact string, value string, rank int, source_file string")
    got = {r["qid"]: r.asDict() for r in stage.assemble_facts(facts).collect()}
    expected = {r["qid"]: r for r in parse_lines((fixtures / "wikidata" / "sample.json").read_text().splitlines(),
                                                 langs).rows}
    assert len(got) == 8
    for qid, row in got.items():
        assert {k: row[k] for k in FIELDS} == expected[qid], qid
        assert row["source_file"] == "f.nt"


def test_nt_facts_of_two_dumps_are_not_merged(spark):
    """An entity in two N-Triples dumps took facts from both (the older dump's parent taxon beside the
    newer one's, the smaller label, the smaller file name); it is one row per file now, and the ingest keeps
    the greatest source_file's row, as for JSON dumps."""
    about = "https://www.wikidata.org/wiki/Special:EntityData/Q1"
    facts = spark.createDataFrame([
        ("Q1", "label", "Oldname", 0, "a.nt"), ("Q1", "P171", "Q10", None, "a.nt"),
        (about, "about", "Q1", None, "a.nt"), (about, "sitelinks", "3", None, "a.nt"),
        ("Q1", "label", "Newname", 0, "b.nt"), ("Q1", "P171", "Q11", None, "b.nt"),
        (about, "about", "Q1", None, "b.nt"), (about, "sitelinks", "5", None, "b.nt"),
        (about[:-1] + "2", "about", "Q2", None, "b.nt"), (about[:-1] + "2", "sitelinks", "7", None, "b.nt"),
        ("Q1", "item", "", None, "b.nt"), ("Q3", "item", "", None, "b.nt"),  # Q3: `a wikibase:Item` only
    ], "subject string, fact string, value string, rank int, source_file string")
    got = sorted((r["qid"], r["source_file"], r["label"], r["parent_taxon"], r["sitelinks"])
                 for r in stage.assemble_facts(facts).collect())
    assert got == [("Q1", "a.nt", "Oldname", ["Q10"], 3), ("Q1", "b.nt", "Newname", ["Q11"], 5),
                   ("Q2", "b.nt", None, [], 7), ("Q3", "b.nt", None, [], None)]


def test_real_excerpts(spark, lake, shared_data):
    wd = shared_data / "wikidata"
    s = execute(stage, spark, _cfg(lake, [wd / "latest-all-2017-head50.json", wd / "Q42-2018.json"]))
    assert (s.files, s.rows_out, s.bad_records) == (2, 50, 0)
    got = _entities(spark, lake)
    assert got["Q144"]["label"] == "dog" and got["Q144"]["subclass_of"] == ["Q39201", "Q622852"]
    assert got["Q144"]["instance_of"] == ["Q213907", "Q502895"]
    assert got["Q160"]["taxon_name"] == "Cetacea" and got["Q160"]["parent_taxon"] == ["Q25833", "Q7993757"]
    assert got["Q42"]["label"] == "Douglas Adams" and got["Q42"]["source_file"].endswith("Q42-2018.json")
    assert got["Q1"]["label"] == "universe"


def test_bad_usage_is_a_user_error(spark, lake, tmp_path):
    with pytest.raises(UserError, match="not found"):
        execute(stage, spark, _cfg(lake, [tmp_path / "missing.json.bz2"]))
    odd = tmp_path / "dump.xml"
    odd.write_text("<x/>")
    with pytest.raises(UserError, match="--format"):
        execute(stage, spark, _cfg(lake, [odd]))
    with pytest.raises(UserError, match="no Wikidata input"):
        execute(stage, spark, _cfg(lake, []))
