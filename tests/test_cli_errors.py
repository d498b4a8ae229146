"""Misuse that used to reach the JVM: exit 2 and one line naming the flag, key or path, before
any Spark session exists (so these tests start no JVM)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kgcurate import cli, config, session, settings
from kgcurate.errors import UserError, first_line, io_error_from_jvm

BIG = "99999999999999999999"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "error:" in err
    return err


@pytest.mark.parametrize(("argv", "words"), [
    (["balance", "--target-size", BIG], ["--target-size", "out of range", "9223372036854775807"]),
    (["balance", "--target-size", "0"], ["--target-size", "out of range"]),
    (["balance", "--t", "1", "--seed", BIG], ["--seed", "out of range", "-9223372036854775808"]),
    (["balance", "--t", "0"], ["--t", "> 0"]),
    (["refresh", "--crawl", "CC-MAIN-2024-51", "--target-size", BIG], ["--target-size", "out of range"]),
    (["ingest-wat", "--progress-interval", "0", "x.wat.gz"], ["--progress-interval", "> 0"]),
    (["ingest-wat", "--progress-interval", "-5", "x.wat.gz"], ["--progress-interval", "> 0"]),
    (["ingest-wat", "--progress-interval", "nan", "x.wat.gz"], ["--progress-interval", "> 0"]),
    (["maintain", "--parallel-tables", "0"], ["--parallel-tables", "out of range (allowed 1 .. 1024)"]),
])
def test_out_of_range_flags_exit_2_with_one_line(argv, words, capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--lake", str(tmp_path / "lake")])
    assert exc.value.code == 2
    err = one_error_line(capsys)
    for w in words:
        assert w in err, err
    assert not (tmp_path / "lake").exists()


def test_lake_that_is_a_file_or_under_a_file(capsys, tmp_path) -> None:
    f = tmp_path / "lake.txt"
    f.write_text("not a lake")
    assert cli.main(["balance", "--lake", str(f), "--t", "5"]) == 2
    assert f"lake {f} is a file, not a directory" in one_error_line(capsys)
    assert cli.main(["match", "--lake", str(f / "sub")]) == 2
    assert f"{f} is a file, not a directory" in one_error_line(capsys)
    wat = tmp_path / "in.wat"
    wat.write_text("WARC/1.0\r\n")
    assert cli.main(["ingest-wat", "--lake", str(f), str(wat)]) == 2
    assert "is a file, not a directory" in one_error_line(capsys)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run as another user")
def test_read_only_or_unreachable_lake_exit_2_names_the_path(tmp_path) -> None:
    ro = Path(tempfile.mkdtemp(prefix="kgcurate-ro-"))  # outside pytest's 0700 folder
    hidden = tmp_path / "hidden"  # pytest's folder: user nobody cannot even look inside
    try:
        os.chmod(ro, 0o755)  # owned by root: user nobody can read but not write here
        for lake, want in (
            (ro / "lake", f"lake {ro / 'lake'} is not writable ({ro}: permission denied): "
                          "pick a lake you can write or fix its permissions"),
            (hidden / "lake", f"lake {hidden / 'lake'} is not accessible ({hidden / 'lake'}: permission denied): "
                              "pick a lake you can reach or fix its permissions"),
        ):
            proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                                   "-m", "kgcurate.cli", "balance", "--lake", str(lake), "--t", "5"],
                                  capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(ro)},
                                  cwd=str(ro))
            assert proc.returncode == 2, proc.stderr[-2000:]
            assert proc.stderr.strip().splitlines() == [f"kgcurate: error: {want}"]
    finally:
        shutil.rmtree(ro)


@pytest.mark.parametrize(("text", "words"), [
    ("balance: [1, 2]\n", ["section 'balance' must be a mapping", "list"]),
    ("balance:\n  t: abc\n", ["'balance.t' must be an integer or a number", "'abc'"]),
    ("balance:\n  target_size: 99999999999999999999\n", ["'balance.target_size'", "out of range"]),
    ("balanse:\n  t: 5\n", ["unknown key 'balanse'", "did you mean 'balance'"]),
    ("balance:\n  tt: 5\n", ["unknown key 'balance.tt'", "did you mean 'balance.t'"]),
    ("wat:\n  progress_interval: 0\n", ["'wat.progress_interval' must be > 0"]),
    ("match:\n  lowercase: 'yes'\n", ["'match.lowercase' must be true/false"]),
    ("wat:\n  max_text_length: true\n", ["'wat.max_text_length' must be an integer"]),
    # what the key's flag refuses, the YAML refuses too (these failed after Spark started, or divided by zero)
    ("download:\n  shard_size: 20000\n", ["'download.shard_size'", "out of range (allowed 1 .. 10000)"]),
    ("train:\n  gpus: 0\n", ["'train.gpus'", "out of range"]),
    # YAML-only keys: max_pixels 0 failed every shard after Spark started, max_redirects -1 failed every image
    ("maintain:\n  parallel_tables: 0\n", ["'maintain.parallel_tables' must be > 0"]),  # was found with Spark up
    ("download:\n  max_pixels: 0\n", ["'download.max_pixels' must be > 0"]),
    ("download:\n  max_bytes: -5\n", ["'download.max_bytes' must be > 0"]),
    ("download:\n  max_redirects: -1\n", ["'download.max_redirects'", "out of range (allowed 0 .. 100)"]),
    ("download:\n  max_redirects: 1.5\n", ["'download.max_redirects' must be an integer"]),
    ("balance:\n  t: .inf\n", ["'balance.t'", "finite number > 0"]),
    ("evaluate:\n  templates: fancy\n", ["'evaluate.templates' must be one of openai, simple", "'fancy'"]),
    ("lake:\n", ["'lake' is empty"]),
])
def test_config_of_the_wrong_shape_exit_2_naming_the_key(text, words, capsys, tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    assert cli.main(["balance", "--config", str(p), "--lake", str(tmp_path / "lake")]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"kgcurate: error: config file {p}: ")
    for w in words:
        assert w in err, err


@pytest.mark.parametrize(("argv", "words"), [
    (["--min-text-length", "100", "--max-text-length", "10"], ["min_text_length=100", "max_text_length=10",
                                                               "keep no text"]),
    (["--min-text-length", "-5"], ["min_text_length=-5", "keep no text"]),
    (["--max-text-length", "0"], ["max_text_length=0", "keep no text"]),
])
def test_text_bounds_that_keep_nothing_exit_2_before_any_file_is_logged(argv, words, capsys, tmp_path) -> None:
    """Bounds that filter every text would log every file ok with no pair: a re-run would skip them."""
    wat = tmp_path / "in.warc.wat.gz"
    wat.write_bytes(b"")
    assert cli.main(["ingest-wat", "--lake", str(tmp_path / "lake"), *argv, str(wat)]) == 2
    err = one_error_line(capsys)
    for w in words:
        assert w in err, err
    p = tmp_path / "c.yaml"
    p.write_text(f"wat:\n  inputs: [{wat}]\n  min_text_length: 9\n  max_text_length: 3\n")
    assert cli.main(["run", "--config", str(p), "--lake", str(tmp_path / "lake")]) == 2
    assert "keep no text" in one_error_line(capsys)
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize("sources", ["[Alt, caption]", "[]"])
def test_text_sources_that_keep_nothing_exit_2_before_any_file_is_logged(sources, capsys, tmp_path) -> None:
    """A typo in wat.text_sources (or an empty list) ingested no pair, exited 0 and logged the files done,
    so the run with the right sources said "nothing to do"."""
    wat = tmp_path / "in.warc.wat.gz"
    wat.write_bytes(b"")
    p = tmp_path / "c.yaml"
    p.write_text(f"wat:\n  text_sources: {sources}\n")
    assert cli.main(["ingest-wat", "--config", str(p), "--lake", str(tmp_path / "lake"), str(wat)]) == 2
    err = one_error_line(capsys)
    assert "wat.text_sources must name alt, title or both" in err and "--no-title" in err, err
    assert not (tmp_path / "lake").exists()


def test_empty_keys_take_their_defaults_and_exponents_are_numbers(tmp_path) -> None:
    """A section whose keys are all commented out is null in YAML: it crashed stages that read it (a TypeError
    after Spark started); ``2e4`` was a string to YAML 1.1, refused as "must be a number"."""
    from kgcurate import config

    p = tmp_path / "c.yaml"
    p.write_text("lake: /data/lake\nbalance:\n  # t: 100\nspark:\nwat:\n  crawl:\n"
                 "train:\n  lr: 5e-4\n  wd: 1E+1\n")
    cfg = config.load(p)
    assert cfg["balance"] == config.DEFAULTS["balance"] and cfg["spark"] == {"conf": {}}
    assert cfg["wat"]["crawl"] is None and (cfg["train"]["lr"], cfg["train"]["wd"]) == (0.0005, 10.0)
    p.write_text("balance:\n  t: 2e4\n")
    assert config.load(p)["balance"]["t"] == 20000.0
    p.write_text("wat:\n  crawl: '2e4'\n")  # quoted: a string still
    assert config.load(p)["wat"]["crawl"] == "2e4"


@pytest.mark.parametrize(("command", "balance", "words"), [
    (["run"], "t: 100\n  target_size: 1000", ["exactly one of --t, --target-size, --tail-share", "got 2"]),
    (["run"], "tail_share: 5", ["balance.tail_share", "(0, 1], got 5"]),
    (["balance"], "tail_share: 1.5", ["balance.tail_share", "(0, 1], got 1.5"]),
    (["refresh", "--crawl", "CC-MAIN-2024-10"], "t: 5\n  tail_share: 0.5", ["refresh needs exactly one", "got 2"]),
    (["refresh", "--crawl", "CC-MAIN-2024-10"], "tail_share: 2", ["(0, 1], got 2"]),
])
def test_a_balance_target_that_cannot_work_exit_2_before_spark(command, balance, words, capsys, tmp_path) -> None:
    """balance checked its target after Spark started: `kgcurate run` ingested, built metadata and matched
    first, refresh ingested and matched a crawl."""
    wat = tmp_path / "in.warc.wat.gz"
    wat.write_bytes(b"")
    p = tmp_path / "c.yaml"
    p.write_text(f"wat:\n  inputs: [{wat}]\nbalance:\n  {balance}\n")
    lake = tmp_path / "lake"
    assert cli.main([*command, "--config", str(p), "--lake", str(lake)]) == 2
    err = one_error_line(capsys)
    for w in words:
        assert w in err, err
    assert not lake.exists()


def test_entity_set_takes_its_specs_from_the_config_and_refuses_none(capsys, tmp_path) -> None:
    lake = str(tmp_path / "lake")
    assert cli.main(["entity-set", "--lake", lake]) == 2
    assert "entity_set.specs" in one_error_line(capsys)
    p = tmp_path / "c.yaml"
    for key in ("entity_set: {specs: [conf/entity_sets/nope.yaml]}",
                "metadata: {entity_sets: [conf/entity_sets/nope.yaml, organisms]}"):
        p.write_text(key + "\n", encoding="utf-8")
        assert cli.main(["entity-set", "--config", str(p), "--lake", lake]) == 2
        assert "nope.yaml" in one_error_line(capsys)  # the config's spec was read (and checked) before Spark
    assert not (tmp_path / "lake").exists()


def test_config_file_that_is_not_utf8_exit_2_naming_it(capsys, tmp_path) -> None:
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"\xff\xfe bad")
    assert cli.main(["match", "--config", str(p)]) == 2
    assert one_error_line(capsys) == f"kgcurate: error: config file {p} is not UTF-8 text: save it as UTF-8 YAML"


def test_an_output_folder_that_is_a_file_or_lacks_s3_credentials_exit_2(capsys, tmp_path, monkeypatch) -> None:
    """report --out / download --out: refused before Spark starts, not after the work they were to store."""
    f = tmp_path / "afile"
    f.write_text("x")
    assert cli.main(["report", "--lake", str(tmp_path / "lake"), "--out", str(f)]) == 2
    assert f"{f} is a file, not a folder" in one_error_line(capsys)
    assert cli.main(["download", "--lake", str(tmp_path / "lake"), "--out", str(f / "shards")]) == 2
    assert f"{f} is a file, not a folder" in one_error_line(capsys)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert cli.main(["download", "--lake", str(tmp_path / "lake"), "--out", "s3://bucket/shards"]) == 2
    assert "no AWS credentials to write s3://bucket/shards: set AWS_ACCESS_KEY_ID" in one_error_line(capsys)
    assert cli.main(["report", "--lake", str(tmp_path / "lake"), "--out", "s3a://bucket/reports/"]) == 2
    assert "no AWS credentials to write s3://bucket/reports: set AWS_ACCESS_KEY_ID" in one_error_line(capsys)
    assert not (tmp_path / "lake").exists()


def test_an_s3_output_without_a_bucket_or_an_unsendable_user_agent_exit_2(capsys, tmp_path) -> None:
    """Both used to start Spark: `--out s3://` failed as 'download failed: ValueError' (exit 1), a User-Agent
    with a line break or a CJK character made every URL an internal_error."""
    lake = str(tmp_path / "lake")
    for out in ("s3://", "s3a:///shards"):
        assert cli.main(["download", "--lake", lake, "--out", out]) == 2
        assert one_error_line(capsys) == (f"kgcurate: error: download --out {out}: the S3 URL names no bucket: "
                                          "shards go to a local folder or s3://bucket/prefix")
    assert cli.main(["report", "--lake", lake, "--out", "s3://"]) == 2
    assert "report --out s3://: the S3 URL names no bucket: the report goes to" in one_error_line(capsys)
    out = str(tmp_path / "shards")
    for agent, words in (("AcmeBot/1.0\r\nX-Evil: 1", ["'AcmeBot/1.0\\r\\nX-Evil: 1'", "control character '\\r'"]),
                         ("研究Bot/1.0", ["character '研' outside Latin-1"])):
        assert cli.main(["download", "--lake", lake, "--out", out, "--user-agent", agent]) == 2
        err = one_error_line(capsys)
        assert err.startswith("kgcurate: error: download --user-agent ") and "pass a one-line User-Agent" in err
        for w in words:
            assert w in err, err
    assert not (tmp_path / "lake").exists() and not (tmp_path / "shards").exists()


def test_shipped_configs_validate() -> None:
    for name in ("conf/demo.yaml", "conf/cluster.yaml", "deploy/compose.yaml"):
        config.load(name)
    config.validate({"spark": {"conf": {"spark.any.key": 1}}, "balance": {"t": 3, "tail_share": 0.5}}, "x")
    with pytest.raises(UserError, match="'spark.conf' must be a mapping"):
        config.validate({"spark": {"conf": [1]}}, "x")
    with pytest.raises(UserError, match=r"'spark.conf.spark.sql.shuffle.partitions' must be one value .*\[1, 2\]"):
        config.validate({"spark": {"conf": {"spark.sql.shuffle.partitions": [1, 2]}}}, "x")


def test_a_spark_setting_spark_refuses_is_one_line_with_its_cause() -> None:
    """Spark builds its SQL settings on first use: a bad value failed the first query as "Error while
    instantiating SessionStateBuilder", exit 1, the cause only in the JVM trace."""
    text = ("Error while instantiating 'org.apache.spark.sql.internal.SessionStateBuilder':\n\nJVM stacktrace:\n"
            "java.lang.IllegalArgumentException: Error while instantiating 'org.apache.spark.sql.internal."
            "SessionStateBuilder':\n\tat org.apache.spark.sql.SparkSession...\nCaused by: java.lang."
            "IllegalArgumentException: spark.sql.shuffle.partitions should be int, but was abc\n\tat ...")

    class Builder:
        def getOrCreate(self):
            raise RuntimeError(text)

    with pytest.raises(UserError) as err:
        session._start(Builder())
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("Spark could not start: java.lang.IllegalArgumentException: "
                                              "spark.sql.shuffle.partitions should be int, but was abc")
    assert "--spark-conf" in msg


def test_debug_shows_the_trace_and_keeps_the_exit_code(capsys, tmp_path) -> None:
    """--debug re-raised, so a usage error exited 1 with it and 2 without: a scheduler adding --debug to
    diagnose saw another outcome."""
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["match", "--lake", str(f), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith(
        "kgcurate: error: lake ") and "is a file, not a directory" in err


def test_usage_slips_point_at_the_fix(capsys) -> None:
    assert cli.main(["match", "--lake", "s3://bucket/lake"]) == 2  # Hadoop here has s3a:// only
    assert capsys.readouterr().err.strip() == ("kgcurate: error: lake s3://bucket/lake: Spark's S3 filesystem is "
                                               "s3a://, not s3:// (Hadoop has no s3:// here): pass --lake "
                                               "s3a://bucket/lake")
    with pytest.MonkeyPatch.context() as mp:  # s3a retried a refused endpoint for minutes, printing nothing
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            free = sock.getsockname()[1]  # closed again: nothing listens there
        mp.setenv("KGCURATE_S3_ENDPOINT", f"http://127.0.0.1:{free}")
        assert cli.main(["match", "--lake", "s3a://bucket/lake"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kgcurate: error: lake s3a://bucket/lake is not reachable (S3 endpoint "
                          f"http://127.0.0.1:{free}: ") and "start the S3 service" in err
    with pytest.MonkeyPatch.context() as mp, socket.socket() as listening:  # the endpoint Spark uses wins
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        mp.setenv("KGCURATE_S3_ENDPOINT", f"http://127.0.0.1:{free}")
        live = f"spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:{listening.getsockname()[1]}"
        mp.setattr(cli, "run_stage", lambda *a: 0)
        assert cli.main(["match", "--lake", "s3a://bucket/lake", "--spark-conf", live]) == 0
    assert cli.main(["--debug", "balanse", "--out", "report"]) == 2  # not "kgcurate report ..."
    assert capsys.readouterr().err.strip() == "kgcurate: error: unknown command 'balanse' (see kgcurate --help)"
    assert cli.main(["--lake", "/tmp/l", "match"]) == 2
    assert capsys.readouterr().err.strip() == ("kgcurate: error: options go after the command: "
                                               "kgcurate match --lake /tmp/l")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["evaluate", "--lake", "l", "--trainrun", "x"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().endswith("(see kgcurate evaluate --help)")


def test_choices_that_leave_nothing_or_one_ignored_are_refused(capsys, tmp_path) -> None:
    """`run --only X --skip X` exited 0 and printed nothing; `make-sample --records N --size-mb M` wrote M MB
    and ignored N."""
    assert cli.main(["run", "--config", "conf/demo.yaml", "--only", "match", "--skip", "match"]) == 2
    assert "no stage left to run: --only match and --skip match select nothing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["make-sample", "--out", str(tmp_path / "s"), "--records", "10", "--size-mb", "0.5"])
    assert exit_.value.code == 2 and "--size-mb: not allowed with argument --records" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_the_design_s_flag_spellings_are_accepted() -> None:
    """../shared/design.md writes `train --download-run D` and `evaluate --train-run T`."""
    for command, flag, dest in (("train", "--download-run", "train.download_run_id"),
                                ("evaluate", "--train-run", "evaluate.train_run_id")):
        args = cli.build_parser(command).parse_args([command, "--lake", "l", flag, "run-7"])
        assert getattr(args, dest) == "run-7"


def test_jvm_io_errors_become_one_line() -> None:
    denied = RuntimeError("An error occurred while calling o131.parquet.\n: java.nio.file.AccessDeniedException: "
                          "/data/lake/pairs/_delta_log\n\tat sun.nio.fs...")
    err = io_error_from_jvm(denied)
    assert err is not None and str(err) == ("cannot write /data/lake/pairs/_delta_log: permission denied "
                                            "(check the lake path and its permissions)")
    mkdirs = RuntimeError(": java.io.IOException: Mkdirs failed to create /ro/lake/x (exists=false, cwd=file:/)")
    assert "cannot write /ro/lake/x: cannot create the directory" in str(io_error_from_jvm(mkdirs))
    assert io_error_from_jvm(RuntimeError("division by zero")) is None
    # s3a without credentials comes wrapped in an AccessDeniedException: not a permission problem
    s3a = RuntimeError(": java.nio.file.AccessDeniedException: s3a://b/lake/_delta_log: "
                       "org.apache.hadoop.fs.s3a.auth.NoAuthWithAWSException: No AWS Credentials provided")
    worker = RuntimeError("PythonException: ... botocore.exceptions.NoCredentialsError: Unable to locate credentials")
    for exc in (s3a, worker):
        assert str(io_error_from_jvm(exc)).startswith("no AWS credentials for S3: set AWS_ACCESS_KEY_ID")
    assert first_line(RuntimeError("An error occurred while calling o77.save.\n: org.apache.spark.SparkException: "
                                   "Job aborted\n\tat x")) == "org.apache.spark.SparkException: Job aborted"
    assert first_line(ValueError("plain message\nmore")) == "plain message"
    worker = RuntimeError("An exception was thrown from the Python worker. Please see the stack trace below.\n"
                          "Traceback (most recent call last):\n  File \"/x/worker.py\", line 3, in main\n    f()\n"
                          "kgcurate.errors.SomeError: the shard folder /out is full\n")
    assert first_line(worker) == "kgcurate.errors.SomeError: the shard folder /out is full"


def test_cli_quiets_spark_console_unless_debug(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(session, "console_log_level", "WARN")
    f = tmp_path / "file"
    f.write_text("x")
    cli.main(["match", "--lake", str(f)])
    assert session.console_log_level == "OFF"
    monkeypatch.setattr(session, "console_log_level", "WARN")
    assert cli.main(["match", "--lake", str(f), "--debug"]) == 2
    assert session.console_log_level == "WARN"


def test_an_empty_lake_exit_2_and_writes_nothing(capsys, tmp_path, monkeypatch) -> None:
    """``--lake ""`` (or ``lake: ""``) wrote pairs/, ingest_log/... into the working directory."""
    monkeypatch.chdir(tmp_path)
    wat = tmp_path / "in.warc.wat.gz"
    wat.write_bytes(b"")
    assert cli.main(["ingest-wat", "--lake", "", str(wat)]) == 2
    assert "the lake is empty" in one_error_line(capsys)
    p = tmp_path / "c.yaml"
    p.write_text('lake: ""\n')
    assert cli.main(["match", "--config", str(p)]) == 2
    assert "the lake is empty" in one_error_line(capsys)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.yaml", "in.warc.wat.gz"]


def test_a_percent_escape_in_the_lake_path_exit_2_before_any_work(capsys, tmp_path, monkeypatch) -> None:
    """delta-rs writes the leases table at `lake%20x/leases` and reads it back from `lake x/leases`: every
    ingest failed (exit 1, "File not found") after its whole parse, leaving empty tables behind."""
    wat = tmp_path / "in.warc.wat.gz"
    wat.write_bytes(b"")
    for lake in (tmp_path / "lake%20x", f"file://{tmp_path}/lake%2541"):
        assert cli.main(["ingest-wat", "--lake", str(lake), str(wat)]) == 2
        assert "two hex digits in the lake's path is not supported" in one_error_line(capsys)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in.warc.wat.gz"]
    cli.check_lake(str(tmp_path / "lake%zz 100%"), "match")  # not an escape: delta-rs keeps it as it is
    work = tmp_path / "a%20b"  # in the working folder's name, for --lake lake
    work.mkdir()
    monkeypatch.chdir(work)
    assert cli.main(["ingest-wat", "--lake", "lake", str(wat)]) == 2
    assert f"lake {work}/lake: a '%' followed by two hex digits" in one_error_line(capsys)
    assert sorted(x.name for x in work.iterdir()) == []


def test_a_tilde_in_the_config_is_the_home_folder(capsys, tmp_path, monkeypatch) -> None:
    """``lake: ~/x`` made a literal ./~/x folder; other path keys (report.out) are expanded the same way."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    (home / "lake").write_text("a file where the lake should go")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    p = tmp_path / "c.yaml"
    p.write_text("lake: ~/lake\n")
    assert cli.main(["match", "--config", str(p)]) == 2  # the check sees $HOME/lake, not ./~/lake
    assert f"lake {home / 'lake'} is a file, not a directory" in one_error_line(capsys)
    assert not (cwd / "~").exists()
    cfg = config.load(None)
    cfg.update(lake="~/l")
    cfg["report"]["out"], cfg["wat"]["inputs"] = "~/r", ["~/a.wat.gz", "s3a://b/~x"]
    settings.expand_paths(cfg)
    assert (cfg["lake"], cfg["report"]["out"]) == (f"{home}/l", f"{home}/r")
    assert cfg["wat"]["inputs"] == [f"{home}/a.wat.gz", "s3a://b/~x"]
    from kgcurate import lake, lake_rs

    assert lake.normalize_root("~/l") == f"{home}/l"
    assert lake.normalize_root("hdfs://nn/~x/") == "hdfs://nn/~x"
    assert lake_rs.table_uri("~/l", "pairs") == f"{home}/l/pairs"


@pytest.mark.parametrize(("yaml_lines", "words"), [
    ("wikidata:\n  input: {d}/sampel.json\n", ["Wikidata input not found: ", "sampel.json"]),
    ("wikidata:\n  input: {d}/dump.txt\n", ["cannot tell the format of ", "dump.txt"]),
    ("metadata:\n  metaclip_metadata: {d}/metadata.jsn\n", ["MetaCLIP metadata file not found: ", "metadata.jsn"]),
    ("metadata:\n  metaclip_metadata: {d}/cut.json\n", ["MetaCLIP metadata ", "cut.json is not valid JSON ("]),
    ("metadata:\n  metaclip_metadata: {d}/dict.json\n", ["MetaCLIP metadata ", "dict.json holds a JSON dict, not"]),
    ("metadata:\n  wordnet_dir: {d}/nowordnet\n", ["WordNet data files", "not found in ", "nowordnet"]),
    ("metadata:\n  wordnet: false\n  entity_sets: [{d}/organisms.yml]\n", ["entity set file not found: ",
                                                                         "organisms.yml"]),
])
def test_run_checks_every_stages_inputs_before_spark(yaml_lines, words, capsys, tmp_path, monkeypatch) -> None:
    """A mistyped wikidata.input or metadata path was found only after ingest-wat had run and committed."""
    monkeypatch.setattr(cli.Context, "of", lambda *a: pytest.fail("a stage started"))
    wat = tmp_path / "in.warc.wat.gz"
    wat.write_bytes(b"")
    (tmp_path / "dump.txt").write_text("{}")
    (tmp_path / "cut.json").write_text('["dog", "ca')  # MetaCLIP's list cut short: was refused after the JVM
    (tmp_path / "dict.json").write_text('{"entries": ["dog"]}')
    p = tmp_path / "c.yaml"
    p.write_text(f"lake: {tmp_path / 'lake'}\nwat:\n  inputs: [{wat}]\n" + yaml_lines.format(d=tmp_path))
    assert cli.main(["run", "--config", str(p)]) == 2
    err = one_error_line(capsys)
    for w in words:
        assert w in err, err
    assert not (tmp_path / "lake").exists()
    if "metadata:" in yaml_lines:  # build-metadata's own command makes the same check before Spark
        assert cli.main(["build-metadata", "--config", str(p)]) == 2
        assert one_error_line(capsys) == err


def test_run_leaves_uri_inputs_to_hadoop(tmp_path) -> None:
    """s3a:// dumps, MetaCLIP lists and WordNet folders are not looked for on the local disk."""
    import argparse

    from kgcurate.stages import run_pipeline

    cfg = config.load(None)
    cfg["wat"]["inputs"] = ["s3a://b/wat/"]
    cfg["wikidata"]["input"] = "s3a://b/latest-all.json.bz2"
    cfg["metadata"].update(wordnet_dir="s3a://b/wordnet", metaclip_metadata="s3a://b/metadata.json")
    cfg["report"]["out"] = str(tmp_path / "report")
    args = argparse.Namespace(config="c.yaml", only=None, skip=None)
    assert run_pipeline.prepare(args, cfg) == {"only": None, "skip": None}


def test_a_lake_host_or_bucket_that_cannot_be_reached_is_one_line() -> None:
    """`match --lake hdfs://nohost:8020/lake` exited 1 with the JVM's IllegalArgumentException; docs say exit 2."""
    hdfs_unknown = RuntimeError("An error occurred while calling o56.load.\n: java.lang.IllegalArgumentException: "
                                "java.net.UnknownHostException: nohost\n\tat org.apache.hadoop.security...")
    assert str(io_error_from_jvm(hdfs_unknown, "hdfs://nohost:8020/lake")) == (
        "lake hdfs://nohost:8020/lake is not reachable (java.net.UnknownHostException: nohost): check --lake "
        "(host, port or bucket) and the network, then re-run")
    hdfs_refused = RuntimeError(": java.net.ConnectException: Call From box/10.0.0.5 to nn:8020 failed on connection "
                                "exception: java.net.ConnectException: Connection refused; For more details see: "
                                "http://wiki.apache.org/hadoop/ConnectionRefused\n\tat sun.reflect...")
    assert str(io_error_from_jvm(hdfs_refused, "hdfs://nn:8020/lake")).startswith(
        "lake hdfs://nn:8020/lake is not reachable (java.net.ConnectException: Call From box/10.0.0.5 to nn:8020")
    s3a_bucket = RuntimeError(": org.apache.hadoop.fs.s3a.UnknownStoreException: `s3a://nobucket/lake/pairs': "
                              "getFileStatus on s3a://nobucket/lake/pairs: software.amazon.awssdk.services.s3.model."
                              "NoSuchBucketException: The specified bucket does not exist (Service: S3, Status Code: "
                              "404): NoSuchBucket\n\tat org.apache.hadoop.fs.s3a.S3AUtils...")
    err = str(io_error_from_jvm(s3a_bucket, "s3a://nobucket/lake"))
    assert err.startswith("lake s3a://nobucket/lake is not reachable (org.apache.hadoop.fs.s3a.UnknownStoreException")
    s3a_host = RuntimeError(": java.net.UnknownHostException: getFileStatus on s3a://b/lake: "
                            "b.s3.nowhere.example: Name or service not known")
    assert str(io_error_from_jvm(s3a_host, "s3a://b/lake")).startswith("lake s3a://b/lake is not reachable")
    # an input's unknown host is not the lake's: named as such, still exit 2
    other = RuntimeError(": java.net.UnknownHostException: inputs.example: Name or service not known")
    assert str(io_error_from_jvm(other, "hdfs://nn:8020/lake")).startswith(
        "a host or bucket is not reachable (java.net.UnknownHostException: inputs.example")
    # a refused connection that is not the lake's (Spark's executors, a local lake) stays the job's failure
    spark_internal = RuntimeError(": org.apache.spark.SparkException: Job aborted: java.io.IOException: Failed to "
                                  "connect to box/10.0.0.5:40123\nCaused by: java.net.ConnectException: Connection "
                                  "refused")
    assert io_error_from_jvm(spark_internal, "/data/lake") is None
    assert io_error_from_jvm(spark_internal, "hdfs://nn:8020/lake") is None
