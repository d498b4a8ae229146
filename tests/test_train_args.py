"""open_clip's argument list from the train section and the lake input; shard lists as brace ranges."""

from __future__ import annotations

from dataclasses import replace

import braceexpand

from kgcurate.settings import TrainOptions
from kgcurate.train.lake_input import Shard, TrainInput, brace_list
from kgcurate.train.trainer_args import build_args, plan, torchrun_command, train_data


def _input(n_shards: int = 4, per: int = 100, out: str = "/data/shards") -> TrainInput:
    return TrainInput("download-1", "balance-1", out, tuple(Shard(i, f"{i:05d}.tar", per) for i in range(n_shards)),
                      5, 7, n_shards * per)


def _opt(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_epochs_over_the_shards_by_default() -> None:
    o = TrainOptions(model="kgc-tiny", batch_size=32, epochs=3, workers=8, seed=5, lr=1e-3, warmup=10)
    p = plan(o, _input(), cuda=False)
    assert (p.samples_per_epoch, p.resampled, p.workers, p.precision, p.device) == (400, False, 4, "fp32", "cpu")
    args = build_args(o, _input(), p, "/exp", "run-a", resume=False)
    assert _opt(args, "--train-data") == "/data/shards/{00000..00003}.tar"
    assert list(braceexpand.braceexpand(_opt(args, "--train-data")))[-1] == "/data/shards/00003.tar"
    assert [_opt(args, f) for f in ("--train-num-samples", "--model", "--batch-size", "--epochs", "--lr", "--warmup",
                                    "--precision", "--workers", "--seed", "--logs", "--name", "--device")] == [
        "400", "kgc-tiny", "32", "3", "0.001", "10", "fp32", "4", "5", "/exp", "run-a", "cpu"]
    assert "--dataset-resampled" not in args and "--resume" not in args
    assert _opt(args, "--report-to") == ""


def test_samples_seen_means_resampled_epochs_of_samples_over_epochs() -> None:
    o = TrainOptions(samples=1000, epochs=3, gpus=2, workers=6)
    p = plan(o, _input(), cuda=True)
    assert (p.samples_per_epoch, p.resampled, p.workers, p.precision, p.device) == (334, True, 6, "amp", "cuda")
    args = build_args(replace(o, extra_args=["--grad-checkpointing"]), _input(), p, "/e", "n", resume=True)
    assert "--dataset-resampled" in args and _opt(args, "--resume") == "latest" and args[-1] == "--grad-checkpointing"


def test_fewer_shards_than_processes_resample() -> None:
    assert plan(TrainOptions(gpus=8), _input(4), cuda=True).resampled


def test_brace_list_groups_consecutive_shards_of_a_folder() -> None:
    files = ["/a/00000.tar", "/a/00001.tar", "/a/00002.tar", "/a/00005.tar", "/b/00006.tar", "/b/00007.tar",
             "/b/x.tar"]
    text = brace_list(files)
    assert text == "/a/{00000..00002}.tar::/a/00005.tar::/b/{00006..00007}.tar::/b/x.tar"
    assert [f for part in text.split("::") for f in braceexpand.braceexpand(part)] == files


def test_s3_shards_are_streamed_through_the_aws_cli() -> None:
    assert train_data(["s3://b/k/00000.tar", "s3://b/k/00001.tar"]) == "pipe:aws s3 cp s3://b/k/{00000..00001}.tar -"


def test_empty_shards_are_left_out() -> None:
    inp = replace(_input(3), shards=(Shard(0, "00000.tar", 5), Shard(1, "00001.tar", 0), Shard(2, "00002.tar", 4)))
    assert inp.files == ["/data/shards/00000.tar", "/data/shards/00002.tar"] and inp.samples == 9


def test_torchrun_runs_our_launcher_on_every_process() -> None:
    cmd = torchrun_command("/venv/bin/python", 8, ["--kg-text-share", "0.5", "--", "--model", "m"])
    assert cmd[:5] == ["/venv/bin/python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    assert cmd[5:8] == ["-m", "kgcurate.train.launch", "--kg-text-share"]


def test_s3_shards_on_an_s3_compatible_server_name_its_endpoint() -> None:
    """MinIO (KGCURATE_S3_ENDPOINT): the AWS CLI does not read that variable, so the pipe names it."""
    got = train_data(["s3://b/k/00000.tar", "s3://b/k/00001.tar", "/local/00000.tar"], "http://minio:9000")
    assert got == ("pipe:aws s3 cp --endpoint-url http://minio:9000 s3://b/k/{00000..00001}.tar -::/local/00000.tar")
    expanded = list(braceexpand.braceexpand(got.split("::")[0]))  # webdataset expands each URL so
    assert expanded == [f"pipe:aws s3 cp --endpoint-url http://minio:9000 s3://b/k/0000{i}.tar -" for i in (0, 1)]


def test_model_names_open_clip_builds() -> None:
    """`ViT-B/32` is ViT-B-32 to open_clip (train refused it); a schema name loads its own weights, which
    evaluate must refuse (open_clip ignores pretrained= for it, so the scores would not be the checkpoint's)."""
    from kgcurate.train.trainer_args import known_model

    assert known_model("ViT-B/32", None) and known_model("ViT-B-32", None)
    assert not known_model("ViT-B-3", None)
    assert known_model("hf-hub:org/model", None) and not known_model("hf-hub:org/model", None, schemas=False)
