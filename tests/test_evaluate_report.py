"""The report's training/evaluation section: drawn from train_runs, the manifests' loss curves and
eval_runs when those tables exist; absent tables, no section and no error."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from kgcurate import report_plots, tables
from kgcurate.stages import report as report_stage

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def training_data() -> dict:
    return {
        "runs": [{"train_run_id": "train-a", "model": "kgc-tiny", "status": "completed",
                  "finished_at": "2026-12-01", "samples_seen": 640, "final_loss": 3.25,
                  "loss_curve": [(s, 4.2 - s / 40) for s in range(0, 40, 4)]},
                 {"train_run_id": "train-b", "model": "kgc-tiny", "status": "failed", "finished_at": None,
                  "samples_seen": None, "final_loss": None, "loss_curve": []}],
        "evals": [{"train_run_id": "train-a", "model": "kgc-tiny", "dataset": "digits", "metric": "top1",
                   "value": 0.1234, "samples": 1797, "created_at": "2026-12-02", "checkpoint": "/x/epoch_1.pt"}],
    }


def test_render_adds_the_training_section_with_a_loss_plot(tmp_path) -> None:
    files = report_plots.render({"sizes": {"pairs": 1}, "training": training_data()}, tmp_path / "r")
    page = files["html"].read_text(encoding="utf-8")
    assert "<h2>Training and evaluation</h2>" in page
    assert "training_loss.png" in set(re.findall(r"<img src='([^']+)'", page))
    blob = files["loss"].read_bytes()
    assert blob[:8] == PNG_MAGIC and len(blob) > 5_000
    assert "train-a" in page and "train-b" in page and "0.1234" in page and "1,797" in page and "digits" in page


def test_render_without_training_data_has_no_section(tmp_path) -> None:
    files = report_plots.render({"sizes": {"pairs": 1}}, tmp_path / "r")
    assert "loss" not in files and "Training and evaluation" not in files["html"].read_text(encoding="utf-8")
    assert not (tmp_path / "r" / "training_loss.png").exists()


@pytest.mark.spark
def test_training_section_reads_deltalake_tables_through_spark(spark, tmp_path) -> None:
    root = str(tmp_path / "lake")
    assert report_stage.training(spark, root) == {}  # no tables: nothing, no error
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "manifest.json").write_text(json.dumps({"loss_curve": [[1, 4.0], [2, 3.5], ["bad"]], "samples_seen": 64,
                                                   "final_loss": 3.5}))
    when = datetime(2026, 12, 1, tzinfo=timezone.utc)
    write_deltalake(f"{root}/{tables.TRAIN_RUNS}", pa.Table.from_pylist(
        [{"train_run_id": "train-a", "model": "kgc-tiny", "checkpoint": str(exp / "c.pt"), "experiment_dir": str(exp),
          "finished_at": when, "status": "completed"}], schema=tables.arrow_schema(tables.TRAIN_RUNS)))
    write_deltalake(f"{root}/{tables.EVAL_RUNS}", pa.Table.from_pylist(
        [{"eval_run_id": "evaluate-x", "train_run_id": "train-a", "checkpoint": str(exp / "c.pt"), "model": "kgc-tiny",
          "dataset": "digits", "metric": "top1", "value": 0.25, "samples": 20, "created_at": when}],
        schema=tables.arrow_schema(tables.EVAL_RUNS)))
    t = report_stage.training(spark, root)
    (run,) = t["runs"]
    assert run["train_run_id"] == "train-a" and run["loss_curve"] == [(1.0, 4.0), (2.0, 3.5)]
    assert run["samples_seen"] == 64 and run["final_loss"] == 3.5
    assert [(e["dataset"], e["metric"], e["value"], e["samples"]) for e in t["evals"]] == [("digits", "top1", 0.25, 20)]
