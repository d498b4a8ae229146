"""kgcurate train end to end on the CPU: generated shards and download tables, the tiny model for a few dozen
steps through the command line, the loss falls, a train_runs row and the manifest; the same command is
refused without --resume, resumes a killed run from its latest checkpoint, and a finished one is left alone."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

torch = pytest.importorskip("torch")  # only the [train] extra has it
open_clip = pytest.importorskip("open_clip")

import train_data  # noqa: E402
from kgcurate import cli  # noqa: E402
from kgcurate.lake_rs import open_table  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(lake: str) -> list[dict]:
    return open_table(lake, "train_runs").to_pyarrow_table().to_pylist()


def test_train_smoke_loss_falls_records_and_resumes(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)  # conf/train-smoke.yaml names conf/models relative to the repo
    torch.set_num_threads(1)
    lake, _ = train_data.make_input(str(tmp_path), n=320, per_shard=64)
    command = ["train", "--config", "conf/train-smoke.yaml", "--lake", lake, "--experiments", str(tmp_path / "exp"),
               "--name", "smoke"]
    assert cli.main(command) == 0
    out = capsys.readouterr().out
    assert re.search(r"epoch 2, 20 steps, 640 samples seen, loss [\d.]+ -> [\d.]+", out), out

    exp = tmp_path / "exp" / "smoke"
    manifest = json.loads((exp / "manifest.json").read_text())
    curve = manifest["loss_curve"]
    assert [s for s, _ in curve] == list(range(1, 21))
    first, last = sum(v for _, v in curve[:3]) / 3, sum(v for _, v in curve[-3:]) / 3
    assert last < first - 0.3, curve  # log(32) = 3.47 at chance
    assert manifest["checkpoint"] == str(exp / "checkpoints" / "epoch_2.pt")
    assert manifest["model"] == "kgc-tiny" and manifest["samples_seen"] == 640
    assert manifest["final_loss"] == curve[-1][1]
    [row] = _rows(lake)
    assert (row["train_run_id"], row["status"], row["steps"], row["curated_run_id"], row["download_runs_version"]) == (
        manifest["train_run_id"], "completed", 20, "balance-abc", 0)
    assert json.loads(row["args"])[:2] == ["--train-data", f"{tmp_path}/shards/{{00000..00004}}.tar"]
    assert json.loads(row["packages"])["open_clip_torch"] == "3.3.0"

    # the evaluate stage's contract: open_clip's own checkpoint format
    model, _, _ = open_clip.create_model_and_transforms("kgc-tiny", pretrained=manifest["checkpoint"])
    assert sum(p.numel() for p in model.parameters()) > 1_000_000

    # the same command again: refused in one line, nothing changed
    assert cli.main(command) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "exists (epoch 2 saved): add --resume" in err
    assert len(_rows(lake)) == 1

    # killed while saving epoch 2 (a cut epoch_2.pt), the folder then moved: --resume sets the cut file
    # aside, continues from epoch 1's checkpoint in the new folder, same run id, one row naming the new path
    with open(exp / "checkpoints" / "epoch_2.pt", "r+b") as f:
        f.truncate(100_000)
    moved = tmp_path / "exp" / "moved"
    os.rename(exp, moved)
    exp, command = moved, [*command[:-1], "moved"]
    assert cli.main([*command, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "epoch 2, resumed at epoch 1, 20 steps" in out, out
    resumed = json.loads((exp / "manifest.json").read_text())
    assert resumed["train_run_id"] == manifest["train_run_id"] and "--resume" in resumed["args"]
    assert resumed["experiment_dir"] == str(exp) and resumed["checkpoint"] == str(exp / "checkpoints" / "epoch_2.pt")
    assert [s for s, _ in resumed["loss_curve"]] == list(range(1, 21))
    assert resumed["loss_curve"][:10] == curve[:10]
    assert (exp / "checkpoints" / "epoch_2.pt.torn").stat().st_size == 100_000
    open_clip.create_model_and_transforms("kgc-tiny", pretrained=resumed["checkpoint"])  # whole again
    assert not (tmp_path / "exp" / "smoke").exists()  # the old path is not made again
    [row] = _rows(lake)
    assert row["train_run_id"] == manifest["train_run_id"] and row["steps"] == 20
    assert row["checkpoint"] == resumed["checkpoint"]

    # finished: --resume trains nothing and keeps the one row as it was (a new finished_at would make it
    # the newest run for `kgcurate evaluate`)
    manifest_before = (exp / "manifest.json").read_text()
    assert cli.main([*command, "--resume"]) == 0
    assert "epoch 2, 20 steps" in capsys.readouterr().out
    assert _rows(lake) == [row]
    assert (exp / "manifest.json").read_text() == manifest_before


def test_resume_without_a_name_says_which_unfinished_experiment_it_did_not_continue(tmp_path, monkeypatch,
                                                                                    capsys) -> None:
    """The folder is named after the newest download's curated run: after a new balance + download the
    same `--resume` command starts a new experiment; an older one still `running` is named on stderr."""
    from kgcurate.train import experiment as ex

    monkeypatch.chdir(REPO)
    torch.set_num_threads(1)
    lake, _ = train_data.make_input(str(tmp_path), n=64, per_shard=32)
    exp = tmp_path / "exp"
    crashed = ex.Manifest(train_run_id="train-0", model="kgc-tiny", model_config_dir=None,
                          experiment_dir=str(exp / "kgc-tiny-balance-old-kg50"), args=[],
                          curated_run_id="balance-old", download_run_id="download-0", download_runs_version=0,
                          downloads_version=0, kg_text_share=0.5, seed=0, packages={}, started_at="2026-12-01")
    ex.write_manifest(crashed)
    assert cli.main(["train", "--config", "conf/train-smoke.yaml", "--lake", lake, "--experiments", str(exp),
                     "--epochs", "1", "--resume"]) == 0
    out, err = capsys.readouterr()
    assert "kgc-tiny-balance-abc-kg50" in out
    assert "unfinished one(s) of an earlier download were not continued" in err
    assert "`--name kgc-tiny-balance-old-kg50 --resume` continues one" in err
    assert ex.read_manifest(crashed.experiment_dir) == crashed  # left as it was


@pytest.mark.parametrize("how", ["moved", "copied"])
def test_a_finished_experiment_moved_or_copied_then_resumed_names_its_own_checkpoint(how, tmp_path, monkeypatch,
                                                                                     capsys) -> None:
    """A finished experiment resumed under a new --name is recorded as it was (its finished_at too), but
    with the new folder's checkpoint: the old path was gone or the original's, and evaluate failed on it."""
    from kgcurate.train import launch

    monkeypatch.chdir(REPO)
    lake, _ = train_data.make_input(str(tmp_path), n=64, per_shard=16)
    exp = tmp_path / "exp"

    def trainer(argv, *a, **k) -> int:  # open_clip, as far as the folder shows: two whole checkpoints
        folder = exp / argv[argv.index("--name") + 1]
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        for epoch in (1, 2):
            torch.save({"epoch": epoch}, folder / "checkpoints" / f"epoch_{epoch}.pt")
        return 0

    monkeypatch.setattr(launch, "run", trainer)
    base = ["train", "--config", "conf/train-smoke.yaml", "--lake", lake, "--experiments", str(exp)]
    assert cli.main([*base, "--name", "a"]) == 0
    before = json.loads((exp / "a" / "manifest.json").read_text())
    if how == "moved":
        os.rename(exp / "a", exp / "b")
    else:
        shutil.copytree(exp / "a", exp / "b")
    assert cli.main([*base, "--name", "b", "--resume"]) == 0
    capsys.readouterr()
    after = json.loads((exp / "b" / "manifest.json").read_text())
    assert after["checkpoint"] == str(exp / "b" / "checkpoints" / "epoch_2.pt")
    assert after["finished_at"] == before["finished_at"] and after["experiment_dir"] == str(exp / "b")
    rows = {r["experiment_dir"]: r for r in _rows(lake)}
    assert rows[str(exp / "b")]["checkpoint"] == after["checkpoint"]
    assert (after["train_run_id"] == before["train_run_id"]) == (how == "moved")
    if how == "copied":  # the original keeps its own
        assert rows[str(exp / "a")]["checkpoint"] == before["checkpoint"]


def test_train_failures_are_one_line_and_leave_the_lake_as_it_was(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    lake, _ = train_data.make_input(str(tmp_path), n=64, per_shard=32)
    base = ["train", "--config", "conf/train-smoke.yaml", "--lake", lake, "--experiments", str(tmp_path / "exp")]
    assert cli.main([*base, "--model-config-dir", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert cli.main([*base, "--download-run-id", "download-9"]) == 2
    assert "no download run 'download-9'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main([*base, "--kg-text-share", "1.5"])
    assert exit_.value.code == 2 and "between 0 and 1" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli.main([*base, "--gpus", "2"]) == 2
        assert "open_clip's multi-process training runs on GPUs only" in capsys.readouterr().err
    # a typo'd model: refused before the experiment folder is made (a "running" manifest for it then
    # refused the corrected command as another experiment's folder)
    assert cli.main([*base, "--model", "no-such-model", "--name", "exp1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.model 'no-such-model' has no open_clip config" in err
    assert not (tmp_path / "exp" / "exp1").exists()
    assert open_table(lake, "train_runs") is None


@pytest.mark.parametrize("rank", [0, 1])
def test_under_torchrun_each_process_trains_and_rank_0_alone_records(rank, tmp_path, monkeypatch, capsys) -> None:
    """deploy/ starts `torchrun --nproc_per_node=N jobs/train.py ...`: every process runs the stage, which then
    runs open_clip in-process (no torchrun inside torchrun) with the same arguments; only rank 0 checks the
    folder and writes the manifest and the train_runs row."""
    from kgcurate.train import launch

    monkeypatch.chdir(REPO)
    lake, _ = train_data.make_input(str(tmp_path), n=64, per_shard=16)
    calls = []
    monkeypatch.setattr(launch, "run", lambda argv, *a, **k: calls.append(argv) or 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    command = ["train", "--config", "conf/train-smoke.yaml", "--lake", lake, "--experiments", str(tmp_path / "exp"),
               "--name", "ddp", "--workers", "4"]
    assert cli.main(command) == 0
    [argv] = calls
    assert argv[argv.index("--workers") + 1] == "2"  # 4 shards over 2 processes
    assert (tmp_path / "exp" / "ddp" / "manifest.json").exists() == (rank == 0)
    assert (open_table(lake, "train_runs") is not None) == (rank == 0)
    if rank == 1:  # a folder rank 0 has just made is not refused on the others
        (tmp_path / "exp" / "ddp").mkdir(parents=True, exist_ok=True)
        (tmp_path / "exp" / "ddp" / "out.log").write_text("")
        assert cli.main(command) == 0


def test_under_torchrun_every_rank_starts_at_the_same_epoch_after_a_cut_checkpoint(tmp_path, monkeypatch,
                                                                                      capsys) -> None:
    """A run killed while saving its last checkpoint, resumed under torchrun: rank 0 alone sets the cut
    file aside, and a rank that looks before it has must still retrain that epoch with it. Rank 1 used to
    see the cut epoch_2.pt as done and exit ("nothing to train") while rank 0 retrained: a hang."""
    from kgcurate.train import launch

    monkeypatch.chdir(REPO)
    lake, _ = train_data.make_input(str(tmp_path), n=64, per_shard=16)
    exp = tmp_path / "exp" / "ddp"
    command = ["train", "--config", "conf/train-smoke.yaml", "--lake", lake, "--experiments", str(tmp_path / "exp"),
               "--name", "ddp"]

    def killed_while_saving(argv, *a, **k) -> int:
        (exp / "checkpoints").mkdir(parents=True, exist_ok=True)
        torch.save({"epoch": 1}, exp / "checkpoints" / "epoch_1.pt")
        (exp / "checkpoints" / "epoch_2.pt").write_bytes(b"cut")
        return 1

    monkeypatch.setattr(launch, "run", killed_while_saving)
    assert cli.main(command) == 1
    starts: dict[int, int] = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (1, 0):  # rank 1 takes no lease: it may look at the folder before rank 0 renames anything
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        monkeypatch.setattr(launch, "run", lambda argv, share, seed, start, *a, rank=rank, **k: starts.update(
            {rank: start}) or 0)
        assert cli.main([*command, "--resume"]) == 0
    capsys.readouterr()
    assert starts == {1: 1, 0: 1}
    assert sorted(os.listdir(exp / "checkpoints")) == ["epoch_1.pt", "epoch_2.pt.torn"]


def test_one_run_per_experiment_and_what_training_could_not_use_goes_to_bad_records(tmp_path, monkeypatch,
                                                                                     capsys) -> None:
    """A second writer of one experiment (its lease held, here as another node would) is refused in one line
    before anything is written; the trainer's spilled bad input is recorded once, under the train run id."""
    from kgcurate import lake_rs, leases
    from kgcurate.bad_input import SHARD_DAMAGED, BadInput
    from kgcurate.stages import train
    from kgcurate.train import bad_samples, launch

    monkeypatch.chdir(REPO)
    lake, _ = train_data.make_input(str(tmp_path), n=64, per_shard=16)
    exp = str(tmp_path / "exp" / "one")

    def trainer(argv, share, seed, start_pass, config_dir=None, bad_dir=None) -> int:  # a worker meets a cut shard
        bad_samples.spill(bad_dir, BadInput(f"{tmp_path}/shards/00001.tar", 9, SHARD_DAMAGED, "ReadError"))
        return 0

    monkeypatch.setattr(launch, "run", trainer)
    command = ["train", "--config", "conf/train-smoke.yaml", "--lake", lake, "--experiments", str(tmp_path / "exp"),
               "--name", "one"]
    other = leases.acquire(lake, train.lease_scope(exp), "train-elsewhere")
    assert cli.main(command) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"another train:{exp} run (train-elsewhere on " in err
    assert not os.path.exists(exp) and open_table(lake, "train_runs") is None
    leases.release(lake, other)
    with leases.held(lake, train.lease_scope(str(tmp_path / "exp" / "two"))):  # another experiment: no matter
        assert cli.main(command) == 0
    assert "1 samples or shards could not be fully used" in capsys.readouterr().err
    [row] = lake_rs.open_table(lake, "bad_records").to_pyarrow_table().to_pylist()
    run_id = json.loads((tmp_path / "exp" / "one" / "manifest.json").read_text())["train_run_id"]
    assert (row["job"], row["run_id"], row["source_file"], row["offset"], row["reason"]) == (
        "train", run_id, f"{tmp_path}/shards/00001.tar", 9, SHARD_DAMAGED)
    assert cli.main([*command, "--resume"]) == 0  # met again: not recorded twice
    assert lake_rs.open_table(lake, "bad_records").to_pyarrow_table().num_rows == 1
    assert leases.current_row(lake, train.lease_scope(exp)) is None  # given back
