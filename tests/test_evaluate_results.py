"""eval_runs rows through deltalake (no Spark) and eval.json: replaced per (checkpoint, dataset), never
duplicated, other checkpoints' and datasets' rows kept."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from kgcurate.evaluate.results import EvalRow, read_rows, update_eval_json, write_rows

NOW = datetime(2026, 12, 3, tzinfo=timezone.utc)


def rows(checkpoint: str, run: str, values: dict[tuple[str, str], float]) -> list[EvalRow]:
    return [EvalRow(run, None, checkpoint, "kgc-tiny", d, m, v, 10, NOW) for (d, m), v in values.items()]


def test_rows_are_replaced_per_checkpoint_and_dataset(tmp_path) -> None:
    uri = str(tmp_path / "eval_runs")
    odd = str(tmp_path / "it's here" / "epoch_1.pt")  # a quote in the path: the predicate escapes it
    write_rows(uri, rows(odd, "e1", {("digits", "top1"): 0.1, ("digits", "top5"): 0.5, ("skimage", "top1"): 0.2}))
    write_rows(uri, rows("/other.pt", "e2", {("digits", "top1"): 0.9}))
    write_rows(uri, rows(odd, "e3", {("digits", "top1"): 0.3, ("digits", "top5"): 0.6}))  # digits again
    got = sorted((r["checkpoint"], r["dataset"], r["metric"], r["value"], r["eval_run_id"]) for r in read_rows(uri))
    assert got == [("/other.pt", "digits", "top1", 0.9, "e2"),
                   (odd, "digits", "top1", 0.3, "e3"), (odd, "digits", "top5", 0.6, "e3"),
                   (odd, "skimage", "top1", 0.2, "e1")]
    write_rows(uri, rows(odd, "e3", {("digits", "top1"): 0.3, ("digits", "top5"): 0.6}))
    assert len(read_rows(uri)) == 4


def test_eval_json_keeps_earlier_datasets_and_survives_a_damaged_file(tmp_path) -> None:
    path = str(tmp_path / "eval.json")
    update_eval_json(path, {"eval_run_id": "e1"}, {"digits": {"metrics": {"top1": 0.1}}})
    update_eval_json(path, {"eval_run_id": "e2"}, {"skimage": {"metrics": {"top1": 0.2}}})
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert doc["eval_run_id"] == "e2" and set(doc["datasets"]) == {"digits", "skimage"}
    # another checkpoint in the same folder (epoch_2.pt after epoch_1.pt): its file replaces the earlier
    # one, whose numbers were not this checkpoint's
    update_eval_json(path, {"checkpoint": "c/epoch_1.pt"}, {"digits": {"metrics": {"top1": 0.9}}})
    update_eval_json(path, {"checkpoint": "c/epoch_2.pt"}, {"ret": {"metrics": {"R@1": 0.5}}})
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert doc["checkpoint"] == "c/epoch_2.pt" and set(doc["datasets"]) == {"ret"}
    update_eval_json(path, {"checkpoint": "c/epoch_2.pt"}, {"digits": {"metrics": {"top1": 0.4}}})
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert doc["datasets"] == {"ret": {"metrics": {"R@1": 0.5}}, "digits": {"metrics": {"top1": 0.4}}}
    (tmp_path / "eval.json").write_text("{broken")
    update_eval_json(path, {"eval_run_id": "e3"}, {"digits": {"metrics": {"top1": 0.3}}})
    assert json.loads((tmp_path / "eval.json").read_text())["datasets"] == {"digits": {"metrics": {"top1": 0.3}}}


def test_a_commit_lost_to_another_checkpoints_write_is_made_again(tmp_path, monkeypatch) -> None:
    import deltalake
    from deltalake.exceptions import CommitFailedError

    uri = str(tmp_path / "eval_runs")
    write_rows(uri, rows("/a.pt", "e1", {("digits", "top1"): 0.1}))
    real, calls = deltalake.write_deltalake, []

    def another_run_commits_first(*args, **kwargs):
        calls.append(kwargs.get("mode"))
        if len(calls) == 1:  # another checkpoint's evaluation landed between our read and our commit
            real(uri, args[1].slice(0, 0), mode="append")
            raise CommitFailedError("a concurrent transaction deleted data this operation read")
        return real(*args, **kwargs)

    monkeypatch.setattr(deltalake, "write_deltalake", another_run_commits_first)
    write_rows(uri, rows("/b.pt", "e2", {("digits", "top1"): 0.2}))
    assert calls == ["overwrite", "overwrite"]
    assert sorted((r["checkpoint"], r["value"]) for r in read_rows(uri)) == [("/a.pt", 0.1), ("/b.pt", 0.2)]
