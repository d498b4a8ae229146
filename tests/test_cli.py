"""CLI contract: exit codes and one-line errors (no JVM is started for bad usage)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from kgcurate import cli

KGCURATE = [sys.executable, "-m", "kgcurate.cli"]


def test_bad_path_is_exit_2_with_one_line(tmp_path):
    proc = subprocess.run([*KGCURATE, "ingest-wat", "--lake", str(tmp_path / "lake"), str(tmp_path / "nope.wat.gz")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"kgcurate: error: input not found: {tmp_path / 'nope.wat.gz'} "
                     "(pass WAT files, directories, globs or a wat.paths.gz listing)"]
    assert not (tmp_path / "lake").exists()  # nothing was written


def test_unknown_command_and_missing_config(tmp_path, capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert cli.main(["run", "--config", str(tmp_path / "none.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kgcurate: error: config file not found") and "\n" not in err


def test_run_takes_the_report_folder_as_a_flag(monkeypatch, tmp_path):
    """``run --out DIR`` (docker-compose's job puts the report in a volume with it) overrides report.out."""
    seen = {}
    monkeypatch.setattr(cli, "check_lake", lambda *args: None)
    monkeypatch.setattr(cli, "run_stage", lambda module, args, cfg: seen.update(cfg) or 0)
    repo = Path(__file__).resolve().parents[1]
    assert cli.main(["run", "--config", str(repo / "deploy" / "compose.yaml"), "--out", str(tmp_path)]) == 0
    assert seen["report"]["out"] == str(tmp_path)
    assert cli.main(["run", "--config", str(repo / "deploy" / "compose.yaml")]) == 0
    assert seen["report"]["out"] == "/srv/kgcurate/reports"  # the file's value: the `reports` volume


def test_a_report_folder_nothing_writes_is_refused_before_any_stage(monkeypatch, tmp_path, capsys):
    """``report`` and ``run`` check ``--out`` before Spark starts: ``run`` would otherwise fail at its last stage."""
    monkeypatch.setattr(cli, "check_lake", lambda *args: None)
    monkeypatch.setattr(cli.Context, "of", lambda *a: pytest.fail("a stage started"))
    repo = Path(__file__).resolve().parents[1]
    for argv in (["report", "--lake", str(tmp_path)], ["run", "--config", str(repo / "conf" / "demo.yaml")]):
        assert cli.main([*argv, "--out", "hdfs://nn/reports"]) == 2
        assert capsys.readouterr().err.strip() == ("kgcurate: error: report --out hdfs://nn/reports: the report goes "
                                                   "to a local folder or s3://bucket/prefix")


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["ingest-wat", "--min-text-length", "many"])
    assert exc.value.code == 2


def test_every_stage_has_a_job_script_calling_the_cli():
    jobs = Path(__file__).resolve().parents[1] / "jobs"
    for command, (module, _help) in cli.STAGES.items():
        script = (jobs / f"{module}.py").read_text()
        assert f'main(["{command}", *sys.argv[1:]])' in script, module


def test_run_says_which_stages_found_their_work_done(capsys):
    """``kgcurate run``'s per-stage line leads with "nothing to do" for a stage that skipped (done_by), not an
    empty run_id."""
    from kgcurate.stages import run_pipeline
    from kgcurate.stages.build_metadata import BuildMetadataSummary
    from kgcurate.stages.ingest_wikidata import IngestWikidataSummary

    done = IngestWikidataSummary(files=2, ok=2, records=0, rows_out=0, bad_records=0, skipped=0, failed=[],
                                 inserted=0, updated=0, done_by="ingest-wikidata-r7")
    built = BuildMetadataSummary(run_id="build-metadata-r9", rows_total=5, rebuilt="wordnet")
    assert run_pipeline.report({"ingest-wikidata": done, "build-metadata": built}, None) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ingest-wikidata: nothing to do (inputs unchanged since run ingest-wikidata-r7), "
                               "files=2, ok=2")
    assert "run_id" not in lines[0]
    assert lines[1].startswith("build-metadata: run_id=build-metadata-r9, ") and "nothing to do" not in lines[1]


def test_run_prints_the_curated_size_of_a_balance_with_a_target(capsys):
    """The line kept the first ten scalar fields: a ``--target-size`` run's pairs_out came eleventh, so
    ``kgcurate run`` (and ``make demo``) never printed how many pairs were curated."""
    from kgcurate.stages import run_pipeline
    from kgcurate.stages.balance import BalanceSummary

    s = BalanceSummary(run_id="balance-r2", seed=0, per_qid=False, matched_pairs=2571, selection_passes=2, t=16.5,
                       target_size=1000, pairs_in=3835, unmatched_pairs=1264, pairs_out=1000)
    assert run_pipeline.report({"balance": s}, None) == 0
    assert capsys.readouterr().out.startswith(
        "balance: run_id=balance-r2, t=16.5, matched_pairs=2571, pairs_out=1000, seed=0")


def test_run_names_failed_and_partial_files_and_exits_1(capsys):
    """``kgcurate run`` gives the exit code and the warning/error lines ``ingest-wat`` alone gives: a run
    with failed input files is exit 1 and names them, not exit 0 with a summary cut before the count."""
    from kgcurate.stages import run_pipeline
    from kgcurate.stages.ingest_wat import IngestWatSummary
    from kgcurate.stages.match import MatchSummary

    ingest = IngestWatSummary(run_id="ingest-wat-r1", inputs=8, skipped_done=0, files=8, ok=3, partial=2,
                              failed=[("/in/a.warc.wat.gz", "not gzip")] * 3,
                              partial_files=[("/in/b.warc.wat.gz", "cut")] * 2)
    match = MatchSummary(mode="full", reason="first run", metadata_version=0, pairs_version=0, entries=1,
                         entries_skipped=0, pairs_matched=1, pairs_with_match=1, matches=1, entries_with_count=1)
    assert run_pipeline.report({"ingest-wat": ingest, "match": match}, None) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("ingest-wat: run_id=ingest-wat-r1") and len(out.splitlines()) == 2
    assert err.startswith("kgcurate: error: 3 of 8 input files failed (a.warc.wat.gz, a.warc.wat.gz, "
                          "a.warc.wat.gz; see table ingest_log); the others were ingested")
    allowed = dataclasses.replace(ingest, allow_failed_files=True)  # wat.allow_failed_files: a scheduler's choice
    assert run_pipeline.report({"ingest-wat": allowed, "match": match}, None) == 0
    assert capsys.readouterr().err.startswith("kgcurate: warning: 3 of 8 input files failed (a.warc.wat.gz, ")
    every = dataclasses.replace(allowed, files=3, ok=0, partial=0)  # every file failed: still an error, exit 1
    assert run_pipeline.report({"ingest-wat": every, "match": match}, None) == 1
    assert capsys.readouterr().err.startswith("kgcurate: error: 3 of 3 input files failed")
    partial_only = IngestWatSummary(run_id="ingest-wat-r4", inputs=2, skipped_done=0, files=2, ok=1, partial=1,
                                    partial_files=[("/in/b.warc.wat.gz", "cut")])
    assert run_pipeline.report({"ingest-wat": partial_only}, None) == 0
    assert capsys.readouterr().err.startswith("kgcurate: warning: 1 of 2 input files were damaged")
    clean = IngestWatSummary(run_id="ingest-wat-r3", inputs=2, skipped_done=0, files=2, ok=2)
    assert run_pipeline.report({"ingest-wat": clean, "match": match}, None) == 0
    assert capsys.readouterr().err == ""


def test_balance_says_when_its_run_was_recorded_before(capsys):
    from kgcurate.stages import balance

    done = balance.BalanceSummary(run_id="balance-ab12", seed=0, per_qid=False, matched_pairs=9, pairs_in=12,
                                  pairs_out=5, t=3.0, done_by="balance-ab12")
    assert balance.report(done, None) == 0
    again, line = capsys.readouterr().out.splitlines()
    assert again == "balance: nothing to do: run balance-ab12 is recorded with these parameters and inputs " \
                    "(--full selects again)"
    assert line == "balance balance-ab12: t=3.0, pairs in 12, matched 9, unmatched 0 (not curated), curated 5"
    balance.report(balance.BalanceSummary(run_id="balance-cd34", seed=0, per_qid=False, matched_pairs=1), None)
    assert "nothing to do" not in capsys.readouterr().out
