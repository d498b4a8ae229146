"""open_clip_train's argument list, built from the typed ``train`` section and the lake input: the one
place our options meet theirs (recorded verbatim in ``train_runs.args`` and the manifest)."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass

from kgcurate.settings import TrainOptions
from kgcurate.train.lake_input import TrainInput, brace_list

OPEN_CLIP_PREFIXES = ("hf-hub:", "local-dir:")  # names open_clip resolves itself, not in its registry


def known_model(model: str, model_config_dir: str | None, schemas: bool = True) -> bool:
    """Whether open_clip can build ``model`` (after registering ``model_config_dir``): checked before an
    experiment folder or a table row exists, so a typo is a one-line error, not a failed run to clean up.
    ``ViT-B/32`` is ``ViT-B-32`` to open_clip. ``schemas``: accept ``hf-hub:``/``local-dir:`` names, whose
    weights open_clip loads itself (it ignores ``pretrained=`` for them: evaluate must refuse them, or it
    would score those weights under the checkpoint's name)."""
    import open_clip

    if model_config_dir:
        open_clip.add_model_config(model_config_dir)
    if model.startswith(OPEN_CLIP_PREFIXES):
        return schemas
    return model.replace("/", "-") in open_clip.list_models()


@dataclass(frozen=True)
class Plan:
    """How the options map onto open_clip's epochs: samples per epoch, resampling, workers."""

    samples_per_epoch: int
    resampled: bool  # shards drawn with replacement (open_clip's --dataset-resampled)
    workers: int
    precision: str
    device: str


def plan(o: TrainOptions, inp: TrainInput, cuda: bool) -> Plan:
    """``--samples S``: S samples seen over ``epochs`` checkpoints, shards drawn with replacement (MetaCLIP's
    "samples seen"); without it, ``epochs`` passes over the shards. Workers are capped by the shards each
    process gets (open_clip asserts shards >= workers x processes unless resampled)."""
    shards = len(inp.files)
    resampled = o.samples is not None or shards < o.gpus
    per_epoch = math.ceil(o.samples / o.epochs) if o.samples is not None else inp.samples
    workers = o.workers if resampled else min(o.workers, shards // o.gpus)
    precision = o.precision if o.precision != "auto" else ("amp" if cuda else "fp32")
    return Plan(per_epoch, resampled, workers, precision, "cuda" if cuda else "cpu")


def build_args(o: TrainOptions, inp: TrainInput, p: Plan, logs: str, name: str, resume: bool,
               s3_endpoint: str | None = None) -> list[str]:
    """The argument list of ``open_clip_train.main.main`` (and of each torchrun process)."""
    args = [
        "--train-data", train_data(inp.files, s3_endpoint),
        "--train-num-samples", str(p.samples_per_epoch),
        "--dataset-type", "webdataset",
        "--model", o.model,
        "--batch-size", str(o.batch_size),
        "--epochs", str(o.epochs),
        "--lr", repr(float(o.lr)),
        "--warmup", str(o.warmup),
        "--wd", repr(float(o.wd)),
        "--precision", p.precision,
        "--workers", str(p.workers),
        "--seed", str(o.seed),
        "--device", p.device,
        "--logs", logs,
        "--name", name,
        "--save-frequency", "1",
        "--log-every-n-steps", str(o.log_every),
        "--report-to", "",
    ]
    if p.resampled:
        args.append("--dataset-resampled")
    if resume:
        args += ["--resume", "latest"]
    return args + [str(a) for a in o.extra_args]


def train_data(files: list[str], s3_endpoint: str | None = None) -> str:
    """``--train-data``: local shards as brace ranges; S3 shards streamed through the AWS CLI, as
    open_clip's docs do (``pipe:aws s3 cp s3://.../{00000..00041}.tar -``), from ``s3_endpoint`` when
    the bucket is on an S3-compatible server (MinIO: ``KGCURATE_S3_ENDPOINT``, which the CLI does not read)."""
    groups = brace_list(files).split("::") if files else []
    ep = f"--endpoint-url {shlex.quote(s3_endpoint)} " if s3_endpoint else ""
    return "::".join(f"pipe:aws s3 cp {ep}{g} -" if g.startswith("s3://") else g for g in groups)


def torchrun_command(python: str, gpus: int, launch_args: list[str]) -> list[str]:
    """One node, ``gpus`` processes, each running :mod:`kgcurate.train.launch` (our text draw, then open_clip)."""
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
            "-m", "kgcurate.train.launch", *launch_args]
