"""Issue #16: Wikidata inputs that cannot abort a run. One run (through the CLI, in process) with
every kind of bad line and bad file next to good files: the good ones are ingested, each bad line
is a bad record with its file and line, each bad file an ingest_log row naming the cause, and the
CLI exits 1 with one line naming the failed files."""

from __future__ import annotations

import bz2
import gzip

import orjson
import pytest
from pyspark.sql import functions as F

from helpers import execute
from kgcurate import cli, tables
from kgcurate import lake as lk
from kgcurate.errors import UserError
from kgcurate.stages import ingest_wikidata as stage
from kgcurate.stages.ingest_wikidata import InputFile, bz2_complete, file_logs, precheck

WD = "<http://www.wikidata.org/entity/{}>"
LABEL = "<http://www.w3.org/2000/01/rdf-schema#label>"
SITELINKS = "<http://wikiba.se/ontology#sitelinks>"
ABOUT = "<http://schema.org/about>"
NODE = "<https://www.wikidata.org/wiki/Special:EntityData/{}>"
XSD_INT = "^^<http://www.w3.org/2001/XMLSchema#integer>"


def _entity(n: int, **fields) -> bytes:
    base = {"type": "item", "id": f"Q{n}", "labels": {"en": {"language": "en", "value": f"thing {n} {n * 7919}"}}}
    return orjson.dumps({**base, **fields})


def _dump(entities: list[bytes]) -> bytes:
    return b"[\n" + b",\n".join(entities) + b"\n]\n"


def _p1843(text) -> dict:
    snak = {"snaktype": "value", "property": "P1843",
            "datavalue": {"type": "monolingualtext", "value": {"language": "en", "text": text}}}
    return {"P1843": [{"rank": "normal", "mainsnak": snak}]}


@pytest.fixture()
def inputs(tmp_path, fixtures):
    """(paths, names) of eight inputs: two good fixtures, two with bad lines, four bad files."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.json").write_bytes((fixtures / "wikidata" / "sample.json").read_bytes())
    (d / "good.nt").write_bytes((fixtures / "wikidata" / "sample-truthy.nt").read_bytes())
    (d / "bad-values.json").write_bytes(_dump([  # lines 1-4 bad, line 5 good
        _entity(970001, labels={"en": {"language": "en", "value": 123}}),
        _entity(970002, descriptions={"en": {"language": "en", "value": 4.5}}),
        _entity(970003, aliases={"en": [{"language": "en", "value": 123}]}),
        _entity(970004, claims=_p1843(123)),
        _entity(970005, claims=_p1843("fine")),
    ]))
    (d / "bad-lines.nt").write_bytes(b"\n".join([
        f'{WD.format("Q970010")} {LABEL} "caf'.encode() + b'\xe9"@en .',                       # 0 invalid UTF-8
        f'{WD.format("Q970011")} {LABEL} "a\\ud800"@en .'.encode(),                            # 1 lone surrogate
        f'{NODE.format("Q970012")} {SITELINKS} "\u00b2" .'.encode(),                          # 2 "²"
        f'{NODE.format("Q970012")} {SITELINKS} "99999999999999999999"{XSD_INT} .'.encode(),   # 3 beyond int
        f'{WD.format("Q970012")} {LABEL} "twelve"@en .'.encode(),                              # 4 good
        f'{NODE.format("Q970012")} {ABOUT} {WD.format("Q970012")} .'.encode(),                 # 5 good
        f'{NODE.format("Q970012")} {SITELINKS} "3"{XSD_INT} .'.encode(),                       # 6 good
    ]) + b"\n")
    many = _dump([_entity(n) for n in range(800000, 803000)])  # ~200 kB: several 100k bzip2 blocks
    packed = bz2.compress(many, compresslevel=1)
    (d / "cut.json.bz2").write_bytes(packed[: len(packed) * 3 // 4])
    packed = gzip.compress(_dump([_entity(n) for n in range(810000, 811000)]))
    (d / "cut.json.gz").write_bytes(packed[: len(packed) // 2])
    (d / "plain.json.bz2").write_bytes((fixtures / "wikidata" / "sample.json").read_bytes()[:400])
    (d / "empty.json").write_bytes(b"")
    (d / "empty.nt").write_bytes(b"")
    names = sorted(p.name for p in d.iterdir())
    return [str(d / n) for n in names], names


def test_bad_lines_and_files_do_not_abort_the_run(spark, lake, inputs, capsys):
    paths, names = inputs
    assert cli.main(["ingest-wikidata", "--lake", lake, *paths]) == 1
    captured = capsys.readouterr()
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("kgcurate: error")]
    assert len(errors) == 1, captured.err
    (line,) = errors
    assert line.startswith("kgcurate: error: 5 of 9 Wikidata input files failed: ")
    for name in ("cut.json.bz2", "cut.json.gz", "empty.json", "empty.nt", "plain.json.bz2"):
        assert name in line
    assert "5 failed" in captured.out and "(0 new" not in captured.out

    log = {r["source_file"].rsplit("/", 1)[-1]: r for r in lk.read(spark, lake, tables.INGEST_LOG).collect()}
    assert sorted(log) == names and len({r["run_id"] for r in log.values()}) == 1
    status = {n: (r["status"], r["error"]) for n, r in log.items()}
    assert status["good.json"] == ("ok", None) and status["good.nt"] == ("ok", None)
    assert status["bad-values.json"] == ("ok", None) and status["bad-lines.nt"] == ("ok", None)
    assert status["empty.json"] == status["empty.nt"] == ("failed", "empty file (0 bytes)")
    assert status["plain.json.bz2"] == ("failed", "not a bzip2 file (no BZh header) though named .bz2")
    assert status["cut.json.bz2"][0] == "failed"
    assert status["cut.json.bz2"][1].startswith("truncated bzip2 stream (no end-of-stream marker); lines before ")
    assert status["cut.json.gz"][0] == "failed"
    assert status["cut.json.gz"][1].startswith("read error: java.io.EOFException: Unexpected end of input stream; ")
    assert (log["bad-values.json"]["records"], log["bad-values.json"]["rows_out"],
            log["bad-values.json"]["bad_records"]) == (5, 1, 4)
    assert log["empty.json"]["records"] == log["empty.json"]["bad_records"] == 1

    bad = {(r["source_file"].rsplit("/", 1)[-1], r["offset"]): r for r in lk.read(spark, lake, tables.BAD_RECORDS)
           .where(F.col("job") == "ingest-wikidata").collect()}
    reasons = {k: r["reason"] for k, r in bad.items()}
    assert reasons[("bad-values.json", 1)] == "labels.en.value is not a string (int)"
    assert reasons[("bad-values.json", 2)] == "descriptions.en.value is not a string (float)"
    assert reasons[("bad-values.json", 3)] == "aliases.en.value is not a string (int)"
    assert reasons[("bad-values.json", 4)] == "P1843 text is not a string (int)"
    assert reasons[("bad-lines.nt", 0)].startswith("invalid UTF-8 byte 0xe9")
    assert reasons[("bad-lines.nt", 1)] == "lone surrogate escape in the object (not UTF-8)"
    assert reasons[("bad-lines.nt", 2)] == "sitelinks count is not a non-negative integer: '²'"
    assert reasons[("bad-lines.nt", 3)].startswith("sitelinks count 99999999999999999999 is beyond")
    assert reasons[("empty.json", 0)] == reasons[("empty.nt", 0)] == "empty file (0 bytes)"
    assert reasons[("plain.json.bz2", 0)].startswith("not a bzip2 file")
    cut = log["cut.json.bz2"]
    lines_kept = int(cut["error"].split("before offset ")[1].split(" ")[0].replace(",", ""))
    assert reasons[("cut.json.bz2", lines_kept)].startswith("truncated bzip2 stream")
    assert not [k for k in bad if k[0] in ("good.json", "good.nt")]

    entities = {r["qid"]: r for r in lk.read(spark, lake, tables.ENTITIES).collect()}
    assert {"Q729", "Q144", "Q42", "Q970005", "Q970012"} <= set(entities)
    assert entities["Q970005"]["common_names"] == ["fine"] and entities["Q970012"]["sitelinks"] == 3
    assert not {"Q970001", "Q970002", "Q970003", "Q970004", "Q970010", "Q970011"} & set(entities)
    # the lines before the damage are kept: whole bzip2 blocks, and what gzip inflated before the cut
    kept_bz2 = [q for q in entities if q.startswith("Q80")]
    kept_gz = [q for q in entities if q.startswith("Q81")]
    assert 0 < len(kept_bz2) < 3000 and 0 < len(kept_gz) < 1000
    assert cut["rows_out"] == len(kept_bz2) and log["cut.json.gz"]["rows_out"] == len(kept_gz)

    # a run that merges nothing reports 0 new (not the counts of the previous MERGE in the history)
    only_bad = [p for p in paths if p.endswith(("empty.json", "plain.json.bz2"))]
    s = execute(stage, spark, {**_cfg(lake), "wikidata": {"input": only_bad}})
    assert (s.files, s.ok, s.inserted, s.updated, s.rows_out) == (2, 0, 0, 0, 0)
    assert [p.rsplit("/", 1)[-1] for p, _ in s.failed] == ["empty.json", "plain.json.bz2"]


def _cfg(lake: str) -> dict:
    from kgcurate import config

    cfg = config.load(None)
    cfg["lake"] = lake
    return cfg


def test_precheck_rules():
    full = bz2.compress(b"[\n]\n" * 1000)
    assert bz2_complete(full[-11:]) and not bz2_complete(full[:-3][-11:]) and bz2_complete(bz2.compress(b"")[-10:])
    assert precheck("x.json", 0, b"", b"") == ("empty file (0 bytes)", False)
    assert precheck("x.nt.bz2", 9, b"[\n{", b"") == ("not a bzip2 file (no BZh header) though named .bz2", False)
    assert precheck("x.json.bz2", len(full), full[:4], full[-11:]) == (None, True)
    assert precheck("x.json.bz2", 100, full[:4], full[40:51]) == ("truncated bzip2 stream (no end-of-stream marker)",
                                                                  True)
    assert precheck("x.json.gz", 5, b"[\n]\n", b"") == ("not a gzip file (no gzip header) though named .gz", False)
    assert precheck("x.json.gz", 5, b"\x1f\x8b\x08\x00", b"") == (None, True)


def test_file_logs_account_for_every_file():
    files = [InputFile("a", "file:/a.json", 10, "json"), InputFile("b", "file:/b.json.bz2", 10, "json",
                                                                    "truncated bzip2 stream", True),
             InputFile("c", "file:/c.json.gz", 20, "json"), InputFile("d", "file:/d.json", 30, "json"),
             InputFile("e", "file:/e.json", 30, "json")]
    stats = {"file:/a.json": {"records": 3, "rows_out": 2, "bad_records": 1, "skipped": 0, "lines": 5},
             "file:/b.json.bz2": {"records": 4, "rows_out": 4, "lines": 1200},
             "file:/d.json": {"records": 3, "bad_records": 3, "skipped": 0, "lines": 3},  # an HTML error page
             "file:/e.json": {"records": 3, "bad_records": 1, "skipped": 2, "lines": 3}}  # properties only
    a, b, c, d, e = file_logs(files, stats)
    assert (d["status"], d["records"], d["bad_records"]) == ("failed", 4, 4)
    assert d["error"] == "not a Wikidata dump: none of its 3 records is an entity (each is a bad record)"
    assert (e["status"], e["error"]) == ("ok", None)
    assert (a["status"], a["records"], a["bad_records"], a["error"]) == ("ok", 3, 1, None)
    assert (b["status"], b["records"], b["bad_records"], b["rows_out"]) == ("failed", 5, 1, 4)
    assert b["error"] == "truncated bzip2 stream; lines before offset 1,200 were read and kept"
    assert (c["status"], c["error"]) == ("failed", "no lines to read (empty after decompression)")


class _Java:
    """A stand-in for a py4j JVM exception chain."""

    def __init__(self, text: str, cause: _Java | None = None) -> None:
        self.text, self.cause = text, cause

    def toString(self) -> str:  # noqa: N802 - the JVM's name
        return self.text

    def getCause(self) -> _Java | None:  # noqa: N802
        return self.cause


def test_read_failure_names_the_file_and_cause():
    cause = _Java("java.io.EOFException: Unexpected end of input stream")
    spark_err = _Java("org.apache.spark.SparkException: [FAILED_READ_FILE.NO_HINT] Encountered error while reading "
                      "file file:///data/sp%20ace.json.gz.  SQLSTATE: KD001", cause)
    exc = Exception("An error occurred while calling o1.parquet.")
    exc.java_exception = _Java("org.apache.spark.SparkException: Job aborted due to stage failure", spark_err)
    assert stage.read_failure(exc) == ("file:///data/sp%20ace.json.gz",
                                       "java.io.EOFException: Unexpected end of input stream")
    assert stage._key("file:///data/sp%20ace.json.gz") == stage._key("file:/data/sp ace.json.gz")
    text = Exception("x\n: org.apache.spark.SparkException: [FAILED_READ_FILE.NO_HINT] Encountered error while "
                     "reading file s3a://b/d.nt.gz.  SQLSTATE: KD001\n\tat a.b\nCaused by: java.io.IOException: "
                     "not a gzip file\n")
    assert stage.read_failure(text) == ("s3a://b/d.nt.gz", "java.io.IOException: not a gzip file")
    assert stage.read_failure(Exception("ArrowTypeError: something else")) is None
    assert stage._error_line(exc) == "Exception: java.io.EOFException: Unexpected end of input stream"


def test_failure_line_is_one_line_naming_the_files():
    assert stage.failure_line([], 2) is None
    failed = [(f"file:/d/f{i}.json", "empty file (0 bytes)") for i in range(7)]
    line = stage.failure_line(failed, 9)
    assert "\n" not in line and line.startswith("kgcurate: error: 7 of 9 Wikidata input files failed: f0.json (")
    assert "f4.json" in line and "f5.json" not in line and "and 2 more" in line
    assert stage.failure_line(failed, 7).endswith("; nothing was ingested")
    cut = [("file:/d/cut.json.gz", "read error: ...")]
    assert stage.failure_line(cut, 1, rows_out=6).endswith("no file was read whole (6 entities from before the "
                                                             "damage were kept)")
    assert stage.failure_line(cut, 2, rows_out=6).endswith("the others were ingested")


def test_a_dump_whose_first_line_is_damaged_keeps_its_other_entities(spark, lake, tmp_path, capsys):
    """The first line decides whether a file is a dump or one document: a cut first line made the file one
    document, its good entities lost with it (0 of 30 ingested)."""
    path = tmp_path / "cut-first.json"
    path.write_bytes(_entity(990001)[:25] + b"\n" + b",\n".join(_entity(n) for n in range(990002, 990006)) + b"\n")
    assert cli.main(["ingest-wikidata", "--lake", lake, str(path)]) == 0
    assert "1 bad records" in capsys.readouterr().out
    qids = sorted(r["qid"] for r in lk.read(spark, lake, tables.ENTITIES).collect())
    assert qids == [f"Q{n}" for n in range(990002, 990006)]
    (bad,) = lk.read(spark, lake, tables.BAD_RECORDS).where(F.col("job") == "ingest-wikidata").collect()
    assert bad["offset"] == 0 and bad["source_file"].endswith("cut-first.json")


def test_inputs_are_listed_per_file(spark, tmp_path):
    """Globs and folders become files on the driver (no Spark job), each with Spark's spelling."""
    (tmp_path / "d").mkdir()
    for name in ("a.json", "b c.json.bz2", "_SUCCESS", ".hidden.json"):
        (tmp_path / "d" / name).write_bytes(b"x")
    got = stage.list_files(spark, [str(tmp_path / "d" / "*.json*")], None)
    assert [(f.uri.rsplit("/", 1)[-1], f.fmt, f.size) for f in got] == [("a.json", "json", 1),
                                                                         ("b%20c.json.bz2", "json", 1)]
    assert all(f.uri.startswith("file:/") and not f.uri.startswith("file://") for f in got)
    got = stage.list_files(spark, [str(tmp_path / "d"), str(tmp_path / "d" / "a.json")], "nt")
    assert sorted(f.uri.rsplit("/", 1)[-1] for f in got) == ["a.json", "b%20c.json.bz2"]
    assert {f.fmt for f in got} == {"nt"}
    # Hadoop's {a,b}: the check before Spark took it for a missing file, though the listing reads it
    braces = str(tmp_path / "d" / "{a.json,b c.json.bz2}")
    stage.check_inputs([braces])
    assert [f.uri.rsplit("/", 1)[-1] for f in stage.list_files(spark, [braces], None)] == ["a.json", "b%20c.json.bz2"]
    with pytest.raises(UserError, match="Wikidata input not found: .*{x,y}.json"):
        stage.list_files(spark, [str(tmp_path / "d" / "{x,y}.json")], None)
    with pytest.raises(UserError, match="Wikidata input not found"):
        stage.check_inputs([str(tmp_path / "d" / "c.json")])


@pytest.mark.slow
def test_cli_shows_one_line_not_the_jvm_trace_of_a_cut_file(tmp_path):
    """A file Spark fails to read: the CLI's own process (its JVM at console level OFF) prints no Spark
    ERROR line or Java stack trace above its one error line; ``log4j2.properties`` names loggers (Spark's
    Utils at ERROR) that a root-level OFF alone did not silence. The file is failed, so it is read again."""
    from helpers import start_cli

    packed = gzip.compress(_dump([_entity(n) for n in range(820000, 820400)]))
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    proc = start_cli(["ingest-wikidata", "--lake", str(tmp_path / "lake"), str(cut)], tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-2000:]
    shown = [ln for ln in err.splitlines() if " INFO " not in ln and not ln.startswith("WARNING: Using incubator")]
    assert not [ln for ln in shown if " ERROR " in ln or ln.startswith(("\tat ", "Caused by"))], err[-3000:]
    assert shown[-1].startswith("kgcurate: error: 1 of 1 Wikidata input files failed: cut.json.gz (read error: ")


def test_a_document_that_is_not_utf8_is_a_bad_record_not_the_end_of_the_run(spark, lake, tmp_path, capsys):
    """One Latin-1 byte in a pretty-printed document reached the Python worker as an Arrow string, whose
    decoding raised there: the job aborted, every file failed and no entity was written."""
    d = tmp_path / "in"
    d.mkdir()
    entity = {"type": "item", "id": "Q990101", "labels": {"en": {"language": "en", "value": "Caf\u00e9"}}}
    (d / "latin1.json").write_bytes(orjson.dumps(entity, option=orjson.OPT_INDENT_2).decode().encode("latin-1"))
    (d / "good.json").write_bytes(orjson.dumps({**entity, "id": "Q990102"}, option=orjson.OPT_INDENT_2))
    (d / "dump.json").write_bytes(_dump([_entity(990103)]))
    assert cli.main(["ingest-wikidata", "--lake", lake, *sorted(str(p) for p in d.iterdir())]) == 1
    assert "1 of 3 Wikidata input files failed: latin1.json (not a Wikidata dump" in capsys.readouterr().err
    assert sorted(r["qid"] for r in lk.read(spark, lake, tables.ENTITIES).collect()) == ["Q990102", "Q990103"]
    log = {r["source_file"].rsplit("/", 1)[-1]: r["status"] for r in lk.read(spark, lake, tables.INGEST_LOG).collect()}
    assert log == {"latin1.json": "failed", "good.json": "ok", "dump.json": "ok"}
    # for a scheduler whose later tasks must run anyway: the same line as a warning, exit 0
    assert cli.main(["ingest-wikidata", "--lake", lake, "--allow-failed-files",
                     *sorted(str(p) for p in d.iterdir())]) == 0
    assert capsys.readouterr().err.startswith("kgcurate: warning: 1 of 3 Wikidata input files failed: latin1.json")
    bad = [(r["offset"], r["reason"]) for r in lk.read(spark, lake, tables.BAD_RECORDS)
           .where(F.col("source_file").endswith("latin1.json")).collect()]
    assert [o for o, r in bad if r.startswith("invalid JSON document: ")] == [0], bad


def test_offset_is_the_line_number_in_a_file_under_max_partition_bytes(spark, lake, tmp_path):
    """Spark splits at min(maxPartitionBytes, max(openCostInBytes, total bytes / parallelism)): a 21 MB dump on
    2 cores was two splits, and a bad line's offset was a byte offset plus a line index. The open cost (4 MB) is
    lowered here so that a ~140 kB dump is what a 21 MB one is by default."""
    n, bad_line = 2000, 1990
    lines = [_entity(991000 + i) if i != bad_line else _entity(991000 + i, labels={"en": {"value": 5}})
             for i in range(1, n)]
    path = tmp_path / "dump.json"
    path.write_bytes(_dump(lines))
    assert path.stat().st_size > 100_000
    with lk.session_conf(spark, "spark.sql.files.openCostInBytes", "1024"):
        assert cli.main(["ingest-wikidata", "--lake", lake, str(path)]) == 0
    (bad,) = lk.read(spark, lake, tables.BAD_RECORDS).where(F.col("job") == "ingest-wikidata").collect()
    assert (bad["offset"], bad["reason"]) == (bad_line, "labels.en.value is not a string (int)")
    assert lk.read(spark, lake, tables.ENTITIES).count() == n - 2


def test_allowed_failed_files_are_a_warning_unless_every_file_failed(capsys):
    """--allow-failed-files: one bad file of several is a warning and exit 0; the one dump failing (cut,
    unreadable) stays exit 1, or every later task would run on old or empty entities."""
    from kgcurate.stages.ingest_wikidata import IngestWikidataSummary, report

    def summary(files: int, failed: int) -> IngestWikidataSummary:
        return IngestWikidataSummary(files=files, ok=files - failed, records=10, rows_out=9, bad_records=0, skipped=0,
                                     failed=[(f"/d/f{i}.json", "cut") for i in range(failed)], inserted=9, updated=0,
                                     allow_failed_files=True)

    assert report(summary(3, 1), None) == 0
    assert capsys.readouterr().err.startswith("kgcurate: warning: 1 of 3 Wikidata input files failed: f0.json")
    assert report(summary(1, 1), None) == 1
    assert capsys.readouterr().err.startswith("kgcurate: error: 1 of 1 Wikidata input files failed: f0.json")
