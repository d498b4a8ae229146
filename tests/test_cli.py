"""CLI contract: exit codes and one-line errors (no JVM is started for bad usage)."""

from __future__ import annotations

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


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["ingest-wat", "--min-text-length", "many"])
    assert exc.value.code == 2


def test_every_stage_has_a_job_script_calling_the_cli():
    jobs = Path(__file__).resolve().parents[1] / "jobs"
    for command, (module, _help) in cli.STAGES.items():
        script = (jobs / f"{module}.py").read_text()
        assert f'main(["{command}", *sys.argv[1:]])' in script, module
