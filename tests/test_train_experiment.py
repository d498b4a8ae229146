"""The experiment folder: refusal as one line, resume checks, the loss curve from open_clip's log, the manifest."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from kgcurate.errors import UserError
from kgcurate.train import experiment as ex

LOG = """\
2026-12-03,09:05:15 | INFO | Start epoch 0
2026-12-03,09:05:16 | INFO | Train Epoch: 0 [ 32/256 (12%)] Data (t): 0.1 Batch (t): 0.5, 64/s, 64/s/gpu LR: 0.000400 \
Logit Scale: 14.286 Contrastive_loss: 3.6380 (3.6380) Loss: 3.6380 (3.6380)
2026-12-03,09:05:19 | INFO | Train Epoch: 0 [256/256 (100%)] Data (t): 0.1 Batch (t): 0.5, 64/s, 64/s/gpu LR: 0.002 \
Logit Scale: 14.3 Contrastive_loss: 3.1000 (3.3) Loss: 3.1000 (3.3)
2026-12-03,09:05:20 | INFO | Train Epoch: 1 [ 32/256 (12%)] Data (t): 0.1 Batch (t): 0.5, 64/s, 64/s/gpu LR: 0.002 \
Logit Scale: 14.3 Contrastive_loss: 2.9 (2.9) Loss: 2.9000 (2.9)
2026-12-03,09:06:20 | INFO | Train Epoch: 1 [ 32/256 (12%)] Data (t): 0.1 Batch (t): 0.5, 64/s, 64/s/gpu LR: 0.002 \
Logit Scale: 14.3 Contrastive_loss: 2.8 (2.8) Loss: 2.8000 (2.8)
"""


def _manifest(d: str, **kw) -> ex.Manifest:
    base = ex.Manifest(train_run_id="train-1", model="kgc-tiny", model_config_dir="/conf/models", experiment_dir=d,
                       args=["--model", "kgc-tiny"], curated_run_id="balance-1", download_run_id="download-1",
                       download_runs_version=2, downloads_version=3, kg_text_share=0.5, seed=0,
                       packages={"torch": "2.15.0"}, started_at="2026-12-03T09:00:00+00:00")
    return replace(base, **kw)


def test_loss_curve_steps_and_values_with_a_resumed_step_kept_last() -> None:
    assert ex.loss_curve(LOG, 32) == [[1, 3.638], [8, 3.1], [9, 2.8]]


def test_a_fresh_folder_starts(tmp_path) -> None:
    assert ex.check_start(str(tmp_path / "new"), resume=False, expected={}) is None
    assert ex.check_start(str(tmp_path / "new"), resume=True, expected={}) is None


@pytest.mark.parametrize("leftover", ["out.log", "manifest.json", "checkpoints/epoch_2.pt"])
def test_an_existing_experiment_is_refused_in_one_line_without_resume(tmp_path, leftover) -> None:
    path = tmp_path / "exp" / leftover
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(ex.asdict(_manifest(str(tmp_path / "exp")))) if leftover == "manifest.json" else "x")
    with pytest.raises(UserError) as err:
        ex.check_start(str(tmp_path / "exp"), resume=False, expected={})
    message = str(err.value)
    assert "\n" not in message and "exists" in message and "--resume" in message and "--name" in message
    assert ("epoch 2 saved" in message) == leftover.startswith("checkpoints")


def test_resume_continues_the_same_experiment_only(tmp_path) -> None:
    d = str(tmp_path / "exp")
    ex.write_manifest(_manifest(d))
    same = ex.check_start(d, resume=True, expected={"model": "kgc-tiny", "kg_text_share": 0.5})
    assert same is not None and same.train_run_id == "train-1"
    with pytest.raises(UserError, match=r"kg_text_share=0\.5, not 0\.2.*same setting"):
        ex.check_start(d, resume=True, expected={"kg_text_share": 0.2})


def test_manifest_round_trip_and_the_evaluate_contract(tmp_path) -> None:
    d = str(tmp_path / "exp")
    m = _manifest(d, checkpoint=f"{d}/checkpoints/epoch_3.pt", loss_curve=[[1, 3.6], [8, 3.1]], samples_seen=256,
                  final_loss=3.1)
    path = ex.write_manifest(m)
    with open(path) as f:
        on_disk = json.load(f)
    assert {"train_run_id", "model", "model_config_dir", "checkpoint", "loss_curve", "samples_seen",
            "final_loss"} <= set(on_disk)
    assert ex.read_manifest(d) == m


def test_a_foreign_manifest_is_one_line(tmp_path) -> None:
    (tmp_path / "manifest.json").write_text('{"something": 1}')
    with pytest.raises(UserError, match="not a kgcurate manifest"):
        ex.read_manifest(str(tmp_path))


def test_checkpoints_sort_by_epoch(tmp_path) -> None:
    (tmp_path / "checkpoints").mkdir()
    for n in (1, 10, 2):
        (tmp_path / "checkpoints" / f"epoch_{n}.pt").write_text("")
    (tmp_path / "checkpoints" / "tmp.pt").write_text("")
    assert [ex.epoch_of(p) for p in ex.checkpoints(str(tmp_path))] == [1, 2, 10]


def test_cut_checkpoints_are_set_aside_newest_first(tmp_path) -> None:
    import zipfile

    (tmp_path / "checkpoints").mkdir()
    for n in (1, 2, 3):
        with zipfile.ZipFile(tmp_path / "checkpoints" / f"epoch_{n}.pt", "w") as z:  # torch.save's format
            z.writestr("archive/data.pkl", b"x" * 1000)
    whole = (tmp_path / "checkpoints" / "epoch_3.pt").read_bytes()
    assert ex.set_aside_torn(str(tmp_path)) == []
    (tmp_path / "checkpoints" / "epoch_3.pt").write_bytes(whole[:600])  # killed while saving epoch 3
    (tmp_path / "checkpoints" / "epoch_2.pt").write_bytes(b"")  # and an empty one before it
    cut = ex.set_aside_torn(str(tmp_path))
    assert [ex.epoch_of(p) for p in cut] == [3, 2]
    assert [ex.epoch_of(p) for p in ex.checkpoints(str(tmp_path))] == [1]
    assert (tmp_path / "checkpoints" / "epoch_3.pt.torn").read_bytes() == whole[:600]


def test_whole_checkpoints_skip_the_cut_ones_without_renaming_them(tmp_path) -> None:
    """What every torchrun process starts from: the same before rank 0 has set the cut ones aside as after."""
    import zipfile

    (tmp_path / "checkpoints").mkdir()
    for n in (1, 2):
        with zipfile.ZipFile(tmp_path / "checkpoints" / f"epoch_{n}.pt", "w") as z:
            z.writestr("archive/data.pkl", b"x" * 1000)
    (tmp_path / "checkpoints" / "epoch_3.pt").write_bytes(b"cut")
    before = [ex.epoch_of(p) for p in ex.whole_checkpoints(str(tmp_path))]
    assert before == [1, 2] and (tmp_path / "checkpoints" / "epoch_3.pt").exists()  # left for rank 0
    ex.set_aside_torn(str(tmp_path))
    assert [ex.epoch_of(p) for p in ex.whole_checkpoints(str(tmp_path))] == before
    assert ex.whole_checkpoints(str(tmp_path / "none")) == []


def test_a_moved_folder_keeps_its_run_and_a_copy_becomes_a_new_one(tmp_path) -> None:
    old, new = str(tmp_path / "a"), str(tmp_path / "b")
    m = _manifest(old)
    assert ex.relocated(m, old, lambda: "train-2") == (m, "")
    moved, what = ex.relocated(m, new, lambda: "train-2")  # nothing at the old path any more
    assert (moved.experiment_dir, moved.train_run_id) == (new, "train-1") and what.startswith("moved from")
    ex.write_manifest(m)  # the original is still there, holding the same run: a copy
    copied, what = ex.relocated(m, new, lambda: "train-2")
    assert (copied.experiment_dir, copied.train_run_id) == (new, "train-2") and what.startswith("copied from")
    ex.write_manifest(_manifest(old, train_run_id="train-9"))  # another experiment took the old path
    assert ex.relocated(m, new, lambda: "train-2")[0].train_run_id == "train-1"


def test_a_relocated_folder_names_the_checkpoint_in_its_new_place(tmp_path) -> None:
    """A finished experiment moved or copied keeps its record, but its checkpoint is the new folder's: the
    old path was gone (moved) or the original's (copied), and `kgcurate evaluate` failed on it."""
    old, new = str(tmp_path / "a"), str(tmp_path / "b")
    m = _manifest(old, checkpoint=f"{old}/checkpoints/epoch_2.pt", finished_at="2026-12-03T10:00:00+00:00")
    moved, _ = ex.relocated(m, new, lambda: "train-2")
    assert moved.checkpoint == f"{new}/checkpoints/epoch_2.pt" and moved.finished_at == m.finished_at
    ex.write_manifest(m)
    copied, _ = ex.relocated(m, new, lambda: "train-2")
    assert (copied.train_run_id, copied.checkpoint) == ("train-2", f"{new}/checkpoints/epoch_2.pt")
    assert ex.relocated(replace(m, checkpoint=None), new, lambda: "x")[0].checkpoint is None
    assert ex.rebased("/elsewhere/epoch_2.pt", old, new) == "/elsewhere/epoch_2.pt"  # not in the folder: kept
    assert ex.rebased(f"{old}x/epoch_2.pt", old, new) == f"{old}x/epoch_2.pt"  # a sibling, not inside


def test_without_the_train_extra_the_stage_says_what_to_install(monkeypatch) -> None:
    import importlib.util

    from kgcurate import config
    from kgcurate.stages import train

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(UserError, match=r"needs torch \(the \[train\] extra\): pip install -e '\.\[train\]'"):
        train.prepare(None, config.load(None))


def test_report_reads_the_typed_summary_and_warns_when_the_tables_disagree(capsys) -> None:
    from kgcurate.stages.train import TrainSummary, report

    s = TrainSummary(train_run_id="train-1", experiment_dir="/e", curated_run_id="balance-1",
                     download_run_id="download-1", shards=5, samples=320, downloaded_samples=320, resumed_from_epoch=1,
                     epochs_done=2, samples_seen=640, steps=20, first_loss=3.5, final_loss=2.75,
                     checkpoint="/e/checkpoints/epoch_2.pt", train_runs_version=3, seconds=12.5)
    assert report(s, None) == 0
    out, err = capsys.readouterr()
    assert "epoch 2, resumed at epoch 1, 20 steps, 640 samples seen, loss 3.5 -> 2.75" in out and err == ""
    assert report(replace(s, downloaded_samples=300), None) == 0
    assert "download_runs lists 320 samples in these shards, downloads has 300" in capsys.readouterr().err
    assert report(replace(s, unfinished_elsewhere=("/x/kgc-tiny-balance-0-kg50",)), None) == 0
    err = capsys.readouterr().err
    assert "--resume started a new experiment for the newest download (curated run balance-1)" in err
    assert "`--name kgc-tiny-balance-0-kg50 --resume` continues one" in err


def test_unfinished_experiments_of_an_earlier_download_are_found(tmp_path) -> None:
    """--resume without --name names its folder after the newest download: a crashed experiment of the
    download before is still `running` in a sibling folder under its own default name."""
    def name_of(curated: str) -> str:
        return f"kgc-tiny-{curated}-kg50"

    root = tmp_path / "exp"
    crashed = ex.write_manifest(_manifest(str(root / name_of("balance-0")), curated_run_id="balance-0"))
    ex.write_manifest(_manifest(str(root / name_of("balance-9")), curated_run_id="balance-9", status=ex.COMPLETED))
    ex.write_manifest(_manifest(str(root / "custom"), curated_run_id="balance-0"))  # --name custom: not a default
    ex.write_manifest(_manifest(str(root / "kgc-tiny-balance-5-kg50"), curated_run_id="balance-5", seed=7))
    (root / "junk").mkdir()
    (root / "junk" / ex.MANIFEST).write_text("{not json")
    new = str(root / name_of("balance-1"))
    expected = {"model": "kgc-tiny", "kg_text_share": 0.5, "seed": 0}
    assert [m.experiment_dir for m in ex.unfinished(str(root), expected, name_of, new)] == [
        str(root / name_of("balance-0"))]
    assert crashed.endswith(f"{name_of('balance-0')}/{ex.MANIFEST}")
    assert ex.unfinished(str(root), expected, name_of, str(root / name_of("balance-0"))) == []  # itself: no
    assert ex.unfinished(str(tmp_path / "nothing-here"), expected, name_of, new) == []
