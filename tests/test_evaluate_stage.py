"""``kgcurate evaluate`` end to end on CPU: a randomly initialised kgc-tiny checkpoint in open_clip's
format, a fake train run (train_runs row + manifest, as the train stage writes them), the offline
sets and a few webdataset shards. No Spark: the lake is read and written with deltalake."""

from __future__ import annotations

import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from PIL import Image

from kgcurate import cli, config, lake_rs, leases, tables
from kgcurate.context import Context, execute_stage
from kgcurate.download.shards import TarSample, write_shard
from kgcurate.errors import UserError
from kgcurate.evaluate.results import read_rows
from kgcurate.stages import evaluate

REPO = Path(__file__).resolve().parents[1]
MODELS = str(REPO / "conf" / "models")
RECALL = {f"{way}_R@{k}" for way in ("image_to_text", "text_to_image") for k in (1, 5, 10)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A random kgc-tiny saved as open_clip saves it ({"epoch", "state_dict"} with DDP's ``module.``)."""
    import open_clip
    import torch

    open_clip.add_model_config(MODELS)
    torch.manual_seed(0)
    model = open_clip.create_model("kgc-tiny")
    path = tmp_path_factory.mktemp("exp") / "checkpoints" / "epoch_1.pt"
    path.parent.mkdir()
    torch.save({"epoch": 1, "name": "kgc-tiny",
                "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return str(path)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("shards")
    for shard in range(2):
        samples = []
        for i in range(6):
            buf = io.BytesIO()
            Image.new("RGB", (40, 30), (40 * i, 100 * shard, 200 - 30 * i)).save(buf, "JPEG")
            samples.append(TarSample(f"{shard:05d}{i:04d}", buf.getvalue(), f"a photo of thing {shard}-{i}", {}))
        write_shard(str(out), shard, samples)
    return str(out)


def train_run(lake: str, checkpoint: str, run_id: str, status: str, finished: datetime | None) -> None:
    """One train_runs row and its manifest, as the train stage's contract says."""
    exp = os.path.join(os.path.dirname(os.path.dirname(checkpoint)), run_id)
    os.makedirs(exp, exist_ok=True)
    manifest = {"train_run_id": run_id, "model": "kgc-tiny", "model_config_dir": MODELS, "checkpoint": checkpoint,
                "loss_curve": [[1, 4.1], [2, 3.9]], "samples_seen": 64, "final_loss": 3.9}
    Path(exp, "manifest.json").write_text(json.dumps(manifest))
    row = {"train_run_id": run_id, "model": "kgc-tiny", "checkpoint": checkpoint, "experiment_dir": exp,
           "finished_at": finished, "status": status}
    write_deltalake(f"{lake}/{tables.TRAIN_RUNS}",
                    pa.Table.from_pylist([row], schema=tables.arrow_schema(tables.TRAIN_RUNS)), mode="append")


def cfg_for(lake: str, **evaluate_opts) -> dict:
    cfg = config.load(None)
    cfg["lake"] = lake
    cfg["evaluate"].update({"digits_per_class": 2, "templates": "simple", "device": "cpu", "batch_size": 32,
                            **evaluate_opts})
    return cfg


def test_evaluate_a_train_run_on_offline_sets_and_shards_then_rerun(tmp_path, checkpoint, shards) -> None:
    lake = str(tmp_path / "lake")
    train_run(lake, checkpoint, "train-old", "completed", datetime(2026, 1, 1, tzinfo=timezone.utc))
    train_run(lake, checkpoint, "train-broken", "failed", datetime(2026, 1, 2, tzinfo=timezone.utc))
    cfg = cfg_for(lake, retrieval=[f"held-out={shards}"])

    s = execute_stage(evaluate, cfg)
    assert isinstance(s, evaluate.EvaluateSummary) and s.train_run_id == "train-old"  # newest *finished* run
    by_set = {r.dataset: r for r in s.results}
    assert set(by_set) == {"digits", "skimage", "held-out"}
    assert by_set["digits"].samples == 20 and by_set["skimage"].samples == 15 and by_set["held-out"].samples == 12
    # a random model: chance level, but real numbers in range and monotone in k
    assert 0 <= by_set["digits"].metrics["top1"] <= by_set["digits"].metrics["top5"] <= 1
    assert by_set["digits"].metrics["top5"] > 0  # 5 of 10 classes: top-5 cannot miss every image
    assert set(by_set["held-out"].metrics) == RECALL
    for way in ("image_to_text", "text_to_image"):
        r1, r5, r10 = (by_set["held-out"].metrics[f"{way}_R@{k}"] for k in (1, 5, 10))
        assert 0 <= r1 <= r5 <= r10 <= 1 and r10 > 0

    rows = read_rows(s.table)
    assert len(rows) == s.rows == 2 + 2 + 6
    assert {r["eval_run_id"] for r in rows} == {s.eval_run_id}
    assert {(r["dataset"], r["metric"]) for r in rows} >= {("digits", "top1"), ("skimage", "top5"),
                                                          ("held-out", "text_to_image_R@1")}
    assert all(r["train_run_id"] == "train-old" and r["model"] == "kgc-tiny" and r["checkpoint"] == checkpoint
               for r in rows)
    doc = json.loads(Path(s.eval_json).read_text())
    assert Path(s.eval_json).parent == Path(checkpoint).parent
    assert doc["datasets"]["digits"]["metrics"]["top1"] == pytest.approx(by_set["digits"].metrics["top1"])
    assert doc["datasets"]["held-out"]["samples"] == 12

    again = execute_stage(evaluate, cfg)  # the same evaluation: same id, rows replaced, not added
    assert again.eval_run_id == s.eval_run_id
    rerun = read_rows(s.table)
    assert len(rerun) == len(rows)
    assert sorted((r["dataset"], r["metric"], r["value"]) for r in rerun) == \
        sorted((r["dataset"], r["metric"], r["value"]) for r in rows)  # deterministic on CPU

    # another evaluation of the same checkpoint on one set replaces that set only; eval.json keeps the others
    only = execute_stage(evaluate, cfg_for(lake, datasets=["digits"], digits_per_class=1))
    final = read_rows(s.table)
    assert len(final) == len(rows)
    assert {r["eval_run_id"] for r in final if r["dataset"] == "digits"} == {only.eval_run_id} != {s.eval_run_id}
    assert set(json.loads(Path(s.eval_json).read_text())["datasets"]) == {"digits", "skimage", "held-out"}


def test_cli_checkpoint_mode_and_one_line_errors(tmp_path, checkpoint, capsys) -> None:
    lake = str(tmp_path / "lake")
    base = ["evaluate", "--lake", lake, "--checkpoint", checkpoint, "--model", "kgc-tiny",
            "--model-config-dir", MODELS, "--device", "cpu", "--templates", "simple"]

    assert cli.main([*base, "--dataset", str(tmp_path / "no-such-folder")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dataset folder" in err and "no-such-folder" in err and "does not exist" in err
    assert not os.path.exists(f"{lake}/{tables.EVAL_RUNS}")  # refused before anything ran

    for key, bad_ks in (("top_k", "[]"), ("top_k", "[0, 5]"), ("recall_k", "[1, five]")):
        conf = tmp_path / "ks.yaml"
        conf.write_text(f"evaluate:\n  {key}: {bad_ks}\n")
        assert cli.main([*base, "--config", str(conf), "--dataset", "digits"]) == 2, bad_ks
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"evaluate.{key} is" in err and "positive integers" in err, err

    assert cli.main(["evaluate", "--lake", lake, "--dataset", "digits"]) == 2  # no train_runs, no --checkpoint
    assert "no train_runs table" in capsys.readouterr().err

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert cli.main([*base[:4], str(garbage), *base[5:], "--dataset", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "garbage.pt is not a torch checkpoint" in err
    empty = tmp_path / "empty.pt"  # a copy cut at 0 bytes: torch raised EOFError, exit 1 with no words
    empty.write_bytes(b"")
    assert cli.main([*base[:4], str(empty), *base[5:], "--dataset", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "empty.pt is not a torch checkpoint" in err

    folder = tmp_path / "colours"
    for name, rgb in (("red_thing", (250, 0, 0)), ("blue_thing", (0, 0, 250))):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 20), rgb).save(folder / name / f"{i}.png")
    (folder / "red_thing" / "bad.png").write_bytes(b"oops")
    assert cli.main([*base, "--dataset", f"colours={folder}"]) == 0
    out = capsys.readouterr()
    assert "colours (zeroshot, 6 samples): top1=" in out.out
    assert "1 unreadable samples not scored" in out.err and "bad.png" in out.err
    rows = read_rows(f"{lake}/{tables.EVAL_RUNS}")
    assert {(r["dataset"], r["metric"], r["train_run_id"], r["samples"]) for r in rows} == \
        {("colours", "top1", None, 6), ("colours", "top5", None, 6)}
    assert json.loads(Path(checkpoint).with_name("eval.json").read_text())["datasets"]["colours"]["unreadable"] == 1
    [bad] = lake_rs.open_table(lake, tables.BAD_RECORDS).to_pyarrow_table().to_pylist()
    assert (bad["job"], bad["source_file"], bad["offset"], bad["reason"]) == (
        "evaluate", str(folder / "red_thing" / "bad.png"), 0, "image does not decode")
    assert bad["run_id"] == json.loads(Path(checkpoint).with_name("eval.json").read_text())["eval_run_id"]

    held = leases.acquire(lake, evaluate.lease_scope(checkpoint), "other-eval")  # a run of it on another node
    assert cli.main([*base, "--dataset", f"colours={folder}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"another evaluate:{checkpoint} run (other-eval on " in err
    leases.release(lake, held)
    assert cli.main([*base, "--dataset", f"colours={folder}"]) == 0  # free again; a rerun records no bad row twice
    assert lake_rs.open_table(lake, tables.BAD_RECORDS).to_pyarrow_table().num_rows == 1
    assert leases.current_row(lake, evaluate.lease_scope(checkpoint)) is None  # given back at the end


def test_classes_with_identical_prompts_are_named_in_a_warning(tmp_path, checkpoint, caplog) -> None:
    """ImageNet's names have "missile" and "sunglasses" twice: such classes tie on every image, so one of
    each pair is never top-1. The run says which, by folder, and how to tell them apart."""
    folder = tmp_path / "twins"
    for name, rgb in (("n1", (250, 0, 0)), ("n2", (0, 250, 0)), ("n3", (0, 0, 250))):
        (folder / name).mkdir(parents=True)
        Image.new("RGB", (20, 20), rgb).save(folder / name / "0.png")
    (folder / "classnames.txt").write_text("missile\nMissile\nsunglasses\n")
    cfg = cfg_for(str(tmp_path / "lake"), checkpoint=checkpoint, model="kgc-tiny", model_config_dir=MODELS,
                  datasets=[f"twins={folder}"])
    with caplog.at_level("WARNING", logger="kgcurate.evaluate"):
        s = execute_stage(evaluate, cfg)
    [warning] = [r.getMessage() for r in caplog.records if "identical prompts" in r.getMessage()]
    assert "twins: classes with identical prompts" in warning and "n1, n2 ('missile' / 'Missile')" in warning
    assert "classnames.txt" in warning and "\n" not in warning
    assert s.results[0].same_prompts == ["n1, n2 ('missile' / 'Missile')"]


def test_a_folder_without_images_is_refused_before_the_model_and_an_empty_class_is_kept(tmp_path, checkpoint,
                                                                                         caplog) -> None:
    """A folder with no image is one line at the pre-start check; one with an empty class folder among
    others is evaluated, the empty class a candidate (refused once the model was loaded and earlier sets
    scored, with a message that said the folder held no labelled images)."""
    import argparse

    lake = str(tmp_path / "lake")
    bare = tmp_path / "bare"
    (bare / "cat").mkdir(parents=True)
    cfg = cfg_for(lake, checkpoint=checkpoint, model="kgc-tiny", model_config_dir=MODELS, datasets=[str(bare)])
    with pytest.raises(UserError, match=f"dataset folder {bare} holds no images in class folders"):
        evaluate.prepare(argparse.Namespace(), cfg)
    folder = tmp_path / "pets"
    for name in ("cat", "dog", "emu"):
        (folder / name).mkdir(parents=True)
    for name, rgb in (("cat", (200, 0, 0)), ("emu", (0, 0, 200))):
        Image.new("RGB", (20, 20), rgb).save(folder / name / "0.png")
    cfg = cfg_for(lake, checkpoint=checkpoint, model="kgc-tiny", model_config_dir=MODELS,
                  datasets=["skimage", f"pets={folder}"])
    evaluate.prepare(argparse.Namespace(), cfg)
    with caplog.at_level("WARNING", logger="kgcurate.evaluate"):
        s = execute_stage(evaluate, cfg)
    pets = s.results[1]
    assert pets.samples == 2 and pets.empty_classes == ["dog"] and set(pets.metrics) == {"top1", "top5"}
    assert {r["dataset"] for r in read_rows(s.table)} == {"skimage", "pets"}
    assert any("pets: 1 class folder(s) without an image" in r.getMessage() and "dog" in r.getMessage()
               for r in caplog.records)


def test_a_run_failing_midway_leaves_eval_runs_as_it_was(tmp_path, checkpoint, monkeypatch) -> None:
    lake = str(tmp_path / "lake")
    cfg = cfg_for(lake, checkpoint=checkpoint, model="kgc-tiny", model_config_dir=MODELS, datasets=["skimage"])
    first = execute_stage(evaluate, cfg)
    before = read_rows(first.table)
    real = evaluate.evaluate_set

    def dies_on_digits(m, s, o, scratch):
        if s.name == "digits":
            raise RuntimeError("killed")
        return real(m, s, o, scratch)

    monkeypatch.setattr(evaluate, "evaluate_set", dies_on_digits)
    with pytest.raises(RuntimeError, match="killed"):
        execute_stage(evaluate, cfg_for(lake, checkpoint=checkpoint, model="kgc-tiny", model_config_dir=MODELS,
                                        datasets=["skimage", "digits"]))
    after = read_rows(first.table)
    assert after == before  # skimage was re-scored in the failed run, but nothing was committed


def test_a_retrieval_set_with_nothing_usable_records_null_metrics(tmp_path, checkpoint) -> None:
    shards = tmp_path / "broken"
    shards.mkdir()
    write_shard(str(shards), 0, [TarSample("000000000", b"not a jpeg", "text", {})])
    lake = str(tmp_path / "lake")
    cfg = cfg_for(lake, checkpoint=checkpoint, model="kgc-tiny", model_config_dir=MODELS, datasets=["none"],
                  retrieval=[f"broken={shards}"])
    ctx = Context.of("evaluate", cfg)
    s = evaluate.execute(ctx, cfg)
    assert ctx.session is None  # the stage never asked for Spark (needs_spark=False)
    (r,) = s.results
    assert r.samples == 0 and r.unreadable == 1 and r.unreadable_examples[0][0] == "000000000"
    [bad] = lake_rs.open_table(lake, tables.BAD_RECORDS).to_pyarrow_table().to_pylist()
    assert (bad["job"], bad["run_id"], bad["source_file"], bad["offset"], bad["reason"]) == (
        "evaluate", s.eval_run_id, str(shards / "00000.tar"), 0, "image does not decode")
    assert s.bad_records == 1 and bad["sample"].startswith("000000000.jpg: ")
    rows = read_rows(s.table)
    assert {row["metric"] for row in rows} == RECALL and {row["value"] for row in rows} == {None}


def test_the_train_run_is_read_through_open_table_whatever_the_lake_uri(tmp_path, checkpoint) -> None:
    lake = str(tmp_path / "lake")
    with pytest.raises(UserError, match=f"no train_runs table in lake file://{lake}"):
        evaluate.train_target(f"file://{lake}", None)
    train_run(lake, checkpoint, "train-1", "completed", datetime(2026, 1, 1, tzinfo=timezone.utc))
    t = evaluate.train_target(f"file://{lake}", None)  # a Hadoop-style lake URI, as Spark stages are given
    assert (t.train_run_id, t.checkpoint, t.model) == ("train-1", checkpoint, "kgc-tiny")
